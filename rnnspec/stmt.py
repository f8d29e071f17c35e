"""Statement nodes of generated code: what codegen builds, and :mod:`rnnspec.printer` prints.

In: expression nodes (:mod:`rnnspec.expr`).  Out: frozen dataclasses, one per kind of statement
a generated module holds (an assignment, ``if``, ``for``, a function definition with its
docstring, an expression evaluated for its effect (or returned, raised), a comment, a blank
line), which :func:`rnnspec.printer.show_stmt` prints with indentation.  No node holds text
except :class:`Verbatim`, the runtime copied as it is (real code in :mod:`rnnspec.runtime`), and
comments (``Comment``, ``note``), which the printer writes as comments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from .expr import Expr, node


class Stmt:
    """A statement of generated code (frozen dataclasses below)."""
    __slots__ = ()


@dataclass(frozen=True)
class Assign(Stmt):
    """``target = value``, or with ``op='+='`` ``target += value`` (``*=``, ...); ``note``: a
    comment at the end of the line."""
    target: Expr
    value: Expr
    op: str = "="
    note: str = ""


@dataclass(frozen=True)
class If(Stmt):
    """``if cond:`` (with a comment ``note``) and its body; ``orelse``: an ``else:`` body (with
    its own comment ``else_note``)."""
    cond: Expr
    body: Tuple[Stmt, ...]
    note: str = ""
    orelse: Tuple[Stmt, ...] = ()
    else_note: str = ""


@dataclass(frozen=True)
class For(Stmt):
    """``for var in iterable:`` and its body."""
    var: Expr
    iterable: Expr
    body: Tuple[Stmt, ...]


@dataclass(frozen=True)
class Def(Stmt):
    """``def name(params):``, its docstring (one text a line; '' a blank line) and its body;
    a parameter is a name, or (name, default)."""
    name: str
    params: Tuple[object, ...]
    doc: Tuple[str, ...]
    body: Tuple[Stmt, ...]
    decorators: Tuple[Expr, ...] = ()  # ``@numba.njit(cache=True)`` (the numba backend)


@dataclass(frozen=True)
class Docstring(Stmt):
    """A ``\"\"\"`` string alone (a module's docstring): each line escaped (rnnspec.pytext)."""
    lines: Tuple[str, ...]


@dataclass(frozen=True)
class Do(Stmt):
    """An expression evaluated for its effect (``np.tanh(a, out=h[t])``), or after a
    ``keyword``: ``return value``, ``raise value`` (:func:`returns`, :func:`raises`)."""
    value: Expr
    keyword: str = ""


def returns(value) -> Do:
    return Do(node(value), "return")


def raises(value) -> Do:
    return Do(node(value), "raise")


@dataclass(frozen=True)
class Import(Stmt):
    """``import module as alias`` (with a comment ``note``)."""
    module: str
    alias: str
    note: str = ""


@dataclass(frozen=True)
class FromImport(Stmt):
    """``from module import name, name as alias`` (a name is text or (name, alias)), with a
    comment ``note``."""
    module: str
    names: Tuple[object, ...]
    note: str = ""


@dataclass(frozen=True)
class Comment(Stmt):
    """A comment line (its text escaped: it may hold outside text); ``origin``: the spec
    statement that the code below it comes from (not printed; a pass's positioned errors)."""
    text: str
    origin: object = field(default=None, compare=False)


@dataclass(frozen=True)
class Blank(Stmt):
    """An empty line."""


BLANK = Blank()


@dataclass(frozen=True)
class Pass(Stmt):
    """``pass`` (a body with nothing to do)."""


PASS = Pass()


@dataclass(frozen=True)
class Verbatim(Stmt):
    """Lines copied as they are: the runtime (rnnspec/runtime/ files, real code)."""
    text: str


def assign(target, value, op: str = "=", note: str = "") -> Assign:
    return Assign(node(target), node(value), op, note)


def guarded(cond, stmt: Stmt) -> Stmt:
    """``stmt``, under ``if cond:`` when there is a condition (None: always)."""
    return stmt if cond is None else If(node(cond), (stmt,))


def define(name: str, params, doc, body) -> Def:
    return Def(name, tuple(params), tuple(doc), tuple(body))


def param(name: str, *default):
    """A parameter of a :class:`Def`: ``name``, or ``name=default`` (a node or a Python value:
    ``param('T', None)`` is ``T=None``)."""
    return (name, node(default[0])) if default else name
