"""Where a truncated backward scales the gradient: the xi factors of the adjoint's statements.

In: the adjoint's statements that carry a gradient back across steps (a push through
``h[t-d]`` in a loop, a term read steps back outside one, the older steps of a final state).
Out: for a module that can be truncated (:mod:`rnnspec.truncation`), ``if xi is None:`` the
statements as they are, ``else:`` each scaled by xi over the steps it crosses; for any other
module, the statements alone.  And TBPTT(k1, k2) with k1 < k2: backward's first statement
hands the work to the runtime's sweeps (rnnspec/runtime/sweeps.py), which call it once per
sweep of blocks.
"""
from __future__ import annotations

from typing import List, Optional

from ..expr import Expr, Lit, Name, call, compare, mul, subscript, tuple_of
from ..stmt import If, Stmt, assign, guarded, returns

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


def sweeps_weights(v) -> Optional[tuple]:
    """The cache's per-step loss weights, when backward (of values ``v``) can run TBPTT(k1,
    k2) with k1 < k2 as sweeps: a truncatable, unsegmented module all of whose loss terms have
    per-step weights (what a sweep masks); else None."""
    weights = tuple(v.weights(i) for i in v.g.losses)
    if v.truncation is not None or v.segmented or not weights or None in weights:
        return None
    return weights


def sweeps_hook(v, weights: tuple) -> Stmt:
    """``if _sweeps(truncate, dims): return _tbptt_sweeps(backward, ...)`` (and the module
    gets the runtime's sweeps group)."""
    v.sweeps = True
    return If(call("_sweeps", "truncate", "dims"), (returns(call(
        "_tbptt_sweeps", v.fname("backward"), "params", "cache", "d_outputs", "xi", "truncate",
        "state_grads", tuple_of(*(Lit(w) for w in weights)))),),
        note="TBPTT(k1, k2), k1 < k2: a sweep per set of blocks")
