"""The runtime of generated modules, kept as real Python (issue 10): the text codegen copies
into a module is read from these files, so it can be linted, imported and unit-tested."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

_MARK = re.compile(r"^# ---- helper: (\w+)\n", re.M)


def helper_texts(filename: str = "helpers.py") -> Dict[str, str]:
    """{group name: its source text} of a file of rnnspec/runtime/ (helpers.py: the op helpers),
    each text as the generated module gets it: a blank line, the group's definitions, a
    newline.  What comes before a file's first group is not copied."""
    text = (Path(__file__).parent / filename).read_text(encoding="utf-8")
    marks = list(_MARK.finditer(text))
    groups = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)]
        groups[m.group(1)] = "\n" + body.strip("\n") + "\n"
    return groups
