"""The end of backward: the initial states' gradients and the gradients returned.

In: an :class:`.adjoint.Adjoint` whose passes have run (every op's gradient).  Out: the lines
that sum each state's initial steps' gradients (into what it was initialized from, unless
state0 was given), then ``return {'params': ..., 'inputs': ..., 'state0': ...}``, one line per
gradient, each a name.
"""
from __future__ import annotations

from typing import Dict

from .text import NAME, Emitter
from .values import Pass


class Results(Pass):
    """The initial states' and the leaves' gradients of one backward function."""

    def __init__(self, adj):
        super().__init__(adj.v)
        self.adj = adj  # (the gradients found, their buffers' names)

    def emit(self, em: Emitter) -> None:
        """The initial states' gradients, then the return statement."""
        em("")
        em("# gradients of the initial states (and of what they were initialized from)")
        em("d_state0 = {}")
        for name, st in self.m.states.items():
            i = self.g.values[name]
            size = self.v.dim(st.size)
            D = self.v.carry_steps(name)
            total = self.adj.initial_grad(i) if self.adj.grad.get(i) is not None else None
            if total and D > 1:  # one gradient per initial step, in time order (like state0)
                before, _ = self.s.padding[i]
                gn = self.adj.bufname[i]
                total = f"{gn}[:{before}]" if before else f"{gn}[{self.v.tsym(self.v.axis_of(i))}:]"
            if total:
                em(f"d_state0[{name!r}] = {total}")
            else:
                lead = f"{D}, " if D > 1 else ""
                em(f"d_state0[{name!r}] = np.zeros(({lead}{self.v.bsym(self.v.axis_of(i))}, {size}), "
                   f"dtype)")
        leaf_grads = {}
        for i in self.v.leaf_ids("param") + self.v.leaf_ids("input"):
            g = self.adj.grad.get(i)
            name = self.v.pyname[i]
            if g is not None and not g.cond:
                leaf_grads[i] = g.all
                continue
            zeros = f"np.zeros_like({name})" if self.ops[i].op == "param" else self.v.zeros(i)
            leaf_grads[i] = zeros if g is None else f"{g.all} if {g.cond} else {zeros}"
        for name, st in self.m.states.items():
            if st.init in ("param", "input"):
                src = self.g.leaves[st.init_name]
                gn = self.adj.gname(src) if src not in self.adj.bufname else self.adj.bufname[src]
                em(f"{gn} = {leaf_grads[src]}")
                steps = self.v.carry_steps(name) > 1  # summed over the initial steps it fills
                red = (".sum(axis=(0, 1))" if steps else ".sum(axis=0)") if st.init == "param" \
                    else (".sum(axis=0)" if steps else "")
                em(f"if not cache['state0_given'][{name!r}]:")
                with em.indent():
                    em(f"{gn} = {gn} + d_state0[{name!r}]{red}")
                leaf_grads[src] = gn
        for name in self.m.states:  # in the users' layout: one initial state per step s
            i = self.g.values[name]
            if self.v.axis_of(i) in self.m.nested:
                em(f"d_state0[{name!r}] = " + self.v.state_layout(f"d_state0[{name!r}]", name))
        for i in self.v.leaf_ids("input"):
            leaf_grads[i] = self.v.unflat(leaf_grads[i], self.v.axis_of(i))
        self.returned(em, leaf_grads)

    def returned(self, em: Emitter, leaf_grads: Dict[int, str]) -> None:
        """The return statement: one line per gradient, each a name (a slice of a stacked
        product's gradient gets its own line first)."""
        unpacked = False
        for i in self.v.leaf_ids("param") + self.v.leaf_ids("input"):
            if NAME.fullmatch(leaf_grads[i]) or i in self.adj.bufname:
                continue
            if not unpacked:
                em("# each parameter's and input's gradient")
                unpacked = True
            em(f"{self.adj.gname(i)} = {leaf_grads[i]}")
            leaf_grads[i] = self.adj.gname(i)
        self.state_grads(em)
        em("return {")
        with em.indent():
            for key, kind in (("params", "param"), ("inputs", "input")):
                ids = self.v.leaf_ids(kind)
                if not ids:
                    em(f"{key!r}: {{}},")
                    continue
                em(f"{key!r}: {{")
                with em.indent():
                    for i in ids:
                        em(f"{self.ops[i].name!r}: {leaf_grads[i]},")
                em("},")
            em("'state0': d_state0,")
            if self.m.states:
                em("**({'states': d_states} if state_grads else {}),")
        em("}")

    def state_grads(self, em: Emitter) -> None:
        """With ``state_grads=True``: each state's gradient at every step, (T, B, size) like
        its output, the loss's total derivative with respect to it (what vanishes or
        explodes through the recurrence)."""
        if not self.m.states:
            return
        em("if state_grads:  # each state's gradient at every step (see rnnspec flow)")
        with em.indent():
            em("d_states = {}")
            for name in self.m.states:
                i = self.g.values[name]
                gn = self.adj.bufname.get(i)
                text = self.v.window(gn, i, 0) if gn and self.adj.grad.get(i) is not None \
                    else self.v.zeros(i)
                em(f"d_states[{name!r}] = {self.v.unflat(text, self.v.axis_of(i))}")
