"""Where each op of the generated ``rtrl`` runs, and which specs it cannot follow.

In: an unfused :class:`rnnspec.schedule.Schedule` (its graph).  Out: :func:`placement`, each op
that leads to a loss placed ``leaf``, ``once``, ``pre``, ``step``, ``loss``, ``pick`` or ``post``
(see :mod:`.rtrl`) with the parameters its value depends on; :func:`rtrl_refusal`, None or the
positioned error naming every reason why ``rtrl`` cannot be generated.
"""
from __future__ import annotations

from typing import Dict, Optional, Set, Tuple

import networkx as nx

from ..check import STEP
from ..delays import Step
from ..errors import Reporter, SpecError
from ..ops import is_loss, rule
from ..truncation import refusal

WHAT = "RTRL (compile --rtrl) cannot follow this spec"
HINT = "compile without --rtrl and use backward (BPTT)"
LEAVES = ("param", "input", "target", "const")


def _dependencies(g) -> Dict[int, Set[str]]:
    """Op -> the parameters its value depends on (through the recurrences and the states'
    computed initial values: a fixpoint)."""
    deps: Dict[int, Set[str]] = {i: ({op.name} if op.op == "param" else set())
                                 for i, op in g.ops.items()}
    inits = {s: c for c, s in g.starts()}
    changed = True
    while changed:
        changed = False
        for i, op in g.ops.items():
            new = set(deps[i]).union(*(deps[a] for a, _ in op.args))
            if i in inits:
                new |= deps[inits[i]]
            if new != deps[i]:
                deps[i], changed = new, True
    return deps


def placement(g) -> Tuple[Dict[int, str], Dict[int, Tuple[str, ...]]]:
    """Where every op of graph ``g`` that leads to a loss runs (see the module docstring), and
    the parameters its value depends on (in the spec's order)."""
    deps = _dependencies(g)
    needed: Set[int] = set()
    for i in g.losses:
        needed |= {i} | set(nx.ancestors(g.nx, i))
    where: Dict[int, str] = {}
    for i in sorted(needed):
        op = g.ops[i]
        if op.op in LEAVES:
            where[i] = "leaf"
        elif op.op == "pick" and g.ops[op.args[0][0]].tk == STEP and (
                deps[op.args[0][0]] or _recurrent(g, op.args[0][0])):
            where[i] = "pick"
        elif is_loss(op.op):
            where[i] = "loss" if op.attrs["tk"] == STEP else "post"
        elif op.tk == STEP:
            where[i] = "step" if deps[i] or _recurrent(g, i) else "pre"
        else:
            where[i] = "once"
    for i in sorted(where):  # (ids in the order of the lowering: arguments first)
        if where[i] in ("once", "post") and any(where.get(a) in ("pick", "post")
                                                 for a, _ in g.ops[i].args):
            where[i] = "post"
    order = list(g.model.params)
    return where, {i: tuple(p for p in order if p in deps[i]) for i in g.ops}


def _recurrent(g, i: int, seen=None) -> bool:
    """Does op i read a value some steps back, itself or through its arguments?"""
    seen = set() if seen is None else seen
    if i in seen:
        return False
    seen.add(i)
    return any((isinstance(d, Step) and d.steps != 0) or _recurrent(g, a, seen)
               for a, d in g.ops[i].args)


def rtrl_refusal(sched, filename: Optional[str] = None) -> Optional[SpecError]:
    """None when ``rtrl`` can be generated for this (unfused) schedule, else the error naming
    every reason at its place: what truncation refuses (a second time axis, a backward
    recurrence, whole-sequence reads of the states), feedback, no loss, an op with no
    forward-mode rule, a read steps back of something that is not a state, a chosen step other
    than a sequence's end, a loss that reads no step."""
    err = refusal(sched, filename, WHAT, HINT)
    if err is not None:
        return err
    g = sched.graph
    m = g.model
    rep = Reporter(m.source, filename or m.filename, once_per_place=True)
    for call_node in m.feedbacks:
        rep.error(call_node, f"{WHAT}: it feeds a value back (feedback(...)), which runs "
                  f"differently in training and generation", HINT)
    if not g.losses:
        rep.error(m.spec, f"{WHAT}: it has no loss (RTRL computes the loss's gradient)",
                  "add a `loss = ...` statement")
    where, _ = placement(g)
    for i, w in where.items():
        _refuse_op(rep, g, where, i, w)
    return rep.error_or_none()


def _refuse_op(rep: Reporter, g, where: Dict[int, str], i: int, w: str) -> None:
    """The reasons why op i (placed at ``w``) cannot be followed step by step."""
    op = g.ops[i]
    at = op.stmt or g.model.spec
    if w in ("step", "once", "post", "loss") and rule(op.op).jvp is None:
        rep.error(at, f"{WHAT}: `{op.op}` has no forward-mode rule yet", HINT)
    if w == "pick" and (op.attrs["index"].kind != "end" or op.attrs["index"].offset != 0):
        rep.error(at, f"{WHAT}: it reads step {op.attrs['index'].text()} of a value computed "
                  f"at each step (only a sequence's last step, [end], is followed)", HINT)
    for a, d in op.args:
        if isinstance(d, Step) and d.steps > 0 and w in ("step", "loss") and \
                g.ops[a].name not in g.model.states:
            rep.error(at, f"{WHAT}: it reads a value that is not a state {d.steps} step(s) "
                      f"back", "declare it a state, or " + HINT)
        if w in ("step", "loss", "pick") and where.get(a) == "post":
            rep.error(at, f"{WHAT}: a step reads a value of a chosen step", HINT)
    if w == "post" and is_loss(op.op) and op.attrs.get("reduce") == "mean":
        rep.error(at, f"{WHAT}: a mean of a loss per sequence", HINT)
