"""Truncated and randomized BPTT: which specs can be cut in time, and where the cut acts.

In: a :class:`rnnspec.schedule.Schedule`.  Out: :func:`refusal` -- None when the spec can be
truncated, else a :class:`SpecError` naming every construct that prevents it, each at its place.
And for users, :func:`random_truncation`: the random factors of randomized truncation.

Truncation scales the gradient that crosses from a step back to the one before it: generated
``backward(..., xi=XI)`` multiplies what flows from step t to step t - 1 through a recurrence
by ``XI[t]`` (Tallec & Ollivier's xi_t; d2l 9.7.1.3), and ``truncate=(k, k)`` is ``XI = 0`` at
the first step of every chunk of k steps (the usual chunked truncation: every chunk is
differentiated as if its initial states were constants).  A gradient crosses steps only along
delayed reads of recurrent values, ``h[t-d]``: that is where codegen puts the factors
(:meth:`rnnspec.codegen.adjoint.Adjoint.push_delayed`, :meth:`~.Adjoint.add_term` for a read
outside the loop and the older steps of a final state; past a sequence's end, where a state is
only carried over, there is no step to cross).  So a spec can be truncated when every crossing is such a read: one time axis, forward in
time, and no read of the whole sequence (attention, a chosen step) of a value computed from the
states by something that runs per step.
"""
from __future__ import annotations

from typing import Optional

import networkx as nx
import numpy as np

from . import ast
from .check import STEP
from .delays import Whole
from .errors import Reporter, SpecError

HINT = "call backward without truncate= and xi= (full BPTT)"
WHAT = "truncated BPTT cannot cut this spec"


def refusal(sched, filename: Optional[str] = None, what: str = WHAT, hint: str = HINT
            ) -> Optional[SpecError]:
    """None when ``backward(..., truncate=, xi=)`` is exact for this schedule, else the error
    that says why not (every reason, each at its position in the spec; ``filename``: the name
    the spec file is shown as, by default the model's; ``what``, ``hint``: for another tool
    that needs the same, such as ``rnnspec flow``)."""
    g = sched.graph
    m = g.model
    rep = Reporter(m.source, filename or m.filename, once_per_place=True)
    if len(m.axes) > 1:
        other = m.axes[1]
        node = next((st for st in m.spec.statements
                     if isinstance(st, (ast.InputDecl, ast.TargetDecl, ast.Equation))
                     and st.axis == other), m.spec)
        rep.error(node, f"{what}: it has a second time axis '{other}'", hint)
    for st in m.spec.statements:
        if isinstance(st, (ast.Equation, ast.Loss)):
            for node in ast.walk(st.expr):
                if isinstance(node, ast.Ref) and node.index is not None and \
                        node.index.kind == "rel" and node.index.offset > 0:
                    rep.error(node, f"{what}: `{node.name}[{node.index.text()}]` runs a "
                                    f"recurrence backward in time", hint)
    states = {g.values[n] for n in m.states if n in g.values}
    for i, op in g.ops.items():
        for a, d in op.args:
            if isinstance(d, Whole) and _reads_states(g, a, states) and _per_step_after(g, i):
                rep.error(op.stmt or m.spec,
                          f"{what}: it reads {'every step' if d.reason == 'attend' else 'a chosen step'} "
                          f"of a value computed from the states at each step, so gradients "
                          f"cross steps outside the recurrences", hint)
    for stage in sched.stages:
        if stage.kind == "loop" and stage.direction < 0 and not rep.errors:
            rep.error(m.spec, f"{what}: a recurrence runs backward in time", hint)
    return rep.error_or_none()


def check_truncatable(sched, what: str = WHAT, hint: str = HINT) -> None:
    """Raise the :func:`refusal` of ``sched``, if any (before long work such as a gradcheck)."""
    err = refusal(sched, None, what, hint)
    if err is not None:
        raise err


def _reads_states(g, i: int, states) -> bool:
    return i in states or bool(nx.ancestors(g.nx, i) & states)


def _per_step_after(g, i: int) -> bool:
    """Op i or something computed from it is a value per step."""
    return any(g.ops[j].ty.tk == STEP for j in {i} | nx.descendants(g.nx, i) if j in g.ops)


def random_truncation(T: int, p, seed=None, B: Optional[int] = None) -> np.ndarray:
    """Draw the xi of randomized truncation (Tallec & Ollivier 2017; d2l 9.7.1.3) for
    ``backward(..., xi=...)``: xi_t = 0 with probability 1 - pi_t (the gradient stops at step
    t), else 1 / pi_t (what passes is weighted up), so that E[xi_t] = 1 and the gradient is
    unbiased.  ``p``: pi_t, one number for every step (truncation lengths then geometric, with
    mean 1 / (1 - p)) or T numbers (a schedule), each in (0, 1].  ``seed``: an int, a
    numpy Generator, or None.  Shape (T,), or (T, B) with one draw per sequence."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T!r}")
    if B is not None and (isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1):
        raise ValueError(f"B must be a positive batch size or None, got {B!r}")
    pi = np.asarray(p, dtype=np.float64)
    if pi.shape not in ((), (T,)):
        raise ValueError(f"p has shape {pi.shape}: give one probability or T = {T} of them")
    if not np.all((pi > 0) & (pi <= 1)):
        raise ValueError("p must be in (0, 1]: the probability that the gradient goes on "
                         "past a step (0 would stop it everywhere, and 1/p is its weight)")
    rng = _rng(seed)
    shape = (T,) if B is None else (T, B)
    pi = np.broadcast_to(pi.reshape((T,) + (1,) * (len(shape) - 1)) if pi.ndim else pi, shape)
    keep = rng.random(shape) < pi
    return np.where(keep, 1.0 / pi, 0.0)


def _rng(seed) -> np.random.Generator:
    """A generator from ``seed``: None, a non-negative int or a Generator (ValueError else)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"seed must be None, a non-negative integer or a numpy Generator, "
                         f"got {seed!r}")
    return np.random.default_rng(seed)
