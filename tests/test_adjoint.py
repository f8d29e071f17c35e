"""The adjoint pass alone: each op's gradient contributions are expression nodes (a rule's
vector-Jacobian product, summed over the axes it was broadcast along), with the run-time
condition of an optional one; printed here with readable names and pinned for elman.rnn."""
import pytest

from conftest import SPECS
from rnnspec import api, expr
from rnnspec.codegen.adjoint import Adjoint, reduce
from rnnspec.codegen.names import PLACEHOLDER
from rnnspec.codegen.values import Values
from rnnspec.check import PARAM, STEP, Ty
from rnnspec.pytext import MARK


@pytest.fixture(scope="module")
def elman():
    a = api.analyze((SPECS / "elman.rnn").read_text(), None, "elman.rnn")
    v = Values(a.schedule, "elman.rnn")
    adj = Adjoint(v)
    adj.backward()

    def readable(text):
        while PLACEHOLDER.search(text):
            text = PLACEHOLDER.sub(
                lambda m: v.bases[int(m.group(0).strip(MARK).split("_")[1])], text)
        return text

    def terms(name):
        ops = a.graph.ops
        i = next(k for k, op in ops.items() if (op.name or op.label) == name)
        return [(t.value, readable(t.text), t.cond, t.steps)
                for t in adj.terms_from(i, a.schedule.consumers[i], "all")]
    return terms


def test_weight_gradients_are_one_product_over_all_rows(elman):
    (value, text, cond, _), = elman("W")
    assert isinstance(value, expr.Bin) and value.op == "@"
    assert text == "_flat(d_a_s).T @ _flat(s[:T])" and cond is None
    assert [t[1] for t in elman("U")] == ["_flat(d_a_s).T @ _flat(x)"]
    assert [t[1] for t in elman("ba")] == ["d_a_s.sum(axis=(0, 1))"]  # the bias: summed


def test_a_state_gets_its_next_steps_and_the_output_layers_contributions(elman):
    assert [(t[1], t[3]) for t in elman("s")] == [("_rows(d_a_s, W)", 1),  # from s[t+1]
                                                  ("_rows(d_a_o, V)", 0)]


def test_optional_contributions_carry_their_run_time_condition(elman):
    (up, up_text, up_cond, _), (loss, loss_text, loss_cond, _) = elman("a_o")
    assert up_cond == "'o' in up" and loss_cond == "d_loss is not None"
    assert up_text == "o * (up['o'] - (up['o'] * o).sum(axis=-1, keepdims=True))"
    assert loss_text == "_cross_entropy_grad(o, y, w_loss_o, d_loss)"
    assert isinstance(loss, expr.Call)


def test_reduce_sums_over_the_broadcast_axes():
    g = expr.Name("g")
    step, shared = Ty("vec", None, tk=STEP), Ty("vec", None, tk=PARAM)
    assert expr.show(reduce(g, step, shared, "all")) == "g.sum(axis=(0, 1))"
    assert expr.show(reduce(g, step, shared, "step")) == "g.sum(axis=0)"
    assert reduce(g, step, step, "all") is g
    assert expr.show(reduce(g, step, Ty("scalar"), "all")) == "g.sum()"


def test_statements_are_nodes_printed_with_their_guard():
    add_up = expr.guarded("'h' in up", expr.assign(expr.Code("d_h[1:]"),
                                                  expr.subscript(expr.Name("up"), "'h'"), "+="))
    assert expr.show_stmt(add_up) == ["if 'h' in up:", "    d_h[1:] += up['h']"]
    assert expr.show_stmt(expr.guarded(None, expr.assign("d_x", expr.add("a", expr.neg("b"))))) \
        == ["d_x = a - b"]
    cond = expr.assign("d_a", expr.IfElse(expr.Name("g"), expr.Code("d_loss is not None"),
                                          expr.call("np.zeros", expr.Code("(T, B, n)"), "dtype")))
    assert expr.show_stmt(cond) == ["d_a = g if d_loss is not None else np.zeros((T, B, n), dtype)"]
    with pytest.raises(TypeError, match="not a statement"):
        expr.show_stmt(expr.Name("x"))


def test_a_carried_state_step_is_one_statement_with_its_note():
    mask = expr.subscript(expr.Name("mask"), "t")
    carried = expr.If(expr.Code("mask is not None"), (
        expr.assign("d_h[t]", expr.mul(expr.Invert(mask), expr.Code("d_h[t + 1]")), "+="),
        expr.assign("d_h[t + 1]", mask, "*=")), "past its end, the state was carried over")
    assert expr.show_stmt(carried) == [
        "if mask is not None:  # past its end, the state was carried over",
        "    d_h[t] += ~mask[t] * d_h[t + 1]",
        "    d_h[t + 1] *= mask[t]"]
    empty = expr.assign("d_x", expr.call("np.empty", expr.tuple_of("T", "B", "n"), "dtype"))
    assert expr.show_stmt(empty) == ["d_x = np.empty((T, B, n), dtype)"]
    assert expr.show(expr.tuple_of("n")) == "(n,)"
