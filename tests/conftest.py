import sys
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
