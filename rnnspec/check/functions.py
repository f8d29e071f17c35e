"""The builtin functions: :data:`BUILTINS`, a table name -> typing function, and the simple ones.

In: an ``ast.Call`` and its :class:`.context.Context`.  Out: the call's type (or None, reported),
through the entry of :data:`BUILTINS` for its name: the element-wise functions, ``softmax`` and
``concat`` (here), ``feedback`` and ``onehot`` (teacher forcing, here), ``affine``/``gate`` and
``attend`` (which create parameters: :mod:`.elaborate`), and the losses, which are refused outside
a loss statement (:mod:`.losses` checks them there).  A name not in the table is an unknown
function (or block: blocks are inlined before the check, :mod:`rnnspec.compose`).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from .. import ast
from ..ast import unparse
from ..ops import RULES
from ..sizes import Size
from . import elaborate, expressions
from .context import Context
from .model import STEP, Ty
from .symbols import Refused, Symbols, suggest

UNARY_FUNCS = ("tanh", "sigmoid", "relu", "identity", "exp", "log")
LOSS_FUNCS = tuple(sorted(n for n, r in RULES.items() if r.loss))  # the loss ops of ops.py

Typer = Callable[[Symbols, ast.Call, Context], Optional[Ty]]


def type_call(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """The type of the call ``c``, by its entry in :data:`BUILTINS`."""
    typer = BUILTINS.get(c.func)
    if typer is None:
        blocks = sym.spec.blocks
        sym.rep.error(c, f"unknown function {'or block ' if blocks else ''}'{c.func}'",
                      suggest(c.func, FUNCTIONS + LOSS_FUNCS + blocks)
                      or f"functions: {', '.join(FUNCTIONS)}" +
                      (f"; blocks: {', '.join(blocks)}" if blocks else ""))
        return None
    return typer(sym, c, ctx)


def no_kwargs(sym: Symbols, c: ast.Call) -> bool:
    """False (reported) if ``c`` has keyword arguments (of a builtin or a loss that takes
    none)."""
    if c.kwargs:
        sym.rep.error(c.kwargs[0], f"{c.func}() takes no keyword arguments",
                      f"remove {c.kwargs[0].name}=")
        return False
    return True


def _one_argument(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """The type of the one argument of ``c`` (which has the call's size)."""
    if not no_kwargs(sym, c):
        return None
    if len(c.args) != 1:
        sym.rep.error(c, f"{c.func}() takes one argument, got {len(c.args)}",
                      f"write {c.func}(expression)")
        return None
    return expressions.type_expr(sym, c.args[0], ctx)


def unary(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """``tanh(e)``, ``sigmoid(e)``, ...: element-wise, of any shape."""
    ty = _one_argument(sym, c, ctx)
    return sym.note(c, ty) if ty is not None else None


def softmax(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    ty = _one_argument(sym, c, ctx)
    if ty is None:
        return None
    if ty.shape != "vec":
        sym.rep.error(c, f"softmax() normalizes a vector, but {unparse(c.args[0])} is "
                      f"{ty.describe()}", "pass a vector")
        return None
    return sym.note(c, ty)


def concat(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """``concat(a, b, ...)``: the vectors one after the other."""
    if not no_kwargs(sym, c):
        return None
    if not c.args:
        sym.rep.error(c, "concat() needs at least one vector", "concat(a[t], b[t])")
        return None
    tys = [expressions.type_expr(sym, a, ctx.operand()) for a in c.args]
    if any(t is None for t in tys):
        return None
    total = Size()
    for a, t in zip(c.args, tys):
        if t.shape != "vec":
            sym.rep.error(a, f"concat() joins vectors, but {unparse(a)} is "
                          f"{t.describe()}", "pass vectors")
            return None
        total = total + t.rows
    return sym.note(c, ctx.ty("vec", total, None, max(t.tk for t in tys)))


def loss_outside_loss(sym: Symbols, c: ast.Call, ctx: Context) -> None:
    sym.rep.error(c, f"{c.func}(...) can only be used in a loss statement",
                  f"write: loss = {c.func}(o[t], y[t])")
    return None


def feedback(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """feedback(teacher, free): the teacher side (from targets, e.g. onehot(y[t-1])) when
    training with teacher forcing, the free side (the model's own output, e.g. o[t-1]) when
    running free, and a chosen class of it when generating."""
    if c.kwargs or len(c.args) != 2:
        sym.rep.error(c, "feedback() takes two arguments: what to feed when training and "
                      "when running free", "feedback(onehot(y[t-1]), o[t-1])")
        return None
    if not ctx.seq:
        sym.rep.error(c, "feedback() feeds a step's input: use it in a per-step equation",
                      f"{ctx.owner}[t] = feedback(onehot(y[t-1]), o[t-1])")
        return None
    a = expressions.type_expr(sym, c.args[0], ctx.teacher_side())
    b = expressions.type_expr(sym, c.args[1], ctx.free_side())
    if a is None or b is None:
        return None
    if a.shape != "vec" or b.shape != "vec" or a.rows != b.rows:
        sym.rep.error(c, f"feedback(): the teacher side is {a.describe()} but the free side "
                      f"is {b.describe()}", "feed vectors of one size, e.g. "
                      "onehot(y[t-1]) and a softmax output o[t-1]")
        return None
    sym.feedbacks.append(c)
    return sym.note(c, ctx.ty("vec", a.rows, None, STEP))


def onehot(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """onehot(y[t-d]): class targets as vectors, on the teacher side of feedback(); onehot(x[t])
    of a class input anywhere."""
    if c.kwargs or len(c.args) != 1:
        sym.rep.error(c, "onehot() takes one class target", "onehot(y[t-1])")
        return None
    r = c.args[0]
    inp = sym.inputs.get(r.name) if isinstance(r, ast.Ref) else None
    if inp is not None and inp.kind == "class":  # onehot(x[t]) of a class input
        try:
            elaborate.class_step(sym, r, ctx, "onehot", inp.axis)
        except Refused:
            return None
        sym.used.add(r.name)
        return sym.note(c, ctx.ty("vec", inp.size, None, STEP))
    if not (isinstance(r, ast.Ref) and r.name in sym.targets):
        sym.rep.error(r, f"onehot() turns class inputs and targets into vectors, but "
                      f"`{unparse(r)}` is neither", "onehot(y[t-1]) of target y[t]: class(K), "
                      "onehot(x[t]) of input x[t]: class(K)")
        return None
    tgt = sym.targets[r.name]
    if not ctx.teacher:
        sym.rep.error(c, "targets are fed to the network only on the teacher side of "
                      "feedback()", f"feedback(onehot({r.name}[t-1]), o[t-1])")
        return None
    ix = r.index
    if tgt.kind != "class" or not tgt.seq or ix is None or ix.kind != "rel" or \
            ix.var != ctx.axis or ix.offset >= 0:
        sym.rep.error(r, f"onehot() takes a class target at an earlier step, such as "
                      f"{r.name}[{ctx.axis}-1]", f"onehot({r.name}[{ctx.axis}-1])")
        return None
    if tgt.decl.start is None:
        sym.rep.error(r, f"'{unparse(r)}' reads before the first step, but target "
                      f"'{r.name}' has no start value", f"declare the start token: "
                      f"target {r.name}[{tgt.axis}]: class({tgt.size}) = 0")
        return None
    if tgt.decl.start >= tgt.size.evaluate(sym.dims):
        sym.rep.error(tgt.decl, f"start class {tgt.decl.start} of '{r.name}' is not "
                      f"below {tgt.size} = {tgt.size.evaluate(sym.dims)}",
                      "use a class index of the target")
    sym.used.add(r.name)
    return sym.note(c, ctx.ty("vec", tgt.size, None, STEP))


BUILTINS: Dict[str, Typer] = {
    **{name: unary for name in UNARY_FUNCS},
    "softmax": softmax, "concat": concat,
    "affine": elaborate.connection, "gate": elaborate.connection,
    "attend": elaborate.attention,
    "feedback": feedback, "onehot": onehot, "embed": elaborate.embedding,
    **{name: loss_outside_loss for name in LOSS_FUNCS},
}
FUNCTIONS = tuple(name for name in BUILTINS if name not in LOSS_FUNCS)  # in the order of hints
