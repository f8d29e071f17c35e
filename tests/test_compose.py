"""Composition: a block used twice is two sub-networks with their own parameters, identical to
the same network written out by hand; bad uses give positioned errors."""
import numpy as np
import pytest

import rnnspec
from conftest import SPECS

HAND_WRITTEN = """
dim in = 3
dim hidden = 5
dim out = 4
input x[t]: in
target y[t]: class(out)
state h1: hidden = zeros
state h1_C: hidden = zeros
h1_f[t]: hidden = gate(x[t], h1[t-1])
h1_g[t]: hidden = gate(x[t], h1[t-1])
h1_q[t]: hidden = gate(x[t], h1[t-1])
h1_C[t] = h1_f[t] * h1_C[t-1] + h1_g[t] * tanh(affine(x[t], h1[t-1], name=h1_c))
h1[t] = tanh(h1_C[t]) * h1_q[t]
state h2: hidden = zeros
state h2_C: hidden = zeros
h2_f[t]: hidden = gate(h1[t], h2[t-1])
h2_g[t]: hidden = gate(h1[t], h2[t-1])
h2_q[t]: hidden = gate(h1[t], h2[t-1])
h2_C[t] = h2_f[t] * h2_C[t-1] + h2_g[t] * tanh(affine(h1[t], h2[t-1], name=h2_c))
h2[t] = tanh(h2_C[t]) * h2_q[t]
o[t]: out = softmax(affine(h2[t]))
loss = cross_entropy(o[t], y[t])
"""


def test_block_uses_equal_the_hand_written_network():
    composed = rnnspec.compile_file(SPECS / "stacked_lstm.rnn")
    hand = rnnspec.compile_source(HAND_WRITTEN, name="stacked_by_hand")
    assert list(composed.PARAMS) == list(hand.PARAMS)
    assert composed.PARAMS == hand.PARAMS
    params = composed.init_params(seed=3)
    rng = np.random.default_rng(0)
    x = {"x": rng.normal(size=(6, 2, 3))}
    y = {"y": rng.integers(0, 4, (6, 2))}
    a, ca = composed.forward(params, x, y)
    b, cb = hand.forward(params, x, y)
    assert a["loss"] == b["loss"]
    np.testing.assert_array_equal(a["o"], b["o"])
    ga, gb = composed.backward(params, ca), hand.backward(params, cb)
    for k in params:
        np.testing.assert_array_equal(ga["params"][k], gb["params"][k])


def test_two_uses_have_their_own_parameters():
    mod = rnnspec.compile_file(SPECS / "stacked_lstm.rnn")
    assert "W_h1_f_x" in mod.PARAMS and "W_h2_f_h1" in mod.PARAMS
    assert mod.PARAMS["W_h1_f_x"] == ("hidden", "in")
    assert mod.PARAMS["W_h2_f_h1"] == ("hidden", "hidden")


def test_block_using_a_block_and_an_expression_argument():
    src = """
        dim n = 3
        input x[t]: n
        block cell(u) -> h {
            state h: n = zeros
            h[t] = tanh(affine(u[t], h[t-1]))
        }
        block two(u) -> b {
            a[t] = cell(u[t])
            b[t] = cell(a[t])
        }
        z[t] = two(x[t] * 2)
    """
    mod = rnnspec.compile_source(src)
    assert {"W_z_a_z_u", "W_z_a_z_a", "W_z_z_a", "W_z_z"} <= set(mod.PARAMS)
    assert "z_u" in mod.OUTPUTS  # the expression argument, named for the use
    report = rnnspec.gradcheck(mod, T=4)
    assert report.ok, report.table()


HEAD = "dim n = 3\ninput x[t]: n\n"
BLOCK = "block cell(u) -> h {\n  state h: n = zeros\n  h[t] = tanh(affine(u[t], h[t-1]))\n}\n"


@pytest.mark.parametrize("text, line, column, message, hint", [
    (HEAD + BLOCK + "h1[t] = cel(x[t])\n", 7, 9, "unknown function or block 'cel'",
     "did you mean 'cell'?"),
    (HEAD + BLOCK + "h1[t] = cell(x[t], x[t])\n", 7, 9, "block 'cell' takes 1 argument(s)",
     "cell(u[t])"),
    (HEAD + BLOCK + "h1[t] = tanh(cell(x[t]))\n", 7, 14, "must be the whole right-hand side",
     "h[t] = cell(...)"),
    (HEAD + "block cell(u) -> k {\n  h[t] = tanh(u[t])\n}\nh1[t] = cell(x[t])\n", 3, 1,
     "block 'cell' has no value 'k' to return", "k[t] = ..."),
    (HEAD + "block cell(u) -> h {\n  loss = squared_error(h[t], u[t])\n  h[t] = u[t]\n}\n", 4, 3,
     "cannot contain a loss statement", "top level"),
    (HEAD + "block cell(u) -> h {\n  h[t] = tanh(u[t] + W @ u[t])\n}\nh1[t] = cell(x[t])\n", 4, 22,
     "undefined name 'W'", ""),
], ids=["unknown-block", "argument-count", "nested-use", "missing-output", "loss-in-block",
        "error-inside-block-points-into-it"])
def test_bad_block_uses(text, line, column, message, hint):
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate(text, filename="bad.rnn")
    e = info.value
    assert (e.line, e.column) == (line, column), str(e)
    assert message in e.message, str(e)
    assert hint in e.hint, str(e)


@pytest.mark.parametrize("name", ["tanh", "attend", "cross_entropy"])
def test_a_block_cannot_take_a_builtin_name(name, tmp_path):
    """It would silently replace the built-in in every call of the spec."""
    body = "block NAME(u) -> h {\n    state h: n = zeros\n    h[t] = sigmoid(u[t] + h[t-1])\n}\n"
    src = "dim n = 3\ninput x[t]: n\n" + body.replace("NAME", name) + f"g[t] = {name}(x[t])\n"
    with pytest.raises(rnnspec.SpecError, match=f"a block cannot be named '{name}'"):
        rnnspec.compile_source(src, name="bad")
    (tmp_path / "cell.rnn").write_text("dim n = 3\ninput x[t]: n\nstate h: n = zeros\n"
                                       "h[t] = tanh(x[t] + h[t-1])\n")
    (tmp_path / "use.rnn").write_text(f'dim n = 3\ninput x[t]: n\nimport "cell.rnn" as {name} '
                                      f'-> h\ng[t] = {name}(x[t])\n')
    with pytest.raises(rnnspec.SpecError, match=f"a block cannot be named '{name}'"):
        rnnspec.compile_file(tmp_path / "use.rnn")
