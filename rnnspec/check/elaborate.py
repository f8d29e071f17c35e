"""Elaboration: the calls that create parameters -- ``affine``/``gate``, ``attend`` and ``embed``.

In: the call, its :class:`.context.Context` (a connection without ``size=`` takes the size
expected of it; the prefix of created names is the equation's value unless ``name=``).  Out: its
type, the parameters it creates in ``Symbols.params`` (``auto=True``, in a fixed order: for a
connection ``W_<prefix>_<source>`` per source then ``b_<prefix>``; for attention ``Wa_``, ``va_``,
``Wp_``, ``vp_`` as its score and window need; for an embedding ``E_<input>``), and its record
(:class:`~.model.Connection` in ``Symbols.connections``, :class:`~.model.Attention` in
``Symbols.attentions``, the matrix's name in ``Symbols.embeds``).  Reported here: unknown options
and bad option values, sources that are not vectors, sizes that cannot be told or disagree,
created names already taken, attention over what is not a whole sequence, and an embedding of
what is not a class input at the step being computed.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from .. import ast
from ..ast import unparse
from ..delays import ATTEND, SAME
from ..sizes import Size
from . import expressions, references, values
from .context import Context
from .declarations import check_init
from .model import PARAM, STATIC, STEP, Attention, Connection, Ty
from .symbols import Refused, Symbols, suggest

SCORES = ("dot", "scaled", "cosine", "general", "concat")


def connection(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """``affine(s1, s2, ...)`` / ``gate(...)``: ``sum_i W_i @ s_i + b`` (through a sigmoid for
    gate), with its parameters created."""
    try:
        return _connection(sym, c, ctx)
    except Refused:
        return None


def attention(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """``attend(query, keys[, values], score=, size=, name=, window=, mask=)``."""
    try:
        return _attention(sym, c, ctx)
    except Refused:
        return None


def _connection(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    opts = _options(sym, c, ("size", "name", "bias", "init"))
    if not c.args:
        raise sym.refuse(c, f"{c.func}() needs at least one source", f"{c.func}(x[t], h[t-1])")
    size = _connection_size(sym, c, ctx, opts)
    prefix = _option(sym, opts, "name", None, _plain_name, "f") or \
        _automatic_prefix(sym, ctx.owner)
    bias = _option(sym, opts, "bias", True, _bias_option)
    init, init_arg = _option(sym, opts, "init", ("xavier", None), _init_option)
    tys = [expressions.type_expr(sym, a, ctx.operand()) for a in c.args]
    if any(t is None for t in tys):
        return None
    for a, t in zip(c.args, tys):
        if t.shape != "vec":
            raise sym.refuse(a, f"{c.func}() sources are vectors, but {unparse(a)} is "
                             f"{t.describe()}", "pass vectors")
    labels = _weight_labels(c.args)
    new = [(f"W_{prefix}_{lab}", (size, t.rows), init, init_arg) for lab, t in zip(labels, tys)]
    if bias:
        new.append((f"b_{prefix}", (size,), "zeros", None))
    created = [sym.create_param(c, *p, maker="connection") for p in new]  # each one reported
    if not all(created):
        return None
    weights = [(f"W_{prefix}_{lab}", a) for lab, a in zip(labels, c.args)]
    sym.connections[c] = Connection(prefix, weights, f"b_{prefix}" if bias else None,
                                    "sigmoid" if c.func == "gate" else None, size)
    return sym.note(c, ctx.ty("vec", size, None, max(t.tk for t in tys)))


def embedding(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    """``embed(x[t], n)``: the rows of a created (V, n) matrix ``E_<x>`` (``name=``: ``E_<name>``)
    picked by the class input x's indices."""
    try:
        return _embedding(sym, c, ctx)
    except Refused:
        return None


def _embedding(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    opts = _options(sym, c, ("size", "name", "init"))
    if not c.args or len(c.args) > 2 or (len(c.args) == 2) == ("size" in opts):
        raise sym.refuse(c, "embed() takes a class input and the size of its vectors",
                         "embed(x[t], 16) or embed(x[t], size=hidden)")
    r = c.args[0]
    inp = sym.inputs.get(r.name) if isinstance(r, ast.Ref) else None
    if inp is None or inp.kind != "class":
        raise sym.refuse(r, f"embed() picks rows by class indices, but `{unparse(r)}` is not "
                         f"a class input", "declare input x[t]: class(V) and write embed(x[t], 16)")
    size = expr_size(sym, c.args[1], "") if len(c.args) == 2 else kw_size(sym, opts["size"])
    if size is None:
        raise Refused
    if ctx.expected is not None and size != ctx.expected:
        raise sym.refuse(c, f"embed() gives vectors of size {size} but '{ctx.owner}' has size "
                         f"{ctx.expected}", "make the sizes agree")
    class_step(sym, r, ctx, "embed", inp.axis)
    prefix = _option(sym, opts, "name", None, _plain_name, "emb") or r.name
    init, init_arg = _option(sym, opts, "init", ("normal", 0.1), _init_option)
    pname = f"E_{prefix}"
    if not sym.create_param(c, pname, (inp.size, size), init, init_arg, maker="embedding"):
        return None
    sym.used.add(r.name)
    sym.embeds[c] = pname
    return sym.note(c, ctx.ty("vec", size, None, STEP))


def class_step(sym: Symbols, r: ast.Ref, ctx: Context, func: str, axis: str) -> None:
    """A class input is read at the step being computed (``x[t]``), on its own axis."""
    ix = r.index
    if not ctx.seq or ix is None or ix.kind != "rel" or ix.offset != 0 or ix.var != axis or \
            ctx.axis != axis:
        raise sym.refuse(r, f"{func}() reads a class input at the step being computed, "
                         f"such as {r.name}[{axis}]", f"{func}({r.name}[{axis}])")
    sym.references.append((r.name, ctx.owner, SAME))


def _options(sym: Symbols, c: ast.Call, allowed: Tuple[str, ...]) -> dict:
    """The keyword arguments of ``c`` by name (refused: one not in ``allowed``)."""
    opts = {}
    for kw in c.kwargs:
        if kw.name not in allowed:
            raise sym.refuse(kw, f"{c.func}() has no option '{kw.name}'",
                             "options: " + ", ".join(f"{name}=" for name in allowed))
        opts[kw.name] = kw
    return opts


def _option(sym: Symbols, opts: dict, name: str, default, parse, *args):
    """Option ``name`` as ``parse(sym, its keyword argument, *args)`` reads it (refusing a bad
    value), or ``default`` when it is not given."""
    return parse(sym, opts[name], *args) if name in opts else default


def kw_size(sym: Symbols, kw: ast.KwArg) -> Optional[Size]:
    """The size written as ``size=...`` (a dimension, an integer, sums and multiples)."""
    return expr_size(sym, kw.value, "size=")


def expr_size(sym: Symbols, value: ast.Node, what: str) -> Optional[Size]:
    """The size an expression writes (``what`` precedes it in the message), or None
    (reported)."""
    def conv(e) -> Optional[Size]:
        if isinstance(e, ast.Num) and float(e.value).is_integer() and e.value >= 1:
            return Size((), int(e.value))
        if isinstance(e, ast.Ref) and e.index is None and e.name in sym.dims:
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
    size = conv(value)
    if size is None:
        sym.rep.error(value, f"{what}{unparse(value)} is not a size",
                      f"write a dimension name such as {what}hidden, or in + hidden")
    return size


def _size_option(sym: Symbols, kw: ast.KwArg) -> Size:
    size = kw_size(sym, kw)
    if size is None:  # (reported)
        raise Refused
    return size


def _connection_size(sym: Symbols, c: ast.Call, ctx: Context, opts: dict) -> Size:
    """The output size: ``size=``, or the size expected of the call; one of them, and equal."""
    size = ctx.expected
    if "size" in opts:
        size = _size_option(sym, opts["size"])
        if ctx.expected is not None and size != ctx.expected:
            raise sym.refuse(opts["size"], f"size={size} but '{ctx.owner}' has size "
                             f"{ctx.expected}", "make the sizes agree")
    if size is None:
        raise sym.refuse(c, f"cannot tell the output size of {c.func}(...)",
                         f"annotate the value ({ctx.owner}{f'[{ctx.axis}]' if ctx.seq else ''}: "
                         f"hidden = ...) or add size=hidden")
    return size


def _plain_name(sym: Symbols, kw: ast.KwArg, example: str) -> str:
    """The prefix given as ``name=``."""
    v = kw.value
    if not (isinstance(v, ast.Ref) and v.index is None):
        raise sym.refuse(v, "name= takes a plain name", f"for example name={example}")
    return v.name


def _automatic_prefix(sym: Symbols, owner: str) -> str:
    """The owner's name, numbered past the prefixes of the connections checked so far and of
    the ones around this one (an outer connection takes its prefix before its sources are
    checked: the outermost is 'f', the ones inside it 'f2', 'f3', ... in the order they are
    written)."""
    taken = {cn.prefix for cn in sym.connections.values()} | sym.open_prefixes
    prefix, k = owner, 1
    while prefix in taken:
        k += 1
        prefix = f"{owner}{k}"
    sym.open_prefixes.add(prefix)
    return prefix


def _bias_option(sym: Symbols, kw: ast.KwArg) -> bool:
    v = kw.value
    if isinstance(v, ast.Num) and v.value in (0, 1):
        return bool(v.value)
    if isinstance(v, ast.Ref) and v.name in ("true", "false", "True", "False"):
        return v.name.lower() == "true"
    raise sym.refuse(v, "bias= takes true or false", "bias=false")


def _init_option(sym: Symbols, kw: ast.KwArg) -> Tuple[str, Optional[float]]:
    """The initializer of the weights (``init=``) and its argument."""
    v = kw.value
    init_arg = None
    if isinstance(v, ast.Ref) and v.index is None:
        init = v.name
    elif (isinstance(v, ast.Call) and len(v.args) == 1 and not v.kwargs
          and isinstance(v.args[0], (ast.Num, ast.Unary))):
        init = v.func
        a = v.args[0]
        init_arg = -a.operand.value if isinstance(a, ast.Unary) else a.value
    else:
        raise sym.refuse(v, f"init={unparse(v)} is not an initializer",
                         "for example init=orthogonal or init=normal(0.1)")
    check_init(sym, kw, init, init_arg, 2)
    return init, init_arg


def _weight_labels(args) -> List[str]:
    """The suffix of each source's weight: its name (``W_f_x``); a name read at several steps
    gets the step (``W_f_h1``, ``W_f_h2``, ``W_f_h_end``); the positions if still ambiguous."""
    labels = [a.name if isinstance(a, ast.Ref) else str(i + 1) for i, a in enumerate(args)]
    repeated = {lab for lab in labels if labels.count(lab) > 1}
    for i, a in enumerate(args):
        if labels[i] in repeated and isinstance(a, ast.Ref) and a.index is not None:
            labels[i] = f"{a.name}{-a.index.offset}" if a.index.kind == "rel" else \
                f"{a.name}_{a.index.text().replace('-', '')}"
    if len(set(labels)) != len(labels):
        labels = [str(i + 1) for i in range(len(labels))]
    return labels


# ----- attention -------------------------------------------------------------------------------
def _attention(sym: Symbols, c: ast.Call, ctx: Context) -> Optional[Ty]:
    opts = _options(sym, c, ("score", "size", "name", "window", "mask"))
    if len(c.args) not in (2, 3):
        raise sym.refuse(c, f"attend() takes a query, keys and optionally values, got "
                         f"{len(c.args)} arguments", "attend(s[i-1], h) or attend(q[t], k, v)")
    score = _option(sym, opts, "score", "dot", _score_option)
    q = expressions.type_expr(sym, c.args[0], ctx.operand())
    keys = whole_sequence(sym, c.args[1], "keys")
    vals = whole_sequence(sym, c.args[2], "values") if len(c.args) == 3 else keys
    if q is None or keys is None or vals is None:
        return None
    if q.shape != "vec":
        raise sym.refuse(c.args[0], f"the query of attend() is a vector, but "
                         f"{unparse(c.args[0])} is {q.describe()}", "pass a vector")
    (kname, ksize, kaxis), (vname, vsize, vaxis) = keys, vals
    if vaxis != kaxis:
        raise sym.refuse(c.args[2], f"keys '{kname}' run over steps {kaxis} but values "
                         f"'{vname}' over steps {vaxis}", "keys and values are steps of one "
                         "sequence")
    regroup = _regroup(sym, c, ctx, q, kname, ksize, kaxis)
    if score in ("dot", "scaled", "cosine") and q.rows != ksize:
        raise sym.refuse(c, f"score={score} compares the query with each key, but the query "
                         f"{unparse(c.args[0])} has size {q.rows} and the keys '{kname}' size "
                         f"{ksize}", "make the sizes equal, or use score=general (a matrix "
                         "between them) or score=concat")
    att = _option(sym, opts, "size", q.rows, _size_option)
    window = _option(sym, opts, "window", None, _window_option)
    causal = _option(sym, opts, "mask", False, _mask_option, q, kaxis)
    prefix = _option(sym, opts, "name", ctx.owner, _plain_name, "att")
    params = _attention_params(sym, c, prefix, score, window, q.rows, ksize, att)
    for name in sorted({kname, vname}):
        sym.references.append((name, ctx.owner, ATTEND))
    sym.attentions[c] = Attention(score, kname, vname, kaxis, params, window, causal, ctx.owner,
                                  regroup)
    tk = STEP if q.tk == STEP or regroup else STATIC
    return sym.note(c, ctx.ty("vec", vsize, None, tk))


def _score_option(sym: Symbols, kw: ast.KwArg) -> str:
    v = kw.value
    score = v.name if isinstance(v, ast.Ref) and v.index is None else unparse(v)
    if score not in SCORES:
        raise sym.refuse(v, f"unknown attention score '{score}'", suggest(score, SCORES)
                         or f"scores: {', '.join(SCORES)}")
    return score


def whole_sequence(sym: Symbols, e: ast.Expr, what: str) -> Optional[Tuple[str, Size, str]]:
    """(name, size, axis) of a bare reference to a whole sequence, for attention."""
    if not isinstance(e, ast.Ref):
        sym.rep.error(e, f"attention runs over a sequence: the {what} must be the name of "
                      f"one, not `{unparse(e)}`", "name it with an equation, e.g. k[t] = ...")
        return None
    name = e.name
    info = sym.inputs.get(name) or sym.values.get(name)
    if info is None:
        def known():
            return list(sym.inputs) + list(sym.values)
        hint = "attend over an input or a value with a time index, such as h"
        if name not in sym.decl_at:
            references.undefined_name(sym, e, known, hint)
        else:
            sym.rep.error(e, f"attention over '{name}', which is not a sequence",
                          suggest(name, known()) or hint)
        return None
    if not info.seq:
        sym.rep.error(e, f"attention over '{name}', which is not a sequence (one vector per "
                      f"sequence)", "attend over a per-step value such as h[t]")
        return None
    if e.index is not None:
        sym.rep.error(e.index, f"attention runs over all steps of '{name}': write {name}, "
                      f"not {unparse(e)}", f"attend(query, {name})")
        return None
    size = info.size if info.size is not None else values.value_size(sym, name)
    if size is None:
        if name in sym.inferring:
            sym.rep.error(e, f"attention over '{name}', which is computed from this "
                          f"attention", "attend over a sequence computed without it")
        return None
    sym.used.add(name)
    return name, size, info.axis


def _regroup(sym: Symbols, c: ast.Call, ctx: Context, q: Ty, kname: str, ksize: Size,
             kaxis: str) -> Optional[str]:
    """Keys over a nested axis w in s: the outer axis s when a parameter query pools each step
    s from its steps w (None for queries over w); refused for any other nesting."""
    if kaxis in sym.nested:
        outer = sym.nested[kaxis]
        if q.tk == PARAM and ctx.seq and ctx.axis == outer:
            return outer  # pooling: one vector per step s from its steps w
        if not (q.tk == STEP and q.axis == kaxis):
            raise sym.refuse(c, f"attention over '{kname}', whose steps {kaxis} run inside "
                             f"every step {outer}: the query must be a parameter (one vector "
                             f"shared by all, like the word context of 4.5.3) in a value over "
                             f"{outer}, or a value over {kaxis}",
                             f"pool each step {outer}: v[{outer}] = attend(u, {kname}), with "
                             f"param u: {ksize}")
    elif ctx.axis in sym.nested and ctx.seq:
        raise sym.refuse(c, f"'{ctx.owner}' runs over steps {ctx.axis} inside every step "
                         f"{sym.nested[ctx.axis]}, but '{kname}' runs over {kaxis}",
                         f"attend over a sequence over {ctx.axis}")
    return None


def _window_option(sym: Symbols, kw: ast.KwArg) -> float:
    """d of local attention's Gaussian window (``window=``)."""
    v = kw.value
    if not isinstance(v, ast.Num) or v.value <= 0:
        raise sym.refuse(v, "window= is the width d of local attention's Gaussian, a "
                         "positive number", "for example window=2")
    return float(v.value)


def _mask_option(sym: Symbols, kw: ast.KwArg, q: Ty, kaxis: str) -> bool:
    """``mask=causal``: only keys up to the query's own step (queries on the keys' axis)."""
    v = kw.value
    if not (isinstance(v, ast.Ref) and v.name == "causal" and v.index is None):
        raise sym.refuse(v, f"unknown mask {unparse(v)}", "mask=causal: only keys up to the "
                         "query's own step")
    if q.tk != STEP or q.axis != kaxis:
        raise sym.refuse(v, "mask=causal needs queries and keys on the same time axis",
                         f"use it for self-attention: attend(q[{kaxis}], k, v, mask=causal)")
    return True


def _attention_params(sym: Symbols, c: ast.Call, prefix: str, score: str,
                      window: Optional[float], qsize: Size, ksize: Size, att: Size) -> dict:
    """Create the parameters the score and the window need: role -> parameter name."""
    shapes = {}
    if score == "general":
        shapes["W"] = (f"Wa_{prefix}", (qsize, ksize), "xavier")
    if score == "concat":
        shapes["W"] = (f"Wa_{prefix}", (att, qsize + ksize), "xavier")
        shapes["v"] = (f"va_{prefix}", (att,), "normal")
    if window is not None:
        shapes["Wp"] = (f"Wp_{prefix}", (att, qsize), "xavier")
        shapes["vp"] = (f"vp_{prefix}", (att,), "normal")
    params = {}
    for role, (pname, shape, init) in shapes.items():
        if not sym.create_param(c, pname, shape, init, 0.1 if init == "normal" else None,
                                maker="attention"):
            raise Refused
        params[role] = pname
    return params
