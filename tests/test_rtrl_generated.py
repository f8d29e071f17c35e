"""The generated rtrl (compile --rtrl, issue 11 part 3): forward-mode sensitivities from the JVP
rules, carried with the forward pass.  It equals BPTT (the generated backward) for every
one-axis forward spec, its per-step gradients are differences of BPTT runs, and the specs it
cannot follow are refused at compile time with a positioned reason."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

import rnnspec
from rnnspec.cli import main
from rnnspec.errors import SpecError
from rnnspec.gradcheck import random_problem

SPECS = Path(__file__).resolve().parent.parent / "specs"
FOLLOWED = ["elman", "jordan", "lstm", "gru", "lstm_peephole", "leaky", "skip", "deep",
            "stacked_lstm", "stacked_gru", "stacked_lstm_lib", "many_to_one", "one_to_many",
            "h0_from_input", "linear", "char_lm"]
REFUSED = {"bidirectional": (31, "runs a recurrence backward in time"),
           "bigru": (22, "runs a recurrence backward in time"),
           "encdec": (17, "second time axis"),
           "hierarchical": (23, "second time axis"),
           "attention_dot": (18, "second time axis"),
           "self_attention": (30, "`attn_weights` has no forward-mode rule"),
           "teacher_forcing": (26, "feeds a value back"),
           "generate": (24, "feeds a value back"),
           "torch_lstm": (1, "it has no loss")}
_MODULES = {}


def module(name, text=None):
    if name not in _MODULES:
        if text is None:
            _MODULES[name] = rnnspec.compile_file(SPECS / f"{name}.rnn", rtrl=True)
        else:
            _MODULES[name] = rnnspec.compile_source(text, name=name, base=SPECS, rtrl=True)
    return _MODULES[name]


def assert_equals_bptt(mod, p, x, y, s0, lengths=None):
    loss, g = mod.rtrl(p, x, y, s0, lengths)
    want_loss, want = mod.loss_and_grad(p, x, y, s0, None, lengths)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert list(g) == ["params"] and list(g["params"]) == list(want["params"])
    for n, v in want["params"].items():
        assert g["params"][n].shape == v.shape
        assert np.abs(g["params"][n] - v).max() <= 1e-10 * np.abs(v).max(), n


@pytest.mark.parametrize("name", FOLLOWED)
@pytest.mark.parametrize("lengths", [None, [6, 3, 1]])
def test_generated_rtrl_equals_bptt(name, lengths):
    mod = module(name)
    p, x, y, s0, _ = random_problem(mod, None, 6, 3, 0, lengths)
    assert_equals_bptt(mod, p, x, y, s0, lengths)


def test_computed_initial_state_given_or_not():
    """h0_from_input: h starts from tanh(Ri @ x) (its sensitivities to Ri carried from step
    0) unless state0 gives it (then Ri reaches the loss only through nothing: zero)."""
    mod = module("h0_from_input")
    p, x, y, s0, _ = random_problem(mod, None, 5, 2, 3)
    assert "h" not in s0
    assert_equals_bptt(mod, p, x, y, s0)
    s0 = {**s0, "h": np.random.default_rng(4).normal(size=(2, 5))}
    assert_equals_bptt(mod, p, x, y, s0)
    assert not mod.rtrl(p, x, y, s0)[1]["params"]["Ri"].any()


def test_chosen_loss_steps_and_float32():
    """The loss weights are known before the steps, so chosen loss steps (which the library
    rtrl refuses: a chunk would not split them) are followed exactly."""
    text = (SPECS / "elman.rnn").read_text().replace(
        "loss = cross_entropy(o[t], y[t])", "loss = cross_entropy(o[t], y[t]) at t = 2, end")
    mod = module("elman_at", text)
    p, x, y, s0, _ = random_problem(mod, None, 7, 3, 5, [7, 4, 2])
    assert_equals_bptt(mod, p, x, y, s0, [7, 4, 2])
    mod = module("elman")
    p, x, y, s0, _ = random_problem(mod, None, 6, 2, 6)
    p32 = {n: v.astype(np.float32) for n, v in p.items()}
    x32 = {n: v.astype(np.float32) for n, v in x.items()}
    loss, g = mod.rtrl(p32, x32, y)
    want = mod.loss_and_grad(p32, x32, y)[1]["params"]
    for n in want:
        assert g["params"][n].dtype == np.float32
        assert np.allclose(g["params"][n], want[n], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["elman", "lstm", "skip", "h0_from_input"])
def test_per_step_gradients_are_each_steps_loss(name):
    """steps[t] is the gradient of step t's loss alone: the loss of the first t + 1 steps
    minus that of the first t, each by BPTT on the shorter run; they sum to the total."""
    mod = module(name)
    T = 5
    p, x, y, s0, _ = random_problem(mod, None, T, 2, 1)
    loss, g, steps = mod.rtrl(p, x, y, s0, per_step=True)
    assert len(steps) == T

    def upto(k):
        if k == 0:
            return {n: np.zeros_like(v) for n, v in p.items()}
        cut = {n: v[:k] if mod.INPUTS[n]["kind"] == "sequence" else v for n, v in x.items()}
        return mod.loss_and_grad(p, cut, {n: v[:k] for n, v in y.items()}, s0)[1]["params"]
    for t in range(T):
        a, b = upto(t + 1), upto(t)
        for n in p:
            assert np.allclose(steps[t][n], a[n] - b[n], rtol=1e-10, atol=1e-12), (t, n)
    for n in p:
        assert np.allclose(sum(s[n] for s in steps), g["params"][n], rtol=1e-12, atol=1e-13)


def test_per_sequence_loss_counts_at_each_sequences_end():
    """many_to_one's loss of h[end]: a sequence's term arrives at its last step, so steps[t]
    is the BPTT gradient of the sequences of length t + 1 alone."""
    mod = module("many_to_one")
    lengths = [4, 2, 4]
    p, x, y, s0, _ = random_problem(mod, None, 4, 3, 2, lengths)
    _, g, steps = mod.rtrl(p, x, y, s0, lengths, per_step=True)
    for t in range(4):
        rows = [b for b, n in enumerate(lengths) if n == t + 1]
        for n in p:
            if not rows:
                assert not steps[t][n].any()
                continue
            want = mod.loss_and_grad(p, {"x": x["x"][:, rows]}, {"y": y["y"][rows]},
                                     {k: v[rows] for k, v in s0.items()}, None,
                                     [lengths[b] for b in rows])[1]["params"][n]
            assert np.allclose(steps[t][n], want, rtol=1e-10, atol=1e-12), (t, n)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_at_compile_time_with_a_position(name):
    line, why = REFUSED[name]
    path = SPECS / f"{name}.rnn"
    with pytest.raises(SpecError) as exc:
        rnnspec.compile_file(path, rtrl=True)
    text = str(exc.value)
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: error: RTRL \(compile --rtrl\) cannot "
                     rf"follow this spec: .*{re.escape(why)}", text), text
    assert "^" in text and "hint:" in text
    rnnspec.compile_file(path)  # (without --rtrl: compiled as before)


def test_a_chosen_step_other_than_the_end_is_refused():
    text = (SPECS / "many_to_one.rnn").read_text().replace("V @ h[end]", "V @ h[end-1]")
    with pytest.raises(SpecError, match=r"m21.rnn:\d+:\d+: error: RTRL .*step end-1"):
        rnnspec.generate(text, filename="m21.rnn", rtrl=True)


def test_cli_refusal_exits_2_without_traceback(capsys, tmp_path):
    out = tmp_path / "bi.py"
    assert main(["compile", str(SPECS / "bidirectional.rnn"), "--rtrl", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bidirectional.rnn:31:" in err and "Traceback" not in err and not out.exists()
    assert main(["compile", str(SPECS / "elman.rnn"), "--rtrl", "-o", str(out)]) == 0
    assert "def rtrl(" in out.read_text()
    assert re.search(r"rtrl ok: equals BPTT to \S+ \(relative\)", capsys.readouterr().err)


def test_module_text_imports_only_numpy_is_deterministic_and_unchanged_without_rtrl():
    text = (SPECS / "lstm.rnn").read_text()
    with_rtrl = rnnspec.generate(text, filename="lstm.rnn", rtrl=True)
    assert with_rtrl == rnnspec.generate(text, filename="lstm.rnn", rtrl=True)
    imports = {a.name for n in ast.walk(ast.parse(with_rtrl))
               if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in getattr(n, "names", [])} | {
        n.module for n in ast.walk(ast.parse(with_rtrl)) if isinstance(n, ast.ImportFrom)}
    assert imports == {"numpy"}
    without = rnnspec.generate(text, filename="lstm.rnn")
    assert "def rtrl(" not in without and "def _seed" not in without
    golden = Path(__file__).parent / "golden" / "lstm.py"
    if golden.exists():
        assert without == golden.read_text()
    # a weight's seed is structured (v in row i), never the identity of the matrix
    assert "_seed(W_f_h)" not in with_rtrl and "_seed_matvec(h_prev, n_hidden)" in with_rtrl
    assert "# C[t] = f[t] * C[t-1] + g[t] * tanh(affine(x[t], h[t-1], name=c))  [line 24]" \
        in with_rtrl


def test_bad_arguments_are_named():
    mod = module("elman")
    p, x, y, s0, _ = random_problem(mod, None, 4, 2, 0)
    with pytest.raises(ValueError, match="rtrl needs targets"):
        mod.rtrl(p, x, None)
    with pytest.raises(ValueError, match="'x'"):
        mod.rtrl(p, {"x": x["x"][:, :, :2]}, y)
