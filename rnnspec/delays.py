"""Delays: at which step of a value a reference reads it.

A delay goes with every read: the check's references (``Model.references``), the graph's op
arguments (``Op.args``) and edges, the schedule's consumers.  There are three kinds:

* :class:`Step` -- a step relative to the reader's own: ``Step(0)`` for ``h[t]`` (the common
  case, :data:`SAME`), ``Step(d)`` for ``h[t-d]`` and ``Step(-d)`` for ``h[t+d]``: ``steps`` is how
  many steps back, negative for steps ahead (the sign gives a recurrence's direction).
* :class:`Whole` -- the whole sequence, known only once it is complete.  ``reason`` says why it
  is read whole: ``'chosen'`` for a chosen step (``h[end]``, ``h[3]``, :data:`CHOSEN`), or
  ``'attend'`` for attention over its steps (keys and values, :data:`ATTEND`); the two differ
  only in how errors and the DOT graph name them.
* :class:`Init` -- a state's initial value computed by the network (``state s: n = C``,
  :data:`INIT`): C is read once, before the state's first step.

Every delay has ``steps`` (0 for a whole sequence and an initial value, which read no step
relative to the reader's) and ``text()``, how DOT labels and messages show it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

WHOLE_REASONS = ("chosen", "attend")


@dataclass(frozen=True)
class Step:
    """``h[t - steps]``: ``steps`` > 0 reads an earlier step, < 0 a later one, 0 the same one."""
    steps: int = 0

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise TypeError(f"Step needs an int number of steps, not {self.steps!r}")

    def text(self, var: str = "t") -> str:
        """``t``, ``t-2``, ``t+1`` (with the time index ``var``)."""
        if self.steps == 0:
            return var
        return f"{var}-{self.steps}" if self.steps > 0 else f"{var}+{-self.steps}"


@dataclass(frozen=True)
class Whole:
    """The whole sequence: a chosen step of it (``reason='chosen'``) or attention over it
    (``reason='attend'``)."""
    reason: str = "chosen"

    def __post_init__(self):
        if self.reason not in WHOLE_REASONS:
            raise ValueError(f"Whole reason must be one of {WHOLE_REASONS}, not {self.reason!r}")

    @property
    def steps(self) -> int:
        return 0  # no step relative to the reader's

    def text(self, var: str = "t") -> str:
        """``whole`` for a chosen step, ``attend`` for attention."""
        return "whole" if self.reason == "chosen" else "attend"


@dataclass(frozen=True)
class Init:
    """A state's initial value, computed by the network (``state s: n = C``)."""

    @property
    def steps(self) -> int:
        return 0  # read once, before the first step

    def text(self, var: str = "t") -> str:
        return "init"


Delay = Union[Step, Whole, Init]

SAME = Step(0)
CHOSEN = Whole("chosen")
ATTEND = Whole("attend")
INIT = Init()


def is_step(d: Delay) -> bool:
    """Is ``d`` a step relative to the reader's (``h[t]``, ``h[t-d]``, ``h[t+d]``)?"""
    return isinstance(d, Step)


__all__ = ["Step", "Whole", "Init", "Delay", "SAME", "CHOSEN", "ATTEND", "INIT", "is_step"]

