"""The forward pass: a schedule's stages as Python, ``forward`` returning ``(outputs, cache)``.

In: :class:`.values.Values` (names, value texts, the layout).  Out: the lines of ``forward`` (or
of ``_forward_free``, ``_forward_full``, ...): the all-steps blocks as whole-array expressions,
the time loops step by step (gates of one activation computed by one call into a shared buffer,
states carried past a shorter sequence's end), the outputs, the losses and the cache.
"""
from __future__ import annotations

from typing import Dict, List

from ..check import STEP
from ..delays import SAME
from ..expr import (ELLIPSIS, ZERO, Dict_, Expr, Index, Lit, Name, add, call, compare, dict_of,
                   span, subscript, tuple_of)
from ..stmt import BLANK, Comment, Def, Do, If, assign, define, param, raises, returns
from ..fuse import Fused
from ..layout import LEAVES, fused_parts
from ..ops import is_loss, rule
from .text import OUT_BINARY, OUT_FUNCS, Emitter, _where, spec_comment
from .values import Pass


CACHE_FILL = 88  # the cache dict's first items on the line of ``cache = {``, up to this column


class Forward(Pass):
    """The forward function of one schedule."""

    def forward(self) -> Def:
        sample = self.v.variant == "sample"
        params = ["params", "inputs"] + [param(n, None) for n in (
            "targets", "state0", "T", "lengths")]
        if sample:
            params += [param("rng", None), param("greedy", True), param("batch", None)]
        if self.v.segmented:
            params.append(param("segment", None))
        em = Emitter()
        given = ["params", "inputs", "targets", "state0", "T", "lengths"]
        if self.v.segmented:
            check = call("_validate_segment", *given, "segment")
        else:
            check = call("_validate", *given, *(["batch"] if sample else []))
        em(assign(tuple_of("params", "inputs", "targets", "state0", "dims", bare=True), check))
        em(self.v.dims_line())
        if self.v.fed_targets():
            em(If(compare("targets", "is", None), (raises(call("ValueError", Lit(
                'teacher forcing feeds the targets back: pass targets, or run with '
                'mode="free"'))),)))
        body = Emitter()
        self.forward_body(body)
        text = body.text()
        em.extend(assign(self.v.dimvar(d), subscript("dims", Lit(d)))
                  for d in sorted(self.v.dims_used) if self.v.dimvar(d) in text)
        self.v.mask_lines(em, text, comments=True)
        for kind, table in (("param", "params"), ("input", "inputs")):
            for i in self.v.leaf_ids(kind):
                em(assign(self.v.pyname[i], subscript(table, Lit(self.ops[i].name))))
        for i in self.v.fed_targets():
            em(assign(self.v.pyname[i], subscript("targets", Lit(self.ops[i].name))))
        em.extend(body.stmts)
        return define(self.v.fname("forward"), params, self.doc(), em.stmts)

    def doc(self) -> List[str]:
        """The forward function's docstring."""
        lines = [
            "Run the network on a batch; return (outputs, cache).", "",
            "params, inputs, targets, state0: dicts keyed by the spec's names (see PARAMS,",
            "INPUTS, TARGETS, STATES); arrays are time-major, (T, B, size) for a sequence.",
            "T is needed only when no sequence is given; lengths (B,) gives each sequence's own",
            "length in a padded batch (with several time axes, both are dicts keyed by axis)."]
        for inner, outer in self.m.nested.items():
            lines += [f"Steps {inner} run inside every step {outer} ([{inner} in {outer}]): their "
                      f"arrays are ({self.v.tsym(inner)}, {self.v.tsym(outer)}, B, size),",
                      f"their states ({self.v.tsym(outer)}, B, size), lengths[{inner!r}] is "
                      f"({self.v.tsym(outer)}, B)."]
        return lines + [
            "outputs holds every named value, outputs['final'] the states after the last step,",
            "and 'loss' when targets are given.  A state read d > 1 steps back (STATES[n]['steps'])",
            "carries its last d steps, (d, B, size) in time order, in 'final' and in state0."]

    def forward_body(self, em: Emitter) -> None:
        """The stages in order (the losses after them all), the outputs and the cache."""
        losses = []
        n_loops = sum(st.kind == "loop" for st in self.s.stages)
        for k, stage in enumerate(self.s.stages):
            if stage.kind == "loop":
                self.loop_stage(em, k, n_loops)
                continue
            last = [None]
            note = "hoisted: all steps at once" if k < len(self.s.stages) - 1 else ""
            for i in stage.ops:
                if is_loss(self.ops[i].op) or self.v.loss_only(i):
                    losses.append(i)
                    continue
                self.forward_op(em, i, "all", last, note)
        self.outputs(em)
        self.losses_and_cache(em, losses)

    def loop_stage(self, em: Emitter, k: int, n_loops: int) -> None:
        """Loop stage k: its buffers, then the loop over the steps."""
        stage = self.s.stages[k]
        last = [None]
        way = "forward" if stage.direction > 0 else "backward"
        which = f" {k // 2 + 1} of {n_loops}" if n_loops > 1 else ""
        em.extend([BLANK, Comment(f"time loop{which} ({way} in time): only the recurrent part "
                                  f"runs step by step")])
        groups = self.gate_groups(k)
        views = self.gate_buffers(em, groups)
        for i in stage.ops:
            if not self.inline[i] and i not in self.local:
                em(assign(self.v.pyname[i], views.get(i) or self.v.alloc(i)))
                self.v.state_init(em, i)
        body = Emitter()
        done = set()
        for i in stage.ops:
            g = next((g for g in groups if i in g["acts"]), None)
            if g is None:
                self.forward_op(body, i, "step", last)
            elif i not in done:
                self.gate_group_step(body, g, last)
                done |= g["acts"]
        em.extend([self.v.loop(k, body.stmts), BLANK])

    def gate_buffers(self, em: Emitter, groups: List[dict]) -> Dict[int, Expr]:
        """One buffer for each run of gates of one activation; gate -> its slice of it."""
        views = {}
        for g in groups:
            for run in g["runs"]:
                if len(run) > 1:
                    acts = [self.ops[act] for _, act, _ in run]
                    comb = self.v.fresh("_".join(self.v.pyname[a] for _, a, _ in run))
                    rows = acts[0].ty.rows
                    for a in acts[1:]:
                        rows = rows + a.ty.rows
                    axis = acts[0].ty.axis
                    names = ", ".join(a.name or self.v.pyname[a.id] for a in acts)
                    em(assign(comb, call("np.empty", tuple_of(
                        self.v.tsym(axis), self.v.bsym(axis), self.v.size(rows)), "dtype"),
                        note=f"{names} side by side"))
                    local = self.v.bounds([a.ty.rows for a in acts])  # inside comb
                    for ((lo, hi), (_, act, _)) in zip(local, run):
                        views[act] = subscript(comb, ELLIPSIS, span(lo, hi))
                    g["comb"][run[0][1]] = comb
        return views

    def outputs(self, em: Emitter) -> None:
        """The outputs dict: every named value, the final states, attention weights."""
        items = [(n, self.v.unflat(self.v.val(i, SAME, 'all'), self.v.axis_of(i)))
                 for n, i in self.g.values.items()]
        notes = [""] * len(items)
        if self.m.states:
            items.append(("final", dict_of((n, self.v.state_layout(subscript(
                self.v.pyname[self.g.values[n]], *self.v.final_index(n)), n))
                for n in self.m.states)))
            notes.append("")
        attention = [(op.label.rsplit("_weights", 1)[0],
                      self.v.unflat(self.v.val(i, SAME, "all"), op.attrs["key_axis"], steps=False)
                      if op.attrs.get("regroup") else self.v.val(i, SAME, "all"))
                     for i, op in self.ops.items() if op.op == "attn_weights"]
        if attention:
            items.append(("attention", dict_of(attention)))
            notes.append("weights over the attended steps")
        em(assign("outputs", dict_of(items, lines=True, notes=notes)))

    def losses_and_cache(self, em: Emitter, losses: List[int]) -> None:
        """The loss terms (when targets are given) and what the cache keeps."""
        given = compare("targets", "is not", None)
        if self.g.losses:
            body = Emitter()
            for name_i in self.v.leaf_ids("target"):
                if name_i not in self.v.fed_targets():
                    body(assign(self.v.pyname[name_i],
                                subscript("targets", Lit(self.ops[name_i].name))))
            last = [None]
            for i in losses:
                self.forward_op(body, i, "all", last)
            total = ZERO
            for i in self.g.losses:
                total = add(total, Name(self.v.pyname[i]))
            body(assign(subscript("outputs", Lit("loss")), total))
            em(If(given, body.body()))
        cache = [("params", "params"), ("dims", "dims"),
                 ("state0_given", subscript("state0", Lit("(given)"))),
                 ("has_loss", compare(Lit("loss"), "in", "outputs"))]
        if self.v.variant:
            cache.append(("mode", Lit(self.v.variant)))
        em(assign("cache", Dict_(dict_of(cache).items, fill=CACHE_FILL)))
        for name in self.v.cache_names():
            keep = assign(subscript("cache", Lit(name)), name)
            keep_if = name in self.v.target_names() or name in self.v.weight_var.values()
            em(If(given, (keep,)) if keep_if else keep)
        em(returns(tuple_of("outputs", "cache", bare=True)))

    def forward_op(self, em: Emitter, i: int, mode: str, last: list, note: str = "") -> None:
        op = self.ops[i]
        if op.op in LEAVES or self.inline[i]:
            return
        spec_comment(em, op.stmt, last, note)
        name = self.v.pyname[i]
        if is_loss(op.op):
            w = self.v.weights(i)
            if w:
                em.stmt(assign(w, self.v.weights_call(i)))
            args = [self.v.val(a, d, "all") for a, d in op.args]
            r = rule(op.op)
            self.v.helpers.update(r.helpers)
            em.stmt(assign(name, r.forward(*args, w=w)))
            return
        value = self.v.expr_node(i, mode)
        if mode == "step":
            self.step_op(em, i, value)
        elif op.tk == STEP and self.v.extra(i):
            em.stmt(assign(name, self.v.alloc(i)))
            self.v.state_init(em, i)
            em.stmt(assign(self.v.window(name, i, 0), value))
        elif op.op == "add" and self.v.fresh_product(op):
            # the product is a new array: add the other term into it (no second (T, B, n) array)
            k = next(k for k, (a, _) in enumerate(op.args) if self.v.fresh_product(op, a))
            em.stmt(assign(name, self.v.val(op.args[k][0], op.args[k][1], mode)))
            em.stmt(assign(name, self.v.val(*op.args[1 - k], mode), "+="))
        else:
            em.stmt(assign(name, value))

    def step_op(self, em: Emitter, i: int, value) -> None:
        """Op i at one step of a loop: into its buffer's slot (a ufunc with out=, no
        temporary), and a state kept past the end of a shorter sequence."""
        op = self.ops[i]
        cur = self.v.val(i, SAME, "step")
        slot = isinstance(cur, Index)  # a step of a buffer (not a variable of the step)
        if op.op in OUT_FUNCS and slot:
            em.stmt(Do(value.with_kwarg("out", cur)))
        elif op.op in OUT_BINARY and slot and op.ty.shape == "vec" and all(
                self.ops[a].ty.shape == "vec" or self.ops[a].op == "const" for a, _ in op.args):
            args = [self.v.val(a, d, "step") for a, d in op.args]
            em.stmt(Do(call(f"np.{OUT_BINARY[op.op]}", *args, out=cur)))
        else:
            em.stmt(assign(cur, value))
        prev = self.v.carried(i)
        if prev:
            mask, t = "mask" + self.v.sfx(self.v.axis_of(i)), self.v.tvar(self.v.axis_of(i))
            em.stmt(If(compare(mask, "is not", None), (
                assign(cur, call("np.where", subscript(Name(mask), t), cur, prev)),),
                "past its end, a sequence keeps its state"))

    def gate_groups(self, k: int) -> List[dict]:
        """The layout's gate groups of loop stage k (:class:`rnnspec.layout.GateGroup`), with
        the texts of their slices."""
        out = []
        for g in self.layout.groups.get(k, []):
            runs = [[(self.v.attrs(self.ops[c])["bounds"][self.ops[c].attrs["index"]], act, c)
                     for act, c in run] for run in g.runs]
            xs = fused_parts(self.s, g.X)
            out.append({"S": g.S, "X": g.X, "runs": runs, "acts": g.acts, "comb": {},
                        "x_all": g.x_all,
                        "x_lo": self.v.attrs(self.ops[xs[g.x_first]])["bounds"][g.x_first][0],
                        "x_hi": self.v.attrs(self.ops[xs[g.x_last]])["bounds"][g.x_last][1]})
        return out

    def gate_group_step(self, em: Emitter, g: dict, last: list) -> None:
        acts = [act for run in g["runs"] for _, act, _ in run]
        stmts = Fused(tuple(dict.fromkeys(self.ops[a].stmt for a in acts)))
        em(Comment(f"{', '.join(self.ops[a].name or self.ops[a].label for a in acts)}: one sum "
                   f"for all, one call per activation  [{_where(stmts)}]"))
        last[0] = stmts
        t = self.v.tvar(self.v.axis_of(g["S"]))
        x = subscript(self.v.pyname[g['X']], t) if g["x_all"] else \
            subscript(self.v.pyname[g['X']], t, ELLIPSIS, span(g['x_lo'], g['x_hi']))
        pre = self.v.fresh(f"{self.v.pyname[g['S']]}_sum")
        em.stmt(assign(pre, add(x, self.v.val(g["S"], SAME, "step"))))
        for run in g["runs"]:
            (lo, _), act, _ = run[0]
            hi = run[-1][0][1]
            dest = subscript(g['comb'][act], t) if len(run) > 1 else self.v.val(act, SAME, "step")
            r = rule(self.ops[act].op)
            self.v.helpers.update(r.helpers)
            em.stmt(Do(r.forward(subscript(pre, ELLIPSIS, span(lo, hi))).with_kwarg("out", dest)))
