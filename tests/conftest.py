from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.py from the current code generator")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


def spec_paths():
    return sorted(SPECS.glob("*.rnn"))


BAD_FILENAME = "bad.rnn"  # the file name the bad-spec tables compile their texts under


def first_error(text):
    """The SpecError that compiling ``text`` (as bad.rnn) raises."""
    import rnnspec
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate(text, filename=BAD_FILENAME)
    return info.value


def assert_rendered(diag, text):
    """``str(diag)`` is the header, the source line, a caret under the column, and the hint."""
    lines = str(diag).split("\n")
    assert lines[0] == f"{BAD_FILENAME}:{diag.line}:{diag.column}: error: {diag.message}"
    source = text.split("\n")[diag.line - 1]
    assert len(source) <= 100, "the cases use short lines (long ones are shown as an excerpt)"
    assert lines[1] == "    " + "".join(ch if ch.isprintable() else " " for ch in source)
    assert lines[2] == "    " + " " * (diag.column - 1) + "^"
    assert lines[3] == f"  hint: {diag.hint}"
