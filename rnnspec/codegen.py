"""Stage 5, codegen: :class:`rnnspec.schedule.Schedule` -> the source text of a NumPy module.

In: a schedule (and through it the graph and the checked model).  Out: Python source that imports
only numpy and defines ``DIMS``, ``PARAMS``, ``INPUTS``, ``TARGETS``, ``STATES``, ``OUTPUTS``,
``init_params``, ``forward``, ``backward`` and ``loss_and_grad``.  The text is deterministic (same
spec and dims, byte-identical output).

How the code is laid out follows the schedule's stages: ops of an ``all`` block are computed
for all steps at once, ops of a ``loop`` stage step by step (forward or backward in time).  An
op whose value is used once, in the same stage, and not needed by the backward pass is inlined
into its consumer's expression; every other op gets a named array.  A value read with a delay d
is stored with d initial steps before step 1 (``s[t + 1]`` holds s at step t when d = 1); one
read d steps ahead, with d initial steps after step T.

The backward pass runs the same stages in reverse.  Gradients are *pulled* from consumers where
the consumer is in an all-steps block; inside a loop, same-step gradients are pulled and
gradients through delayed references are *pushed* into the earlier step's buffer.  Gradients of
loop-invariant arguments (weights, biases, hoisted input projections) are not accumulated step by
step: the loop stores the per-step gradient of the op, and one product over all T*B rows after the
loop gives the contribution.
"""
from __future__ import annotations

import ast as pyast
import itertools
import keyword
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import __version__
from .ast import Equation, Loss, unparse, walk
from .check import PARAM, STATIC, STEP
from .errors import missing_rule
from .pytext import MARK, comment, escape
from .expr import ATOM, PRODUCT, ZERO, Call, Code, add, show
from .ops import HELPERS, RULES, is_loss, rule
from .runtime import helper_texts
from .fuse import Fused
from .layout import backward_reads, fresh_product, fused_parts, plan_layout
from .schedule import Schedule
from .sizes import Size

LEAVES = ("param", "input", "target", "const")
LOSS_GIVEN = "d_loss is not None"  # the condition of the loss's gradient (targets were given)
RESERVED = set(keyword.kwlist) | {
    "np", "T", "B", "params", "inputs", "targets", "state0", "cache", "outputs", "grads",
    "dims", "dtype", "d_outputs", "up", "d_loss", "loss", "steps", "seed", "rng", "float", "len",
    "range", "reversed", "dict", "None", "True", "False", "int", "max", "min", "sum", "abs",
    "__debug__", "state0_given", "has_loss", "mode", "checkpoints"}  # (the last: cache's keys)


class Emitter:
    """Lines of Python with indentation."""

    def __init__(self):
        self.lines: List[str] = []
        self.level = 0

    def __call__(self, text: str = "") -> None:
        self.lines.append(("    " * self.level + text) if text else "")

    def indent(self):
        emitter = self

        class _Block:
            def __enter__(self):
                emitter.level += 1

            def __exit__(self, *exc):
                emitter.level -= 1
        return _Block()

    def extend(self, lines: List[str]) -> None:
        for line in lines:
            self(line)

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Grad:
    step: Optional[str]  # text of the gradient at step t (loop ops)
    all: Optional[str]  # text of the gradient for all steps
    cond: Optional[str] = None  # run-time condition under which it exists (None: always)


@dataclass
class Term:
    text: str
    cond: Optional[str] = None  # run-time condition (a 'maybe' gradient)
    delay: int = 0
    index: Optional[str] = None  # scatter into one index (or index array) of the buffer


def _verify_docstring(text: str, doc: str) -> None:
    """The module's text must hold ``doc`` as its docstring, read back exactly: outside text
    (file names, imports, the spec) went in only through :func:`rnnspec.pytext.escape`."""
    tree = pyast.parse(text)
    if pyast.get_docstring(tree, clean=False) != doc + "\n" or not all(
            ch.isprintable() or ch in "\n\t" for ch in text):
        raise AssertionError("bug in rnnspec: the generated module does not read back its "
                             "docstring")


def _where(stmt) -> str:
    """``line 12``, or ``cells.rnn line 12`` for a statement of an imported file (its base name:
    the module does not depend on the directory it was compiled from); ``lines 21-24`` for the
    statements of a fused product."""
    if isinstance(stmt, Fused):
        places = [_where(s) for s in stmt.stmts]
        if len(places) > 1 and all(p.startswith("line ") for p in places):
            lines = [s.line for s in stmt.stmts]
            if lines == list(range(lines[0], lines[0] + len(lines))):
                return f"lines {lines[0]}-{lines[-1]}"
            return "lines " + ", ".join(str(n) for n in lines)
        return ", ".join(places)
    origin = getattr(stmt, "origin", None)
    return f"line {stmt.line}" if origin is None else \
        f"{origin.filename.replace(chr(92), '/').rsplit('/', 1)[-1]} line {stmt.line}"


def generate_code(sched: Schedule, filename: str = "spec.rnn",
                  variants: Optional[Dict[str, Schedule]] = None,
                  checkpoint: Optional[int] = None) -> str:
    """Render the module for ``sched``; ``filename`` goes into the header.  For a spec with
    ``feedback(...)``, ``sched`` is the teacher-forcing schedule and ``variants`` maps 'free'
    and 'sample' to the free-running and generation schedules.  With ``checkpoint=k`` (a spec
    that :func:`rnnspec.checkpoint.check_segmentable` accepts), forward and backward run in
    segments of k steps (see rnnspec/runtime/checkpoint.py)."""
    if checkpoint:
        coders = [_Codegen(sched, filename, segmented=True)]
        text = coders[0].module(checkpoint=checkpoint)
    elif not variants:
        coders = [_Codegen(sched, filename)]
        text = coders[0].module()
    else:
        coders = [_Codegen(sched, filename, "teacher")]
        coders += [_Codegen(s, filename, mode) for mode, s in variants.items()]
        text = coders[0].module(coders[1:])
    text = _name_placeholders(text, coders)
    _verify_docstring(text, coders[0].docstring(checkpoint))
    return text


# A placeholder name is MARK<tag>_<k>MARK: MARK is a letter that no spec name holds (names are
# ASCII) and that escape() never writes as itself, so only the namer's placeholders match.
PLACEHOLDER = re.compile(f"{MARK}\\d+_\\d+{MARK}")
_TAGS = itertools.count()  # one tag per namer (a module with feedback has three)


def _own_names(text: str) -> set:
    """The names a spec's variables must not take: every module-level name (functions, tables,
    ``np``), and every name that a function holding spec variables uses itself (its arguments,
    the generator's own variables such as ``mask`` or ``dims``, the builtins it calls), read
    from the module's syntax tree (so also those inside f-strings; not attributes or keyword
    arguments, which cannot clash)."""
    tree = pyast.parse(text)
    names = set()
    for node in tree.body:
        if isinstance(node, (pyast.FunctionDef, pyast.ClassDef)):
            names.add(node.name)
        for sub in pyast.walk(node) if not isinstance(node, pyast.FunctionDef) else ():
            if isinstance(sub, pyast.Name):
                names.add(sub.id)
            elif isinstance(sub, pyast.alias):
                names.add((sub.asname or sub.name).split(".")[0])
        if isinstance(node, pyast.FunctionDef) and MARK in pyast.unparse(node):
            for sub in pyast.walk(node):
                if isinstance(sub, pyast.Name):
                    names.add(sub.id)
                elif isinstance(sub, pyast.arg):
                    names.add(sub.arg)
                elif isinstance(sub, (pyast.FunctionDef, pyast.Lambda)) and sub is not node:
                    names.add(getattr(sub, "name", "lambda"))
    return names


def _name_placeholders(text: str, coders: List["_Codegen"]) -> str:
    """Replace each namer's placeholders by readable names: the base name a placeholder was
    made for (``W_h``, ``d_W_h``, ``n_hidden``), numbered (``mask_2``) where that is a name the
    module uses itself or another of the same namer's names.  Placeholders in a base (``d_`` +
    a placeholder) are named first: fresh() hands them out in order."""
    own = {n for n in _own_names(text) if MARK not in n} | RESERVED
    final: Dict[str, str] = {}
    for c in coders:
        chosen: set = set()
        for k, base in enumerate(c.bases):
            base = PLACEHOLDER.sub(lambda m: final[m.group(0)], base)
            base = re.sub(r"\W", "_", base)
            if not base or base[0].isdigit():
                base = "v_" + base
            name, n = base, 2
            while name in own or name in chosen:
                name = f"{base}_{n}" if not base.endswith("_") else f"{base}{n}"
                n += 1
            chosen.add(name)
            final[f"{MARK}{c.tag}_{k}{MARK}"] = name
    text = PLACEHOLDER.sub(lambda m: final[m.group(0)], text)
    if MARK in text:
        raise AssertionError("bug in rnnspec: a placeholder name is left in the module")
    return text


def wrap(text: str, level: int) -> str:
    """Parenthesize ``text`` if it binds less tightly than ``level`` (:mod:`rnnspec.expr`)."""
    return show(Code(text), level)


def _atomic(text: str) -> bool:
    return Code(text).level >= ATOM


OUT_FUNCS = ("tanh", "exp", "sigmoid")  # written into a step's buffer slot with out=
OUT_BINARY = {"add": "add", "sub": "subtract", "mul": "multiply"}  # the same, for two vectors


def _into(call: Call, dest: str) -> str:
    """A ufunc call such as np.tanh(a), writing into ``dest`` (no temporary, no copy)."""
    return show(call.with_kwarg("out", Code(dest)))


NAME = re.compile(f"{PLACEHOLDER.pattern}|[A-Za-z_][A-Za-z_0-9]*")


def _total(texts) -> str:
    """The sum of gradient contributions (``a - b`` for a contribution ``-b``)."""
    acc = ZERO
    for text in texts:
        acc = add(acc, Code(text))
    return show(acc) if acc is not ZERO else ""


def _plain(text: str) -> bool:
    """A name or a slice of one: cheap to repeat wherever a gradient is read (a call such as
    np.concatenate(...) is computed once, into a variable)."""
    return _atomic(text) and "(" not in text


class _Codegen:
    def __init__(self, sched: Schedule, filename: str, variant: Optional[str] = None,
                 segmented: bool = False):
        self.variant = variant  # None, or the feedback mode: 'teacher', 'free', 'sample'
        self.segmented = segmented  # checkpointing: _forward_full/_backward_full run a segment
        self.s = sched
        self.g = sched.graph
        self.m = sched.graph.model
        self.ops = self.g.ops
        self.filename = filename
        self.helpers: set = set()
        self.dims_used: set = set()
        self.pyname: Dict[int, str] = {}
        self.tag = next(_TAGS)  # this namer's placeholders: MARK<tag>_<k>MARK (see fresh)
        self.bases: List[str] = []  # the k-th name asked of fresh() was for bases[k]
        self.main = self.m.axes[0] if self.m.axes else "t"
        self.axis_var = {a: self.fresh(a) for a in (self.m.axes or [self.main])}
        self.dim_var: Dict[str, str] = {}
        self.weight_var: Dict[int, str] = {}
        self._assign_names()
        self.layout = plan_layout(sched)  # where every value lives, decided before any code
        self.inline = self.layout.inline
        self.local = self.layout.local
        self.kept = backward_reads(sched, self.layout)  # what the cache keeps for backward

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

    def unflat(self, text: str, axis: Optional[str], steps: bool = True) -> str:
        """A nested axis's array in the users' layout: (T_w, B_w, n) -> (T_w, T_s, B, n), or
        (B_w, n) -> (T_s, B, n) without ``steps``."""
        if axis not in self.m.nested:
            return text
        lead = [self.tsym(axis)] if steps else []
        lead += [self.tsym(self.m.nested[axis]), "B", "-1"]
        return f"{wrap(text, ATOM)}.reshape({', '.join(lead)})"

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

    def dim(self, size: Size) -> str:
        parts = []
        for d, c in size.terms:
            self.dims_used.add(d)
            parts.append(self.dimvar(d) if c == 1 else f"{c} * {self.dimvar(d)}")
        if size.const or not parts:
            parts.append(str(size.const))
        return " + ".join(parts)

    # ----- value texts -----------------------------------------------------------------------
    def pad(self, i: int) -> int:
        """Steps stored before step 1 (the offset of step 1 in the buffer)."""
        return self.s.padding.get(i, (0, 0))[0]

    def extra(self, i: int) -> int:
        """All initial steps stored (before step 1 and after step T)."""
        before, after = self.s.padding.get(i, (0, 0))
        return before + after

    def window(self, name: str, i: int, delay: int) -> str:
        """All T steps of op i's buffer read ``delay`` steps back (negative: ahead)."""
        start = self.pad(i) - delay
        T = self.tsym(self.axis_of(i))
        if self.extra(i) == 0:
            return name
        if start == 0:
            return f"{name}[:{T}]"
        if start == self.extra(i):
            return f"{name}[{start}:]"
        return f"{name}[{start}:{T} + {start}]"

    def at_step(self, name: str, start: int, i: int) -> str:
        """Op i's buffer ``name`` at the loop's current step, shifted by ``start``."""
        t = self.tvar(self.axis_of(i))
        return f"{name}[{t}]" if start == 0 else (f"{name}[{t} + {start}]" if start > 0
                                                   else f"{name}[{t} - {-start}]")

    def val(self, i: int, delay: int, mode: str) -> str:
        """Text of op ``i`` read ``delay`` steps back, at step t (mode 'step') or for all steps."""
        op = self.ops[i]
        if op.op == "const":
            v = op.attrs["value"]
            return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
        if self.inline[i]:
            return self.expr(i, mode)
        name = self.pyname[i]
        if op.tk != STEP or i in self.local:
            return name
        if delay == "all":  # the whole sequence (attention's keys and values)
            return self.window(name, i, 0)
        if mode == "step":
            return self.at_step(name, self.pad(i) - delay, i)
        return self.window(name, i, delay)

    def pick_index(self, i: int) -> str:
        """Index of the chosen step of pick op ``i`` into its source's (padded) buffer."""
        op = self.ops[i]
        src = op.args[0][0]
        ix = op.attrs["index"]
        D = self.pad(src)
        if ix.kind == "abs":
            return str(D + ix.offset - 1)
        c = D + ix.offset
        last = "last" + self.sfx(op.attrs["axis"])
        batch = self.batch_sym(op.attrs["axis"])
        return f"{last}, {batch}" if c == 0 else (f"{last} + {c}, {batch}" if c > 0 else
                                                  f"{last} - {-c}, {batch}")

    def expr(self, i: int, mode: str) -> str:
        return show(self.expr_node(i, mode))

    def expr_node(self, i: int, mode: str):
        """Op ``i``'s value as an expression node (its rule's forward, on its arguments)."""
        op = self.ops[i]
        if op.op == "pick":
            src = op.args[0][0]
            return Code(f"{self.pyname[src]}[{self.pick_index(i)}]")
        r = rule(op.op)
        self.helpers.update(r.helpers)
        args = [Code(self.val(a, d, mode)) for a, d in op.args]
        return r.forward(*args, **self.attrs(op, mode))

    def bounds(self, sizes: List[Size]) -> List[Tuple[str, str]]:
        """(start, stop) texts of consecutive blocks of the given sizes ('' for a 0 start)."""
        out, start = [], Size()
        for size in sizes:
            stop = start + size
            out.append(("" if start == Size() else self.dim(start), self.dim(stop)))
            start = stop
        return out

    def attrs(self, op, mode: str = "all") -> dict:
        if op.op == "attn_weights":
            a = op.attrs
            qpos = f"{self.tvar(op.ty.axis)}" if mode == "step" else "'all'"
            return {"score": a["score"], "roles": a["roles"], "window": a["window"],
                    "causal": a["causal"], "qpos": qpos, "last": "last" + self.sfx(a["key_axis"])}
        if op.op == "matvec":
            return {"rows": mode == "all" and op.tk == STEP}
        if op.op == "regroup":
            return {"T": self.tsym(op.attrs["axis"]), "n": self.dim(op.ty.rows)}
        if op.op == "concat":
            return {"sizes": [self.dim(self.ops[a].ty.rows) for a, _ in op.args]}
        if op.op == "onehot":
            return {"size": self.dim(op.ty.rows), **op.attrs}
        if op.op == "stack_rows":
            return {"bounds": self.bounds([self.ops[a].ty.rows for a, _ in op.args])}
        if op.op == "part":
            return {"bounds": self.bounds(op.attrs["rows"]), "index": op.attrs["index"]}
        if is_loss(op.op):
            return {"w": self.weights(op.id)}
        if op.op == "choose" and op.attrs.get("start"):  # the start class, unless state0 seeds
            k, d, state = op.attrs["start"]
            first = f"None if state0['(given)'][{state!r}] else {k}"
            if mode == "step":
                return {"start": f"({first}) if {self.tvar(op.ty.axis)} < {d} else None"}
            return {"start": f"{first}, {d}"}
        return {}

    # ----- comments --------------------------------------------------------------------------
    def stmt_text(self, stmt) -> str:
        if isinstance(stmt, Fused):
            if len(stmt.stmts) == 1:
                return self.stmt_text(stmt.stmts[0])
            names = [s.name if isinstance(s, Equation) else "loss" for s in stmt.stmts]
            return f"{', '.join(names)}: their products with {stmt.reads} in one, the weights " \
                f"stacked"
        if isinstance(stmt, Equation):
            lhs = stmt.name + (f"[{stmt.axis}]" if stmt.axis else "")
            return f"{lhs} = {unparse(stmt.expr)}"
        if isinstance(stmt, Loss):
            text = f"loss = {'mean ' if stmt.reduce == 'mean' else ''}{unparse(stmt.expr)}"
            if stmt.select:
                text += f" at {stmt.select.var} = " + ", ".join(s.text() for s in stmt.select.steps)
            return text
        return ""

    def comment(self, em: Emitter, stmt, last: list, note: str = "") -> None:
        if stmt is None or stmt is last[0]:
            return
        last[0] = stmt
        em(comment(f"{self.stmt_text(stmt)}" + (f"  ({note})" if note else "") +
                   f"  [{_where(stmt)}]"))

    # ----- forward ---------------------------------------------------------------------------
    def weights(self, i: int) -> Optional[str]:
        """The variable holding a per-step loss's weights over (T, B), None for one per sequence."""
        if self.ops[i].attrs["tk"] != STEP:
            return None
        if i not in self.weight_var:
            self.weight_var[i] = self.fresh(f"w_{self.pyname[i]}")
        return self.weight_var[i]

    def weights_call(self, i: int) -> str:
        op = self.ops[i]
        args = ["dims"]
        if self.sfx(op.attrs["axis"]):
            args.append(f"{op.attrs['axis']!r}")
        if op.attrs["steps"]:
            steps = [(s.kind, s.offset) for s in op.attrs["steps"]]
            args.append(f"steps={steps!r}")
        if op.attrs["reduce"] == "mean":
            args.append("mean=True")
        fn = "_segment_loss_weights" if self.segmented else "_loss_weights"
        return f"{fn}({', '.join(args)})"

    def fname(self, base: str) -> str:
        if self.segmented:
            return f"_{base}_full"
        return f"_{base}_{self.variant}" if self.variant else base

    def fed_targets(self) -> List[int]:
        """Target leaves that the network reads (teacher forcing), not only its losses."""
        return [i for i in self.leaf_ids("target")
                if any(not is_loss(self.ops[c].op)
                       for c, _, _ in self.s.consumers[i])]

    def forward(self) -> List[str]:
        em = Emitter()
        extra = ", rng=None, greedy=True, batch=None" if self.variant == "sample" else ""
        extra += ", segment=None" if self.segmented else ""
        em(f"def {self.fname('forward')}(params, inputs, targets=None, state0=None, T=None, "
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
                   f"arrays are ({self.tsym(inner)}, {self.tsym(outer)}, B, size),")
                em(f"their states ({self.tsym(outer)}, B, size), lengths[{inner!r}] is "
                   f"({self.tsym(outer)}, B).")
            em("outputs holds every named value, outputs['final'] the states after the last step,")
            em("and 'loss' when targets are given.  A state read d > 1 steps back (STATES[n]['steps'])")
            em("carries its last d steps, (d, B, size) in time order, in 'final' and in state0.")
            em('"""')
            if self.segmented:
                em("params, inputs, targets, state0, dims = _validate_segment(params, inputs, "
                   "targets, state0, T, lengths, segment)")
            else:
                em("params, inputs, targets, state0, dims = _validate(params, inputs, targets, "
                   "state0, T, lengths" + (", batch)" if self.variant == "sample" else ")"))
            em(self.dims_line())
            if self.fed_targets():
                em("if targets is None:")
                with em.indent():
                    em("raise ValueError('teacher forcing feeds the targets back: pass targets, "
                       "or run with mode=\"free\"')")
            body = Emitter()
            body.level = em.level
            self.forward_body(body)
            text = "\n".join(body.lines)
            dim_lines = [f"{self.dimvar(d)} = dims[{d!r}]" for d in sorted(self.dims_used)
                         if self.dimvar(d) in text]
            em.extend(dim_lines)
            self.mask_lines(em, "\n".join(body.lines), comments=True)
            for name_i in self.leaf_ids("param"):
                em(f"{self.pyname[name_i]} = params[{self.ops[name_i].name!r}]")
            for name_i in self.leaf_ids("input"):
                em(f"{self.pyname[name_i]} = inputs[{self.ops[name_i].name!r}]")
            for name_i in self.fed_targets():
                em(f"{self.pyname[name_i]} = targets[{self.ops[name_i].name!r}]")
            em.lines.extend(body.lines)
        return em.lines

    def leaf_ids(self, kind: str) -> List[int]:
        return [i for i in self.s.order if self.ops[i].op == kind]

    def dims_line(self) -> str:
        names = ["T" + self.sfx(a) for a in (self.m.axes or [self.main])] + ["B"] + [
            self.bsym(a) for a in self.m.nested] + ["dtype"]
        return f"{', '.join(names)} = {', '.join(f'dims[{n!r}]' for n in names)}"

    def mask_lines(self, em: Emitter, text: str, comments: bool = False) -> None:
        """Bind the per-axis masks and last steps that ``text`` uses."""
        for a in self.m.axes:
            sfx = self.sfx(a)
            if re.search(rf"\bmask{sfx}\b", text):
                note = f"  # ({self.tsym(a)}, {self.bsym(a)}, 1): True up to each sequence's " \
                    f"length" if comments else ""
                em(f"mask{sfx} = _step_mask(dims{', ' + repr(a) if sfx else ''}){note}")
            if re.search(rf"\blast{sfx}\b", text):
                note = "  # each sequence's last step" if comments else ""
                em(f"last{sfx}, {self.batch_sym(a)} = dims['last{sfx}'], "
                   f"np.arange({self.bsym(a)}){note}")

    def alloc(self, i: int) -> str:
        op = self.ops[i]
        E = self.extra(i)
        T = self.tsym(self.axis_of(i))
        T = T if E == 0 else f"{T} + {E}"
        return f"np.empty(({T}, {self.bsym(op.ty.axis)}, {self.dim(op.ty.rows)}), dtype)"

    def state_init(self, em: Emitter, i: int) -> None:
        """Fill the initial steps of a state's buffer (before step 1 and/or after step T)."""
        op = self.ops[i]
        before, after = self.s.padding.get(i, (0, 0))
        if op.name in self.m.states:
            st = self.m.states[op.name]
            init = f"state0[{op.name!r}]"
            if st.init == "value":  # computed by the network, unless state0 overrides it
                init = f"state0.get({op.name!r}, {self.pyname[self.g.values[st.init_name]]})"
            if before:
                em(f"{self.pyname[i]}[:{before}] = {init}")
            if after:
                T = self.tsym(self.axis_of(i))
                end = f"{T} + {before}" if before else T
                em(f"{self.pyname[i]}[{end}:] = {init}")

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

    def final_index(self, name: str) -> str:
        """Where the state after the last step of its recurrence is: step T, or step 1 for a
        recurrence that runs backward in time; with ``carry_steps`` d > 1, the d steps up to it
        (T-d+1..T, or 1..d), in time order."""
        i = self.g.values[name]
        start = self.pad(i)
        D = self.carry_steps(name)
        if self.s.direction.get(i, 1) < 0:
            return str(start) if D == 1 else f"{start or ''}:{start + D}"
        last = "last" + self.sfx(self.axis_of(i))  # each sequence's own last step
        batch = self.batch_sym(self.axis_of(i))
        if D > 1:
            return f"{last} + np.arange({start - D + 1}, {start + 1})[:, None], {batch}"
        return f"{last}, {batch}" if start == 0 else f"{last} + {start}, {batch}"

    def state_layout(self, text: str, name: str) -> str:
        """A state's final (or initial) steps in the users' layout: (d, B, n) for d > 1 carried
        steps, and one per step s for a state over a nested axis ((d,) T_s, B, n)."""
        i = self.g.values[name]
        D = self.carry_steps(name)
        axis = self.axis_of(i)
        if D > 1 and axis in self.m.nested:
            return f"{wrap(text, ATOM)}.reshape({D}, {self.tsym(self.m.nested[axis])}, B, -1)"
        return self.unflat(text, axis, steps=False)

    def stage_ops(self, k: int) -> List[int]:
        return self.s.stages[k].ops

    def loop_header(self, k: int, backward: bool = False) -> str:
        stage = self.s.stages[k]
        t, T = self.tvar(stage.axis), self.tsym(stage.axis)
        if (stage.direction > 0) != backward:
            return f"for {t} in range({T}):"
        return f"for {t} in reversed(range({T})):"

    def forward_body(self, em: Emitter) -> None:
        losses = []
        n_loops = sum(st.kind == "loop" for st in self.s.stages)
        for k, stage in enumerate(self.s.stages):
            last = [None]
            if stage.kind == "all":
                note = "hoisted: all steps at once" if k < len(self.s.stages) - 1 else ""
                for i in stage.ops:
                    if is_loss(self.ops[i].op) or self.loss_only(i):
                        losses.append(i)
                        continue
                    self.forward_op(em, i, "all", last, note)
                continue
            em("")
            way = "forward" if stage.direction > 0 else "backward"
            which = f" {k // 2 + 1} of {n_loops}" if n_loops > 1 else ""
            em(f"# time loop{which} ({way} in time): only the recurrent part runs step by step")
            groups = self.gate_groups(k)
            views = {}  # gates whose buffers are slices of one buffer: name -> its slice
            for g in groups:
                for run in g["runs"]:
                    if len(run) > 1:
                        acts = [self.ops[act] for _, act, _ in run]
                        comb = self.fresh("_".join(self.pyname[a] for _, a, _ in run))
                        rows = acts[0].ty.rows
                        for a in acts[1:]:
                            rows = rows + a.ty.rows
                        T = self.tsym(acts[0].ty.axis)
                        names = ", ".join(a.name or self.pyname[a.id] for a in acts)
                        em(f"{comb} = np.empty(({T}, {self.bsym(acts[0].ty.axis)}, "
                           f"{self.dim(rows)}), dtype)  # {names} side by side")
                        local = self.bounds([a.ty.rows for a in acts])  # inside comb
                        for ((lo, hi), (_, act, _)) in zip(local, run):
                            views[act] = f"{comb}[..., {lo}:{hi}]"
                        g["comb"][run[0][1]] = comb
            for i in stage.ops:
                if not self.inline[i] and i not in self.local:
                    em(f"{self.pyname[i]} = {views.get(i) or self.alloc(i)}")
                    self.state_init(em, i)
            em(self.loop_header(k))
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
        named = [(n, i) for n, i in self.g.values.items()]
        em("outputs = {")
        with em.indent():
            for n, i in named:
                em(f"{n!r}: {self.unflat(self.val(i, 0, 'all'), self.axis_of(i))},")
            if self.m.states:
                finals = ", ".join(f"{n!r}: " + self.state_layout(
                    f"{self.pyname[self.g.values[n]]}[{self.final_index(n)}]", n)
                    for n in self.m.states)
                em(f"'final': {{{finals}}},")
            attention = [(op.label.rsplit("_weights", 1)[0],
                          self.unflat(self.val(i, 0, "all"), op.attrs["key_axis"], steps=False)
                          if op.attrs.get("regroup") else self.val(i, 0, "all"))
                         for i, op in self.ops.items() if op.op == "attn_weights"]
            if attention:
                weights = ", ".join(f"{n!r}: {v}" for n, v in attention)
                em(f"'attention': {{{weights}}},  # weights over the attended steps")
        em("}")
        cache_names = self.cache_names()
        if self.g.losses:
            em("if targets is not None:")
            with em.indent():
                for name_i in self.leaf_ids("target"):
                    if name_i not in self.fed_targets():
                        em(f"{self.pyname[name_i]} = targets[{self.ops[name_i].name!r}]")
                last = [None]
                for i in losses:
                    self.forward_op(em, i, "all", last)
                total = " + ".join(self.pyname[i] for i in self.g.losses)
                em(f"outputs['loss'] = {total}")
        em("cache = {'params': params, 'dims': dims, 'state0_given': state0['(given)'],")
        em(f"         'has_loss': 'loss' in outputs" +
           (f", 'mode': {self.variant!r}}}" if self.variant else "}"))
        for name in cache_names:
            if name in self.target_names():
                em(f"if targets is not None:")
                with em.indent():
                    em(f"cache[{name!r}] = {name}")
            elif name in self.weight_var.values():
                em(f"if targets is not None:")
                with em.indent():
                    em(f"cache[{name!r}] = {name}")
            else:
                em(f"cache[{name!r}] = {name}")
        em("return outputs, cache")

    def target_names(self) -> set:
        return {self.pyname[i] for i in self.leaf_ids("target")}

    def loss_only(self, i: int) -> bool:
        """An op computed only for the loss (a picked step of the prediction)."""
        cons = self.s.consumers[i]
        return (self.ops[i].op == "pick" and not self.ops[i].name and cons and
                all(is_loss(self.ops[c].op) for c, _, _ in cons))

    def forward_op(self, em: Emitter, i: int, mode: str, last: list, note: str = "") -> None:
        op = self.ops[i]
        if op.op in LEAVES or self.inline[i]:
            return
        self.comment(em, op.stmt, last, note)
        name = self.pyname[i]
        if is_loss(op.op):
            w = self.weights(i)
            if w:
                em(f"{w} = {self.weights_call(i)}")
            args = [Code(self.val(a, d, "all")) for a, d in op.args]
            r = rule(op.op)
            self.helpers.update(r.helpers)
            em(f"{name} = {show(r.forward(*args, w=w))}")
            return
        value = self.expr_node(i, mode)
        text = show(value)
        if mode == "step":
            cur = self.val(i, 0, "step")
            if op.op in OUT_FUNCS and cur.endswith("]"):  # into the buffer: no temporary
                em(_into(value, cur))
            elif op.op in OUT_BINARY and cur.endswith("]") and op.ty.shape == "vec" and all(
                    self.ops[a].ty.shape == "vec" or self.ops[a].op == "const" for a, _ in op.args):
                args = ", ".join(self.val(a, d, "step") for a, d in op.args)
                em(f"np.{OUT_BINARY[op.op]}({args}, out={cur})")
            else:
                em(f"{cur} = {text}")
            prev = self.carried(i)
            if prev:
                mask, t = "mask" + self.sfx(self.axis_of(i)), self.tvar(self.axis_of(i))
                em(f"if {mask} is not None:  # past its end, a sequence keeps its state")
                with em.indent():
                    em(f"{cur} = np.where({mask}[{t}], {cur}, {prev})")
        elif op.tk == STEP and self.extra(i):
            em(f"{name} = {self.alloc(i)}")
            self.state_init(em, i)
            em(f"{self.window(name, i, 0)} = {text}")
        elif op.op == "add" and self.fresh_product(op):
            # the product is a new array: add the other term into it (no second (T, B, n) array)
            k = next(k for k, (a, _) in enumerate(op.args) if self.fresh_product(op, a))
            em(f"{name} = {self.val(op.args[k][0], op.args[k][1], mode)}")
            other = self.val(*op.args[1 - k], mode)
            em(f"{name} += {other}")
        else:
            em(f"{name} = {text}")

    def gate_groups(self, k: int) -> List[dict]:
        """The layout's gate groups of loop stage k (:class:`rnnspec.layout.GateGroup`), with
        the texts of their slices."""
        out = []
        for g in self.layout.groups.get(k, []):
            runs = [[(self.attrs(self.ops[c])["bounds"][self.ops[c].attrs["index"]], act, c)
                     for act, c in run] for run in g.runs]
            xs = fused_parts(self.s, g.X)
            out.append({"S": g.S, "X": g.X, "runs": runs, "acts": g.acts, "comb": {},
                        "x_all": g.x_all,
                        "x_lo": self.attrs(self.ops[xs[g.x_first]])["bounds"][g.x_first][0],
                        "x_hi": self.attrs(self.ops[xs[g.x_last]])["bounds"][g.x_last][1]})
        return out

    def gate_group_step(self, em: Emitter, g: dict, last: list) -> None:
        acts = [act for run in g["runs"] for _, act, _ in run]
        stmts = Fused(tuple(dict.fromkeys(self.ops[a].stmt for a in acts)))
        em(comment(f"{', '.join(self.ops[a].name or self.ops[a].label for a in acts)}: one sum "
                   f"for all, one call per activation  [{_where(stmts)}]"))
        last[0] = stmts
        t = self.tvar(self.axis_of(g["S"]))
        x = f"{self.pyname[g['X']]}[{t}]" if g["x_all"] else \
            f"{self.pyname[g['X']]}[{t}, ..., {g['x_lo']}:{g['x_hi']}]"
        pre = self.fresh(f"{self.pyname[g['S']]}_sum")
        em(f"{pre} = {x} + {self.val(g['S'], 0, 'step')}")
        for run in g["runs"]:
            (lo, _), act, _ = run[0]
            hi = run[-1][0][1]
            dest = f"{g['comb'][act]}[{t}]" if len(run) > 1 else self.val(act, 0, "step")
            r = rule(self.ops[act].op)
            self.helpers.update(r.helpers)
            em(_into(r.forward(Code(f"{pre}[..., {lo}:{hi}]")), dest))

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

    def carried(self, i: int) -> Optional[str]:
        """For a state in a loop: the text of its previous step in the loop's direction (what it
        keeps past the end of a shorter sequence); None for other ops."""
        op = self.ops[i]
        k = self.s.stage_of[i]
        if op.name not in self.m.states or self.s.stages[k].kind != "loop":
            return None
        d = self.s.stages[k].direction
        before, after = self.s.padding.get(i, (0, 0))
        if (before if d > 0 else after) < 1:
            return None
        return self.val(i, d, "step")

    # ----- backward --------------------------------------------------------------------------
    def backward(self) -> List[str]:
        self.grad: Dict[int, Optional[Grad]] = {}
        self.bufname: Dict[int, str] = {}
        self.empty_buf: Dict[str, tuple] = {}  # per-step gradient buffers: (emitter, line)
        self.views: Dict[str, tuple] = {}  # buffer -> (stacked buffer, position, parts)
        self.slopes: Dict[int, str] = {}  # loop activation -> its derivative at every step
        self.pre: Optional[Emitter] = None  # the lines before the BPTT loop being emitted
        body = Emitter()
        body.level = 1
        if self.g.losses:
            body("d_loss = up.get('loss', 1.0) if cache['has_loss'] else None")
        for k in reversed(range(len(self.s.stages))):
            self.last = [None]
            if self.s.stages[k].kind == "loop":
                self.backward_loop(body, k)
            else:
                for i in reversed(self.stage_ops(k)):
                    self.pull(body, i)
        self.results(body)
        text = "\n".join(body.lines)
        used = set(re.findall(rf"{PLACEHOLDER.pattern}|\b[A-Za-z_][A-Za-z_0-9]*\b", text))
        unkept = used.intersection(self.cache_names(kept_only=False)) - set(self.cache_names())
        if unkept:
            names = sorted(self.bases[int(n.strip(MARK).split("_")[1])] for n in unkept)
            raise AssertionError(f"bug in rnnspec: the backward pass reads {names}, which the "
                                 f"layout plan does not keep")
        em = Emitter()
        em(f"def {self.fname('backward')}(params, cache, d_outputs=None):")
        with em.indent():
            em('"""Vector-Jacobian product of the whole unrolled network (BPTT).')
            em("")
            em("d_outputs may hold an upstream gradient for any named value (same shape as in")
            em("outputs), for 'final' states, and for 'loss' (default 1.0 when a loss was computed).")
            em("Returns {'params': ..., 'inputs': ..., 'state0': ...}, each keyed like the spec.")
            em('"""')
            em("up = _upstream(d_outputs, cache)")
            em("dims = cache['dims']")
            em(self.dims_line())
            self.mask_lines(em, text)
            for d in sorted(self.dims_used):
                if self.dimvar(d) in used:
                    em(f"{self.dimvar(d)} = dims[{d!r}]")
            for i in self.leaf_ids("param"):
                if self.pyname[i] in used:
                    em(f"{self.pyname[i]} = params[{self.ops[i].name!r}]")
            for name in self.cache_names():
                if name in used:
                    em(f"{name} = cache[{name!r}]" if name not in self.target_names() and
                       name not in self.weight_var.values() else f"{name} = cache.get({name!r})")
        em.lines.extend(body.lines)
        return em.lines

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
                text = None if g is None else (g.step if mode == "step" else g.all)
                if text is not None and g.cond:
                    text = f"({text} if {g.cond} else {self.zeros(c, mode)})"
                pieces.append(text)
            stacked = self.stacked_grad(i, parts, pieces, mode)
            if stacked:
                terms.append(Term(stacked))
            elif any(p is not None for p in pieces):
                pieces = [p if p is not None else self.zeros(c, mode)
                          for p, (c, _, _) in zip(pieces, parts)]
                terms.append(Term(f"np.concatenate([{', '.join(pieces)}], axis=-1)"))
            consumers = [c for c in consumers if c not in parts]
        for c, pos, delay in consumers:
            g = self.grad.get(c)
            if g is None:
                continue
            gtext = g.step if mode == "step" else g.all
            if gtext is None:
                raise AssertionError(f"internal: no all-steps gradient for op {c}")
            cond = g.cond
            cop = self.ops[c]
            if cop.op == "pick":
                terms.append(Term(gtext, cond, index=self.pick_index(c)))
                continue
            r = RULES.get(cop.op)
            if r is None:
                raise missing_rule(cop.op)
            self.helpers.update(r.helpers)
            if mode == "step" and r.slope and self.pre is not None and c not in self.local:
                t = self.tvar(self.axis_of(c))
                terms.append(Term(f"{wrap(gtext, PRODUCT)} * {self.slope(c)}[{t}]", cond))
                continue
            args = [Code(self.val(a, d, mode)) for a, d in cop.args]
            out = Code(self.val(c, 0, mode)) if r.needs_out else None
            vjp = r.backward(pos, Code(gtext), out, args, **self.attrs(cop, mode))
            if vjp is ZERO:
                continue
            text = show(vjp)
            if pos not in r.reduced:
                text = self.reduce(text, cop.ty, self.ops[i].ty, mode)
            terms.append(Term(text, cond, delay=delay if isinstance(delay, int) else 0))
        return terms

    def slope(self, c: int) -> str:
        """The derivative of loop activation ``c`` at every step, computed before the BPTT loop
        (it depends only on the forward pass's output, not on the recursion)."""
        if c not in self.slopes:
            name = self.fresh(f"{self.pyname[c]}_slope")
            text = show(rule(self.ops[c].op).slope(Code(self.val(c, 0, "all"))))
            self.pre(f"{name} = {text}  # {self.ops[c].op}' at every step")
            self.slopes[c] = name
        return self.slopes[c]

    def stacked_grad(self, i: int, parts, pieces, mode: str) -> Optional[str]:
        """The gradient of fused product ``i`` when its parts' gradients are the loop's
        per-step buffers: they become views of one (T, B, sum of sizes) buffer, written in
        place by the loop, so no step (and no pass after the loop) concatenates them."""
        if any(p is None for p in pieces):
            return None
        if mode == "all":  # after the loop: the views of one stacked buffer, in order
            views = [self.views.get(p) for p in pieces]
            if views[0] and all(v and v[0] == views[0][0] and v[1] == k
                                for k, v in enumerate(views)) and views[0][2] == len(pieces):
                return views[0][0]
            return None
        t = self.tvar(self.axis_of(i))
        names = [p[:-len(f"[{t}]")] for p in pieces if p.endswith(f"[{t}]")]
        if len(names) != len(pieces) or len(set(names)) != len(names) or \
                not all(n in self.empty_buf for n in names):
            return None
        gn = self.gname(i)
        op = self.ops[i]
        T = self.tsym(self.axis_of(i))
        first = min(self.empty_buf[n][1] for n in names)
        for k, (n, (c, _, _)) in enumerate(zip(names, parts)):
            em, at = self.empty_buf.pop(n)
            lo, hi = self.attrs(self.ops[c])["bounds"][self.ops[c].attrs["index"]]
            indent = em.lines[at][:len(em.lines[at]) - len(em.lines[at].lstrip())]
            line = f"{indent}{n} = {gn}[..., {lo}:{hi}]"
            if at == first:
                line = (f"{indent}{gn} = np.empty(({T}, {self.bsym(self.axis_of(i))}, "
                        f"{self.dim(op.ty.rows)}), dtype)  # the gradients below, side by side"
                        f"\n{line}")
            em.lines[at] = line
            self.views[n] = (gn, k, len(names))
        return f"{gn}[{t}]"

    def reduce(self, text: str, src, dst, mode: str) -> str:
        src_tk = src.tk if mode == "all" else (STATIC if src.tk == STEP else src.tk)
        dst_tk = dst.tk if mode == "all" else (STATIC if dst.tk == STEP else dst.tk)
        if dst.shape == "scalar" and src.shape != "scalar":
            return f"{wrap(text, ATOM)}.sum()"
        if dst.shape == "scalar" and src_tk > PARAM:
            return f"{wrap(text, ATOM)}.sum()"
        k = src_tk - dst_tk
        if k <= 0:
            return text
        axes = "0" if k == 1 else "(0, 1)"
        return f"{wrap(text, ATOM)}.sum(axis={axes})"

    def upstream_terms(self, i: int) -> List[Term]:
        op = self.ops[i]
        terms = []
        if op.name and op.op not in ("param", "input", "target") and op.name in self.g.values:
            terms.append(Term(f"up[{op.name!r}]", f"{op.name!r} in up"))
        if op.name in self.m.states and op.op not in ("param", "input"):
            terms.append(Term(f"up['final'][{op.name!r}]", f"{op.name!r} in up['final']",
                              index=self.final_index(op.name)))
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
                total = f"{wrap(total, ATOM)}.sum(axis=0)"
            if total:
                terms.append(Term(total, f"not cache['state0_given'][{name!r}]"))
        return terms

    def initial_grad(self, s: int) -> Optional[str]:
        """The gradient of state s's initial value: its buffer's gradient over the initial
        steps (before step 1 and/or after step T), summed; None when it has none."""
        before, after = self.s.padding.get(s, (0, 0))
        if s not in self.bufname or not (before or after):
            return None
        gn, T = self.bufname[s], self.tsym(self.axis_of(s))
        return " + ".join(([f"{gn}[:{before}].sum(axis=0)"] if before else []) +
                          ([f"{gn}[{T} + {before}:].sum(axis=0)"] if after else []))

    def gname(self, i: int) -> str:
        if i not in self.bufname:
            self.bufname[i] = self.fresh("d_" + self.pyname[i])
        return self.bufname[i]

    def pull(self, em: Emitter, i: int) -> None:
        """Emit the gradient of all-steps op ``i`` from all its consumers."""
        op = self.ops[i]
        if not self.has_grad(i):
            return
        cons = self.s.consumers[i]
        if is_loss(op.op):
            self.grad[i] = Grad(None, "d_loss", LOSS_GIVEN)
            return
        terms = self.terms_from(i, cons, "all") + self.upstream_terms(i) + self.init_terms(i)
        last = self.last
        if not terms:
            self.grad[i] = None
            return
        scatter = any(t.index is not None or t.delay for t in terms) or self.extra(i)
        if op.op not in LEAVES and (scatter or len(terms) > 1 or not _atomic(terms[0].text)):
            self.comment(em, op.stmt, last)
        if scatter:
            gn = self.gname(i)
            em(f"{gn} = np.zeros_like({self.pyname[i]})")
            for t in terms:
                self.emit_cond(em, t.cond, f"{self.target(gn, t, i)} += {t.text}")
            self.grad[i] = Grad(None, self.window(gn, i, 0))
            return
        always = [t for t in terms if t.cond is None]
        maybe = [t for t in terms if t.cond is not None]
        if len(always) == 1 and not maybe and _plain(always[0].text):
            self.grad[i] = Grad(None, always[0].text)
            return
        if not always and len(maybe) == 1 and _plain(maybe[0].text):
            self.grad[i] = Grad(None, maybe[0].text, maybe[0].cond)
            return
        gn = self.gname(i)
        if always:
            em(f"{gn} = {_total(t.text for t in always)}")
            for t in maybe:
                self.emit_cond(em, t.cond, f"{gn} = {gn} + {wrap(t.text, PRODUCT)}")
            self.grad[i] = Grad(None, gn)
            return
        # only optional contributions (the loss's, an upstream gradient's): the gradient is an
        # array in every case, zero when none is there, so nothing after this line tests it.
        # The loss's comes first: it is there whenever targets were given.
        maybe.sort(key=lambda t: t.cond != LOSS_GIVEN)
        em(f"{gn} = {maybe[0].text} if {maybe[0].cond} else {self.zeros(i)}")
        for t in maybe[1:]:
            self.emit_cond(em, t.cond, f"{gn} = {gn} + {wrap(t.text, PRODUCT)}")
        self.grad[i] = Grad(None, gn)

    def target(self, gn: str, term: Term, i: int) -> str:
        """The part of op i's gradient buffer ``gn`` that ``term`` adds to."""
        if term.index is not None:
            return f"{gn}[{term.index}]"
        return self.window(gn, i, term.delay)

    @staticmethod
    def emit_cond(em: Emitter, cond: Optional[str], line: str) -> None:
        if cond:
            em(f"if {cond}:")
            with em.indent():
                em(line)
        else:
            em(line)

    def backward_loop(self, em: Emitter, k: int) -> None:
        """BPTT through loop stage k: the loop's steps in the opposite order."""
        loop = self.stage_ops(k)
        stage_of = self.s.stage_of
        loopset = set(loop)
        buffered = {}
        upstream_only = {}
        for i in loop:
            cons = self.s.consumers[i]
            outside = [c for c in cons if stage_of[c[0]] != k]
            pushes = [c for c in cons if stage_of[c[0]] == k and isinstance(c[2], int) and c[2]]
            named = bool(self.upstream_terms(i))
            # a named value whose only outside gradient is an optional upstream one (an LSTM's
            # gates) gets it added per step, without a zero-filled buffer over all steps
            upstream_only[i] = named and not (outside or pushes) and \
                self.ops[i].name not in self.m.states
            buffered[i] = bool(outside or pushes or named) and not upstream_only[i]
        em("")
        em("# gradients flowing into the loop from after it, and buffers for the loop")
        pre_lines = Emitter()
        pre_lines.level = em.level
        self.pre = pre_lines
        loop_lines = Emitter()
        loop_lines.level = em.level + 1
        for i in loop:
            if buffered[i]:
                gn = self.gname(i)
                cons = [c for c in self.s.consumers[i] if stage_of[c[0]] != k]
                terms = self.terms_from(i, cons, "all") + self.upstream_terms(i)
                pre_lines(f"{gn} = np.zeros_like({self.pyname[i]})")
                for t in terms:
                    self.emit_cond(pre_lines, t.cond, f"{self.target(gn, t, i)} += {t.text}")
        last = [None]
        for i in reversed(loop):
            op = self.ops[i]
            same = [c for c in self.s.consumers[i] if stage_of[c[0]] == k and c[2] == 0]
            terms = self.terms_from(i, same, "step")
            needs_all = any(stage_of[a] != k and self.has_grad(a) for a, _ in op.args)
            if terms or buffered[i]:
                self.comment(loop_lines, op.stmt, last)
            total = _total(t.text for t in terms)
            if buffered[i]:
                gn = self.gname(i)
                cur = self.at_step(gn, self.pad(i), i)
                if terms:
                    loop_lines(f"{cur} += {total}")
                if self.carried(i):
                    d = self.s.stages[k].direction
                    prev = self.at_step(gn, self.pad(i) - d, i)
                    mask = f"mask{self.sfx(self.axis_of(i))}[{self.tvar(self.axis_of(i))}]"
                    mvar = mask.split("[")[0]
                    loop_lines(f"if {mvar} is not None:  # past its end, the state was carried over")
                    loop_lines(f"    {prev} += ~{mask} * {cur}")
                    loop_lines(f"    {cur} *= {mask}")
                self.grad[i] = Grad(cur, self.window(gn, i, 0))
            elif not terms:
                self.grad[i] = None
                continue
            elif len(terms) == 1 and _atomic(total) and self._alias_all(i, same) and \
                    not upstream_only[i]:
                self.grad[i] = Grad(total, self._alias_all(i, same))
            else:
                gn = self.gname(i)
                t = self.tvar(self.axis_of(i))
                cur = f"{gn}[{t}]" if needs_all else gn
                if needs_all and total != cur:
                    T = self.tsym(self.axis_of(i))
                    self.empty_buf[gn] = (pre_lines, len(pre_lines.lines))
                    pre_lines(f"{gn} = np.empty(({T}, {self.bsym(self.axis_of(i))}, "
                              f"{self.dim(op.ty.rows)}), dtype)")
                if total != cur:  # (a stacked buffer is already written by its parts)
                    loop_lines(f"{cur} = {total}")
                if upstream_only[i]:
                    upv = self.fresh(f"up_{self.pyname[i]}")
                    pre_lines(f"{upv} = up.get({op.name!r})  # upstream gradient of {op.name}")
                    loop_lines(f"if {upv} is not None:")
                    loop_lines(f"    {cur} = {cur} + {upv}[{t}]")
                self.grad[i] = Grad(cur, gn if needs_all else None)
            # push gradients through delayed references into the steps they read
            g = self.grad[i]
            r = rule(op.op)
            args = [Code(self.val(a, d, "step")) for a, d in op.args]
            out = Code(self.val(i, 0, "step")) if r.needs_out else None
            for pos, (a, d) in enumerate(op.args):
                if a in loopset and isinstance(d, int) and d:
                    vjp = r.backward(pos, Code(g.step), out, args, **self.attrs(op, "step"))
                    if vjp is ZERO:
                        continue
                    loop_lines(f"{self.at_step(self.gname(a), self.pad(a) - d, a)} += "
                               f"{show(vjp)}")
        self.pre = None
        em.lines.extend(pre_lines.lines)
        em(self.loop_header(k, backward=True))
        if not loop_lines.lines:
            loop_lines("pass")
        em.lines.extend(loop_lines.lines)
        em("")

    def _alias_all(self, i: int, same) -> Optional[str]:
        """All-steps text of op i's gradient when it is exactly its single consumer's."""
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

    def zeros(self, i: int, mode: str = "all") -> str:
        """A zero gradient of op ``i`` for all steps (or one, ``mode='step'``), shaped from the
        dims: no value of the forward pass is read for it, so none has to be kept."""
        ty = self.ops[i].ty
        size = [] if ty.shape == "scalar" else [self.dim(ty.rows)] if ty.shape == "vec" else \
            [self.dim(ty.rows), self.dim(ty.cols)]
        lead = [self.tsym(ty.axis), self.bsym(ty.axis)] if ty.tk == STEP and mode == "all" else \
            [self.bsym(ty.axis)] if ty.tk != PARAM else []
        shape = lead + size
        return f"np.zeros(({', '.join(shape)}{',' if len(shape) == 1 else ''}), dtype)"

    def results(self, em: Emitter) -> None:
        em("")
        em("# gradients of the initial states (and of what they were initialized from)")
        em("d_state0 = {}")
        for name, st in self.m.states.items():
            i = self.g.values[name]
            size = self.dim(st.size)
            D = self.carry_steps(name)
            total = self.initial_grad(i) if self.grad.get(i) is not None else None
            if total and D > 1:  # one gradient per initial step, in time order (like state0)
                before, _ = self.s.padding[i]
                gn = self.bufname[i]
                total = f"{gn}[:{before}]" if before else f"{gn}[{self.tsym(self.axis_of(i))}:]"
            if total:
                em(f"d_state0[{name!r}] = {total}")
            else:
                lead = f"{D}, " if D > 1 else ""
                em(f"d_state0[{name!r}] = np.zeros(({lead}{self.bsym(self.axis_of(i))}, {size}), "
                   f"dtype)")
        leaf_grads = {}
        for i in self.leaf_ids("param") + self.leaf_ids("input"):
            g = self.grad.get(i)
            name = self.pyname[i]
            if g is not None and not g.cond:
                leaf_grads[i] = g.all
                continue
            zeros = f"np.zeros_like({name})" if self.ops[i].op == "param" else self.zeros(i)
            leaf_grads[i] = zeros if g is None else f"{g.all} if {g.cond} else {zeros}"
        for name, st in self.m.states.items():
            if st.init in ("param", "input"):
                src = self.g.leaves[st.init_name]
                gn = self.gname(src) if src not in self.bufname else self.bufname[src]
                em(f"{gn} = {leaf_grads[src]}")
                steps = self.carry_steps(name) > 1  # summed over the initial steps it fills
                red = (".sum(axis=(0, 1))" if steps else ".sum(axis=0)") if st.init == "param" \
                    else (".sum(axis=0)" if steps else "")
                em(f"if not cache['state0_given'][{name!r}]:")
                with em.indent():
                    em(f"{gn} = {gn} + d_state0[{name!r}]{red}")
                leaf_grads[src] = gn
        for name in self.m.states:  # in the users' layout: one initial state per step s
            i = self.g.values[name]
            if self.axis_of(i) in self.m.nested:
                em(f"d_state0[{name!r}] = " + self.state_layout(f"d_state0[{name!r}]", name))
        for i in self.leaf_ids("input"):
            leaf_grads[i] = self.unflat(leaf_grads[i], self.axis_of(i))
        self.returned(em, leaf_grads)

    def returned(self, em: Emitter, leaf_grads: Dict[int, str]) -> None:
        """The return statement: one line per gradient, each a name (a slice of a stacked
        product's gradient gets its own line first)."""
        unpacked = False
        for i in self.leaf_ids("param") + self.leaf_ids("input"):
            if NAME.fullmatch(leaf_grads[i]) or i in self.bufname:
                continue
            if not unpacked:
                em("# each parameter's and input's gradient")
                unpacked = True
            em(f"{self.gname(i)} = {leaf_grads[i]}")
            leaf_grads[i] = self.gname(i)
        em("return {")
        with em.indent():
            for key, kind in (("params", "param"), ("inputs", "input")):
                ids = self.leaf_ids(kind)
                if not ids:
                    em(f"{key!r}: {{}},")
                    continue
                em(f"{key!r}: {{")
                with em.indent():
                    for i in ids:
                        em(f"{self.ops[i].name!r}: {leaf_grads[i]},")
                em("},")
            em("'state0': d_state0,")
        em("}")

    # ----- module ----------------------------------------------------------------------------
    def module(self, variants: Optional[List["_Codegen"]] = None,
               checkpoint: Optional[int] = None) -> str:
        bwd = self.backward()  # first: forward caches only what backward reads
        fwd = self.forward()
        for v in variants or []:
            if v.variant != "sample":
                bwd += ["", ""] + v.backward()
            fwd += ["", ""] + v.forward()
            self.helpers |= v.helpers
        m = self.m
        em = Emitter()
        em(comment(f"generated from {self.filename} by rnnspec {__version__} -- do not edit; "
                   f"edit the spec and recompile"))
        doc = self.docstring(checkpoint)
        em('"""' + "\n".join(escape(line) for line in doc.split("\n")))
        em('"""')  # the docstring is doc + "\n", checked at the end
        em("import numpy as np")
        em("")
        em(f"DIMS = {dict(m.dims)!r}")
        axes = {a: self.tsym(a) for a in (m.axes or [self.main])}
        em(f"AXES = {axes!r}  # time axis -> its number of steps in dims (the first is the main one)")
        em(f"NESTED = {dict(m.nested)!r}  # [w in s]: steps w inside every step s (w -> s)")
        em("PARAMS = {")
        with em.indent():
            for name, p in m.params.items():
                em(f"{name!r}: {tuple(s.text() for s in p.shape)!r},")
        em("}")
        em("INITS = {")
        with em.indent():
            for name, p in m.params.items():
                em(f"{name!r}: ({p.init!r}, {p.init_arg!r}),")
        em("}")
        em("INPUTS = {")
        with em.indent():
            for name, inp in m.inputs.items():
                em(f"{name!r}: {{'size': {inp.size.text()!r}, 'kind': "
                   f"{'sequence' if inp.seq else 'static'!r}{self.axis_meta(inp)}}},")
        em("}")
        em("TARGETS = {")
        with em.indent():
            for name, tg in m.targets.items():
                em(f"{name!r}: {{'size': {tg.size.text()!r}, 'kind': "
                   f"{'sequence' if tg.seq else 'static'!r}, 'type': {tg.kind!r}"
                   f"{self.axis_meta(tg)}}},")
        em("}")
        em("STATES = {")
        with em.indent():
            for name, st in m.states.items():
                axis = m.values[name].axis if name in m.values else None
                nested = (f", 'axis': {axis!r}, 'within': {m.nested[axis]!r}"
                          if axis in m.nested else "")
                em(f"{name!r}: {{'size': {st.size.text()!r}, 'init': {st.init!r}, 'from': "
                   f"{st.init_name!r}, 'steps': {self.carry_steps(name)}{nested}}},")
        em("}")
        em("OUTPUTS = {")
        with em.indent():
            for name, v in m.values.items():
                kind = "sequence" if v.seq else "static" if self.ops[
                    self.g.values[name]].ty.tk != PARAM else "shared"  # shared: no batch axis
                em(f"{name!r}: {{'size': {v.size.text()!r}, 'kind': {kind!r}"
                   f"{self.axis_meta(v)}}},")
        em("}")
        em(f"MIN_T = {self.min_T()}")
        if checkpoint:
            em(f"CHECKPOINT = {checkpoint}  # steps per segment (forward stores the states every "
               f"CHECKPOINT steps)")
        if variants:
            em(f"FEEDBACK = {self.feedback_table()!r}  # what generate() chooses from, one step "
               f"back")
        em("")
        em("")
        em.lines.extend(fwd)
        em("")
        em("")
        em.lines.extend(bwd)
        em("")
        em("")
        em(RUNTIME_BANNER)  # after the network's own code: a reader meets forward, backward first
        em("")
        em("")
        runtime = ([FEEDBACK_API] if variants else []) + ([CHECKPOINT_API] if checkpoint else []) \
            + [LOSS_AND_GRAD] + [HELPERS[h] for h in sorted(self.helpers)] + [RUNTIME]
        for part in runtime:
            em.lines.extend(part.strip("\n").split("\n"))
            em("")
            em("")
        text = "\n".join(em.lines)
        text = re.sub(r"\n{3,}(?=\S)", "\n\n\n", text)
        return text.rstrip() + "\n"

    def docstring(self, checkpoint: Optional[int]) -> str:
        """The module docstring's text (unescaped): the file name, the spec and the files it
        imports, listed as they are."""
        lines = [f"Forward pass and exact BPTT gradients for {self.filename}.", "", "The spec:", ""]
        listed = [("", self.m.source)] + [(f"Imported {name}:", text)
                                          for name, text in self.m.spec.imports]
        for title, text in listed:
            if title:
                lines += ["", title, ""]
            for line in text.rstrip().split("\n"):
                line = line.rstrip("\r")
                lines.append(f"    {line}" if line.strip() else "")
        if checkpoint:
            lines += ["", f"Checkpointed (checkpoint={checkpoint}): forward keeps only the states "
                      f"at the start of every",
                      f"segment of {checkpoint} steps, and backward recomputes one segment at a "
                      f"time from them, so the",
                      "cache holds O(T/k + k) steps of activations instead of O(T); the gradients "
                      "are the", "full cache's."]
        return "\n".join(lines)

    def feedback_table(self) -> dict:
        """FEEDBACK of a spec with feedback(teacher, free): the value that feedback(...) defines
        and the value its free side reads one step back (None when it is not such a read), what
        generate() (rnnspec/runtime/feedback.py) feeds back."""
        from .ast import Ref
        call = self.m.feedbacks[0]
        owner = next(v.name for v in self.m.values.values() if any(n is call for n in walk(v.eq.expr)))
        free = call.args[1]
        source = free.name if isinstance(free, Ref) and free.index is not None and \
            free.index.kind == "rel" and free.index.offset == -1 else None
        return {"value": owner, "from": source}

    def axis_meta(self, info) -> str:
        within = self.m.nested.get(info.axis)
        return (f", 'axis': {info.axis!r}" + (f", 'within': {within!r}" if within else "")
                if info.seq else "")

    def min_T(self) -> dict:
        """The fewest steps each axis needs (for h[3], h[end-2], loss at t = 5)."""
        need = {self.tsym(a): 1 for a in (self.m.axes or [self.main])}
        for op in self.ops.values():
            if op.op == "pick":
                ix, key = op.attrs["index"], self.tsym(op.attrs["axis"])
                need[key] = max(need[key], ix.offset if ix.kind == "abs" else 1 - ix.offset)
            if is_loss(op.op) and op.attrs["steps"]:
                key = self.tsym(op.attrs["axis"])
                for s in op.attrs["steps"]:
                    need[key] = max(need[key], s.offset if s.kind == "abs" else 1)
        return need


# The runtime of generated modules, real code in rnnspec/runtime/ (each copied verbatim): the
# validation runtime (_validate, _upstream), loss_and_grad and init_params, the segment driver of
# checkpointed modules and the entry points of modules with feedback.
RUNTIME = helper_texts("validate.py")["runtime"]
LOSS_AND_GRAD = helper_texts("api.py")["api"]
CHECKPOINT_API = helper_texts("checkpoint.py")["checkpoint"]
FEEDBACK_API = helper_texts("feedback.py")["feedback"]
RUNTIME_BANNER = "# ---- runtime: rnnspec's helpers, the same in every module that uses them ----"
