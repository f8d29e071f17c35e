"""The values' equations: in which order to type them, and the size each one gets.

In: the declared values (:class:`.symbols.Symbols` after :mod:`.declarations`).  Out: every
value's size (inferred where not declared), ``is_softmax``, and the types of all expression nodes
(through :mod:`.expressions`).  Reported here: a value that is a scalar or a matrix, a size that
disagrees with the declared one, a per-step value that does not depend on the step and a static
one that does, and a cycle of values too long to follow.
"""
from __future__ import annotations

from typing import List, Optional

from .. import ast
from ..sizes import Size
from . import expressions
from .context import Context
from .model import PARAM, STEP, Ty, ValueInfo
from .symbols import Symbols


def type_values(sym: Symbols) -> None:
    """Type every value's equation (see :func:`typing_order`)."""
    for name in typing_order(sym):
        try:
            value_size(sym, name)
        except RecursionError:  # only a cycle of values can be this deep (typing_order)
            sym.rep.error(sym.values[name].eq, f"cannot tell the size of '{name}': it is "
                          f"in a cycle of values reading each other, too long to follow",
                          f"give it a size ({name}[t]: SIZE = ...), or make one of the "
                          f"values of the cycle a state")
            sym.rep.raise_if_errors()


def typing_order(sym: Symbols) -> List[str]:
    """The values, each after the values of unknown size it reads (declaration order
    otherwise, so parameters are created in the same order as typing them one by one
    would): typing them so never recurses deeply, however long a chain of values that read
    later-declared ones is (an iterative depth-first search; a cycle in any order)."""
    order: List[str] = []
    seen: set = set()
    for root in sym.values:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(_reads(sym, root)))]
        while stack:
            name, todo = stack[-1]
            nxt = next((n for n in todo if n not in seen), None)
            if nxt is None:
                stack.pop()
                order.append(name)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(_reads(sym, nxt))))
    return order


def _reads(sym: Symbols, name: str) -> List[str]:
    """The values whose typing typing ``name`` would start (a reference types a value of
    unknown size on the spot, :func:`value_size`), in the order it would."""
    return [n.name for n in ast.walk(sym.values[name].eq.expr)
            if isinstance(n, ast.Ref) and n.name in sym.values and n.name != name
            and sym.values[n.name].size is None]


def value_size(sym: Symbols, name: str) -> Optional[Size]:
    """The size of value ``name``, typing its equation the first time it is asked for (its
    own context: :meth:`Context.of_value`)."""
    info = sym.values[name]
    if name in sym.typed_values:
        return info.size
    if name in sym.inferring:
        return info.size  # recursion through a (possibly illegal) cycle: use what is known
    sym.inferring.add(name)
    ty = expressions.type_expr(sym, info.eq.expr, Context.of_value(info))
    sym.inferring.discard(name)
    sym.typed_values.add(name)
    if ty is None:
        return info.size
    if ty.shape != "vec":
        _not_a_vector(sym, info, ty)
        return info.size
    eq = info.eq
    if info.size is not None and ty.rows != info.size:
        sym.rep.error(eq.expr, f"'{name}' has size {info.size} but its equation gives size "
                      f"{ty.rows}", "make the sizes agree")
    elif info.size is None:
        info.size = ty.rows
    if isinstance(eq.expr, ast.Call) and eq.expr.func == "softmax":
        info.is_softmax = True
    if info.seq and ty.tk != STEP:
        sym.rep.error(eq, f"'{name}[{eq.axis}]' does not depend on the step",
                      f"make it a static value: {name} = ...")
    if not info.seq and ty.tk == STEP:
        sym.rep.error(eq, f"static value '{name}' depends on step {ty.axis}",
                      f"write {name}[{ty.axis}] = ... for a per-step value, or pick one "
                      f"step with [end]")
    return info.size


def _not_a_vector(sym: Symbols, info: ValueInfo, ty: Ty) -> None:
    """A value whose equation gives a scalar or a matrix."""
    name, eq = info.name, info.eq
    if ty.shape == "scalar" and info.size is None and ty.tk == PARAM:
        sym.rep.error(eq, f"'{name}' is a scalar expression of parameters and constants",
                      "use a const or a scalar param instead of an equation")
    elif ty.shape == "mat":
        sym.rep.error(eq, f"'{name}' would be a matrix; values of a network are vectors",
                      "multiply it with a vector using @")
    elif info.size is None:
        sym.rep.error(eq, f"cannot tell the size of '{name}': the right-hand side is a "
                      f"scalar", f"annotate it: {name}[{eq.axis or 't'}]: hidden = ...")
    elif info.seq and ty.tk != STEP:  # as for a vector (a scalar never depends on t)
        sym.rep.error(eq, f"'{name}[{eq.axis}]' does not depend on the step",
                      f"make it a static value: {name}: {info.size} = ...")
