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

The passes, one module each: :mod:`.values` (names and value texts), :mod:`.forward`,
:mod:`.adjoint` (reverse mode), :mod:`.rtrl` (forward mode in time, with ``rtrl=``),
:mod:`.module` (the whole text), :mod:`.names` (placeholders
named at the end) and :mod:`.text` (the emitter and small text tools).
"""
from __future__ import annotations

import ast as pyast
from typing import Dict, Optional

from ..schedule import Schedule
from .backends import check_backend, numba_refusal
from .module import (CHECKPOINT_API, FEEDBACK_API, LOSS_AND_GRAD, RUNTIME, RUNTIME_BANNER,
                     SWEEPS, TANGENTS, TRUNCATION, ModuleWriter)
from .names import _name_placeholders
from .values import Values
from .xp import XP_RUNTIME, xp_refusal

__all__ = ["generate_code", "RUNTIME", "RUNTIME_BANNER", "LOSS_AND_GRAD", "CHECKPOINT_API",
           "FEEDBACK_API", "TRUNCATION", "SWEEPS", "TANGENTS"]


def _verify_docstring(text: str, doc: str) -> None:
    """The module's text must hold ``doc`` as its docstring, read back exactly: outside text
    (file names, imports, the spec) went in only through :func:`rnnspec.pytext.escape`.  Only
    the head up to the first line of three double quotes alone is parsed (the namer parsed the
    whole module already): a docstring that ended early ends there, and reads back short."""
    end = text.find('\n"""\n')
    tree = pyast.parse(text if end < 0 else text[:end + 4])
    if pyast.get_docstring(tree, clean=False) != doc + "\n" or \
            not text.replace("\n", "").replace("\t", "").isprintable():
        raise AssertionError("bug in rnnspec: the generated module does not read back its "
                             "docstring")


def generate_code(sched: Schedule, filename: str = "spec.rnn",
                  variants: Optional[Dict[str, Schedule]] = None,
                  checkpoint: Optional[int] = None, rtrl: Optional[Schedule] = None,
                  backend: str = "numpy") -> str:
    """Render the module for ``sched``; ``filename`` goes into the header.  For a spec with
    ``feedback(...)``, ``sched`` is the teacher-forcing schedule and ``variants`` maps 'free'
    and 'sample' to the free-running and generation schedules.  With ``checkpoint=k`` (a spec
    that :func:`rnnspec.checkpoint.check_segmentable` accepts), forward and backward run in
    segments of k steps (see rnnspec/runtime/checkpoint.py).  ``rtrl``: the schedule without
    fused products that the module's ``rtrl`` follows (see :mod:`.rtrl`; refused specs are
    refused before, by :func:`rtrl.rtrl_refusal`).  ``backend``: see :mod:`.backends`."""
    check_backend(backend)
    if backend == "array-api":
        return _array_api_code(sched, filename, variants, checkpoint, rtrl)
    if backend == "numba":  # (what it cannot compile yet: refused, positioned)
        numba_refusal(sched, filename, variants, checkpoint, rtrl)
    extra = [Values(rtrl, filename)] if rtrl is not None else []
    if checkpoint:
        coders = [Values(sched, filename, segmented=True)]
        text = ModuleWriter(coders[0]).module(checkpoint=checkpoint, rtrl=(extra or [None])[0])
    elif not variants:
        coders = [Values(sched, filename)]
        text = ModuleWriter(coders[0]).module(rtrl=(extra or [None])[0], backend=backend)
    else:
        coders = [Values(sched, filename, "teacher")]
        coders += [Values(s, filename, mode) for mode, s in variants.items()]
        text = ModuleWriter(coders[0]).module(coders[1:])
    coders += extra
    text = _name_placeholders(text, coders)
    _verify_docstring(text, ModuleWriter(coders[0]).docstring(checkpoint, bool(extra)))
    return text


def _array_api_code(sched: Schedule, filename: str, variants, checkpoint, rtrl) -> str:
    """The module for ``backend="array-api"`` (see :mod:`.xp`): a positioned SpecError for
    what it cannot generate yet."""
    err = xp_refusal(sched, filename, checkpoint, rtrl is not None or None)
    if err is not None or variants:
        raise err or AssertionError("bug in rnnspec: feedback variants reached the array-api "
                                    "backend")
    coders = [Values(sched, filename)]
    writer = ModuleWriter(coders[0])
    text = writer.module(backend="array-api")
    missing = sorted(h for h in coders[0].helpers if h not in XP_RUNTIME)
    if missing:
        raise AssertionError(f"bug in rnnspec: no array-API version of {missing}")
    text = _name_placeholders(text, coders)
    _verify_docstring(text, writer.docstring(None))
    return text
