"""What the passes of codegen share: the names of one schedule's values and the nodes reading them.

In: a :class:`rnnspec.schedule.Schedule` and its :class:`rnnspec.layout.Layout`.  Out: a
:class:`Values` that the forward pass (:mod:`.forward`), the adjoint (:mod:`.adjoint`) and the
module writer (:mod:`.module`) ask for a value at a step or over all steps as an expression node
(``h[t]``, ``h[1:]``, an inlined expression), for sizes in dims variables, time axes, loss
weights, the gradient buffers (the layout's) and the spec-line comments.  It collects what the module needs: op helpers, dims, placeholder names.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from ..check import PARAM, STEP
from ..delays import Delay, Step, Whole
from ..expr import (Bin, Expr, IfElse, Lit, Name, Num, add, call, compare, method, node, span,
                   subscript, tuple_of)
from ..stmt import For, Stmt, assign
from ..layout import (backward_reads, fresh_product, gradient_buffers, gradient_flows,
                      plan_layout)
from ..ops import is_loss, rule
from ..pytext import MARK
from ..schedule import Schedule
from ..sizes import Size
from ..truncation import refusal
from .names import RESERVED, _TAGS
from .text import Emitter


class Values:
    """The names and value texts of one schedule (one per feedback mode)."""

    def __init__(self, sched: Schedule, filename: str, variant: Optional[str] = None,
                 segmented: bool = False):
        self.variant = variant  # None, or the feedback mode: 'teacher', 'free', 'sample'
        self.segmented = segmented  # checkpointing: _forward_full/_backward_full run a segment
        self.s = sched
        self.g = sched.graph
        self.m = sched.graph.model
        self.ops = self.g.ops
        self.filename = filename
        self.helpers, self.dims_used = set(), set()  # (runtime helpers, dims the code reads)
        self.pyname: Dict[int, str] = {}
        self.tag = next(_TAGS)  # this namer's placeholders: MARK<tag>_<k>MARK (see fresh)
        self.bases: List[str] = []  # the k-th name asked of fresh() was for bases[k]
        self.main = self.m.axes[0] if self.m.axes else "t"
        self.axis_var = {a: self.fresh(a) for a in (self.m.axes or [self.main])}
        self.dim_var: Dict[str, str] = {}
        self.weight_var: Dict[int, str] = {}
        self.sweeps = False  # backward runs TBPTT(k1, k2) sweeps (the runtime's 'sweeps' group)
        self._assign_names()
        self.layout = plan_layout(sched)  # where every value lives, decided before any code
        self.inline = self.layout.inline
        self.local = self.layout.local
        flows = gradient_flows(sched)  # (the ops that receive a gradient)
        self.kept = backward_reads(sched, self.layout, flows)  # what the cache keeps
        self.grad_buffers = gradient_buffers(sched, flows)  # gradients in a zero-filled buffer
        # why backward(..., truncate=, xi=) is refused (None: the gradient can be cut in time)
        self.truncation = refusal(sched, filename)

    # ----- time axes -------------------------------------------------------------------------
    def sfx(self, axis: Optional[str]) -> str:
        """'' for the main axis, '_i' for another axis i (T_i, mask_i, last_i)."""
        return "" if axis in (None, self.main) else f"_{axis}"

    def tsym(self, axis: Optional[str]) -> str:
        return "T" + self.sfx(axis)

    def tvar(self, axis: Optional[str]) -> str:
        """The loop variable of an axis: its own name (t, i, ...)."""
        return self.axis_var[axis or self.main]

    def axis_of(self, i: int) -> Optional[str]:
        return self.ops[i].ty.axis

    def bsym(self, axis: Optional[str]) -> str:
        """The batch of an axis: B, or B_w = T_s * B for a nested axis [w in s] (every step s
        of every sequence has its own sequence of steps w)."""
        return "B" + self.sfx(axis) if axis in self.m.nested else "B"

    def unflat(self, value: Expr, axis: Optional[str], steps: bool = True) -> Expr:
        """A nested axis's array in the users' layout: (T_w, B_w, n) -> (T_w, T_s, B, n), or
        (B_w, n) -> (T_s, B, n) without ``steps``."""
        if axis not in self.m.nested:
            return value
        lead = [self.tsym(axis)] if steps else []
        return method(value, "reshape", *lead, self.tsym(self.m.nested[axis]), "B", -1)

    def batch_sym(self, axis: Optional[str]) -> str:
        return "batch" + self.sfx(axis) if axis in self.m.nested else "batch"

    # ----- names -----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A new variable for ``base`` (a spec name, or a name made from one): a placeholder
        now, which :func:`_name_placeholders` replaces, once the whole module is written, by
        ``base`` (or ``base_2``, ...) -- never a name the module uses itself.  So the
        generator's own names (``mask``, ``_validate``, ``np``, ...) need no list: whatever
        the text uses that did not come from here is out of reach of spec names."""
        self.bases.append(base)
        return f"{MARK}{self.tag}_{len(self.bases) - 1}{MARK}"

    def _assign_names(self) -> None:
        for i in sorted(self.ops, key=lambda i: (self.ops[i].name is None, i)):
            op = self.ops[i]
            if op.op == "const":
                continue
            base = op.name or op.label
            if base in RESERVED:
                base = base + "_"
            self.pyname[i] = self.fresh(base)

    def dimvar(self, d: str) -> str:
        """The variable holding dim ``d`` (n_hidden for hidden)."""
        if d not in self.dim_var:
            self.dim_var[d] = self.fresh(f"n_{d}")
        return self.dim_var[d]

    def size(self, size: Size) -> Expr:
        """A size in dims variables: ``n_hidden``, ``2 * n_hidden + 1``."""
        total = None
        for d, c in size.terms:
            self.dims_used.add(d)
            term = Name(self.dimvar(d)) if c == 1 else Bin("*", Num(c), Name(self.dimvar(d)))
            total = term if total is None else Bin("+", total, term)
        if size.const or total is None:
            total = Num(size.const) if total is None else Bin("+", total, Num(size.const))
        return total

    # ----- value texts -----------------------------------------------------------------------
    def pad(self, i: int) -> int:
        """Steps stored before step 1 (the offset of step 1 in the buffer)."""
        return self.s.padding.get(i, (0, 0))[0]

    def extra(self, i: int) -> int:
        """All initial steps stored (before step 1 and after step T)."""
        before, after = self.s.padding.get(i, (0, 0))
        return before + after

    def window(self, name: str, i: int, steps: int) -> Expr:
        """All T steps of op i's buffer read ``steps`` steps back (negative: ahead)."""
        start = self.pad(i) - steps
        T = Name(self.tsym(self.axis_of(i)))
        if self.extra(i) == 0:
            return Name(name)
        if start == 0:
            return subscript(name, span(None, T))
        if start == self.extra(i):
            return subscript(name, span(start, None))
        return subscript(name, span(start, Bin("+", T, Num(start))))

    def at_step(self, name: str, start: int, i: int) -> Expr:
        """Op i's buffer ``name`` at the loop's current step, shifted by ``start``."""
        return subscript(name, _shifted(Name(self.tvar(self.axis_of(i))), start))

    def val(self, i: int, delay: Delay, mode: str) -> Expr:
        """Op ``i`` read at ``delay``, at step t (mode 'step') or for all steps."""
        op = self.ops[i]
        if op.op == "const":
            return Num(op.attrs["value"])
        if self.inline[i]:
            return self.expr_node(i, mode)
        name = self.pyname[i]
        if op.tk != STEP or i in self.local:
            return Name(name)
        if isinstance(delay, Whole):  # the whole sequence (attention's keys and values)
            return self.window(name, i, 0)
        if mode == "step":
            return self.at_step(name, self.pad(i) - delay.steps, i)
        return self.window(name, i, delay.steps)

    def pick_index(self, i: int) -> Tuple[Expr, ...]:
        """Index of the chosen step of pick op ``i`` into its source's (padded) buffer."""
        op = self.ops[i]
        src = op.args[0][0]
        ix = op.attrs["index"]
        D = self.pad(src)
        if ix.kind == "abs":
            return (Num(D + ix.offset - 1),)
        last = Name("last" + self.sfx(op.attrs["axis"]))
        return _shifted(last, D + ix.offset), Name(self.batch_sym(op.attrs["axis"]))

    def expr_node(self, i: int, mode: str):
        """Op ``i``'s value as an expression node (its rule's forward, on its arguments)."""
        op = self.ops[i]
        if op.op == "pick":
            src = op.args[0][0]
            return subscript(self.pyname[src], *self.pick_index(i))
        r = rule(op.op)
        self.helpers.update(r.helpers)
        args = [self.val(a, d, mode) for a, d in op.args]
        return r.forward(*args, **self.attrs(op, mode))

    def bounds(self, sizes: List[Size]) -> List[Tuple[Optional[Expr], Expr]]:
        """(start, stop) of consecutive blocks of the given sizes (None for a 0 start)."""
        out, start = [], Size()
        for size in sizes:
            stop = start + size
            out.append((None if start == Size() else self.size(start), self.size(stop)))
            start = stop
        return out

    def attrs(self, op, mode: str = "all") -> dict:
        if op.op == "attn_weights":
            a = op.attrs
            qpos = Name(self.tvar(op.ty.axis)) if mode == "step" else Lit("all")
            return {"score": a["score"], "roles": a["roles"], "window": a["window"],
                    "causal": a["causal"], "qpos": qpos, "last": "last" + self.sfx(a["key_axis"])}
        if op.op == "matvec":
            return {"rows": mode == "all" and op.tk == STEP}
        if op.op == "regroup":
            return {"T": self.tsym(op.attrs["axis"]), "n": self.size(op.ty.rows)}
        if op.op == "concat":
            return {"sizes": [self.size(self.ops[a].ty.rows) for a, _ in op.args]}
        if op.op == "onehot":
            return {"size": self.size(op.ty.rows), **op.attrs}
        if op.op == "stack_rows":
            return {"bounds": self.bounds([self.ops[a].ty.rows for a, _ in op.args])}
        if op.op == "part":
            return {"bounds": self.bounds(op.attrs["rows"]), "index": op.attrs["index"]}
        if is_loss(op.op):
            return {"w": self.weights(op.id)}
        if op.op == "choose" and op.attrs.get("start"):  # the start class, unless state0 seeds
            k, d, state = op.attrs["start"]
            given = subscript(subscript("state0", Lit("(given)")), Lit(state))
            first = IfElse(Lit(None), given, node(k))
            if mode == "step":  # (the start's two arguments: the class and the steps d)
                return {"start": (IfElse(first, compare(self.tvar(op.ty.axis), "<", d), Lit(None)),)}
            return {"start": (first, node(d))}
        return {}

    # ----- loss weights, function names, leaves ---------------------------------------------
    def weights(self, i: int) -> Optional[str]:
        """The variable holding a per-step loss's weights over (T, B), None for one per sequence."""
        if self.ops[i].attrs["tk"] != STEP:
            return None
        if i not in self.weight_var:
            self.weight_var[i] = self.fresh(f"w_{self.pyname[i]}")
        return self.weight_var[i]

    def weights_call(self, i: int) -> Expr:
        """``_loss_weights(dims, ...)``: the weights of per-step loss op i over (T, B)."""
        op = self.ops[i]
        args, kwargs = [Name("dims")], {}
        if self.sfx(op.attrs["axis"]):
            args.append(Lit(op.attrs["axis"]))
        if op.attrs["steps"]:
            kwargs["steps"] = Lit([(s.kind, s.offset) for s in op.attrs["steps"]])
        if op.attrs["reduce"] == "mean":
            kwargs["mean"] = Lit(True)
        return call("_segment_loss_weights" if self.segmented else "_loss_weights", *args,
                    **kwargs)

    def fname(self, base: str) -> str:
        if self.segmented:
            return f"_{base}_full"
        return f"_{base}_{self.variant}" if self.variant else base

    def fed_targets(self) -> List[int]:
        """Target leaves that the network reads (teacher forcing), not only its losses."""
        return [i for i in self.leaf_ids("target")
                if any(not is_loss(self.ops[c].op)
                       for c, _, _ in self.s.consumers[i])]

    def leaf_ids(self, kind: str) -> List[int]:
        return [i for i in self.s.order if self.ops[i].op == kind]

    def graded_leaf_ids(self, kind: str) -> List[int]:
        """The leaves of ``kind`` that have a gradient: not class inputs (indices), which
        backward's 'inputs' leaves out."""
        return [i for i in self.leaf_ids(kind) if kind != "input" or
                self.m.inputs[self.ops[i].name].kind != "class"]

    def dims_line(self) -> Stmt:
        """``T, B, dtype = dims['T'], dims['B'], dims['dtype']`` (and the other axes')."""
        names = ["T" + self.sfx(a) for a in (self.m.axes or [self.main])] + ["B"] + [
            self.bsym(a) for a in self.m.nested] + ["dtype"]
        return assign(tuple_of(*names, bare=True),
                      tuple_of(*(subscript("dims", Lit(n)) for n in names), bare=True))

    def mask_lines(self, em: Emitter, text: str, comments: bool = False) -> None:
        """Bind the per-axis masks and last steps that ``text`` uses."""
        for a in self.m.axes:
            sfx = self.sfx(a)
            if re.search(rf"\bmask{sfx}\b", text):
                note = f"({self.tsym(a)}, {self.bsym(a)}, 1): True up to each sequence's " \
                    f"length" if comments else ""
                em(assign(f"mask{sfx}", call("_step_mask", "dims", *([Lit(a)] if sfx else [])),
                          note=note))
            if re.search(rf"\blast{sfx}\b", text):
                note = "each sequence's last step" if comments else ""
                em(assign(tuple_of(f"last{sfx}", self.batch_sym(a), bare=True),
                          tuple_of(subscript("dims", Lit(f"last{sfx}")),
                                   call("np.arange", self.bsym(a)), bare=True), note=note))

    def alloc(self, i: int) -> Expr:
        """``np.empty((T + E, B, n), dtype)``: op i's buffer over its steps (E initial ones)."""
        op = self.ops[i]
        E = self.extra(i)
        T = Name(self.tsym(self.axis_of(i)))
        return call("np.empty", tuple_of(T if E == 0 else add(T, E), self.bsym(op.ty.axis),
                                         self.size(op.ty.rows)), "dtype")

    def state_init(self, em: Emitter, i: int) -> None:
        """Fill the initial steps of a state's buffer (before step 1 and/or after step T)."""
        op = self.ops[i]
        before, after = self.s.padding.get(i, (0, 0))
        if op.name in self.m.states:
            st = self.m.states[op.name]
            init = subscript("state0", Lit(op.name))
            if st.init == "value":  # computed by the network, unless state0 overrides it
                init = method("state0", "get", Lit(op.name),
                              self.pyname[self.g.values[st.init_name]])
            if before:
                em(assign(subscript(self.pyname[i], span(None, before)), init))
            if after:
                T = Name(self.tsym(self.axis_of(i)))
                em(assign(subscript(self.pyname[i], span(add(T, before) if before else T, None)),
                          init))

    def carry_steps(self, name: str) -> int:
        """How many steps of state ``name`` outputs['final'] and state0 hold (STATES 'steps'):
        as many as the spec reads back in its recurrence's direction (h[t-3]: 3), so that a
        sequence split anywhere and run in pieces, each from the previous piece's final states,
        gives exactly the unsplit result.  1 for one step (a (B, size) array, no step axis), and
        for a state read both back and ahead (its initial value fills both sides)."""
        i = self.g.values[name]
        before, after = self.s.padding.get(i, (0, 0))
        if before and after:
            return 1
        return max(before if self.s.direction.get(i, 1) > 0 else after, 1)

    def final_index(self, name: str) -> Tuple[Expr, ...]:
        """Where the state after the last step of its recurrence is: step T, or step 1 for a
        recurrence that runs backward in time; with ``carry_steps`` d > 1, the d steps up to it
        (T-d+1..T, or 1..d), in time order."""
        i = self.g.values[name]
        start = self.pad(i)
        D = self.carry_steps(name)
        if self.s.direction.get(i, 1) < 0:
            return (Num(start) if D == 1 else span(start or None, start + D),)
        last = Name("last" + self.sfx(self.axis_of(i)))  # each sequence's own last step
        batch = Name(self.batch_sym(self.axis_of(i)))
        if D > 1:
            steps = subscript(call("np.arange", start - D + 1, start + 1), span(None, None), None)
            return Bin("+", last, steps), batch
        return _shifted(last, start), batch

    def state_layout(self, value: Expr, name: str) -> Expr:
        """A state's final (or initial) steps in the users' layout: (d, B, n) for d > 1 carried
        steps, and one per step s for a state over a nested axis ((d,) T_s, B, n)."""
        i = self.g.values[name]
        D = self.carry_steps(name)
        axis = self.axis_of(i)
        if D > 1 and axis in self.m.nested:
            return method(value, "reshape", D, self.tsym(self.m.nested[axis]), "B", -1)
        return self.unflat(value, axis, steps=False)

    def stage_ops(self, k: int) -> List[int]:
        return self.s.stages[k].ops

    def loop(self, k: int, body, backward: bool = False) -> For:
        """The loop of stage k over its steps (in the opposite order for ``backward``)."""
        stage = self.s.stages[k]
        steps = call("range", self.tsym(stage.axis))
        if (stage.direction > 0) == backward:
            steps = call("reversed", steps)
        return For(Name(self.tvar(stage.axis)), steps, tuple(body))

    def target_names(self) -> set:
        return {self.pyname[i] for i in self.leaf_ids("target")}

    def loss_only(self, i: int) -> bool:
        """An op computed only for the loss (a picked step of the prediction)."""
        cons = self.s.consumers[i]
        return (self.ops[i].op == "pick" and not self.ops[i].name and cons and
                all(is_loss(self.ops[c].op) for c, _, _ in cons))

    def fresh_product(self, op, arg: Optional[int] = None) -> bool:
        return fresh_product(self.s, self.inline, op, arg)

    def cache_names(self, kept_only: bool = True) -> List[str]:
        """What forward keeps for backward: the values the layout says backward reads
        (:func:`rnnspec.layout.backward_reads`; all arrays with ``kept_only=False``) and the
        loss weights."""
        names = []
        for i in self.s.order:
            op = self.ops[i]
            if op.op in ("const", "param") or is_loss(op.op) or self.inline[i] \
                    or i in self.local or (kept_only and i not in self.kept):
                continue
            names.append(self.pyname[i])
        for i in self.g.losses:
            if self.weights(i):
                names.append(self.weights(i))
        return names

    def carried(self, i: int) -> Optional[Expr]:
        """For a state in a loop: its previous step in the loop's direction (what it
        keeps past the end of a shorter sequence); None for other ops."""
        op = self.ops[i]
        k = self.s.stage_of[i]
        if op.name not in self.m.states or self.s.stages[k].kind != "loop":
            return None
        d = self.s.stages[k].direction
        before, after = self.s.padding.get(i, (0, 0))
        if (before if d > 0 else after) < 1:
            return None
        return self.val(i, Step(d), "step")

    def zero_buffer(self, i: int) -> Expr:
        """The zero-filled gradient buffer of op i over all its stored steps (initial ones
        too): made like its value when the backward pass reads that value anyway (the layout
        keeps it), else shaped from the dims, so that nothing is kept for it."""
        if i in self.kept or self.ops[i].op == "param":
            return call("np.zeros_like", self.pyname[i])
        return self.zeros(i, padded=True)

    def zeros(self, i: int, mode: str = "all", padded: bool = False) -> Expr:
        """A zero gradient of op ``i`` for all steps (or one, ``mode='step'``; ``padded``: and
        its buffer's initial steps), shaped from the dims: no value of the forward pass is read
        for it, so none has to be kept."""
        ty = self.ops[i].ty
        size = [] if ty.shape == "scalar" else [self.size(ty.rows)] if ty.shape == "vec" else \
            [self.size(ty.rows), self.size(ty.cols)]
        lead = [self.tsym(ty.axis), self.bsym(ty.axis)] if ty.tk == STEP and mode == "all" else \
            [self.bsym(ty.axis)] if ty.tk != PARAM else []
        if padded and self.extra(i) and lead:  # (the initial steps of its buffer too)
            lead[0] = add(Name(lead[0]), self.extra(i))
        return call("np.zeros", tuple_of(*lead, *size), "dtype")


class Pass:
    """A pass of codegen over one schedule: its :class:`Values` and, for short, the schedule,
    graph, model, ops and the layout's decisions."""

    def __init__(self, v: Values):
        self.v = v  # the shared names and value texts (and what the module uses)
        self.s, self.g, self.m, self.ops = v.s, v.g, v.m, v.ops
        self.inline, self.local, self.layout, self.kept = v.inline, v.local, v.layout, v.kept



def _shifted(x: Expr, k: int) -> Expr:
    """``x``, ``x + k`` or ``x - -k`` (an index k steps from ``x``)."""
    return x if k == 0 else Bin("+", x, Num(k)) if k > 0 else Bin("-", x, Num(-k))
