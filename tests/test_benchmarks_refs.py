"""The benchmark references (benchmarks/ref_*.py) compute the generated module's function: the
loss and every gradient (parameters, input, initial states) equal in float64 at a tiny size.
benchmarks/run.py checks this again before it times anything; here it is kept from rotting.
Nothing is timed.  The JAX reference is skipped where jax is not installed (it is not in CI)."""
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

B, T, I, H, K = 3, 5, 4, 5, 4
DIMS = {"elman": {"m": I, "n": H}, "lstm": {"in": I, "hidden": H, "out": K},
        "gru": {"in": I, "hidden": H, "out": K}}
MODELS = sorted(DIMS)


def case(model, dtype, seed=1, zero_state=False):
    """The generated module, its parameters, a batch and initial states, and its result."""
    mod = rnnspec.compile_file(ROOT / "specs" / f"{model}.rnn", dims=DIMS[model])
    params = mod.init_params(DIMS[model], seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    y = rng.integers(0, K, size=(T, B))
    state0 = {s: (0 if zero_state else 1) * rng.standard_normal((B, H)).astype(dtype)
              for s in mod.STATES}
    loss, grads = mod.loss_and_grad(params, {"x": x}, {"y": y}, state0)
    return params, x, y, state0, loss, grads


def assert_same(loss, grads, want_loss, want, rtol, atol):
    assert loss == pytest.approx(want_loss, rel=rtol)
    assert set(grads) == set(want), (sorted(grads), sorted(want))
    for group, arrays in want.items():
        assert set(grads[group]) == set(arrays), (group, sorted(grads[group]), sorted(arrays))
        for name, a in arrays.items():
            got = np.asarray(grads[group][name])
            assert got.shape == a.shape and got.dtype == a.dtype, (group, name, got.dtype)
            np.testing.assert_allclose(got, a, rtol=rtol, atol=atol, err_msg=f"{group}.{name}")


@pytest.mark.parametrize("model", MODELS)
def test_jax_reference_equals_the_generated_module(model):
    ref_jax = pytest.importorskip("ref_jax")
    if ref_jax.jax is None:
        pytest.skip(f"jax is a benchmark-only dependency, not installed: {ref_jax.IMPORT_ERROR}")
    params, x, y, state0, want_loss, want = case(model, np.float64)
    ref = ref_jax.JaxModel(model, params)
    loss, grads = ref.spec_result(ref.loss_and_grad(*ref.prepare(x, y, state0)))
    assert_same(loss, grads, want_loss, want, rtol=1e-10, atol=1e-12)
    # float32 in, float32 out (jax_enable_x64 is on: nothing may drift to float64)
    params, x, y, state0, want_loss, want = case(model, np.float32)
    ref = ref_jax.JaxModel(model, params)
    loss, grads = ref.spec_result(ref.loss_and_grad(*ref.prepare(x, y, state0)))
    assert_same(loss, grads, want_loss, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_numpy_references_equal_the_generated_module(model):
    from ref_expert import EXPERT
    from ref_naive import NAIVE
    params, x, y, _, want_loss, want = case(model, np.float64, zero_state=True)
    expert = EXPERT[model](params)
    loss, grads = expert.loss_and_grad(*expert.prepare(x, y))
    assert_same(loss, expert.grads_to_spec(grads), want_loss, want, rtol=1e-10, atol=1e-12)
    naive = NAIVE[model](params)
    loss, grads = naive.loss_and_grad(*naive.prepare(x, y))
    assert_same(loss, grads, want_loss, want, rtol=1e-10, atol=1e-12)
