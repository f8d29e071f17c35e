"""Diagnostics: the one error type users see, and its rendering with a caret under the source.

In: a message, a position, the source text and a hint.  Out: :class:`SpecError` (a ValueError
carrying ``filename``, ``line``, ``column``, ``hint``) and :class:`Diagnostic` records that
``str()`` as ``file:line:col: error: message`` followed by the source line, a caret and the hint.
A :class:`SpecError` may hold several diagnostics (all semantic errors of a file are collected).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .pytext import shown


@dataclass(frozen=True)
class Diagnostic:
    message: str
    filename: str
    line: int
    column: int
    source_line: str = ""
    hint: str = ""
    severity: str = "error"  # or 'warning'
    # a second place the error involves, shown after the hint: (line, column, source line,
    # what is there), e.g. the bracket an unexpected end of file leaves open
    related: Optional[tuple] = None

    def render(self) -> str:
        head = f"{shown(self.filename)}:{self.line}:{self.column}: {self.severity}: " \
            f"{shown(self.message)}"
        parts = [head]
        if self.source_line:
            parts += _quoted(self.source_line, self.column)
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        if self.related:
            line, column, text, what = self.related
            parts.append(f"{shown(self.filename)}:{line}:{column}: note: {what}")
            parts += _quoted(text, column)
        return "\n".join(parts)

    __str__ = render


def _quoted(source_line: str, column: int) -> List[str]:
    """The source line (a window of it around ``column``) and a caret under that column."""
    text, caret = _window(source_line, max(column - 1, 0))
    # one column per character, as the parser counts: tabs and other control characters (NUL,
    # form feed, a lone carriage return) print as one space
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return [f"    {text}", "    " + " " * caret + "^"]


WINDOW = 100  # a longer source line is shown as an excerpt around the caret


def _window(text: str, offset: int) -> tuple:
    """``text`` cut to about :data:`WINDOW` characters around ``offset``, and the caret's offset
    in the excerpt."""
    if len(text) <= WINDOW:
        return text, offset
    start = min(max(offset - WINDOW // 2, 0), max(len(text) - WINDOW, 0))
    excerpt = text[start:start + WINDOW]
    if start > 0:
        excerpt, offset = "..." + excerpt, offset - start + 3
    if start + WINDOW < len(text):
        excerpt += "..."
    return excerpt, offset


@functools.lru_cache(maxsize=4)
def _lines(source: str) -> tuple:
    return tuple(source.split("\n"))


def source_line(source: str, line: int) -> str:
    """Line ``line`` (1-based) as the parser counts lines: only ``\\n`` ends one (``\\r``, form
    feed or U+2028 do not, unlike ``str.splitlines``)."""
    lines = _lines(source)
    if 1 <= line <= len(lines):
        return lines[line - 1].removesuffix("\r")
    return ""


def make_diagnostic(message: str, source: str, filename: str, line: int, column: int,
                    hint: str = "", severity: str = "error") -> Diagnostic:
    return Diagnostic(message, filename, line, column, source_line(source, line), hint, severity)


class SpecError(ValueError):
    """Every error a user can cause in a spec.  ``diagnostics`` lists all of them (at least one);
    ``filename``, ``line``, ``column``, ``hint`` (and ``related``) describe the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        diagnostics = list(diagnostics)
        if not diagnostics:
            raise ValueError("SpecError needs at least one diagnostic")
        self.diagnostics: List[Diagnostic] = diagnostics
        first = diagnostics[0]
        self.filename = first.filename
        self.line = first.line
        self.column = first.column
        self.hint = first.hint
        self.related = first.related  # (line, column, source line, what), or None
        self.message = first.message
        super().__init__("\n".join(d.render() for d in diagnostics))

    @classmethod
    def at(cls, message: str, source: str, filename: str, line: int, column: int,
           hint: str = "") -> "SpecError":
        return cls([make_diagnostic(message, source, filename, line, column, hint)])


def diagnostic_at(node, message: str, source: str, filename: str, hint: str = "",
                  severity: str = "error") -> Diagnostic:
    """A diagnostic at a node (or a ``(line, column)`` pair) of the file ``filename`` with text
    ``source``, or of the imported file the node came from (its ``origin``)."""
    line, col = _pos(node)
    origin = getattr(node, "origin", None)
    if origin is not None:
        source, filename = origin.source, origin.filename
    return make_diagnostic(message, source, filename, line, col, hint, severity)


class Reporter:
    """Collects diagnostics for one file (and the files it imports: a node from one of them is
    shown in that file); :meth:`raise_if_errors` raises them all at once."""

    def __init__(self, source: str, filename: str, once_per_place: bool = False):
        self.source = source
        self.filename = filename
        self.errors: List[Diagnostic] = []
        self.warnings: List[Diagnostic] = []
        self._seen: set = set()
        # one error per (file, line, column): a block used twice is one place in the text
        self.once_per_place = once_per_place

    def error(self, node_or_pos, message: str, hint: str = "") -> None:
        self.add([diagnostic_at(node_or_pos, message, self.source, self.filename, hint)])

    def add(self, diagnostics: Sequence[Diagnostic]) -> None:
        """Diagnostics made elsewhere (e.g. the syntax errors of an imported file), as errors."""
        for d in diagnostics:
            key = (d.filename, d.line, d.column) if self.once_per_place else d
            if key not in self._seen:
                self._seen.add(key)
                self.errors.append(d)

    def warning(self, node_or_pos, message: str, hint: str = "") -> None:
        self.warnings.append(diagnostic_at(node_or_pos, message, self.source, self.filename,
                                           hint, "warning"))

    def error_or_none(self) -> Optional["SpecError"]:
        """The SpecError that :meth:`raise_if_errors` would raise (None without errors), for a
        check that hands its refusal back instead of raising it."""
        try:
            self.raise_if_errors()
        except SpecError as e:
            return e
        return None

    def raise_if_errors(self) -> None:
        if self.errors:
            # this file's errors first, by position; an imported file's after, kept in the order
            # reported (a note "imported here" follows the errors it explains)
            order = {id(d): i for i, d in enumerate(self.errors)}
            self.errors.sort(key=lambda d: (d.filename != self.filename, order[id(d)])
                             if d.filename != self.filename else (False, d.line, d.column))
            raise SpecError(self.errors)


def _pos(node_or_pos) -> tuple:
    if isinstance(node_or_pos, tuple):
        return node_or_pos
    return getattr(node_or_pos, "line", 0) or 1, getattr(node_or_pos, "column", 0) or 1


def missing_rule(op: str, mode: str = "reverse") -> "NotImplementedError":
    """The error for an op without a derivative rule (``mode='forward'``: without a
    forward-mode, JVP, rule)."""
    if mode == "forward":
        return NotImplementedError(f"no forward-mode (JVP) rule registered for op '{op}': add "
                                   f"one to rnnspec/ops.py, next to its backward rule")
    return NotImplementedError(f"no derivative rule registered for op '{op}': add one to "
                               f"rnnspec/ops.py (forward and backward side by side)")

