"""Gradient checkpointing: which specs can run in segments of k steps, and the value of k.

In: an analysis (the checked model and its schedule) and k.  Out: nothing, or a
:class:`SpecError` listing every construct that makes segmenting inexact, each at its position.

A checkpointed module (``generate(..., checkpoint=k)``) runs the main time axis in segments of k
steps, carrying each segment's final states into the next as its initial states; backward
recomputes one segment at a time from the states stored at its start.  That is exact only when a
segment's computation depends on the steps before it through the states of the previous step
alone -- one time axis, forward in time, every delayed read one step back, and every loss a sum
or mean over all steps.
"""
from __future__ import annotations

import numbers

from . import ast
from .errors import Reporter

HINT = "compile without checkpointing (drop --checkpoint / checkpoint=)"


def checkpoint_steps(k) -> int:
    """``k`` as the number of steps per segment: a positive integer (ValueError otherwise)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"checkpoint must be a positive integer (steps per segment), "
                         f"got {k!r}")
    if k < 1:
        raise ValueError(f"checkpoint must be a positive integer (steps per segment), got {k}")
    return int(k)


def check_segmentable(analysis) -> None:
    """Raise a SpecError naming every reason the spec cannot be checkpointed exactly."""
    m = analysis.model
    rep = Reporter(m.source, m.filename, once_per_place=True)
    what = "checkpointing cannot segment this spec exactly"
    main = m.axes[0] if m.axes else None
    if len(m.axes) > 1:
        other = m.axes[1]
        node = next((st for st in m.spec.statements
                     if isinstance(st, (ast.InputDecl, ast.TargetDecl, ast.Equation))
                     and st.axis == other), m.spec)
        rep.error(node, f"{what}: it has a second time axis '{other}' (the segments split one "
                        f"axis, and the other reads the first as a whole)", HINT)
    for st in m.spec.statements:
        if isinstance(st, ast.Equation):
            _check_expr(rep, st.expr, what)
        elif isinstance(st, ast.Loss):
            _check_expr(rep, st.expr, what)
            if st.select is not None:
                rep.error(st.select, f"{what}: `loss ... at {st.select.var} = ...` counts chosen "
                                     f"steps, which a segment cannot place", HINT)
    for loss in m.losses:
        if loss.pred.index is None:  # a static prediction: one loss per sequence
            rep.error(loss.pred, f"{what}: `{loss.pred.name}` is a per-sequence loss; every "
                                 f"segment would count it again", HINT)
    # the schedule agrees (a safety net for constructs reported above)
    for stage in analysis.schedule.stages:
        if stage.kind == "loop" and (stage.direction < 0 or stage.axis not in (None, main)):
            if not rep.errors:
                rep.error(m.spec, f"{what}: a recurrence runs backward in time", HINT)
    rep.raise_if_errors()


def _check_expr(rep: Reporter, expr, what: str) -> None:
    for node in ast.walk(expr):
        if isinstance(node, ast.Call) and node.func == "attend":
            rep.error(node, f"{what}: attention reads the whole sequence at every step", HINT)
        elif isinstance(node, ast.Call) and node.func == "feedback":
            rep.error(node, f"{what}: feedback(...) feeds targets or outputs back (teacher "
                            f"forcing, generation), which checkpointing does not support", HINT)
        elif isinstance(node, ast.Ref) and node.index is not None:
            ix = node.index
            ref = f"{node.name}[{ix.text()}]"
            if ix.kind == "rel" and ix.offset > 0:
                rep.error(node, f"{what}: `{ref}` runs a recurrence backward in time; its "
                                f"first steps depend on every later segment", HINT)
            elif ix.kind == "rel" and ix.offset < -1:
                rep.error(node, f"{what}: `{ref}` is read {-ix.offset} steps back; a checkpoint "
                                f"carries one step of each state across a segment boundary",
                          "with checkpointing, read states one step back only (h[t-1])")
            elif ix.kind in ("abs", "end"):
                rep.error(node, f"{what}: `{ref}` reads one chosen step of the whole sequence",
                          HINT)
