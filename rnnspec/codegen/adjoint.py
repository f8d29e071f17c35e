"""The adjoint: reverse mode over a schedule, ``backward`` (BPTT) as Python.

In: :class:`.values.Values`.  Out: the lines of ``backward``: the stages in reverse; gradients
pulled from consumers in an all-steps block, and inside a time loop pulled within the step and
pushed through delayed references into earlier steps' buffers; loop-invariant arguments'
gradients (weights, biases, hoisted input products) as one product over all T*B rows after the
loop; the initial states' gradients; one returned gradient per parameter and input.  Each op's
contribution is its rule's vector-Jacobian product (:mod:`rnnspec.ops`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..check import PARAM, STATIC, STEP
from ..delays import SAME
from ..errors import missing_rule
from ..expr import (ATOM, ELLIPSIS, ZERO, Expr, IfElse, Index, Invert, List_, Lit, Name, Not, add,
                   call, compare, method, mul, span, subscript, tuple_of)
from ..printer import level, show
from ..stmt import BLANK, PASS, Comment, Def, If, Stmt, assign, define, guarded, param
from ..layout import LEAVES
from ..ops import RULES, is_loss, rule
from ..pytext import MARK
from .cuts import Cuts, scaled, sweeps_hook, sweeps_weights
from .names import PLACEHOLDER
from .text import Emitter, _plain, spec_comment
from .results import Results
from .values import Pass

LOSS_GIVEN = compare("d_loss", "is not", None)  # the loss's gradient's condition (targets given)
TRUNCATE_DOC = (  # (backward's docstring on truncation: rnnspec.truncation)
    "xi (T,) or (T, B): the gradient flowing from step t back to step t - 1 through",
    "the recurrences is multiplied by xi[t] (randomized truncation); truncate=(k, k):",
    "it is cut at the start of every chunk of k steps (truncated BPTT).")
SWEEPS_DOC = ("truncate=(k1, k2), k1 < k2: the losses of every k1 steps backpropagated k2 steps",
              "(Williams & Peng's TBPTT(k1, k2), in ceil(k2 / k1) sweeps).")
REFUSED_DOC = ("This network cannot be truncated (see TRUNCATE): xi and truncate must be None.",)
BACKWARD_DOC = (  # (backward's docstring: before and after the lines on truncation)
    ("Vector-Jacobian product of the whole unrolled network (BPTT).", "",
     "d_outputs may hold an upstream gradient for any named value (same shape as in",
     "outputs), for 'final' states, and for 'loss' (default 1.0 when a loss was computed)."),
    ("Returns {'params': ..., 'inputs': ..., 'state0': ...}, each keyed like the spec",
     "(and with state_grads=True 'states': each state's gradient at every step)."))


@dataclass(frozen=True)
class _Buffer(Stmt):
    """Where a per-step gradient buffer goes before a BPTT loop; what it is (its own array or
    a view of a stacked one) is decided once the loop's steps are built (Adjoint.placed)."""
    name: str


@dataclass
class Grad:
    step: Optional[Expr]  # the gradient at step t (loop ops)
    all: Optional[Expr]  # the gradient for all steps
    cond: Optional[Expr] = None  # run-time condition under which it exists (None: always)


@dataclass
class Term:
    """One contribution to an op's gradient: an expression node (a rule's vector-Jacobian
    product, summed over broadcast axes), printed only where a line is written."""
    value: Expr
    cond: Optional[Expr] = None  # run-time condition (a 'maybe' gradient)
    steps: int = 0  # added that many steps back in the buffer (negative: ahead)
    index: Optional[Tuple[Expr, ...]] = None  # scatter into one index (or index array)
    final_steps: int = 0  # the d > 1 steps of a final state: the older ones cross steps

    @property
    def text(self) -> str:
        return show(self.value)


def _sum(values) -> Expr:
    """The sum of gradient contributions (``a - b`` for a contribution ``-b``)."""
    total = ZERO
    for v in values:
        total = add(total, v)
    return total


def reduce(vjp: Expr, src, dst, mode: str) -> Expr:
    """A contribution of an op of type ``src`` to its argument of type ``dst``, summed over the
    axes the argument was broadcast along (steps, batch)."""
    src_tk = src.tk if mode == "all" else (STATIC if src.tk == STEP else src.tk)
    dst_tk = dst.tk if mode == "all" else (STATIC if dst.tk == STEP else dst.tk)
    if dst.shape == "scalar" and (src.shape != "scalar" or src_tk > PARAM):
        return method(vjp, "sum")
    k = src_tk - dst_tk
    if k <= 0:
        return vjp
    return method(vjp, "sum", axis=0 if k == 1 else Lit((0, 1)))


class Adjoint(Pass):
    """The backward function of one schedule."""

    # ----- backward --------------------------------------------------------------------------
    def backward(self) -> Def:
        self.grad: Dict[int, Optional[Grad]] = {}
        self.bufname: Dict[int, str] = {}
        self.empty_buf: Dict[str, Expr] = {}  # per-step gradient buffers not yet placed: shape
        self.views: Dict[str, tuple] = {}  # buffer -> (stacked buffer, position, parts, ...)
        self.slopes: Dict[int, str] = {}  # loop activation -> its derivative at every step
        self.cuts = Cuts(self.v.truncation is None)  # where xi scales it (truncation)
        self.pre: Optional[Emitter] = None  # the statements before the BPTT loop being built
        body = Emitter()
        if self.g.losses:
            body(assign("d_loss", IfElse(method("up", "get", Lit("loss"), Lit(1.0)),
                                         subscript("cache", Lit("has_loss")), Lit(None))))
        for k in reversed(range(len(self.s.stages))):
            self.last = [None]
            if self.s.stages[k].kind == "loop":
                self.backward_loop(body, k)
            else:
                for i in reversed(self.v.stage_ops(k)):
                    self.pull(body, i)
        Results(self).emit(body)
        text = body.text()
        used = set(re.findall(rf"{PLACEHOLDER.pattern}|\b[A-Za-z_][A-Za-z_0-9]*\b", text))
        unkept = used.intersection(self.v.cache_names(kept_only=False)) - set(self.v.cache_names())
        if unkept:
            names = sorted(self.v.bases[int(n.strip(MARK).split("_")[1])] for n in unkept)
            raise AssertionError(f"bug in rnnspec: the backward pass reads {names}, which the "
                                 f"layout plan does not keep")
        em = Emitter()
        em(assign("up", call("_upstream", "d_outputs", "cache")))
        em(assign("dims", subscript("cache", Lit("dims"))))
        em(self.v.dims_line())
        sweeps = sweeps_weights(self.v)
        if sweeps:
            em(sweeps_hook(self.v, sweeps))
        em(assign("xi", call("_truncation", "xi", "truncate", "dims"), note="None: full BPTT"))
        self.v.mask_lines(em, text)
        em.extend(assign(self.v.dimvar(d), subscript("dims", Lit(d)))
                  for d in sorted(self.v.dims_used) if self.v.dimvar(d) in used)
        em.extend(assign(self.v.pyname[i], subscript("params", Lit(self.ops[i].name)))
                  for i in self.v.leaf_ids("param") if self.v.pyname[i] in used)
        for name in self.v.cache_names():
            if name in used:
                maybe = name in self.v.target_names() or name in self.v.weight_var.values()
                em(assign(name, method("cache", "get", Lit(name)) if maybe
                          else subscript("cache", Lit(name))))
        em.extend(body.stmts)
        params = ["params", "cache", param("d_outputs", None), param("xi", None),
                  param("truncate", None), param("state_grads", False)]
        doc = BACKWARD_DOC[0] + (TRUNCATE_DOC + (SWEEPS_DOC if sweeps else ())
                                 if self.v.truncation is None else REFUSED_DOC) + BACKWARD_DOC[1]
        return define(self.v.fname("backward"), params, doc, em.stmts)

    def has_grad(self, i: int) -> bool:
        return self.ops[i].op not in ("const", "target")

    def terms_from(self, i: int, consumers, mode: str) -> List[Term]:
        """Gradient contributions to op ``i`` from the given consumers, in ``mode``."""
        terms = []
        parts = sorted((c for c in consumers if self.ops[c[0]].op == "part"),
                       key=lambda c: self.ops[c[0]].attrs["index"])
        if parts:  # a fused product: the gradients of its parts, side by side
            pieces = []
            for c, _, _ in parts:
                g = self.grad.get(c)
                piece = None if g is None else (g.step if mode == "step" else g.all)
                if piece is not None and g.cond is not None:
                    piece = IfElse(piece, g.cond, self.v.zeros(c, mode))
                pieces.append(piece)
            stacked = self.stacked_grad(i, parts, pieces, mode)
            if stacked:
                terms.append(Term(stacked))
            elif any(p is not None for p in pieces):
                pieces = [p if p is not None else self.v.zeros(c, mode)
                          for p, (c, _, _) in zip(pieces, parts)]
                terms.append(Term(call("np.concatenate", List_(tuple(pieces)), axis=-1)))
            consumers = [c for c in consumers if c not in parts]
        for c, pos, delay in consumers:
            g = self.grad.get(c)
            if g is None:
                continue
            gval = g.step if mode == "step" else g.all
            if gval is None:
                raise AssertionError(f"internal: no all-steps gradient for op {c}")
            cond = g.cond
            cop = self.ops[c]
            if cop.op == "pick":
                terms.append(Term(gval, cond, index=self.v.pick_index(c)))
                continue
            r = RULES.get(cop.op)
            if r is None:
                raise missing_rule(cop.op)
            self.v.helpers.update(r.helpers)
            if mode == "step" and r.slope and self.pre is not None and c not in self.local:
                t = self.v.tvar(self.v.axis_of(c))
                terms.append(Term(mul(gval, subscript(Name(self.slope(c)), t)), cond))
                continue
            args = [self.v.val(a, d, mode) for a, d in cop.args]
            out = self.v.val(c, SAME, mode) if r.needs_out else None
            vjp = r.backward(pos, gval, out, args, **self.v.attrs(cop, mode))
            if vjp is ZERO:
                continue
            if pos not in r.reduced:
                vjp = reduce(vjp, cop.ty, self.ops[i].ty, mode)
            terms.append(Term(vjp, cond, steps=delay.steps))
        return terms

    def slope(self, c: int) -> str:
        """The derivative of loop activation ``c`` at every step, computed before the BPTT loop
        (it depends only on the forward pass's output, not on the recursion)."""
        if c not in self.slopes:
            name = self.v.fresh(f"{self.v.pyname[c]}_slope")
            slope = rule(self.ops[c].op).slope(self.v.val(c, SAME, "all"))
            self.pre(assign(name, slope, note=f"{self.ops[c].op}' at every step"))
            self.slopes[c] = name
        return self.slopes[c]

    def stacked_grad(self, i: int, parts, pieces, mode: str) -> Optional[Expr]:
        """The gradient of fused product ``i`` when its parts' gradients are the loop's
        per-step buffers: they become views of one (T, B, sum of sizes) buffer, written in
        place by the loop, so no step (and no pass after the loop) concatenates them.  (The
        buffers are placed once the loop's steps are built: :meth:`placed`.)"""
        if any(p is None for p in pieces):
            return None
        if mode == "all":  # after the loop: the views of one stacked buffer, in order
            views = [self.views.get(p.id) if isinstance(p, Name) else None for p in pieces]
            if views[0] and all(v and v[0] == views[0][0] and v[1] == k
                                for k, v in enumerate(views)) and views[0][2] == len(pieces):
                return Name(views[0][0])
            return None
        t = Name(self.v.tvar(self.v.axis_of(i)))
        names = [p.value.id for p in pieces if isinstance(p, Index) and p.index == (t,)
                 and isinstance(p.value, Name)]
        if len(names) != len(pieces) or len(set(names)) != len(names) or \
                not all(n in self.empty_buf for n in names):
            return None
        gn = self.gname(i)
        op = self.ops[i]
        shape = tuple_of(self.v.tsym(self.v.axis_of(i)), self.v.bsym(self.v.axis_of(i)),
                         self.v.size(op.ty.rows))
        for k, (n, (c, _, _)) in enumerate(zip(names, parts)):
            del self.empty_buf[n]
            lo, hi = self.v.attrs(self.ops[c])["bounds"][self.ops[c].attrs["index"]]
            self.views[n] = (gn, k, len(names), shape, subscript(gn, ELLIPSIS, span(lo, hi)))
        return subscript(gn, t)

    def upstream_terms(self, i: int) -> List[Term]:
        op = self.ops[i]
        terms = []
        if op.name and op.op not in ("param", "input", "target") and op.name in self.g.values:
            terms.append(Term(subscript("up", Lit(op.name)), compare(Lit(op.name), "in", "up")))
        if op.name in self.m.states and op.op not in ("param", "input"):
            D = self.v.carry_steps(op.name)
            final = subscript("up", Lit("final"))
            terms.append(Term(subscript(final, Lit(op.name)), compare(Lit(op.name), "in", final),
                              index=self.v.final_index(op.name), final_steps=D if D > 1 else 0))
        return terms

    def init_terms(self, i: int) -> List[Term]:
        """Gradients into a static value that initializes states (s[0] = C)."""
        terms = []
        for name, st in self.m.states.items():
            s = self.g.values[name]
            if st.init != "value" or self.g.values[st.init_name] != i or s not in self.bufname:
                continue
            total = self.initial_grad(s)
            if total and self.ops[i].ty.tk == PARAM:  # one value for all sequences: summed
                total = method(total, "sum", axis=0)
            if total:
                given = subscript(subscript("cache", Lit("state0_given")), Lit(name))
                terms.append(Term(total, Not(given)))
        return terms

    def initial_grad(self, s: int) -> Optional[Expr]:
        """The gradient of state s's initial value: its buffer's gradient over the initial
        steps (before step 1 and/or after step T), summed; None when it has none."""
        before, after = self.s.padding.get(s, (0, 0))
        if s not in self.bufname or not (before or after):
            return None
        gn, T = self.bufname[s], Name(self.v.tsym(self.v.axis_of(s)))
        parts = ([span(None, before)] if before else []) + ([span(add(T, before), None)]
                                                            if after else [])
        return _sum(method(subscript(gn, p), "sum", axis=0) for p in parts)

    def gname(self, i: int) -> str:
        if i not in self.bufname:
            self.bufname[i] = self.v.fresh("d_" + self.v.pyname[i])
        return self.bufname[i]

    def pull(self, em: Emitter, i: int) -> None:
        """Emit the gradient of all-steps op ``i`` from all its consumers."""
        op = self.ops[i]
        if not self.has_grad(i):
            return
        cons = self.s.consumers[i]
        if is_loss(op.op):
            self.grad[i] = Grad(None, Name("d_loss"), LOSS_GIVEN)
            return
        terms = self.terms_from(i, cons, "all") + self.upstream_terms(i) + self.init_terms(i)
        last = self.last
        if not terms:
            self.grad[i] = None
            return
        scatter = i in self.v.grad_buffers  # (the layout's decision: rnnspec.layout)
        if op.op not in LEAVES and (scatter or len(terms) > 1 or level(terms[0].value) < ATOM):
            spec_comment(em, op.stmt, last)
        if scatter:
            gn = self.gname(i)
            em.stmt(assign(gn, self.v.zero_buffer(i)))
            for t in terms:
                em.stmt(guarded(t.cond, self.add_term(gn, t, i)))
            self.grad[i] = Grad(None, self.v.window(gn, i, 0))
            return
        always = [t for t in terms if t.cond is None]
        maybe = [t for t in terms if t.cond is not None]
        if len(always) == 1 and not maybe and _plain(always[0].value):
            self.grad[i] = Grad(None, always[0].value)
            return
        if not always and len(maybe) == 1 and _plain(maybe[0].value):
            self.grad[i] = Grad(None, maybe[0].value, maybe[0].cond)
            return
        gn = self.gname(i)
        if always:
            em.stmt(assign(gn, _sum(t.value for t in always)))
            for t in maybe:
                em.stmt(guarded(t.cond, assign(gn, add(gn, t.value))))
            self.grad[i] = Grad(None, Name(gn))
            return
        # only optional contributions (the loss's, an upstream gradient's): the gradient is an
        # array in every case, zero when none is there, so nothing after this line tests it.
        # The loss's comes first: it is there whenever targets were given.
        maybe.sort(key=lambda t: t.cond != LOSS_GIVEN)
        em.stmt(assign(gn, IfElse(maybe[0].value, maybe[0].cond, self.v.zeros(i))))
        for t in maybe[1:]:
            em.stmt(guarded(t.cond, assign(gn, add(gn, t.value))))
        self.grad[i] = Grad(None, Name(gn))

    def add_term(self, gn: str, term: Term, i: int):
        """``buffer += term`` into the part of op i's gradient buffer ``gn`` it adds to (and
        its form scaled by xi when the term crosses steps: :mod:`.cuts`)."""
        add_to = assign(self.target(gn, term, i), term.value, "+=")
        xi = self.cuts.term_factor(term.steps, term.final_steps, term.index is not None,
                                   i in self.s.recurrent or self.ops[i].name in self.m.states)
        return self.cuts.choose([add_to], [scaled(add_to, xi)])[0] if xi is not None else add_to

    def target(self, gn: str, term: Term, i: int) -> Expr:
        """The part of op i's gradient buffer ``gn`` that ``term`` adds to."""
        if term.index is not None:
            return subscript(gn, *term.index)
        return self.v.window(gn, i, term.steps)

    def backward_loop(self, em: Emitter, k: int) -> None:
        """BPTT through loop stage k: the loop's steps in the opposite order."""
        loop = self.v.stage_ops(k)
        buffered, upstream_only = self.loop_buffers(k)
        em.extend([BLANK, Comment("gradients flowing into the loop from after it, and buffers "
                                  "for the loop")])
        pre_lines = Emitter()
        self.pre = pre_lines
        loop_lines = Emitter()
        for i in loop:
            if buffered[i]:
                gn = self.gname(i)
                cons = [c for c in self.s.consumers[i] if self.s.stage_of[c[0]] != k]
                terms = self.terms_from(i, cons, "all") + self.upstream_terms(i)
                pre_lines.stmt(assign(gn, self.v.zero_buffer(i)))
                for t in terms:
                    pre_lines.stmt(guarded(t.cond, self.add_term(gn, t, i)))
        last = [None]
        for i in reversed(loop):
            if self.step_grad(pre_lines, loop_lines, k, i, buffered[i], upstream_only[i], last):
                self.push_delayed(loop_lines, i, set(loop))
        self.pre = None
        em.extend(self.placed(pre_lines.stmts))
        em.extend([self.v.loop(k, loop_lines.stmts or [PASS], backward=True), BLANK])

    def placed(self, stmts) -> List:
        """The statements before a BPTT loop with each per-step gradient buffer placed: its own
        ``np.empty``, or (:meth:`stacked_grad`) a view of a stacked buffer, which is made
        before the first of its views."""
        out, made = [], set()
        for st in stmts:
            if not isinstance(st, _Buffer):
                out.append(st)
            elif st.name in self.views:
                stack, _, _, shape, view = self.views[st.name]
                if stack not in made:
                    made.add(stack)
                    out.append(assign(stack, call("np.empty", shape, "dtype"),
                                      note="the gradients below, side by side"))
                out.append(assign(st.name, view))
            else:
                out.append(assign(st.name, call("np.empty", self.empty_buf[st.name], "dtype")))
        return out

    def loop_buffers(self, k: int) -> Tuple[Dict[int, bool], Dict[int, bool]]:
        """Which ops of loop stage k get a zero-filled gradient buffer over all steps (the
        layout's decision, :func:`rnnspec.layout.gradient_buffer`: read after the loop, by a
        later step, or a state), and which get only an optional upstream gradient, added per
        step (an LSTM's named gates), with no buffer."""
        buffered, upstream_only = {}, {}
        for i in self.v.stage_ops(k):
            buffered[i] = i in self.v.grad_buffers
            upstream_only[i] = bool(self.upstream_terms(i)) and not buffered[i]
        return buffered, upstream_only

    def step_grad(self, pre_lines: Emitter, loop_lines: Emitter, k: int, i: int,
                  buffered: bool, upstream_only: bool, last: list) -> bool:
        """Op i's gradient at one step of the backward loop (False: it has none)."""
        op = self.ops[i]
        stage_of = self.s.stage_of
        same = [c for c in self.s.consumers[i] if stage_of[c[0]] == k and c[2] == SAME]
        terms = self.terms_from(i, same, "step")
        needs_all = any(stage_of[a] != k and self.has_grad(a) for a, _ in op.args)
        if terms or buffered:
            spec_comment(loop_lines, op.stmt, last)
        value = _sum(t.value for t in terms)
        if buffered:
            gn = self.gname(i)
            cur = self.v.at_step(gn, self.v.pad(i), i)
            if terms:
                loop_lines.stmt(assign(cur, value, "+="))
            if self.v.carried(i):
                d = self.s.stages[k].direction
                prev = self.v.at_step(gn, self.v.pad(i) - d, i)
                mvar = f"mask{self.v.sfx(self.v.axis_of(i))}"
                mask = subscript(Name(mvar), self.v.tvar(self.v.axis_of(i)))
                # (past a sequence's end there are no steps to cross: xi does not act here)
                loop_lines.stmt(If(compare(mvar, "is not", None), (
                    assign(prev, mul(Invert(mask), cur), "+="), assign(cur, mask, "*=")),
                    "past its end, the state was carried over"))
            self.grad[i] = Grad(cur, self.v.window(gn, i, 0))
        elif not terms:
            self.grad[i] = None
            return False
        elif len(terms) == 1 and level(value) >= ATOM and self._alias_all(i, same) and \
                not upstream_only:
            self.grad[i] = Grad(value, self._alias_all(i, same))
        else:
            gn = self.gname(i)
            t = self.v.tvar(self.v.axis_of(i))
            cur = subscript(gn, t) if needs_all else Name(gn)
            if needs_all and value != cur:  # (placed after the loop's steps: a view?)
                self.empty_buf[gn] = tuple_of(self.v.tsym(self.v.axis_of(i)),
                                              self.v.bsym(self.v.axis_of(i)),
                                              self.v.size(op.ty.rows))
                pre_lines.stmt(_Buffer(gn))
            if value != cur:  # (a stacked buffer is already written by its parts)
                loop_lines.stmt(assign(cur, value))
            if upstream_only:
                upv = self.v.fresh(f"up_{self.v.pyname[i]}")
                pre_lines.stmt(assign(upv, method("up", "get", Lit(op.name)),
                                      note=f"upstream gradient of {op.name}"))
                loop_lines.stmt(guarded(compare(upv, "is not", None),
                                        assign(cur, add(cur, subscript(upv, t)))))
            self.grad[i] = Grad(cur, Name(gn) if needs_all else None)
        return True

    def push_delayed(self, loop_lines: Emitter, i: int, loopset: set) -> None:
        """Push op i's step gradient through its delayed references into the steps they read;
        in a module that can be truncated, times xi over the steps each push crosses (when
        backward is given xi or truncate)."""
        op = self.ops[i]
        g = self.grad[i]
        r = rule(op.op)
        args = [self.v.val(a, d, "step") for a, d in op.args]
        out = self.v.val(i, SAME, "step") if r.needs_out else None
        full, cut = [], []
        for pos, (a, d) in enumerate(op.args):
            if a in loopset and d.steps:
                vjp = r.backward(pos, g.step, out, args, **self.v.attrs(op, "step"))
                if vjp is ZERO:
                    continue
                full.append(assign(self.v.at_step(self.gname(a), self.v.pad(a) - d.steps, a),
                                   vjp, "+="))
                if self.cuts.enabled:
                    t = self.v.tvar(self.v.axis_of(i))
                    cut.append(scaled(full[-1], self.cuts.loop_factor(d.steps, t, self.pre)))
        for st in self.cuts.choose(full, cut):
            loop_lines.stmt(st)

    def _alias_all(self, i: int, same) -> Optional[Expr]:
        """All-steps value of op i's gradient when it is exactly its single consumer's."""
        if len(same) != 1:
            return None
        c, pos, _ = same[0]
        g = self.grad.get(c)
        if g is None or g.all is None:
            return None
        cop = self.ops[c]
        if pos in rule(cop.op).passthrough and cop.ty == self.ops[i].ty:
            return g.all
        return None
