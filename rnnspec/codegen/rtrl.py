"""Forward mode in time: the generated ``rtrl`` (real-time recurrent learning), from the JVP rules.

In: the :class:`.values.Values` of a schedule without fused products (the ops as the spec
wrote them).  Out: the lines of ``rtrl(params, inputs, targets, state0=None, lengths=None,
per_step=False)``: the network run one step at a time, each value followed by its tangents
with respect to every parameter it depends on (one array per parameter, the direction axis
first: ``(W.size, B, n)`` for a value of B rows of n), the states' tangents -- RTRL's
sensitivities ds_t/dW -- carried from step to step, and the losses' tangents, which are their
gradients, summed as the steps go.  Nothing is kept per step: memory does not grow with T.

Each op's lines come from its rule in :mod:`rnnspec.ops`: the forward node and the
forward-mode node (``Rule.tangent``).  Two things are known only here: a parameter's tangent
with respect to itself is the identity (``_seed``; in a product ``W @ v`` the structured
``_seed_matvec``, which never forms the identity of W), and an argument of lower rank than the
value (a bias beside rows) has its tangent lifted to the value's rank (``_lift``).  The
helpers are rnnspec/runtime/tangents.py.

Where each op runs (:func:`placement`): ``once`` before the steps (values of the parameters
and of inputs per sequence, such as a computed initial state), ``pre`` for all steps before
the loop (values of the inputs alone: they have no tangent), ``step`` and ``loss`` in the
loop, ``pick`` (a sequence's last step, ``h[end]``) and ``post`` (values computed from it,
with their losses), run in the loop at the step where a sequence ends, for the sequences
that end there.

:func:`rtrl_refusal` says which specs cannot be followed step by step.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import networkx as nx

from ..check import STATIC, STEP
from ..delays import SAME, Step
from ..errors import Reporter, SpecError
from ..expr import (ZERO, Bin, Call, Code, If, List_, Name, Neg, Num, _children, add, assign,
                    call, mul, parts, replace, show)
from ..ops import BROADCASTING, is_loss, rule
from ..truncation import refusal
from .text import Emitter, spec_comment
from .values import Pass

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


class Rtrl(Pass):
    """The ``rtrl`` function of one unfused schedule."""

    def function(self) -> List[str]:
        self.where, self.deps = placement(self.g)
        self.order = self.step_order()
        self.tan: Dict[Tuple[int, str], str] = {}  # (op, what) -> its variable
        self.hist: Dict[int, int] = self.history()
        self.loss_params = [p for p in self.m.params
                            if any(p in self.deps[i] for i in self.g.losses)]
        self.live = self.live_tangents()
        body = Emitter()
        body.level = 1
        self.before_loop(body)
        self.loop(body)
        self.results(body)
        em = Emitter()
        em("def rtrl(params, inputs, targets, state0=None, lengths=None, per_step=False):")
        with em.indent():
            self.docstring(em)
            em("if targets is None:")
            with em.indent():
                em("raise ValueError('rtrl needs targets: it computes the gradient of the loss')")
            em("params, inputs, targets, state0, dims = _validate(params, inputs, targets, "
               "state0, None, lengths)")
            em(self.v.dims_line())
            text = body.text()
            em.extend(f"{self.v.dimvar(d)} = dims[{d!r}]" for d in sorted(self.v.dims_used)
                      if self.v.dimvar(d) in text)
            self.v.mask_lines(em, text, comments=True)
        em.lines.extend(body.lines)
        return em.lines

    def docstring(self, em: Emitter) -> None:
        em('"""Real-time recurrent learning: the loss and its gradient, forward in time.')
        em("")
        em("The network runs one step at a time; after each value come its tangents with")
        em("respect to every parameter it depends on (direction axis first: one direction per")
        em("entry of the parameter), and the states' tangents -- the sensitivities ds_t/dW --")
        em("are carried to the next step, so memory does not grow with T.  The loss's tangents")
        em("are its gradient, summed as the steps go.  Returns (loss, {'params': grads}) like")
        em("loss_and_grad (the parameters only: RTRL's directions are the parameters); with")
        em("per_step=True, (loss, grads, steps): steps[t] the gradient of the loss terms of")
        em("step t, available as soon as step t has run (a loss of a sequence's last step counts")
        em("at the step where the sequence ends).")
        em('"""')

    def step_order(self) -> List[int]:
        """The ops in an order that computes one step (what a value reads at the same step
        first), statement by statement as the lowering made them."""
        dag = nx.DiGraph()
        dag.add_nodes_from(self.where)
        dag.add_edges_from((a, i) for i in self.where for a, d in self.ops[i].args
                           if not (isinstance(d, Step) and d.steps != 0))
        return list(nx.lexicographical_topological_sort(dag))

    def live_tangents(self) -> Set[Tuple[int, str]]:
        """The (op, parameter) pairs whose tangent something reads: a loss's rule, a carried
        state's next step, a state's computed initial value, or the rule of an op whose own tangent is read (a fixpoint over the
        rules' forward-mode nodes: an argument counts when its tangent survives in the node,
        so the softmax's output of a cross-entropy taken from the logits has none)."""
        live = {(a, p) for a in self.hist for p in self.deps[a]}
        for a in self.hist:  # a state's computed initial value: its tangent starts the state's
            st = self.m.states[self.ops[a].name]
            if st.init == "value":
                src = self.g.values[st.init_name]
                live |= {(self.source(src), p) for p in self.deps[a] if p in self.deps[src]}
        changed = True
        while changed:
            changed = False
            for j in self.order:
                if self.where.get(j) not in ("once", "step", "loss", "post"):
                    continue
                for p in self.deps[j]:
                    if not is_loss(self.ops[j].op) and (j, p) not in live:
                        continue
                    for a in self.read_tangents(j, p):
                        if (self.source(a), p) not in live:
                            live.add((self.source(a), p))
                            changed = True
        return live

    def read_tangents(self, j: int, p: str) -> List[int]:
        """The arguments of op j whose tangent for p its forward-mode rule reads."""
        op = self.ops[j]
        ctx = "step" if self.where[j] in ("step", "loss") else self.where[j]
        args = [self.value(a, d, ctx) for a, d in op.args]
        attrs = {"w": None} if is_loss(op.op) else self.v.attrs(op, "step")
        marks = [Name(f"__tangent_{k}") if p in self.deps[a] else ZERO
                 for k, (a, _) in enumerate(op.args)]
        node = rule(op.op).tangent(marks, Name(self.v.pyname[j]), args, **attrs)
        seen = {n for n in parts(node) if isinstance(n, Name)}
        return [a for k, (a, _) in enumerate(op.args) if marks[k] in seen]

    # ----- names ------------------------------------------------------------------------------
    def history(self) -> Dict[int, int]:
        """State op -> how many past steps the loop keeps of it (the furthest read back)."""
        hist: Dict[int, int] = {}
        for i, w in self.where.items():
            for a, d in self.ops[i].args:
                if isinstance(d, Step) and d.steps > 0 and w in ("step", "loss"):
                    hist[a] = max(hist.get(a, 0), d.steps)
        return hist

    def var(self, i: int, key: str, base: str) -> str:
        """The variable of op i for ``key`` (made once, named after ``base``)."""
        if (i, key) not in self.tan:
            self.tan[(i, key)] = self.v.fresh(base)
        return self.tan[(i, key)]

    def pname(self, p: str) -> str:
        return self.v.pyname[self.g.leaves[p]]

    def tan_var(self, i: int, p: str) -> str:
        """The tangent of op i's value (at the current step) with respect to parameter p."""
        return self.var(i, p, f"d_{self.v.pyname[i]}_{self.pname(p)}")

    def back_var(self, i: int, p: Optional[str] = None) -> str:
        """State i's carried past steps (or their tangents for p): ``h_prev`` for one step,
        ``h_back`` for a list of several (the oldest first)."""
        tail = "_prev" if self.hist[i] == 1 else "_back"
        if p is None:
            return self.var(i, "back", self.v.pyname[i] + tail)
        return self.var(i, p + "back", f"d_{self.v.pyname[i]}{tail}_{self.pname(p)}")

    def past(self, i: int, d: int, p: Optional[str] = None) -> str:
        """The text of state i read d steps back (or of its tangent for parameter p)."""
        name = self.back_var(i, p)
        D = self.hist[i]
        return name if D == 1 else f"{name}[{D - d}]"

    def seed_var(self, p: str) -> str:
        i = self.g.leaves[p]
        return self.var(i, "seed", f"d_{self.v.pyname[i]}_{self.v.pyname[i]}")

    def grad_var(self, p: str, step: bool = False) -> str:
        i = self.g.leaves[p]
        return self.var(i, "step" if step else "grad",
                        ("g_step_" if step else "g_") + self.v.pyname[i])

    def rank(self, i: int) -> int:
        """The axes of op i's value: its own, and a batch axis unless it is shared."""
        ty = self.ops[i].ty
        own = {"scalar": 0, "vec": 1, "mat": 2}[ty.shape]
        return own + (1 if ty.tk in (STEP, STATIC) else 0)

    # ----- the nodes an op reads ---------------------------------------------------------------
    def source(self, a: int) -> int:
        """The op whose variable holds a's value: a picked last step is the source's value at
        the step where the sequence ends (its post block runs there)."""
        return self.ops[a].args[0][0] if self.where.get(a) == "pick" else a

    def value(self, a: int, d, ctx: str):
        """The node of argument a read at delay d from an op that runs in ``ctx``."""
        op = self.ops[a]
        if op.op == "const":
            return Code(self.v.val(a, SAME, "all"))
        if isinstance(d, Step) and d.steps > 0 and ctx in ("step", "loss"):
            return Code(self.past(a, d.steps))
        if ctx in ("step", "loss") and op.tk == STEP and self.where[a] in ("leaf", "pre"):
            return Code(f"{self.v.pyname[a]}[{self.v.tvar(op.ty.axis)}]")
        return Name(self.v.pyname[self.source(a)])

    def tangent(self, a: int, d, ctx: str, p: str, rank: int):
        """The tangent node of argument a for parameter p, lifted to ``rank`` axes after the
        direction axis (``ZERO`` when a does not depend on p)."""
        if p not in self.deps[a]:
            return ZERO
        if self.ops[a].op == "param":
            t = Name(self.seed_var(p))
        elif isinstance(d, Step) and d.steps > 0 and ctx in ("step", "loss"):
            t = Code(self.past(a, d.steps, p))
        else:
            t = Name(self.tan_var(self.source(a), p))
        k = rank - self.rank(a)
        return call("_lift", t, k) if k > 0 else t

    # ----- one op ----------------------------------------------------------------------------
    def op_lines(self, em: Emitter, i: int, ctx: str, last: list, w: Optional[str] = None
                 ) -> None:
        """Op i's value and its tangent for every parameter it depends on (a loss: the loss
        added up, its tangents into this step's gradient)."""
        op = self.ops[i]
        if self.where[i] == "pick":
            return  # (read as its source's value: see source())
        spec_comment(em, op.stmt, last)
        r = rule(op.op)
        self.v.helpers.update(r.helpers)
        args = [self.value(a, d, ctx) for a, d in op.args]
        attrs = {"w": w} if is_loss(op.op) else self.v.attrs(op, "all" if ctx == "pre" else
                                                              "step")
        name = self.v.pyname[i]
        value = self.v.expr_node(i, "all") if op.op == "pick" else r.forward(*args, **attrs)
        em.stmt(assign(name, value))
        if is_loss(op.op):
            em.stmt(assign("loss", Name(name), "+="))
        if ctx == "pre":
            return
        rank = self.rank(i)
        tangents = {}
        slope = None
        if r.slope is not None and len(self.deps[i]) > 1:
            slope = Name(self.v.fresh(f"{name}_slope"))
            em.stmt(assign(slope, r.tangent([Num(1)], Name(name), args, **attrs)))
        for p in self.deps[i]:
            if not is_loss(op.op) and (i, p) not in self.live:
                continue  # (nothing reads this tangent)
            lift = op.op in BROADCASTING
            dargs = [self.tangent(a, d, ctx, p, rank if lift else self.rank(a))
                     for a, d in op.args]
            seed = ZERO
            W = op.args[0][0] if op.args else None
            if op.op == "matvec" and self.ops[W].op == "param" and self.ops[W].name == p:
                # d(W @ v)/dW without the identity of W
                seed = call("_seed_matvec", args[1], Code(self.v.dim(op.ty.rows)))
                dargs[0] = ZERO
            t = add(seed, r.tangent(dargs, Name(name), args, **attrs))
            if slope is not None:  # an activation: its rule at a unit tangent, computed once
                t = mul(dargs[0], slope)
            tangents[p] = (t, {d for d in dargs if d is not ZERO} | {seed})
        for p, t in self.hoisted(em, i, tangents).items():
            if t is ZERO:
                t = Code(self.zero_tangent(i, p))
            if is_loss(op.op):
                em.stmt(assign(self.grad_var(p, step=True), t, "+="))
            else:
                em.stmt(assign(self.tan_var(i, p), t))

    def hoisted(self, em: Emitter, i: int, tangents: dict) -> dict:
        """The tangents of op i for each parameter, with the parts that no direction enters
        and that two or more of them compute (a slope ``1 - s * s``, a loss's gradient)
        computed once, into a variable, before them."""
        def fixed_parts(t, varying):
            out, stack = set(), [t]
            while stack:
                n = stack.pop()
                if any(x in varying for x in parts(n)):
                    stack.extend(_children(n))
                elif isinstance(n, (Bin, Call, Neg)):
                    out.add(n)
            return out
        count: Dict[object, int] = {}
        for t, varying in tangents.values():
            for n in fixed_parts(t, varying):
                count[n] = count.get(n, 0) + 1
        table = {}
        for n in sorted((n for n, c in count.items() if c > 1), key=show):
            base = self.v.pyname[i] + ("_grad" if is_loss(self.ops[i].op) else "_part")
            table[n] = Name(self.v.fresh(base))
            em.stmt(assign(table[n], n))
        return {p: replace(t, table) for p, (t, _) in tangents.items()}

    def zero_tangent(self, i: int, p: str) -> str:
        """No direction of p reaches op i's value at this step (its rule gives none)."""
        return f"np.zeros(({self.pname(p)}.size,) + np.shape({self.v.pyname[i]}), dtype)"

    # ----- before, in and after the loop -----------------------------------------------------
    def before_loop(self, em: Emitter) -> None:
        """Parameters and their seeds, inputs, targets, what runs once or for all steps, the
        loss weights, the states' steps before step 1 and their tangents, the sums."""
        for i in self.v.leaf_ids("param"):
            em(f"{self.v.pyname[i]} = params[{self.ops[i].name!r}]")
        for p in self.seeded():
            em(f"{self.seed_var(p)} = _seed({self.pname(p)})  # d{p}/d{p}: the identity, "
               f"one direction per entry")
        for kind, table in (("input", "inputs"), ("target", "targets")):
            for i in self.v.leaf_ids(kind):
                if i in self.where:
                    em(f"{self.v.pyname[i]} = {table}[{self.ops[i].name!r}]")
        last = [None]
        for i in self.order:
            if self.where.get(i) in ("once", "pre"):
                self.op_lines(em, i, self.where[i], last)
        for i in self.g.losses:
            if self.where[i] == "loss" and self.v.weights(i):
                em(f"{self.v.weights(i)} = _step_weights({self.v.weights_call(i)}, dims)  "
                   f"# (T, B): which steps count, and how much")
        for a in sorted(self.hist):
            self.state_start(em, a)
        em("loss = 0.0")
        for p in self.loss_params:
            em(f"{self.grad_var(p)} = np.zeros({self.pname(p)}.size, dtype)  # d loss / d {p}, "
               f"flat")
        em("steps = []  # with per_step: the gradient of each step's loss terms")

    def seeded(self) -> List[str]:
        """Parameters whose identity seed some op reads (all but those only in W @ v)."""
        out = set()
        for i, w in self.where.items():
            op = self.ops[i]
            for k, (a, _) in enumerate(op.args):
                if self.ops[a].op == "param" and w != "leaf" and not (op.op == "matvec" and
                                                                      k == 0):
                    out.add(self.ops[a].name)
        return [p for p in self.m.params if p in out]

    def state_start(self, em: Emitter, a: int) -> None:
        """The steps of state a before step 1 (from state0, or its computed initial value) and
        their tangents (zero, or the initial value's)."""
        name = self.ops[a].name
        st = self.m.states[name]
        D = self.hist[a]
        init = f"state0[{name!r}]"
        src = self.g.values[st.init_name] if st.init == "value" else None
        if src is not None:
            init = f"state0.get({name!r}, {self.v.pyname[src]})"
        size = self.v.dim(self.ops[a].ty.rows)
        shape = f"(B, {size})" if D == 1 else f"({D}, B, {size})"
        text = f"np.broadcast_to({init}, {shape})"
        em(f"{self.back_var(a)} = {text if D == 1 else f'list({text})'}  # {name} before step 1")
        for p in self.deps[a]:
            zero = f"np.zeros(({self.pname(p)}.size, B, {size}), dtype)"
            target = self.back_var(a, p)
            em(f"{target} = {zero if D == 1 else f'[{zero}] * {D}'}")
            if src is not None and p in self.deps[src]:
                lifted = self.tangent(src, SAME, "once", p, 2)
                start = add(Code(zero), lifted)
                em.stmt(If(Code(f"{name!r} not in state0"), (assign(
                    target, start if D == 1 else mul(List_((start,)), D)),),
                    note="the tangent of its computed initial value"))

    def loop(self, em: Emitter) -> None:
        """One step: the values and their tangents, the per-step losses, the losses of the
        sequences that end at this step, the states carried on, the step's gradient summed."""
        t = self.v.tvar(self.v.main)
        em(f"for {t} in range({self.v.tsym(self.v.main)}):")
        with em.indent():
            for p in self.loss_params:
                em(f"{self.grad_var(p, True)} = np.zeros({self.pname(p)}.size, dtype)")
            last = [None]
            for i in self.order:
                w = self.where.get(i)
                if w in ("step", "loss"):
                    weight = self.v.weights(i) if w == "loss" else None
                    self.op_lines(em, i, w, last, f"{weight}[{t}]" if weight else None)
                    if i in self.hist:
                        self.keep_ended(em, i)
            self.post(em)
            self.carry(em)
            for p in self.loss_params:
                em.stmt(assign(self.grad_var(p), Name(self.grad_var(p, True)), "+="))
            em("if per_step:")
            with em.indent():
                self.grads_dict(em, "steps.append({", "})", step=True)

    def keep_ended(self, em: Emitter, i: int) -> None:
        """A sequence that has ended keeps state i (and its tangents) from its last step."""
        t = self.v.tvar(self.v.main)
        mask = Code(f"mask[{t}]")
        name = self.v.pyname[i]
        body = [assign(name, call("np.where", mask, Name(name), Code(self.past(i, 1))))]
        body += [assign(self.tan_var(i, p), call("np.where", mask, Name(self.tan_var(i, p)),
                                                 Code(self.past(i, 1, p))))
                 for p in self.deps[i]]
        em.stmt(If(Code("mask is not None"), tuple(body),
                   note="a sequence that has ended keeps its state"))

    def post(self, em: Emitter) -> None:
        """Values of a sequence's last step and their losses, for the sequences ending now."""
        ops = [i for i in self.order if self.where.get(i) == "post"]
        if not ops:
            return
        em(f"ends = last == {self.v.tvar(self.v.main)}")
        em("if ends.any():  # the sequences whose last step this is")
        with em.indent():
            em("w_end = ends.astype(dtype)")
            last = [None]
            for i in ops:
                self.op_lines(em, i, "post", last, "w_end")

    def carry(self, em: Emitter) -> None:
        """The states and their tangents, on to the next step."""
        em("# the states and their sensitivities, carried to the next step")
        for a in sorted(self.hist):
            for p in (None,) + self.deps[a]:
                now = self.v.pyname[a] if p is None else self.tan_var(a, p)
                back = self.back_var(a, p)
                em(f"{back} = {now}" if self.hist[a] == 1 else f"{back} = {back}[1:] + [{now}]")

    def grads_dict(self, em: Emitter, head: str, tail: str, step: bool = False) -> None:
        """{name: gradient} of every parameter (zeros for one the loss does not read), between
        ``head`` and ``tail``."""
        em(head)
        with em.indent():
            for p in self.m.params:
                P = self.pname(p)
                g = f"{self.grad_var(p, step)}.reshape({P}.shape)" if p in self.loss_params \
                    else f"np.zeros_like({P})"
                em(f"{p!r}: {g},")
        em(tail)

    def results(self, em: Emitter) -> None:
        self.grads_dict(em, "grads = {'params': {", "}}")
        em("return (loss, grads, steps) if per_step else (loss, grads)")
