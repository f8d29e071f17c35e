"""The delay type (rnnspec/delays.py): construction, text, equality and hashing, the helpers,
and that the pipeline carries only typed delays (no bare ints or strings)."""
import dataclasses

import pytest

from conftest import SPECS
from rnnspec.api import analyze
from rnnspec.delays import ATTEND, CHOSEN, INIT, SAME, Init, Step, Whole, is_step
from rnnspec.graph import build_graph


def test_construction():
    assert Step(1).steps == 1 and Step(-2).steps == -2
    assert Step() == Step(0) == SAME
    assert Whole() == Whole("chosen") == CHOSEN and Whole("attend") == ATTEND
    assert Init() == INIT
    assert CHOSEN.reason == "chosen" and ATTEND.reason == "attend"


@pytest.mark.parametrize("bad", [1.0, "1", True, None, Step(1)])
def test_step_needs_an_int(bad):
    with pytest.raises(TypeError, match="Step needs an int"):
        Step(bad)


def test_whole_needs_a_known_reason():
    with pytest.raises(ValueError, match="'chosen', 'attend'"):
        Whole("all")


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Step(1).steps = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        CHOSEN.reason = "attend"


def test_text():
    assert SAME.text() == "t"
    assert Step(2).text() == "t-2" and Step(-1).text() == "t+1"
    assert Step(1).text("s") == "s-1" and Step(-3).text("w") == "w+3" and SAME.text("s") == "s"
    assert CHOSEN.text() == "whole" and ATTEND.text() == "attend" and INIT.text() == "init"
    assert CHOSEN.text("s") == "whole" and INIT.text("s") == "init"


def test_equality_and_hash():
    assert Step(1) == Step(1) and hash(Step(1)) == hash(Step(1))
    assert Step(1) != Step(2) and Step(1) != Step(-1)
    assert SAME != CHOSEN and CHOSEN != ATTEND and ATTEND != INIT and SAME != INIT
    assert len({Step(1), Step(1), SAME, Step(0), CHOSEN, Whole(), ATTEND, INIT, Init()}) == 5
    assert {Step(3): "a", CHOSEN: "b"}[Step(3)] == "a"
    # bare ints and strings are not delays: nothing compares equal to them
    assert Step(0) != 0 and Step(1) != 1 and CHOSEN != "whole" and INIT != "init"


def test_helpers():
    assert is_step(SAME) and is_step(Step(-4))
    assert not is_step(CHOSEN) and not is_step(ATTEND) and not is_step(INIT)
    # a whole sequence and an initial value read no step relative to the reader's
    assert CHOSEN.steps == ATTEND.steps == INIT.steps == 0


def test_the_check_records_typed_delays():
    enc = analyze((SPECS / "encdec.rnn").read_text()).model
    refs = set(enc.references)
    assert ("h", "h", Step(1)) in refs and ("h", "C", CHOSEN) in refs
    assert ("C", "s", INIT) in refs and ("C", "s", SAME) in refs
    att = analyze((SPECS / "attention_dot.rnn").read_text()).model
    assert any(d == ATTEND for _, _, d in att.references)


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.rnn")), ids=lambda p: p.stem)
def test_the_pipeline_carries_only_typed_delays(path):
    a = analyze(path.read_text(), filename=str(path))
    kinds = (Step, Whole, Init)
    assert all(isinstance(d, kinds) for _, _, d in a.model.references)
    for graph in (build_graph(a.model), a.graph):
        assert all(isinstance(d, (Step, Whole)) for op in graph.ops.values() for _, d in op.args)
        assert all(isinstance(d, kinds) for _, _, data in graph.nx.edges(data=True)
                   for d in data["delays"])
    assert all(isinstance(d, (Step, Whole)) for cons in a.schedule.consumers.values()
               for _, _, d in cons)
    assert all(isinstance(data["delay"], kinds)
               for _, _, data in a.graph.cell_graph(params=True).edges(data=True))
