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
from ..expr import Code, Name, add, call, subscript
from ..stmt import Do, If, assign
from ..fuse import Fused
from ..layout import LEAVES, fused_parts
from ..ops import is_loss, rule
from ..pytext import comment
from .text import OUT_BINARY, OUT_FUNCS, Emitter, _where, spec_comment
from .values import Pass


class Forward(Pass):
    """The forward function of one schedule."""

    def forward(self) -> List[str]:
        em = Emitter()
        extra = ", rng=None, greedy=True, batch=None" if self.v.variant == "sample" else ""
        extra += ", segment=None" if self.v.segmented else ""
        em(f"def {self.v.fname('forward')}(params, inputs, targets=None, state0=None, T=None, "
           f"lengths=None{extra}):")
        with em.indent():
            em('"""Run the network on a batch; return (outputs, cache).')
            em("")
            em("params, inputs, targets, state0: dicts keyed by the spec's names (see PARAMS,")
            em("INPUTS, TARGETS, STATES); arrays are time-major, (T, B, size) for a sequence.")
            em("T is needed only when no sequence is given; lengths (B,) gives each sequence's own")
            em("length in a padded batch (with several time axes, both are dicts keyed by axis).")
            for inner, outer in self.m.nested.items():
                em(f"Steps {inner} run inside every step {outer} ([{inner} in {outer}]): their "
                   f"arrays are ({self.v.tsym(inner)}, {self.v.tsym(outer)}, B, size),")
                em(f"their states ({self.v.tsym(outer)}, B, size), lengths[{inner!r}] is "
                   f"({self.v.tsym(outer)}, B).")
            em("outputs holds every named value, outputs['final'] the states after the last step,")
            em("and 'loss' when targets are given.  A state read d > 1 steps back (STATES[n]['steps'])")
            em("carries its last d steps, (d, B, size) in time order, in 'final' and in state0.")
            em('"""')
            if self.v.segmented:
                em("params, inputs, targets, state0, dims = _validate_segment(params, inputs, "
                   "targets, state0, T, lengths, segment)")
            else:
                em("params, inputs, targets, state0, dims = _validate(params, inputs, targets, "
                   "state0, T, lengths" + (", batch)" if self.v.variant == "sample" else ")"))
            em(self.v.dims_line())
            if self.v.fed_targets():
                em("if targets is None:")
                with em.indent():
                    em("raise ValueError('teacher forcing feeds the targets back: pass targets, "
                       "or run with mode=\"free\"')")
            body = Emitter()
            body.level = em.level
            self.forward_body(body)
            text = body.text()
            dim_lines = [f"{self.v.dimvar(d)} = dims[{d!r}]" for d in sorted(self.v.dims_used)
                         if self.v.dimvar(d) in text]
            em.extend(dim_lines)
            self.v.mask_lines(em, text, comments=True)
            for name_i in self.v.leaf_ids("param"):
                em(f"{self.v.pyname[name_i]} = params[{self.ops[name_i].name!r}]")
            for name_i in self.v.leaf_ids("input"):
                em(f"{self.v.pyname[name_i]} = inputs[{self.ops[name_i].name!r}]")
            for name_i in self.v.fed_targets():
                em(f"{self.v.pyname[name_i]} = targets[{self.ops[name_i].name!r}]")
            em.lines.extend(body.lines)
        return em.lines

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
        em("")
        way = "forward" if stage.direction > 0 else "backward"
        which = f" {k // 2 + 1} of {n_loops}" if n_loops > 1 else ""
        em(f"# time loop{which} ({way} in time): only the recurrent part runs step by step")
        groups = self.gate_groups(k)
        views = self.gate_buffers(em, groups)
        for i in stage.ops:
            if not self.inline[i] and i not in self.local:
                em(f"{self.v.pyname[i]} = {views.get(i) or self.v.alloc(i)}")
                self.v.state_init(em, i)
        em(self.v.loop_header(k))
        with em.indent():
            done = set()
            for i in stage.ops:
                g = next((g for g in groups if i in g["acts"]), None)
                if g is None:
                    self.forward_op(em, i, "step", last)
                elif i not in done:
                    self.gate_group_step(em, g, last)
                    done |= g["acts"]
        em("")

    def gate_buffers(self, em: Emitter, groups: List[dict]) -> Dict[int, str]:
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
                    T = self.v.tsym(acts[0].ty.axis)
                    names = ", ".join(a.name or self.v.pyname[a.id] for a in acts)
                    em(f"{comb} = np.empty(({T}, {self.v.bsym(acts[0].ty.axis)}, "
                       f"{self.v.dim(rows)}), dtype)  # {names} side by side")
                    local = self.v.bounds([a.ty.rows for a in acts])  # inside comb
                    for ((lo, hi), (_, act, _)) in zip(local, run):
                        views[act] = f"{comb}[..., {lo}:{hi}]"
                    g["comb"][run[0][1]] = comb
        return views

    def outputs(self, em: Emitter) -> None:
        """The outputs dict: every named value, the final states, attention weights."""
        em("outputs = {")
        with em.indent():
            for n, i in self.g.values.items():
                em(f"{n!r}: {self.v.unflat(self.v.val(i, SAME, 'all'), self.v.axis_of(i))},")
            if self.m.states:
                finals = ", ".join(f"{n!r}: " + self.v.state_layout(
                    f"{self.v.pyname[self.g.values[n]]}[{self.v.final_index(n)}]", n)
                    for n in self.m.states)
                em(f"'final': {{{finals}}},")
            attention = [(op.label.rsplit("_weights", 1)[0],
                          self.v.unflat(self.v.val(i, SAME, "all"), op.attrs["key_axis"],
                                        steps=False)
                          if op.attrs.get("regroup") else self.v.val(i, SAME, "all"))
                         for i, op in self.ops.items() if op.op == "attn_weights"]
            if attention:
                weights = ", ".join(f"{n!r}: {v}" for n, v in attention)
                em(f"'attention': {{{weights}}},  # weights over the attended steps")
        em("}")

    def losses_and_cache(self, em: Emitter, losses: List[int]) -> None:
        """The loss terms (when targets are given) and what the cache keeps."""
        cache_names = self.v.cache_names()
        if self.g.losses:
            em("if targets is not None:")
            with em.indent():
                for name_i in self.v.leaf_ids("target"):
                    if name_i not in self.v.fed_targets():
                        em(f"{self.v.pyname[name_i]} = targets[{self.ops[name_i].name!r}]")
                last = [None]
                for i in losses:
                    self.forward_op(em, i, "all", last)
                total = " + ".join(self.v.pyname[i] for i in self.g.losses)
                em(f"outputs['loss'] = {total}")
        em("cache = {'params': params, 'dims': dims, 'state0_given': state0['(given)'],")
        em("         'has_loss': 'loss' in outputs" +
           (f", 'mode': {self.v.variant!r}}}" if self.v.variant else "}"))
        for name in cache_names:
            if name in self.v.target_names() or name in self.v.weight_var.values():
                em("if targets is not None:")
                with em.indent():
                    em(f"cache[{name!r}] = {name}")
            else:
                em(f"cache[{name!r}] = {name}")
        em("return outputs, cache")

    def forward_op(self, em: Emitter, i: int, mode: str, last: list, note: str = "") -> None:
        op = self.ops[i]
        if op.op in LEAVES or self.inline[i]:
            return
        spec_comment(em, op.stmt, last, note)
        name = self.v.pyname[i]
        if is_loss(op.op):
            w = self.v.weights(i)
            if w:
                em.stmt(assign(w, Code(self.v.weights_call(i))))
            args = [Code(self.v.val(a, d, "all")) for a, d in op.args]
            r = rule(op.op)
            self.v.helpers.update(r.helpers)
            em.stmt(assign(name, r.forward(*args, w=w)))
            return
        value = self.v.expr_node(i, mode)
        if mode == "step":
            self.step_op(em, i, value)
        elif op.tk == STEP and self.v.extra(i):
            em.stmt(assign(name, Code(self.v.alloc(i))))
            self.v.state_init(em, i)
            em.stmt(assign(self.v.window(name, i, 0), value))
        elif op.op == "add" and self.v.fresh_product(op):
            # the product is a new array: add the other term into it (no second (T, B, n) array)
            k = next(k for k, (a, _) in enumerate(op.args) if self.v.fresh_product(op, a))
            em.stmt(assign(name, Code(self.v.val(op.args[k][0], op.args[k][1], mode))))
            em.stmt(assign(name, Code(self.v.val(*op.args[1 - k], mode)), "+="))
        else:
            em.stmt(assign(name, value))

    def step_op(self, em: Emitter, i: int, value) -> None:
        """Op i at one step of a loop: into its buffer's slot (a ufunc with out=, no
        temporary), and a state kept past the end of a shorter sequence."""
        op = self.ops[i]
        cur = self.v.val(i, SAME, "step")
        if op.op in OUT_FUNCS and cur.endswith("]"):
            em.stmt(Do(value.with_kwarg("out", Code(cur))))
        elif op.op in OUT_BINARY and cur.endswith("]") and op.ty.shape == "vec" and all(
                self.ops[a].ty.shape == "vec" or self.ops[a].op == "const" for a, _ in op.args):
            args = [Code(self.v.val(a, d, "step")) for a, d in op.args]
            em.stmt(Do(call(f"np.{OUT_BINARY[op.op]}", *args, out=Code(cur))))
        else:
            em.stmt(assign(cur, value))
        prev = self.v.carried(i)
        if prev:
            mask, t = "mask" + self.v.sfx(self.v.axis_of(i)), self.v.tvar(self.v.axis_of(i))
            em.stmt(If(Code(f"{mask} is not None"), (
                assign(cur, call("np.where", subscript(Name(mask), t), Code(cur), Code(prev))),),
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
        em(comment(f"{', '.join(self.ops[a].name or self.ops[a].label for a in acts)}: one sum "
                   f"for all, one call per activation  [{_where(stmts)}]"))
        last[0] = stmts
        t = self.v.tvar(self.v.axis_of(g["S"]))
        x = f"{self.v.pyname[g['X']]}[{t}]" if g["x_all"] else \
            f"{self.v.pyname[g['X']]}[{t}, ..., {g['x_lo']}:{g['x_hi']}]"
        pre = self.v.fresh(f"{self.v.pyname[g['S']]}_sum")
        em.stmt(assign(pre, add(Code(x), Code(self.v.val(g["S"], SAME, "step")))))
        for run in g["runs"]:
            (lo, _), act, _ = run[0]
            hi = run[-1][0][1]
            dest = f"{g['comb'][act]}[{t}]" if len(run) > 1 else self.v.val(act, SAME, "step")
            r = rule(self.ops[act].op)
            self.v.helpers.update(r.helpers)
            em.stmt(Do(r.forward(Code(f"{pre}[..., {lo}:{hi}]")).with_kwarg("out", Code(dest))))
