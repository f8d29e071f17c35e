"""The adjoint pass alone: each op's gradient contributions are expression nodes (a rule's
vector-Jacobian product, summed over the axes it was broadcast along), with the run-time
condition of an optional one; printed here with readable names and pinned for elman.rnn."""
import pytest

from conftest import SPECS
from rnnspec import api, expr
from rnnspec.printer import show
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
        return [(t.value, readable(t.text), t.cond and show(t.cond), t.steps)
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
    assert show(reduce(g, step, shared, "all")) == "g.sum(axis=(0, 1))"
    assert show(reduce(g, step, shared, "step")) == "g.sum(axis=0)"
    assert reduce(g, step, step, "all") is g
    assert show(reduce(g, step, Ty("scalar"), "all")) == "g.sum()"


