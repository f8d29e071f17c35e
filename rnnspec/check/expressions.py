"""Expression typing: an expression node and its :class:`.context.Context` -> its :class:`Ty`.

In: an ``ast.Expr`` of an equation and where it is (the context).  Out: its type (or None after
reporting why it has none), noted for every node in ``Symbols.types``.  Numbers, unary minus and
the operators ``@``, ``+``, ``-``, ``*``, ``/`` are typed here; references go to
:mod:`.references`, calls to the builtin table of :mod:`.functions`.
"""
from __future__ import annotations

from typing import Optional

from .. import ast
from ..ast import unparse
from . import functions, references
from .context import Context
from .model import Ty
from .symbols import Symbols


def type_expr(sym: Symbols, e: ast.Expr, ctx: Context) -> Optional[Ty]:
    if isinstance(e, ast.Num):
        return sym.note(e, Ty("scalar"))
    if isinstance(e, ast.Ref):
        ty = references.type_ref(sym, e, ctx)
        return sym.note(e, ty) if ty else None
    if isinstance(e, ast.Unary):
        ty = type_expr(sym, e.operand, ctx)
        return sym.note(e, ty) if ty else None
    if isinstance(e, ast.Binary):
        return matmul(sym, e, ctx) if e.op == "@" else elementwise(sym, e, ctx)
    if isinstance(e, ast.Call):
        return functions.type_call(sym, e, ctx)
    raise TypeError(e)  # pragma: no cover


def matmul(sym: Symbols, e: ast.Binary, ctx: Context) -> Optional[Ty]:
    """``W @ x``: a matrix times a vector of its number of columns."""
    a = type_expr(sym, e.left, ctx.operand())
    b = type_expr(sym, e.right, ctx.operand())
    if a is None or b is None:
        return None
    if a.shape != "mat":
        sym.rep.error(e, f"`{unparse(e)}`: the left side of @ must be a matrix, but "
                      f"{unparse(e.left)} is {a.describe()}", "write W @ x with a "
                      "matrix parameter W; use * for element-wise products")
        return None
    if b.shape != "vec":
        sym.rep.error(e, f"`{unparse(e)}`: the right side of @ must be a vector, but "
                      f"{unparse(e.right)} is {b.describe()}", "@ multiplies a matrix "
                      "with a vector")
        return None
    if a.cols != b.rows:
        sym.rep.error(e, f"`{unparse(e)}`: {unparse(e.left)} is {a.rows}×{a.cols} but "
                      f"{unparse(e.right)} has size {b.rows}",
                      f"{unparse(e.left)} needs {b.rows} columns, or the vector size "
                      f"{a.cols}")
        return None
    return sym.note(e, ctx.ty("vec", a.rows, None, max(a.tk, b.tk)))


def elementwise(sym: Symbols, e: ast.Binary, ctx: Context) -> Optional[Ty]:
    """``a + b``, ``a - b``, ``a * b``, ``a / b``: equal shapes, or one side a scalar."""
    a = type_expr(sym, e.left, ctx)
    b = type_expr(sym, e.right, ctx)
    if a is None or b is None:
        return None
    tk = max(a.tk, b.tk)
    if a.shape == "scalar":
        return sym.note(e, ctx.ty(b.shape, b.rows, b.cols, tk))
    if b.shape == "scalar":
        return sym.note(e, ctx.ty(a.shape, a.rows, a.cols, tk))
    if a.shape != b.shape or a.rows != b.rows or a.cols != b.cols:
        sym.rep.error(e, f"`{unparse(e)}`: {unparse(e.left)} is {a.describe()} but "
                      f"{unparse(e.right)} is {b.describe()}",
                      f"element-wise {e.op} needs equal sizes (or a scalar)")
        return None
    return sym.note(e, ctx.ty(a.shape, a.rows, a.cols, tk))
