"""The numba backend (issue 13): generate(..., backend="numba") lifts the time loops into
numba-compiled functions; every spec in specs/ either gives the NumPy module's outputs and
gradients to 1e-12 (float64), or is refused at a position (its gradcheck, padded batches
too: tests/test_specs.py's test_gradcheck_on_every_backend).

numba compiles each loop once per argument types (seconds each): the tests call every module
with two sets of types (no padding, no xi, every upstream gradient given; padded, with xi), in
a session-wide NUMBA_CACHE_DIR, float32 only for elman, lstm and gru."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backends
import rnnspec
from rnnspec.errors import SpecError
from rnnspec.gradcheck import random_problem

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                reason='numba is not installed (pip install "rnnspec[numba]")')

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.rnn"))
REFUSED = backends.REFUSED["numba"]  # what the backend refuses, and why (asserted)


def generated(name, backend, dims=None):
    path = ROOT / "specs" / f"{name}.rnn"
    return rnnspec.generate(path.read_text(encoding="utf-8"), dims, str(path),
                            base=path.parent, backend=backend)


def modules(name, dims=None):
    return (rnnspec.load_module(generated(name, "numpy", dims), name),
            rnnspec.load_module(generated(name, "numba", dims), name))


def assert_same(a, b, where="", tol=1e-12):
    """Nested dicts of arrays equal to ``tol`` (relative to each array's largest entry)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}", tol)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (where, a.shape, b.shape, a.dtype, b.dtype)
    scale = max(1.0, float(np.abs(a).max(initial=0.0)))
    assert np.abs(a - b).max(initial=0.0) <= tol * scale, where


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refusals_are_positioned(name):
    with pytest.raises(SpecError) as info:
        generated(name, "numba")
    text = str(info.value)
    assert f"{name}.rnn:" in text and "^" in text and "hint: use the default numpy backend" \
        in text and "the numba backend cannot compile" in text
    assert REFUSED[name] in text


def test_refused_set():
    """Exactly REFUSED is refused (a spec that starts failing is a test failure)."""
    refused = set()
    for name in SPECS:
        try:
            generated(name, "numba")
        except SpecError:
            refused.add(name)
    assert refused == set(REFUSED)


SUPPORTED = [n for n in SPECS if n not in REFUSED]


@pytest.mark.parametrize("name", SUPPORTED)
def test_same_as_numpy(name):
    """Forward outputs (final states, loss) and every gradient (params, inputs, state0) equal
    the NumPy module's, in a padded batch (where the spec has one time axis), with xi (where
    the spec allows it) and every upstream gradient given: every branch of the lifted loops
    in one set of argument types (numba compiles each loop once for it)."""
    ref, mod = modules(name)
    lengths = np.array([5, 2, 4]) if len(ref.AXES) == 1 else None
    p, i, tg, s0, up = random_problem(ref, T=5, batch=3, lengths=lengths)
    fwd_kw = {"lengths": lengths} if lengths is not None else {}
    bwd_kw = {"xi": np.linspace(0.2, 1.0, 5)} if ref.TRUNCATE is None else {}
    for batch_limit in (mod.NUMBA_BATCH, 0):  # (0: every batch runs the NumPy backend's code)
        mod.NUMBA_BATCH = batch_limit
        tol = 1e-12 if batch_limit else 0.0  # (above NUMBA_BATCH: the same bits)
        outs = [m.forward(p, i, tg, s0, **fwd_kw) for m in (ref, mod)]
        assert_same(outs[0][0], outs[1][0], "outputs", tol)
        grads = [m.backward(p, c, up, **bwd_kw) for m, (_, c) in zip((ref, mod), outs)]
        assert_same(grads[0], grads[1], "grads", tol)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_float32_stays_float32(name):
    ref, mod = modules(name)
    params, inputs, targets, _, _ = random_problem(ref, T=4, batch=2)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    i32 = {k: v.astype(np.float32) for k, v in inputs.items()}
    loss, grads = mod.loss_and_grad(p32, i32, targets)
    ref_loss, ref_grads = ref.loss_and_grad(p32, i32, targets)
    for group in grads.values():
        assert all(np.asarray(g).dtype == np.float32 for g in group.values())
    assert_same(ref_grads, grads, "float32", tol=1e-4)
    assert abs(float(loss) - float(ref_loss)) <= 1e-4 * abs(float(ref_loss))


def test_module_imports_numpy_and_numba_only_and_is_deterministic():
    text = generated("lstm", "numba")
    assert text == generated("lstm", "numba")
    imports = [line for line in text.split("\n") if line.startswith(("import ", "from "))]
    assert imports == ["import numpy as np", "import numba"]
    jit = "@numba.njit(cache=True, error_model='numpy')\n"
    assert jit + "def _forward_loop_1(" in text
    assert "\nNUMBA_BATCH = 16  #" in text and "    if B <= NUMBA_BATCH:" in text
    assert jit + "def _backward_loop_1(" in text
    lifted = text.split("def _backward_loop_1(")[1].split("\n\n\n")[0]
    assert "for t in range(T - 1, -1, -1):" in lifted and "reversed(" not in lifted
    loop = text.split("def _forward_loop_1(")[1].split("\n\n\n")[0]
    assert "_nb_sigmoid(" in loop and "_nb_tanh(" in loop and "np.tanh(" not in loop
    assert "o = (_nb_softmax if B <= NUMBA_BATCH else _softmax)(a_o)" in text
    assert "(_nb_cross_entropy_grad if B <= NUMBA_BATCH else _cross_entropy_grad)(o, y," in text


# ---- the numba runtime's exp, tanh, sigmoid and loss helpers against NumPy's ----------------
def _arguments():
    """A grid over every range of exp and tanh: tiny, around the switch of tanh's two forms
    (0.625), where exp's result turns subnormal, overflows, and inf, -inf, NaN, -0.0."""
    rng = np.random.default_rng(0)
    scales = (1e-300, 1e-8, 1e-3, 0.1, 0.6, 1.0, 3.0, 10.0, 30.0, 300.0, 800.0)
    grid = [rng.standard_normal(4000) * s for s in scales]
    grid.append(np.linspace(-750.0, 715.0, 20001))
    grid.append(np.array([0.0, -0.0, 0.625, -0.625, np.nextafter(0.625, 0), 22.0, -22.0,
                          709.78, 709.79, 710.0, -708.4, -745.1, -746.0, -800.0, np.inf,
                          -np.inf, np.nan]))
    return np.concatenate(grid)


def _close_in_ulps(got, ref, ulps):
    """got equals ref within ``ulps`` units in the last place where ref is a normal number, and
    exactly (inf, NaN, 0) elsewhere; a subnormal ref to its absolute spacing."""
    fin = np.finfo(ref.dtype)
    normal = np.isfinite(ref) & (np.abs(ref) >= fin.tiny)
    rel = np.abs(got[normal] - ref[normal]) / np.abs(ref[normal])
    assert rel.max(initial=0) <= ulps * fin.eps, float(rel.max()) / fin.eps
    sub = np.isfinite(ref) & ~normal
    assert np.all(np.abs(got[sub] - ref[sub]) <= ulps * fin.smallest_subnormal), "subnormal"
    special = ~np.isfinite(ref)
    assert np.array_equal(got[special], ref[special], equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_tanh_sigmoid_kernels_match_numpy(dtype):
    from rnnspec.runtime import numba as nb
    x = _arguments().astype(dtype)
    with np.errstate(over="ignore"):
        refs = {"exp": np.exp(x), "tanh": np.tanh(x),
                "sigmoid": (1 / (1 + np.exp(np.minimum(-x.astype(np.float64), 709.0))))
                .astype(dtype)}
    for name, ulps in (("exp", 2), ("tanh", 2), ("sigmoid", 3)):
        kernel = getattr(nb, f"_nb_{name}")
        out = np.empty_like(x)
        assert kernel(x, out) is out and out.dtype == dtype
        _close_in_ulps(out, refs[name], ulps)  # (float32: NumPy rounds in float32, we once)
        # a step's strided slice (the gates' sum) into a row of a 3-D buffer, as in a loop
        wide = np.zeros((3, 2, 10), dtype)
        wide[..., :7] = x[:42].reshape(3, 2, 7)
        into = np.full((3, 2, 7), -1, dtype)
        kernel(wide[..., :7], into)
        _close_in_ulps(into.ravel(), refs[name][:42], ulps)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_helpers_match_numpy(dtype):
    from rnnspec.runtime import numba as nb
    ref = rnnspec.load_module(generated("lstm", "numpy"), "lstm")
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((6, 3, 5)) * 20).astype(dtype)
    z[0, 0] = [900.0, -900.0, 0.0, 1.0, 2.0]  # p[y] = 0 in a row: log-sum-exp's branch
    z[1, 1, 2] = np.nan
    y = rng.integers(0, 5, (6, 3))
    y[0, 0] = 1
    w = rng.random((6, 3)).astype(dtype)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    with np.errstate(invalid="ignore"):
        p = ref._softmax(z)
        got = nb._nb_softmax(z)
        assert got.dtype == dtype and np.array_equal(np.isnan(got), np.isnan(p))
        np.testing.assert_allclose(got, p, rtol=tol, atol=0)
        fine = np.ones((6, 3), bool)
        fine[1, 1] = False  # (the row with a NaN: a NaN loss in both)
        for weights in (None, w):
            for probs in (None, p):
                a = nb._nb_cross_entropy(z, y, weights, probs)
                assert np.isnan(a) and np.isnan(ref._cross_entropy(z, y, weights, probs))
                a = nb._nb_cross_entropy(z[:, :1], y[:, :1], None if weights is None else
                                         weights[:, :1], None if probs is None else
                                         probs[:, :1])
                b = ref._cross_entropy(z[:, :1], y[:, :1], None if weights is None else
                                       weights[:, :1], None if probs is None else probs[:, :1])
                assert abs(a - b) <= tol * abs(b)
            for scale in (1.0, 0.25):
                a = nb._nb_cross_entropy_grad(p, y, weights, scale)
                b = ref._cross_entropy_grad(p, y, weights, scale)
                assert a.dtype == dtype
                np.testing.assert_allclose(a[fine], b[fine], rtol=tol, atol=tol)


def test_cli_compile_and_gradcheck(tmp_path, backend_caches):
    out = tmp_path / "lstm_nb.py"
    env = dict(os.environ)
    run = [sys.executable, "-m", "rnnspec"]
    r = subprocess.run(run + ["compile", str(ROOT / "specs" / "elman.rnn"), "--backend", "numba",
                              "-o", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "gradcheck ok" in r.stderr and out.read_text().startswith("# generated from")
    r = subprocess.run(run + ["gradcheck", str(ROOT / "specs" / "elman.rnn"), "--backend",
                              "numba"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    r = subprocess.run(run + ["compile", str(ROOT / "specs" / "jordan.rnn"), "--backend", "numba",
                              "-o", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "jordan.rnn:24:1: error: the numba backend cannot compile" in r.stderr


def test_a_spec_with_blank_lines_is_imported_from_a_file(backend_caches):
    """load_module tells a numba module by its header's `import numba`, also when the spec in
    its docstring has two blank lines in a row (which once hid the header): numba can cache
    only what it imports from a file."""
    text = (ROOT / "specs" / "elman.rnn").read_text(encoding="utf-8")
    text = text.replace("\n\n", "\n\n\n\n")
    source = rnnspec.generate(text, None, "spaced.rnn", backend="numba")
    assert "\n\n\n" in source.split("import numba")[0]  # (the blank lines, in the docstring)
    mod = rnnspec.load_module(source, "spaced")
    assert Path(mod.__file__).parent == Path(os.environ["RNNSPEC_CACHE_DIR"]) / "numba"
    plain = rnnspec.load_module(rnnspec.generate(text, None, "spaced.rnn"), "spaced")
    assert plain.__file__.startswith("<rnnspec spaced ")  # (NumPy's: no file)


def test_written_module_caches_next_to_it(tmp_path):
    """`rnnspec compile -o x.py --backend numba` + `import x`: numba's cache goes to x.py's
    __pycache__ (unless NUMBA_CACHE_DIR says otherwise), so a second import compiles nothing."""
    (tmp_path / "elman_nb.py").write_text(generated("elman", "numba"), encoding="utf-8")
    code = ("import numpy as np, elman_nb as m\n"
            "p = m.init_params()\n"
            "m.loss_and_grad(p, {'x': np.ones((3, 2, 3))}, {'y': np.zeros((3, 2), int)})\n"
            "import numba\n"
            "print(sum(len(f.stats.cache_hits) for f in (m._forward_loop_1, m._backward_loop_1)))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # (the tests' NUMBA_OPT=0 keeps numba from caching a function that calls another compiled
    # function, as the loops call the runtime's _nb_tanh; users' default, 3, caches them)
    env["NUMBA_OPT"] = "1"
    hits = [subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                           capture_output=True, text=True).stdout.strip() for _ in range(2)]
    assert hits == ["0", "2"]
    assert list((tmp_path / "__pycache__").glob("elman_nb._forward_loop_1*.nbi"))


def test_without_numba_a_clear_error(tmp_path):
    """numba hidden from the import system: the API raises BackendUnavailable (an ImportError)
    naming the extra, and the CLI exits 2 without a traceback."""
    hide = ("import importlib.util, sys\n"
            "find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda n, *a: None if n == 'numba' else find(n, *a)\n")
    code = hide + ("import rnnspec\n"
                   "try:\n"
                   "    rnnspec.generate(open(sys.argv[1]).read(), backend='numba')\n"
                   "except ImportError as e:\n"
                   "    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "specs" / "elman.rnn")],
                       capture_output=True, text=True, check=True)
    assert r.stdout.startswith("BackendUnavailable the numba backend needs numba") and \
        'pip install "rnnspec[numba]"' in r.stdout
    cli = hide + "from rnnspec.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    r = subprocess.run([sys.executable, "-c", cli, "compile", str(ROOT / "specs" / "elman.rnn"),
                        "--backend", "numba", "-o", str(tmp_path / "x.py")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert 'pip install "rnnspec[numba]"' in r.stderr


def test_training_on_the_numba_backend_follows_the_numpy_one():
    """rnnspec.train.train(..., backend="numba") (rnnspec train --backend numba): 10 steps on
    the adding problem, batches of 4 (the compiled loops), give the NumPy backend's
    parameters to 1e-10."""
    from rnnspec.data import adding_problem
    from rnnspec.train import train
    data = adding_problem(40, T=12, seed=0)
    runs = [train(ROOT / "specs" / "adding.rnn", data, lr=0.01, steps=10, batch=4, seed=0,
                  log=lambda s: None, backend=b) for b in ("numpy", "numba")]
    assert runs[1].module.NUMBA_BATCH >= 4 and "_forward_loop_1" in vars(runs[1].module)
    assert_same(runs[0].params, runs[1].params, "params", tol=1e-10)
    assert len(runs[1].history.loss) == 10


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_matmul_matches_blas(dtype):
    """_nb_matmul: the element loop (up to 4 rows or a small product) and BLAS (more) both
    give a @ w, for a step's rows and for a strided row slice."""
    from rnnspec.runtime import numba as nb
    rng = np.random.default_rng(2)
    for rows, k, n in ((1, 5, 7), (2, 32, 96), (4, 32, 128), (8, 128, 512), (3, 1, 1)):
        a = rng.standard_normal((rows, k)).astype(dtype)
        w = np.ascontiguousarray(rng.standard_normal((n, k)).astype(dtype).T)
        got = nb._nb_matmul(a, w)
        assert got.dtype == dtype and got.shape == (rows, n)
        np.testing.assert_allclose(got, a @ w, rtol=1e-12 if dtype == np.float64 else 1e-4,
                                   atol=1e-12 if dtype == np.float64 else 1e-4)
    wide = rng.standard_normal((2, 9)).astype(dtype)
    w = rng.standard_normal((5, 3)).astype(dtype)
    np.testing.assert_allclose(nb._nb_matmul(wide[:, 2:7], w), wide[:, 2:7] @ w, rtol=1e-4)
