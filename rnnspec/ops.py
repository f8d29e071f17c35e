"""Derivative rules: one per primitive op, forward and backward side by side.

In: nothing at import time; codegen asks :func:`rule` for an op name.  Out: :class:`Rule`
objects.  A rule renders Python/NumPy text: ``forward(args)`` is the op's value from the texts of
its arguments; ``backward(i, g, out, args)`` is the vector-Jacobian product for argument ``i``
given the text ``g`` of the upstream gradient (``None`` when the argument gets no gradient).
Texts work both for one step (arrays ``(B, n)``) and for all steps at once (``(T, B, n)``): the
leading axes broadcast.  Codegen sums the contribution over broadcast axes; a rule that already
returns a reduced contribution lists the argument in ``reduced``.  ``needs_out``/``needs_args``
say which values the backward pass reads, so codegen knows what to keep.

Asking for an op without a rule raises ``NotImplementedError`` naming the op.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional

from .errors import missing_rule

ATOM, UNARY, PRODUCT, SUM = 4, 3, 2, 1


def precedence(text: str) -> int:
    """The binding strength of a Python expression text: SUM < PRODUCT < UNARY < ATOM."""
    depth = 0
    level = ATOM
    i = 0
    if text.startswith("-"):
        level = UNARY
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch == " " and i + 2 < len(text) and text[i + 2] == " ":
            op = text[i + 1]
            if op in "+-":
                return SUM
            if op in "*/@":
                level = min(level, PRODUCT)
        elif depth == 0 and text.startswith(" if ", i):
            return 0
        i += 1
    return level


def wrap(text: str, level: int) -> str:
    """Parenthesize ``text`` if it binds less tightly than ``level``."""
    return text if precedence(text) >= level else f"({text})"


@dataclass(frozen=True)
class Rule:
    name: str
    forward: Callable[..., str]
    backward: Callable[..., Optional[str]]
    needs_out: bool = False
    needs_args: FrozenSet[int] = frozenset()
    reduced: FrozenSet[int] = frozenset()
    passthrough: FrozenSet[int] = frozenset()  # backward(i) is exactly g
    helpers: tuple = ()
    # backward is g * slope(out) for an activation: in a time loop, slope is computed for all
    # steps before the loop (it does not depend on the recursion) and each step multiplies once
    slope: Optional[Callable[[str], str]] = None
    loss: bool = False  # a loss term: a scalar summed into the loss, never an output


RULES: Dict[str, Rule] = {}


def register(name: str, forward, backward, **kw) -> None:
    kw = {k: frozenset(v) if k in ("needs_args", "reduced", "passthrough") else v
          for k, v in kw.items()}
    RULES[name] = Rule(name, forward, backward, **kw)


def is_loss(op_name: str) -> bool:
    """Whether the op is a loss term (the one place that says which ops are)."""
    r = RULES.get(op_name)
    return r is not None and r.loss


def rule(name: str) -> Rule:
    try:
        return RULES[name]
    except KeyError:
        raise missing_rule(name) from None


def _neg(g: str) -> str:
    return f"-{wrap(g, UNARY + 1)}" if not g.startswith("-") else wrap(g[1:], UNARY)


# ---- arithmetic ---------------------------------------------------------------------------------
register("add",
         lambda a, b, **_: f"{a} + {wrap(b, PRODUCT)}",
         lambda i, g, out, args, **_: g,
         passthrough={0, 1})
register("sub",
         lambda a, b, **_: f"{a} - {wrap(b, PRODUCT)}",
         lambda i, g, out, args, **_: g if i == 0 else _neg(g),
         passthrough={0})
register("neg",
         lambda a, **_: f"-{wrap(a, UNARY + 1)}",
         lambda i, g, out, args, **_: _neg(g))
register("mul",
         lambda a, b, **_: f"{wrap(a, PRODUCT)} * {wrap(b, UNARY)}",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * {wrap(args[1 - i], UNARY)}",
         needs_args={0, 1})
register("div",
         lambda a, b, **_: f"{wrap(a, PRODUCT)} / {wrap(b, UNARY)}",
         lambda i, g, out, args, **_: (f"{wrap(g, PRODUCT)} / {wrap(args[1], UNARY)}" if i == 0
                                       else f"-{wrap(g, UNARY + 1)} * {wrap(out, UNARY)} / "
                                            f"{wrap(args[1], UNARY)}"),
         needs_out=True, needs_args={1})
# W @ v for a batch of row vectors v: v @ W.T; dW sums the outer products over all rows.
# For all steps at once (rows == True: a (T, B, n) array), the rows go through one product:
# NumPy would otherwise run T small products.
register("matvec",
         lambda W, v, rows=False, **_: (f"_rows({v}, {wrap(W, ATOM)}.T)" if rows else
                                        f"{wrap(v, PRODUCT)} @ {wrap(W, ATOM)}.T"),
         lambda i, g, out, args, rows=False, **_: (
             f"_flat({g}).T @ _flat({args[1]})" if i == 0 else
             f"_rows({g}, {wrap(args[0], ATOM)})" if rows else
             f"{wrap(g, PRODUCT)} @ {wrap(args[0], ATOM)}"),
         needs_args={0, 1}, reduced={0}, helpers=("_flat", "_rows"))

# Fused products: W_1 @ v, ..., W_k @ v (the gates of an LSTM reading h[t-1]) become one product
# with the stacked weights; each original product is a part of it.
register("stack_rows",
         lambda *Ws, **_: f"np.concatenate([{', '.join(Ws)}])",
         lambda i, g, out, args, bounds, **_: "{}[{}:{}]".format(wrap(g, ATOM), *bounds[i]),
         reduced=range(64))
register("part",
         lambda F, bounds, index, **_: "{}[..., {}:{}]".format(wrap(F, ATOM), *bounds[index]),
         lambda i, g, out, args, **_: g)  # assembled by codegen: one concatenation of all parts

# ---- element-wise functions ---------------------------------------------------------------------
register("tanh",
         lambda a, **_: f"np.tanh({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * (1 - {out} * {out})",
         needs_out=True, slope=lambda out: f"1 - {out} * {out}")
register("sigmoid",
         lambda a, **_: f"_sigmoid({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * {out} * (1 - {out})",
         needs_out=True, helpers=("_sigmoid",), slope=lambda out: f"{out} * (1 - {out})")
register("relu",
         lambda a, **_: f"np.maximum({a}, 0)",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * ({out} > 0)",
         needs_out=True, slope=lambda out: f"{out} > 0")
register("identity",
         lambda a, **_: a,
         lambda i, g, out, args, **_: g,
         passthrough={0})
register("exp",
         lambda a, **_: f"np.exp({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * {out}",
         needs_out=True)
register("log",
         lambda a, **_: f"np.log({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} / {wrap(args[0], UNARY)}",
         needs_args={0})

# ---- vector functions ---------------------------------------------------------------------------
register("softmax",
         lambda a, **_: f"_softmax({a})",
         lambda i, g, out, args, **_: (f"{out} * ({g} - ({wrap(g, PRODUCT)} * {out})"
                                       f".sum(axis=-1, keepdims=True))"),
         needs_out=True, helpers=("_softmax",))


def _concat_backward(i, g, out, args, sizes: List[str], **_):
    start = " + ".join(sizes[:i]) or "0"
    stop = " + ".join(sizes[:i + 1])
    lo = "" if start == "0" else start
    return f"{wrap(g, ATOM)}[..., {lo}:{stop}]" if i < len(sizes) - 1 else \
        f"{wrap(g, ATOM)}[..., {lo}:]"


register("concat",
         lambda *args, **_: f"_concat({', '.join(args)})",
         _concat_backward,
         helpers=("_concat",))


# ---- time ---------------------------------------------------------------------------------------
# pick(h, k): one chosen step of a sequence (h[end], h[3]); codegen renders the index and the
# backward scatters the gradient into that step.
register("pick",
         lambda h, index, **_: f"{h}[{index}]",
         lambda i, g, out, args, **_: g)

# Rows for every step s of every sequence (a nested axis w in s runs with that batch) regrouped
# into a value over the steps s, and back.
register("regroup",
         lambda a, T, n, **_: f"{wrap(a, ATOM)}.reshape({T}, -1, {n})",
         lambda i, g, out, args, n, **_: f"{wrap(g, ATOM)}.reshape(-1, {n})",
         reduced={0})

# ---- attention ----------------------------------------------------------------------------------
# attn_weights(q, K, *params): softmax over the steps of K of score(q, K[t]) -- one row per query
# step; attn_context(a, V): the weighted sum of V's steps.  K and V are whole sequences, so their
# gradients (and the parameters') are already summed over the query steps.
def _attention_options(score, roles, window, causal, qpos, last, **_):
    opts = [repr(score)]
    opts += [f"{role}={{{k}}}" for k, role in enumerate(roles)]
    if window is not None:
        opts.append(f"d={window!r}")
    opts.append(f"last={last}")
    if causal:
        opts.append(f"qpos={qpos}")
    return opts


def _attention_forward(q, K, *params, **attrs):
    opts = [o.format(*params) for o in _attention_options(**attrs)]
    return f"_attention({q}, {K}, {', '.join(opts)})"


def _attention_backward(i, g, out, args, roles, **attrs):
    q, K, params = args[0], args[1], args[2:]
    opts = [o.format(*params) for o in _attention_options(roles=roles, **attrs)]
    wrt = ("q", "K")[i] if i < 2 else roles[i - 2]
    return f"_attention_grad({g}, {out}, {q}, {K}, {opts[0]}, {wrt!r}, {', '.join(opts[1:])})"


register("attn_weights", _attention_forward, _attention_backward,
         needs_out=True, needs_args=range(8), reduced=range(1, 8),
         helpers=("_attention", "_attention_grad", "_flat"))
register("attn_context",
         lambda a, V, **_: f"_context({a}, {V})",
         lambda i, g, out, args, **_: (f"_context_grad_weights({g}, {args[1]})" if i == 0 else
                                       f"_context_grad_values({g}, {args[0]})"),
         needs_args={0, 1}, reduced={1}, helpers=("_context",))

# ---- teacher forcing and generation ------------------------------------------------------------
# onehot(y[t-d]): class targets as one-hot vectors, d steps later (the start class before step 1);
# no gradient flows into targets.  choose(p): a class drawn from the distribution p (or its most
# likely class), as a one-hot vector -- generation only, it has no derivative.
register("onehot",
         lambda y, size, delay, start, **_: f"_onehot({y}, {size}, {delay}, {start}, dtype)",
         lambda i, g, out, args, **_: None,
         helpers=("_onehot",))
register("choose",
         lambda p, start=None, **_: f"_choose({p}, rng, greedy{', ' + start if start else ''})",
         lambda i, g, out, args, **_: None,
         helpers=("_choose",))

# ---- losses (scalar; their gradients go to the logits / prediction) -----------------------------
# A per-step loss is weighted by w (T, B): which steps count (selected steps, each sequence's own
# length) and 1/count for a mean; w is None when every step counts once.
def _w(w):
    return f", {w}" if w else ""


# cross_entropy(z, o, y): -log softmax(z)[y] computed stably from the logits z; o = softmax(z).
register("cross_entropy",
         lambda z, o, y, w=None, **_: f"_cross_entropy({z}, {y}, {w}, {o})",
         lambda i, g, out, args, w=None, **_: (
             f"_cross_entropy_grad({args[1]}, {args[2]}, {w}, {g})" if i == 0 else None),
         needs_args={1, 2}, helpers=("_cross_entropy", "_cross_entropy_grad"), loss=True)
# squared_error(p, y): 1/2 |p - y|^2
register("squared_error",
         lambda p, y, w=None, **_: f"_squared_error({p}, {y}{_w(w)})",
         lambda i, g, out, args, w=None, **_: (
             f"{wrap(g, PRODUCT)} * _squared_error_grad({args[0]}, {args[1]}{_w(w)})"
             if i == 0 else None),
         needs_args={0, 1}, helpers=("_squared_error", "_squared_error_grad"), loss=True)


# ---- helper functions emitted into generated modules (only those used) -------------------------
HELPERS: Dict[str, str] = {
    "_onehot": '''
def _onehot(y, k, delay, start, dtype):
    """One-hot vectors (T, B, k) of the classes y[t - delay] (the start class before step 1)."""
    if delay:  # (all start classes when the sequence is shorter than the delay)
        y = np.concatenate([np.full((min(delay, len(y)),) + y.shape[1:], start, y.dtype),
                            y[:max(len(y) - delay, 0)]])
    return np.eye(k, dtype=dtype)[y]
''',
    "_choose": '''
def _choose(p, rng, greedy, start=None, steps=None):
    """A class per row of the distributions p (B, k), as one-hot vectors: the most likely one
    (greedy) or one drawn at random.  start: the class fed instead (a declared start class, at
    the steps before the first chosen one): in every row, or with ``steps`` in the first
    ``steps`` steps of p (T, B, k)."""
    if greedy:
        chosen = p.argmax(axis=-1)
    else:
        cum = np.cumsum(p, axis=-1)
        chosen = (rng.random(p.shape[:-1] + (1,)) * cum[..., -1:] > cum).sum(axis=-1)
        chosen = np.minimum(chosen, p.shape[-1] - 1)
    if start is not None:
        chosen[:steps] = start
    return np.eye(p.shape[-1], dtype=p.dtype)[chosen]
''',
    "_context": '''
def _context(a, V):
    """Attention context: the weights a (..., B, Tk) times the steps of V (Tk, B, n)."""
    return np.einsum("...bt,tbn->...bn", a, V)


def _context_grad_weights(g, V):
    return np.einsum("...bn,tbn->...bt", g, V)


def _context_grad_values(g, a):
    """Summed over all query steps."""
    B = g.shape[-2]
    return np.einsum("qbt,qbn->tbn", a.reshape(-1, B, a.shape[-1]), g.reshape(-1, B, g.shape[-1]))
''',
    "_attention": '''
def _attention_parts(q, K, score, W=None, v=None, Wp=None, vp=None, d=None, last=None, qpos=None):
    """Scores of the query q (..., B, nq) against every step of K (Tk, B, nk), as in 004 4.5:
    dot q.k, scaled q.k/sqrt(n), cosine, general q^T W k, concat v^T tanh(W [q; k]); with
    window d, local attention's Gaussian around p = Tk sigmoid(vp . tanh(Wp q)); steps past a
    key sequence's length (and, with qpos, after the query's own step) are masked out.  A query
    shared by the whole batch (a parameter vector (nq,)) is broadcast to every row."""
    if q.ndim == 1:
        q = np.broadcast_to(q, (K.shape[1], q.shape[0]))
    Kb = K.transpose(1, 0, 2)  # (B, Tk, nk)
    Tk = Kb.shape[1]
    parts = {"Kb": Kb}
    if score in ("dot", "scaled"):
        e = np.einsum("...bn,btn->...bt", q, Kb)
        if score == "scaled":
            e = e / Kb.shape[-1] ** 0.5
    elif score == "cosine":
        qn = np.sqrt((q * q).sum(axis=-1, keepdims=True))
        kn = np.sqrt((Kb * Kb).sum(axis=-1, keepdims=True))
        parts.update(qn=qn, kn=kn)
        e = np.einsum("...bn,btn->...bt", q / qn, Kb / kn)
    elif score == "general":
        e = np.einsum("...bm,btm->...bt", q @ W, Kb)
    else:  # concat
        nq = q.shape[-1]
        U = np.tanh((q @ W[:, :nq].T)[..., None, :] + Kb @ W[:, nq:].T)  # (..., B, Tk, att)
        parts["U"] = U
        e = U @ v
    parts["score"] = e
    steps = np.arange(1, Tk + 1, dtype=q.dtype)  # float, so that float32 stays float32
    length = (np.full(Kb.shape[0], Tk) if last is None else last + 1).astype(q.dtype)  # (B,)
    if d is not None:
        r = np.tanh(q @ Wp.T)
        p = length * (1 / (1 + np.exp(-(r @ vp))))  # (..., B)
        G = np.exp(-(steps - p[..., None]) ** 2 / (2 * d * d))
        parts.update(r=r, p=p, G=G, length=length)
        e = e * G
    valid = steps <= length[:, None]  # (B, Tk)
    if qpos is not None:  # causal: keys up to the query's own step
        qsteps = np.arange(q.shape[0]) if qpos == "all" else qpos
        valid = valid & (steps <= np.asarray(qsteps)[..., None, None] + 1)
    e = np.where(valid, e, -np.inf)
    e = np.exp(e - e.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True), parts


def _attention(q, K, score, **options):
    """The attention weights (..., B, Tk): a softmax over the steps of K."""
    return _attention_parts(q, K, score, **options)[0]
''',
    "_attention_grad": '''
def _attention_grad(g, a, q, K, score, wrt, W=None, v=None, Wp=None, vp=None, d=None, last=None,
                    qpos=None):
    """The gradient of _attention with respect to `wrt` ('q', 'K', 'W', 'v', 'Wp' or 'vp') given
    g = d(weights); those of K and of the parameters are summed over all query steps.  Only the
    one asked for is computed (inside a time loop, that is the query's)."""
    if q.ndim == 1:  # a query shared by the batch: its gradient is summed by the caller
        q = np.broadcast_to(q, (K.shape[1], q.shape[0]))
    _, parts = _attention_parts(q, K, score, W, v, Wp, vp, d, last, qpos)
    Kb = parts["Kb"]
    B = Kb.shape[0]
    de = a * (g - (g * a).sum(axis=-1, keepdims=True))  # through the softmax
    dq_local = 0
    if d is not None:  # through the Gaussian window around p
        G, p, r, length = parts["G"], parts["p"], parts["r"], parts["length"]
        steps = np.arange(1, Kb.shape[1] + 1, dtype=q.dtype)
        dp = (de * parts["score"] * G * (steps - p[..., None]) / (d * d)).sum(axis=-1)
        du = dp * p * (1 - p / length)
        if wrt == "vp":
            return _flat(r).T @ du.reshape(-1)
        da = du[..., None] * vp * (1 - r * r)
        if wrt == "Wp":
            return _flat(da).T @ _flat(q)
        if wrt == "q":
            dq_local = da @ Wp
        de = de * G
    if score == "scaled":
        de = de / Kb.shape[-1] ** 0.5
    flat_de = de.reshape(-1, B, de.shape[-1])
    flat_q = q.reshape(-1, B, q.shape[-1])
    if score in ("dot", "scaled"):
        if wrt == "q":
            return np.einsum("...bt,btn->...bn", de, Kb) + dq_local
        return np.einsum("qbt,qbn->tbn", flat_de, flat_q)
    if score == "cosine":
        qn, kn, e = parts["qn"], parts["kn"], parts["score"]
        if wrt == "q":
            return (np.einsum("...bt,btn->...bn", de, Kb / kn)
                    - (de * e).sum(axis=-1, keepdims=True) * q / qn) / qn + dq_local
        dkn = np.einsum("qbt,qbn->btn", flat_de, flat_q / qn.reshape(-1, B, 1))  # d(K / |K|)
        khat = Kb / kn
        return ((dkn - (dkn * khat).sum(axis=-1, keepdims=True) * khat) / kn).transpose(1, 0, 2)
    if score == "general":
        if wrt == "q":
            return np.einsum("...bt,btm->...bm", de, Kb) @ W.T + dq_local
        if wrt == "K":
            return np.einsum("qbt,qbm->tbm", flat_de, flat_q @ W)
        return _flat(flat_q).T @ _flat(np.einsum("qbt,btm->qbm", flat_de, Kb))  # W
    nq = q.shape[-1]  # concat
    U = parts["U"]
    if wrt == "v":
        return (de[..., None] * U).reshape(-1, U.shape[-1]).sum(axis=0)
    dpre = de[..., None] * v * (1 - U * U)  # (..., B, Tk, att)
    if wrt == "q":
        return dpre.sum(axis=-2) @ W[:, :nq] + dq_local
    dBk = dpre.reshape((-1,) + dpre.shape[-3:]).sum(axis=0)  # (B, Tk, att)
    if wrt == "K":
        return (dBk @ W[:, nq:]).transpose(1, 0, 2)
    dA = dpre.sum(axis=-2)
    return np.concatenate([_flat(dA).T @ _flat(q), _flat(dBk).T @ _flat(Kb)], axis=1)  # W
''',
    "_flat": '''
def _flat(a):
    """All rows of a (..., n) array as one (rows, n) matrix."""
    return a.reshape(-1, a.shape[-1])
''',
    "_rows": '''
def _rows(a, b):
    """a @ b for an array a (..., n) of rows, as one matrix product over all of them."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[-1],))
''',
    "_sigmoid": '''
def _sigmoid(a, out=None):
    """Logistic sigmoid 1 / (1 + exp(-a)); -a is capped below the overflow of exp (709 in
    float64, 88 in float32, where the sigmoid is 0 to the last digit): no overflow, no warning.
    (exp is about twice as fast as tanh in NumPy.)  With out, written into that array."""
    out = np.negative(a, out=out)
    np.minimum(out, 88.0 if out.dtype == np.float32 else 709.0, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out
''',
    "_softmax": '''
def _softmax(a):
    """Softmax over the last axis, shifted by the maximum for stability."""
    e = a - a.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e
''',
    "_concat": '''
def _concat(*parts):
    """Concatenate along the last axis, broadcasting the leading (time, batch) axes."""
    lead = np.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return np.concatenate([np.broadcast_to(p, lead + p.shape[-1:]) for p in parts], axis=-1)
''',
    "_cross_entropy": '''
def _cross_entropy(z, y, w=None, p=None):
    """Sum over all rows of -log softmax(z)[y] (weighted by w).  From the probabilities
    p = softmax(z) when given: -log p[y], with no second exp over the logits; rows where p[y]
    is too small to hold its digits, and all rows without p, stably via log-sum-exp."""
    k = z.shape[-1]
    rows, cls = np.arange(y.size), y.reshape(-1)
    if p is None:
        exact = np.zeros(y.size, bool)
        nll = np.zeros(y.size, z.dtype)
    else:
        py = p.reshape(-1, k)[rows, cls]
        exact = py > (2e-31 if p.dtype == np.float32 else 4e-301)  # 2**24 times the tiniest
        nll = -np.log(np.where(exact, py, 1))
    if not exact.all():
        zz = z.reshape(-1, k)[~exact]
        m = zz.max(axis=-1)
        lse = m + np.log(np.exp(zz - m[:, None]).sum(axis=-1))
        nll[~exact] = lse - zz[np.arange(len(zz)), cls[~exact]]
    return float(nll.sum() if w is None else (w.reshape(-1) * nll).sum())
''',
    "_cross_entropy_grad": '''
def _cross_entropy_grad(p, y, w=None, scale=1.0):
    """Gradient of scale * _cross_entropy with respect to the logits: softmax(z) - onehot(y),
    times scale (and the weights w), in one pass over p."""
    g = p.copy() if w is None and scale == 1 else p * (scale if w is None else
                                                       scale * w[..., None])
    flat = g.reshape(-1, g.shape[-1])
    flat[np.arange(y.size), y.reshape(-1)] -= scale if w is None else scale * w.reshape(-1)
    return g
''',
    "_squared_error": '''
def _squared_error(p, y, w=None):
    """Sum over all rows of 1/2 |p - y|^2 (weighted by w)."""
    se = 0.5 * np.square(p - y).sum(axis=-1)
    return float(se.sum() if w is None else (w * se).sum())
''',
    "_squared_error_grad": '''
def _squared_error_grad(p, y, w=None):
    """Gradient of _squared_error with respect to p."""
    return p - y if w is None else (p - y) * w[..., None]
''',
}
