"""Helper functions of generated modules, as real code (linted, importable, testable).

Codegen copies into a generated module the text of the groups it uses (``ops.HELPERS``, read
from this file by :func:`rnnspec.runtime.helper_texts`): each group runs from its
``# ---- helper: NAME`` line to the next one.  The generated module imports only numpy, so
nothing here may use anything else; helpers may call each other only within what codegen
copies (a rule lists the groups it needs)."""
import numpy as np


# ---- helper: _onehot
def _onehot(y, k, delay, start, dtype):
    """One-hot vectors (T, B, k) of the classes y[t - delay] (the start class before step 1)."""
    if delay:  # (all start classes when the sequence is shorter than the delay)
        y = np.concatenate([np.full((min(delay, len(y)),) + y.shape[1:], start, y.dtype),
                            y[:max(len(y) - delay, 0)]])
    return np.eye(k, dtype=dtype)[y]


# ---- helper: _embed_grad
def _embed_grad(g, x, E):
    """The gradient of the rows E[x]: g (..., n) added into the row of each index in x (...),
    a row picked k times gets the sum of its k rows of g (np.add.at, not E[x] += g)."""
    dE = np.zeros_like(E)
    np.add.at(dE, x, g)
    return dE


# ---- helper: _choose
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


# ---- helper: _context
def _context(a, V):
    """Attention context: the weights a (..., B, Tk) times the steps of V (Tk, B, n)."""
    return np.einsum("...bt,tbn->...bn", a, V)


def _context_grad_weights(g, V):
    return np.einsum("...bn,tbn->...bt", g, V)


def _context_grad_values(g, a):
    """Summed over all query steps."""
    B = g.shape[-2]
    return np.einsum("qbt,qbn->tbn", a.reshape(-1, B, a.shape[-1]), g.reshape(-1, B, g.shape[-1]))


# ---- helper: _attention
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


# ---- helper: _attention_grad
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


# ---- helper: _flat
def _flat(a):
    """All rows of a (..., n) array as one (rows, n) matrix."""
    return a.reshape(-1, a.shape[-1])


# ---- helper: _rows
def _rows(a, b):
    """a @ b for an array a (..., n) of rows, as one matrix product over all of them."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[-1],))


# ---- helper: _sigmoid
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


# ---- helper: _softmax
def _softmax(a):
    """Softmax over the last axis, shifted by the maximum for stability."""
    e = a - a.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


# ---- helper: _concat
def _concat(*parts):
    """Concatenate along the last axis, broadcasting the leading (time, batch) axes."""
    lead = np.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return np.concatenate([np.broadcast_to(p, lead + p.shape[-1:]) for p in parts], axis=-1)


# ---- helper: _cross_entropy
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


# ---- helper: _cross_entropy_grad
def _cross_entropy_grad(p, y, w=None, scale=1.0):
    """Gradient of scale * _cross_entropy with respect to the logits: softmax(z) - onehot(y),
    times scale (and the weights w), in one pass over p."""
    g = p.copy() if w is None and scale == 1 else p * (scale if w is None else
                                                       scale * w[..., None])
    flat = g.reshape(-1, g.shape[-1])
    flat[np.arange(y.size), y.reshape(-1)] -= scale if w is None else scale * w.reshape(-1)
    return g


# ---- helper: _squared_error
def _squared_error(p, y, w=None):
    """Sum over all rows of 1/2 |p - y|^2 (weighted by w)."""
    se = 0.5 * np.square(p - y).sum(axis=-1)
    return float(se.sum() if w is None else (w * se).sum())


# ---- helper: _squared_error_grad
def _squared_error_grad(p, y, w=None):
    """Gradient of _squared_error with respect to p."""
    return p - y if w is None else (p - y) * w[..., None]
