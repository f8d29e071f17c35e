"""Stage 3, graph: :class:`rnnspec.check.Model` -> :class:`Graph` (the per-step cell graph).

In: a checked model.  Out: a ``Graph`` whose ``ops`` are primitive operations in SSA form (one
node per parameter, input, target, constant, and per operation of every equation, connections
expanded into their matrix products and bias), each argument an (op id, delay) pair
(:mod:`rnnspec.delays`: ``SAME`` for a same-step read, ``Step(d)`` for ``h[t-d]``, ``ATTEND`` for
attention's keys and values), and ``nx``, a networkx DiGraph over the op ids.

The ops' arguments are the one store of the edges: ``nx`` is derived from them by
:func:`edges_of` when a ``Graph`` is made (an edge a -> i carries ``delays``, the set of delays
op i reads a at), so a pass that rewrites ops builds a new ``Graph`` from them
(``dataclasses.replace(graph, ops=...)``, see :mod:`rnnspec.fuse`) and never edits edges.
``cycles`` (:mod:`rnnspec.recurrences`) is ``nx``'s analysis: its recurrences, which
:mod:`rnnspec.schedule` makes time loops.  Which terms of a sum are hoisted before a loop comes
from the check's analysis of the values' references (``Model.cycles``).

``cell_graph`` gives the named-value graph (what ``rnnspec graph`` draws) and :func:`unroll` the
DAG of ``(name, t)`` nodes for T steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import networkx as nx

from . import ast
from .delays import ATTEND, CHOSEN, INIT, SAME, Delay, Init, Step, Whole, is_step
from .ops import is_loss
from .check import PARAM, STATIC, STEP, Model, Ty
from .recurrences import Cycles, analyse
from .sizes import Size


def delayed_label(name: str, delay: Delay) -> str:
    """A label for ``name`` read with ``delay``: h_prev for h[t-1], h_prev2, h_next."""
    d = delay.steps
    if not d:
        return name
    return f"{name}_{'prev' if d > 0 else 'next'}{abs(d) if abs(d) > 1 else ''}"


def partial_label(base: str, late: bool, next_late: bool) -> str:
    """A partial sum of a pre-activation a_<base>: <base>_sum for all the terms no recurrence
    reads (computed before the loop), <base>_acc once it holds recurrent terms, <base>_terms
    for a part of the first on the way."""
    return f"{base}_acc" if late else f"{base}_sum" if next_late else f"{base}_terms"


# functions whose argument, when it is a sum, is named as their pre-activation (a_h)
PREACTIVATED = ("tanh", "sigmoid", "relu", "exp", "log", "softmax")

Key = Union[int, Tuple[str, str]]  # an op id, or ('value', name) before resolution


@dataclass
class Op:
    id: int
    op: str  # 'param' 'input' 'target' 'const' or a rule name of rnnspec.ops, or a loss
    args: List[Tuple[Key, Delay]]  # (op id, the delay it is read at)
    ty: Ty
    stmt: Optional[ast.Node] = None  # the spec statement this op comes from
    name: Optional[str] = None  # the spec name, for params, inputs, targets and values
    label: str = "tmp"  # a base for the generated variable name
    attrs: dict = field(default_factory=dict)

    @property
    def tk(self) -> int:
        return self.ty.tk


@dataclass
class Graph:
    model: Model
    ops: Dict[int, Op]
    values: Dict[str, int]  # spec value name -> op id
    leaves: Dict[str, int]  # param/input/target name -> op id
    losses: List[int]
    nx: nx.DiGraph = field(init=False, repr=False, compare=False)  # edges_of(ops, starts)
    cycles: Cycles = field(init=False, repr=False, compare=False)  # nx's recurrences

    def __post_init__(self):
        self.cycles = analyse(reads_of(self.ops, self.starts()), self.ops)
        self.nx = self.cycles.graph

    def starts(self) -> List[Tuple[int, int]]:
        """(C, s) op ids for every state s that starts from a value the network computes
        (``state s: n = C``): C must be computed before s's loop."""
        return [(self.values[st.init_name], self.values[name])
                for name, st in self.model.states.items() if st.init == "value"]

    def consumers(self, i: int) -> List[Tuple[int, int, Delay]]:
        """(consumer id, arg position, delay) for every use of op ``i``."""
        out = []
        for c in self.nx.successors(i):
            for pos, (a, d) in enumerate(self.ops[c].args):
                if a == i:
                    out.append((c, pos, d))
        return sorted(set(out))

    def cell_graph(self, params: bool = False) -> nx.MultiDiGraph:
        """Named values, inputs (and optionally parameters) with edges labelled by delay."""
        m = self.model
        g = nx.MultiDiGraph()
        for name, inp in m.inputs.items():
            g.add_node(name, kind="input", seq=inp.seq)
        for name, v in m.values.items():
            g.add_node(name, kind="state" if name in m.states else "value", seq=v.seq)
        seen = set()
        for src, dst, delay in m.references:
            if src not in g or (src, dst, delay) in seen:
                continue
            seen.add((src, dst, delay))
            g.add_edge(src, dst, delay=delay)
        for name, st in m.states.items():
            if st.init in ("param", "input", "value") and (params or st.init != "param"):
                g.add_node(st.init_name, kind=st.init)
                g.add_edge(st.init_name, name, delay=INIT)
        if params:
            for name in m.params:
                g.add_node(name, kind="param")
            for i, op in self.ops.items():
                if op.op == "param":
                    for c, _, _ in self.consumers(i):
                        owner = _owner(self, c)
                        if owner and not g.has_edge(op.name, owner):
                            g.add_edge(op.name, owner, delay=SAME)
        return g


def reads_of(ops: Dict[int, Op], starts=()):
    """(a, i, delay) for every argument a of every op i (op i reads a at delay), after
    (C, s, INIT) for every (C, s) of ``starts``."""
    for a, i in starts:
        yield a, i, INIT
    for i, op in ops.items():
        for a, d in op.args:
            yield a, i, d


def edges_of(ops: Dict[int, Op], starts=()) -> nx.DiGraph:
    """The networkx graph of ``ops``: a node per op (in id order), an edge a -> i carrying
    ``delays`` (the set of delays op i reads a at) for every argument a of op i, and an edge
    C -> s with ``{INIT}`` for every (C, s) of ``starts`` (:func:`rnnspec.recurrences.analyse`
    of :func:`reads_of`)."""
    return analyse(reads_of(ops, starts), ops).graph


def _owner(g: Graph, i: int, seen=None) -> Optional[str]:
    """The named value an op belongs to (follow consumers until a named value)."""
    op = g.ops[i]
    if is_loss(op.op):
        return None
    if op.name and op.op not in ("param", "input", "target"):
        return op.name
    seen = seen or set()
    for c, _, _ in g.consumers(i):
        if c not in seen:
            seen.add(c)
            r = _owner(g, c, seen)
            if r:
                return r
    return None


MODES = ("teacher", "free", "sample")


def build_graph(model: Model, mode: str = "teacher") -> Graph:
    """Lower every equation and loss of ``model`` into SSA ops and connect them in networkx.
    ``mode`` picks the side of every ``feedback(teacher, free)``: the teacher side (teacher
    forcing), the free side (free-running), or a class chosen from the free side (generation)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return _Lowering(model, mode).run()


class _Lowering:
    def __init__(self, model: Model, mode: str = "teacher"):
        self.m = model
        self.mode = mode
        self.ops: Dict[int, Op] = {}
        self.leaves: Dict[str, int] = {}
        self.values: Dict[str, int] = {}
        self.losses: List[int] = []
        self.stmt: Optional[ast.Node] = None
        self.owner = ""
        self.top: Optional[ast.Expr] = None  # the equation's whole right-hand side

    def new(self, op: str, args, ty: Ty, label: str, name=None, **attrs) -> int:
        i = len(self.ops)
        self.ops[i] = Op(i, op, list(args), ty, self.stmt, name, label, attrs)
        return i

    def run(self) -> Graph:
        m = self.m
        self.late = m.cycles.late()  # the values on a recurrence and computed from one
        for name, p in m.params.items():
            self.leaves[name] = self.new("param", [], Ty(p.kind, *(p.shape + (None, None))[:2]),
                                         name, name)
        for name, inp in m.inputs.items():
            self.leaves[name] = self.new("input", [], Ty("vec", inp.size,
                                                         tk=STEP if inp.seq else STATIC,
                                                         axis=inp.axis), name, name)
        for name, tg in m.targets.items():
            self.leaves[name] = self.new("target", [], Ty("vec", tg.size,
                                                          tk=STEP if tg.seq else STATIC,
                                                          axis=tg.axis), name, name)
        for name, v in m.values.items():
            self.stmt = v.eq
            self.owner = name
            self.top = v.eq.expr
            key, delay = self.expr(v.eq.expr)
            if delay != SAME or not isinstance(key, int) or self.ops[key].name is not None:
                ty = self.ops[key].ty if isinstance(key, int) else Ty(
                    "vec", v.size, tk=STEP if v.seq else STATIC, axis=v.axis)
                key = self.new("identity", [(key, delay)], ty, name)
            op = self.ops[key]
            op.name = name
            op.label = name
            self.values[name] = key
        self.resolve()
        for loss in m.losses:
            self.loss(loss)
        return Graph(m, self.ops, self.values, self.leaves, self.losses)

    def resolve(self) -> None:
        for op in self.ops.values():
            op.args = [(self.values[k[1]] if isinstance(k, tuple) else k, d) for k, d in op.args]

    # expressions return (key, delay)
    def expr(self, e: ast.Expr) -> Tuple[Key, Delay]:
        m = self.m
        ty = m.types.get(e)
        if isinstance(e, ast.Num):
            label = {1: "one", 2: "two"}.get(e.value, "c")
            return self.new("const", [], Ty("scalar"), label, value=e.value), SAME
        if isinstance(e, ast.Ref):
            return self.ref(e)
        if isinstance(e, ast.Unary):
            a = self.expr(e.operand)
            return self.new("neg", [a], ty, self.meaning("minus", None, a, "neg")), SAME
        if isinstance(e, ast.Binary):
            if e.op == "@":
                w, v = self.expr(e.left), self.expr(e.right)
                label = f"{self.label_of(w)}_{self.label_of(v)}"
                return self.new("matvec", [w, v], ty, label), SAME
            if e.op in "+-":
                return self.sum(e, ty), SAME
            op = {"*": "mul", "/": "div"}[e.op]
            a, b = self.expr(e.left), self.expr(e.right)
            return self.new(op, [a, b], ty, self.meaning({"mul": "times", "div": "over"}[op],
                                                         a, b, op)), SAME
        if isinstance(e, ast.Call):
            if e.func in ("affine", "gate"):
                return self.connection(e), SAME
            if e.func == "attend":
                return self.attention(e), SAME
            if e.func == "feedback":
                if self.mode == "teacher":
                    return self.expr(e.args[0])
                free = self.expr(e.args[1])
                if self.mode == "free":
                    return free
                # generation feeds what teacher forcing feeds at the first steps, the start
                # class of onehot(y[t-d]), unless state0 seeds the fed-back state
                teach, src = e.args[0], e.args[1]
                start = None
                if isinstance(teach, ast.Call) and teach.func == "onehot" and \
                        isinstance(src, ast.Ref) and src.name in m.states:
                    r = teach.args[0]
                    start = (m.targets[r.name].decl.start or 0, -r.index.offset, src.name)
                return self.new("choose", [free], ty, f"{self.owner}_chosen", start=start), SAME
            if e.func == "embed":  # the rows of E picked by the class input's indices
                r = e.args[0]
                E = self.leaves[m.embeds[e]]
                return self.new("embed", [(E, SAME), (self.leaves[r.name], SAME)], ty,
                                f"{r.name}_embedded"), SAME
            if e.func == "onehot" and e.args[0].name in m.inputs:  # of a class input
                r = e.args[0]
                return self.new("onehot", [(self.leaves[r.name], SAME)], ty, f"{r.name}_onehot",
                                delay=0, start=0), SAME
            if e.func == "onehot":
                r = e.args[0]
                tgt = m.targets[r.name]
                return self.new("onehot", [(self.leaves[r.name], SAME)], ty, f"{r.name}_onehot",
                                delay=-r.index.offset, start=tgt.decl.start or 0), SAME
            out = self.owner if e is self.top else f"{self.owner}_{e.func}"
            if e.func in PREACTIVATED and len(e.args) == 1 and isinstance(e.args[0], ast.Binary) \
                    and e.args[0].op in "+-":  # the pre-activation: a_<value>
                args = [(self.sum(e.args[0], m.types.get(e.args[0]), f"a_{out}"), SAME)]
            else:
                args = [self.expr(a) for a in e.args]
            return self.new(e.func, args, ty, f"{self.owner}_{e.func}"), SAME
        raise TypeError(e)  # pragma: no cover

    def is_late(self, e) -> bool:
        """Does expression e read a recurrent value (or one computed from one)?"""
        return any(isinstance(n, ast.Ref) and n.name in self.late for n in ast.walk(e))

    def meaning(self, word: str, a, b, op: str) -> str:
        """A label that says what a value is (``r_times_h1``, ``one_minus_z``, ``minus_x``) when
        its operands have short labels; else the owner's name and the op (``h_mul``)."""
        names = [self.label_of(x) for x in (a, b) if x is not None]
        if all(len(n) <= 12 for n in names):
            return f"{names[0]}_{word}_{names[1]}" if len(names) == 2 else f"{word}_{names[0]}"
        return f"{self.owner}_{op}"

    def sum(self, e: ast.Binary, ty: Ty, label: Optional[str] = None) -> int:
        """A chain of + and -, reassociated so that the terms that do not depend on any
        recurrence come first: their partial sum is one array computed before the time loop
        (input projections plus biases), and the loop adds only the recurrent terms.  With
        ``label`` (a pre-activation, ``a_h``), the whole sum is named so and its partial sums
        ``h_sum`` (the terms no recurrence reads) and ``h_acc``; a sum of two short operands says what it is (``one_minus_z``)."""
        terms = []

        def flatten(x, sign):
            if isinstance(x, ast.Binary) and x.op in "+-":
                flatten(x.left, sign)
                flatten(x.right, sign if x.op == "+" else -sign)
            else:
                terms.append((sign, x))
        flatten(e, 1)
        order = [t for t in terms if not self.is_late(t[1])] + \
            [t for t in terms if self.is_late(t[1])]
        acc = None
        acc_tk = PARAM
        for k, (sign, x) in enumerate(order):
            key = self.expr(x)
            xty = self.m.types.get(x)
            tk = max(acc_tk, xty.tk if xty else PARAM)
            part = Ty(ty.shape, ty.rows, ty.cols, tk, ty.axis if tk == STEP else None)
            if acc is None:
                acc = self.new("neg", [key], part, f"{self.owner}_neg") if sign < 0 else key
                if sign > 0 and (key[1] != SAME or not isinstance(key[0], int)):
                    acc = self.new("identity", [key], part, f"{self.owner}_term")
                elif sign > 0:
                    acc = key[0]
            else:
                kind = "add" if sign > 0 else "sub"
                if label:
                    name = label if len(order) == k + 1 else partial_label(
                        label[2:], self.is_late(x), self.is_late(order[k + 1][1]))
                elif len(order) == 2:
                    name = self.meaning({"add": "plus", "sub": "minus"}[kind], (acc, SAME), key, kind)
                else:
                    name = f"{self.owner}_{kind}"
                acc = self.new(kind, [(acc, SAME), key], part, name)
            acc_tk = tk
        return acc

    def label_of(self, key_delay) -> str:
        key, delay = key_delay
        name = key[1] if isinstance(key, tuple) else self.ops[key].name or self.ops[key].label
        return delayed_label(name, delay)

    def ref(self, r: ast.Ref) -> Tuple[Key, Delay]:
        m = self.m
        name, ix = r.name, r.index
        if name in m.consts:
            return self.new("const", [], Ty("scalar"), name, value=m.consts[name]), SAME
        key: Key = self.leaves[name] if name in self.leaves else ("value", name)
        if ix is None or ix.kind == "rel":
            return key, Step(-ix.offset if ix else 0)
        size = m.inputs[name].size if name in m.inputs else m.values[name].size
        label = f"{name}_end" if ix.kind == "end" else f"{name}_{ix.offset}"
        if ix.kind == "end" and ix.offset:
            label = f"{name}_end{-ix.offset}"
        axis = m.inputs[name].axis if name in m.inputs else m.values[name].axis
        picked = self.new("pick", [(key, SAME)], Ty("vec", size, tk=STATIC), label, index=ix,
                          axis=axis)
        if axis in m.nested:  # a chosen step w of every step s: regrouped into a value over s
            return self.regroup(picked, m.types[r]), SAME
        return picked, SAME

    def regroup(self, key: int, ty: Ty) -> int:
        """Rows for every step s of every sequence (the batch of a nested axis w) -> a value
        over the steps s."""
        return self.new("regroup", [(key, SAME)], ty, f"{self.ops[key].label}_{ty.axis}",
                        axis=ty.axis)

    def connection(self, c: ast.Call) -> int:
        conn = self.m.connections[c]
        ty = self.m.types[c]
        terms = []  # (late, op id, time kind): the products W_i @ source_i, and the bias
        for wname, src in conn.weights:
            s = self.expr(src)
            sty = self.m.types[src]
            term = self.new("matvec", [(self.leaves[wname], SAME), s],
                            Ty("vec", conn.size, tk=sty.tk, axis=sty.axis),
                            f"{wname}_{self.label_of(s)}")
            terms.append((self.is_late(src), term, sty.tk))
        if conn.bias:
            terms.append((False, self.leaves[conn.bias], PARAM))
        terms.sort(key=lambda t: t[0])  # stable: what no recurrence reads first, then the rest
        acc, acc_tk = terms[0][1], terms[0][2]
        for k, (late, term, tk) in enumerate(terms[1:], 1):
            acc_tk = max(acc_tk, tk)
            label = f"a_{conn.prefix}" if k == len(terms) - 1 else \
                partial_label(conn.prefix, late, terms[k + 1][0])
            acc = self.new("add", [(acc, SAME), (term, SAME)],
                           Ty("vec", conn.size, tk=acc_tk, axis=ty.axis if acc_tk == STEP
                              else None), label)
        if conn.activation:
            acc = self.new(conn.activation, [(acc, SAME)], ty, f"{conn.prefix}_gate")
        return acc

    def attention(self, c: ast.Call) -> int:
        """attend(q, K, V) as two ops: the weights over K's steps, and the weighted sum of V."""
        m = self.m
        att = m.attentions[c]
        ty = m.types[c]
        q = self.expr(c.args[0])
        main = m.axes[0]
        steps = Size.dim("T" if att.key_axis == main else f"T_{att.key_axis}")
        params = [(self.leaves[p], SAME) for p in att.params.values()]
        # pooling over a nested axis: one row per step s of every sequence, then regrouped
        wty = Ty("vec", steps, tk=STATIC) if att.regroup else Ty("vec", steps, tk=ty.tk,
                                                                 axis=ty.axis)
        weights = self.new("attn_weights", [q, (("value", att.keys) if att.keys in m.values else
                                                self.leaves[att.keys], ATTEND)] + params,
                           wty, f"{att.owner}_weights",
                           score=att.score, roles=list(att.params), window=att.window,
                           causal=att.causal, key_axis=att.key_axis, regroup=att.regroup)
        values = ("value", att.values) if att.values in m.values else self.leaves[att.values]
        context = self.new("attn_context", [(weights, SAME), (values, ATTEND)],
                           Ty("vec", ty.rows, tk=STATIC) if att.regroup else ty,
                           f"{att.owner}_context")
        return self.regroup(context, ty) if att.regroup else context

    def loss(self, loss) -> None:
        m = self.m
        self.stmt = loss.node
        self.owner = "loss"
        pred, target = loss.pred, loss.target
        o = self.values[pred.name]
        y = self.leaves[target.name]
        picked = pred.index is not None and pred.index.kind != "rel"
        tk = STATIC if picked or not m.values[pred.name].seq else STEP

        def at(key: int) -> int:
            if not picked:
                return key
            src = self.ops[key]
            return self.new("pick", [(key, SAME)], Ty("vec", src.ty.rows, tk=STATIC),
                            f"{src.label}_end", index=pred.index, axis=src.ty.axis)

        attrs = dict(steps=loss.steps, reduce=loss.reduce, tk=tk, axis=m.values[pred.name].axis)
        if loss.func == "cross_entropy":
            z, zdelay = self.ops[o].args[0]
            if zdelay != SAME:
                z = self.new("identity", [(z, zdelay)], self.ops[z].ty, f"{pred.name}_logits")
            i = self.new("cross_entropy", [(at(z), SAME), (at(o), SAME), (y, SAME)], Ty("scalar"),
                         f"loss_{pred.name}", **attrs)
        else:
            i = self.new("squared_error", [(at(o), SAME), (y, SAME)], Ty("scalar"),
                         f"loss_{pred.name}", **attrs)
        self.losses.append(i)


def unroll(graph: Graph, T: int) -> nx.DiGraph:
    """The cell graph unrolled for ``T`` steps: nodes ``(name, t)`` for t = 1..T (and the initial
    values that delayed references reach: ``(h, 0)``, ``(h, -1)``, ... for a forward state,
    ``(g, T + 1)``, ... for a backward one), static values as ``(name, None)``.  A DAG."""
    if T < 1:
        raise ValueError("unroll needs T >= 1")
    cell = graph.cell_graph()
    g = nx.DiGraph()
    seq = {n for n, d in cell.nodes(data=True) if d.get("seq")}
    for n in cell.nodes:
        if n in seq:
            for t in range(1, T + 1):
                g.add_node((n, t))
        else:
            g.add_node((n, None))
    for src, dst, data in cell.edges(data=True):
        delay = data["delay"]
        if isinstance(delay, Init):
            g.add_edge((src, None), (dst, 0))
            continue
        if dst not in seq:
            if src in seq:
                for t in range(1, T + 1):  # a picked step: conservatively, all of them
                    g.add_edge((src, t), (dst, None))
            else:
                g.add_edge((src, None), (dst, None))
            continue
        for t in range(1, T + 1):
            if src not in seq:
                g.add_edge((src, None), (dst, t))
            elif isinstance(delay, Whole):
                for s in range(1, T + 1):
                    g.add_edge((src, s), (dst, t))
            else:
                g.add_edge((src, t - delay.steps), (dst, t))
    for n in list(g.nodes):
        name, t = n
        if t is not None and (t <= 0 or t > T):  # initial values, before 1 or after T
            g.nodes[n]["initial"] = True
    assert nx.is_directed_acyclic_graph(g), "unrolled graph has a cycle"
    return g


def to_dot(g: nx.DiGraph, title: str = "rnnspec") -> str:
    """Graphviz DOT text for a cell graph (edges labelled with delays) or an unrolled graph."""
    def nid(n) -> str:
        if isinstance(n, tuple):
            name, t = n
            return f'"{name}" ' if t is None else f'"{name}[{t}]"'
        return f'"{n}"'

    lines = [f'digraph "{title}" {{', "  rankdir=LR;", '  node [fontname="Helvetica"];']
    shapes = {"input": "box", "param": "note", "state": "doublecircle", "value": "ellipse"}
    for n, data in sorted(g.nodes(data=True), key=lambda x: str(x[0])):
        attrs = []
        kind = data.get("kind")
        if kind:
            attrs.append(f"shape={shapes.get(kind, 'ellipse')}")
        if data.get("initial"):
            attrs.append("style=dashed")
        lines.append(f"  {nid(n).strip()}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for u, v, *rest in sorted(g.edges(data=True), key=lambda e: (str(e[0]), str(e[1]),
                                                                  _edge_order(e[2]))):
        data = rest[0] if rest else {}
        delay = data.get("delay")
        label = ""
        if delay is not None and delay != SAME:
            dashed = ", style=dashed" if delay != CHOSEN else ""
            label = f' [label="{delay.text()}"{dashed}]'
        lines.append(f"  {nid(u).strip()} -> {nid(v).strip()}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edge_order(data: dict) -> str:
    """Edges between the same two nodes in the order DOT files have always had them: by the
    delay as it was once spelled (its number of steps, or 'whole', 'attend', 'init')."""
    delay = data.get("delay")
    if delay is None:
        return "None"
    return str(delay.steps) if is_step(delay) else delay.text()


__all__ = ["Graph", "Op", "build_graph", "unroll", "to_dot", "PARAM", "STATIC", "STEP", "Size"]
