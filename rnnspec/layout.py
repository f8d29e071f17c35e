"""Stage 4b, layout: :class:`rnnspec.schedule.Schedule` -> :class:`Layout`, before any code.

In: a schedule (stages, padding, consumers).  Out: where every value lives in the generated
module, decided before codegen writes a line, and printable (``rnnspec plan SPEC``):

- ``leaf``: a parameter, input or target, read from its dict; ``const``: a literal;
- ``inline``: used once, in its own stage, and not read by the backward pass, so it is written
  into its consumer's expression;
- ``step``: a variable of one loop step (nothing reads it outside its step, backward does not
  need it);
- ``array``: a (T, B, n) array computed for all steps at once (or a (B, n) / (n,) value);
- ``buffer``: a loop value's (T + extra, B, n) buffer, with the initial steps its delayed reads
  need before step 1 and after step T;
- ``view``: a slice of one buffer that several gates of the same activation share (an LSTM's
  i, f, o: one sum and one sigmoid per step for all three).

It also says which gate groups run as one sum per step (:class:`GateGroup`) and what the cache
keeps for the backward pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from .check import PARAM, STEP
from .delays import SAME, Delay, Whole
from .ops import is_loss, rule
from .schedule import Schedule


LEAVES = ("param", "input", "target", "const")


@dataclass
class GateGroup:
    """Gates act_j(H_j + part_j(S)) reading one fused product S in a loop, with H_j the slices
    of one hoisted fused product X of the same layout: per step, one sum S + X[t] and one call
    per run of the same activation."""
    S: int  # the loop's fused product (of the recurrent input)
    X: int  # the hoisted fused product (of the other inputs)
    x_first: int  # the first of X's parts the gates use
    x_last: int  # the last of them
    x_all: bool  # all of X's parts (no slice of X[t] needed)
    runs: List[List[Tuple[int, int]]]  # runs of one activation: (activation op, part of S)
    acts: Set[int] = field(default_factory=set)


@dataclass
class Layout:
    sched: Schedule
    inline: Dict[int, bool]
    local: Set[int]
    groups: Dict[int, List[GateGroup]]  # loop stage -> its gate groups
    storage: Dict[int, str]  # op -> 'leaf', 'const', 'inline', 'step', 'array', 'buffer', 'view'

    def __str__(self) -> str:
        return show_layout(self, backward_reads(self.sched, self))


def plan_layout(sched: Schedule) -> Layout:
    """Decide the storage of every op of ``sched`` (see the module docstring)."""
    ops = sched.graph.ops
    inline = {i: _inlinable(sched, i) for i in ops}
    local = {i for i in ops if _step_local(sched, inline, i)}
    groups = {k: gate_groups(sched, inline, local, st.ops)
              for k, st in enumerate(sched.stages) if st.kind == "loop"}
    views = {act for gs in groups.values() for g in gs for run in g.runs if len(run) > 1
             for act, _ in run}
    storage = {}
    for i, op in ops.items():
        storage[i] = ("const" if op.op == "const" else "leaf" if op.op in LEAVES else
                      "inline" if inline[i] else "step" if i in local else
                      "view" if i in views else
                      "buffer" if sched.in_loop(i) and op.tk == STEP else "array")
    return Layout(sched, inline, local, groups, storage)


def _inlinable(s: Schedule, i: int) -> bool:
    ops = s.graph.ops
    op = ops[i]
    if op.op in LEAVES or op.name or op.op == "pick" or is_loss(op.op):
        return False
    uses = s.consumers[i]
    if len(uses) != 1:
        return False
    c, pos, delay = uses[0]
    cop = ops[c]
    if delay != SAME or s.stage_of[c] != s.stage_of[i] or cop.op == "pick" or is_loss(cop.op):
        return False
    return not (rule(op.op).needs_out or pos in rule(cop.op).needs_args)


def _step_local(s: Schedule, inline: Dict[int, bool], i: int) -> bool:
    """A loop value that only its own step reads, and that the backward pass does not need:
    a variable of the step, not an array over all steps."""
    ops = s.graph.ops
    op = ops[i]
    if inline[i] or op.op in LEAVES or op.name or not s.in_loop(i):
        return False
    if rule(op.op).needs_out or i in s.padding:
        return False
    for c, pos, delay in s.consumers[i]:
        if delay != SAME or s.stage_of[c] != s.stage_of[i]:
            return False
        if ops[c].op == "pick" or is_loss(ops[c].op) or pos in rule(ops[c].op).needs_args:
            return False
    return True


def carries(s: Schedule, i: int) -> bool:
    """A state in a loop that keeps its value past the end of a shorter sequence (it reads its
    own previous step in the loop's direction)."""
    op = s.graph.ops[i]
    k = s.stage_of[i]
    if op.name not in s.graph.model.states or s.stages[k].kind != "loop":
        return False
    before, after = s.padding.get(i, (0, 0))
    return (before if s.stages[k].direction > 0 else after) >= 1


def fused_parts(s: Schedule, x: int) -> List[int]:
    """The part ops of fused product x, in order."""
    ops = s.graph.ops
    return sorted({c for c, _, _ in s.consumers[x] if ops[c].op == "part"},
                  key=lambda c: ops[c].attrs["index"])


def fresh_product(s: Schedule, inline: Dict[int, bool], op, arg: Optional[int] = None) -> bool:
    """Is an argument of ``op`` (or ``arg``) an inlined matrix product with op's full shape?"""
    ops = s.graph.ops
    args = [arg] if arg is not None else [a for a, _ in op.args]
    return any(inline.get(a) and ops[a].ty.tk == op.ty.tk and ops[a].ty.rows == op.ty.rows and
               (ops[a].op == "matvec" or own_part(s, inline, a)) for a in args)


def own_part(s: Schedule, inline: Dict[int, bool], a: int) -> bool:
    """A part of a fused product that nothing else reads: its slice may be updated in place."""
    ops = s.graph.ops
    op = ops[a]
    if op.op != "part" or op.args[0][1] != SAME:
        return False
    src = op.args[0][0]
    return all(ops[c].op == "part" and inline.get(c) and d == SAME
               for c, _, d in s.consumers[src]) and not ops[src].name


def gate_groups(s: Schedule, inline: Dict[int, bool], local: Set[int],
                loop: List[int]) -> List[GateGroup]:
    """The gate groups of a loop stage's ops (see :class:`GateGroup`)."""
    ops = s.graph.ops
    groups = []
    for S in loop:
        cons = s.consumers[S]
        if ops[S].op != "matvec" or not cons or any(
                ops[c].op != "part" or d != SAME or not inline[c] for c, _, d in cons):
            continue
        members = _gate_members(s, inline, local, S)
        if members is None:
            continue
        X, xs, pairs = members
        px = fused_parts(s, X)
        if len(pairs) < 2 or xs != list(range(xs[0], xs[0] + len(xs))) or \
                [ops[x].ty.rows for x in px[xs[0]:xs[0] + len(xs)]] != \
                [ops[c].ty.rows for c, _ in pairs]:
            continue
        runs: List[List[Tuple[int, int]]] = []
        for c, act in pairs:
            if runs and ops[runs[-1][-1][0]].op == ops[act].op:
                runs[-1].append((act, c))
            else:
                runs.append([(act, c)])
        groups.append(GateGroup(S, X, xs[0], xs[-1], len(xs) == len(px), runs,
                                {act for _, act in pairs}))
    return groups


def _gate_members(s: Schedule, inline, local, S: int):
    """(X, indices of X's parts, [(part of S, activation)]) for the parts of S that are gates
    act(H + part) with H a fresh part of one hoisted product X; None when one is not."""
    ops = s.graph.ops
    X, xs, pairs = None, [], []
    for c in fused_parts(s, S):
        uses = s.consumers[c]
        if len(uses) != 1:
            return None
        a, pos, _ = uses[0]
        A = ops[a]
        if A.op != "add" or not inline[a] or len(s.consumers[a]) != 1:
            return None
        h = A.args[1 - pos][0]
        act = s.consumers[a][0][0]
        H = ops[h]
        if ops[act].op not in ("sigmoid", "tanh") or inline[act] or act in local or \
                carries(s, act) or A.args[1 - pos][1] != SAME or s.in_loop(h) or \
                H.op != "add" or not fresh_product(s, inline, H):
            return None
        xp = next(x for x, _ in H.args if fresh_product(s, inline, H, x))
        if ops[xp].op != "part" or (X is not None and ops[xp].args[0][0] != X):
            return None
        X = ops[xp].args[0][0]
        xs.append(ops[xp].attrs["index"])
        pairs.append((c, act))
    return X, xs, pairs


# ---- the printed plan ---------------------------------------------------------------------------
def _shape(s: Schedule, i: int, step: bool = False) -> str:
    """The shape of op i's storage in the spec's dims: (T + 1, B, hidden) for a buffer with one
    initial step; with ``step``, one step's (B, hidden)."""
    op, m = s.graph.ops[i], s.graph.model
    ty = op.ty
    size = [] if ty.shape == "scalar" else [ty.rows.text()] if ty.shape == "vec" else \
        [ty.rows.text(), ty.cols.text()]
    classes = op.op == "target" and m.targets[op.name].kind == "class" or \
        op.op == "input" and m.inputs[op.name].kind == "class"
    if classes:
        size = []  # class indices
    lead = [] if ty.tk == PARAM else ["B" + (f"_{ty.axis}" if ty.axis in m.nested else "")]
    if ty.tk == STEP and not step:
        T = "T" if not m.axes or ty.axis in (None, m.axes[0]) else f"T_{ty.axis}"
        extra = sum(s.padding.get(i, (0, 0)))
        lead.insert(0, f"{T} + {extra}" if extra else T)
    text = f"({', '.join(lead + size)})"
    return text + (f", classes of {ty.rows.text()}" if classes else "")


def _label(s: Schedule, i: int) -> str:
    op = s.graph.ops[i]
    return op.name or f"%{i} {op.label}"


def _reads(s: Schedule, i: int) -> str:
    ops = s.graph.ops
    out = []
    for a, d in ops[i].args:
        name = _label(s, a) if ops[a].op != "const" else repr(ops[a].attrs["value"])
        out.append(name if d == SAME else f"{name}[{_delay_text(d)}]")
    return ", ".join(out)


def _delay_text(d: Delay) -> str:
    """``t-1``, ``t+2``; ``all`` for a whole sequence (attention's keys and values)."""
    return "all" if isinstance(d, Whole) else d.text()


def _where(lay: Layout, i: int, views: Dict[int, List[int]]) -> str:
    s = lay.sched
    op = s.graph.ops[i]
    kind = lay.storage[i]
    if kind == "inline":
        return f"inline in {_label(s, s.consumers[i][0][0])}"
    if kind == "leaf":
        return f"{op.op} {_shape(s, i)}" if op.ty.shape != "scalar" else op.op
    if is_loss(op.op):
        return "scalar, summed into the loss"
    shape = _shape(s, i)
    if kind == "step":
        return f"step variable {_shape(s, i, step=True)}"
    if kind == "view":
        others = ", ".join(_label(s, j) for j in views[i] if j != i)
        return f"view of one buffer with {others}"
    before, after = s.padding.get(i, (0, 0))
    text = f"{kind} {shape}"
    if before:
        text += f", {before} initial step{'s' if before > 1 else ''} before step 1"
    if after:
        text += f", {after} after step T"
    return text


def show_layout(lay: Layout, kept: Optional[Set[int]] = None) -> str:
    """The schedule and the storage of every op, stage by stage (``rnnspec plan``); with
    ``kept`` (:func:`backward_reads`), what the cache keeps for the backward pass."""
    s = lay.sched
    ops = s.graph.ops
    views: Dict[int, List[int]] = {}
    for gs in lay.groups.values():
        for g in gs:
            for run in g.runs:
                if len(run) > 1:
                    for act, _ in run:
                        views[act] = [a for a, _ in run]
    rows = []  # a stage's title (a str) or an op's columns (a tuple)
    for k, st in enumerate(s.stages):
        if st.kind == "all":
            rows.append(f"stage {k}: all steps at once")
        else:
            way = "forward" if st.direction > 0 else "backward"
            rows.append(f"stage {k}: time loop over {st.axis or 't'}, {way} in time")
        for i in st.ops:
            if ops[i].op == "const":
                continue
            mark = " *" if kept is not None and i in kept and ops[i].op != "param" else ""
            rows.append((_label(s, i), ops[i].op, _reads(s, i), _where(lay, i, views) + mark))
        for g in lay.groups.get(k, []):
            acts = ", ".join(_label(s, a) for run in g.runs for a, _ in run)
            rows.append(f"  gates {acts}: one sum {_label(s, g.S)} + {_label(s, g.X)}[t] per "
                        f"step, one call per run of one activation")
    cols = [r for r in rows if isinstance(r, tuple)]
    widths = [min(max((len(r[c]) for r in cols), default=0), cap) for c, cap in
              ((0, 22), (1, 13), (2, 34))]
    lines = [r if isinstance(r, str) else "  " + "  ".join(
        f"{text:<{w}}" for text, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    if kept is not None:
        lines.append("* kept in the cache for the backward pass")
    return "\n".join(lines)


# ---- what the backward pass reads ---------------------------------------------------------------
def gradient_flows(s: Schedule) -> Set[int]:
    """The ops that receive a gradient: losses, named values and states (an upstream gradient
    may be given for them), and whatever feeds one through an argument with a derivative."""
    ops, g = s.graph.ops, s.graph
    flows: Set[int] = set()
    changed = True
    while changed:  # (loops: a consumer may come first in the order, through a delay)
        changed = False
        for i in reversed(s.order):
            op = ops[i]
            if i in flows or op.op in ("const", "target"):
                continue
            if is_loss(op.op) or op.name in g.model.states or (
                    op.name and op.op not in LEAVES and op.name in g.values) or any(
                    c in flows and pos not in rule(ops[c].op).no_grad
                    for c, pos, _ in s.consumers[i]):
                flows.add(i)
                changed = True
    return flows


def backward_reads(s: Schedule, lay: "Layout", flows: Optional[Set[int]] = None) -> Set[int]:
    """The ops whose forward values the backward pass reads (what the cache keeps): what the
    rules read.  (A gradient buffer does not need its value: one whose value is read anyway
    is made like it, any other is shaped from the dims, see :func:`gradient_buffers`.)"""
    ops = s.graph.ops
    flows = gradient_flows(s) if flows is None else flows
    reads: Set[int] = set()
    for c in flows:
        op = ops[c]
        if op.op in LEAVES:
            continue
        r = rule(op.op)
        wanted = [pos for pos, (a, _) in enumerate(op.args)
                  if ops[a].op not in ("const", "target") and pos not in r.no_grad]
        if not wanted:
            continue
        if r.needs_out:
            reads.add(c)
        for pos in r.needs_args:
            if pos < len(op.args) and any(p != pos or pos in r.reads_own for p in wanted):
                reads.add(op.args[pos][0])
    return reads


def gradient_buffers(s: Schedule, flows: Optional[Set[int]] = None) -> Set[int]:
    """The ops whose gradient is a zero-filled buffer over all their steps
    (:func:`gradient_buffer`), which the adjoint adds the contributions into."""
    flows = gradient_flows(s) if flows is None else flows
    return {i for i in s.graph.ops if gradient_buffer(s, i, flows)}


def gradient_buffer(s: Schedule, i: int, flows: Set[int]) -> bool:
    """Does op i's gradient need a zero-filled buffer over all its steps?  In a loop: when it
    is read after the loop, by a later step (a delay), or is a state; elsewhere: when it is read
    with a delay or at chosen steps, or is a state (the upstream gradient of its final steps is
    scattered into its last step: a state computed for all steps at once, such as a fed-back
    output under teacher forcing)."""
    op, g = s.graph.ops[i], s.graph
    cons = s.consumers[i]
    k = s.stage_of[i]
    state = op.name in g.model.states and op.op not in ("param", "input")
    if s.in_loop(i):
        outside = any(s.stage_of[c] != k for c, _, _ in cons)
        pushes = any(s.stage_of[c] == k and d.steps for c, _, d in cons)
        return outside or pushes or state
    if i not in flows and op.op != "input":
        return False
    return bool(state or s.padding.get(i, (0, 0)) != (0, 0) or any(
        d.steps or g.ops[c].op == "pick" for c, _, d in cons))
