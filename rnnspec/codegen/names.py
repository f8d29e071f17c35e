"""Names in generated modules: spec-derived variables are placeholders while a module is written
(:meth:`rnnspec.codegen.values.Values.fresh`), named once the whole text exists, avoiding every
name the module's own code uses (read from its syntax tree), so the generator needs no deny-list.

In: the module's text with placeholders and the namers (one per schedule).  Out: the text with
readable names (``W_h``, ``d_W_h``, ``n_hidden``; ``mask_2`` where ``mask`` is taken).
"""
from __future__ import annotations

import ast as pyast
import itertools
import keyword
import re
from typing import Dict

from ..pytext import MARK


RESERVED = set(keyword.kwlist) | {
    "np", "T", "B", "params", "inputs", "targets", "state0", "cache", "outputs", "grads",
    "dims", "dtype", "d_outputs", "up", "d_loss", "loss", "steps", "seed", "rng", "float", "len",
    "range", "reversed", "dict", "None", "True", "False", "int", "max", "min", "sum", "abs",
    "__debug__", "state0_given", "has_loss", "mode", "checkpoints"}  # (the last: cache's keys)


# A placeholder name is MARK<tag>_<k>MARK: MARK is a letter that no spec name holds (names are
# ASCII) and that escape() never writes as itself, so only the namer's placeholders match.
PLACEHOLDER = re.compile(f"{MARK}\\d+_\\d+{MARK}")


_TAGS = itertools.count()  # one tag per namer (a module with feedback has three)


def _own_names(text: str) -> set:
    """The names a spec's variables must not take: every module-level name (functions, tables,
    ``np``), and every name that a function holding spec variables uses itself (its arguments,
    the generator's own variables such as ``mask`` or ``dims``, the builtins it calls), read
    from the module's syntax tree (so also those inside f-strings; not attributes or keyword
    arguments, which cannot clash)."""
    tree = pyast.parse(text)
    lines = text.split("\n")
    names = set()
    for node in tree.body:
        if isinstance(node, (pyast.FunctionDef, pyast.ClassDef)):
            names.add(node.name)
        for sub in pyast.walk(node) if not isinstance(node, pyast.FunctionDef) else ():
            if isinstance(sub, pyast.Name):
                names.add(sub.id)
            elif isinstance(sub, pyast.alias):
                names.add((sub.asname or sub.name).split(".")[0])
        if isinstance(node, pyast.FunctionDef) and \
                MARK in "\n".join(lines[node.lineno - 1:node.end_lineno]):  # (its source text)
            for sub in pyast.walk(node):
                if isinstance(sub, pyast.Name):
                    names.add(sub.id)
                elif isinstance(sub, pyast.arg):
                    names.add(sub.arg)
                elif isinstance(sub, (pyast.FunctionDef, pyast.Lambda)) and sub is not node:
                    names.add(getattr(sub, "name", "lambda"))
    return names


def _name_placeholders(text: str, coders: list) -> str:
    """Replace each namer's placeholders by readable names: the base name a placeholder was
    made for (``W_h``, ``d_W_h``, ``n_hidden``), numbered (``mask_2``) where that is a name the
    module uses itself or another of the same namer's names.  Placeholders in a base (``d_`` +
    a placeholder) are named first: fresh() hands them out in order."""
    own = {n for n in _own_names(text) if MARK not in n} | RESERVED
    final: Dict[str, str] = {}
    for c in coders:
        chosen: set = set()
        for k, base in enumerate(c.bases):
            base = PLACEHOLDER.sub(lambda m: final[m.group(0)], base)
            base = re.sub(r"\W", "_", base)
            if not base or base[0].isdigit():
                base = "v_" + base
            name, n = base, 2
            while name in own or name in chosen:
                name = f"{base}_{n}" if not base.endswith("_") else f"{base}{n}"
                n += 1
            chosen.add(name)
            final[f"{MARK}{c.tag}_{k}{MARK}"] = name
    text = PLACEHOLDER.sub(lambda m: final[m.group(0)], text)
    if MARK in text:
        raise AssertionError("bug in rnnspec: a placeholder name is left in the module")
    return text
