"""Token inputs: ``input x[t]: class(V)`` read through ``embed(x[t], n)`` and ``onehot(x[t])``:
the check's positioned refusals, the generated validation of the indices, the embedding's
gradient (gradcheck, BPTT against the generated rtrl) and specs/char_lm.rnn."""
from pathlib import Path

import numpy as np
import pytest

import rnnspec
from rnnspec import SpecError
from rnnspec.gradcheck import gradcheck, random_problem

SPECS = Path(__file__).resolve().parent.parent / "specs"
HEAD = ("dim V = 5\ndim n = 3\ndim hidden = 4\ninput x[t]: class(V)\ninput u[t]: n\n"
        "target y[t]: class(V)\nstate h: hidden\n")
TAIL = "o[t]: V = softmax(affine(h[t]))\nloss = cross_entropy(o[t], y[t])\n"


def _module(body, name="tok"):
    return rnnspec.compile_source(HEAD + body + TAIL, name=name)


def _error(body):
    with pytest.raises(SpecError) as info:
        rnnspec.generate(HEAD + body + TAIL, filename="tok.rnn")
    d = info.value.diagnostics[0]
    return (d.line, d.column), d.message, d.hint


@pytest.mark.parametrize("body,where,message,hint", [
    ("h[t] = tanh(affine(x[t], h[t-1]))\n", (8, 20),
     "'x' is a class input (indices, not a vector): read it through embed() or onehot()",
     "embed(x[t], 16) or onehot(x[t])"),
    ("h[t] = tanh(affine(embed(u[t], 2), h[t-1]))\n", (8, 26),
     "embed() picks rows by class indices, but `u[t]` is not a class input", "class(V)"),
    ("h[t] = tanh(affine(onehot(u[t]), h[t-1]))\n", (8, 27),
     "onehot() turns class inputs and targets into vectors, but `u[t]` is neither",
     "onehot(x[t]) of input x[t]: class(K)"),
    ("h[t] = tanh(affine(embed(x[t-1], 2), h[t-1]))\n", (8, 26),
     "embed() reads a class input at the step being computed, such as x[t]", "embed(x[t])"),
    ("h[t] = tanh(affine(embed(x[t]), h[t-1]))\n", (8, 20),
     "embed() takes a class input and the size of its vectors", "embed(x[t], 16)"),
    ("e[t]: n = embed(x[t], 2)\nh[t] = tanh(affine(e[t], h[t-1]))\n", (8, 11),
     "embed() gives vectors of size 2 but 'e' has size n", "make the sizes agree"),
    ("h[t] = tanh(affine(x[t] * 2, h[t-1]))\n", (8, 20), "'x' is a class input", "embed("),
])
def test_misuse_of_class_inputs_is_refused_with_a_position(body, where, message, hint):
    got_where, got_message, got_hint = _error(body)
    assert got_where == where
    assert message in got_message
    assert hint in got_hint


def test_a_class_input_needs_a_time_axis():
    with pytest.raises(SpecError) as info:
        rnnspec.generate("dim V = 3\ninput c: class(V)\n", filename="s.rnn")
    d = info.value.diagnostics[0]
    assert (d.line, d.column) == (2, 1)
    assert "class input 'c' needs a time axis" in d.message
    assert "input c[t]: class(V)" in d.hint


def test_onehot_of_a_class_input_is_the_identity_rows_and_backward_has_no_input_gradient():
    mod = _module("h[t] = tanh(affine(onehot(x[t]), u[t], h[t-1]))\n")
    assert mod.INPUTS["x"]["type"] == "class" and "type" not in mod.INPUTS["u"]
    params, inputs, targets, state0, _ = random_problem(mod, T=4, batch=2, seed=1)
    assert inputs["x"].shape == (4, 2) and inputs["x"].dtype.kind == "i"
    out, cache = mod.forward(params, inputs, targets, state0, 4)
    grads = mod.backward(params, cache)
    assert set(grads["inputs"]) == {"u"}  # class indices have no gradient: left out
    # the same network with the one-hot vectors given as a real input
    real = rnnspec.compile_source(HEAD.replace("input x[t]: class(V)", "input x[t]: V") +
                                  "h[t] = tanh(affine(x[t], u[t], h[t-1]))\n" + TAIL, name="r")
    as_real = {**inputs, "x": np.eye(5)[inputs["x"]]}
    p_real = {("W_h_x" if k == "W_h_1" else k): v for k, v in params.items()}  # onehot's weight
    out_r, cache_r = real.forward(p_real, as_real, targets, state0, 4)
    np.testing.assert_allclose(out["loss"], out_r["loss"], rtol=1e-12)
    np.testing.assert_allclose(grads["params"]["W_h_1"],
                               real.backward(p_real, cache_r)["params"]["W_h_x"], rtol=1e-12)
    report = gradcheck(mod, T=4, batch=2, seed=0)
    assert report.ok, report
    assert {r.group + "/" + r.name for r in report.rows} >= {"inputs/u", "params/W_h_1"}
    assert "inputs/x" not in {r.group + "/" + r.name for r in report.rows}


def test_out_of_range_or_fractional_indices_are_refused_by_name():
    mod = rnnspec.compile_file(SPECS / "char_lm.rnn")
    params, inputs, targets, state0, _ = random_problem(mod, T=3, batch=2, seed=0)
    for bad, text in ((7, r"inputs\['x'\] holds class indices outside 0..6"),
                      (-1, r"inputs\['x'\] holds class indices outside 0..6"),
                      (0.5, r"inputs\['x'\] must hold integer class indices")):
        x = inputs["x"].astype(float)
        x[1, 0] = bad
        with pytest.raises(ValueError, match=text):
            mod.forward(params, {"x": x}, targets, state0, 3)
    with pytest.raises(ValueError, match=r"inputs\['x'\]"):  # a vector per step is not indices
        mod.forward(params, {"x": np.zeros((3, 2, 7), int)}, targets, state0, 3)


def test_char_lm_gradcheck_covers_the_embedding():
    mod = rnnspec.compile_file(SPECS / "char_lm.rnn")
    assert mod.PARAMS["E_x"] == ("vocab", "emb") and mod.INITS["E_x"] == ("normal", 0.1)
    report = gradcheck(mod, T=5, batch=3, seed=2)
    assert report.ok, report
    row = next(r for r in report.rows if r.group == "params" and r.name == "E_x")
    assert row.checked == 7 * 4  # every entry of the embedding


def test_char_lm_embedding_gradient_adds_repeated_characters():
    """A character read at several steps gets the sum of the gradients of its steps: the
    embedding's gradient equals the one of a network fed E[x] as a real input, summed per
    character by hand."""
    mod = rnnspec.compile_file(SPECS / "char_lm.rnn")
    params, inputs, targets, state0, _ = random_problem(mod, T=6, batch=2, seed=3)
    inputs["x"] = np.array([[1, 1], [1, 4], [4, 1], [1, 0], [0, 1], [1, 1]])  # 1 repeated
    _, cache = mod.forward(params, inputs, targets, state0, 6)
    dE = mod.backward(params, cache)["params"]["E_x"]
    real_text = (SPECS / "char_lm.rnn").read_text().replace(
        "input x[t]: class(vocab)", "input x[t]: emb").replace(
        "e[t]: emb = embed(x[t], emb)", "e[t]: emb = identity(x[t])")
    real = rnnspec.compile_source(real_text, name="char_lm_real")
    p = {k: v for k, v in params.items() if k != "E_x"}
    _, cache_r = real.forward(p, {"x": params["E_x"][inputs["x"]]}, targets, state0, 6)
    dx = real.backward(p, cache_r)["inputs"]["x"]
    want = np.zeros_like(dE)
    for t in range(6):
        for b in range(2):
            want[inputs["x"][t, b]] += dx[t, b]
    np.testing.assert_allclose(dE, want, rtol=1e-12, atol=1e-15)
    assert np.all(dE[[2, 3, 5, 6]] == 0)  # characters never read


def test_char_lm_generated_rtrl_equals_bptt():
    mod = rnnspec.compile_file(SPECS / "char_lm.rnn", rtrl=True)
    params, inputs, targets, state0, _ = random_problem(mod, T=5, batch=2, seed=4)
    loss, grads = mod.rtrl(params, inputs, targets, state0, [5, 3])
    want_loss, want = mod.loss_and_grad(params, inputs, targets, state0, None, [5, 3])
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    for k in want["params"]:
        np.testing.assert_allclose(grads["params"][k], want["params"][k], rtol=1e-9, atol=1e-12)


def test_char_lm_against_torch_embedding_and_lstm():
    """specs/char_lm.rnn is nn.Embedding then nn.LSTM (gates i, f, g, o = our g, f, c, q) then a
    linear softmax layer: the same summed cross-entropy and gradients, E_x's included."""
    torch = pytest.importorskip("torch", reason="torch is the test-only oracle")
    mod = rnnspec.compile_file(SPECS / "char_lm.rnn")
    params, inputs, targets, _, _ = random_problem(mod, T=6, batch=3, seed=5)
    inputs["x"][:, 0] = 2  # a character repeated at every step of a sequence
    loss, grads = mod.loss_and_grad(params, inputs, targets)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    emb = torch.nn.Embedding(7, 4).double()
    lstm = torch.nn.LSTM(4, 6).double()
    with torch.no_grad():
        emb.weight.copy_(t["E_x"])
    order = ("g", "f", "c", "q")
    lstm.weight_ih_l0 = torch.nn.Parameter(torch.cat([t[f"W_{k}_e"] for k in order]))
    lstm.weight_hh_l0 = torch.nn.Parameter(torch.cat([t[f"W_{k}_h"] for k in order]))
    lstm.bias_ih_l0 = torch.nn.Parameter(torch.cat([t[f"b_{k}"] for k in order]))
    lstm.bias_hh_l0 = torch.nn.Parameter(torch.zeros(24, dtype=torch.float64))
    h, _ = lstm(emb(torch.tensor(inputs["x"])))
    logits = h @ t["W_o_h"].T + t["b_o"]
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 7),
                                             torch.tensor(targets["y"]).reshape(-1),
                                             reduction="sum")
    want.backward()
    np.testing.assert_allclose(loss, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grads["params"]["E_x"], emb.weight.grad.numpy(), rtol=1e-10,
                               atol=1e-13)
    for j, k in enumerate(order):
        rows = slice(6 * j, 6 * j + 6)
        np.testing.assert_allclose(grads["params"][f"W_{k}_e"],
                                   lstm.weight_ih_l0.grad[rows].numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(grads["params"][f"b_{k}"],
                                   lstm.bias_ih_l0.grad[rows].numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads["params"]["W_o_h"], t["W_o_h"].grad.numpy(), rtol=1e-10)


def test_check_summary_shows_the_class_input_and_the_embedding_it_creates(capsys):
    from rnnspec.cli import main
    assert main(["check", str(SPECS / "char_lm.rnn")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.split("\n") if line[:1].isalpha()}
    assert "input" in rows["x"] and "class(vocab=7)" in rows["x"]
    assert " 28 " in rows["e"]  # E_x: vocab x emb = 7 x 4
    assert "normal(0.1)" in rows["E_x"]
