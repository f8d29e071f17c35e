"""Where a truncated backward scales the gradient: the xi factors of the adjoint's statements.

In: the adjoint's statements that carry a gradient back across steps (a push through
``h[t-d]`` in a loop, a term read steps back outside one, the older steps of a final state).
Out: for a module that can be truncated (:mod:`rnnspec.truncation`), ``if xi is None:`` the
statements as they are, ``else:`` each scaled by xi over the steps it crosses; for any other
module, the statements alone.
"""
from __future__ import annotations

from typing import List, Optional

from ..expr import Expr, Name, call, compare, mul, subscript
from ..stmt import If, Stmt, assign, guarded

NOTE = "truncated: scaled by xi over the steps it goes back"


class Cuts:
    """The xi factors of one backward function (``xi_d``, xi over d steps, made once)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled  # the module can be truncated
        self.spans: set = set()  # d > 1 whose xi_d is computed before the loop

    def loop_factor(self, d: int, t: str, pre) -> Expr:
        """xi at loop step ``t`` for a gradient going d steps back (``pre``: the lines before
        the loop, where xi over d > 1 steps is computed once)."""
        if d == 1:
            return subscript(Name("xi"), t)
        if d not in self.spans:
            self.spans.add(d)
            pre.stmt(guarded(compare("xi", "is not", None), assign(
                f"xi_{d}", call("_xi_span", "xi", d), note=f"xi over the {d} steps crossed")))
        return subscript(Name(f"xi_{d}"), t)

    @staticmethod
    def term_factor(steps: int, final_steps: int, indexed: bool, recurrent: bool
                    ) -> Optional[Expr]:
        """xi over the steps an all-steps term crosses: ``steps`` back from a recurrent value,
        or the older of a final state's ``final_steps``; None when it crosses none."""
        if final_steps:
            return call("_xi_final", "xi", "last", final_steps)
        if steps <= 0 or indexed or not recurrent:
            return None
        return Name("xi") if steps == 1 else call("_xi_span", "xi", steps)

    def choose(self, full: List[Stmt], cut: List[Stmt]) -> List[Stmt]:
        """The statements: as they are, or under ``if xi is None:`` with their cut forms."""
        if not self.enabled or not full:
            return full
        return [If(compare("xi", "is", None), tuple(full), orelse=tuple(cut), else_note=NOTE)]


def scaled(stmt, factor: Expr) -> Stmt:
    """``target += factor * value`` for ``target += value``."""
    return assign(stmt.target, mul(factor, stmt.value), stmt.op)
