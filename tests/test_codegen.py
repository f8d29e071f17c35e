"""The generated module: golden files, determinism, standalone import, API and validation."""
import ast as pyast
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rnnspec
from conftest import ROOT, SPECS, spec_paths
from rnnspec import ops

GOLDEN = ROOT / "tests" / "golden"
GOLDEN_SPECS = ["elman", "lstm", "gru", "many_to_one", "skip"]


def gen(stem, dims=None):
    path = SPECS / f"{stem}.rnn"
    return rnnspec.generate(path.read_text(), dims, f"{stem}.rnn")


@pytest.mark.parametrize("stem", GOLDEN_SPECS)
def test_golden(stem, update_golden):
    """Refresh with: pytest tests/test_codegen.py --update-golden"""
    source = gen(stem)
    golden = GOLDEN / f"{stem}.py"
    if update_golden:
        golden.write_text(source)
    assert golden.exists(), f"missing {golden}; run pytest --update-golden"
    assert source == golden.read_text(), f"generated code for {stem} changed; review the diff " \
                                         "and refresh with --update-golden"


@pytest.mark.parametrize("path", spec_paths(), ids=lambda p: p.stem)
def test_deterministic_and_only_numpy(path):
    a = rnnspec.generate(path.read_text(), None, path.name, base=path.parent)
    b = rnnspec.generate(path.read_text(), None, path.name, base=path.parent)
    assert a == b
    assert a.startswith(f"# generated from {path.name}")
    tree = pyast.parse(a)
    imports = [n for n in pyast.walk(tree) if isinstance(n, (pyast.Import, pyast.ImportFrom))]
    assert [alias.name for n in imports for alias in n.names] == ["numpy"]
    assert path.read_text().splitlines()[-1].strip() in a  # the spec source is in the docstring


def test_deterministic_across_processes():
    code = ("import rnnspec,sys; sys.stdout.write(rnnspec.generate(open(sys.argv[1]).read(), "
            "None, 'lstm.rnn'))")
    outs = {subprocess.run([sys.executable, "-c", code, str(SPECS / "lstm.rnn")],
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
            for seed in (1, 2, 3)}
    assert len(outs) == 1


def test_dims_override_changes_defaults_only():
    src = gen("lstm", {"hidden": 16})
    assert "DIMS = {'in': 3, 'hidden': 16, 'out': 4}" in src
    mod = rnnspec.load_module(src, "lstm16")
    assert mod.init_params()["W_f_h"].shape == (16, 16)
    # the code itself is shape-generic: sizes come from the arrays
    p = mod.init_params({"hidden": 7})
    out, _ = mod.forward(p, {"x": np.zeros((3, 2, 3))})
    assert out["h"].shape == (3, 2, 7)


def test_standalone_import_without_rnnspec(tmp_path):
    (tmp_path / "elman_mod.py").write_text(gen("elman"))
    script = textwrap.dedent("""
        import sys

        class BlockRnnspec:  # make rnnspec (and its dependencies) unimportable
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('rnnspec', 'lark', 'networkx'):
                    raise ImportError(f'{name} is blocked in this test')
                return None

        sys.meta_path.insert(0, BlockRnnspec())
        try:
            import rnnspec
        except ImportError:
            pass
        else:
            raise SystemExit("rnnspec must not be importable here")
        sys.path.insert(0, '.')
        import numpy as np, elman_mod
        p = elman_mod.init_params(seed=0)
        x = np.random.default_rng(0).normal(size=(4, 2, 3))
        loss, g = elman_mod.loss_and_grad(p, {'x': x}, {'y': np.zeros((4, 2), int)})
        print(round(loss, 6), sorted(g['params']), sorted(sys.modules.keys() & {'lark', 'networkx'}))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("[]")
    assert "['U', 'V', 'W', 'ba', 'by']" in r.stdout


def test_getsource_and_tracebacks_show_generated_lines():
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    src = inspect.getsource(mod.forward)
    assert "for t in range(T):" in src
    p = mod.init_params()
    p["W"] = np.full((5, 5), np.nan)
    with pytest.raises(ValueError) as info:
        mod.forward(p, {"x": np.zeros((2, 1, 4))})
    assert "inputs['x']" in str(info.value) and "(T, B, m)" in str(info.value)


@pytest.mark.parametrize("bad,message", [
    (lambda p, i: (p | {"W": np.zeros((5, 4))}, i), "params['W'] has shape (5, 4), expected (n, n)"),
    (lambda p, i: ({k: v for k, v in p.items() if k != "U"}, i), "params is missing ['U']"),
    (lambda p, i: (p, {"x": np.zeros((4, 2))}), "inputs['x'] has shape (4, 2), expected (T, B, m)"),
    (lambda p, i: (p, {"x": np.zeros((4, 2, 7))}), "inputs['x'] has shape (4, 2, 7), expected "
                                                   "(T, B, m) = (4, 2, 3)"),
    (lambda p, i: (p, {}), "inputs is missing ['x']"),
    (lambda p, i: (p, i | {"z": 1}), "inputs has unknown names ['z']"),
])
def test_bad_arrays_raise_valueerror_naming_argument_and_shape(bad, message):
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    p, i = bad(mod.init_params(), {"x": np.zeros((4, 2, 3))})
    with pytest.raises(ValueError) as info:
        mod.forward(p, i)
    assert message in str(info.value)


def test_bad_targets_state0_and_upstream():
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    p = mod.init_params()
    x = {"x": np.zeros((4, 2, 3))}
    with pytest.raises(ValueError, match=r"targets\['y'\] has shape \(4, 3\), expected \(T, B\)"):
        mod.forward(p, x, {"y": np.zeros((4, 3), int)})
    with pytest.raises(ValueError, match=r"class indices outside 0..2"):
        mod.forward(p, x, {"y": np.full((4, 2), 3)})
    with pytest.raises(ValueError, match=r"state0\['s'\] has shape \(2, 4\), expected \(B, n\)"):
        mod.forward(p, x, state0={"s": np.zeros((2, 4))})
    _, cache = mod.forward(p, x)
    with pytest.raises(ValueError, match=r"d_outputs\['s'\] has shape \(4, 2, 4\)"):
        mod.backward(p, cache, {"s": np.zeros((4, 2, 4))})
    with pytest.raises(ValueError, match="forward computed no loss"):
        mod.backward(p, cache, {"loss": 1.0})
    with pytest.raises(ValueError, match="this network needs at least 1 steps|positive integer"):
        mod.forward(p, {"x": np.zeros((0, 2, 3))})


def test_no_sequence_input_needs_T():
    mod = rnnspec.compile_file(SPECS / "one_to_many.rnn")
    p = mod.init_params()
    x = {"x": np.ones((2, 6))}
    with pytest.raises(ValueError, match="pass T="):
        mod.forward(p, x)
    out, _ = mod.forward(p, x, T=7)
    assert out["o"].shape == (7, 2, 4)
    np.testing.assert_allclose(out["o"].sum(-1), 1.0)


def test_state_init_from_parameter_and_given():
    src = """
        dim n = 3
        input x[t]: n
        param h0: n = normal(1.0)
        state h: n = h0
        state c: n = given
        h[t] = tanh(x[t] + h[t-1] + c[t-1])
        c[t] = h[t] * 0.5
    """
    mod = rnnspec.compile_source(src)
    p = mod.init_params()
    x = {"x": np.ones((2, 4, 3))}
    with pytest.raises(ValueError, match=r"state0\['c'\] is required"):
        mod.forward(p, x)
    report = rnnspec.gradcheck(mod, T=3)
    assert report.ok, report.table()
    assert {r.label for r in report.rows} >= {"params.h0", "state0.c"}


def test_missing_derivative_rule_fails_loudly(monkeypatch):
    monkeypatch.delitem(ops.RULES, "tanh")
    with pytest.raises(NotImplementedError, match="no derivative rule registered for op 'tanh'"):
        gen("elman")


def test_gradcheck_catches_a_wrong_derivative():
    src = gen("elman").replace("1 - s[1:] * s[1:]", "1 - 0.999 * s[1:] * s[1:]")
    assert "0.999" in src
    mod = rnnspec.load_module(src, "elman_broken")
    report = rnnspec.gradcheck(mod, T=4)
    assert not report.ok
    bad = {r.label for r in report.rows if not r.ok}
    assert "params.W" in bad and "params.U" in bad
    assert "FAILED" in report.table()


def test_loss_variants_mean_and_selected_steps():
    base = """
        dim n = 3
        dim k = 4
        input x[t]: n
        target y[t]: class(k)
        param W: (k, n)
        state h: n = zeros
        h[t] = tanh(x[t] + h[t-1])
        o[t] = softmax(W @ h[t])
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2, 3))
    y = rng.integers(0, 4, (5, 2))
    full = rnnspec.compile_source(base + "loss = cross_entropy(o[t], y[t])")
    mean = rnnspec.compile_source(base + "loss = mean cross_entropy(o[t], y[t])")
    sel = rnnspec.compile_source(base + "loss = cross_entropy(o[t], y[t]) at t = 2, end")
    p = full.init_params(seed=1)
    out, _ = full.forward(p, {"x": x}, {"y": y})
    nll = -np.log(np.take_along_axis(out["o"], y[..., None], -1)[..., 0])
    assert np.isclose(out["loss"], nll.sum())
    assert np.isclose(mean.forward(p, {"x": x}, {"y": y})[0]["loss"], nll.sum() / 5)
    assert np.isclose(sel.forward(p, {"x": x}, {"y": y})[0]["loss"], nll[[1, 4]].sum())
    for mod in (mean, sel):
        report = rnnspec.gradcheck(mod, T=5)
        assert report.ok, report.table()


def test_stable_softmax_and_sigmoid_without_warnings():
    mod = rnnspec.compile_file(SPECS / "lstm.rnn")
    p = {k: v * 400 for k, v in mod.init_params(seed=0).items()}
    x = np.random.default_rng(0).normal(size=(3, 2, 3)) * 100
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        out, cache = mod.forward(p, {"x": x}, {"y": np.zeros((3, 2), int)})
        mod.backward(p, cache)
    assert np.isfinite(out["loss"])


def test_every_op_gradchecks():
    """Ops that no architecture spec uses: concat, relu, exp, log, /, unary -, identity,
    fixed-step picks h[2] / h[end-1], const scalars, static values and static inputs."""
    src = """
        dim n = 3
        dim k = 2
        const half = 0.5
        input x[t]: n
        input ctx: k
        target y: n
        param W: (n, n + k)
        param V: (n, 2*n)
        param a: scalar = constant(0.3)
        state h: n = zeros
        u[t] = relu(W @ concat(h[t-1], ctx)) - half * x[t] / (1 + exp(-x[t]))
        h[t] = tanh(identity(u[t]) * a + log(1 + exp(x[t])) - -h[t-1] * 0.1)
        s = V @ concat(h[2], h[end-1])
        loss = squared_error(s, y)
    """
    mod = rnnspec.compile_source(src, name="allops")
    for T in (3, 6):
        report = rnnspec.gradcheck(mod, T=T, seed=T)
        assert report.ok, report.table()
    with pytest.raises(ValueError, match="needs at least 2 steps"):
        mod.forward(mod.init_params(), {"x": np.zeros((1, 1, 3)), "ctx": np.zeros((1, 2))})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_exact_at_the_extremes_without_overflow_warnings(dtype):
    """The generated sigmoid caps exp's argument: huge inputs give 0 and 1, no warnings."""
    import warnings
    mod = rnnspec.compile_file(SPECS / "lstm.rnn")
    a = np.array([-1e30, -1000, -60, -1, 0, 1, 60, 1000, 1e30], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = mod._sigmoid(a)
        out = np.empty_like(a)
        assert mod._sigmoid(a, out=out) is out
    assert s.dtype == dtype
    exact = 1 / (1 + np.exp(-np.clip(a.astype(np.float64), -700, 700)))
    np.testing.assert_allclose(s, exact, rtol=4 * np.finfo(dtype).eps, atol=1e-37)
    assert 0 <= s[0] < 1e-37 and s[-1] == 1 and s[4] == 0.5
    # a loss through saturated gates stays finite, with finite gradients
    p = mod.init_params()
    p["b_f"] = np.full_like(p["b_f"], 1e4)
    p["b_g"] = np.full_like(p["b_g"], -1e4)
    x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads = mod.loss_and_grad({k: v.astype(dtype) for k, v in p.items()}, {"x": x},
                                        {"y": np.zeros((4, 2), int)})
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads["params"].values())


def test_validation_remembers_checked_shapes_but_still_rejects_bad_calls():
    """forward remembers the dims of shapes it has checked (a fast path for repeated calls);
    a call with other shapes, another T or bad class indices is still refused."""
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    p = mod.init_params()
    x = np.zeros((4, 2, 3))
    y = np.zeros((4, 2), int)
    first, _ = mod.forward(p, {"x": x}, {"y": y})
    again, _ = mod.forward(p, {"x": x}, {"y": y})
    assert first["loss"] == again["loss"]
    with pytest.raises(ValueError, match=r"inputs\['x'\] has shape \(4, 2, 5\)"):
        mod.forward(p, {"x": np.zeros((4, 2, 5))}, {"y": y})
    with pytest.raises(ValueError, match=r"targets\['y'\] has shape \(3, 2\)"):
        mod.forward(p, {"x": x}, {"y": np.zeros((3, 2), int)})
    with pytest.raises(ValueError, match=r"class indices outside 0..2"):
        mod.forward(p, {"x": x}, {"y": np.full((4, 2), 7)})
    with pytest.raises(ValueError, match=r"has shape \(4, 2, 3\), expected \(T, B, m\) = \(5, 2, 3\)"):
        mod.forward(p, {"x": x}, {"y": y}, T=5)
    assert mod.forward(p, {"x": x}, {"y": y})[0]["loss"] == first["loss"]


GATE_ORDERS = {
    "candidate first": ["c[t]: n = tanh(affine(x[t], h[t-1]))", "f[t]: n = gate(x[t], h[t-1])",
                        "i[t]: n = gate(x[t], h[t-1])"],
    "two runs": ["f[t]: n = gate(x[t], h[t-1])", "i[t]: n = gate(x[t], h[t-1])",
                 "c[t]: n = tanh(affine(x[t], h[t-1]))", "c2[t]: n = tanh(affine(x[t], h[t-1]))",
                 "q[t]: n = gate(x[t], h[t-1])", "q2[t]: n = gate(x[t], h[t-1])"],
    "sizes differ": ["c[t]: 1 = tanh(affine(x[t], h[t-1]))", "f[t]: 1 = gate(x[t], h[t-1])",
                     "i[t]: n = gate(x[t], h[t-1])"],
}


@pytest.mark.parametrize("order", list(GATE_ORDERS))
def test_fused_gates_in_any_order_and_size(order):
    """Gates reading one fused product share one sum and one call per run of the same
    activation; each gate's slice must be its own, whatever the order and sizes."""
    lines = GATE_ORDERS[order]
    names = [line.split("[")[0] for line in lines]
    src = "dim in = 3\ndim n = 4\ninput x[t]: in\ntarget y[t]: n\nstate h: n = zeros\n" + \
        "\n".join(lines) + "\n" + \
        f"h[t] = tanh(affine({', '.join(n + '[t]' for n in names)}, name=mix))\n" + \
        "loss = squared_error(h[t], y[t])\n"
    mod = rnnspec.compile_source(src, name="gates")
    report = rnnspec.gradcheck(mod, T=4, batch=2, seed=3)
    assert report.ok, report.table()
    # at step 1 (h[0] = 0) every gate is its activation of W_<g>_x x[1] + b_<g>, independently
    p = {k: v + 0.1 for k, v in mod.init_params(seed=1).items()}
    x = np.random.default_rng(2).normal(size=(3, 2, 3))
    out, _ = mod.forward(p, {"x": x})
    for line, n in zip(lines, names):
        a = x[0] @ p[f"W_{n}_x"].T + p[f"b_{n}"]
        want = np.tanh(a) if "tanh" in line else 1 / (1 + np.exp(-a))
        np.testing.assert_allclose(out[n][0], want, rtol=1e-12, err_msg=n)
