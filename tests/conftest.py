import os
from pathlib import Path

import pytest

# The numba backend's tests check what the compiled loops compute, not how fast: LLVM's
# optimizer off (read by numba when it is imported) cuts their JIT time ~5x (347 s -> 71 s for
# the 12 lstm/gru/elman-like specs on 2 cores).  The benchmarks run with numba's default.
os.environ.setdefault("NUMBA_OPT", "0")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture(scope="session", autouse=True)
def backend_caches(tmp_path_factory):
    """The tests' numba modules and numba's compiled loops in a directory of the session (not
    the user's ~/.cache/rnnspec); set before a test first imports numba, which reads it then."""
    tmp = tmp_path_factory.mktemp("backend-caches")
    old = {k: os.environ.get(k) for k in ("NUMBA_CACHE_DIR", "RNNSPEC_CACHE_DIR")}
    os.environ["NUMBA_CACHE_DIR"] = str(tmp / "numba")
    os.environ["RNNSPEC_CACHE_DIR"] = str(tmp / "rnnspec")
    yield tmp
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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
