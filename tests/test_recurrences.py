"""rnnspec.recurrences: the cycles of a graph of reads with typed delays, and its two users'
graphs (the values' references, found by the check; the ops, scheduled into loops)."""
from pathlib import Path

import pytest

import rnnspec
from rnnspec import recurrences
from rnnspec.api import analyze
from rnnspec.delays import ATTEND, CHOSEN, INIT, SAME, Step
from rnnspec.recurrences import Recurrence, analyse

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.rnn"))

HEAD = """dim in = 3
dim hidden = 4
input x[t]: in
target y[t]: class(in)
param U: (hidden, in)
param W: (hidden, hidden)
param V: (in, hidden)
"""

DELAY_TWO = HEAD + """state h: hidden = zeros
h[t] = tanh(U @ x[t] + W @ h[t-2])
o[t] = softmax(V @ h[t])
loss = cross_entropy(o[t], y[t])
"""

BOTH_SIGNS = HEAD + """state a: hidden = zeros
state b: hidden = zeros
a[t] = tanh(U @ x[t] + W @ b[t-1])
b[t] = tanh(W @ a[t+1])
o[t] = softmax(V @ a[t])
loss = cross_entropy(o[t], y[t])
"""


def test_a_cycle_through_a_delay_of_two_steps_is_a_forward_recurrence():
    a = analyze(DELAY_TWO, filename="d2.rnn")
    values = a.model.cycles
    assert list(values.recurrences.values()) == [Recurrence(("h",), frozenset({1}))]
    assert values.recurrent == {"h"}
    assert values.late() == {"h", "o"}  # o is computed from the recurrence
    assert values.same_step_cycle() is None and values.whole_sequence_cycles() == []
    # the ops: the recurrence holds h's product with W, the sum and tanh, not U @ x[t]
    g = a.graph
    (rec,) = g.cycles.recurrences.values()
    assert rec.direction == 1
    names = {g.ops[i].name for i in rec.members} - {None}
    assert names == {"h"}
    ops = {g.ops[i].op for i in rec.members}
    assert ops == {"tanh", "add", "matvec"}
    projection = next(i for i, op in g.ops.items() if op.op == "matvec" and
                      g.ops[op.args[1][0]].name == "x")
    assert projection not in rec.members
    # the schedule makes it one loop, forward, padded by two initial steps
    (loop,) = [s for s in a.schedule.stages if s.kind == "loop"]
    assert loop.direction == 1 and set(rec.members) <= set(loop.ops)
    assert a.schedule.padding[g.values["h"]] == (2, 0)


def test_a_recurrence_with_both_signs_has_no_direction_and_is_refused():
    cycles = analyse([("a", "b", Step(-1)), ("b", "a", Step(1)), ("x", "a", SAME)])
    (rec,) = cycles.recurrences.values()
    assert rec == Recurrence(("a", "b"), frozenset({1, -1})) and rec.direction == 0
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate(BOTH_SIGNS, filename="both.rnn")
    assert info.value.message == ("the recurrence through a, b depends on both earlier steps "
                                  "(t-d) and later steps (t+d)")
    assert (info.value.line, info.value.column) == (10, 1)


def test_direction_comes_from_the_signs_of_the_steps_on_the_cycle():
    backward = analyse([("g", "g", Step(-2)), ("x", "g", SAME)])
    assert [r.direction for r in backward.recurrences.values()] == [-1]
    # a later step read from outside the cycle does not give it a direction
    mixed_outside = analyse([("h", "h", Step(1)), ("h", "o", Step(-1)), ("o", "p", Step(3))])
    assert [r.signs for r in mixed_outside.recurrences.values()] == [frozenset({1})]
    assert mixed_outside.late() == {"h", "o", "p"}
    loose = analyse([("h", "o", Step(-1)), ("x", "h", SAME)])
    assert loose.recurrences == {} and loose.late() == set()


def test_same_step_cycles_are_found_only_through_same_step_reads():
    through_delay = analyse([("a", "b", SAME), ("b", "a", Step(1))])
    assert through_delay.same_step_cycle() is None
    assert through_delay.recurrent == {"a", "b"}
    cycle = analyse([("x", "a", SAME), ("a", "b", SAME), ("b", "c", SAME), ("c", "a", SAME),
                     ("c", "a", Step(1))]).same_step_cycle()
    assert cycle is not None and sorted(cycle) == ["a", "b", "c"]
    assert analyse([("a", "a", SAME)]).same_step_cycle() == ["a"]


def test_whole_sequence_cycles_are_reads_of_a_whole_sequence_on_a_cycle_in_read_order():
    reads = [("x", "h", SAME), ("h", "o", CHOSEN), ("o", "h", SAME), ("h", "h", Step(1)),
             ("h", "p", CHOSEN), ("c", "s", INIT), ("s", "c", SAME), ("h", "o", CHOSEN),
             ("k", "k", ATTEND)]
    cycles = analyse(reads)
    assert cycles.whole_sequence_cycles() == [("h", "o", CHOSEN), ("c", "s", INIT),
                                              ("k", "k", ATTEND)]
    assert cycles.path("o", "h") == ["o", "h"]
    assert cycles.same_step_cycle() is None


def test_the_graph_holds_each_read_once_with_its_set_of_delays():
    cycles = analyse([("a", "b", SAME), ("a", "b", Step(2)), ("a", "b", SAME)], nodes=["z"])
    assert list(cycles.graph.nodes) == ["z", "a", "b"]
    assert cycles.graph.edges["a", "b"]["delays"] == {SAME, Step(2)}
    assert cycles.reads == [("a", "b", SAME), ("a", "b", Step(2))]
    assert recurrences.steps_of([SAME, Step(2), Step(-1), CHOSEN]) == {0, 2, -1}
    assert recurrences.signs_of([SAME, Step(2), Step(3), INIT]) == {1}


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_the_ops_recurrences_are_the_loops_and_refine_the_values_recurrences(spec):
    a = analyze(spec.read_text(encoding="utf-8"), filename=spec.name, base=spec.parent)
    g, sched = a.graph, a.schedule
    loops = {k for k, s in enumerate(sched.stages) if s.kind == "loop"}
    for rec in g.cycles.recurrences.values():  # every recurrence runs in one loop
        (k,) = {sched.stage_of[i] for i in rec.members}
        assert k in loops and sched.stages[k].direction == rec.direction
    on_loop = {k for k in loops if any(sched.stage_of[i] == k for i in g.cycles.recurrent)}
    assert on_loop == loops  # and every loop holds a recurrence
    named = {g.ops[i].name for i in g.cycles.recurrent if g.ops[i].name in g.model.values}
    assert named <= a.model.cycles.recurrent
    if not a.model.feedbacks:  # the teacher side drops the free side's reads
        assert named == a.model.cycles.recurrent
