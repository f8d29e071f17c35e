"""The abstract syntax tree of a .rnn spec: frozen dataclasses that carry their source position.

In: nothing (these are plain data types).  Out: the node classes that :func:`rnnspec.parse.parse`
produces and every later stage reads.  Every node has ``line`` and ``column`` (1-based) of its
first character; equality and hashing include the position, so two textually equal expressions on
different lines are different nodes (later stages key dictionaries by node).  A node parsed from
an imported file also carries its ``origin`` (that file's name and text), so that errors about it
show that file; ``origin`` is None for the file being compiled.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Optional, Tuple, Union


@dataclass(frozen=True)
class Origin:
    """The file a node was parsed from: its name (as shown in messages) and its text."""
    filename: str
    source: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Node:
    line: int = field(kw_only=True, default=0)
    column: int = field(kw_only=True, default=0)
    origin: Optional[Origin] = field(kw_only=True, default=None, repr=False)

    def where(self) -> str:
        """``line 12``, or ``lib/cells.rnn line 12`` for a node from an imported file."""
        return f"line {self.line}" if self.origin is None else \
            f"{self.origin.filename} line {self.line}"


# ----- sizes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeTerm(Node):
    coef: int
    dim: Optional[str]  # None: the term is the constant ``coef``


@dataclass(frozen=True)
class SizeExpr(Node):
    terms: Tuple[SizeTerm, ...]


# ----- expressions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Index(Node):
    """A time index: ``t - 2`` (kind 'rel', offset -2, var 't'), ``3`` ('abs'), ``end - 1`` ('end')."""
    kind: str
    offset: int
    var: Optional[str] = None

    def text(self) -> str:
        if self.kind == "rel":
            if self.offset == 0:
                return self.var
            return f"{self.var}{'+' if self.offset > 0 else '-'}{abs(self.offset)}"
        if self.kind == "abs":
            return str(self.offset)
        return "end" if self.offset == 0 else f"end-{-self.offset}"


@dataclass(frozen=True)
class Num(Node):
    value: float


@dataclass(frozen=True)
class Ref(Node):
    name: str
    index: Optional[Index] = None


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: "Expr"


@dataclass(frozen=True)
class Binary(Node):
    op: str  # one of + - * / @
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class KwArg(Node):
    name: str
    value: "Expr"


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: Tuple["Expr", ...]
    kwargs: Tuple[KwArg, ...] = ()


Expr = Union[Num, Ref, Unary, Binary, Call]


# ----- statements --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DimDecl(Node):
    name: str
    value: int


@dataclass(frozen=True)
class InputDecl(Node):
    name: str
    axis: Optional[str]  # None: a static (per-sequence) input
    size: SizeExpr
    within: Optional[str] = None  # [w in s]: the outer axis s of a nested axis w
    kind: str = "real"  # 'real' (vectors) or 'class' (class indices, read by embed/onehot)


@dataclass(frozen=True)
class TargetDecl(Node):
    name: str
    axis: Optional[str]
    kind: str  # 'class' or 'real'
    size: SizeExpr
    start: Optional[int] = None  # the class of y[0] (a start token), for feeding y[t-1] back
    within: Optional[str] = None  # [w in s]: the outer axis s of a nested axis w


@dataclass(frozen=True)
class Init(Node):
    name: str
    arg: Optional[float] = None


@dataclass(frozen=True)
class ParamDecl(Node):
    name: str
    shape: Tuple[SizeExpr, ...]  # () scalar, (n,) vector, (m, n) matrix
    init: Optional[Init] = None


@dataclass(frozen=True)
class StateDecl(Node):
    name: str
    size: SizeExpr
    init: Optional[str] = None  # 'zeros', 'given', or the name of a parameter or static input
    init_line: int = 0
    init_column: int = 0


@dataclass(frozen=True)
class ConstDecl(Node):
    name: str
    value: float


@dataclass(frozen=True)
class Equation(Node):
    name: str
    axis: Optional[str]
    size: Optional[SizeExpr]
    expr: Expr
    within: Optional[str] = None  # [w in s]: the outer axis s of a nested axis w


@dataclass(frozen=True)
class StepSelect(Node):
    var: str
    steps: Tuple[Index, ...]


@dataclass(frozen=True)
class Loss(Node):
    reduce: str  # 'sum' or 'mean'
    expr: Expr
    select: Optional[StepSelect] = None


@dataclass(frozen=True)
class BlockDecl(Node):
    """``block NAME(p1, p2) -> out { ... }``: a sub-network used as ``h[t] = NAME(x[t], ...)``."""
    name: str
    params: Tuple[str, ...]
    output: str
    statements: Tuple["Stmt", ...]


@dataclass(frozen=True)
class Word(Node):
    """A name or a quoted file name of an import statement, with its position."""
    text: str


@dataclass(frozen=True)
class DimBinding(Node):
    """``in = hidden`` in ``import "f.rnn" as NAME(in = hidden) -> OUT``."""
    name: str
    size: SizeExpr


@dataclass(frozen=True)
class ImportDecl(Node):
    """``import "f.rnn"`` (all blocks of f.rnn), ``import a, b from "f.rnn"`` (blocks a and b),
    ``import "f.rnn" as NAME -> OUT`` (the whole spec f.rnn as the block NAME returning OUT)."""
    path: Word
    names: Tuple[Word, ...] = ()
    alias: Optional[Word] = None
    output: Optional[Word] = None
    dims: Tuple[DimBinding, ...] = ()  # dimensions of f.rnn set for this use


Stmt = Union[DimDecl, InputDecl, TargetDecl, ParamDecl, StateDecl, ConstDecl, Equation, Loss,
             BlockDecl, ImportDecl]


@dataclass(frozen=True)
class Spec(Node):
    statements: Tuple[Stmt, ...]
    source: str = field(default="", compare=False, repr=False)
    filename: str = field(default="<spec>", compare=False)
    blocks: Tuple[str, ...] = field(default=(), compare=False)  # names of expanded blocks
    imports: Tuple[Tuple[str, str], ...] = field(default=(), compare=False)  # (name, text) of
    # the imported files, names relative to this file's directory


def stamp(node, origin: Origin):
    """``node`` and every node inside it with ``origin`` (the statements of an imported file)."""
    if isinstance(node, tuple):
        return tuple(stamp(n, origin) for n in node)
    if not isinstance(node, Node):
        return node
    changes = {f.name: stamp(getattr(node, f.name), origin) for f in fields(node)
               if f.name not in ("line", "column", "origin", "source")}
    return replace(node, origin=origin, **changes)


def nodes(node):
    """Every node inside ``node`` (a statement, an expression, a tuple of them), itself first."""
    if isinstance(node, tuple):
        for n in node:
            yield from nodes(n)
        return
    if not isinstance(node, Node):
        return
    yield node
    for f in fields(node):
        if f.name not in ("line", "column", "origin", "source"):
            yield from nodes(getattr(node, f.name))


def walk(expr: "Expr"):
    """Every node of an expression, the expression first (keyword values included)."""
    yield expr
    if isinstance(expr, Unary):
        yield from walk(expr.operand)
    elif isinstance(expr, Binary):
        yield from walk(expr.left)
        yield from walk(expr.right)
    elif isinstance(expr, Call):
        for a in expr.args:
            yield from walk(a)
        for k in expr.kwargs:
            yield from walk(k.value)


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2}


def unparse(expr: Expr, prec: int = 0) -> str:
    """Spec text of an expression (normalized spacing), for messages and code comments."""
    if isinstance(expr, Num):
        v = expr.value
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(expr, Ref):
        return expr.name if expr.index is None else f"{expr.name}[{expr.index.text()}]"
    if isinstance(expr, Unary):
        text = "-" + unparse(expr.operand, 3)
        return f"({text})" if prec > 3 else text
    if isinstance(expr, Binary):
        p = _PREC[expr.op]
        text = f"{unparse(expr.left, p)} {expr.op} {unparse(expr.right, p + 1)}"
        return f"({text})" if p < prec else text
    if isinstance(expr, Call):
        args = [unparse(a) for a in expr.args] + [f"{k.name}={unparse(k.value)}" for k in expr.kwargs]
        return f"{expr.func}({', '.join(args)})"
    raise TypeError(f"not an expression: {expr!r}")
