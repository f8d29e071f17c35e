"""The array-API backend: the NumPy module's statement nodes rewritten for any array library.

In: the statement nodes of ``forward`` and ``backward`` as :mod:`.forward` and :mod:`.adjoint`
build them for NumPy.  Out: the same computation in the array API standard (2023.12), through
``xp``, the namespace of the arrays given (array-api-compat's ``array_namespace``, bound by the
runtime's ``_validate`` into ``dims['xp']``), printed by the one printer like every other node.
The rewrite (:func:`to_array_api`), node by node:

- ``np.f(...)`` -> ``xp.f(...)`` (``np.concatenate`` -> ``xp.concat``); arrays made from
  nothing (``np.empty``, ``np.zeros``, ``np.arange``) get ``device=`` of the parameters;
- ``a.sum(axis=k)`` -> ``xp.sum(a, axis=k)``; ``W.T`` stays (the standard's ``.T`` of a matrix);
- ``f(..., out=x)`` -> ``x = f(...)`` (the standard has no ``out=``);
- ``h[last + 1, batch]`` (a step of each sequence) -> ``_pick(h, last + 1)``, and
  ``d_h[last + 1, batch] += g`` -> ``_add_at(d_h, last + 1, g)`` (the standard indexes with
  integer arrays only when every index is one);
- ``s[t]`` -> ``s[t, ...]``: the standard indexes every axis (a dict's key: as it is);
- the masks of padded batches: ``~mask[t] * g`` -> ``xp.where(mask[t], 0.0, g)`` and
  ``g *= mask[t]`` -> ``g = xp.where(mask[t], g, 0.0)`` (no arithmetic on booleans).

Views: a value of a shared gate buffer is a view (``f = f_g_q[..., :n]``) written through its
base (``f_g_q[t] = _sigmoid(...)``), and a hoisted sum is added into a view of a stacked product
(``f_sum += b_f``).  The standard leaves it to the library whether such writes are seen through
the other array; NumPy, CuPy, torch and array-api-strict (NumPy inside) share the memory of a
basic slice, which the module relies on (said in its header; tests/test_backend_array_api.py
checks every spec on array-api-strict and torch).  JAX (immutable arrays) is not supported.

:func:`xp_refusal`: the specs and options this backend cannot generate yet, positioned.
"""
from __future__ import annotations

import ast as pyast
from typing import Optional

from ..errors import Reporter, SpecError
from ..expr import (ELLIPSIS, Attr, Bin, Call, Ellipsis_, Expr, Index, Invert, Lit, Name, Num,
                    Tuple_, replace)
from ..ops import rule
from ..runtime import helper_texts
from ..stmt import Assign, Def, Do, For, If, Stmt

XP_RUNTIME = helper_texts("array_api.py")  # {group: text}: the runtime of array-API modules
WHAT = "the array-api backend cannot generate this spec yet"
HINT = "compile it with --backend numpy"
# the shape logic of rnnspec/runtime/validate.py that touches no array: copied as it is
SHARED = ("_TERMS", "_SHAPES_SEEN", "_terms", "_size", "_solve_dims", "_time_major",
          "_shape_text", "_check_names", "_refuse_missing", "_bind_dims",
          "_check_shapes", "_check_steps", "_lead", "_state_lead", "_batch",
          "_upstream_entries", "_steps_given")
HEADER = ("array-api backend: the namespace (xp), dtype and device are the parameters'. "
          "Values of a shared gate buffer are views written through the buffer (basic slices share "
          "memory in NumPy, CuPy, torch, array-api-strict)")
NUMPY_NOTE = "only init_params: NumPy's draws, the same numbers as the NumPy module's for a seed"
_SAME = {"tanh", "exp", "log", "add", "multiply", "subtract", "where", "zeros_like", "sqrt",
         "maximum", "minimum", "negative", "square"}
_MADE = {"empty", "zeros", "arange"}  # made from nothing: dtype as given, device the params'
XP, DEVICE = Name("xp"), Name("device")


def xp_refusal(sched, filename: str, checkpoint=None, rtrl=None) -> Optional[SpecError]:
    """None, or the positioned error naming every reason why this backend cannot generate the
    module: an op whose runtime helper has no array-API version (attention, embeddings,
    onehot), feedback, steps inside steps, ``checkpoint=`` and ``rtrl=``."""
    g = sched.graph
    m = g.model
    rep = Reporter(m.source, m.filename, once_per_place=True)  # (the path as given)
    for i in sorted(g.ops):
        op = g.ops[i]
        try:
            missing = [h for h in rule(op.op).helpers if h not in XP_RUNTIME]
        except NotImplementedError:  # (leaves: params, inputs, ...: no rule, no helper)
            continue
        if missing:
            rep.error(op.stmt or m.spec, f"{WHAT}: `{op.op}` needs {', '.join(missing)}, "
                      f"which has no array-API version", HINT)
    for call_node in m.feedbacks:
        rep.error(call_node, f"{WHAT}: it feeds a value back (feedback(...))", HINT)
    if m.nested:
        rep.error(m.spec, f"{WHAT}: it has steps inside steps ([w in s])", HINT)
    for flag, name in ((checkpoint, "--checkpoint"), (rtrl, "--rtrl")):
        if flag:
            rep.error(m.spec, f"{WHAT} with {name}", f"compile without {name}, or " + HINT)
    return rep.error_or_none()


def runtime_parts(numpy_runtime: str, numpy_api: str, helpers) -> list:
    """The texts of an array-API module's runtime: NumPy's loss_and_grad (it touches no array)
    and init_params renamed ``_numpy_init_params`` (the draws), the array-API init_params
    (which converts them), the op helpers, the validation of arrays, and the shape logic of
    NumPy's validation (``SHARED``)."""
    loss_and_grad, init = _defs(numpy_api, ("loss_and_grad",), ("init_params",))
    head = "def init_params("
    numpy_init = "def _numpy_init_params(" + init[len(head):]
    return [loss_and_grad, numpy_init, XP_RUNTIME["xp_init"]] + \
        [XP_RUNTIME[h] for h in sorted(helpers)] + [XP_RUNTIME["xp_runtime"],
                                                    _defs(numpy_runtime, SHARED)[0]]


def _defs(text: str, *groups) -> list:
    """For each tuple of names in ``groups``: the definitions of those names in ``text`` (a
    runtime group of rnnspec/runtime/, NumPy's), each as it is, in the file's order; none
    may use NumPy (``np``) unless it is init_params (the draws)."""
    tree = pyast.parse(text)
    out = []
    for names in groups:
        parts = []
        for node in tree.body:
            defined = [node.name] if isinstance(node, pyast.FunctionDef) else \
                [t.id for t in getattr(node, "targets", ()) if isinstance(t, pyast.Name)]
            if not any(n in names for n in defined):
                continue
            if defined != ["init_params"] and any(isinstance(n, pyast.Name) and n.id == "np"
                                                  for n in pyast.walk(node)):
                raise AssertionError(f"bug in rnnspec: {defined[0]} of the shared runtime uses np")
            parts.append(pyast.get_source_segment(text, node, padded=True))
        out.append("\n\n\n".join(parts))
    return out


# ---- the rewrite ---------------------------------------------------------------------------
def to_array_api(s: Stmt) -> Stmt:
    """Statement ``s`` (a function, a loop, ...) in the array API (see the module docstring)."""
    if isinstance(s, Def):
        body = tuple(to_array_api(b) for b in s.body)
        at = next(k for k, b in enumerate(body) if isinstance(b, Assign) and
                  isinstance(b.target, Tuple_) and Name("dtype") in b.target.items)
        bind = Assign(Tuple_((XP, DEVICE), bare=True),
                      Tuple_((_key("xp"), _key("device")), bare=True))
        return Def(s.name, s.params, s.doc, body[:at + 1] + (bind,) + body[at + 1:])
    if isinstance(s, If):
        return If(_expr(s.cond), _body(s.body), s.note, _body(s.orelse), s.else_note)
    if isinstance(s, For):
        return For(s.var, _expr(s.iterable), _body(s.body))
    if isinstance(s, Do):
        out = dict(s.value.kwargs).get("out") if isinstance(s.value, Call) else None
        if out is not None and not s.keyword:  # f(..., out=x) -> x = f(...)
            kwargs = tuple(kv for kv in s.value.kwargs if kv[0] != "out")
            return Assign(_expr(out), _expr(Call(s.value.func, s.value.args, kwargs)))
        return Do(_expr(s.value), s.keyword)
    if isinstance(s, Assign):
        return _assign(s)
    return s


def _body(body):
    return tuple(to_array_api(b) for b in body)


def _key(k: str) -> Index:
    return Index(Name("dims"), (Lit(k),))


def _assign(s: Assign) -> Stmt:
    target, value = _expr(s.target), _expr(s.value)
    if _at_steps(s.target):  # d_h[last + 1, batch] += g
        if s.op != "+=":
            raise AssertionError(f"bug in rnnspec: no array-API form of {s.op} at a step of "
                                 f"each sequence")
        return Do(Call(Name("_add_at"), (_expr(s.target.value), _expr(s.target.index[0]),
                                         value)))
    if s.op == "*=" and _is_mask(s.value):  # g *= mask[t]: no arithmetic on booleans
        return Assign(target, _call("where", value, target, Num(0.0)), "=", s.note)
    return Assign(target, value, s.op, s.note)


def _is_mask(e: Expr) -> bool:
    return isinstance(e, Index) and isinstance(e.value, Name) and e.value.id.startswith("mask")


def _at_steps(e: Expr) -> bool:
    """``a[rows, batch]``: a step of each sequence (rows an array of steps)."""
    return isinstance(e, Index) and len(e.index) == 2 and e.index[1] == Name("batch")


def _call(f: str, *args, **kwargs) -> Call:
    return Call(Attr(XP, f), tuple(args), tuple(kwargs.items()))


def _expr(e: Expr) -> Expr:
    """Expression ``e`` in the array API (children first)."""
    table = {}
    for c in _kids(e):
        new = _expr(c)
        if new is not c:
            table[c] = new
    if table:
        e = replace(e, table)
    return _one(e)


def _kids(e: Expr):
    from ..expr import _children
    return list(_children(e))


def _one(e: Expr) -> Expr:
    """One node rewritten (its children are already)."""
    if isinstance(e, Call):
        if any(k == "out" for k, _ in e.kwargs):
            raise AssertionError(f"bug in rnnspec: out= inside an expression: {e}")
        if isinstance(e.func, Name) and e.func.id.startswith("np."):
            return _numpy_call(e.func.id[3:], e)
        if isinstance(e.func, Attr) and e.func.attr == "sum":
            return Call(Attr(XP, "sum"), (e.func.value,) + e.args, e.kwargs)
        return e
    if isinstance(e, Bin) and e.op == "*" and isinstance(e.left, Invert) and \
            _is_mask(e.left.operand):  # ~mask[t] * g: g past a sequence's end
        return _call("where", e.left.operand, Num(0.0), e.right)
    if _at_steps(e):
        return Call(Name("_pick"), (e.value, e.index[0]))
    if isinstance(e, Index) and not any(isinstance(i, (Ellipsis_, Lit)) for i in e.index):
        return Index(e.value, e.index + (ELLIPSIS,))  # (the standard indexes every axis)
    return e


def _numpy_call(f: str, e: Call) -> Call:
    if f == "concatenate":
        return Call(Attr(XP, "concat"), e.args, e.kwargs)
    if f in _SAME:
        return Call(Attr(XP, f), e.args, e.kwargs)
    if f == "arange":
        return Call(Attr(XP, f), e.args, e.kwargs + (("device", DEVICE),))
    if f in _MADE:
        dtype = (("dtype", e.args[1]),) if len(e.args) > 1 else ()
        return Call(Attr(XP, f), e.args[:1], e.kwargs + dtype + (("device", DEVICE),))
    raise AssertionError(f"bug in rnnspec: np.{f} has no array-API form in codegen/xp.py")
