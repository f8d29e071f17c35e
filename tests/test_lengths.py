"""Variable-length batches: a padded batch with `lengths` gives, for every sequence, exactly what
that sequence gives alone (outputs up to its end, final states, loss, every gradient).  Steps past
a sequence's end contribute no loss and no gradient, and a state carries over unchanged."""
import re

import numpy as np
import pytest

import rnnspec
from conftest import spec_paths
from rnnspec.gradcheck import random_problem

# (nested time axes, [w in s], have their own one-by-one test in test_nested.py)
SEQ_SPECS = [p for p in spec_paths() if "[t]" in p.read_text() and not
             re.search(r"\[\w+ in \w+\]", p.read_text())]


LENGTHS = [np.array([7, 3, 1, 5]), np.array([2, 7, 4, 1])]  # per time axis, in order


def _slice(mod, arrays, kinds, b, n):
    """Sequence b alone, cut to its own lengths n (a dict axis -> length)."""
    out = {}
    for name, a in arrays.items():
        info = kinds.get(name, {"kind": "static"})
        out[name] = a[:n[info["axis"]], b:b + 1] if info["kind"] == "sequence" else a[b:b + 1]
    return out


def _state_row(mod, name, a, b):
    """Sequence b of a state's initial or final value, (1, n) (or (d, 1, n) for a state that
    carries its last d > 1 steps)."""
    return a[:, b:b + 1] if mod.STATES[name].get("steps", 1) > 1 else a[b:b + 1]


@pytest.mark.parametrize("path", SEQ_SPECS, ids=lambda p: p.stem)
def test_padded_batch_equals_sequences_one_by_one(path):
    mod = rnnspec.compile_file(path)
    T, B = 7, 4
    params, inputs, targets, state0, up = random_problem(mod, T=T, batch=B, seed=5)
    lengths = dict(zip(mod.AXES, LENGTHS))
    final_up = up.pop("final")
    out, cache = mod.forward(params, inputs, targets, state0, lengths=lengths)
    grads = mod.backward(params, cache, {**up, "final": final_up})
    total_loss = 0.0
    summed = {k: np.zeros_like(v) for k, v in params.items()}
    for b in range(B):
        n = {axis: int(lens[b]) for axis, lens in lengths.items()}
        xs = _slice(mod, inputs, mod.INPUTS, b, n)
        ys = _slice(mod, targets, mod.TARGETS, b, n) if targets else None
        s0 = {k: _state_row(mod, k, v, b) for k, v in state0.items()}
        o1, c1 = mod.forward(params, xs, ys, s0, T=n)
        u1 = _slice(mod, up, mod.OUTPUTS, b, n)
        u1["final"] = {k: _state_row(mod, k, v, b) for k, v in final_up.items()}
        g1 = mod.backward(params, c1, u1)
        for name, info in mod.OUTPUTS.items():
            if info["kind"] == "sequence":
                got, want = out[name][:n[info["axis"]], b], o1[name][:, 0]
            else:
                got, want = out[name][b], o1[name][0]
            np.testing.assert_allclose(got, want, atol=1e-12, err_msg=name)
        for s in mod.STATES:
            np.testing.assert_allclose(_state_row(mod, s, out["final"][s], b),
                                       o1["final"][s], atol=1e-12, err_msg=f"final {s}")
        if targets:
            total_loss += o1["loss"]
        for k in summed:
            summed[k] += g1["params"][k]
        for name, info in mod.INPUTS.items():
            if info.get("type") == "class":  # indices: no gradient
                assert name not in grads["inputs"]
                continue
            g = grads["inputs"][name]
            if info["kind"] == "sequence":
                m = n[info["axis"]]
                np.testing.assert_allclose(g[:m, b], g1["inputs"][name][:, 0], atol=1e-11)
                assert not g[m:, b].any(), f"gradient past the end of sequence {b}"
            else:
                np.testing.assert_allclose(g[b], g1["inputs"][name][0], atol=1e-11)
        for s in state0:
            np.testing.assert_allclose(_state_row(mod, s, grads["state0"][s], b),
                                       g1["state0"][s], atol=1e-11)
    if targets:
        assert abs(out["loss"] - total_loss) < 1e-10
    for k in summed:
        np.testing.assert_allclose(grads["params"][k], summed[k], atol=1e-10, err_msg=k)


@pytest.mark.parametrize("stem", ["elman", "lstm", "many_to_one"])
def test_gradcheck_with_lengths(stem):
    from conftest import SPECS
    report = rnnspec.gradcheck(SPECS / f"{stem}.rnn", T=5, batch=3, seed=4,
                               lengths=np.array([5, 2, 4]))
    assert report.ok, report.table()


def test_mean_loss_is_per_sequence_mean_and_end_is_each_sequences_end():
    src = """
        dim n = 3
        input x[t]: n
        target y[t]: class(n)
        state h: n = zeros
        h[t] = tanh(x[t] + h[t-1])
        o[t] = softmax(h[t])
        loss = mean cross_entropy(o[t], y[t]) at t = 1, end
    """
    mod = rnnspec.compile_source(src)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2, 3))
    y = rng.integers(0, 3, (6, 2))
    out, _ = mod.forward({}, {"x": x}, {"y": y}, lengths=np.array([6, 3]))
    nll = -np.log(np.take_along_axis(out["o"], y[..., None], -1)[..., 0])
    expected = (nll[0, 0] + nll[5, 0]) / 2 + (nll[0, 1] + nll[2, 1]) / 2
    assert np.isclose(out["loss"], expected)


def test_bad_lengths():
    mod = rnnspec.compile_source("dim n = 2\ninput x[t]: n\nstate h: n\nh[t] = x[t] + h[t-1]")
    x = {"x": np.zeros((4, 2, 2))}
    with pytest.raises(ValueError, match=r"lengths has shape \(3,\), expected \(B,\) = \(2,\)"):
        mod.forward({}, x, lengths=[4, 4, 4])
    with pytest.raises(ValueError, match="between 1 and T = 4"):
        mod.forward({}, x, lengths=[5, 1])
    with pytest.raises(ValueError, match="integers"):
        mod.forward({}, x, lengths=[1.5, 2])
