"""Where an expression is being typed: :class:`Context`, passed down the expression tree.

In: the value whose equation is typed (its record).  Out: a frozen :class:`Context` saying whose
equation it is, whether it is per step and on which time axis, the size the expression is
expected to have (for connections without ``size=``), and whether it is on the teacher side of
``feedback()``.  Each part of an expression gets the context of its parent or a changed copy
(:meth:`Context.operand`, :meth:`Context.teacher_side`, :meth:`Context.free_side`); nothing is
set and reset around a recursive call.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..sizes import Size
from .model import STEP, Ty, ValueInfo


@dataclass(frozen=True)
class Context:
    owner: str  # the value whose equation is typed
    seq: bool  # a per-step equation (owner[t] = ...)
    axis: Optional[str]  # the time axis of that equation (None for a static value)
    expected: Optional[Size] = None  # the size this expression must have, where known
    teacher: bool = False  # inside the first argument of feedback()

    @staticmethod
    def of_value(info: ValueInfo) -> "Context":
        """The context of the right-hand side of ``info``'s equation."""
        return Context(info.name, info.seq, info.axis, info.size)

    def operand(self) -> "Context":
        """For a part whose size is not the whole's (an operand of @, a source of a
        connection, an argument of concat, a query)."""
        return dataclasses.replace(self, expected=None) if self.expected is not None else self

    def teacher_side(self) -> "Context":
        return dataclasses.replace(self, teacher=True)

    def free_side(self) -> "Context":
        return dataclasses.replace(self, teacher=False)

    def ty(self, shape: str, rows, cols, tk: int) -> Ty:
        """A type in this equation (every per-step part of it is on the equation's axis)."""
        return Ty(shape, rows, cols, tk, self.axis if tk == STEP else None)
