"""Findings of fuzz runs (tests/fuzz_findings/, copied from ../shared/fuzz-findings/): each is now
refused with a positioned SpecError, or compiles and passes its gradient check, or (extreme
numbers: log of negatives, exp overflow) is reported as not finite, where -- never a crash, a
hang, or a failed check -- run the way `rnnspec compile` runs it (benchmarks/fuzz.py's run_case:
dims capped at 4, the bounded compile check).  Their imports are relative to specs/."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from fuzz import run_case  # noqa: E402

FINDINGS = sorted((Path(__file__).parent / "fuzz_findings").glob("*.rnn"))


@pytest.mark.parametrize("path", FINDINGS, ids=[p.stem for p in FINDINGS])
def test_finding_is_refused_or_checked(path):
    outcome, detail = run_case(path.read_text(encoding="utf-8"), path.name)
    assert outcome in ("refused", "checked", "nonfinite"), detail
    if outcome == "nonfinite":
        assert "nan" in detail or "inf" in detail, detail


def test_future_read_of_a_forward_state_is_refused_at_the_reference():
    import rnnspec
    text = (Path(__file__).parent / "fuzz_findings" / "future_read_forward_state.rnn").read_text()
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate(text, filename="f.rnn")
    e = info.value
    assert (e.line, e.column) == (8, 20)
    assert "'h[t+1]' reads a later step, but 'h' runs forward in time" in e.message
