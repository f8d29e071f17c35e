"""Expression nodes of generated code, and the printer: the one place where their text is made.

In: nodes built by the derivative rules (:mod:`rnnspec.ops`) and by codegen.  Out: Python text,
from :func:`show`, with exactly the parentheses Python's precedence needs.  A rule builds
``Mul(g, Sub(Num(1), Mul(out, out)))``, never the string ``"g * (1 - out * out)"``, so the adjoint
(and tangent) of every op is data that a test can print, evaluate or compare.

:data:`ZERO` is the symbolic zero: the gradient of an argument that receives none (a target, a
class index) or the tangent of a constant.  The smart constructors :func:`add`, :func:`sub`,
:func:`mul`, :func:`neg` simplify it away (``add(ZERO, x) is x``, ``mul(ZERO, x) is ZERO``), so
no rule and no pass tests for ``None``.

``Code`` is a leaf holding text that codegen made before this module existed (a buffer's window
``h[t + 1]``, a dims variable); its binding strength is read from the text once, when the leaf
is made.  Every other node is structure.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Dict, Iterator, Optional, Tuple, Union

# binding strengths, weakest first: ``a if c else b`` < ``a > b`` < ``a + b`` < ``a * b`` < ``-a``
# < an atom (a name, a call, an index, an attribute)
COND, COMPARE, SUM, PRODUCT, UNARY, ATOM = range(6)


class Expr:
    """A node of a generated expression (frozen dataclasses below)."""
    __slots__ = ()

    def __str__(self) -> str:
        return show(self)


@dataclass(frozen=True)
class Zero(Expr):
    """The symbolic zero (:data:`ZERO`): no gradient, no tangent."""

    def __repr__(self) -> str:
        return "ZERO"


ZERO = Zero()


@dataclass(frozen=True)
class Name(Expr):
    id: str  # a Python name, or a dotted one (np.tanh)


@dataclass(frozen=True)
class Num(Expr):
    value: Union[int, float]


@dataclass(frozen=True)
class Code(Expr):
    """Text made outside the node world (see the module docstring), with its binding strength."""
    text: str
    level: int

    def __init__(self, text: str, level: Optional[int] = None):
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "level", _level_of(text) if level is None else level)


@dataclass(frozen=True)
class Bin(Expr):
    op: str  # '+', '-', '*', '/', '@', '>'
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr


@dataclass(frozen=True)
class Invert(Expr):
    """``~operand`` (of a boolean mask)."""
    operand: Expr


@dataclass(frozen=True)
class Attr(Expr):
    value: Expr
    attr: str


@dataclass(frozen=True)
class Slice(Expr):
    lo: Optional[Expr]
    hi: Optional[Expr]


@dataclass(frozen=True)
class Ellipsis_(Expr):
    pass


ELLIPSIS = Ellipsis_()


@dataclass(frozen=True)
class Index(Expr):
    value: Expr
    index: Tuple[Expr, ...]


@dataclass(frozen=True)
class List_(Expr):
    items: Tuple[Expr, ...]


@dataclass(frozen=True)
class Tuple_(Expr):
    items: Tuple[Expr, ...]


@dataclass(frozen=True)
class Call(Expr):
    func: Expr
    args: Tuple[Expr, ...] = ()
    kwargs: Tuple[Tuple[str, Expr], ...] = ()

    def with_kwarg(self, key: str, value: Expr) -> "Call":
        """The same call with one more keyword argument (``out=`` for a ufunc)."""
        return Call(self.func, self.args, self.kwargs + ((key, value),))


@dataclass(frozen=True)
class IfElse(Expr):
    then: Expr
    cond: Expr
    other: Expr


_BIN_LEVEL = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "@": PRODUCT, ">": COMPARE}


# ---- constructors -------------------------------------------------------------------------------
def node(x) -> Expr:
    """A node for ``x``: nodes pass through, ints and floats become :class:`Num`, text a
    :class:`Code` leaf."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool) or x is None:
        return Code(repr(x), ATOM)
    if isinstance(x, (int, float)):
        return Num(x)
    return Code(str(x))


def call(func: str, *args, **kwargs) -> Call:
    """``func(args..., k=v...)``; keyword arguments keep their order."""
    return Call(Name(func), tuple(node(a) for a in args),
                tuple((k, node(v)) for k, v in kwargs.items()))


def method(value, name: str, *args, **kwargs) -> Call:
    """``value.name(args..., k=v...)``."""
    return Call(Attr(node(value), name), tuple(node(a) for a in args),
                tuple((k, node(v)) for k, v in kwargs.items()))


def subscript(value, *items) -> Index:
    """``value[items]``."""
    return Index(node(value), tuple(node(i) for i in items))


def span(lo, hi) -> Slice:
    """``lo:hi``; an empty text or None leaves that bound out."""
    return Slice(None if lo in (None, "") else node(lo), None if hi in (None, "") else node(hi))


def add(a, b) -> Expr:
    """``a + b``; ``a + -x`` is ``a - x``."""
    a, b = node(a), node(b)
    if a is ZERO:
        return b
    if b is ZERO:
        return a
    if isinstance(b, Neg) or (isinstance(b, Code) and b.level == UNARY and b.text.startswith("-")):
        return Bin("-", a, neg(b))
    return Bin("+", a, b)


def sub(a, b) -> Expr:
    a, b = node(a), node(b)
    if b is ZERO:
        return a
    if a is ZERO:
        return neg(b)
    return Bin("-", a, b)


def mul(a, b) -> Expr:
    a, b = node(a), node(b)
    if a is ZERO or b is ZERO:
        return ZERO
    if _is_one(a):
        return b
    if _is_one(b):
        return a
    return Bin("*", a, b)


def _is_one(e: Expr) -> bool:
    return isinstance(e, Num) and e.value == 1


def div(a, b) -> Expr:
    a = node(a)
    return ZERO if a is ZERO else Bin("/", a, node(b))


def matmul(a, b) -> Expr:
    a, b = node(a), node(b)
    if a is ZERO or b is ZERO:
        return ZERO
    return Bin("@", a, b)


def greater(a, b) -> Expr:
    return Bin(">", node(a), node(b))


def neg(a) -> Expr:
    """``-a``; ``-(-x)`` is ``x``, and so is the negation of a text that is one ``-x``."""
    a = node(a)
    if a is ZERO:
        return ZERO
    if isinstance(a, Neg):
        return a.operand
    if isinstance(a, Code) and a.level == UNARY and a.text.startswith("-"):
        return Code(a.text[1:])
    return Neg(a)


# ---- the printer --------------------------------------------------------------------------------
def level(e: Expr) -> int:
    """How tightly ``e`` binds when printed (see the constants at the top)."""
    if isinstance(e, Code):
        return e.level
    if isinstance(e, Bin):
        return _BIN_LEVEL[e.op]
    if isinstance(e, (Neg, Invert)):
        return UNARY
    if isinstance(e, Num):
        return UNARY if e.value < 0 else ATOM
    if isinstance(e, IfElse):
        return COND
    return ATOM


def show(e: Expr, at_least: int = COND) -> str:
    """The Python text of ``e``, parenthesized if it binds less tightly than ``at_least``."""
    text = _text(e)
    return text if level(e) >= at_least else f"({text})"


def _text(e: Expr) -> str:
    if isinstance(e, Code):
        return e.text
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Num):
        v = e.value
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(e, Bin):  # left-associative: the right operand must bind more tightly
        lv = _BIN_LEVEL[e.op]
        return f"{show(e.left, lv)} {e.op} {show(e.right, lv + 1)}"
    if isinstance(e, Neg):
        return f"-{show(e.operand, ATOM)}"
    if isinstance(e, Invert):
        return f"~{show(e.operand, ATOM)}"
    if isinstance(e, Attr):
        return f"{show(e.value, ATOM)}.{e.attr}"
    if isinstance(e, Index):
        return f"{show(e.value, ATOM)}[{', '.join(_text(i) for i in e.index)}]"
    if isinstance(e, Slice):
        return f"{'' if e.lo is None else _text(e.lo)}:{'' if e.hi is None else _text(e.hi)}"
    if isinstance(e, Ellipsis_):
        return "..."
    if isinstance(e, List_):
        return f"[{', '.join(_text(i) for i in e.items)}]"
    if isinstance(e, Tuple_):
        return f"({', '.join(_text(i) for i in e.items)}{',' if len(e.items) == 1 else ''})"
    if isinstance(e, Call):
        parts = [_text(a) for a in e.args] + [f"{k}={_text(v)}" for k, v in e.kwargs]
        return f"{show(e.func, ATOM)}({', '.join(parts)})"
    if isinstance(e, IfElse):
        return f"{show(e.then, COMPARE)} if {show(e.cond, COMPARE)} else {_text(e.other)}"
    if isinstance(e, Zero):
        raise AssertionError("bug in rnnspec: a symbolic zero reached the printer")
    raise TypeError(f"not an expression node: {e!r}")


def _level_of(text: str) -> int:
    """The binding strength of a Python expression text (for :class:`Code` leaves only)."""
    depth = 0
    lv = UNARY if text.startswith("-") else ATOM
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth:
            continue
        elif text.startswith(" if ", i):
            return COND
        elif ch == " " and i + 2 < len(text) and text[i + 2] == " ":
            op = text[i + 1]
            if op in "<>":
                return COMPARE
            if op in "+-":
                lv = min(lv, SUM)
            elif op in "*/@":
                lv = min(lv, PRODUCT)
    return lv


# ---- walking trees ------------------------------------------------------------------------------
def _children(e: Expr):
    for f in fields(e):
        x = getattr(e, f.name)
        if isinstance(x, Expr):
            yield x
        elif isinstance(x, tuple):
            for item in x:
                if isinstance(item, Expr):
                    yield item
                elif isinstance(item, tuple) and item and isinstance(item[-1], Expr):
                    yield item[-1]  # (a keyword argument's value)


def parts(e: Expr) -> Iterator[Expr]:
    """Every node of ``e``: ``e`` first, then its children's, depth first."""
    yield e
    for c in _children(e):
        yield from parts(c)


def replace(e: Expr, table: Dict[Expr, Expr]) -> Expr:
    """``e`` with every subtree that is a key of ``table`` replaced by its value (the
    outermost match wins)."""
    if e in table:
        return table[e]

    def one(x):
        if isinstance(x, Expr):
            return replace(x, table)
        if isinstance(x, tuple):
            return tuple(one(item) for item in x)
        return x
    if not is_dataclass(e) or not fields(e) or isinstance(e, Code):
        return e
    return type(e)(**{f.name: one(getattr(e, f.name)) for f in fields(e)})


# ---- statements ---------------------------------------------------------------------------------
class Stmt:
    """A statement of generated code (frozen dataclasses below), printed by :func:`show_stmt`."""
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
class Do(Stmt):
    """An expression evaluated for its effect: ``np.tanh(a, out=h[t])``."""
    value: Expr


def assign(target, value, op: str = "=", note: str = "") -> Assign:
    return Assign(node(target), node(value), op, note)


def tuple_of(*items) -> Tuple_:
    return Tuple_(tuple(node(i) for i in items))


def guarded(cond, stmt: Stmt) -> Stmt:
    """``stmt``, under ``if cond:`` when there is a condition (None: always)."""
    return stmt if cond is None else If(node(cond), (stmt,))


def show_stmt(s: Stmt, indent: str = "    ") -> list:
    """The lines of statement ``s`` (a body indented by ``indent``)."""
    if isinstance(s, Assign):
        return [f"{show(s.target)} {s.op} {show(s.value)}" + _note(s.note)]
    if isinstance(s, Do):
        return [show(s.value)]
    if isinstance(s, If):
        lines = [f"if {show(s.cond)}:" + _note(s.note)] + [
            indent + line for b in s.body for line in show_stmt(b)]
        if s.orelse:
            lines += ["else:" + _note(s.else_note)] + [
                indent + line for b in s.orelse for line in show_stmt(b)]
        return lines
    raise TypeError(f"not a statement node: {s!r}")


def _note(text: str) -> str:
    return f"  # {text}" if text else ""
