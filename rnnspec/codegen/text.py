"""Small tools of codegen: the emitter (which collects statement nodes; text is made only by
:mod:`rnnspec.printer`), the spec-line comments and their places, and the test of whether a
value is a plain name (cheap to repeat where a gradient is read).

In: nodes.  Out: nodes (and the printed text of collected statements).
"""
from __future__ import annotations

from typing import List, Tuple

from ..ast import Equation, Loss, unparse
from ..expr import ATOM, Expr
from ..fuse import Fused
from ..printer import level, show, show_block
from ..stmt import Comment, Stmt


class Emitter:
    """Statement nodes (:mod:`rnnspec.stmt`) being collected, in order; a body is the
    statements of another emitter.  Only :meth:`text` makes text (the printer)."""

    def __init__(self):
        self.stmts: List[Stmt] = []

    def __call__(self, s: Stmt) -> None:
        self.stmts.append(s)

    stmt = __call__

    def extend(self, stmts) -> None:
        self.stmts.extend(stmts)

    def body(self) -> Tuple[Stmt, ...]:
        return tuple(self.stmts)

    def text(self) -> str:
        return show_block(self.stmts)


def _where(stmt) -> str:
    """``line 12``, or ``cells.rnn line 12`` for a statement of an imported file (its base name:
    the module does not depend on the directory it was compiled from); ``lines 21-24`` for the
    statements of a fused product."""
    if isinstance(stmt, Fused):
        places = [_where(s) for s in stmt.stmts]
        if len(places) > 1 and all(p.startswith("line ") for p in places):
            lines = [s.line for s in stmt.stmts]
            if lines == list(range(lines[0], lines[0] + len(lines))):
                return f"lines {lines[0]}-{lines[-1]}"
            return "lines " + ", ".join(str(n) for n in lines)
        return ", ".join(places)
    origin = getattr(stmt, "origin", None)
    return f"line {stmt.line}" if origin is None else \
        f"{origin.filename.replace(chr(92), '/').rsplit('/', 1)[-1]} line {stmt.line}"


OUT_FUNCS = ("tanh", "exp", "sigmoid")  # written into a step's buffer slot with out=


OUT_BINARY = {"add": "add", "sub": "subtract", "mul": "multiply"}  # the same, for two vectors


def _plain(e: Expr) -> bool:
    """A name or a slice of one: cheap to repeat wherever a gradient is read (a call such as
    np.concatenate(...) is computed once, into a variable): an atom whose printed form has no
    parenthesis (no call, no grouping)."""
    return level(e) >= ATOM and "(" not in show(e)


def stmt_text(stmt) -> str:
    """The spec statement a block of generated code comes from, as the spec writes it."""
    if isinstance(stmt, Fused):
        if len(stmt.stmts) == 1:
            return stmt_text(stmt.stmts[0])
        names = [s.name if isinstance(s, Equation) else "loss" for s in stmt.stmts]
        return f"{', '.join(names)}: their products with {stmt.reads} in one, the weights " \
            f"stacked"
    if isinstance(stmt, Equation):
        lhs = stmt.name + (f"[{stmt.axis}]" if stmt.axis else "")
        return f"{lhs} = {unparse(stmt.expr)}"
    if isinstance(stmt, Loss):
        text = f"loss = {'mean ' if stmt.reduce == 'mean' else ''}{unparse(stmt.expr)}"
        if stmt.select:
            text += f" at {stmt.select.var} = " + ", ".join(s.text() for s in stmt.select.steps)
        return text
    return ""


def spec_comment(em: Emitter, stmt, last: list, note: str = "") -> None:
    """The comment with the spec line above a block (once: ``last[0]`` holds the last one)."""
    if stmt is None or stmt is last[0]:
        return
    last[0] = stmt
    em(Comment(f"{stmt_text(stmt)}" + (f"  ({note})" if note else "") + f"  [{_where(stmt)}]",
               stmt.stmts[0] if isinstance(stmt, Fused) else stmt))

