"""``python -m rnnspec``: the ``rnnspec`` command line (see :mod:`rnnspec.cli`)."""
import sys

from .cli import main

sys.exit(main())
