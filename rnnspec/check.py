"""Stage 2, check: :class:`rnnspec.ast.Spec` -> :class:`Model` (a validated, typed network).

In: the AST from :func:`rnnspec.parse.parse` and optional dimension overrides.  Out: a ``Model``
holding the symbol table (dims, inputs, targets, parameters -- including those created by
``affine``/``gate`` connections --, constants, states, values, losses), the type of every
expression node, and the warnings.  Every user error (undefined or duplicate names, shape
mismatches, references to future steps or to values with no initial value, cycles inside one
time step, losses without targets, ...) is collected with its position; if there is any, a single
:class:`SpecError` listing all of them is raised.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import networkx as nx

from . import ast
from .ast import unparse
from .errors import Reporter
from .ops import RULES
from .sizes import Size

UNARY_FUNCS = ("tanh", "sigmoid", "relu", "identity", "exp", "log")
VECTOR_FUNCS = ("softmax", "concat")
CONNECTIONS = ("affine", "gate")
ATTENTION = ("attend",)
FEEDBACK = ("feedback", "onehot")
SCORES = ("dot", "scaled", "cosine", "general", "concat")
LOSS_FUNCS = tuple(sorted(n for n, r in RULES.items() if r.loss))  # the loss ops of ops.py
FUNCTIONS = UNARY_FUNCS + VECTOR_FUNCS + CONNECTIONS + ATTENTION + FEEDBACK
INITIALIZERS = {  # name -> (takes an argument, needs a matrix)
    "zeros": (False, False), "ones": (False, False), "constant": (True, False),
    "normal": (True, False), "uniform": (True, False), "xavier": (False, True),
    "glorot": (False, True), "orthogonal": (False, True),
}
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


@dataclass
class InputInfo:
    name: str
    seq: bool
    size: Size
    decl: ast.InputDecl

    @property
    def axis(self) -> Optional[str]:
        return self.decl.axis


@dataclass
class TargetInfo:
    name: str
    seq: bool
    kind: str  # 'class' | 'real'
    size: Size
    decl: ast.TargetDecl

    @property
    def axis(self) -> Optional[str]:
        return self.decl.axis


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
    references: List[Tuple[str, str, object]]  # (source, value, delay or 'whole'), per equation ref
    warnings: list = field(default_factory=list)
    nested: Dict[str, str] = field(default_factory=dict)  # [w in s]: inner axis w -> outer s

    @property
    def filename(self) -> str:
        return self.spec.filename

    @property
    def source(self) -> str:
        return self.spec.source


def check(spec: ast.Spec, dims: Optional[Dict[str, int]] = None, cli: bool = False) -> Model:
    """Validate ``spec`` (with dimension overrides ``dims``) and return the typed :class:`Model`.
    Errors about ``dims`` name them as the API takes them (``dims={'n': 8}``), or as the
    command line does (``--dim n=8``) with ``cli``."""
    return _Checker(spec, dims or {}, cli).run()


MAX_SUGGESTIONS = 20  # undefined names given a did-you-mean (the rest only the plain hint)


def _suggest(name: str, names) -> str:
    return _closest(name, tuple(names))


@functools.lru_cache(maxsize=256)  # a name misspelt many times is looked up once
def _closest(name: str, names: Tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"did you mean '{close[0]}'?" if close else ""


MAX_STEP_BYTES = 2 ** 30  # a delay or step number may ask for at most this per sequence


class _Checker:
    def __init__(self, spec: ast.Spec, overrides: Dict[str, int], cli: bool = False):
        self.spec = spec
        self.overrides = dict(overrides)
        self.override_text = (lambda n, v: f"--dim {n}={v}") if cli else \
            (lambda n, v: f"dims={{{n!r}: {v!r}}}")  # how the user wrote a dimension override
        self.rep = Reporter(spec.source, spec.filename)
        self.undefined = 0  # undefined names reported so far (did-you-mean for the first few)
        self.dims: Dict[str, int] = {}
        self.decl_at: Dict[str, ast.Node] = {}
        self.kind_of: Dict[str, str] = {}
        self.inputs: Dict[str, InputInfo] = {}
        self.targets: Dict[str, TargetInfo] = {}
        self.params: Dict[str, ParamInfo] = {}
        self.consts: Dict[str, float] = {}
        self.states: Dict[str, StateInfo] = {}
        self.values: Dict[str, ValueInfo] = {}
        self.losses: List[LossInfo] = []
        self.types: Dict[ast.Node, Ty] = {}
        self.connections: Dict[ast.Call, Connection] = {}
        self.open_prefixes: set = set()  # automatic prefixes taken by connections being checked
        self.attentions: Dict[ast.Call, Attention] = {}
        self.feedbacks: List[ast.Call] = []
        self.teacher_side = False  # typing the first argument of feedback()
        self.references: List[Tuple[str, str, object]] = []
        self.used: set = set()
        self.axis: Optional[str] = None  # the main (first) time axis
        self.axes: List[str] = []
        self.nested: Dict[str, str] = {}  # [w in s]: inner axis -> outer axis
        self.nested_at: Dict[str, ast.Node] = {}
        self.cur_axis: Optional[str] = None  # the axis of the equation being typed
        self._inferring: set = set()
        self._typed_values: set = set()

    # ----- entry -----------------------------------------------------------------------------
    def run(self) -> Model:
        stmts = self.spec.statements
        for st in stmts:
            if isinstance(st, ast.DimDecl):
                self.declare_dim(st)
        dim_decls = {st.name: st for st in stmts if isinstance(st, ast.DimDecl)}
        for name, value in self.overrides.items():
            given = self.override_text(name, value)
            if isinstance(value, str) and value.strip().lstrip("+").isdigit():
                value = int(value)
            if name not in self.dims:
                self.rep.error((1, 1), f"{given}: the spec has no dimension '{name}'",
                               _suggest(name, self.dims) or f"its dimensions are: "
                               f"{', '.join(self.dims) or 'none'}")
            elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self.rep.error(dim_decls[name], f"{given}: a dimension must be a "
                               f"positive integer",
                               f"for example {self.override_text(name, 8)}")
            else:
                self.dims[name] = value
        for st in stmts:
            if isinstance(st, ast.DimDecl):
                continue
            if isinstance(st, ast.InputDecl):
                self.declare_input(st)
            elif isinstance(st, ast.TargetDecl):
                self.declare_target(st)
            elif isinstance(st, ast.ParamDecl):
                self.declare_param(st)
            elif isinstance(st, ast.ConstDecl):
                self.declare(st.name, st, "const")
                self.consts[st.name] = st.value
            elif isinstance(st, ast.StateDecl):
                self.declare_state(st)
            elif isinstance(st, ast.Equation):
                self.declare_value(st)
        if self.axis in self.nested:  # the outer axis is the main one: T is its number of steps
            self.axis = self.nested[self.axis]
            self.axes.remove(self.axis)
            self.axes.insert(0, self.axis)
        self.check_module_names(dim_decls)
        for st in stmts:  # state initial values may name parameters/inputs declared later
            if isinstance(st, ast.StateDecl) and st.name in self.states:
                self.resolve_state_init(st)
        for name in self.typing_order():
            try:
                self.value_size(name, self.values[name].eq)
            except RecursionError:  # only a cycle of values can be this deep (typing_order)
                self.rep.error(self.values[name].eq, f"cannot tell the size of '{name}': it is "
                               f"in a cycle of values reading each other, too long to follow",
                               f"give it a size ({name}[t]: SIZE = ...), or make one of the "
                               f"values of the cycle a state")
                self.rep.raise_if_errors()
        for st in stmts:
            if isinstance(st, ast.Loss):
                self.check_loss(st)
        self.check_states()
        self.check_cycles()
        self.check_unused()
        self.rep.raise_if_errors()
        return Model(self.spec, self.dims, self.axis, self.inputs, self.targets, self.params,
                     self.consts, self.states, self.values, self.losses, self.axes, self.types,
                     self.connections, self.attentions, self.feedbacks, self.references,
                     self.rep.warnings, dict(self.nested))

    # ----- declarations ----------------------------------------------------------------------
    def declare(self, name: str, node: ast.Node, kind: str) -> bool:
        if name in self.decl_at:
            first = self.decl_at[name]
            self.rep.error(node, f"'{name}' is already defined (as a {self.kind_of[name]} at "
                           f"{first.where()})", "give each input, target, parameter, state "
                           "and value its own name")
            return False
        self.decl_at[name] = node
        self.kind_of[name] = kind
        return True

    def check_module_names(self, dim_decls) -> None:
        """The two name tables of the generated module that spec names share with it: its dims
        (shapes read ``(T, B, n)``: T and B, per time axis ``T_w``/``B_w``, and its dtype,
        last steps and lengths) and the keys of ``outputs`` besides the values ('final',
        'attention'; 'loss' is a keyword).  Python variables need no such rule: the
        generator names them apart (codegen's namer)."""
        own = {"T": "the number of steps", "B": "the batch size", "dtype": "the float type",
               "last": "each sequence's last step", "lengths": "each sequence's length"}
        per_axis = [(k, what) for k, what in own.items() if k != "dtype"]
        for axis in self.axes:
            own.update({f"{k}_{axis}": f"{what} over {axis}" for k, what in per_axis})
        for name, st in dim_decls.items():
            if name in own:
                self.rep.error(st, f"a dimension cannot be called '{name}': the generated module "
                               f"uses '{name}' for {own[name]} in its shapes and dims",
                               f"rename it, for example dim {name.lower()}_size = {st.value}")
        for name in ("final", "attention"):
            if name in self.values or name in self.states:
                what = ("the states after the last step" if name == "final" else
                        "the attention weights")
                self.rep.error(self.decl_at[name], f"a value or state cannot be called "
                               f"'{name}': outputs['{name}'] holds {what}",
                               f"rename it, for example {name}_")

    def declare_dim(self, st: ast.DimDecl) -> None:
        if st.name in self.dims:
            self.rep.error(st, f"dimension '{st.name}' is already defined",
                           "define each dimension once")
            return
        if st.value < 1:
            self.rep.error(st, f"dimension '{st.name}' must be at least 1, not {st.value}",
                           f"for example: dim {st.name} = 8")
        self.dims[st.name] = st.value

    def size(self, se: ast.SizeExpr) -> Optional[Size]:
        acc = Size()
        ok = True
        for term in se.terms:
            if term.dim is None:
                acc = acc + Size((), term.coef)
            elif term.dim not in self.dims:
                self.rep.error(term, f"unknown dimension '{term.dim}'",
                               _suggest(term.dim, self.dims)
                               or f"declare it first: dim {term.dim} = 8")
                ok = False
            else:
                acc = acc + Size(((term.dim, term.coef),), 0)
        if ok and acc.terms == () and acc.const < 1:
            self.rep.error(se, "a size must be at least 1", "use a dimension name or a positive "
                           "integer")
            return None
        return acc if ok else None

    def use_axis(self, name: str, node: ast.Node, within: Optional[str] = None) -> None:
        """Sequences may run over several time axes (a source t = 1..Tx, a target i = 1..Ty);
        ``[w in s]`` nests axis w in axis s: every step s has its own sequence of steps w (the
        words of each sentence), run as one batch of (steps s) x B sequences."""
        if within is not None:
            self.nest(name, within, node)
        if self.axis is None:
            self.axis = name
        if name not in self.axes:
            self.axes.append(name)

    def nest(self, inner: str, outer: str, node: ast.Node) -> None:
        if inner == outer:
            self.rep.error(node, f"axis '{inner}' cannot be inside itself",
                           f"nest it in another axis: [{inner} in s]")
            return
        deep = [(k, v) for k, v in self.nested.items() if v == inner or k == outer]
        if deep:
            k, v = deep[0]
            self.rep.error(node, f"[{inner} in {outer}] would nest axes two levels deep: "
                           f"[{k} in {v}] is declared at line {self.nested_at[k].line}",
                           "one level of nesting is supported (words in sentences)")
            return
        if inner in self.nested and self.nested[inner] != outer:
            self.rep.error(node, f"axis '{inner}' is inside '{self.nested[inner]}' (line "
                           f"{self.nested_at[inner].line}), not '{outer}'",
                           f"write [{inner} in {self.nested[inner]}]")
            return
        if inner not in self.nested:
            self.use_axis(outer, node)
            self.nested[inner] = outer
            self.nested_at[inner] = node

    def declare_input(self, st: ast.InputDecl) -> None:
        if st.axis:
            self.use_axis(st.axis, st, st.within)
        size = self.size(st.size)
        if self.declare(st.name, st, "sequence input" if st.axis else "static input") and size:
            self.inputs[st.name] = InputInfo(st.name, st.axis is not None, size, st)

    def declare_target(self, st: ast.TargetDecl) -> None:
        if st.axis:
            self.use_axis(st.axis, st, st.within)
        size = self.size(st.size)
        if st.start is not None and (st.kind != "class" or not st.axis):
            self.rep.error(st, f"only a sequence of class targets has a start value "
                           f"({st.name}[0])", f"remove '= {st.start}'")
        if self.declare(st.name, st, "target") and size:
            self.targets[st.name] = TargetInfo(st.name, st.axis is not None, st.kind, size, st)

    def declare_param(self, st: ast.ParamDecl) -> None:
        shape = tuple(self.size(s) for s in st.shape)
        init = st.init.name if st.init else ("xavier" if len(shape) == 2 else "zeros")
        arg = st.init.arg if st.init else None
        if st.init:
            self.check_init(st.init, init, arg, len(shape))
        if self.declare(st.name, st, "parameter") and all(s is not None for s in shape):
            self.params[st.name] = ParamInfo(st.name, shape, init, arg, st)

    def check_init(self, node: ast.Node, name: str, arg, ndim: int) -> None:
        if name not in INITIALIZERS:
            self.rep.error(node, f"unknown initializer '{name}'", _suggest(name, INITIALIZERS)
                           or f"use one of: {', '.join(INITIALIZERS)}")
            return
        takes_arg, needs_matrix = INITIALIZERS[name]
        if takes_arg and arg is None:
            example = {"constant": "constant(0.5)", "normal": "normal(0.1)",
                       "uniform": "uniform(0.1)"}[name]
            self.rep.error(node, f"initializer '{name}' needs an argument",
                           f"for example: {example}")
        elif not takes_arg and arg is not None:
            self.rep.error(node, f"initializer '{name}' takes no argument", f"write {name}")
        elif name in ("normal", "uniform") and arg is not None and arg < 0:
            self.rep.error(node, f"{name}({arg:g}): the scale must not be negative",
                           f"for example {name}(0.1)")
        if needs_matrix and ndim != 2:
            self.rep.error(node, f"initializer '{name}' is for matrices",
                           "use zeros, constant(c), normal(std) or uniform(a) for vectors and "
                           "scalars")

    def declare_state(self, st: ast.StateDecl) -> None:
        size = self.size(st.size)
        if not self.declare(st.name, st, "state") or size is None:
            return
        self.states[st.name] = StateInfo(st.name, size, "zeros", None, st)

    def resolve_state_init(self, st: ast.StateDecl) -> None:
        info = self.states[st.name]
        pos = (st.init_line, st.init_column)
        init = st.init or "zeros"
        if init in ("zeros", "given"):
            info.init = init
            return
        axis = self.values[st.name].axis if st.name in self.values else None
        if axis in self.nested and (init in self.inputs or init in self.values):
            self.rep.error(pos, f"initial value of state '{st.name}': '{init}' is one vector per "
                           f"sequence, but '{st.name}' runs over steps {axis} inside every step "
                           f"{self.nested[axis]}", "start it from zeros, a parameter, or given "
                           f"initial states (state0, one per step {self.nested[axis]})")
            return
        if init in self.params:
            p = self.params[init]
            self.used.add(init)
            if p.shape != (info.size,):
                shape = "×".join(s.text() for s in p.shape) or "scalar"
                self.rep.error(pos, f"initial value of state '{st.name}': parameter '{init}' has "
                               f"shape {shape}, but the state has size {info.size}",
                               f"declare: param {init}: {info.size} = zeros")
            info.init, info.init_name = "param", init
        elif init in self.inputs:
            inp = self.inputs[init]
            self.used.add(init)
            if inp.seq:
                self.rep.error(pos, f"initial value of state '{st.name}': '{init}' is a "
                               f"sequence input", f"declare it static: input {init}: {inp.size}")
            elif inp.size != info.size:
                self.rep.error(pos, f"initial value of state '{st.name}': input '{init}' has size "
                               f"{inp.size}, but the state has size {info.size}",
                               "the initial value must have the state's size")
            info.init, info.init_name = "input", init
        elif init in self.states:
            self.rep.error(pos, f"initial value of state '{st.name}': '{init}' is a sequence",
                           f"pick one step: C = {init}[end], then state {st.name}: ... = C")
        elif init in self.values and init not in self.states:
            # a static value computed by the network, e.g. an encoder's context C = h[end]
            self.used.add(init)
            info.init, info.init_name = "value", init
            self.references.append((init, st.name, "init"))
        else:
            self.rep.error(pos, f"unknown initial value '{init}' for state '{st.name}'",
                           _suggest(init, list(self.params) + list(self.inputs) +
                                    list(self.values))
                           or "use zeros, given (passed in state0), a parameter, a static "
                           "input or a static value")

    def declare_value(self, eq: ast.Equation) -> None:
        if eq.axis:
            self.use_axis(eq.axis, eq, eq.within)
        elif eq.within:  # pragma: no cover - the grammar puts `in` inside an axis
            self.rep.error(eq, "only a time axis can be nested", "write name[w in s] = ...")
        if eq.name in self.states:
            st = self.states[eq.name]
            if eq.name in self.values:
                self.rep.error(eq, f"'{eq.name}' already has an equation ("
                               f"{self.values[eq.name].eq.where()})", "define each value once")
                return
            if not eq.axis:
                self.rep.error(eq, f"state '{eq.name}' needs a per-step equation",
                               f"write {eq.name}[t] = ...")
                return
            self.values[eq.name] = ValueInfo(eq.name, True, eq, st.size)
            self.check_annotation(eq, st.size)
            return
        if eq.name in self.values:
            self.rep.error(eq, f"'{eq.name}' already has an equation ("
                           f"{self.values[eq.name].eq.where()})", "define each value once")
            return
        if not self.declare(eq.name, eq, "value"):
            return
        size = self.size(eq.size) if eq.size else None
        self.values[eq.name] = ValueInfo(eq.name, eq.axis is not None, eq, size)

    def check_annotation(self, eq: ast.Equation, size: Size) -> None:
        if eq.size is not None:
            ann = self.size(eq.size)
            if ann is not None and ann != size:
                self.rep.error(eq.size, f"'{eq.name}' is declared with size {size} but "
                               f"annotated {ann}", "make the sizes agree")

    # ----- values and expressions ------------------------------------------------------------
    def typing_order(self) -> List[str]:
        """The values, each after the values of unknown size it reads (declaration order
        otherwise, so parameters are created in the same order as typing them one by one
        would): typing them so never recurses deeply, however long a chain of values that read
        later-declared ones is (an iterative depth-first search; a cycle in any order)."""
        order: List[str] = []
        seen: set = set()
        for root in self.values:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter(self._reads(root)))]
            while stack:
                name, todo = stack[-1]
                nxt = next((n for n in todo if n not in seen), None)
                if nxt is None:
                    stack.pop()
                    order.append(name)
                else:
                    seen.add(nxt)
                    stack.append((nxt, iter(self._reads(nxt))))
        return order

    def _reads(self, name: str) -> List[str]:
        """The values whose typing typing ``name`` would start (:meth:`ref` types a value of
        unknown size on the spot), in the order it would."""
        return [n.name for n in ast.walk(self.values[name].eq.expr)
                if isinstance(n, ast.Ref) and n.name in self.values and n.name != name
                and self.values[n.name].size is None]

    def value_size(self, name: str, eq: ast.Equation) -> Optional[Size]:
        info = self.values[name]
        if name in self._typed_values:
            return info.size
        if name in self._inferring:
            return info.size  # recursion through a (possibly illegal) cycle: use what is known
        self._inferring.add(name)
        outer, self.cur_axis = self.cur_axis, info.axis
        ty = self.expr(eq.expr, info.seq, name, expected=info.size)
        self.cur_axis = outer
        self._inferring.discard(name)
        self._typed_values.add(name)
        if ty is None:
            return info.size
        if ty.shape != "vec":
            if ty.shape == "scalar" and info.size is None and ty.tk == PARAM:
                self.rep.error(eq, f"'{name}' is a scalar expression of parameters and constants",
                               "use a const or a scalar param instead of an equation")
            elif ty.shape == "mat":
                self.rep.error(eq, f"'{name}' would be a matrix; values of a network are vectors",
                               "multiply it with a vector using @")
            elif info.size is None:
                self.rep.error(eq, f"cannot tell the size of '{name}': the right-hand side is a "
                               f"scalar", f"annotate it: {name}[{eq.axis or 't'}]: hidden = ...")
            elif info.seq and ty.tk != STEP:  # as for a vector below (a scalar never depends on t)
                self.rep.error(eq, f"'{name}[{eq.axis}]' does not depend on the step",
                               f"make it a static value: {name}: {info.size} = ...")
            return info.size
        if info.size is not None and ty.rows != info.size:
            self.rep.error(eq.expr, f"'{name}' has size {info.size} but its equation gives size "
                           f"{ty.rows}", "make the sizes agree")
        elif info.size is None:
            info.size = ty.rows
        if isinstance(eq.expr, ast.Call) and eq.expr.func == "softmax":
            info.is_softmax = True
        if info.seq and ty.tk != STEP:
            self.rep.error(eq, f"'{name}[{eq.axis}]' does not depend on the step",
                           f"make it a static value: {name} = ...")
        if not info.seq and ty.tk == STEP:
            self.rep.error(eq, f"static value '{name}' depends on step {ty.axis}",
                           f"write {name}[{ty.axis}] = ... for a per-step value, or pick one "
                           f"step with [end]")
        return info.size

    def note(self, node: ast.Node, ty: Ty) -> Ty:
        self.types[node] = ty
        return ty

    def expr(self, e: ast.Expr, seq: bool, owner: str, expected: Optional[Size] = None
             ) -> Optional[Ty]:
        if isinstance(e, ast.Num):
            return self.note(e, Ty("scalar"))
        if isinstance(e, ast.Ref):
            ty = self.ref(e, seq, owner)
            return self.note(e, ty) if ty else None
        if isinstance(e, ast.Unary):
            ty = self.expr(e.operand, seq, owner, expected)
            return self.note(e, ty) if ty else None
        if isinstance(e, ast.Binary):
            return self.binary(e, seq, owner, expected)
        if isinstance(e, ast.Call):
            return self.call(e, seq, owner, expected)
        raise TypeError(e)  # pragma: no cover

    def ref(self, r: ast.Ref, seq: bool, owner: str) -> Optional[Ty]:
        name, ix = r.name, r.index
        self.used.add(name)
        if name in self.params or name in self.consts:
            if ix is not None:
                self.rep.error(ix, f"'{name}' is a {self.kind_of[name]}: it has no time index",
                               f"write {name}")
                return None
            if name in self.consts:
                return Ty("scalar")
            p = self.params[name]
            return Ty(p.kind, *(p.shape + (None, None))[:2], tk=PARAM)
        if name in self.inputs:
            inp = self.inputs[name]
            if not inp.seq:
                if ix is not None:
                    self.rep.error(ix, f"'{name}' is a static input: it has no time index",
                                   f"write {name}")
                    return None
                return self.static_ref(r, Ty("vec", inp.size, tk=STATIC), seq)
            return self.seq_ref(r, inp.size, seq, owner, is_state=False, what="input",
                                axis=inp.axis)
        if name in self.values:
            info = self.values[name]
            size = info.size if info.size is not None else self.value_size(name, info.eq)
            if size is None:
                if ix is not None and ix.kind == "rel" and ix.offset != 0:
                    # a delayed or future reference to a value that is not a state (states have
                    # a size): wrong whatever the size, seq_ref says why
                    return self.seq_ref(r, size, seq, owner, is_state=False, what="value",
                                        axis=info.axis)
                # a same-step reference to a value being inferred (or that could not be, for the
                # same reason): a cycle, reported with its path by check_cycles
                self.references.append((name, owner, 0 if ix is None or ix.kind == "rel"
                                        else "whole"))
                return None
            if not info.seq:
                if ix is not None:
                    self.rep.error(ix, f"'{name}' is a static value: it has no time index",
                                   f"write {name}")
                    return None
                self.references.append((name, owner, 0))
                return self.static_ref(r, Ty("vec", size, tk=STATIC), seq)
            return self.seq_ref(r, size, seq, owner, is_state=name in self.states, what="value",
                                axis=info.axis)
        if name in self.targets:
            self.rep.error(r, f"'{name}' is a target: targets can only be used in a loss",
                           "feed a value, not a target, into the network")
            return None
        if name in self.dims:
            self.rep.error(r, f"'{name}' is a dimension, not a value",
                           f"use a const or a param for a number")
            return None
        if name in self.states:  # a state with no equation (reported in check_states)
            return None
        # did-you-mean for the first few undefined names only: each costs a search of all names
        self.undefined += 1
        known = list(self.params) + list(self.inputs) + list(self.values) + list(self.consts) \
            if self.undefined <= MAX_SUGGESTIONS else []
        self.rep.error(r, f"undefined name '{name}'", _suggest(name, known)
                       or "declare it as an input, param, state, const or with an equation")
        return None

    def static_ref(self, r: ast.Ref, ty: Ty, seq: bool) -> Optional[Ty]:
        """One vector per sequence: not readable from the steps of a nested axis (whose batch
        is every step s of every sequence)."""
        if seq and self.cur_axis in self.nested:
            inner, outer = self.cur_axis, self.nested[self.cur_axis]
            self.rep.error(r, f"'{unparse(r)}' is one vector per sequence, but the steps "
                           f"{inner} run inside every step {outer}",
                           f"compute what the steps {inner} need from them, their inputs and "
                           f"parameters")
            return None
        return ty

    def seq_ref(self, r: ast.Ref, size: Size, seq: bool, owner: str, is_state: bool,
                what: str, axis: Optional[str] = None) -> Optional[Ty]:
        name, ix = r.name, r.index
        need = abs(ix.offset) * size.evaluate(self.dims) * 8 if ix is not None and \
            ix.kind in ("rel", "abs", "end") and size is not None else 0  # bytes, in float64
        if need > MAX_STEP_BYTES:
            what_steps = f"keeps {abs(ix.offset)} steps of '{name}'" if ix.kind == "rel" else \
                f"needs at least {abs(ix.offset)} steps"
            self.rep.error(ix, f"'{unparse(r)}' {what_steps}: {need / 2**30:.1f} GiB for every "
                           f"sequence of the batch (in float64), more than "
                           f"{MAX_STEP_BYTES / 2**30:.0f} GiB",
                           "read a nearer step (a delay or step number of at most a few "
                           "thousand), or a smaller size")
            return None
        ax = axis or self.axis or "t"
        if ix is None:
            self.rep.error(r, f"'{name}' is a sequence: say which step", f"write {name}"
                           f"[{ax}], {name}[{ax}-1] or {name}[end] (or attend over it)")
            return None
        if ix.kind in ("abs", "end"):
            if ix.kind == "abs" and ix.offset == 0 and name in self.states:
                self.rep.error(ix, f"{name}[0] is the initial value of state '{name}', which an "
                               f"equation cannot read: steps are numbered from 1",
                               f"it is set by the declaration (state {name}: ... = zeros, a "
                               f"parameter or an input) or passed in state0; write {name}[1] "
                               f"for the first step")
                return None
            if ix.kind == "abs" and ix.offset < 1:
                self.rep.error(ix, f"step {ix.offset} does not exist: steps are numbered from 1",
                               f"write {name}[1] for the first step")
                return None
            if ax in self.nested:  # a chosen step w of every step s: one vector per step s
                outer = self.nested[ax]
                if not seq or self.cur_axis != outer:
                    self.rep.error(r, f"'{unparse(r)}' is a step {ax} of every step {outer}: "
                                   f"one vector per step {outer}",
                                   f"read it in a value over {outer}: v[{outer}] = {unparse(r)}")
                    return None
                self.references.append((name, owner, "whole"))
                return Ty("vec", size, tk=STEP, axis=outer)
            self.references.append((name, owner, "whole"))
            return self.static_ref(r, Ty("vec", size, tk=STATIC), seq)
        if ix.var != ax:
            if ix.var in self.axes:
                self.rep.error(ix, f"'{name}' runs over steps {ax}, not {ix.var}",
                               f"write {name}[{ax}]" + (f", or use {name}[end] or attend({name})"
                                                         f" from the steps of {ix.var}"
                                                         if self.cur_axis != ax else ""))
            else:
                self.rep.error(ix, f"unknown time index '{ix.var}'",
                               f"the time index of '{name}' is '{ax}'")
            return None
        if seq and self.cur_axis != ax:
            self.rep.error(r, f"'{name}[{ix.text()}]' runs over steps {ax}, but "
                           f"'{owner}' is computed at each step {self.cur_axis}",
                           f"a different sequence can be read as {name}[end] or through "
                           f"attend(..., {name})")
            return None
        if not seq:
            self.rep.error(r, f"static value '{owner}' cannot depend on step {ix.var}",
                           f"pick one step: {name}[end]")
            return None
        if ix.offset > 0 and not is_state:
            kind = "an input" if what == "input" else "not a state"
            self.rep.error(ix, f"'{name}[{ix.text()}]' refers to a later step, but '{name}' is "
                           f"{kind} and has no value after the last step",
                           f"for a recurrence running backward in time, declare a state: state "
                           f"{name}: {size or 'SIZE'} = zeros" if what != "input" else
                           f"feed {name}[{ix.var}] into a state that runs backward in time "
                           f"(g[{ix.var}] = f(g[{ix.var}+1], {name}[{ix.var}]))")
            return None
        if ix.offset < 0 and not is_state:
            kind = "an input" if what == "input" else "not a state"
            self.rep.error(ix, f"'{name}[{ix.text()}]' is a delayed reference, but '{name}' is "
                           f"{kind} and has no initial value",
                           f"declare it as a state with an initial value: state {name}: "
                           f"{size or 'SIZE'} = zeros" if what != "input" else
                           f"feed {name}[{ix.var}] into a state and delay that state instead")
            return None
        self.references.append((name, owner, -ix.offset))
        return Ty("vec", size, tk=STEP, axis=ax)

    def binary(self, e: ast.Binary, seq: bool, owner: str, expected) -> Optional[Ty]:
        if e.op == "@":
            a = self.expr(e.left, seq, owner)
            b = self.expr(e.right, seq, owner)
            if a is None or b is None:
                return None
            if a.shape != "mat":
                self.rep.error(e, f"`{unparse(e)}`: the left side of @ must be a matrix, but "
                               f"{unparse(e.left)} is {a.describe()}", "write W @ x with a "
                               "matrix parameter W; use * for element-wise products")
                return None
            if b.shape != "vec":
                self.rep.error(e, f"`{unparse(e)}`: the right side of @ must be a vector, but "
                               f"{unparse(e.right)} is {b.describe()}", "@ multiplies a matrix "
                               "with a vector")
                return None
            if a.cols != b.rows:
                self.rep.error(e, f"`{unparse(e)}`: {unparse(e.left)} is {a.rows}×{a.cols} but "
                               f"{unparse(e.right)} has size {b.rows}",
                               f"{unparse(e.left)} needs {b.rows} columns, or the vector size "
                               f"{a.cols}")
                return None
            return self.note(e, self.ty("vec", a.rows, None, max(a.tk, b.tk)))
        a = self.expr(e.left, seq, owner, expected)
        b = self.expr(e.right, seq, owner, expected)
        if a is None or b is None:
            return None
        tk = max(a.tk, b.tk)
        if a.shape == "scalar":
            return self.note(e, self.ty(b.shape, b.rows, b.cols, tk))
        if b.shape == "scalar":
            return self.note(e, self.ty(a.shape, a.rows, a.cols, tk))
        if a.shape != b.shape or a.rows != b.rows or a.cols != b.cols:
            self.rep.error(e, f"`{unparse(e)}`: {unparse(e.left)} is {a.describe()} but "
                           f"{unparse(e.right)} is {b.describe()}",
                           f"element-wise {e.op} needs equal sizes (or a scalar)")
            return None
        return self.note(e, self.ty(a.shape, a.rows, a.cols, tk))

    def ty(self, shape: str, rows, cols, tk: int) -> Ty:
        """A type in the equation being checked (every per-step part of it is on its axis)."""
        return Ty(shape, rows, cols, tk, self.cur_axis if tk == STEP else None)

    def call(self, c: ast.Call, seq: bool, owner: str, expected) -> Optional[Ty]:
        f = c.func
        if f in LOSS_FUNCS:
            self.rep.error(c, f"{f}(...) can only be used in a loss statement",
                           f"write: loss = {f}(o[t], y[t])")
            return None
        if f in CONNECTIONS:
            return self.connection(c, seq, owner, expected)
        if f in ATTENTION:
            return self.attention(c, seq, owner)
        if f == "feedback":
            return self.feedback(c, seq, owner, expected)
        if f == "onehot":
            return self.onehot(c, owner)
        if f not in FUNCTIONS:
            blocks = self.spec.blocks
            self.rep.error(c, f"unknown function {'or block ' if blocks else ''}'{f}'",
                           _suggest(f, FUNCTIONS + LOSS_FUNCS + blocks)
                           or f"functions: {', '.join(FUNCTIONS)}" +
                           (f"; blocks: {', '.join(blocks)}" if blocks else ""))
            return None
        if c.kwargs:
            self.rep.error(c.kwargs[0], f"{f}() takes no keyword arguments",
                           f"remove {c.kwargs[0].name}=")
            return None
        if f == "concat":
            if not c.args:
                self.rep.error(c, "concat() needs at least one vector", "concat(a[t], b[t])")
                return None
            tys = [self.expr(a, seq, owner) for a in c.args]
            if any(t is None for t in tys):
                return None
            total = Size()
            for a, t in zip(c.args, tys):
                if t.shape != "vec":
                    self.rep.error(a, f"concat() joins vectors, but {unparse(a)} is "
                                   f"{t.describe()}", "pass vectors")
                    return None
                total = total + t.rows
            return self.note(c, self.ty("vec", total, None, max(t.tk for t in tys)))
        if len(c.args) != 1:
            self.rep.error(c, f"{f}() takes one argument, got {len(c.args)}",
                           f"write {f}(expression)")
            return None
        ty = self.expr(c.args[0], seq, owner, expected)
        if ty is None:
            return None
        if f == "softmax" and ty.shape != "vec":
            self.rep.error(c, f"softmax() normalizes a vector, but {unparse(c.args[0])} is "
                           f"{ty.describe()}", "pass a vector")
            return None
        return self.note(c, ty)

    def kw_size(self, kw: ast.KwArg) -> Optional[Size]:
        def conv(e) -> Optional[Size]:
            if isinstance(e, ast.Num) and float(e.value).is_integer() and e.value >= 1:
                return Size((), int(e.value))
            if isinstance(e, ast.Ref) and e.index is None and e.name in self.dims:
                return Size.dim(e.name)
            if isinstance(e, ast.Binary) and e.op == "+":
                a, b = conv(e.left), conv(e.right)
                return a + b if a and b else None
            if (isinstance(e, ast.Binary) and e.op == "*" and isinstance(e.left, ast.Num)
                    and isinstance(e.right, ast.Ref)):
                d = conv(e.right)
                k = e.left.value
                if d and float(k).is_integer() and k >= 1:
                    return Size(((e.right.name, int(k)),), 0)
            return None
        size = conv(kw.value)
        if size is None:
            self.rep.error(kw.value, f"size={unparse(kw.value)} is not a size",
                           "write a dimension name such as size=hidden, or in + hidden")
        return size

    def connection(self, c: ast.Call, seq: bool, owner: str, expected) -> Optional[Ty]:
        opts = {}
        for kw in c.kwargs:
            if kw.name not in ("size", "name", "bias", "init"):
                self.rep.error(kw, f"{c.func}() has no option '{kw.name}'",
                               "options: size=, name=, bias=, init=")
                return None
            opts[kw.name] = kw
        if not c.args:
            self.rep.error(c, f"{c.func}() needs at least one source", f"{c.func}(x[t], h[t-1])")
            return None
        size = expected
        if "size" in opts:
            size = self.kw_size(opts["size"])
            if size is None:
                return None
            if expected is not None and size != expected:
                self.rep.error(opts["size"], f"size={size} but '{owner}' has size {expected}",
                               "make the sizes agree")
                return None
        if size is None:
            self.rep.error(c, f"cannot tell the output size of {c.func}(...)",
                           f"annotate the value ({owner}{f'[{self.cur_axis}]' if seq else ''}: "
                           f"hidden = ...) or add size=hidden")
            return None
        prefix = owner
        if "name" in opts:
            v = opts["name"].value
            if not (isinstance(v, ast.Ref) and v.index is None):
                self.rep.error(v, "name= takes a plain name", "for example name=f")
                return None
            prefix = v.name
        else:
            # prefixes of the connections checked so far, and of the ones around this one (an
            # outer connection takes its prefix before its sources are checked: the outermost is
            # 'f', the ones inside it 'f2', 'f3', ... in the order they are written)
            taken = {cn.prefix for cn in self.connections.values()} | self.open_prefixes
            k = 1
            while prefix in taken:
                k += 1
                prefix = f"{owner}{k}"
            self.open_prefixes.add(prefix)
        bias = True
        if "bias" in opts:
            v = opts["bias"].value
            if isinstance(v, ast.Num) and v.value in (0, 1):
                bias = bool(v.value)
            elif isinstance(v, ast.Ref) and v.name in ("true", "false", "True", "False"):
                bias = v.name.lower() == "true"
            else:
                self.rep.error(v, "bias= takes true or false", "bias=false")
                return None
        init, init_arg = "xavier", None
        if "init" in opts:
            v = opts["init"].value
            if isinstance(v, ast.Ref) and v.index is None:
                init = v.name
            elif (isinstance(v, ast.Call) and len(v.args) == 1 and not v.kwargs
                  and isinstance(v.args[0], (ast.Num, ast.Unary))):
                init = v.func
                a = v.args[0]
                init_arg = -a.operand.value if isinstance(a, ast.Unary) else a.value
            else:
                self.rep.error(v, f"init={unparse(v)} is not an initializer",
                               "for example init=orthogonal or init=normal(0.1)")
                return None
            self.check_init(opts["init"], init, init_arg, 2)
        tys = [self.expr(a, seq, owner) for a in c.args]
        if any(t is None for t in tys):
            return None
        labels = []
        for i, (a, t) in enumerate(zip(c.args, tys)):
            if t.shape != "vec":
                self.rep.error(a, f"{c.func}() sources are vectors, but {unparse(a)} is "
                               f"{t.describe()}", "pass vectors")
                return None
            labels.append(a.name if isinstance(a, ast.Ref) else str(i + 1))
        repeated = {lab for lab in labels if labels.count(lab) > 1}
        for i, a in enumerate(c.args):
            if labels[i] in repeated and isinstance(a, ast.Ref) and a.index is not None:
                labels[i] = f"{a.name}{-a.index.offset}" if a.index.kind == "rel" else \
                    f"{a.name}_{a.index.text().replace('-', '')}"
        if len(set(labels)) != len(labels):
            labels = [str(i + 1) for i in range(len(labels))]
        weights = []
        ok = True
        new = [(f"W_{prefix}_{lab}", (size, t.rows), init, init_arg)
               for lab, t in zip(labels, tys)]
        if bias:
            new.append((f"b_{prefix}", (size,), "zeros", None))
        for pname, shape, pinit, parg in new:
            if pname in self.decl_at:
                self.rep.error(c, f"{c.func}(...) creates parameter '{pname}', but that name is "
                               f"already used ({self.decl_at[pname].where()})",
                               "give the connection its own prefix with name=...")
                ok = False
                continue
            self.decl_at[pname] = c
            self.kind_of[pname] = "parameter"
            self.params[pname] = ParamInfo(pname, shape, pinit, parg, c, auto=True)
            self.used.add(pname)
        if not ok:
            return None
        weights = [(f"W_{prefix}_{lab}", a) for lab, a in zip(labels, c.args)]
        self.connections[c] = Connection(prefix, weights, f"b_{prefix}" if bias else None,
                                         "sigmoid" if c.func == "gate" else None, size)
        return self.note(c, self.ty("vec", size, None, max(t.tk for t in tys)))

    def feedback(self, c: ast.Call, seq: bool, owner: str, expected) -> Optional[Ty]:
        """feedback(teacher, free): the teacher side (from targets, e.g. onehot(y[t-1])) when
        training with teacher forcing, the free side (the model's own output, e.g. o[t-1]) when
        running free, and a chosen class of it when generating."""
        if c.kwargs or len(c.args) != 2:
            self.rep.error(c, "feedback() takes two arguments: what to feed when training and "
                           "when running free", "feedback(onehot(y[t-1]), o[t-1])")
            return None
        if not seq:
            self.rep.error(c, "feedback() feeds a step's input: use it in a per-step equation",
                           f"{owner}[t] = feedback(onehot(y[t-1]), o[t-1])")
            return None
        self.teacher_side = True
        a = self.expr(c.args[0], seq, owner, expected)
        self.teacher_side = False
        b = self.expr(c.args[1], seq, owner, expected)
        if a is None or b is None:
            return None
        if a.shape != "vec" or b.shape != "vec" or a.rows != b.rows:
            self.rep.error(c, f"feedback(): the teacher side is {a.describe()} but the free side "
                           f"is {b.describe()}", "feed vectors of one size, e.g. "
                           "onehot(y[t-1]) and a softmax output o[t-1]")
            return None
        self.feedbacks.append(c)
        return self.note(c, self.ty("vec", a.rows, None, STEP))

    def onehot(self, c: ast.Call, owner: str) -> Optional[Ty]:
        """onehot(y[t-d]): class targets as vectors, on the teacher side of feedback()."""
        if c.kwargs or len(c.args) != 1:
            self.rep.error(c, "onehot() takes one class target", "onehot(y[t-1])")
            return None
        r = c.args[0]
        if not (isinstance(r, ast.Ref) and r.name in self.targets):
            self.rep.error(r, f"onehot() turns class targets into vectors, but `{unparse(r)}` is "
                           f"not a target", "onehot(y[t-1]) with target y[t]: class(K)")
            return None
        tgt = self.targets[r.name]
        if not self.teacher_side:
            self.rep.error(c, f"targets are fed to the network only on the teacher side of "
                           f"feedback()", f"feedback(onehot({r.name}[t-1]), o[t-1])")
            return None
        ix = r.index
        if tgt.kind != "class" or not tgt.seq or ix is None or ix.kind != "rel" or \
                ix.var != self.cur_axis or ix.offset >= 0:
            self.rep.error(r, f"onehot() takes a class target at an earlier step, such as "
                           f"{r.name}[{self.cur_axis}-1]", f"onehot({r.name}[{self.cur_axis}-1])")
            return None
        if ix.offset < 0:
            if tgt.decl.start is None:
                self.rep.error(r, f"'{unparse(r)}' reads before the first step, but target "
                               f"'{r.name}' has no start value", f"declare the start token: "
                               f"target {r.name}[{tgt.axis}]: class({tgt.size}) = 0")
                return None
            if tgt.decl.start >= tgt.size.evaluate(self.dims):
                self.rep.error(tgt.decl, f"start class {tgt.decl.start} of '{r.name}' is not "
                               f"below {tgt.size} = {tgt.size.evaluate(self.dims)}",
                               "use a class index of the target")
        self.used.add(r.name)
        return self.note(c, self.ty("vec", tgt.size, None, STEP))

    def whole_sequence(self, e: ast.Expr, what: str) -> Optional[Tuple[str, Size, str]]:
        """(name, size, axis) of a bare reference to a whole sequence, for attention."""
        if not isinstance(e, ast.Ref):
            self.rep.error(e, f"attention runs over a sequence: the {what} must be the name of "
                           f"one, not `{unparse(e)}`", "name it with an equation, e.g. k[t] = ...")
            return None
        name = e.name
        info = self.inputs.get(name) or self.values.get(name)
        if info is None:
            known = list(self.inputs) + list(self.values)
            self.rep.error(e, f"undefined name '{name}'" if name not in self.decl_at else
                           f"attention over '{name}', which is not a sequence",
                           _suggest(name, known) or "attend over an input or a value with a time "
                           "index, such as h")
            return None
        if not info.seq:
            self.rep.error(e, f"attention over '{name}', which is not a sequence (one vector per "
                           f"sequence)", "attend over a per-step value such as h[t]")
            return None
        if e.index is not None:
            self.rep.error(e.index, f"attention runs over all steps of '{name}': write {name}, "
                           f"not {unparse(e)}", f"attend(query, {name})")
            return None
        size = info.size if info.size is not None else self.value_size(name, info.eq)
        if size is None:
            if name in self._inferring:
                self.rep.error(e, f"attention over '{name}', which is computed from this "
                               f"attention", "attend over a sequence computed without it")
            return None
        self.used.add(name)
        return name, size, info.axis

    def attention(self, c: ast.Call, seq: bool, owner: str) -> Optional[Ty]:
        opts = {}
        for kw in c.kwargs:
            if kw.name not in ("score", "size", "name", "window", "mask"):
                self.rep.error(kw, f"attend() has no option '{kw.name}'",
                               "options: score=, size=, name=, window=, mask=")
                return None
            opts[kw.name] = kw
        if len(c.args) not in (2, 3):
            self.rep.error(c, f"attend() takes a query, keys and optionally values, got "
                           f"{len(c.args)} arguments", "attend(s[i-1], h) or attend(q[t], k, v)")
            return None
        score = "dot"
        if "score" in opts:
            v = opts["score"].value
            score = v.name if isinstance(v, ast.Ref) and v.index is None else unparse(v)
            if score not in SCORES:
                self.rep.error(v, f"unknown attention score '{score}'", _suggest(score, SCORES)
                               or f"scores: {', '.join(SCORES)}")
                return None
        q = self.expr(c.args[0], seq, owner)
        keys = self.whole_sequence(c.args[1], "keys")
        values = self.whole_sequence(c.args[2], "values") if len(c.args) == 3 else keys
        if q is None or keys is None or values is None:
            return None
        if q.shape != "vec":
            self.rep.error(c.args[0], f"the query of attend() is a vector, but "
                           f"{unparse(c.args[0])} is {q.describe()}", "pass a vector")
            return None
        kname, ksize, kaxis = keys
        vname, vsize, vaxis = values
        if vaxis != kaxis:
            self.rep.error(c.args[2], f"keys '{kname}' run over steps {kaxis} but values "
                           f"'{vname}' over steps {vaxis}", "keys and values are steps of one "
                           "sequence")
            return None
        regroup = None
        if kaxis in self.nested:
            outer = self.nested[kaxis]
            if q.tk == PARAM and seq and self.cur_axis == outer:
                regroup = outer  # pooling: one vector per step s from its steps w
            elif not (q.tk == STEP and q.axis == kaxis):
                self.rep.error(c, f"attention over '{kname}', whose steps {kaxis} run inside "
                               f"every step {outer}: the query must be a parameter (one vector "
                               f"shared by all, like the word context of 4.5.3) in a value over "
                               f"{outer}, or a value over {kaxis}",
                               f"pool each step {outer}: v[{outer}] = attend(u, {kname}), with "
                               f"param u: {ksize}")
                return None
        elif self.cur_axis in self.nested and seq:
            self.rep.error(c, f"'{owner}' runs over steps {self.cur_axis} inside every step "
                           f"{self.nested[self.cur_axis]}, but '{kname}' runs over {kaxis}",
                           f"attend over a sequence over {self.cur_axis}")
            return None
        if score in ("dot", "scaled", "cosine") and q.rows != ksize:
            self.rep.error(c, f"score={score} compares the query with each key, but the query "
                           f"{unparse(c.args[0])} has size {q.rows} and the keys '{kname}' size "
                           f"{ksize}", "make the sizes equal, or use score=general (a matrix "
                           "between them) or score=concat")
            return None
        att = q.rows
        if "size" in opts:
            att = self.kw_size(opts["size"])
            if att is None:
                return None
        window = None
        if "window" in opts:
            v = opts["window"].value
            if not isinstance(v, ast.Num) or v.value <= 0:
                self.rep.error(v, "window= is the width d of local attention's Gaussian, a "
                               "positive number", "for example window=2")
                return None
            window = float(v.value)
        causal = False
        if "mask" in opts:
            v = opts["mask"].value
            if not (isinstance(v, ast.Ref) and v.name == "causal" and v.index is None):
                self.rep.error(v, f"unknown mask {unparse(v)}", "mask=causal: only keys up to the "
                               "query's own step")
                return None
            if q.tk != STEP or q.axis != kaxis:
                self.rep.error(v, "mask=causal needs queries and keys on the same time axis",
                               f"use it for self-attention: attend(q[{kaxis}], k, v, mask=causal)")
                return None
            causal = True
        prefix = owner
        if "name" in opts:
            v = opts["name"].value
            if not (isinstance(v, ast.Ref) and v.index is None):
                self.rep.error(v, "name= takes a plain name", "for example name=att")
                return None
            prefix = v.name
        shapes = {}
        if score == "general":
            shapes["W"] = (f"Wa_{prefix}", (q.rows, ksize), "xavier")
        if score == "concat":
            shapes["W"] = (f"Wa_{prefix}", (att, q.rows + ksize), "xavier")
            shapes["v"] = (f"va_{prefix}", (att,), "normal")
        if window is not None:
            shapes["Wp"] = (f"Wp_{prefix}", (att, q.rows), "xavier")
            shapes["vp"] = (f"vp_{prefix}", (att,), "normal")
        params = {}
        for role, (pname, shape, init) in shapes.items():
            if pname in self.decl_at:
                self.rep.error(c, f"attend(...) creates parameter '{pname}', but that name is "
                               f"already used ({self.decl_at[pname].where()})",
                               "give the attention its own prefix with name=...")
                return None
            self.decl_at[pname] = c
            self.kind_of[pname] = "parameter"
            self.params[pname] = ParamInfo(pname, shape, init, 0.1 if init == "normal" else None,
                                           c, auto=True)
            self.used.add(pname)
            params[role] = pname
        for name in sorted({kname, vname}):
            self.references.append((name, owner, "attend"))
        self.attentions[c] = Attention(score, kname, vname, kaxis, params, window, causal, owner,
                                       regroup)
        tk = STEP if q.tk == STEP or regroup else STATIC
        return self.note(c, self.ty("vec", vsize, None, tk))

    # ----- losses ----------------------------------------------------------------------------
    def check_loss(self, st: ast.Loss) -> None:
        c = st.expr
        if not isinstance(c, ast.Call) or c.func not in LOSS_FUNCS:
            self.rep.error(st.expr, "a loss is cross_entropy(...) or squared_error(...)",
                           "write: loss = cross_entropy(o[t], y[t])")
            return
        if c.kwargs:
            self.rep.error(c.kwargs[0], f"{c.func}() takes no keyword arguments",
                           f"remove {c.kwargs[0].name}=")
            return
        if len(c.args) == 0:
            self.rep.error(c, f"{c.func}() needs a prediction and a target",
                           f"write {c.func}(o[t], y[t])")
            return
        pred = c.args[0]
        if len(c.args) < 2:
            self.rep.error(c, f"the loss has no target: {c.func}() needs a prediction and a "
                           f"target", f"declare one (target y[t]: class(out)) and write "
                           f"{c.func}({unparse(pred)}, y[t])")
            return
        if len(c.args) > 2:
            self.rep.error(c.args[2], f"{c.func}() takes two arguments, got {len(c.args)}",
                           f"{c.func}(prediction, target)")
            return
        target = c.args[1]
        if not isinstance(pred, ast.Ref) or pred.name not in self.values:
            if isinstance(pred, ast.Ref) and pred.name in self.targets:
                self.rep.error(pred, f"'{pred.name}' is a target; the first argument of "
                               f"{c.func}() is the prediction", f"{c.func}(o[t], {pred.name}...)")
            else:
                self.rep.error(pred, f"the prediction of a loss must be a named value, not "
                               f"`{unparse(pred)}`", "name it with an equation, e.g. "
                               "o[t] = softmax(...)")
            return
        if not isinstance(target, ast.Ref) or target.name not in self.targets:
            what = f"'{target.name}' is not a target" if isinstance(target, ast.Ref) else \
                f"`{unparse(target)}` is not a target"
            name = target.name if isinstance(target, ast.Ref) else "y"
            decl = f"target {name}[t]: class(K)" if c.func == "cross_entropy" else \
                f"target {name}[t]: SIZE (the prediction's size)"
            self.rep.error(target, f"the loss has no target: {what}",
                           f"declare one: {decl}, and pass it as the second argument")
            return
        self.used.add(pred.name)
        info = self.values[pred.name]
        tgt = self.targets[target.name]
        pix, tix = pred.index, target.index
        steps = None
        ax = info.axis
        if info.seq:
            if pix is None:
                self.rep.error(pred, f"'{pred.name}' is a sequence: say which step",
                               f"write {pred.name}[{ax}] (every step) or "
                               f"{pred.name}[end] (the last step)")
                return
            if pix.kind == "rel":
                if pix.offset != 0 or pix.var != ax:
                    self.rep.error(pix, f"a per-step loss uses {pred.name}[{ax}]",
                                   f"write {pred.name}[{ax}]")
                    return
                if not tgt.seq or tix is None or tix.kind != "rel" or tix.offset != 0 or \
                        tgt.axis != ax or tix.var != ax:
                    other = f" (it runs over steps {tgt.axis})" if tgt.seq and tgt.axis != ax \
                        else ""
                    self.rep.error(target, f"{pred.name}[{ax}] is compared at every step, "
                                   f"so the target must be a sequence indexed [{ax}]{other}",
                                   f"declare target {target.name}[{ax}]: ... and write "
                                   f"{target.name}[{ax}]")
                    return
                if st.select:
                    if st.select.var != ax:
                        self.rep.error(st.select, f"unknown time index '{st.select.var}'",
                                       f"write at {ax} = ...")
                        return
                    for s in st.select.steps:
                        if s.kind == "abs" and s.offset < 1:
                            self.rep.error(s, "steps are numbered from 1", "write at t = 1, end")
                            return
                    steps = st.select.steps
            else:
                if tgt.seq:
                    self.rep.error(target, f"{unparse(pred)} is one step, so the target must "
                                   f"be static", f"declare target {target.name}: ...")
                    return
                steps = None
        elif pix is not None:
            self.rep.error(pix, f"'{pred.name}' is a static value: it has no time index",
                           f"write {pred.name}")
            return
        if (not info.seq or (pix and pix.kind != "rel")):
            if tgt.seq or tix is not None:
                self.rep.error(target, f"the prediction is one vector per sequence, so the "
                               f"target must be static", f"declare target {target.name}: ...")
                return
            if st.select:
                self.rep.error(st.select, "'at' selects steps of a per-step loss",
                               f"use {pred.name}[{ax}] with at, or drop it")
                return
        size = info.size
        if size is None:
            return
        if c.func == "cross_entropy":
            if tgt.kind != "class":
                self.rep.error(target, f"cross_entropy needs class targets, but "
                               f"'{target.name}' is a real vector", f"declare target "
                               f"{target.name}...: class({tgt.size}), or use squared_error")
                return
            if not info.is_softmax:
                self.rep.error(pred, f"cross_entropy needs probabilities from softmax, but "
                               f"'{pred.name}' is not defined as softmax(...)",
                               f"define {pred.name}[t] = softmax(...)")
                return
        elif tgt.kind != "real":
            self.rep.error(target, f"squared_error needs real-valued targets, but "
                           f"'{target.name}' holds class indices",
                           f"declare target {target.name}...: {tgt.size}, or use cross_entropy")
            return
        if tgt.size != size:
            self.rep.error(target, f"'{pred.name}' has size {size} but target '{target.name}' "
                           f"has size {tgt.size}", "make the sizes agree")
            return
        self.used.add(target.name)
        self.losses.append(LossInfo(c.func, pred, target, st.reduce, steps, st))

    # ----- whole-network checks --------------------------------------------------------------
    def check_states(self) -> None:
        for name, st in self.states.items():
            if name not in self.values:
                self.rep.error(st.decl, f"state '{name}' has no equation",
                               f"add one: {name}[{self.axis or 't'}] = ...")
            if st.init == "value":
                v = self.values[st.init_name]
                pos = (st.decl.init_line, st.decl.init_column)
                if v.seq:
                    self.rep.error(pos, f"initial value of state '{name}': '{v.name}' is a "
                                   f"sequence", f"pick one step: {v.name} = ...[end]")
                elif v.size is not None and v.size != st.size:
                    self.rep.error(pos, f"initial value of state '{name}': '{v.name}' has size "
                                   f"{v.size}, but the state has size {st.size}",
                                   "the initial value must have the state's size")

    def check_cycles(self) -> None:
        g = nx.DiGraph()
        full = nx.DiGraph()  # with the delayed references too
        picked = []  # (src, dst): dst reads src at a chosen step, e.g. src[end]
        for src, dst, delay in self.references:
            if src in self.values and dst in self.values:
                if delay == 0:
                    g.add_edge(src, dst)
                full.add_edge(src, dst)
                if delay in ("whole", "init", "attend") and (src, dst, delay) not in picked:
                    picked.append((src, dst, delay))
        for cycle in nx.simple_cycles(g):
            names = list(cycle)
            first = min(names, key=lambda n: (self.values[n].eq.line, self.values[n].eq.column))
            k = names.index(first)
            names = names[k:] + names[:k]
            path = " -> ".join(names + [names[0]])
            if len(names) == 1:
                msg = f"'{first}' depends on itself within one time step ({path})"
            else:
                msg = f"cycle within one time step: {path}"
            static = [n for n in names if not self.values[n].seq]
            hint = ("break the cycle with a delay, e.g. "
                    f"{names[-1]}[{self.axis or 't'}-1] (and declare it a state)") if not static \
                else (f"'{static[0]}' is static (one value per sequence), so it cannot be "
                      f"delayed: compute it from values outside the cycle")
            self.rep.error(self.values[first].eq, msg, hint)
            return
        # src[end] is known only after the last step: nothing src depends on, even through
        # delays, can read it
        for src, dst, kind in picked:
            if not nx.has_path(full, dst, src):
                continue
            path = " -> ".join([src] + nx.shortest_path(full, dst, src))
            if kind == "init":
                st = self.states[dst]
                self.rep.error((st.decl.init_line, st.decl.init_column),
                               f"cycle: state '{dst}' starts from '{src}', but '{src}' is "
                               f"computed from '{dst}' ({path})",
                               f"the initial value must be known before '{dst}' runs: compute "
                               f"'{src}' without it")
            elif kind == "attend":
                self.rep.error(self.values[dst].eq, f"cycle: '{dst}' attends over every step of "
                               f"'{src}', but '{src}' is computed from '{dst}' ({path})",
                               f"attention reads the whole sequence '{src}' after it is complete: "
                               f"attend over a sequence computed without '{dst}'")
            else:
                what = "itself at a fixed step" if src == dst else \
                    f"'{src}' at a fixed step, but '{src}' depends on '{dst}'"
                self.rep.error(self.values[dst].eq, f"cycle through a chosen step: '{dst}' "
                               f"reads {what} ({path})",
                               f"{src}[end] (or {src}[1], ...) is known only after the time "
                               f"loop: compute '{dst}' without it")
            return

    def check_unused(self) -> None:
        for name, p in self.params.items():
            if name not in self.used and not p.auto:
                self.rep.warning(p.node, f"parameter '{name}' is never used",
                                 "remove it, or use it in an equation")
        for name, inp in self.inputs.items():
            if name not in self.used:
                self.rep.warning(inp.decl, f"input '{name}' is never used",
                                 "remove it, or use it in an equation")
