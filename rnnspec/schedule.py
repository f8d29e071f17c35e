"""Stage 4, schedule: :class:`rnnspec.graph.Graph` -> :class:`Schedule`.

In: the SSA op graph.  Out: a ``Schedule`` that says, for every op, *when* it is computed:

* ``pre``  -- does not depend on any recurrence: computed for all steps at once before the time
  loop (every input projection ``U @ x[t]`` becomes one matrix product over T*B rows);
* ``loop`` -- recurrent (on a cycle through delayed edges), or between two recurrences (fed by
  one, feeding another): computed step by step in the loop;
* ``post`` -- depends on the recurrence but is not part of it: computed for all steps at once
  after the loop (for example the output softmax and the losses).

It also gives a topological ``order`` (delayed edges inside the loop removed), the ``padding`` of
every value that is read with a delay (how many initial steps its buffer holds), and the
consumers of every op.  Later issues extend this with backward-running loops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

import networkx as nx

from .graph import Graph

PHASES = ("pre", "loop", "post")


@dataclass
class Schedule:
    graph: Graph
    order: List[int]
    phase: Dict[int, str]
    recurrent: Set[int]
    padding: Dict[int, int]
    consumers: Dict[int, List[Tuple[int, int, int]]]

    def in_phase(self, phase: str) -> List[int]:
        return [i for i in self.order if self.phase[i] == phase]


def schedule(graph: Graph) -> Schedule:
    """Classify every op as pre-loop, loop or post-loop and order them."""
    g = graph.nx
    recurrent: Set[int] = set()
    for comp in nx.strongly_connected_components(g):
        if len(comp) > 1:
            recurrent |= comp
        else:
            (n,) = comp
            if g.has_edge(n, n):
                recurrent.add(n)
    downstream: Set[int] = set()
    upstream: Set[int] = set()
    for n in recurrent:
        downstream |= nx.descendants(g, n)
        upstream |= nx.ancestors(g, n)
    # an op between two recurrences (downstream of one, feeding another) runs in the loop too
    in_loop = recurrent | (downstream & upstream)
    phase = {}
    for n in g.nodes:
        if n in in_loop:
            phase[n] = "loop"
        elif n in downstream:
            phase[n] = "post"
        else:
            phase[n] = "pre"
    acyclic = nx.DiGraph()
    acyclic.add_nodes_from(g.nodes)
    for u, v, data in g.edges(data=True):
        if u in in_loop and v in in_loop and 0 not in data["delays"]:
            continue
        acyclic.add_edge(u, v)
    rank = {"pre": 0, "loop": 1, "post": 2}
    order = list(nx.lexicographical_topological_sort(acyclic, key=lambda n: (rank[phase[n]], n)))
    order.sort(key=lambda n: rank[phase[n]])  # stable: keeps topological order inside a phase
    consumers = {n: graph.consumers(n) for n in g.nodes}
    padding = {}
    for n in g.nodes:
        delays = [d for _, _, d in consumers[n] if isinstance(d, int) and d > 0]
        if delays:
            padding[n] = max(delays)
    return Schedule(graph, order, phase, in_loop, padding, consumers)
