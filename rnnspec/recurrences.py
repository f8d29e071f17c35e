"""Recurrences: the cycles of a graph of reads with typed delays, found once per graph.

In: reads ``(src, dst, delay)`` -- ``dst`` reads ``src`` at a delay of :mod:`rnnspec.delays`
(``Step(d)``, ``Whole``, ``Init``) -- and optionally the nodes, in the order the graph should
hold them.  Out: :class:`Cycles`: the networkx graph of the reads (an edge per pair, carrying
``delays``, the set of delays it is read at) and what its cycles are:

* :attr:`Cycles.recurrences`: every strongly connected component that is a cycle (more than one
  node, or one that reads itself), with the signs of the step delays on it: +1 for reads of
  earlier steps (``h[t-d]``), -1 for later ones (``g[t+d]``); one sign is the direction the
  recurrence runs in time, both signs a recurrence that cannot run;
* :meth:`Cycles.same_step_cycle`: a cycle through same-step reads only (``h[t]``), which no
  order of computation can satisfy;
* :meth:`Cycles.whole_sequence_cycles`: reads of a whole sequence (a chosen step, attention) or
  of a state's initial value by a node that the sequence is itself computed from;
* :meth:`Cycles.late`: the nodes on a recurrence and everything computed from them.

One definition for the two graphs that have recurrences: the values' references
(``Model.references``; the check reports the illegal cycles from them, :mod:`rnnspec.graph` puts
the terms of a sum that no recurrence reads first, using :meth:`Cycles.late`) and the ops
(``Graph.cycles``; :mod:`rnnspec.schedule` makes each recurrence a time loop).  Both graphs are
needed: the ops are made from the values' recurrences (which terms a sum hoists decides which
add ops exist), and an ops' recurrence is finer than a values' one (``U @ x[t]`` in
``h[t] = tanh(U @ x[t] + W @ h[t-1])`` is not on it, and runs before the loop).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Dict, FrozenSet, Hashable, Iterable, List, Optional, Set, Tuple

import networkx as nx

from .delays import SAME, Delay, is_step

Read = Tuple[Hashable, Hashable, Delay]  # (src, dst, delay): dst reads src at delay


@dataclass(frozen=True)
class Recurrence:
    """A strongly connected component that is a cycle."""
    members: Tuple  # its nodes, sorted
    signs: FrozenSet[int]  # of the step delays between its members: +1 h[t-d], -1 h[t+d]

    @property
    def direction(self) -> int:
        """+1 (forward in time), -1 (backward), 0 for both signs (no order runs it); +1 when
        no read on it has a step (a cycle the check refuses)."""
        if len(self.signs) > 1:
            return 0
        return next(iter(self.signs), 1)


def steps_of(delays: Iterable[Delay]) -> Set[int]:
    """The steps back of the relative reads among ``delays`` (``h[t-d]``: d, ``h[t+d]``: -d,
    ``h[t]``: 0)."""
    return {d.steps for d in delays if is_step(d)}


def signs_of(delays: Iterable[Delay]) -> Set[int]:
    """The signs of the non-zero step delays among ``delays`` (+1 earlier steps, -1 later)."""
    return {1 if d > 0 else -1 for d in steps_of(delays) if d}


def analyse(reads: Iterable[Read], nodes: Iterable[Hashable] = ()) -> "Cycles":
    """The graph of ``reads`` (its nodes: ``nodes`` first, then the others in order of first
    read) and its cycles, each computed when first asked for."""
    return Cycles(reads, nodes)


class Cycles:
    """A graph of reads with typed delays and its cycles (see the module's docstring)."""

    def __init__(self, reads: Iterable[Read], nodes: Iterable[Hashable] = ()):
        g = nx.DiGraph()
        g.add_nodes_from(nodes)
        self.reads: List[Read] = []  # each distinct read once, in order of first appearance
        for src, dst, delay in reads:
            if g.has_edge(src, dst):
                delays = g.edges[src, dst]["delays"]
                if delay in delays:
                    continue
                delays.add(delay)
            else:
                g.add_edge(src, dst, delays={delay})
            self.reads.append((src, dst, delay))
        self.graph = g

    @cached_property
    def condensation(self) -> nx.DiGraph:
        """networkx's condensation of the graph: a node per strongly connected component
        (``members``), ``graph['mapping']``: node -> component."""
        return nx.condensation(self.graph)

    @property
    def component(self) -> Dict[Hashable, int]:
        """node -> its strongly connected component (a node of :attr:`condensation`)."""
        return self.condensation.graph["mapping"]

    @cached_property
    def recurrences(self) -> Dict[int, Recurrence]:
        """Component -> :class:`Recurrence`, for the components that are cycles, in the
        condensation's order."""
        g, out = self.graph, {}
        for c, members in self.condensation.nodes(data="members"):
            first = next(iter(members))
            if len(members) == 1 and not g.has_edge(first, first):
                continue
            signs = set()
            for u in members:
                for v, data in g.adj[u].items():
                    if v in members:
                        signs |= signs_of(data["delays"])
            out[c] = Recurrence(tuple(sorted(members)), frozenset(signs))
        return out

    @cached_property
    def recurrent(self) -> Set[Hashable]:
        """The nodes on a recurrence."""
        return {n for rec in self.recurrences.values() for n in rec.members}

    def late(self) -> Set[Hashable]:
        """The nodes on a recurrence and everything computed from them (one search from all
        of them: linear in the graph)."""
        late, todo = set(self.recurrent), list(self.recurrent)
        while todo:
            for n in self.graph.successors(todo.pop()):
                if n not in late:
                    late.add(n)
                    todo.append(n)
        return late

    def same_step_cycle(self) -> Optional[List[Hashable]]:
        """The first cycle (networkx's ``simple_cycles``, over the same-step reads in the order
        they were given) through same-step reads only, or None."""
        comp = self.component
        if not any(SAME in self.graph.edges[u, v]["delays"] for u, v, _ in self.reads
                   if comp[u] == comp[v]):
            return None  # such a cycle lies inside a recurrence: none has a same-step read
        same = nx.DiGraph([(u, v) for u, v, d in self.reads if d == SAME])
        return next(iter(nx.simple_cycles(same)), None)

    def whole_sequence_cycles(self) -> List[Read]:
        """The reads ``(src, dst, delay)`` of a whole sequence or an initial value (delay not a
        step) whose ``dst`` is on a cycle with ``src`` (``src`` is computed from ``dst``, or
        is ``dst``), in the order they were given."""
        comp = self.component
        return [(u, v, d) for u, v, d in self.reads
                if not is_step(d) and comp[u] == comp[v]]

    def path(self, a: Hashable, b: Hashable) -> List[Hashable]:
        """A shortest path of reads from ``a`` to ``b`` (networkx's ``shortest_path``)."""
        return nx.shortest_path(self.graph, a, b)


__all__ = ["Cycles", "Recurrence", "Read", "analyse", "steps_of", "signs_of"]
