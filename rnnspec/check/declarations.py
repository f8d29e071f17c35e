"""Declarations: the statements of a spec -> the symbol table, before any expression is typed.

In: the spec's statements and the dimension overrides (in :class:`.symbols.Symbols`).  Out: the
dims (overridden), the time axes and their nesting, and one record per input, target,
parameter, const, state and value in ``Symbols``, with each state's initial value resolved.
Reported here: duplicate names, bad sizes and overrides, unknown initializers, names the
generated module owns (:func:`check_module_names`) and bad initial values of states.
"""
from __future__ import annotations

from typing import Optional

from .. import ast
from ..delays import INIT
from ..sizes import Size
from .model import InputInfo, ParamInfo, StateInfo, TargetInfo, ValueInfo
from .symbols import Symbols, suggest

INITIALIZERS = {  # name -> (takes an argument, needs a matrix)
    "zeros": (False, False), "ones": (False, False), "constant": (True, False),
    "normal": (True, False), "uniform": (True, False), "xavier": (False, True),
    "glorot": (False, True), "orthogonal": (False, True),
}


def declare_all(sym: Symbols) -> None:
    """Every declaration of ``sym.spec``, in order: dims (then the overrides), the other
    statements, the main axis, the module's own names, and the states' initial values (which
    may name parameters and inputs declared after the state)."""
    stmts = sym.spec.statements
    for st in stmts:
        if isinstance(st, ast.DimDecl):
            declare_dim(sym, st)
    dim_decls = {st.name: st for st in stmts if isinstance(st, ast.DimDecl)}
    apply_overrides(sym, dim_decls)
    for st in stmts:
        declare_statement(sym, st)
    if sym.axis in sym.nested:  # the outer axis is the main one: T is its number of steps
        sym.axis = sym.nested[sym.axis]
        sym.axes.remove(sym.axis)
        sym.axes.insert(0, sym.axis)
    check_module_names(sym, dim_decls)
    for st in stmts:
        if isinstance(st, ast.StateDecl) and st.name in sym.states:
            resolve_state_init(sym, st)


def declare_statement(sym: Symbols, st: ast.Node) -> None:
    """One statement other than a dim (losses are checked after the values are typed)."""
    if isinstance(st, ast.InputDecl):
        declare_input(sym, st)
    elif isinstance(st, ast.TargetDecl):
        declare_target(sym, st)
    elif isinstance(st, ast.ParamDecl):
        declare_param(sym, st)
    elif isinstance(st, ast.ConstDecl):
        sym.declare(st.name, st, "const")
        sym.consts[st.name] = st.value
    elif isinstance(st, ast.StateDecl):
        declare_state(sym, st)
    elif isinstance(st, ast.Equation):
        declare_value(sym, st)


def declare_dim(sym: Symbols, st: ast.DimDecl) -> None:
    if st.name in sym.dims:
        sym.rep.error(st, f"dimension '{st.name}' is already defined",
                      "define each dimension once")
        return
    if st.value < 1:
        sym.rep.error(st, f"dimension '{st.name}' must be at least 1, not {st.value}",
                      f"for example: dim {st.name} = 8")
    sym.dims[st.name] = st.value


def apply_overrides(sym: Symbols, dim_decls) -> None:
    """The dimension overrides (``dims=`` or ``--dim``) in place of the declared values."""
    for name, value in sym.overrides.items():
        given = sym.override_text(name, value)
        if isinstance(value, str) and value.strip().lstrip("+").isdigit():
            value = int(value)
        if name not in sym.dims:
            sym.rep.error((1, 1), f"{given}: the spec has no dimension '{name}'",
                          suggest(name, sym.dims) or f"its dimensions are: "
                          f"{', '.join(sym.dims) or 'none'}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            sym.rep.error(dim_decls[name], f"{given}: a dimension must be a positive integer",
                          f"for example {sym.override_text(name, 8)}")
        else:
            sym.dims[name] = value


def check_module_names(sym: Symbols, dim_decls) -> None:
    """The two name tables of the generated module that spec names share with it: its dims
    (shapes read ``(T, B, n)``: T and B, per time axis ``T_w``/``B_w``, and its dtype,
    last steps and lengths) and the keys of ``outputs`` besides the values ('final',
    'attention'; 'loss' is a keyword).  Python variables need no such rule: the
    generator names them apart (codegen's namer)."""
    own = {"T": "the number of steps", "B": "the batch size", "dtype": "the float type",
           "last": "each sequence's last step", "lengths": "each sequence's length"}
    per_axis = [(k, what) for k, what in own.items() if k != "dtype"]
    for axis in sym.axes:
        own.update({f"{k}_{axis}": f"{what} over {axis}" for k, what in per_axis})
    for name, st in dim_decls.items():
        if name in own:
            sym.rep.error(st, f"a dimension cannot be called '{name}': the generated module "
                          f"uses '{name}' for {own[name]} in its shapes and dims",
                          f"rename it, for example dim {name.lower()}_size = {st.value}")
    for name in ("final", "attention"):
        if name in sym.values or name in sym.states:
            what = ("the states after the last step" if name == "final" else
                    "the attention weights")
            sym.rep.error(sym.decl_at[name], f"a value or state cannot be called "
                          f"'{name}': outputs['{name}'] holds {what}",
                          f"rename it, for example {name}_")


def size(sym: Symbols, se: ast.SizeExpr) -> Optional[Size]:
    """The :class:`Size` of a size expression (None, reported, for an unknown dim or < 1)."""
    acc = Size()
    ok = True
    for term in se.terms:
        if term.dim is None:
            acc = acc + Size((), term.coef)
        elif term.dim not in sym.dims:
            sym.rep.error(term, f"unknown dimension '{term.dim}'",
                          suggest(term.dim, sym.dims) or f"declare it first: dim {term.dim} = 8")
            ok = False
        else:
            acc = acc + Size(((term.dim, term.coef),), 0)
    if ok and acc.terms == () and acc.const < 1:
        sym.rep.error(se, "a size must be at least 1", "use a dimension name or a positive "
                      "integer")
        return None
    return acc if ok else None


def use_axis(sym: Symbols, name: str, node: ast.Node, within: Optional[str] = None) -> None:
    """Sequences may run over several time axes (a source t = 1..Tx, a target i = 1..Ty);
    ``[w in s]`` nests axis w in axis s: every step s has its own sequence of steps w (the
    words of each sentence), run as one batch of (steps s) x B sequences."""
    if within is not None:
        nest(sym, name, within, node)
    if sym.axis is None:
        sym.axis = name
    if name not in sym.axes:
        sym.axes.append(name)


def nest(sym: Symbols, inner: str, outer: str, node: ast.Node) -> None:
    if inner == outer:
        sym.rep.error(node, f"axis '{inner}' cannot be inside itself",
                      f"nest it in another axis: [{inner} in s]")
        return
    deep = [(k, v) for k, v in sym.nested.items() if v == inner or k == outer]
    if deep:
        k, v = deep[0]
        sym.rep.error(node, f"[{inner} in {outer}] would nest axes two levels deep: "
                      f"[{k} in {v}] is declared at line {sym.nested_at[k].line}",
                      "one level of nesting is supported (words in sentences)")
        return
    if inner in sym.nested and sym.nested[inner] != outer:
        sym.rep.error(node, f"axis '{inner}' is inside '{sym.nested[inner]}' (line "
                      f"{sym.nested_at[inner].line}), not '{outer}'",
                      f"write [{inner} in {sym.nested[inner]}]")
        return
    if inner not in sym.nested:
        use_axis(sym, outer, node)
        sym.nested[inner] = outer
        sym.nested_at[inner] = node


def declare_input(sym: Symbols, st: ast.InputDecl) -> None:
    if st.axis:
        use_axis(sym, st.axis, st, st.within)
    sz = size(sym, st.size)
    if st.kind == "class" and not st.axis:
        sym.rep.error(st, f"class input '{st.name}' needs a time axis: class indices are "
                      f"read one per step", f"input {st.name}[t]: class(V)")
        return
    if sym.declare(st.name, st, "sequence input" if st.axis else "static input") and sz:
        sym.inputs[st.name] = InputInfo(st.name, st.axis is not None, sz, st, st.kind)


def declare_target(sym: Symbols, st: ast.TargetDecl) -> None:
    if st.axis:
        use_axis(sym, st.axis, st, st.within)
    sz = size(sym, st.size)
    if st.start is not None and (st.kind != "class" or not st.axis):
        sym.rep.error(st, f"only a sequence of class targets has a start value "
                      f"({st.name}[0])", f"remove '= {st.start}'")
    if sym.declare(st.name, st, "target") and sz:
        sym.targets[st.name] = TargetInfo(st.name, st.axis is not None, st.kind, sz, st)


def declare_param(sym: Symbols, st: ast.ParamDecl) -> None:
    shape = tuple(size(sym, s) for s in st.shape)
    init = st.init.name if st.init else ("xavier" if len(shape) == 2 else "zeros")
    arg = st.init.arg if st.init else None
    if st.init:
        check_init(sym, st.init, init, arg, len(shape))
    if sym.declare(st.name, st, "parameter") and all(s is not None for s in shape):
        sym.params[st.name] = ParamInfo(st.name, shape, init, arg, st)


def check_init(sym: Symbols, node: ast.Node, name: str, arg, ndim: int) -> None:
    """Initializer ``name`` (with ``arg``) for a parameter of ``ndim`` dimensions."""
    if name not in INITIALIZERS:
        sym.rep.error(node, f"unknown initializer '{name}'", suggest(name, INITIALIZERS)
                      or f"use one of: {', '.join(INITIALIZERS)}")
        return
    takes_arg, needs_matrix = INITIALIZERS[name]
    if takes_arg and arg is None:
        example = {"constant": "constant(0.5)", "normal": "normal(0.1)",
                   "uniform": "uniform(0.1)"}[name]
        sym.rep.error(node, f"initializer '{name}' needs an argument", f"for example: {example}")
    elif not takes_arg and arg is not None:
        sym.rep.error(node, f"initializer '{name}' takes no argument", f"write {name}")
    elif name in ("normal", "uniform") and arg is not None and arg < 0:
        sym.rep.error(node, f"{name}({arg:g}): the scale must not be negative",
                      f"for example {name}(0.1)")
    if needs_matrix and ndim != 2:
        sym.rep.error(node, f"initializer '{name}' is for matrices",
                      "use zeros, constant(c), normal(std) or uniform(a) for vectors and "
                      "scalars")


def declare_state(sym: Symbols, st: ast.StateDecl) -> None:
    sz = size(sym, st.size)
    if not sym.declare(st.name, st, "state") or sz is None:
        return
    sym.states[st.name] = StateInfo(st.name, sz, "zeros", None, st)


def resolve_state_init(sym: Symbols, st: ast.StateDecl) -> None:
    """What the initial value of state ``st`` names: zeros, given, a parameter, a static input
    or a static value of the network (the last is checked for size in :mod:`.network`)."""
    info = sym.states[st.name]
    pos = (st.init_line, st.init_column)
    init = st.init or "zeros"
    if init in ("zeros", "given"):
        info.init = init
        return
    axis = sym.values[st.name].axis if st.name in sym.values else None
    if axis in sym.nested and (init in sym.inputs or init in sym.values):
        sym.rep.error(pos, f"initial value of state '{st.name}': '{init}' is one vector per "
                      f"sequence, but '{st.name}' runs over steps {axis} inside every step "
                      f"{sym.nested[axis]}", "start it from zeros, a parameter, or given "
                      f"initial states (state0, one per step {sym.nested[axis]})")
        return
    if init in sym.params:
        _init_from_param(sym, st, info, pos, init)
    elif init in sym.inputs:
        _init_from_input(sym, st, info, pos, init)
    elif init in sym.states:
        sym.rep.error(pos, f"initial value of state '{st.name}': '{init}' is a sequence",
                      f"pick one step: C = {init}[end], then state {st.name}: ... = C")
    elif init in sym.values and init not in sym.states:
        # a static value computed by the network, e.g. an encoder's context C = h[end]
        sym.used.add(init)
        info.init, info.init_name = "value", init
        sym.references.append((init, st.name, INIT))
    else:
        sym.rep.error(pos, f"unknown initial value '{init}' for state '{st.name}'",
                      suggest(init, list(sym.params) + list(sym.inputs) + list(sym.values))
                      or "use zeros, given (passed in state0), a parameter, a static "
                      "input or a static value")


def _init_from_param(sym: Symbols, st: ast.StateDecl, info: StateInfo, pos, init: str) -> None:
    p = sym.params[init]
    sym.used.add(init)
    if p.shape != (info.size,):
        shape = "×".join(s.text() for s in p.shape) or "scalar"
        sym.rep.error(pos, f"initial value of state '{st.name}': parameter '{init}' has "
                      f"shape {shape}, but the state has size {info.size}",
                      f"declare: param {init}: {info.size} = zeros")
    info.init, info.init_name = "param", init


def _init_from_input(sym: Symbols, st: ast.StateDecl, info: StateInfo, pos, init: str) -> None:
    inp = sym.inputs[init]
    sym.used.add(init)
    if inp.seq:
        sym.rep.error(pos, f"initial value of state '{st.name}': '{init}' is a "
                      f"sequence input", f"declare it static: input {init}: {inp.size}")
    elif inp.size != info.size:
        sym.rep.error(pos, f"initial value of state '{st.name}': input '{init}' has size "
                      f"{inp.size}, but the state has size {info.size}",
                      "the initial value must have the state's size")
    info.init, info.init_name = "input", init


def declare_value(sym: Symbols, eq: ast.Equation) -> None:
    """The equation ``eq``: a state's equation, or a new value (its size, if annotated)."""
    if eq.axis:
        use_axis(sym, eq.axis, eq, eq.within)
    elif eq.within:  # pragma: no cover - the grammar puts `in` inside an axis
        sym.rep.error(eq, "only a time axis can be nested", "write name[w in s] = ...")
    if eq.name in sym.values:
        sym.rep.error(eq, f"'{eq.name}' already has an equation ("
                      f"{sym.values[eq.name].eq.where()})", "define each value once")
        return
    if eq.name in sym.states:
        st = sym.states[eq.name]
        if not eq.axis:
            sym.rep.error(eq, f"state '{eq.name}' needs a per-step equation",
                          f"write {eq.name}[t] = ...")
            return
        sym.values[eq.name] = ValueInfo(eq.name, True, eq, st.size)
        check_annotation(sym, eq, st.size)
        return
    if not sym.declare(eq.name, eq, "value"):
        return
    sz = size(sym, eq.size) if eq.size else None
    sym.values[eq.name] = ValueInfo(eq.name, eq.axis is not None, eq, sz)


def check_annotation(sym: Symbols, eq: ast.Equation, declared: Size) -> None:
    """A state's equation annotated with a size: it must be the state's."""
    if eq.size is not None:
        ann = size(sym, eq.size)
        if ann is not None and ann != declared:
            sym.rep.error(eq.size, f"'{eq.name}' is declared with size {declared} but "
                          f"annotated {ann}", "make the sizes agree")
