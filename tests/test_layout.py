"""The layout pass alone: where every value lives and what the cache keeps, decided before any
code is written; its printed plan pinned per spec (tests/golden/plans, one file per spec, the
way sqlglot pins each optimizer pass), and `rnnspec plan`."""
import re
import subprocess
import sys

import pytest

import rnnspec
from conftest import ROOT, SPECS, spec_paths
from rnnspec import api, codegen, layout
from rnnspec.codegen import RUNTIME_BANNER
import rnnspec.codegen.values  # noqa: F401 - patched below

PLANS = ROOT / "tests" / "golden" / "plans"


def _analysis(path):
    return api.analyze(path.read_text(), None, path.name, base=path.parent)


def _plan_text(path):
    a = _analysis(path)
    lay = layout.plan_layout(a.schedule)
    return layout.show_layout(lay, layout.backward_reads(a.schedule, lay)) + "\n"


@pytest.mark.parametrize("path", spec_paths(), ids=lambda p: p.stem)
def test_golden_plan(path, update_golden):
    """Refresh with: pytest tests/test_layout.py --update-golden"""
    golden = PLANS / f"{path.stem}.txt"
    text = _plan_text(path)
    if update_golden:
        PLANS.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}; run pytest --update-golden"
    assert text == golden.read_text(), f"the plan of {path.stem} changed; review the diff " \
                                       "and refresh with --update-golden"


def _storage(stem):
    a = _analysis(SPECS / f"{stem}.rnn")
    lay = layout.plan_layout(a.schedule)
    by_name = {op.name: lay.storage[i] for i, op in a.graph.ops.items() if op.name}
    return a, lay, by_name


def test_lstm_gates_share_one_buffer_and_states_keep_one_initial_step():
    a, lay, where = _storage("lstm")
    assert [where[n] for n in ("f", "g", "q")] == ["view"] * 3
    assert where["C"] == where["h"] == "buffer"
    assert where["o"] == "array" and where["x"] == "leaf"
    h = a.graph.values["h"]
    assert a.schedule.padding[h] == (1, 0)
    (group,) = lay.groups[1]
    assert {a.graph.ops[i].name for i in group.acts} >= {"f", "g", "q"}
    assert [[a.graph.ops[act].op for act, _ in run] for run in group.runs] == \
        [["sigmoid"] * 3, ["tanh"]]


def test_values_used_once_are_inlined_and_step_variables_stay_in_their_step():
    a, lay, _ = _storage("elman")
    ops = a.graph.ops
    inline = {ops[i].label for i, kind in lay.storage.items() if kind == "inline"}
    assert {"U_x", "W_s_prev", "V_s"} <= inline
    _, lay, _ = _storage("lstm")
    assert any(kind == "step" for kind in lay.storage.values())  # h1_products, per step


def test_the_cache_keeps_exactly_what_the_backward_pass_reads():
    """The plan decides the cache; codegen checks that its backward reads nothing else.  Inputs
    that are only added need not be kept: their zero gradient is shaped from the dims."""
    text = ("dim n = 3\ninput x[t]: n\ninput c: n\nparam W: (n, n)\nstate h: n = zeros\n"
            "h[t] = tanh(W @ h[t-1] + x[t] + c)\n")
    a = api.analyze(text, None, "add.rnn")
    lay = layout.plan_layout(a.schedule)
    kept = {a.graph.ops[i].name for i in layout.backward_reads(a.schedule, lay)}
    assert kept == {"W", "h"}  # (W is read from params, not kept in the cache)
    source = rnnspec.generate(text, None, "add.rnn")
    assert "cache['h'] = " in source and "cache['x']" not in source and "cache['c']" not in source
    mod = api.load_module(source, "add_spec")
    import numpy as np
    params = mod.init_params(seed=1)
    inputs = {"x": np.ones((4, 2, 3)), "c": np.ones((2, 3))}
    _, cache = mod.forward(params, inputs)
    grads = mod.backward(params, cache)  # no upstream gradient: zero gradients of x and c
    assert grads["inputs"]["x"].shape == (4, 2, 3) and not grads["inputs"]["x"].any()
    assert grads["inputs"]["c"].shape == (2, 3)


def test_a_plan_that_drops_a_read_value_fails_loudly(monkeypatch):
    monkeypatch.setattr(codegen.values, "backward_reads", lambda s, lay, *_: set())
    with pytest.raises(AssertionError, match="layout plan does not keep"):
        rnnspec.generate((SPECS / "elman.rnn").read_text(), None, "elman.rnn")


def test_cli_plan_prints_the_plan(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rnnspec", "plan", str(SPECS / "lstm.rnn")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("plan of lstm.rnn (in=3, hidden=5, out=4")
    assert r.stdout.split("\n", 1)[1] == _plan_text(SPECS / "lstm.rnn")
    bad = tmp_path / "bad.rnn"
    bad.write_text("dim n = 3\ninput x[t]: n\nh[t] = tanh(x[t] + zz[t])\n")
    r = subprocess.run([sys.executable, "-m", "rnnspec", "plan", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.rnn:3:" in r.stderr and "zz" in r.stderr


def test_a_state_computed_for_all_steps_has_a_gradient_buffer():
    """teacher_forcing.rnn with the output state o a plain affine map (its softmax a value p):
    o is computed for all steps at once, and its gradient still scatters up['final']['o'] into
    its last step (a buffer shaped from the dims, or made like o when o is read anyway).  Was:
    AssertionError, the backward pass reads ['o'] that the plan did not keep."""
    text = (SPECS / "teacher_forcing.rnn").read_text()
    text = text.replace("o[t] = softmax(c + V @ h[t])", "o[t] = c + V @ h[t]\np[t] = softmax(o[t])")
    text = text.replace("cross_entropy(o[t], y[t])", "cross_entropy(p[t], y[t])")
    assert "p[t] = softmax(o[t])" in text and "cross_entropy(p[t]" in text
    mod = api.load_module(rnnspec.generate(text, None, "tf3.rnn"), "tf3")
    report = rnnspec.gradcheck(mod, seed=0)
    assert report.ok, report


def test_a_gradient_buffer_keeps_no_value_of_its_own():
    """jordan.rnn: the output's pre-activation a_o gets a gradient buffer (read after its loop)
    but no rule reads a_o, so the buffer is shaped from the dims and the cache does not keep
    a_o.  In every spec, a buffer made like a value (np.zeros_like) is made like a parameter
    or like a value the backward pass reads anyway."""
    a, lay, _ = _storage("jordan")
    a_o = next(i for i, op in a.graph.ops.items() if op.label == "a_o")
    assert a_o in layout.gradient_buffers(a.schedule)
    assert a_o not in layout.backward_reads(a.schedule, lay)
    source = rnnspec.generate((SPECS / "jordan.rnn").read_text(), None, "jordan.rnn")
    assert "d_a_o = np.zeros((T, B, n_out), dtype)" in source
    assert "cache['a_o']" not in source and "np.zeros_like(a_o)" not in source
    for path in sorted(SPECS.glob("*.rnn")):
        source = rnnspec.generate(path.read_text(), None, path.name, base=SPECS)
        cached = set(re.findall(r"cache\['(\w+)'\] = ", source))
        params = set(re.findall(r"^    (\w+) = params\['", source, re.M))
        liked = set(re.findall(r"np\.zeros_like\((\w+)\)", source.split(RUNTIME_BANNER)[0]))
        assert liked <= cached | params, (path.name, liked - cached - params)
