"""Forward mode in time: the generated ``rtrl`` (real-time recurrent learning), from the JVP rules.

In: the :class:`.values.Values` of a schedule without fused products (the ops as the spec
wrote them).  Out: the lines of ``rtrl(params, inputs, targets, state0=None, lengths=None,
per_step=False)``: the network run one step at a time, each value followed by its tangents
with respect to every parameter it depends on (one block per parameter, the direction axis
first: ``(W.size, B, n)`` for a value of B rows of n), the states' tangents -- RTRL's
sensitivities dh_t/dW -- carried from step to step, and the loss's tangents, which are its
gradient, summed as the steps go.  Nothing is kept per step: memory does not grow with T.

Each op's lines come from its rule in :mod:`rnnspec.ops`: the forward node and the
forward-mode node (``Rule.tangent``).  Two things are known only here: a parameter's tangent
with respect to itself is the identity (``_seed``; in a product ``W @ v`` the structured
``_seed_matvec``, which never forms the identity of W), and an argument of lower rank than the
value (a bias beside rows) has its tangent lifted to the value's rank (``_lift``).  The
helpers are rnnspec/runtime/tangents.py.

Where each op runs (:func:`placement`): ``once`` before the steps (values of the parameters
only, values per sequence such as a computed initial state), ``pre`` for all steps before the
loop (values of the inputs alone: they have no tangent), ``step`` in the loop, ``pick`` (a
chosen step ``h[end]``, captured as the steps pass) and ``post`` (values computed from chosen
steps, with their losses, run at the step where each sequence has them all).

:func:`rtrl_refusal` says which specs cannot be followed step by step.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

from ..check import PARAM, STATIC, STEP
from ..delays import SAME, Step
from ..errors import Reporter, SpecError
from ..expr import ZERO, Code, Name, add, assign, call
from ..ops import BROADCASTING, is_loss, rule
from ..truncation import refusal
from .text import Emitter, spec_comment
from .values import Pass

WHAT = "RTRL (compile --rtrl) cannot follow this spec"
HINT = "compile without --rtrl and use backward (BPTT), or rnnspec.rtrl(module, ...)"
LEAVES = ("param", "input", "target", "const")


def placement(g) -> Tuple[Dict[int, str], Dict[int, Tuple[str, ...]]]:
    """Where every op of graph ``g`` that leads to a loss runs (see the module docstring), and
    the parameters its value depends on (in the spec's order; through the recurrences and the
    states' computed initial values)."""
    order = list(g.model.params)
    deps: Dict[int, Set[str]] = {i: ({op.name} if op.op == "param" else set())
                                 for i, op in g.ops.items()}
    inits = {s: c for c, s in g.starts()}
    changed = True
    while changed:  # a fixpoint: a recurrence's value depends on what its past depends on
        changed = False
        for i, op in g.ops.items():
            new = set(deps[i])
            for a, _ in op.args:
                new |= deps[a]
            if i in inits:
                new |= deps[inits[i]]
            if new != deps[i]:
                deps[i], changed = new, True
    needed: Set[int] = set()
    for i in g.losses:
        needed |= {i} | set(__import__("networkx").ancestors(g.nx, i))
    recurrent = {i for i in g.ops if _recurrent(g, i)}
    where: Dict[int, str] = {}
    for i in sorted(needed, key=lambda i: i):
        op = g.ops[i]
        if op.op in LEAVES:
            where[i] = "leaf"
        elif op.op == "pick" and g.ops[op.args[0][0]].tk == STEP and (
                deps[op.args[0][0]] or op.args[0][0] in recurrent):
            where[i] = "pick"
        elif is_loss(op.op):
            where[i] = "loss" if op.attrs["tk"] == STEP else "post"
        elif op.tk == STEP:
            where[i] = "step" if deps[i] or i in recurrent else "pre"
        else:
            where[i] = "once"
    for i in sorted(where):  # after the picks: what is computed from a chosen step
        if where[i] in ("once", "post") and any(where.get(a) in ("pick", "post")
                                                 for a, _ in g.ops[i].args):
            where[i] = "post"
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
    recurrence, whole-sequence reads of the states), no loss, an op with no forward-mode
    rule, an input read steps back, a loss on values computed before the steps."""
    err = refusal(sched, filename, WHAT, HINT)
    if err is not None:
        return err
    g = sched.graph
    m = g.model
    rep = Reporter(m.source, filename or m.filename, once_per_place=True)
    if not g.losses:
        rep.error(m.spec, f"{WHAT}: it has no loss (RTRL computes the loss's gradient)",
                  "add a `loss = ...` statement")
    where, _ = placement(g)
    for i, w in where.items():
        op = g.ops[i]
        if w in ("step", "once", "post", "loss") and rule(op.op).jvp is None:
            rep.error(op.stmt or m.spec, f"{WHAT}: `{op.op}` has no forward-mode rule yet", HINT)
        for a, d in op.args:
            if w in ("step", "loss") and where.get(a) in ("leaf", "pre") and \
                    g.ops[a].tk == STEP and d != SAME:
                rep.error(op.stmt or m.spec, f"{WHAT}: it reads a value of the inputs "
                          f"{abs(d.steps)} step(s) away", HINT)
            if w in ("step", "loss", "pick") and where.get(a) == "post":
                rep.error(op.stmt or m.spec, f"{WHAT}: a step reads a value of chosen steps",
                          HINT)
        if w == "post" and is_loss(op.op) and not any(where.get(a) in ("pick", "post")
                                                       for a, _ in op.args):
            rep.error(op.stmt or m.spec, f"{WHAT}: its loss reads no step of the sequence",
                      HINT)
    if not rep.errors:
        return None
    try:
        rep.raise_if_errors()
    except SpecError as e:
        return e


class Rtrl(Pass):
    """The ``rtrl`` function of one unfused schedule."""

    def function(self) -> List[str]:
        self.where, self.deps = placement(self.g)
        self.loss_params = tuple(p for p in self.m.params
                                 if any(p in self.deps[i] for i in self.g.losses))
        self.tan: Dict[Tuple[int, str], str] = {}  # (op, parameter) -> its tangent's variable
        self.hist: Dict[int, int] = self.history()
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
        em("entry of the parameter), and the states' tangents -- the sensitivities dh_t/dW --")
        em("are carried to the next step, so memory does not grow with T.  The loss's tangents")
        em("are its gradient, summed as the steps go.  Returns (loss, {'params': ...}) like")
        em("loss_and_grad; with per_step=True, (loss, grads, steps): steps[t] the gradient of")
        em("the loss terms of step t, available as soon as step t has run (a loss on chosen")
        em("steps, h[end], counts at the step where a sequence has them all).")
        em('"""')

    # ----- what each op reads ----------------------------------------------------------------
    def history(self) -> Dict[int, int]:
        """State op -> how many past steps the loop keeps of it (the furthest read back)."""
        hist: Dict[int, int] = {}
        for i, w in self.where.items():
            for a, d in self.ops[i].args:
                if isinstance(d, Step) and d.steps > 0 and w in ("step", "loss"):
                    hist[a] = max(hist.get(a, 0), d.steps)
        for a in hist:
            if self.ops[a].name not in self.m.states:
                raise AssertionError("bug in rnnspec: a value read steps back is not a state")
        return hist

    def past(self, a: int, d: int, p: Optional[str] = None) -> str:
        """The text of state a read d steps back (or of its tangent for parameter p)."""
        name = self.tan_var(a, p, "_back") if p else self.back_var(a)
        D = self.hist[a]
        return name if D == 1 else f"{name}[{D - d}]"

    def back_var(self, a: int) -> str:
        if (a, "") not in self.tan:
            base = self.v.pyname[a]
            self.tan[(a, "")] = self.v.fresh(base + ("_prev" if self.hist[a] == 1 else "_back"))
        return self.tan[(a, "")]

    def tan_var(self, i: int, p: str, tail: str = "") -> str:
        key = (i, p + tail)
        if key not in self.tan:
            base = self.v.pyname[i] + ("_prev" if tail and self.hist[i] == 1 else
                                       "_back" if tail else "")
            self.tan[key] = self.v.fresh(f"d_{base}_{p}")
        return self.tan[key]

    def value(self, a: int, d, ctx: str):
        """The node of argument a read at delay d from an op that runs in ``ctx``."""
        op = self.ops[a]
        if op.op == "const":
            return Code(self.v.val(a, SAME, "all"))
        name = self.v.pyname[a]
        if isinstance(d, Step) and d.steps > 0 and ctx in ("step", "loss"):
            return Code(self.past(a, d.steps))
        if ctx in ("step", "loss") and op.tk == STEP and self.where[a] in ("leaf", "pre"):
            return Code(f"{name}[{self.v.tvar(op.ty.axis)}]")
        return Name(name)

    def tangent(self, a: int, d, ctx: str, p: str, rank: int):
        """The tangent node of argument a for parameter p, lifted to ``rank`` axes after the
        direction axis (``ZERO`` when a does not depend on p)."""
        op = self.ops[a]
        if p not in self.deps[a]:
            return ZERO
        if op.op == "param":
            t = Name(self.seed_var(a))
        elif isinstance(d, Step) and d.steps > 0 and ctx in ("step", "loss"):
            t = Code(self.past(a, d.steps, p))
        else:
            t = Name(self.tan_var(a, p))
        k = rank - self.rank(a)
        return call("_lift", t, k) if k > 0 else t

    def seed_var(self, a: int) -> str:
        return self.tan_var(a, "seed")

    def rank(self, i: int) -> int:
        ty = self.ops[i].ty
        own = {"scalar": 0, "vec": 1, "mat": 2}[ty.shape]
        return own + (1 if ty.tk in (STEP, STATIC) else 0)

    # ----- one op ----------------------------------------------------------------------------
    def op_lines(self, em: Emitter, i: int, ctx: str, last: list, w: Optional[str] = None
                 ) -> None:
        """Op i's value and its tangent for every parameter it depends on."""
        op = self.ops[i]
        spec_comment(em, op.stmt, last)
        r = rule(op.op)
        self.v.helpers.update(r.helpers)
        args = [self.value(a, d, ctx) for a, d in op.args]
        attrs = {"w": w} if is_loss(op.op) else self.v.attrs(op, "step" if ctx != "pre"
                                                              else "all")
        name = self.v.pyname[i]
        if op.op == "pick":
            return
        em.stmt(assign(name, r.forward(*args, **attrs)))
        if ctx == "pre":
            return
        rank = self.rank(i)
        for p in self.deps[i]:
            lift = op.op in BROADCASTING
            dargs = [self.tangent(a, d, ctx, p, rank if lift else self.rank(a))
                     for a, d in op.args]
            seed = ZERO
            if op.op == "matvec" and self.ops[op.args[0][0]].name == p and \
                    self.ops[op.args[0][0]].op == "param":
                seed = call("_seed_matvec", args[1], Code(self.v.dim(op.ty.rows)))
                dargs[0] = ZERO
            t = add(seed, r.tangent(dargs, Name(name), args, **attrs))
            target = self.loss_tangent(i, p) if is_loss(op.op) else self.tan_var(i, p)
            em.stmt(assign(target, t))

    def loss_tangent(self, i: int, p: str) -> str:
        return self.tan_var(i, p)

    # ----- before, in and after the loop -----------------------------------------------------
    def before_loop(self, em: Emitter) -> None:
        """Parameters and their seeds, inputs, targets, what runs once or for all steps, the
        states' first steps and their tangents, the sums."""
        for i in self.v.leaf_ids("param"):
            em(f"{self.v.pyname[i]} = params[{self.ops[i].name!r}]")
        for i in self.v.leaf_ids("param"):
            if self.ops[i].name in self.seeded():
                em(f"{self.seed_var(i)} = _seed({self.v.pyname[i]})  # d {self.ops[i].name} / "
                   f"d {self.ops[i].name}: the identity")
        for kind, table in (("input", "inputs"), ("target", "targets")):
            for i in self.v.leaf_ids(kind):
                if i in self.where:
                    em(f"{self.v.pyname[i]} = {table}[{self.ops[i].name!r}]")
        last = [None]
        for i in self.s.order:
            if self.where.get(i) in ("once", "pre"):
                self.op_lines(em, i, self.where[i], last)
        self.weights = {}
        for i in self.g.losses:
            w = self.v.weights(i)
            if w:
                em(f"{w} = {self.v.weights_call(i)}")
                self.weights[i] = w
        for a in sorted(self.hist):
            self.state_start(em, a)
        for i in self.ops:
            if self.where.get(i) == "pick":
                self.pick_start(em, i)
        em("loss = 0.0")
        for p in self.loss_params:
            em(f"{self.grad_var(p)} = np.zeros({self.param_text(p)}.size, dtype)")
        em("steps = []  # with per_step: the gradient of each step's loss terms")

    def seeded(self) -> Set[str]:
        """Parameters whose identity seed some op reads (all but those only in W @ v)."""
        out = set()
        for i, w in self.where.items():
            op = self.ops[i]
            for k, (a, _) in enumerate(op.args):
                if self.ops[a].op == "param" and not (op.op == "matvec" and k == 0):
                    out.add(self.ops[a].name)
        return out

    def param_text(self, p: str) -> str:
        return self.v.pyname[self.g.leaves[p]]

    def grad_var(self, p: str) -> str:
        return self.tan_var(self.g.leaves[p], "grad")

    def state_start(self, em: Emitter, a: int) -> None:
        """The steps before step 1 of state a (from state0, or its computed initial value) and
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
            zero = f"np.zeros(({self.param_text(p)}.size, B, {size}), dtype)"
            em(f"{self.past(a, 1, p) if D == 1 else self.tan_var(a, p, '_back')} = "
               f"{zero if D == 1 else f'[{zero}] * {D}'}")
            if src is not None and p in self.deps[src]:
                em(f"if {name!r} not in state0:  # the tangent of its computed initial value")
                lifted = self.tangent(src, SAME, "once", p, 2)
                with em.indent():
                    from ..expr import show
                    first = self.tan_var(a, p, "_back")
                    if D == 1:
                        em(f"{first} = {first} + {show(lifted)}")
                    else:
                        em(f"{first} = [x + {show(lifted)} for x in {first}]")
