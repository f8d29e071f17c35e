"""Losses: a ``loss = ...`` statement -> a :class:`~.model.LossInfo` in ``Symbols.losses``.

In: the loss statement, after every value is typed (a prediction's size and ``is_softmax`` are
known).  Out: the loss term (function, prediction, target, reduction, selected steps).  Reported
here: a loss that is not a loss function, arguments missing or extra, a prediction that is not a
named value or a target that is not a target (with the declaration it needs), steps that do not
match between them (every step, a chosen step, ``at``), the kind of target against the loss
(class targets and softmax for cross_entropy, real ones for squared_error) and sizes.
"""
from __future__ import annotations

from typing import Optional, Tuple

from .. import ast
from ..ast import unparse
from .functions import LOSS_FUNCS, no_kwargs
from .model import LossInfo, TargetInfo, ValueInfo
from .symbols import Refused, Symbols


def check_loss(sym: Symbols, st: ast.Loss) -> None:
    try:
        pred, target = _arguments(sym, st)
        info, tgt = sym.values[pred.name], sym.targets[target.name]
        if info.seq:
            steps = _per_step_steps(sym, st, pred, target, info, tgt)
        elif pred.index is not None:
            raise sym.refuse(pred.index, f"'{pred.name}' is a static value: it has no time index",
                             f"write {pred.name}")
        else:
            steps = None
        if not info.seq or pred.index.kind != "rel":
            _static_target(sym, st, pred, target, info, tgt)
        if info.size is None:  # its equation could not be typed (reported there)
            return
        _kinds_and_sizes(sym, st.expr, pred, target, info, tgt)
    except Refused:
        return
    sym.used.add(target.name)
    sym.losses.append(LossInfo(st.expr.func, pred, target, st.reduce, steps, st))


def _arguments(sym: Symbols, st: ast.Loss) -> Tuple[ast.Ref, ast.Ref]:
    """The prediction (a named value, marked used) and the target of a loss call."""
    c = st.expr
    if not isinstance(c, ast.Call) or c.func not in LOSS_FUNCS:
        raise sym.refuse(st.expr, "a loss is cross_entropy(...) or squared_error(...)",
                         "write: loss = cross_entropy(o[t], y[t])")
    if not no_kwargs(sym, c):
        raise Refused
    if len(c.args) == 0:
        raise sym.refuse(c, f"{c.func}() needs a prediction and a target",
                         f"write {c.func}(o[t], y[t])")
    pred = c.args[0]
    if len(c.args) < 2:
        raise sym.refuse(c, f"the loss has no target: {c.func}() needs a prediction and a "
                         f"target", f"declare one (target y[t]: class(out)) and write "
                         f"{c.func}({unparse(pred)}, y[t])")
    if len(c.args) > 2:
        raise sym.refuse(c.args[2], f"{c.func}() takes two arguments, got {len(c.args)}",
                         f"{c.func}(prediction, target)")
    target = c.args[1]
    _named_prediction(sym, c, pred)
    _declared_target(sym, c, target)
    sym.used.add(pred.name)
    return pred, target


def _named_prediction(sym: Symbols, c: ast.Call, pred: ast.Expr) -> None:
    if isinstance(pred, ast.Ref) and pred.name in sym.values:
        return
    if isinstance(pred, ast.Ref) and pred.name in sym.targets:
        raise sym.refuse(pred, f"'{pred.name}' is a target; the first argument of "
                         f"{c.func}() is the prediction", f"{c.func}(o[t], {pred.name}...)")
    raise sym.refuse(pred, f"the prediction of a loss must be a named value, not "
                     f"`{unparse(pred)}`", "name it with an equation, e.g. "
                     "o[t] = softmax(...)")


def _declared_target(sym: Symbols, c: ast.Call, target: ast.Expr) -> None:
    """The target must be a declared target: else the hint is the declaration the loss needs."""
    if isinstance(target, ast.Ref) and target.name in sym.targets:
        return
    what = f"'{target.name}' is not a target" if isinstance(target, ast.Ref) else \
        f"`{unparse(target)}` is not a target"
    name = target.name if isinstance(target, ast.Ref) else "y"
    decl = f"target {name}[t]: class(K)" if c.func == "cross_entropy" else \
        f"target {name}[t]: SIZE (the prediction's size)"
    raise sym.refuse(target, f"the loss has no target: {what}",
                     f"declare one: {decl}, and pass it as the second argument")


def _per_step_steps(sym: Symbols, st: ast.Loss, pred: ast.Ref, target: ast.Ref,
                    info: ValueInfo, tgt: TargetInfo) -> Optional[Tuple[ast.Index, ...]]:
    """A prediction that is a sequence: ``o[t]`` against ``y[t]`` at every step (or the steps
    of ``at``: the result), or one chosen step ``o[end]`` against a static target (None)."""
    pix, tix, ax = pred.index, target.index, info.axis
    if pix is None:
        raise sym.refuse(pred, f"'{pred.name}' is a sequence: say which step",
                         f"write {pred.name}[{ax}] (every step) or "
                         f"{pred.name}[end] (the last step)")
    if pix.kind != "rel":
        if tgt.seq:
            raise sym.refuse(target, f"{unparse(pred)} is one step, so the target must "
                             f"be static", f"declare target {target.name}: ...")
        return None
    if pix.offset != 0 or pix.var != ax:
        raise sym.refuse(pix, f"a per-step loss uses {pred.name}[{ax}]", f"write {pred.name}[{ax}]")
    if not tgt.seq or tix is None or tix.kind != "rel" or tix.offset != 0 or \
            tgt.axis != ax or tix.var != ax:
        other = f" (it runs over steps {tgt.axis})" if tgt.seq and tgt.axis != ax else ""
        raise sym.refuse(target, f"{pred.name}[{ax}] is compared at every step, "
                         f"so the target must be a sequence indexed [{ax}]{other}",
                         f"declare target {target.name}[{ax}]: ... and write "
                         f"{target.name}[{ax}]")
    if not st.select:
        return None
    if st.select.var != ax:
        raise sym.refuse(st.select, f"unknown time index '{st.select.var}'", f"write at {ax} = ...")
    for s in st.select.steps:
        if s.kind == "abs" and s.offset < 1:
            raise sym.refuse(s, "steps are numbered from 1", "write at t = 1, end")
    return st.select.steps


def _static_target(sym: Symbols, st: ast.Loss, pred: ast.Ref, target: ast.Ref,
                   info: ValueInfo, tgt: TargetInfo) -> None:
    """A prediction that is one vector per sequence: a static target, and no ``at``."""
    if tgt.seq or target.index is not None:
        raise sym.refuse(target, "the prediction is one vector per sequence, so the "
                         "target must be static", f"declare target {target.name}: ...")
    if st.select:
        raise sym.refuse(st.select, "'at' selects steps of a per-step loss",
                         f"use {pred.name}[{info.axis}] with at, or drop it")


def _kinds_and_sizes(sym: Symbols, c: ast.Call, pred: ast.Ref, target: ast.Ref,
                     info: ValueInfo, tgt: TargetInfo) -> None:
    """cross_entropy: class targets and a softmax prediction; squared_error: real targets;
    either: the target's size is the prediction's."""
    if c.func == "cross_entropy":
        if tgt.kind != "class":
            raise sym.refuse(target, f"cross_entropy needs class targets, but "
                             f"'{target.name}' is a real vector", f"declare target "
                             f"{target.name}...: class({tgt.size}), or use squared_error")
        if not info.is_softmax:
            raise sym.refuse(pred, f"cross_entropy needs probabilities from softmax, but "
                             f"'{pred.name}' is not defined as softmax(...)",
                             f"define {pred.name}[t] = softmax(...)")
    elif tgt.kind != "real":
        raise sym.refuse(target, f"squared_error needs real-valued targets, but "
                         f"'{target.name}' holds class indices",
                         f"declare target {target.name}...: {tgt.size}, or use cross_entropy")
    if tgt.size != info.size:
        raise sym.refuse(target, f"'{pred.name}' has size {info.size} but target '{target.name}' "
                         f"has size {tgt.size}", "make the sizes agree")
