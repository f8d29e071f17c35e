"""The end of backward: the initial states' gradients and the gradients returned.

In: an :class:`.adjoint.Adjoint` whose passes have run (every op's gradient).  Out: the lines
that sum each state's initial steps' gradients (into what it was initialized from, unless
state0 was given), then ``return {'params': ..., 'inputs': ..., 'state0': ...}``, one line per
gradient, each a name.
"""
from __future__ import annotations

from typing import Dict

from ..expr import (Expr, IfElse, Lit, Name, Not, add, call, dict_of, method, span, subscript,
                   tuple_of)
from ..stmt import BLANK, Comment, If, assign, returns
from .text import Emitter
from .values import Pass


class Results(Pass):
    """The initial states' and the leaves' gradients of one backward function."""

    def __init__(self, adj):
        super().__init__(adj.v)
        self.adj = adj  # (the gradients found, their buffers' names)

    def emit(self, em: Emitter) -> None:
        """The initial states' gradients, then the return statement."""
        em.extend([BLANK, Comment("gradients of the initial states (and of what they were "
                                  "initialized from)"), assign("d_state0", dict_of([]))])
        for name, st in self.m.states.items():
            i = self.g.values[name]
            D = self.v.carry_steps(name)
            total = self.adj.initial_grad(i) if self.adj.grad.get(i) is not None else None
            if total and D > 1:  # one gradient per initial step, in time order (like state0)
                before, _ = self.s.padding[i]
                gn = self.adj.bufname[i]
                total = subscript(gn, span(None, before) if before else
                                  span(self.v.tsym(self.v.axis_of(i)), None))
            em(assign(_key(name), total if total else call("np.zeros", tuple_of(
                *([D] if D > 1 else []), self.v.bsym(self.v.axis_of(i)),
                self.v.size(st.size)), "dtype")))
        leaf_grads = self.leaf_grads()
        for name, st in self.m.states.items():
            if st.init in ("param", "input"):
                src = self.g.leaves[st.init_name]
                gn = self.adj.gname(src) if src not in self.adj.bufname else self.adj.bufname[src]
                em(assign(gn, leaf_grads[src]))
                steps = self.v.carry_steps(name) > 1  # summed over the initial steps it fills
                axes = ((0, 1) if steps else 0) if st.init == "param" else (0 if steps else None)
                added = _key(name) if axes is None else method(_key(name), "sum", axis=Lit(axes))
                em(If(Not(subscript(subscript("cache", Lit("state0_given")), Lit(name))),
                      (assign(gn, add(gn, added)),)))
                leaf_grads[src] = Name(gn)
        for name in self.m.states:  # in the users' layout: one initial state per step s
            i = self.g.values[name]
            if self.v.axis_of(i) in self.m.nested:
                em(assign(_key(name), self.v.state_layout(_key(name), name)))
        for i in self.v.graded_leaf_ids("input"):
            leaf_grads[i] = self.v.unflat(leaf_grads[i], self.v.axis_of(i))
        self.returned(em, leaf_grads)

    def leaf_grads(self) -> Dict[int, Expr]:
        """The gradient of each parameter and input (a zero one when it gets none)."""
        leaf_grads = {}
        for i in self.v.leaf_ids("param") + self.v.graded_leaf_ids("input"):
            g = self.adj.grad.get(i)
            name = self.v.pyname[i]
            if g is not None and not g.cond:
                leaf_grads[i] = g.all
                continue
            zeros = call("np.zeros_like", name) if self.ops[i].op == "param" else \
                self.v.zeros(i)
            leaf_grads[i] = zeros if g is None else IfElse(g.all, g.cond, zeros)
        return leaf_grads

    def returned(self, em: Emitter, leaf_grads: Dict[int, Expr]) -> None:
        """The return statement: one line per gradient, each a name (a slice of a stacked
        product's gradient gets its own line first)."""
        unpacked = False
        for i in self.v.leaf_ids("param") + self.v.graded_leaf_ids("input"):
            if _is_name(leaf_grads[i]) or i in self.adj.bufname:
                continue
            if not unpacked:
                em(Comment("each parameter's and input's gradient"))
                unpacked = True
            em(assign(self.adj.gname(i), leaf_grads[i]))
            leaf_grads[i] = Name(self.adj.gname(i))
        self.state_grads(em)
        items = []
        for key, kind in (("params", "param"), ("inputs", "input")):
            ids = self.v.graded_leaf_ids(kind)
            items.append((key, dict_of([(self.ops[i].name, leaf_grads[i]) for i in ids],
                                       lines=bool(ids))))
        items.append(("state0", "d_state0"))
        if self.m.states:
            items.append((None, IfElse(dict_of([("states", "d_states")]), Name("state_grads"),
                                       dict_of([]))))
        em(returns(dict_of(items, lines=True)))

    def state_grads(self, em: Emitter) -> None:
        """With ``state_grads=True``: each state's gradient at every step, (T, B, size) like
        its output, the loss's total derivative with respect to it (what vanishes or
        explodes through the recurrence)."""
        if not self.m.states:
            return
        body = [assign("d_states", dict_of([]))]
        for name in self.m.states:
            i = self.g.values[name]
            gn = self.adj.bufname.get(i)
            value = self.v.window(gn, i, 0) if gn and self.adj.grad.get(i) is not None \
                else self.v.zeros(i)
            body.append(assign(subscript("d_states", Lit(name)),
                               self.v.unflat(value, self.v.axis_of(i))))
        em(If(Name("state_grads"), tuple(body),
              "each state's gradient at every step (see rnnspec flow)"))


def _key(name: str) -> Expr:
    return subscript("d_state0", Lit(name))


def _is_name(e: Expr) -> bool:
    return isinstance(e, Name)
