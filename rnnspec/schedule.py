"""Stage 4, schedule: :class:`rnnspec.graph.Graph` -> :class:`Schedule`.

In: the SSA op graph (its edges carry the delays of :mod:`rnnspec.delays`: ``Step(d)`` for
``h[t-d]``, ``Step(-d)`` for ``h[t+d]``, ``ATTEND`` for a whole sequence read by attention).
Out: a ``Schedule``: the computation as a sequence of *stages*, alternating

* ``all`` blocks -- ops computed for all steps at once (every input projection ``U @ x[t]`` is
  one matrix product over T*B rows; the output softmax and the losses after the loops), and
* ``loop`` stages -- recurrences computed step by step, each with a direction: +1 (forward in
  time, for ``h[t-d]``) or -1 (backward in time, for ``g[t+d]``).

A recurrence is a strongly connected component of the graph that is a cycle (it must go
through a delay), as :mod:`rnnspec.recurrences` finds them (``Graph.cycles``).  Its direction
comes from the sign of its delays; both signs in one cycle is an error.  Each
recurrence joins the previous loop when that loop runs over the same time axis in the same
direction (so an LSTM's gates
and a deep RNN's two layers share one loop), otherwise it opens a new loop (a bidirectional
layer: a forward loop, then a backward loop).  An op that is not recurrent is computed in the
earliest block after everything it reads, except when it sits between a loop and a recurrence
of that same loop: then it runs inside the loop.

It also gives ``padding`` (how many initial steps a value's buffer holds before step 1 and after
step T: the largest past and future delay it is read with) and the consumers of every op.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import networkx as nx

from .ast import Ref, walk
from .delays import SAME, Delay, Whole
from .errors import SpecError, diagnostic_at
from .graph import Graph
from .recurrences import signs_of, steps_of


@dataclass
class Stage:
    kind: str  # 'all' or 'loop'
    direction: int  # +1 forward, -1 backward (loops); 0 for blocks
    ops: List[int]
    axis: Optional[str] = None  # the time axis a loop runs over


@dataclass
class Schedule:
    graph: Graph
    stages: List[Stage]
    stage_of: Dict[int, int]
    recurrent: Set[int]
    padding: Dict[int, Tuple[int, int]]  # op -> (steps before 1, steps after T)
    consumers: Dict[int, List[Tuple[int, int, Delay]]]
    direction: Dict[int, int]  # recurrent op -> direction of its loop

    @property
    def order(self) -> List[int]:
        return [i for s in self.stages for i in s.ops]

    def in_loop(self, i: int) -> bool:
        return self.stages[self.stage_of[i]].kind == "loop"


def schedule(graph: Graph) -> Schedule:
    """Split the op graph into all-at-once blocks and time loops, in execution order."""
    g = graph.nx
    cond = graph.cycles.condensation
    members = graph.cycles.component  # op -> scc id
    scc_ops: Dict[int, List[int]] = {c: sorted(cond.nodes[c]["members"]) for c in cond.nodes}
    direction_of_scc: Dict[int, Tuple[Optional[str], int]] = {}
    for c, rec in graph.cycles.recurrences.items():
        if not rec.direction:
            _mixed_direction_error(graph, list(rec.members))
        axis = next((graph.ops[i].ty.axis for i in rec.members if graph.ops[i].ty.axis), None)
        direction_of_scc[c] = (axis, rec.direction)
    # positions: block k -> 2k, loop k -> 2k + 1
    topo = list(nx.lexicographical_topological_sort(cond, key=lambda c: min(scc_ops[c])))
    pos: Dict[int, int] = {}
    # hard[c]: a position c can never be earlier than: after a chosen step (h[end]) of a loop,
    # that loop must have finished, so nothing depending on it can join it
    hard: Dict[int, int] = {}
    loop_dirs: List[Tuple[Optional[str], int]] = []  # (axis, direction) of each loop
    for c in topo:
        preds = [pos[p] for p in cond.predecessors(c)]
        earliest = max([p + 1 if p % 2 else p for p in preds], default=0)
        hard[c] = max([hard[p] for p in cond.predecessors(c)], default=0)
        for u in scc_ops[c]:  # reading a whole sequence (attention): after it is complete
            for p in g.predecessors(u):
                # or another value read at a step its loop has not reached yet (h[t+1] of a
                # forward h): only once that loop (or block) is complete
                if _whole(g.edges[p, u]) or members[p] != c and \
                        _against(g.edges[p, u], pos[members[p]], loop_dirs):
                    pp = pos[members[p]]
                    hard[c] = max(hard[c], pp + 1 if pp % 2 else pp)
        if c in direction_of_scc:
            d = direction_of_scc[c]
            if loop_dirs and loop_dirs[-1] == d and hard[c] < 2 * len(loop_dirs):
                pos[c] = 2 * len(loop_dirs) - 1
            else:
                loop_dirs.append(d)
                pos[c] = 2 * len(loop_dirs) - 1
        else:
            pos[c] = earliest
            if graph.ops[scc_ops[c][0]].op == "pick":
                hard[c] = max(hard[c], earliest)
    for c in reversed(topo):  # ops between a loop and a later member of that loop join it
        if c in direction_of_scc:
            continue
        for s in cond.successors(c):
            if pos[s] % 2 and pos[c] > pos[s] >= hard[c]:
                pos[c] = pos[s]
    n_loops = len(loop_dirs)
    stages = []
    for k in range(2 * n_loops + 1):
        if k % 2:
            axis, direction = loop_dirs[k // 2]
            stages.append(Stage("loop", direction, [], axis))
        else:
            stages.append(Stage("all", 0, []))
    order = list(nx.lexicographical_topological_sort(_acyclic(g, members, pos), key=lambda n: n))
    stage_of = {}
    for n in order:
        k = pos[members[n]]
        stages[k].ops.append(n)
        stage_of[n] = k
    recurrent = {n for n in g.nodes if stages[stage_of[n]].kind == "loop"}
    direction = {n: stages[stage_of[n]].direction for n in recurrent}
    _check_later_steps(graph, stages, stage_of)
    consumers = {n: graph.consumers(n) for n in g.nodes}
    padding = {}
    for n in g.nodes:
        past = [d.steps for _, _, d in consumers[n] if d.steps > 0]
        future = [-d.steps for _, _, d in consumers[n] if d.steps < 0]
        if past or future:
            padding[n] = (max(past, default=0), max(future, default=0))
    return Schedule(graph, stages, stage_of, recurrent, padding, consumers, direction)


def _check_later_steps(graph: Graph, stages: List[Stage], stage_of: Dict[int, int]) -> None:
    """A later step ``h[t+d]`` can only be read of a recurrence running backward in time (its
    value after the last step is its initial value): of a forward one (or of a state that is
    no recurrence) there is no such step at a sequence's own last step."""
    g = graph.nx
    m = graph.model
    errors = []
    for u, v, data in g.edges(data=True):
        later = sorted(-d for d in steps_of(data["delays"]) if d < 0)
        if not later:
            continue
        stage = stages[stage_of[u]]
        if stage.kind == "loop" and stage.direction == -1:
            continue
        op, reader = graph.ops[u], graph.ops[v]
        name = op.name or "?"
        ref = _reference(reader.stmt, name, later[0])
        var = ref.index.var if ref is not None else (stage.axis or "t")
        how = (f"'{name}' runs forward in time" if stage.kind == "loop" else
               f"'{name}' is not a recurrence running backward in time")
        errors.append(diagnostic_at(
            ref or reader.stmt, f"'{name}[{var}+{later[0]}]' reads a later step, but {how}: at "
            f"a sequence's last step there is no later {name}", m.source, m.filename,
            f"read {name}[{var}] or an earlier step; for a recurrence running backward in time, "
            f"write a state that reads its own later step: s[{var}] = f(s[{var}+1], ...)"))
    if errors:
        errors.sort(key=lambda d: (d.filename != m.filename, d.filename, d.line, d.column))
        raise SpecError(errors)


def _reference(stmt, name: str, offset: int):
    """The reference ``name[t+offset]`` in a statement, if it is written there."""
    expr = getattr(stmt, "expr", None)
    if expr is None:
        return None
    for node in walk(expr):
        if isinstance(node, Ref) and node.name == name and node.index is not None and \
                node.index.kind == "rel" and node.index.offset == offset:
            return node
    return None


def _whole(data) -> bool:
    """Does an edge read a whole sequence (attention's keys or values)?"""
    return any(isinstance(d, Whole) for d in data["delays"])


def _against(data, pp: int, loop_dirs) -> bool:
    """Whether an edge from an op at position ``pp`` with delays ``data['delays']`` reads a step
    that a loop containing both ends would not have computed yet: a delay whose sign is not the
    direction of the loop at ``pp`` (a later step of a forward loop), or any delay of an op
    computed in a block (it may be pulled into a loop of either direction)."""
    signs = signs_of(data["delays"])
    if not signs:
        return False
    if pp % 2:
        return signs != {loop_dirs[pp // 2][1]}
    return True


def _acyclic(g: nx.DiGraph, members, pos) -> nx.DiGraph:
    """The op graph without the delayed edges inside a loop (what a topological order needs)."""
    a = nx.DiGraph()
    a.add_nodes_from(g.nodes)
    for u, v, data in g.edges(data=True):
        same_loop = pos[members[u]] == pos[members[v]] and pos[members[u]] % 2
        if same_loop and SAME not in data["delays"]:
            continue
        a.add_edge(u, v)
    return a


def _mixed_direction_error(graph: Graph, ops: List[int]) -> None:
    m = graph.model
    named = [graph.ops[i] for i in ops if graph.ops[i].name and graph.ops[i].stmt is not None]
    first = min(named or [graph.ops[ops[0]]], key=lambda o: (o.stmt.line, o.stmt.column))
    names = sorted({o.name for o in named})
    axis = next((graph.ops[i].ty.axis for i in ops if graph.ops[i].ty.axis), "t")
    raise SpecError([diagnostic_at(
        first.stmt, f"the recurrence through {', '.join(names)} depends on both earlier steps "
        f"({axis}-d) and later steps ({axis}+d)", m.source, m.filename,
        "a recurrence runs either forward or backward in time: split it into a forward and a "
        "backward state")])


def state_directions(sched: Schedule) -> List[Tuple[str, str, Optional[str]]]:
    """(state, direction, axis) for every state, in declaration order: direction is 'forward'
    (its loop runs t = 1..T, reading earlier steps such as s[t-1]), 'backward' (t = T..1,
    reading later steps such as s[t+1]) or 'not recurrent'; axis is the loop's time axis."""
    out = []
    for name in sched.graph.model.states:
        op = sched.graph.values.get(name)
        stage = sched.stages[sched.stage_of[op]] if op in sched.stage_of else None
        if stage is None or stage.kind != "loop":
            out.append((name, "not recurrent", None))
        else:
            out.append((name, "forward" if stage.direction > 0 else "backward", stage.axis))
    return out
