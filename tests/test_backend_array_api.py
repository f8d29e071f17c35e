"""The array-api backend (issue 13): one generated module for NumPy, array-api-strict and torch.

Every spec of specs/ is generated with backend="array-api": it is refused with a positioned error
(the set of refused specs is asserted, so it cannot grow unnoticed), or its outputs, final
states, loss and every gradient, given array-api-strict arrays and torch float64 tensors (full
and padded batches), equal the NumPy module's to 1e-12 and are arrays of the input's library."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backends
import rnnspec
from rnnspec.errors import SpecError
from rnnspec.gradcheck import gradcheck, random_problem

xs = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
pytest.importorskip("array_api_compat", reason="array-api-compat is not installed")

SPECS = Path(__file__).resolve().parent.parent / "specs"
ALL = sorted(p.stem for p in SPECS.glob("*.rnn"))
REFUSED = backends.REFUSED["array-api"]  # spec -> what the refusal names (asserted)


def _compile(stem, backend):
    return rnnspec.compile_source((SPECS / f"{stem}.rnn").read_text(), name=f"{stem}_{backend}",
                                  base=SPECS, backend=backend.replace("_", "-"))


def _libraries():
    out = [("array_api_strict", xs.asarray, lambda a: np.asarray(a._array))]
    try:
        import torch
        out.append(("torch", lambda a: torch.from_numpy(np.array(a, dtype=a.dtype)),
                    lambda a: a.numpy()))
    except ImportError:  # (torch is the test-only oracle: installed in CI)
        pass
    return out


def _to(tree, f):
    if isinstance(tree, dict):
        return {k: _to(v, f) for k, v in tree.items()}
    return f(np.asarray(tree)) if isinstance(tree, (np.ndarray, np.generic)) else tree


def _same(ref, got, back, lib, path):
    if isinstance(ref, dict):
        assert set(ref) == set(got), path
        for k in ref:
            _same(ref[k], got[k], back, lib, f"{path}[{k!r}]")
    elif isinstance(ref, (np.ndarray, np.generic)):  # (NumPy's 0-d sums are scalars)
        assert type(got).__module__.split(".")[0] == lib, (path, type(got))
        np.testing.assert_allclose(back(got), ref, rtol=1e-12, atol=1e-12, err_msg=path)
    else:
        assert got == pytest.approx(ref, rel=1e-12, abs=1e-12), path


@pytest.mark.parametrize("stem", ALL)
def test_every_spec_matches_numpy_or_is_refused_with_a_position(stem):
    text = (SPECS / f"{stem}.rnn").read_text()
    if stem in REFUSED:
        with pytest.raises(SpecError) as e:
            rnnspec.generate(text, filename=f"{stem}.rnn", base=SPECS, backend="array-api")
        message = str(e.value)
        assert message.startswith(f"{stem}.rnn:") and "^" in message and \
            "--backend numpy" in message and REFUSED[stem] in message
        return
    ref, mod = _compile(stem, "numpy"), _compile(stem, "array_api")
    for lengths in (None, np.array([5, 2, 4])):
        params, inputs, targets, state0, up = random_problem(ref, T=5, batch=3, seed=1,
                                                             lengths=lengths)
        out, cache = ref.forward(params, inputs, targets, state0, lengths=lengths)
        grads = ref.backward(params, cache, up)
        for lib, to, back in _libraries():
            args = [_to(a, to) for a in (params, inputs, targets, state0)]
            got, got_cache = mod.forward(*args, lengths=_to(lengths, to))
            _same(out, got, back, lib, "outputs")
            _same(grads, mod.backward(args[0], got_cache, _to(up, to)), back, lib, "grads")


def test_the_refused_specs_are_specs():
    assert set(REFUSED) <= set(ALL) and len(ALL) - len(REFUSED) >= 20


def test_gradcheck_with_numpy_arrays_and_same_text_twice():
    text = (SPECS / "lstm.rnn").read_text()
    a = rnnspec.generate(text, filename="lstm.rnn", backend="array-api")
    assert a == rnnspec.generate(text, filename="lstm.rnn", backend="array-api")
    assert "import array_api_compat" not in a and "\nfrom array_api_compat import" in a
    mod = _compile("lstm", "array_api")
    assert gradcheck(mod, lengths=np.array([5, 3, 1])).ok
    assert gradcheck(_compile("bidirectional", "array_api")).ok


def test_validation_names_the_argument_and_shape():
    mod = _compile("elman", "array_api")
    params = mod.init_params(like=xs.asarray(0.0))
    assert all(type(p).__module__.startswith("array_api_strict") for p in params.values())
    ref = _compile("elman", "numpy").init_params()
    for n, p in params.items():
        np.testing.assert_array_equal(np.asarray(p._array), ref[n])
    x = xs.zeros((4, 2, 7), dtype=xs.float64)
    with pytest.raises(ValueError, match=r"inputs\['x'\] has shape \(4, 2, 7\), expected "
                                         r"\(T, B, m\)"):
        mod.forward(params, {"x": x})
    with pytest.raises(ValueError, match="lengths must be between 1 and T"):
        mod.forward(params, {"x": xs.zeros((4, 2, 3), dtype=xs.float64)},
                    lengths=xs.asarray([5, 1]))
    out, cache = mod.forward(params, {"x": xs.zeros((4, 2, 3), dtype=xs.float64)})
    with pytest.raises(ValueError, match="xi= and truncate= are not supported"):
        mod.backward(params, cache, {"s": out["s"]}, truncate=(2, 2))


def test_checkpoint_and_rtrl_are_refused_with_a_position():
    text = (SPECS / "elman.rnn").read_text()
    for kw, flag in (({"checkpoint": 2}, "--checkpoint"), ({"rtrl": True}, "--rtrl")):
        with pytest.raises(SpecError, match=f"elman.rnn:1:1: .*with {flag}"):
            rnnspec.generate(text, filename="elman.rnn", backend="array-api", **kw)


def test_cli_compile_and_gradcheck(tmp_path):
    out = tmp_path / "gru.py"
    run = [sys.executable, "-m", "rnnspec"]
    r = subprocess.run(run + ["compile", str(SPECS / "gru.rnn"), "-o", str(out), "--backend",
                              "array-api"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "xp, device = dims['xp'], dims['device']" in out.read_text()
    r = subprocess.run(run + ["gradcheck", str(SPECS / "gru.rnn"), "--backend", "array-api"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["compile", str(SPECS / "char_lm.rnn"), "-o", str(out),
                              "--backend", "array-api"], capture_output=True, text=True)
    assert r.returncode != 0 and "char_lm.rnn:16:1" in r.stderr and "Traceback" not in r.stderr
