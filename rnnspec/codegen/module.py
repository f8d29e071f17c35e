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
from ..pytext import comment, escape
from ..runtime import helper_texts
from .text import Emitter
from .adjoint import Adjoint
from .forward import Forward
from .rtrl import Rtrl
from .values import Pass, Values

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


RUNTIME_BANNER = "# ---- runtime: rnnspec's helpers, the same in every module that uses them ----"


class ModuleWriter(Pass):
    """The text of one generated module."""

    # ----- module ----------------------------------------------------------------------------
    def module(self, variants: Optional[List["Values"]] = None,
               checkpoint: Optional[int] = None, rtrl: Optional["Values"] = None) -> str:
        """The module's text; ``rtrl``: the Values of the unfused schedule that the generated
        ``rtrl`` (:mod:`.rtrl`) follows."""
        bwd = Adjoint(self.v).backward()  # (first: the names it makes come first)
        fwd = Forward(self.v).forward()
        if rtrl is not None:
            bwd += ["", ""] + Rtrl(rtrl).function()
            self.v.helpers |= rtrl.helpers
        for v in variants or []:
            if v.variant != "sample":
                bwd += ["", ""] + Adjoint(v).backward()
            fwd += ["", ""] + Forward(v).forward()
            self.v.helpers |= v.helpers
        m = self.m
        em = Emitter()
        em(comment(f"generated from {self.v.filename} by rnnspec {__version__} -- do not edit; "
                   f"edit the spec and recompile"))
        doc = self.docstring(checkpoint, rtrl is not None)
        em('"""' + "\n".join(escape(line) for line in doc.split("\n")))
        em('"""')  # the docstring is doc + "\n", checked at the end
        em("import numpy as np")
        em("")
        em(f"DIMS = {dict(m.dims)!r}")
        axes = {a: self.v.tsym(a) for a in (m.axes or [self.v.main])}
        em(f"AXES = {axes!r}  # time axis -> its number of steps in dims (the first is the main one)")
        em(f"NESTED = {dict(m.nested)!r}  # [w in s]: steps w inside every step s (w -> s)")
        self.tables(em)
        em(f"MIN_T = {self.min_T()}")
        refused = self.v.truncation
        em(f"TRUNCATE = {None if refused is None else str(refused)!r}  # why backward's xi= and "
           f"truncate= are refused (None: they are not)")
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
            + [LOSS_AND_GRAD] + [HELPERS[h] for h in sorted(self.v.helpers)] \
            + ([TANGENTS] if rtrl is not None else []) + [TRUNCATION] \
            + ([SWEEPS] if self.v.sweeps else []) + [RUNTIME]
        for part in runtime:
            em.lines.extend(part.strip("\n").split("\n"))
            em("")
            em("")
        text = em.text()
        text = re.sub(r"\n{3,}(?=\S)", "\n\n\n", text)
        return text.rstrip() + "\n"

    def tables(self, em: Emitter) -> None:
        """PARAMS, INITS, INPUTS, TARGETS, STATES, OUTPUTS: the spec's names and sizes."""
        m = self.m
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
        for table, infos in (("INPUTS", m.inputs), ("TARGETS", m.targets)):
            em(f"{table} = {{")
            with em.indent():
                for name, info in infos.items():
                    kind = f", 'type': {info.kind!r}" if table == "TARGETS" else ""
                    em(f"{name!r}: {{'size': {info.size.text()!r}, 'kind': "
                       f"{'sequence' if info.seq else 'static'!r}{kind}"
                       f"{self.axis_meta(info)}}},")
            em("}")
        em("STATES = {")
        with em.indent():
            for name, st in m.states.items():
                axis = m.values[name].axis if name in m.values else None
                nested = (f", 'axis': {axis!r}, 'within': {m.nested[axis]!r}"
                          if axis in m.nested else "")
                em(f"{name!r}: {{'size': {st.size.text()!r}, 'init': {st.init!r}, 'from': "
                   f"{st.init_name!r}, 'steps': {self.v.carry_steps(name)}{nested}}},")
        em("}")
        em("OUTPUTS = {")
        with em.indent():
            for name, v in m.values.items():
                kind = "sequence" if v.seq else "static" if self.ops[
                    self.g.values[name]].ty.tk != PARAM else "shared"  # shared: no batch axis
                em(f"{name!r}: {{'size': {v.size.text()!r}, 'kind': {kind!r}"
                   f"{self.axis_meta(v)}}},")
        em("}")

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

    def axis_meta(self, info) -> str:
        within = self.m.nested.get(info.axis)
        return (f", 'axis': {info.axis!r}" + (f", 'within': {within!r}" if within else "")
                if info.seq else "")

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
