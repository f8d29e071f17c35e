"""Forward mode in time: the generated ``rtrl`` (real-time recurrent learning), from the JVP rules.

In: the :class:`.values.Values` of a schedule without fused products (the ops as the spec
wrote them).  Out: the statement node (:class:`rnnspec.stmt.Def`) of ``rtrl(params, inputs,
targets, state0=None, lengths=None, per_step=False)``: the network run one step at a time,
each value followed by its tangents with respect to every parameter it depends on (one array
per parameter, the direction axis first: ``(W.size, B, n)`` for a value of B rows of n), the
states' tangents -- RTRL's sensitivities ds_t/dW -- carried from step to step, and the losses'
tangents, which are their gradients, summed as the steps go.  Nothing is kept per step: memory
does not grow with T.

Each op's statements come from its rule in :mod:`rnnspec.ops`: the forward node and the
forward-mode node (``Rule.tangent``).  Two things are known only here: a parameter's tangent
with respect to itself is the identity (``_seed``; in a product ``W @ v`` the structured
``_seed_matvec``, which never forms the identity of W), and an argument of lower rank than the
value (a bias beside rows) has its tangent lifted to the value's rank (``_lift``).  The
helpers are rnnspec/runtime/tangents.py.

Where each op runs (:func:`placement`, in :mod:`.rtrl_place`): ``once`` before the steps
(values of the parameters and of inputs per sequence, such as a computed initial state),
``pre`` for all steps before the loop (values of the inputs alone: they have no tangent),
``step`` and ``loss`` in the loop, ``pick`` (a sequence's last step, ``h[end]``) and ``post``
(values computed from it, with their losses), run in the loop at the step where a sequence
ends, for the sequences that end there.

:func:`rtrl_refusal` (:mod:`.rtrl_place`) says which specs cannot be followed step by step.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import networkx as nx

from ..check import STATIC, STEP
from ..delays import SAME, Step
from ..expr import (ZERO, Attr, Bin, Call, Expr, IfElse, List_, Lit, Name, Neg, Num, _children,
                    add, call, compare, dict_of, method, mul, parts, replace, span, subscript,
                    tuple_of)
from ..ops import BROADCASTING, is_loss, rule
from ..printer import show
from ..stmt import Comment, Def, Do, For, If, assign, define, param, raises, returns
from .rtrl_place import placement, rtrl_refusal  # noqa: F401 (rtrl_refusal: the API's)
from .text import Emitter, spec_comment
from .values import Pass

DOC = (
    "Real-time recurrent learning: the loss and its gradient, forward in time.",
    "",
    "The network runs one step at a time; after each value come its tangents with",
    "respect to every parameter it depends on (direction axis first: one direction per",
    "entry of the parameter), and the states' tangents -- the sensitivities ds_t/dW --",
    "are carried to the next step, so memory does not grow with T.  The loss's tangents",
    "are its gradient, summed as the steps go.  Returns (loss, {'params': grads}) like",
    "loss_and_grad (the parameters only: RTRL's directions are the parameters); with",
    "per_step=True, (loss, grads, steps): steps[t] the gradient of the loss terms of",
    "step t, available as soon as step t has run (a loss of a sequence's last step counts",
    "at the step where the sequence ends).")


def _size_of(P: str) -> Expr:
    """``P.size``: the number of entries of parameter P (its directions)."""
    return Attr(Name(P), "size")


class Rtrl(Pass):
    """The ``rtrl`` function of one unfused schedule."""

    def function(self) -> Def:
        self.where, self.deps = placement(self.g)
        self.order = self.step_order()
        self.tan: Dict[Tuple[int, str], str] = {}  # (op, what) -> its variable
        self.hist: Dict[int, int] = self.history()
        self.loss_params = [p for p in self.m.params
                            if any(p in self.deps[i] for i in self.g.losses)]
        self.live = self.live_tangents()
        body = Emitter()
        self.before_loop(body)
        self.loop(body)
        self.results(body)
        em = Emitter()
        em(If(compare("targets", "is", None), (raises(call("ValueError", Lit(
            "rtrl needs targets: it computes the gradient of the loss"))),)))
        em(assign(tuple_of("params", "inputs", "targets", "state0", "dims", bare=True),
                  call("_validate", "params", "inputs", "targets", "state0", None, "lengths")))
        em(self.v.dims_line())
        text = body.text()
        em.extend(assign(self.v.dimvar(d), subscript("dims", Lit(d)))
                  for d in sorted(self.v.dims_used) if self.v.dimvar(d) in text)
        self.v.mask_lines(em, text, comments=True)
        em.extend(body.stmts)
        params = ["params", "inputs", "targets", param("state0", None), param("lengths", None),
                  param("per_step", False)]
        return define("rtrl", params, DOC, em.stmts)

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
        state's next step, a state's computed initial value, or the rule of an op whose own
        tangent is read (a fixpoint over the rules' forward-mode nodes: an argument counts when
        its tangent survives in the node, so the softmax's output of a cross-entropy taken from
        the logits has none)."""
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

    def past(self, i: int, d: int, p: Optional[str] = None) -> Expr:
        """State i read d steps back (or its tangent for parameter p)."""
        name = self.back_var(i, p)
        D = self.hist[i]
        return Name(name) if D == 1 else subscript(name, D - d)

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

    def value(self, a: int, d, ctx: str) -> Expr:
        """The node of argument a read at delay d from an op that runs in ``ctx``."""
        op = self.ops[a]
        if op.op == "const":
            return self.v.val(a, SAME, "all")
        if isinstance(d, Step) and d.steps > 0 and ctx in ("step", "loss"):
            return self.past(a, d.steps)
        if ctx in ("step", "loss") and op.tk == STEP and self.where[a] in ("leaf", "pre"):
            return subscript(self.v.pyname[a], self.v.tvar(op.ty.axis))
        return Name(self.v.pyname[self.source(a)])

    def tangent(self, a: int, d, ctx: str, p: str, rank: int) -> Expr:
        """The tangent node of argument a for parameter p, lifted to ``rank`` axes after the
        direction axis (``ZERO`` when a does not depend on p)."""
        if p not in self.deps[a]:
            return ZERO
        if self.ops[a].op == "param":
            t = Name(self.seed_var(p))
        elif isinstance(d, Step) and d.steps > 0 and ctx in ("step", "loss"):
            t = self.past(a, d.steps, p)
        else:
            t = Name(self.tan_var(self.source(a), p))
        k = rank - self.rank(a)
        return call("_lift", t, k) if k > 0 else t

    # ----- one op ----------------------------------------------------------------------------
    def op_stmts(self, em: Emitter, i: int, ctx: str, last: list, w: Optional[Expr] = None
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
        em(assign(name, value))
        if is_loss(op.op):
            em(assign("loss", Name(name), "+="))
        if ctx == "pre":
            return
        tangents = self.tangents(em, i, ctx, args, attrs)
        for p, t in self.hoisted(em, i, tangents).items():
            if t is ZERO:
                t = self.zero_tangent(i, p)
            if is_loss(op.op):
                em(assign(self.grad_var(p, step=True), t, "+="))
            else:
                em(assign(self.tan_var(i, p), t))

    def tangents(self, em: Emitter, i: int, ctx: str, args: list, attrs: dict) -> dict:
        """Parameter -> (op i's tangent for it, the tangents of the arguments it reads), for
        every tangent something reads; an activation's slope (its rule at a unit tangent) is
        computed once, into a variable, when several parameters need it."""
        op = self.ops[i]
        r = rule(op.op)
        name = self.v.pyname[i]
        rank = self.rank(i)
        tangents = {}
        slope = None
        if r.slope is not None and len(self.deps[i]) > 1:
            slope = Name(self.v.fresh(f"{name}_slope"))
            em(assign(slope, r.tangent([Num(1)], Name(name), args, **attrs)))
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
                seed = call("_seed_matvec", args[1], self.v.size(op.ty.rows))
                dargs[0] = ZERO
            t = add(seed, r.tangent(dargs, Name(name), args, **attrs))
            if slope is not None:  # an activation: its rule at a unit tangent, computed once
                t = mul(dargs[0], slope)
            tangents[p] = (t, {d for d in dargs if d is not ZERO} | {seed})
        return tangents

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
            em(assign(table[n], n))
        return {p: replace(t, table) for p, (t, _) in tangents.items()}

    def zero_tangent(self, i: int, p: str) -> Expr:
        """No direction of p reaches op i's value at this step (its rule gives none)."""
        shape = Bin("+", tuple_of(_size_of(self.pname(p))), call("np.shape", self.v.pyname[i]))
        return call("np.zeros", shape, "dtype")

    # ----- before, in and after the loop -----------------------------------------------------
    def before_loop(self, em: Emitter) -> None:
        """Parameters and their seeds, inputs, targets, what runs once or for all steps, the
        loss weights, the states' steps before step 1 and their tangents, the sums."""
        for i in self.v.leaf_ids("param"):
            em(assign(self.v.pyname[i], subscript("params", Lit(self.ops[i].name))))
        for p in self.seeded():
            em(assign(self.seed_var(p), call("_seed", self.pname(p)),
                      note=f"d{p}/d{p}: the identity, one direction per entry"))
        for kind, table in (("input", "inputs"), ("target", "targets")):
            for i in self.v.leaf_ids(kind):
                if i in self.where:
                    em(assign(self.v.pyname[i], subscript(table, Lit(self.ops[i].name))))
        last = [None]
        for i in self.order:
            if self.where.get(i) in ("once", "pre"):
                self.op_stmts(em, i, self.where[i], last)
        for i in self.g.losses:
            if self.where[i] == "loss" and self.v.weights(i):
                em(assign(self.v.weights(i), call("_step_weights", self.v.weights_call(i), "dims"),
                          note="(T, B): which steps count, and how much"))
        for a in sorted(self.hist):
            self.state_start(em, a)
        em(assign("loss", Lit(0.0)))
        for p in self.loss_params:
            em(assign(self.grad_var(p), call("np.zeros", _size_of(self.pname(p)), "dtype"),
                      note=f"d loss / d {p}, flat"))
        em(assign("steps", List_(()),
                  note="with per_step: the gradient of each step's loss terms"))

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
        init = subscript("state0", Lit(name))
        src = self.g.values[st.init_name] if st.init == "value" else None
        if src is not None:
            init = method("state0", "get", Lit(name), self.v.pyname[src])
        size = self.v.size(self.ops[a].ty.rows)
        start = call("np.broadcast_to", init, tuple_of("B", size) if D == 1 else
                     tuple_of(D, "B", size))
        em(assign(self.back_var(a), start if D == 1 else call("list", start),
                  note=f"{name} before step 1"))
        for p in self.deps[a]:
            zero = call("np.zeros", tuple_of(_size_of(self.pname(p)), "B", size), "dtype")
            target = self.back_var(a, p)
            em(assign(target, zero if D == 1 else mul(List_((zero,)), D)))
            if src is not None and p in self.deps[src]:
                lifted = self.tangent(src, SAME, "once", p, 2)
                begin = add(zero, lifted)
                em(If(compare(Lit(name), "not in", "state0"), (assign(
                    target, begin if D == 1 else mul(List_((begin,)), D)),),
                    note="the tangent of its computed initial value"))

    def loop(self, em: Emitter) -> None:
        """One step: the values and their tangents, the per-step losses, the losses of the
        sequences that end at this step, the states carried on, the step's gradient summed."""
        t = self.v.tvar(self.v.main)
        body = Emitter()
        for p in self.loss_params:
            body(assign(self.grad_var(p, True), call("np.zeros", _size_of(self.pname(p)),
                                                     "dtype")))
        last = [None]
        for i in self.order:
            w = self.where.get(i)
            if w in ("step", "loss"):
                weight = self.v.weights(i) if w == "loss" else None
                self.op_stmts(body, i, w, last, subscript(weight, t) if weight else None)
                if i in self.hist:
                    self.keep_ended(body, i)
        self.post(body)
        self.carry(body)
        for p in self.loss_params:
            body(assign(self.grad_var(p), Name(self.grad_var(p, True)), "+="))
        body(If(Name("per_step"), (Do(method("steps", "append",
                                             self.grads_dict(step=True))),)))
        em(For(Name(t), call("range", self.v.tsym(self.v.main)), body.body()))

    def keep_ended(self, em: Emitter, i: int) -> None:
        """A sequence that has ended keeps state i (and its tangents) from its last step."""
        mask = subscript("mask", self.v.tvar(self.v.main))
        name = self.v.pyname[i]
        body = [assign(name, call("np.where", mask, name, self.past(i, 1)))]
        body += [assign(self.tan_var(i, p), call("np.where", mask, self.tan_var(i, p),
                                                 self.past(i, 1, p)))
                 for p in self.deps[i]]
        em(If(compare("mask", "is not", None), tuple(body),
              note="a sequence that has ended keeps its state"))

    def post(self, em: Emitter) -> None:
        """Values of a sequence's last step and their losses, for the sequences ending now."""
        ops = [i for i in self.order if self.where.get(i) == "post"]
        if not ops:
            return
        em(assign("ends", compare("last", "==", self.v.tvar(self.v.main))))
        body = Emitter()
        body(assign("w_end", method("ends", "astype", "dtype")))
        last = [None]
        for i in ops:
            self.op_stmts(body, i, "post", last, Name("w_end"))
        em(If(method("ends", "any"), body.body(), note="the sequences whose last step this is"))

    def carry(self, em: Emitter) -> None:
        """The states and their tangents, on to the next step."""
        em(Comment("the states and their sensitivities, carried to the next step"))
        for a in sorted(self.hist):
            for p in (None,) + self.deps[a]:
                now = Name(self.v.pyname[a] if p is None else self.tan_var(a, p))
                back = self.back_var(a, p)
                em(assign(back, now if self.hist[a] == 1 else
                          add(subscript(back, span(1, None)), List_((now,)))))

    def grads_dict(self, step: bool = False):
        """{name: gradient} of every parameter (zeros for one the loss does not read), one
        item a line."""
        items = []
        for p in self.m.params:
            P = self.pname(p)
            items.append((p, method(self.grad_var(p, step), "reshape", Attr(Name(P), "shape"))
                          if p in self.loss_params else call("np.zeros_like", P)))
        return dict_of(items, lines=True)

    def results(self, em: Emitter) -> None:
        em(assign("grads", dict_of([("params", self.grads_dict())])))
        em(returns(IfElse(tuple_of("loss", "grads", "steps"), Name("per_step"),
                          tuple_of("loss", "grads"))))
