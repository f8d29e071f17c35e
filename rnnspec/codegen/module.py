"""The module: header, docstring, tables, the network's functions, then the runtime.

In: the :class:`.values.Values` of a schedule (and of its feedback variants).  Out: the text of
the whole generated module: the tables (DIMS, PARAMS, INPUTS, ...), ``forward`` and ``backward``
(:mod:`.forward`, :mod:`.adjoint`), and under one banner the runtime copied from
:mod:`rnnspec.runtime` (the op helpers the module uses, validation, ``loss_and_grad``, ...).
"""
from __future__ import annotations

import re
from typing import List, Optional

from .. import __version__
from ..ast import walk
from ..check import PARAM
from ..ops import HELPERS, is_loss
from ..expr import Lit, dict_of
from ..runtime import helper_texts
from ..stmt import BLANK, Comment, Docstring, FromImport, Import, Verbatim, assign
from .text import Emitter
from .adjoint import Adjoint
from .forward import Forward
from .backends import lift_refusal
from .lift import Unliftable, lift_module
from .rtrl import Rtrl
from .values import Pass, Values
from .xp import HEADER, NUMPY_NOTE, runtime_parts, to_array_api

# The runtime of generated modules, real code in rnnspec/runtime/ (each copied verbatim): the
# validation runtime (_validate, _upstream), loss_and_grad and init_params, the segment driver of
# checkpointed modules and the entry points of modules with feedback.
RUNTIME = helper_texts("validate.py")["runtime"]


LOSS_AND_GRAD = helper_texts("api.py")["api"]


CHECKPOINT_API = helper_texts("checkpoint.py")["checkpoint"]


FEEDBACK_API = helper_texts("feedback.py")["feedback"]


TRUNCATION = helper_texts("truncation.py")["truncation"]


SWEEPS = helper_texts("sweeps.py")["sweeps"]


TANGENTS = helper_texts("tangents.py")["tangents"]  # the forward-mode helpers of rtrl


NUMBA = helper_texts("numba.py")["numba"]  # the numba backend's helpers (lifted loops call them)


NUMBA_BATCH = 16  # (measured: benchmarks/numba_small.py; at B = 32 NumPy's loop is as fast)


RUNTIME_BANNER = "# ---- runtime: rnnspec's helpers, the same in every module that uses them ----"


def table(name: str, value, note: str = "", lines: bool = False):
    """``NAME = value`` (a Python value, printed with repr), or with ``lines`` a dict with one
    entry a line."""
    if lines:
        return assign(name, dict_of([(k, Lit(v)) for k, v in value.items()], lines=True), note=note)
    return assign(name, Lit(value), note=note)


class ModuleWriter(Pass):
    """The text of one generated module."""

    numba = False  # (module(backend='numba'): the NUMBA_BATCH table, the lifted loops)

    # ----- module ----------------------------------------------------------------------------
    def module(self, variants: Optional[List["Values"]] = None,
               checkpoint: Optional[int] = None, rtrl: Optional["Values"] = None,
               backend: str = "numpy") -> str:
        """The module's text; ``rtrl``: the Values of the unfused schedule that the generated
        ``rtrl`` (:mod:`.rtrl`) follows; ``backend`` 'array-api': forward and backward
        rewritten by :func:`.xp.to_array_api`, with the array-API runtime (no variants,
        checkpoint or rtrl: refused before, :func:`.xp.xp_refusal`); 'numba': the time loops
        lifted into numba-compiled functions (:mod:`.lift`), placed after backward."""
        bwd = [Adjoint(self.v).backward()]  # (first: the names it makes come first)
        fwd = [Forward(self.v).forward()]
        if rtrl is not None:
            bwd += [BLANK, BLANK, Rtrl(rtrl).function()]
            self.v.helpers |= rtrl.helpers
        for v in variants or []:
            if v.variant != "sample":
                bwd += [BLANK, BLANK, Adjoint(v).backward()]
            fwd += [BLANK, BLANK, Forward(v).forward()]
            self.v.helpers |= v.helpers
        self.numba = backend == "numba"
        if self.numba:
            try:
                fwd, bwd = lift_module(fwd, bwd)
            except Unliftable as err:
                raise lift_refusal(self.m, self.v.filename, err) from None
        em = Emitter()
        em(Comment(f"generated from {self.v.filename} by rnnspec {__version__} -- do not edit; "
                   f"edit the spec and recompile"))
        em(Docstring(tuple(self.docstring(checkpoint, rtrl is not None).split("\n"))))  # checked at the end
        xp = backend == "array-api"
        if xp:
            em(Comment(HEADER))
            em(FromImport("array_api_compat", ("array_namespace", ("device", "_device"),
                                                     "is_array_api_obj")))
        em(Import("numpy", "np", NUMPY_NOTE if xp else ""))
        if backend == "numba":
            em(Import("numba", "numba"))
        em(BLANK)
        self.tables(em, checkpoint, variants)
        if xp:
            fwd, bwd = [to_array_api(s) for s in fwd], [to_array_api(s) for s in bwd]
        em.extend([BLANK, BLANK] + fwd + [BLANK, BLANK] + bwd + [BLANK, BLANK])
        em(Comment(RUNTIME_BANNER[2:]))  # after the network's code: a reader meets it first
        em.extend([BLANK, BLANK])
        runtime = runtime_parts(RUNTIME, LOSS_AND_GRAD, self.v.helpers) if xp \
            else self.numpy_runtime(variants, checkpoint, rtrl) + \
            ([NUMBA] if backend == "numba" else [])
        for part in runtime:
            em.extend([Verbatim(part.strip("\n")), BLANK, BLANK])
        text = em.text()
        text = re.sub(r"\n{3,}(?=\S)", "\n\n\n", text)
        return text.rstrip() + "\n"

    def numpy_runtime(self, variants, checkpoint, rtrl) -> list:
        """The runtime groups a NumPy module copies."""
        return ([FEEDBACK_API] if variants else []) + ([CHECKPOINT_API] if checkpoint else []) \
            + [LOSS_AND_GRAD] + [HELPERS[h] for h in sorted(self.v.helpers)] \
            + ([TANGENTS] if rtrl is not None else []) + [TRUNCATION] \
            + ([SWEEPS] if self.v.sweeps else []) + [RUNTIME]

    def tables(self, em: Emitter, checkpoint: Optional[int], variants) -> None:
        """DIMS, AXES, NESTED, the spec's names and sizes, MIN_T, TRUNCATE (CHECKPOINT,
        FEEDBACK)."""
        m = self.m
        em(table("DIMS", dict(m.dims)))
        axes = {a: self.v.tsym(a) for a in (m.axes or [self.v.main])}
        em(table("AXES", axes, "time axis -> its number of steps in dims (the first is the main "
                               "one)"))
        em(table("NESTED", dict(m.nested), "[w in s]: steps w inside every step s (w -> s)"))
        self.names(em)
        em(table("MIN_T", self.min_T()))
        refused = self.v.truncation
        em(table("TRUNCATE", None if refused is None else str(refused),
                 "why backward's xi= and truncate= are refused (None: they are not)"))
        if self.numba:
            em(table("NUMBA_BATCH", NUMBA_BATCH, "batches up to this size run the time loops "
                                                 "compiled by numba, larger ones NumPy's"))
        if checkpoint:
            em(table("CHECKPOINT", checkpoint, "steps per segment (forward stores the states "
                                               "every CHECKPOINT steps)"))
        if variants:
            em(table("FEEDBACK", self.feedback_table(), "what generate() chooses from, one "
                                                        "step back"))

    def names(self, em: Emitter) -> None:
        """PARAMS, INITS, INPUTS, TARGETS, STATES, OUTPUTS, LOSSES: the spec's names and
        sizes."""
        m = self.m
        em(table("PARAMS", {name: tuple(s.text() for s in p.shape)
                            for name, p in m.params.items()}, lines=True))
        em(table("INITS", {name: (p.init, p.init_arg) for name, p in m.params.items()},
                 lines=True))
        for name, infos in (("INPUTS", m.inputs), ("TARGETS", m.targets)):
            em(table(name, {n: {"size": info.size.text(),
                                "kind": "sequence" if info.seq else "static",
                                **({"type": info.kind} if name == "TARGETS" or info.kind == "class"
                                   else {}),
                                **self.axis_meta(info)} for n, info in infos.items()},
                     lines=True))
        states = {}
        for name, st in m.states.items():
            axis = m.values[name].axis if name in m.values else None
            states[name] = {"size": st.size.text(), "init": st.init, "from": st.init_name,
                            "steps": self.v.carry_steps(name),
                            **({"axis": axis, "within": m.nested[axis]}
                               if axis in m.nested else {})}
        em(table("STATES", states, lines=True))
        outputs = {}
        for name, v in m.values.items():
            kind = "sequence" if v.seq else "static" if self.ops[
                self.g.values[name]].ty.tk != PARAM else "shared"  # shared: no batch axis
            outputs[name] = {"size": v.size.text(), "kind": kind, **self.axis_meta(v)}
        em(table("OUTPUTS", outputs, lines=True))
        em(table("LOSSES", [{"kind": loss.func, "pred": loss.pred.name,
                             "target": loss.target.name, "reduce": loss.reduce,
                             "per": "step" if loss.pred.index is not None else "sequence",
                             "steps": len(loss.steps) if loss.steps else None}
                            for loss in m.losses],
                 "sum or mean over a sequence's steps, per step or sequence"))

    def docstring(self, checkpoint: Optional[int], rtrl: bool = False) -> str:
        """The module docstring's text (unescaped): the file name, the spec and the files it
        imports, listed as they are."""
        lines = [f"Forward pass and exact BPTT gradients for {self.v.filename}.", "", "The spec:", ""]
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
        if rtrl:
            lines += ["", "With rtrl: the same gradient of the loss computed forward in time "
                      "(real-time recurrent", "learning), memory independent of T."]
        return "\n".join(lines)

    def feedback_table(self) -> dict:
        """FEEDBACK of a spec with feedback(teacher, free): the value that feedback(...) defines
        and the value its free side reads one step back (None when it is not such a read), what
        generate() (rnnspec/runtime/feedback.py) feeds back."""
        from ..ast import Ref
        call = self.m.feedbacks[0]
        owner = next(v.name for v in self.m.values.values() if any(n is call for n in walk(v.eq.expr)))
        free = call.args[1]
        source = free.name if isinstance(free, Ref) and free.index is not None and \
            free.index.kind == "rel" and free.index.offset == -1 else None
        return {"value": owner, "from": source}

    def axis_meta(self, info) -> dict:
        within = self.m.nested.get(info.axis)
        return ({"axis": info.axis, **({"within": within} if within else {})}
                if info.seq else {})

    def min_T(self) -> dict:
        """The fewest steps each axis needs (for h[3], h[end-2], loss at t = 5)."""
        need = {self.v.tsym(a): 1 for a in (self.m.axes or [self.v.main])}
        for op in self.ops.values():
            if op.op == "pick":
                ix, key = op.attrs["index"], self.v.tsym(op.attrs["axis"])
                need[key] = max(need[key], ix.offset if ix.kind == "abs" else 1 - ix.offset)
            if is_loss(op.op) and op.attrs["steps"]:
                key = self.v.tsym(op.attrs["axis"])
                for s in op.attrs["steps"]:
                    need[key] = max(need[key], s.offset if s.kind == "abs" else 1)
        return need
