"""Optimization: fuse the matrix products that read the same vector.

In: a :class:`rnnspec.graph.Graph` and its :class:`rnnspec.schedule.Schedule`.  Out: the graph
rewritten so that the products ``W_1 @ v, ..., W_k @ v`` of one stage that read the same value
at the same delay (an LSTM's four gates reading ``h[t-1]``, or their four input projections
reading ``x[t]``) are one product with the stacked weights, ``[W_1; ...; W_k] @ v``, of which
each original product is a part.  Per step this is one matrix product instead of k; in the
backward pass the gradient of ``v`` is one product too, and so is the gradient of the stacked
weights (one product over all T*B rows, then split).  Reschedule the result.

Fusion rewrites copies of the ops (their arguments are the graph's one store of edges) and makes
a new :class:`~rnnspec.graph.Graph` of them, whose networkx graph is derived from them.

A fused product computed inside a loop whose parts are read partly inside and partly after the
loop (which statement order can bring about, e.g. a bidirectional layer's input products) is
not fused: its gradient is gathered from its parts in one place, so they must all be on one
side of the loop.
"""
from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Tuple

from .check import PARAM, Ty
from .delays import SAME
from .graph import Graph, Op, delayed_label
from .schedule import Schedule
from .sizes import Size


@dataclass(frozen=True)
class Fused:
    """The statement of a fused product: the statements of the products it computes (codegen's
    comment above it names them all)."""
    stmts: Tuple[object, ...]
    reads: str = ""  # the vector the products read (x[t], h[t-1])

    @property
    def line(self) -> int:
        return self.stmts[0].line


def fuse_products(graph: Graph, sched: Schedule) -> Graph:
    """Fuse same-vector products of parameter matrices within each stage (a rewritten copy of
    ``graph`` is returned); groups whose parts the new schedule would split across a loop's
    boundary are left unfused."""
    from .schedule import schedule
    banned = set()
    while True:
        ops = {i: copy.copy(op) for i, op in graph.ops.items()}  # fusion reassigns ops' fields
        fused = _fuse(ops, sched, banned)
        trial = dataclasses.replace(graph, ops=ops)  # (its edges derived from the new ops)
        new = schedule(trial)
        split = {key for key, f in fused.items() if _split_by_loop(trial, new, f)}
        if not split:
            return trial
        banned |= split


def _split_by_loop(graph: Graph, sched: Schedule, f: int) -> bool:
    """Are the parts of fused product ``f``, computed in a loop, read both in it and after it?"""
    k = sched.stage_of[f]
    if sched.stages[k].kind != "loop":
        return False
    inside = {sched.stage_of[c] == k for c in graph.nx.successors(f)}
    return len(inside) > 1


def _fuse(ops: Dict[int, Op], sched: Schedule, banned) -> dict:
    """Fuse the groups not in ``banned`` (rewriting ``ops`` in place); their keys -> the fused
    product's id."""
    done = {}
    groups = defaultdict(list)
    for i, op in ops.items():
        if op.op != "matvec":
            continue
        (w, _), (v, d) = op.args
        if ops[w].op != "param":
            continue
        groups[(sched.stage_of[i], v, d, ops[w].ty.cols)].append(i)
    for key, members in sorted(groups.items(), key=lambda kv: kv[1][0]):
        _, v, d, cols = key
        if len(members) < 2 or key in banned:
            continue
        first = ops[members[0]]
        weights = [ops[m].args[0][0] for m in members]
        rows = [ops[w].ty.rows for w in weights]
        total = Size()
        for r in rows:
            total = total + r
        vname = ops[v].name or ops[v].label
        reads = f"{vname}[{d.text()}]" if d.steps or ops[v].ty.tk == first.ty.tk else vname
        stmts = Fused(tuple(dict.fromkeys(ops[m].stmt for m in members)), reads)
        stacked = _new(ops, "stack_rows", [(w, SAME) for w in weights],
                       Ty("mat", total, cols, PARAM), stmts, f"W_{vname}_stacked")
        fused = _new(ops, "matvec", [(stacked, SAME), (v, d)],
                     Ty("vec", total, None, first.ty.tk, first.ty.axis), stmts,
                     f"{delayed_label(vname, d)}_products")
        for j, m in enumerate(members):
            ops[m].op = "part"
            ops[m].args = [(fused, SAME)]
            ops[m].attrs = {"rows": rows, "index": j}
        done[key] = fused
    return done


def _new(ops: Dict[int, Op], op: str, args, ty: Ty, stmt: Fused, label: str) -> int:
    i = max(ops) + 1
    ops[i] = Op(i, op, list(args), ty, stmt, None, label, {})
    return i
