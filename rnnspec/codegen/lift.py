"""The numba backend's pass: every time loop of the generated forward and backward lifted into a
top-level ``@numba.njit(cache=True)`` function of the loop's free names, and called in its place.

In: the :class:`rnnspec.stmt.Def` nodes of forward and backward (NumPy statements, as
:mod:`.forward` and :mod:`.adjoint` build them).  Out: the same functions, each loop replaced by
a call (``_backward_loop_1(T, mask, xi, d_h, ...)``, assigning back the names the loop rebinds
that are read after it), and the lifted functions.  Inside a lifted loop a ufunc's ``out=`` is
passed by position (numba's form), ``_sigmoid``, ``np.tanh`` and ``np.exp`` are
:func:`_nb_sigmoid`, :func:`_nb_tanh` and :func:`_nb_exp` of the numba runtime
(rnnspec/runtime/numba.py: element loops that vectorize, where numba's own call the C library
element by element), a matrix product ``a @ W`` is :func:`_nb_matmul` (an element loop for a
few rows, where a BLAS call costs more than the product; ``W.T`` copied C-ordered once, before
the loop), divisions follow NumPy's error model, and ``reversed(range(T))`` is
``range(T - 1, -1, -1)``; numba prunes the ``if mask is None`` branches of the arguments given
as None.  What else a loop may
call is :data:`CALLS`: :func:`numba_refusal` refuses, positioned, the specs whose loops would
need more (checked again here: a loop that slips through is a bug, not a numba error at run
time).
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Dict, List, Tuple

from ..expr import (Attr, Bin, Call, Expr, IfElse, List_, Name, Num, Tuple_, call, compare, lit,
                    parts, sub)
from ..stmt import BLANK, Assign, Comment, Def, Do, For, If, Stmt, assign, returns

# what a lifted loop may call (the numba runtime's helpers are named here by their numba names)
CALLS = {"np.add", "np.multiply", "np.subtract", "np.where", "np.negative", "np.concatenate",
         "_nb_sigmoid", "_nb_tanh", "_nb_exp", "range"}
KWARGS = {"out", "axis"}  # (out= passed by position; axis= as it is)
# how an Unliftable names a call
WHAT = {"_softmax": "softmax", "_attention": "attention", "_choose": "a choice of the next input"}
# a NumPy function or runtime helper -> its numba form (rnnspec/runtime/numba.py: element loops
# that LLVM vectorizes; given no out=, they write into a new array)
RENAMED = {"_sigmoid": "_nb_sigmoid", "np.tanh": "_nb_tanh", "np.exp": "_nb_exp"}
# the loss helpers that forward and backward call outside their loops -> their compiled forms
COMPILED_HELPERS = {"_softmax": "_nb_softmax", "_cross_entropy": "_nb_cross_entropy",
                    "_cross_entropy_grad": "_nb_cross_entropy_grad"}
JIT = call("numba.njit", cache=True, error_model=lit("numpy"))  # (x / 0: inf, as in NumPy)
GLOBALS = {"np", "numba", "range"} | set(RENAMED.values())


class Unliftable(Exception):
    """A loop holds what the numba backend cannot compile; ``origin``: the spec statement of
    the code (from the spec-line comment above it), for a positioned error."""
    origin = None


def lift_loops(fn: Def) -> Tuple[Def, List[Def]]:
    """``fn`` with each time loop of its body replaced by a call, and the lifted functions
    (named ``_<fn>_loop_<k>``)."""
    body: List[Stmt] = []
    lifted: List[Def] = []
    unconditional = {p if isinstance(p, str) else p[0] for p in fn.params}
    for s in fn.body:
        if isinstance(s, Assign):
            targets = s.target.items if isinstance(s.target, Tuple_) else (s.target,)
            unconditional |= {t.id for t in targets if isinstance(t, Name)}
    maybe: List[str] = []  # names bound only under an if that a loop reads: None before
    for k, s in enumerate(fn.body):
        if not isinstance(s, For):
            if _holds_loop(s):
                raise Unliftable("a time loop under a condition")
            body.append(_helpers_compiled(s))
            continue
        name = f"_{fn.name}_loop_{len(lifted) + 1}"
        loop = _numba_stmt(s)
        params, returned = _interface(loop, fn.body[k + 1:])
        loop, transposed = _products(loop)
        maybe += [n for n in params if n not in unconditional and n not in maybe]
        ret = [returns(Tuple_(tuple(Name(n) for n in returned)))] if returned else []
        doc = (f"The time loop of {fn.name}, compiled by numba.",)
        lifted.append(Def(name, tuple(params), doc, (*transposed, loop, *ret), (JIT,)))
        invoke = call(name, *params)
        compiled = assign(Tuple_(tuple(Name(n) for n in returned), bare=True), invoke) \
            if returned else Do(invoke)
        body.append(If(compare("B", "<=", "NUMBA_BATCH"), (compiled,),
                       "a small batch: the loop compiled by numba",
                       (s,), "a large one: NumPy's calls (bound by the products)"))
    nones = [assign(n, None, note="bound below only in some cases (an argument of a "
                    "compiled loop)") for n in maybe]
    return Def(fn.name, fn.params, fn.doc, tuple(nones + body), fn.decorators), lifted


def _rewritten(x, node_fn):
    """Node ``x`` (a statement, an expression, or a tuple of them) with ``node_fn`` applied to
    every node, children first (``node_fn`` returns the node or its replacement)."""
    if isinstance(x, tuple):
        return tuple(_rewritten(item, node_fn) for item in x)
    if is_dataclass(x) and not isinstance(x, type):
        x = type(x)(**{f.name: _rewritten(getattr(x, f.name), node_fn) for f in fields(x)
                       if f.init})
    return node_fn(x)


def _helpers_compiled(s: Stmt) -> Stmt:
    """Statement ``s`` with each call of :data:`COMPILED_HELPERS` made to the compiled form for
    a small batch, ``(_nb_softmax if B <= NUMBA_BATCH else _softmax)(a)`` (the arguments alike,
    positional in both): a large batch runs the NumPy backend's code."""
    def choose(x):
        if isinstance(x, Call) and isinstance(x.func, Name) and x.func.id in COMPILED_HELPERS:
            small = compare("B", "<=", "NUMBA_BATCH")
            return Call(IfElse(Name(COMPILED_HELPERS[x.func.id]), small, x.func), x.args,
                        x.kwargs)
        return x
    return _rewritten(s, choose)


def _products(loop: For) -> Tuple[For, List[Stmt]]:
    """The loop with each matrix product ``a @ W`` as :func:`_nb_matmul` of the numba runtime
    (``a @ W.T``: of a C-ordered copy of W.T made once, before the loop), and those copies."""
    copies: Dict[str, str] = {}

    def product(x):
        if not (isinstance(x, Bin) and x.op == "@"):
            return x
        right = x.right
        if isinstance(right, Attr) and right.attr == "T" and isinstance(right.value, Name):
            right = Name(copies.setdefault(right.value.id, f"_transposed_{len(copies) + 1}"))
        return call("_nb_matmul", x.left, right)
    loop = _rewritten(loop, product)
    made = [assign(held, call("np.ascontiguousarray", Attr(Name(w), "T")),
                   note="W.T's rows, contiguous: the products' loops read them in order")
            for w, held in copies.items()]
    return loop, made


def _holds_loop(s: Stmt) -> bool:
    """Is there a ``for`` inside statement ``s`` (an ``if``'s bodies)?"""
    if isinstance(s, For):
        return True
    return isinstance(s, If) and any(_holds_loop(b) for b in s.body + s.orelse)


def lift_module(fwd: List[Stmt], bwd: List[Stmt]) -> Tuple[List[Stmt], List[Stmt]]:
    """The statements of a module's forward and backward parts (functions and blank lines)
    with every function's loops lifted; the lifted functions follow backward."""
    lifted: List[Def] = []

    def one(stmts):
        out = []
        for s in stmts:
            if isinstance(s, Def):
                s, more = lift_loops(s)
                lifted.extend(more)
            out.append(s)
        return out
    fwd, bwd = one(fwd), one(bwd)
    for d in lifted:
        bwd += [BLANK, BLANK, d]
    return fwd, bwd


# ---- the loop, in numba's form --------------------------------------------------------------
def _numba_stmt(s: Stmt) -> Stmt:
    """Statement ``s`` with numba's forms of its calls (see the module docstring)."""
    if isinstance(s, For):
        it = s.iterable
        if isinstance(it, Call) and _fname(it) == "reversed":  # reversed(range(n))
            n = it.args[0].args[0]
            it = call("range", sub(n, 1), Num(-1), Num(-1))
        return For(s.var, _numba_expr(it), _numba_body(s.body))
    if isinstance(s, If):
        return If(_numba_expr(s.cond), _numba_body(s.body), s.note, _numba_body(s.orelse),
                  s.else_note)
    if isinstance(s, Assign):
        return Assign(_numba_expr(s.target), _numba_expr(s.value), s.op, s.note)
    if isinstance(s, Do) and not s.keyword:
        return Do(_numba_expr(s.value))
    if isinstance(s, (Assign, Do, For, If)) or hasattr(s, "value"):
        raise Unliftable(f"a {type(s).__name__} statement")
    return s  # a comment, a blank line


def _numba_body(body) -> Tuple[Stmt, ...]:
    """A loop's statements in numba's form; an Unliftable one is placed at the spec statement
    of the last spec-line comment above it."""
    out, origin = [], None
    for s in body:
        origin = s.origin if isinstance(s, Comment) and s.origin is not None else origin
        try:
            out.append(_numba_stmt(s))
        except Unliftable as e:
            e.origin = e.origin or origin
            raise
    return tuple(out)


def _numba_expr(e: Expr) -> Expr:
    """``e`` with out= passed by position, the helpers renamed; Unliftable for a call or an
    attribute outside :data:`CALLS` (``.T``, a transpose, is numba's too)."""
    if isinstance(e, Call):
        func = RENAMED.get(_fname(e), _fname(e))
        if func not in CALLS or any(k not in KWARGS for k, _ in e.kwargs):
            raise Unliftable(WHAT.get(func, f"`{func}`"))
        args = tuple(_numba_expr(Tuple_(a.items) if isinstance(a, List_) else a)
                     for a in e.args)  # (np.concatenate's list: a tuple in numba)
        args += tuple(_numba_expr(v) for k, v in e.kwargs if k == "out")
        if func in RENAMED.values() and len(args) == 1:  # (no out=: a new array)
            args += (call("np.empty_like", args[0]),)
        return Call(Name(func), args, tuple((k, _numba_expr(v)) for k, v in e.kwargs
                                            if k != "out"))
    if isinstance(e, Attr):
        if e.attr != "T":
            raise Unliftable(f"`.{e.attr}`")
        return Attr(_numba_expr(e.value), e.attr)
    if not is_dataclass(e):
        return e
    return type(e)(**{f.name: _map(getattr(e, f.name)) for f in fields(e)})


def _map(x):
    if isinstance(x, Expr):
        return _numba_expr(x)
    if isinstance(x, tuple):
        return tuple(_map(item) for item in x)
    return x


def _fname(c: Call) -> str:
    f = c.func
    if isinstance(f, Name):
        return f.id
    if isinstance(f, Attr) and isinstance(f.value, Name):
        return f"{f.value.id}.{f.attr}"
    return "?"


# ---- what goes in and out -------------------------------------------------------------------
def _interface(loop: For, after) -> Tuple[List[str], List[str]]:
    """The loop's parameters (the names it reads before binding them, in order of first use)
    and the names it binds that its function reads after it (returned)."""
    reads: Dict[str, None] = {}
    bound: Dict[str, None] = {loop.var.id: None}
    _scan(loop.iterable, reads, bound)
    for s in loop.body:
        _scan_stmt(s, reads, bound)
    later = {n for s in after for n in _stmt_names(s)}
    params = [n for n in reads if n not in GLOBALS]
    returned = [n for n in bound if n in later and n != loop.var.id]
    return params, returned


def _scan_stmt(s: Stmt, reads: dict, bound: dict) -> None:
    if isinstance(s, Assign):
        _scan(s.value, reads, bound)
        if isinstance(s.target, Name):
            if s.op != "=":
                _scan(s.target, reads, bound)
            bound[s.target.id] = None
        else:
            _scan(s.target, reads, bound)
    elif isinstance(s, If):
        _scan(s.cond, reads, bound)
        for b in s.body + s.orelse:
            _scan_stmt(b, reads, bound)
    elif isinstance(s, Do):
        _scan(s.value, reads, bound)
    elif isinstance(s, For):
        raise Unliftable("a loop inside the time loop")


def _scan(e: Expr, reads: dict, bound: dict) -> None:
    for n in _expr_names(e):
        if n not in bound:
            reads.setdefault(n, None)


def _expr_names(e: Expr) -> List[str]:
    """The plain names ``e`` reads (not ``np.tanh``'s ``np``, a call's name, or an attribute)."""
    out = []
    for p in parts(e):
        if isinstance(p, Name) and "." not in p.id:
            out.append(p.id)
    return out


def _stmt_names(s) -> List[str]:
    """Every name statement ``s`` (and its bodies) reads or writes."""
    out: List[str] = []
    for f in fields(s) if is_dataclass(s) else ():
        x = getattr(s, f.name)
        for item in (x if isinstance(x, tuple) else (x,)):
            if isinstance(item, Expr):
                out += _expr_names(item)
            elif isinstance(item, tuple) and item and isinstance(item[-1], Expr):
                out += _expr_names(item[-1])
            elif isinstance(item, Stmt):
                out += _stmt_names(item)
    return out
