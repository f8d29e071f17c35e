"""What the check hands on: :class:`Model` and the records it holds.

In: nothing (plain data).  Out: :class:`Ty` (the type of an expression: shape, sizes, time kind
and axis), one record per declared name (:class:`InputInfo`, :class:`TargetInfo`,
:class:`ParamInfo`, :class:`StateInfo`, :class:`ValueInfo`), the elaborated calls
(:class:`Connection`, :class:`Attention`), the losses (:class:`LossInfo`) and the :class:`Model`
that graph, schedule and codegen read.  The time kinds ``STEP``, ``STATIC``, ``PARAM`` order
what an expression depends on: every step, one vector per sequence, or only the parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import ast
from ..delays import Delay
from ..recurrences import Cycles
from ..sizes import Size

STEP, STATIC, PARAM = 2, 1, 0  # "time kinds": per step (T, B, n), per sequence (B, n), shared


@dataclass(frozen=True)
class Ty:
    """The type of an expression: shape ('scalar' | 'vec' | 'mat'), sizes, and time kind."""
    shape: str
    rows: Optional[Size] = None
    cols: Optional[Size] = None
    tk: int = PARAM
    axis: Optional[str] = None  # the time axis of a per-step value

    def describe(self) -> str:
        if self.shape == "scalar":
            return "a scalar"
        if self.shape == "vec":
            return f"a vector of size {self.rows}"
        return f"a {self.rows}×{self.cols} matrix"


class _Declared:
    """A record whose time axis is its declaration's (None for a static one)."""

    @property
    def axis(self) -> Optional[str]:
        return self.decl.axis


@dataclass
class InputInfo(_Declared):
    name: str
    seq: bool
    size: Size
    decl: ast.InputDecl
    kind: str = "real"  # 'real' | 'class' (class indices, read only by embed() and onehot())


@dataclass
class TargetInfo(_Declared):
    name: str
    seq: bool
    kind: str  # 'class' | 'real'
    size: Size
    decl: ast.TargetDecl


@dataclass
class ParamInfo:
    name: str
    shape: Tuple[Size, ...]
    init: str
    init_arg: Optional[float]
    node: ast.Node  # where it is declared (a ParamDecl, or the connection's Call)
    auto: bool = False  # created by a connection

    @property
    def kind(self) -> str:
        return ("scalar", "vec", "mat")[len(self.shape)]


@dataclass
class StateInfo:
    name: str
    size: Size
    init: str  # 'zeros' | 'given' | 'param' | 'input'
    init_name: Optional[str]
    decl: ast.StateDecl


@dataclass
class ValueInfo:
    name: str
    seq: bool
    eq: ast.Equation
    size: Optional[Size] = None
    is_softmax: bool = False

    @property
    def axis(self) -> Optional[str]:
        return self.eq.axis


@dataclass
class Connection:
    """An ``affine``/``gate`` call: ``act(sum_i W_i @ source_i + b)``."""
    prefix: str
    weights: List[Tuple[str, ast.Expr]]
    bias: Optional[str]
    activation: Optional[str]  # 'sigmoid' for gate
    size: Size


@dataclass
class Attention:
    """``attend(query, keys, values)``: a softmax over the steps of a whole sequence of the
    scores score(query, keys[t]), and the sum of values[t] weighted by it."""
    score: str
    keys: str  # the name of a sequence (input or value)
    values: str
    key_axis: str
    params: Dict[str, str]  # role ('W', 'v', 'Wp', 'vp') -> parameter name
    window: Optional[float]  # d of local attention's Gaussian window
    causal: bool  # only keys up to the query's own step (masked self-attention)
    owner: str
    regroup: Optional[str] = None  # pooling over w in s with a shared query: one vector per step s


@dataclass
class LossInfo:
    func: str  # 'cross_entropy' | 'squared_error'
    pred: ast.Ref
    target: ast.Ref
    reduce: str
    steps: Optional[Tuple[ast.Index, ...]]  # None: every step (for a per-step prediction)
    node: ast.Loss


@dataclass
class Model:
    spec: ast.Spec
    dims: Dict[str, int]
    axis: Optional[str]
    inputs: Dict[str, InputInfo]
    targets: Dict[str, TargetInfo]
    params: Dict[str, ParamInfo]
    consts: Dict[str, float]
    states: Dict[str, StateInfo]
    values: Dict[str, ValueInfo]
    losses: List[LossInfo]
    axes: List[str]  # time axes in order of first use; the first is the main one
    types: Dict[ast.Node, Ty]
    connections: Dict[ast.Call, Connection]
    attentions: Dict[ast.Call, Attention]
    feedbacks: List[ast.Call]  # feedback(teacher, free) calls: training vs free-running inputs
    references: List[Tuple[str, str, Delay]]  # (source, value, delay), per read in an equation
    warnings: list = field(default_factory=list)
    nested: Dict[str, str] = field(default_factory=dict)  # [w in s]: inner axis w -> outer s
    # the cycles of the references between values (rnnspec.recurrences), found by the check
    cycles: Optional[Cycles] = None
    # embed(x[t], n) calls -> the name of the (V, n) embedding matrix each creates
    embeds: Dict[ast.Call, str] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.spec.filename

    @property
    def source(self) -> str:
        return self.spec.source
