"""Expression nodes of generated code; their text is made by :mod:`rnnspec.printer`.

In: nodes built by the derivative rules (:mod:`rnnspec.ops`) and by codegen.  Out: the same
nodes, which :func:`rnnspec.printer.show` prints with exactly the parentheses Python's
precedence needs (statements: :mod:`rnnspec.stmt`).  A rule builds
``Mul(g, Sub(Num(1), Mul(out, out)))``, never the string ``"g * (1 - out * out)"``, so the adjoint
(and tangent) of every op is data that a test can print, evaluate or compare.

:data:`ZERO` is the symbolic zero: the gradient of an argument that receives none (a target, a
class index) or the tangent of a constant.  The smart constructors :func:`add`, :func:`sub`,
:func:`mul`, :func:`neg` simplify it away (``add(ZERO, x) is x``, ``mul(ZERO, x) is ZERO``), so
no rule and no pass tests for ``None``.

``Code`` is a leaf holding text made outside the node world (the few that remain are listed in
docs/architecture.md, Known debts); its binding strength is read from the text once, when the
leaf is made.  Every other node is structure; :class:`Lit` is a Python value printed with repr
(a string, a table).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Dict, Iterator, Optional, Tuple, Union

# binding strengths, weakest first: ``a if c else b`` < ``not a`` < ``a > b`` < ``a + b`` <
# ``a * b`` < ``-a`` < an atom (a name, a call, an index, an attribute, a literal)
COND, NOT, COMPARE, SUM, PRODUCT, UNARY, ATOM = range(7)


class Expr:
    """A node of a generated expression (frozen dataclasses below)."""
    __slots__ = ()

    def __str__(self) -> str:
        from .printer import show
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
class Lit(Expr):
    """A Python value printed with ``repr``: a string, None, a bool, a table (dict, tuple)."""
    value: object


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
    op: str  # '+', '-', '*', '/', '@', or a comparison: '>', '<', 'in', 'is', 'is not'
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr


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
    bare: bool = False  # ``a, b`` (the two sides of an unpacking assignment), not ``(a, b)``


@dataclass(frozen=True)
class Dict_(Expr):
    """``{k: v, **d}`` (a key None: ``**value``).  ``lines``: one item a line, each with its
    comment in ``notes`` ('' for none); ``fill``: items filled into lines of that many columns,
    continued under the brace (see :func:`rnnspec.printer.show_stmt`)."""
    items: Tuple[Tuple[Optional[Expr], Expr], ...]
    lines: bool = False
    notes: Tuple[str, ...] = ()
    fill: int = 0


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


_BIN_LEVEL = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "@": PRODUCT, ">": COMPARE,
              "<": COMPARE, "in": COMPARE, "is": COMPARE, "is not": COMPARE}


# ---- constructors -------------------------------------------------------------------------------
def node(x) -> Expr:
    """A node for ``x``: nodes pass through, ints and floats become :class:`Num`, None and
    bools :class:`Lit`, an identifier a :class:`Name`, other text a :class:`Code` leaf."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool) or x is None:
        return Lit(x)
    if isinstance(x, (int, float)):
        return Num(x)
    return Name(x) if x.isidentifier() else Code(str(x))


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


def compare(a, op: str, b) -> Expr:
    """``a op b`` for a comparison ``op`` ('<', 'in', 'is not', ...)."""
    return Bin(op, node(a), node(b))


def lit(value) -> Lit:
    return Lit(value)


def dict_of(pairs, lines: bool = False, notes=()) -> Dict_:
    """``{k: v, ...}`` from (key, value) pairs, each a node or a value for :func:`node`
    (a key None: ``**value``, a text key a string literal)."""
    return Dict_(tuple((k if k is None or isinstance(k, Expr) else Lit(k), node(v))
                       for k, v in pairs), lines, tuple(notes))


def tuple_of(*items, bare: bool = False) -> Tuple_:
    return Tuple_(tuple(node(i) for i in items), bare)


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
