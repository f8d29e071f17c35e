# generated from elman.rnn by rnnspec 0.1.0 -- do not edit; edit the spec and recompile
"""Forward pass and exact BPTT gradients for elman.rnn.

The spec:

    # Elman network: exactly the worked example of 001 (4.1.4, "手写一个RNN的前向传播以及反向传播").
    #   s[t] = tanh(U x[t] + W s[t-1] + ba)        (rnn_cell_forward)
    #   o[t] = softmax(V s[t] + by)
    #   L    = sum_t cross-entropy(o[t], y[t])
    # Shapes as in the text: m = 3 (the size of a word vector and of the output), n = 5 (hidden):
    # U: (n, m), W: (n, n), V: (m, n), ba: (n,), by: (m,).  rnn_backward's ds0 is the gradient of
    # the initial state; backward(params, cache, {'s': ds}) is exactly its rnn_backward(ds, caches).

    dim m = 3           # input and output size ("m是词的个数")
    dim n = 5           # hidden size

    input x[t]: m
    target y[t]: class(m)

    param U: (n, m) = normal(1.0)
    param W: (n, n) = normal(1.0)
    param V: (m, n) = normal(1.0)
    param ba: n = normal(1.0)
    param by: m = normal(1.0)

    state s: n = zeros          # s[0] = s0, passed as state0={'s': s0} or zero

    s[t] = tanh(U @ x[t] + W @ s[t-1] + ba)
    o[t] = softmax(V @ s[t] + by)

    loss = cross_entropy(o[t], y[t])
"""
import numpy as np

DIMS = {'m': 3, 'n': 5}
AXES = {'t': 'T'}  # time axis -> its number of steps in dims (the first is the main one)
NESTED = {}  # [w in s]: steps w inside every step s (w -> s)
PARAMS = {
    'U': ('n', 'm'),
    'W': ('n', 'n'),
    'V': ('m', 'n'),
    'ba': ('n',),
    'by': ('m',),
}
INITS = {
    'U': ('normal', 1.0),
    'W': ('normal', 1.0),
    'V': ('normal', 1.0),
    'ba': ('normal', 1.0),
    'by': ('normal', 1.0),
}
INPUTS = {
    'x': {'size': 'm', 'kind': 'sequence', 'axis': 't'},
}
TARGETS = {
    'y': {'size': 'm', 'kind': 'sequence', 'type': 'class', 'axis': 't'},
}
STATES = {
    's': {'size': 'n', 'init': 'zeros', 'from': None, 'steps': 1},
}
OUTPUTS = {
    's': {'size': 'n', 'kind': 'sequence', 'axis': 't'},
    'o': {'size': 'm', 'kind': 'sequence', 'axis': 't'},
}
LOSSES = [{'kind': 'cross_entropy', 'pred': 'o', 'target': 'y', 'reduce': 'sum', 'per': 'step', 'steps': None}]  # sum or mean over a sequence's steps, per step or sequence
MIN_T = {'T': 1}
TRUNCATE = None  # why backward's xi= and truncate= are refused (None: they are not)


def forward(params, inputs, targets=None, state0=None, T=None, lengths=None):
    """Run the network on a batch; return (outputs, cache).

    params, inputs, targets, state0: dicts keyed by the spec's names (see PARAMS,
    INPUTS, TARGETS, STATES); arrays are time-major, (T, B, size) for a sequence.
    T is needed only when no sequence is given; lengths (B,) gives each sequence's own
    length in a padded batch (with several time axes, both are dicts keyed by axis).
    outputs holds every named value, outputs['final'] the states after the last step,
    and 'loss' when targets are given.  A state read d > 1 steps back (STATES[n]['steps'])
    carries its last d steps, (d, B, size) in time order, in 'final' and in state0.
    """
    params, inputs, targets, state0, dims = _validate(params, inputs, targets, state0, T, lengths)
    T, B, dtype = dims['T'], dims['B'], dims['dtype']
    n_n = dims['n']
    mask = _step_mask(dims)  # (T, B, 1): True up to each sequence's length
    last, batch = dims['last'], np.arange(B)  # each sequence's last step
    U = params['U']
    W = params['W']
    V = params['V']
    ba = params['ba']
    by = params['by']
    x = inputs['x']
    # s[t] = tanh(U @ x[t] + W @ s[t-1] + ba)  (hoisted: all steps at once)  [line 23]
    s_sum = _rows(x, U.T)
    s_sum += ba

    # time loop (forward in time): only the recurrent part runs step by step
    s = np.empty((T + 1, B, n_n), dtype)
    s[:1] = state0['s']
    for t in range(T):
        # s[t] = tanh(U @ x[t] + W @ s[t-1] + ba)  [line 23]
        np.tanh(s_sum[t] + s[t] @ W.T, out=s[t + 1])
        if mask is not None:  # past its end, a sequence keeps its state
            s[t + 1] = np.where(mask[t], s[t + 1], s[t])

    # o[t] = softmax(V @ s[t] + by)  [line 24]
    a_o = _rows(s[1:], V.T)
    a_o += by
    o = _softmax(a_o)
    outputs = {
        's': s[1:],
        'o': o,
        'final': {'s': s[last + 1, batch]},
    }
    if targets is not None:
        y = targets['y']
        # loss = cross_entropy(o[t], y[t])  [line 26]
        w_loss_o = _loss_weights(dims)
        loss_o = _cross_entropy(a_o, y, w_loss_o, o)
        outputs['loss'] = loss_o
    cache = {'params': params, 'dims': dims, 'state0_given': state0['(given)'],
             'has_loss': 'loss' in outputs}
    cache['x'] = x
    if targets is not None:
        cache['y'] = y
    cache['s'] = s
    cache['o'] = o
    if targets is not None:
        cache['w_loss_o'] = w_loss_o
    return outputs, cache


def backward(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    """Vector-Jacobian product of the whole unrolled network (BPTT).

    d_outputs may hold an upstream gradient for any named value (same shape as in
    outputs), for 'final' states, and for 'loss' (default 1.0 when a loss was computed).
    xi (T,) or (T, B): the gradient flowing from step t back to step t - 1 through
    the recurrences is multiplied by xi[t] (randomized truncation); truncate=(k, k):
    it is cut at the start of every chunk of k steps (truncated BPTT).
    truncate=(k1, k2), k1 < k2: the losses of every k1 steps backpropagated k2 steps
    (Williams & Peng's TBPTT(k1, k2), in ceil(k2 / k1) sweeps).
    Returns {'params': ..., 'inputs': ..., 'state0': ...}, each keyed like the spec
    (and with state_grads=True 'states': each state's gradient at every step).
    """
    up = _upstream(d_outputs, cache)
    dims = cache['dims']
    T, B, dtype = dims['T'], dims['B'], dims['dtype']
    if _sweeps(truncate, dims):  # TBPTT(k1, k2), k1 < k2: a sweep per set of blocks
        return _tbptt_sweeps(backward, params, cache, d_outputs, xi, truncate, state_grads, ('w_loss_o',))
    xi = _truncation(xi, truncate, dims)  # None: full BPTT
    mask = _step_mask(dims)
    last, batch = dims['last'], np.arange(B)
    n_m = dims['m']
    n_n = dims['n']
    U = params['U']
    W = params['W']
    V = params['V']
    x = cache['x']
    y = cache.get('y')
    s = cache['s']
    o = cache['o']
    w_loss_o = cache.get('w_loss_o')
    d_loss = up.get('loss', 1.0) if cache['has_loss'] else None
    # o[t] = softmax(V @ s[t] + by)  [line 24]
    d_a_o = _cross_entropy_grad(o, y, w_loss_o, d_loss) if d_loss is not None else np.zeros((T, B, n_m), dtype)
    if 'o' in up:
        d_a_o = d_a_o + o * (up['o'] - (up['o'] * o).sum(axis=-1, keepdims=True))

    # gradients flowing into the loop from after it, and buffers for the loop
    d_s = np.zeros_like(s)
    d_s[1:] += _rows(d_a_o, V)
    if 's' in up:
        d_s[1:] += up['s']
    if 's' in up['final']:
        d_s[last + 1, batch] += up['final']['s']
    s_slope = 1 - s[1:] * s[1:]  # tanh' at every step
    d_a_s = np.empty((T, B, n_n), dtype)
    for t in reversed(range(T)):
        # s[t] = tanh(U @ x[t] + W @ s[t-1] + ba)  [line 23]
        if mask is not None:  # past its end, the state was carried over
            d_s[t] += ~mask[t] * d_s[t + 1]
            d_s[t + 1] *= mask[t]
        d_a_s[t] = d_s[t + 1] * s_slope[t]
        if xi is None:
            d_s[t] += d_a_s[t] @ W
        else:  # truncated: scaled by xi over the steps it goes back
            d_s[t] += xi[t] * (d_a_s[t] @ W)

    d_x = _rows(d_a_s, U)
    d_by = d_a_o.sum(axis=(0, 1))
    d_ba = d_a_s.sum(axis=(0, 1))
    d_V = _flat(d_a_o).T @ _flat(s[1:])
    d_W = _flat(d_a_s).T @ _flat(s[:T])
    d_U = _flat(d_a_s).T @ _flat(x)

    # gradients of the initial states (and of what they were initialized from)
    d_state0 = {}
    d_state0['s'] = d_s[:1].sum(axis=0)
    if state_grads:  # each state's gradient at every step (see rnnspec flow)
        d_states = {}
        d_states['s'] = d_s[1:]
    return {
        'params': {
            'U': d_U,
            'W': d_W,
            'V': d_V,
            'ba': d_ba,
            'by': d_by,
        },
        'inputs': {
            'x': d_x,
        },
        'state0': d_state0,
        **({'states': d_states} if state_grads else {}),
    }


# ---- runtime: rnnspec's helpers, the same in every module that uses them ----


def loss_and_grad(params, inputs, targets, state0=None, T=None, lengths=None, xi=None,
                  truncate=None):
    """The loss and the gradients of everything (backward with d_loss = 1; xi, truncate: a
    truncated gradient, see backward)."""
    outputs, cache = forward(params, inputs, targets, state0, T, lengths)
    if "loss" not in outputs:
        raise ValueError("this network has no loss")
    return outputs["loss"], backward(params, cache, None, xi, truncate)


def init_params(dims=None, seed=0, dtype=np.float64):
    """Fresh parameters drawn with the spec's initializers (deterministic for a seed)."""
    for name in dims or {}:
        if name not in DIMS:
            def edits(a, b):  # the edit distance, for "did you mean"
                row = list(range(len(b) + 1))
                for i, ca in enumerate(a, 1):
                    prev, row[0] = row[0], i
                    for j, cb in enumerate(b, 1):
                        prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
                return row[-1]
            close = [d for d in sorted(DIMS, key=lambda d: edits(str(name), d))
                     if edits(str(name), d) <= max(1, len(str(name)) // 3)][:1]
            raise ValueError(f"init_params: unknown dim {name!r}" + (f"; did you mean "
                             f"{close[0]!r}?" if close else "") + f" (the dims: {list(DIMS)})")
    dims = {**DIMS, **(dims or {})}
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in PARAMS.items():
        shape = tuple(_size(s, dims) for s in shape)
        kind, arg = INITS[name]
        if kind == "zeros":
            a = np.zeros(shape)
        elif kind == "ones":
            a = np.ones(shape)
        elif kind == "constant":
            a = np.full(shape, arg)
        elif kind == "normal":
            a = rng.normal(0.0, arg, shape)
        elif kind == "uniform":
            a = rng.uniform(-arg, arg, shape)
        elif kind in ("xavier", "glorot"):
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            a = rng.uniform(-limit, limit, shape)
        elif kind == "orthogonal":
            q, r = np.linalg.qr(rng.normal(0.0, 1.0, (max(shape), min(shape))))
            q = q * np.sign(np.diag(r))
            a = q if shape[0] >= shape[1] else q.T
        else:
            raise ValueError(f"unknown initializer {kind!r}")
        params[name] = np.asarray(a, dtype=dtype)
    return params


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


def _cross_entropy_grad(p, y, w=None, scale=1.0):
    """Gradient of scale * _cross_entropy with respect to the logits: softmax(z) - onehot(y),
    times scale (and the weights w), in one pass over p."""
    g = p.copy() if w is None and scale == 1 else p * (scale if w is None else
                                                       scale * w[..., None])
    flat = g.reshape(-1, g.shape[-1])
    flat[np.arange(y.size), y.reshape(-1)] -= scale if w is None else scale * w.reshape(-1)
    return g


def _flat(a):
    """All rows of a (..., n) array as one (rows, n) matrix."""
    return a.reshape(-1, a.shape[-1])


def _rows(a, b):
    """a @ b for an array a (..., n) of rows, as one matrix product over all of them."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[-1],))


def _softmax(a):
    """Softmax over the last axis, shifted by the maximum for stability."""
    e = a - a.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _truncation(xi, truncate, dims):
    """The factors (T, B, 1) that scale what flows from each step t back to step t - 1 through
    the recurrences, or None for full BPTT: xi (T,) or (T, B) as given, times, for
    truncate=(k, k), a cut (0) at the first step of every chunk of k steps after the first
    (Williams & Peng's TBPTT(k, k))."""
    if xi is None and truncate is None:
        return None
    if TRUNCATE is not None:
        raise ValueError(TRUNCATE)
    T, B, dtype = dims["T"], dims["B"], dims["dtype"]
    factors = np.ones((T, B, 1), dtype)
    if xi is not None:
        a = np.asarray(xi, dtype=dtype)
        if a.shape not in ((T,), (T, B)):
            raise ValueError(f"xi has shape {a.shape}, expected (T,) = ({T},) or (T, B) = "
                             f"({T}, {B}): a factor per step (and sequence)")
        if not np.isfinite(a).all():
            raise ValueError("xi has entries that are not finite")
        factors *= a.reshape(T, -1, 1)
    if truncate is not None:
        k1, k2 = _truncate_steps(truncate)
        if k2 < T:  # (k2 >= T: every gradient goes back to the first step, full BPTT)
            if k1 != k2:
                raise ValueError(f"truncate=({k1}, {k2}): this module cuts (k, k) only (chunks "
                                 f"of k steps) or k2 >= T (full BPTT): TBPTT(k1, k2) with "
                                 f"k1 < k2 needs a loss made of per-step terms and a module "
                                 f"compiled without --checkpoint")
            factors[k1::k1] = 0
    return factors


def _truncate_steps(truncate):
    """truncate=(k1, k2) as two positive integers, k2 >= k1 (ValueError otherwise)."""
    ok = isinstance(truncate, (tuple, list)) and len(truncate) == 2 and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in truncate)
    if not ok:
        raise ValueError(f"truncate must be (k1, k2), two positive integers (every k1 steps, "
                         f"backpropagate k2 steps), got {truncate!r}")
    k1, k2 = int(truncate[0]), int(truncate[1])
    if k2 < k1:
        raise ValueError(f"truncate=({k1}, {k2}): k2 must be at least k1 (the k1 steps whose "
                         f"losses are backpropagated are among the k2 steps it goes back)")
    return k1, k2


def _xi_span(xi, d):
    """The factor of a gradient read d steps back at each step t: xi over the d steps it crosses
    (t, t - 1, ..., t - d + 1; before the first step there is nothing to cross)."""
    out = xi.copy()
    for j in range(1, d):
        out[j:] *= xi[:-j]
    return out


def _xi_final(xi, last, d):
    """The factors (d, B, 1) of the d steps of a final state, in time order up to each
    sequence's last step: what reaches the step m steps before the last crosses the xi of the
    steps last, last - 1, ..., last - m + 1 (none before the first step)."""
    B = len(last)
    out = np.ones((d, B, 1), xi.dtype)
    for m in range(1, d):
        for u in range(m):
            step = last - u
            out[d - 1 - m] *= np.where(step[:, None] >= 0, xi[np.maximum(step, 0), np.arange(B)], 1)
    return out


def _sweeps(truncate, dims):
    """Is truncate=(k1, k2) a TBPTT(k1, k2) with k1 < k2 < T (several sweeps, _tbptt_sweeps)?"""
    if truncate is None:
        return False
    k1, k2 = _truncate_steps(truncate)
    return k1 < k2 < dims["T"]


def _tbptt_sweeps(backward, params, cache, d_outputs, xi, truncate, state_grads, weights):
    """Williams & Peng's TBPTT(k1, k2), k1 < k2, as ceil(k2 / k1) backward sweeps: the blocks of
    k1 steps are dealt round to the sweeps, so that in one sweep the windows of the last k2
    steps of its blocks do not overlap; each sweep counts only its blocks' loss terms (the
    cache's per-step loss ``weights`` times the blocks' steps) and upstream gradients, and cuts
    the gradient at its blocks' window starts (xi = 0 there, times the caller's xi).  The sum of
    the sweeps' gradients is the gradient of every block's losses backpropagated k2 steps."""
    if TRUNCATE is not None:
        raise ValueError(TRUNCATE)
    k1, k2 = _truncate_steps(truncate)
    dims = cache["dims"]
    T, B, dtype, last = dims["T"], dims["B"], dims["dtype"], dims["last"]
    sweeps = -(-k2 // k1)
    block = np.arange(T) // k1  # the block of every step (the k1-step schedule)
    given = _truncation(xi, None, dims)  # (T, B, 1): the caller's xi, checked, or None
    total = None
    for j in range(sweeps):
        steps = (block % sweeps == j).astype(dtype)
        cut = np.ones(T, dtype)
        for end in range((j + 1) * k1, T + k1, sweeps * k1):  # the end of each of its blocks
            if 0 < end - k2 < T:
                cut[end - k2] = 0  # its window starts k2 steps before its end
        part = dict(cache)
        for w in weights:
            part[w] = steps[:, None] * (np.ones((T, B), dtype) if cache.get(w) is None
                                        else cache[w])
        factors = cut if given is None else given[..., 0] * cut[:, None]
        g = backward(params, part, _sweep_upstream(d_outputs, steps, steps[last], truncate),
                     factors, None, state_grads)
        total = g if total is None else _nested_sum(total, g)
    return total


def _sweep_upstream(d_outputs, steps, at_last, truncate):
    """The upstream gradients of one sweep: per-step ones on its steps, final states' on the
    sequences whose last step is one of its steps."""
    if not d_outputs:
        return d_outputs
    out = {}
    for n, g in d_outputs.items():
        if n == "loss":
            out[n] = g
        elif n == "final":
            out[n] = {s: np.asarray(v) * (at_last[None, :, None] if STATES[s].get("steps", 1) > 1
                                          else at_last[:, None]) for s, v in g.items()}
        elif n in OUTPUTS and OUTPUTS[n]["kind"] == "sequence":
            g = np.asarray(g)
            out[n] = g * steps.reshape((-1,) + (1,) * (g.ndim - 1))
        else:
            raise ValueError(f"truncate={tuple(truncate)!r}: the upstream gradient of "
                             f"{n!r}, a value per sequence, belongs to no block of steps")
    return out


def _nested_sum(a, b):
    """a + b for dicts of arrays (nested)."""
    return {k: _nested_sum(v, b[k]) if isinstance(v, dict) else v + b[k] for k, v in a.items()}


_TERMS = {}  # size text -> its terms (parsed once: forward validates its arrays at every call)
_SHAPES_SEEN = {}  # the shapes of a call's arrays (and T, B) -> the dims they bind, once checked


def _terms(expr):
    """The (coefficient, name or digits) terms of a size such as 'in + hidden' or '4*hidden'."""
    out = _TERMS.get(expr)
    if out is None:
        out = []
        for term in expr.split("+"):
            coef, _, name = term.strip().rpartition("*")
            out.append((int(coef) if coef else 1, name))
        _TERMS[expr] = out = tuple(out)
    return out


def _size(expr, dims):
    """Evaluate a size for the given dims."""
    return sum(c * (int(n) if n.isdigit() else dims[n]) for c, n in _terms(expr))


def _solve_dims(entries, dims):
    """Bind the dims that appear only inside sizes like '2*n' or 'in + hidden' from the arrays."""
    if all(d.isdigit() or d in dims for _, _, shape in entries for e in shape
           for _, d in _terms(e)):
        return  # all bound (the usual case): nothing to solve
    changed = True
    while changed:
        changed = False
        for _, a, shape in entries:
            for n, expr in zip(a.shape, shape):
                terms = _terms(expr)
                unknown = [(c, d) for c, d in terms if not d.isdigit() and d not in dims]
                if len(unknown) == 1:
                    coef, name = unknown[0]
                    rest = sum(c * (int(d) if d.isdigit() else dims[d]) for c, d in terms
                               if d != name)
                    if (n - rest) % coef == 0 and (n - rest) // coef >= 1:
                        dims[name] = (n - rest) // coef
                        changed = True


def _time_major(a, expected, dims):
    """A note for an array whose first two axes look swapped: sequences are time-major."""
    if len(expected) >= 2 and expected[1] == "B" and a.ndim >= 2 and \
            a.shape[1] == dims.get(expected[0]) != a.shape[0]:
        return (f"; arrays are time-major, ({expected[0]}, B, ...): transpose batch-major "
                f"(B, {expected[0]}, ...) ones, e.g. np.swapaxes(x, 0, 1)")
    return ""


def _shape_text(expected, dims):
    names = "(" + ", ".join(expected) + ("," if len(expected) == 1 else "") + ")"
    try:
        return names + " = " + str(tuple(_size(e, dims) for e in expected))
    except KeyError:
        return names


def _validate(params, inputs, targets, state0, T, lengths=None, B=None):
    """Check every array against the spec's shapes; bind dims (and T, B) from the arrays."""
    _check_names(params, inputs, targets, state0)
    dtype = _float_type(params)
    entries, params, inputs, targets, state0 = _converted(params, inputs, targets, state0, dtype)
    dims = _bind_dims(entries, T, B)
    _bind_lengths(lengths, dims)
    _check_classes("inputs", inputs, INPUTS, dims)
    if targets is not None:
        _check_classes("targets", targets, TARGETS, dims)
    _nested_as_batch(inputs, targets)
    _initial_states(params, inputs, state0, dims, dtype)
    dims["dtype"] = dtype
    return params, inputs, targets, state0, dims


def _check_names(params, inputs, targets, state0):
    """Refuse arguments that are not dicts (targets and state0 may be None), then missing
    params and inputs, unknown names, and missing targets (when targets are given)."""
    if type(params) is dict and type(inputs) is dict and params.keys() == PARAMS.keys() and \
            inputs.keys() == INPUTS.keys() and (targets is None or type(targets) is dict and
                                                targets.keys() == TARGETS.keys()) and \
            (state0 is None or type(state0) is dict and state0.keys() <= STATES.keys()):
        return  # (the usual call, every name right, in a few set comparisons)
    given = (("params", params, PARAMS), ("inputs", inputs, INPUTS),
             ("targets", targets, TARGETS), ("state0", state0, STATES))
    for k, (what, d, _) in enumerate(given):
        if not isinstance(d, dict) and (k < 2 or d is not None):
            raise ValueError(f"{what} must be a dict{' or None' if k >= 2 else ''}, "
                             f"got {type(d).__name__}")
    for what, d, known in given[:2]:
        _refuse_missing(what, d, known)
    for what, d, known in given:
        unknown = [n for n in d or {} if n not in known]
        if unknown:
            raise ValueError(f"{what} has unknown names {unknown}; expected {list(known)}")
    if targets is not None:
        _refuse_missing("targets", targets, TARGETS)


def _refuse_missing(what, d, known):
    missing = [n for n in known if n not in d]
    if missing:
        raise ValueError(f"{what} is missing {missing}; expected {list(known)}")


def _float_type(params):
    """The dtype of the run: the parameters' (float32 or float64), float64 for any other."""
    dtypes = {getattr(p, "dtype", None) for p in params.values()}
    if len(dtypes) == 1:  # (the usual call: arrays of one float type)
        dtype = dtypes.pop()
        if dtype is not None and dtype in (np.float32, np.float64):
            return dtype
    floats = [np.asarray(p) for p in params.values()]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    return dtype


def _converted(params, inputs, targets, state0, dtype):
    """The arrays as dtype (class targets as integers): (entries, params, inputs, targets,
    state0), the entries (label, array, expected shape) of every array given, for _bind_dims."""
    state0 = dict(state0 or {})
    entries = []
    conv_params = {}
    for n, shape in PARAMS.items():
        conv_params[n] = a = np.asarray(params[n], dtype=dtype)
        entries.append((f"params[{n!r}]", a, shape))
    conv_inputs = {}
    for n, info in INPUTS.items():
        if info.get("type") == "class":  # class indices (T, B)
            conv_inputs[n] = a = _class_indices(f"inputs[{n!r}]", inputs[n])
            entries.append((f"inputs[{n!r}]", a, _lead(info)))
            continue
        a = np.asarray(inputs[n], dtype=dtype)
        conv_inputs[n] = a
        entries.append((f"inputs[{n!r}]", a, _lead(info) + (info["size"],)))
    conv_targets = None
    if targets is not None:
        conv_targets = {}
        for n, info in TARGETS.items():
            lead = _lead(info)
            if info["type"] == "class":
                a = _class_indices(f"targets[{n!r}]", targets[n])
                entries.append((f"targets[{n!r}]", a, lead))
            else:
                a = np.asarray(targets[n], dtype=dtype)
                entries.append((f"targets[{n!r}]", a, lead + (info["size"],)))
            conv_targets[n] = a
    for n in state0:
        a = np.asarray(state0[n], dtype=dtype)
        state0[n] = a
        lead = _state_lead(STATES[n])
        entries.append((f"state0[{n!r}]", a, lead + (STATES[n]["size"],)))
    return entries, conv_params, conv_inputs, conv_targets, state0


def _class_indices(label, a):
    """Class indices (of a target or an input) as integers; refused unless its values are
    whole numbers."""
    a = np.asarray(a)
    if a.size and a.dtype.kind not in "iu":  # (not a signed or unsigned integer type)
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"{label} must hold integer class indices")
        a = a.astype(np.int64)
    return a


def _bind_dims(entries, T, B):
    """The dims (and T, B) that T, B and the arrays' shapes bind, every shape checked against
    its entry's; the shapes of a call seen before bind the same dims (_SHAPES_SEEN)."""
    seen = (tuple((label, a.shape) for label, a, _ in entries),
            tuple(T.items()) if isinstance(T, dict) else T, B)
    try:
        known = _SHAPES_SEEN.get(seen)
    except TypeError:  # an unhashable T: checked (and refused) below
        known = None
    if known is not None:  # these shapes were checked before: the same dims
        return dict(known)
    dims = _steps_given(T, B)
    _check_shapes(entries, dims)
    for name, value in DIMS.items():
        dims.setdefault(name, value)
    _check_steps(dims)
    if len(_SHAPES_SEEN) < 256:
        _SHAPES_SEEN[seen] = dict(dims)
    return dims


def _steps_given(T, B):
    """The dims that the arguments T (steps of the main axis, or {axis: steps}) and B bind."""
    dims = {} if B is None else {"B": int(B)}
    for axis, n in (T if isinstance(T, dict) else {next(iter(AXES)): T}).items():
        if n is None:
            continue
        if axis not in AXES:
            raise ValueError(f"T has unknown time axis {axis!r}; the axes are {list(AXES)}")
        if isinstance(n, bool) or not hasattr(n, "__index__") or n < 1:
            raise ValueError(f"T must be a positive integer, got {n!r}")
        dims[AXES[axis]] = int(n)
    return dims


def _check_shapes(entries, dims):
    """Bind the dims that the arrays' shapes say (into dims), and refuse a shape that does not
    match its entry's expected one."""
    for label, a, shape in entries:
        if a.ndim != len(shape):
            raise ValueError(f"{label} has shape {a.shape}, "
                             f"expected {_shape_text(shape, dims)}")
        for n, expr in zip(a.shape, shape):
            if expr.isidentifier() and expr not in dims:
                dims[expr] = n
    _solve_dims(entries, dims)
    for label, a, shape in entries:
        if tuple(a.shape) != tuple(_size(e, dims) if all(
                d.isdigit() or d in dims for _, d in _terms(e)) else -1 for e in shape):
            raise ValueError(f"{label} has shape {a.shape}, "
                             f"expected {_shape_text(shape, dims)}"
                             f"{_time_major(a, shape, dims)}")


def _check_steps(dims):
    """Refuse a time axis whose number of steps is unknown or below what the network reads."""
    main = next(iter(AXES))
    for axis, key in AXES.items():
        if key not in dims:
            how = "T=n" if axis == main else f"T={{{axis!r}: n}}"
            raise ValueError(f"cannot tell the number of steps {axis}: no sequence over "
                             f"{axis} was given; pass {how}")
        if dims[key] < MIN_T[key]:
            raise ValueError(f"this network needs at least {MIN_T[key]} steps {axis}, got "
                             f"{key}={dims[key]}")


def _bind_lengths(lengths, dims):
    """Check lengths ((B,) for the main axis, or {axis: lengths}) and bind into dims each
    axis's lengths (None: every sequence full) and last steps, B, and the batch of nested axes."""
    per_axis = isinstance(lengths, dict)  # (then messages name the axis)
    if lengths is not None and not per_axis:
        lengths = {next(iter(AXES)): lengths}
    lengths = dict(lengths or {})
    for axis in sorted(lengths, key=lambda a: a in NESTED):  # outer axes first
        n = np.asarray(lengths[axis])
        if axis not in AXES:
            raise ValueError(f"lengths has unknown time axis {axis!r}; the axes are {list(AXES)}")
        key = AXES[axis]
        _check_lengths(axis, n, f"lengths[{axis!r}]" if per_axis else "lengths", dims)
        if axis in NESTED:
            n = np.maximum(n, 1).reshape(-1)  # padding steps s run one step w, unread
        dims.setdefault("B", n.shape[-1])
        dims["lengths" + key[1:]] = n.astype(np.int64)
        if axis not in NESTED:
            dims["last" + key[1:]] = dims["lengths" + key[1:]] - 1
    dims.setdefault("B", 1)
    for axis, outer in NESTED.items():  # the batch of a nested axis: every step s of every sequence
        dims["B" + AXES[axis][1:]] = dims[AXES[outer]] * dims["B"]
    for axis, key in AXES.items():
        n = dims.setdefault("lengths" + key[1:], None)
        dims["last" + key[1:]] = np.full(_batch(dims, axis), dims[key] - 1) if n is None else n - 1


def _check_lengths(axis, n, label, dims):
    """Refuse lengths n of an axis with the wrong shape, not integers, out of range, or below
    the steps the network reads (the outer axes' lengths are in dims already)."""
    key = AXES[axis]
    expected = ("B",) if axis not in NESTED else (AXES[NESTED[axis]], "B")
    if n.ndim != len(expected) or "B" in dims and n.shape[-1:] != (dims["B"],) or \
            n.shape[:-1] != tuple(dims[k] for k in expected[:-1]):
        raise ValueError(f"{label} has shape {n.shape}, expected "
                         f"{_shape_text(expected, dict(dims, B=dims.get('B', n.shape[-1])))}")
    if n.size and not np.issubdtype(n.dtype, np.integer):
        raise ValueError(f"{label} must hold integers")
    if axis in NESTED:  # steps s past their sequence's end may have no steps w at all
        okey = AXES[NESTED[axis]]
        real = np.broadcast_to(np.arange(dims[okey])[:, None] <= dims.get(
            "last" + okey[1:], dims[okey] - 1), n.shape)
        if n.size and (n[real].min(initial=1) < 1 or n.max() > dims[key]):
            raise ValueError(f"{label} must be between 1 and {key} = {dims[key]} (0 is allowed "
                             f"only for steps {NESTED[axis]} past their sequence's end), got "
                             f"{n.min()}..{n.max()}")
    elif n.size and (n.min() < 1 or n.max() > dims[key]):
        raise ValueError(f"{label} must be between 1 and {key} = {dims[key]}, got "
                         f"{n.min()}..{n.max()}")
    else:
        real = np.ones(n.shape, bool)
    short = np.argwhere(real & (n < MIN_T[key]))  # as refused for T alone: no step dropped
    if len(short):
        row = tuple(int(k) for k in short[0])
        at = row[0] if len(row) == 1 else row
        raise ValueError(f"{label}[{at}] = {n[row]}: this network needs at least "
                         f"{MIN_T[key]} steps {axis} in every sequence, as {key} alone "
                         f"does (it reads step {MIN_T[key]} or end - {MIN_T[key] - 1})")


def _check_classes(what, arrays, table, dims):
    """Refuse class inputs or targets (``what``, ``arrays`` by the names of ``table``)
    outside 0..k-1."""
    for n, info in table.items():
        a = arrays[n]
        if info.get("type") == "class" and a.size:
            k = _size(info["size"], dims)
            if a.min() < 0 or a.max() >= k:
                raise ValueError(f"{what}[{n!r}] holds class indices outside 0..{k - 1}")


def _nested_as_batch(inputs, targets):
    """Inputs and targets over steps w inside every step s as (T_w, T_s * B, size), in place."""
    for n, info in list(INPUTS.items()) + list(TARGETS.items()):
        if info.get("within") and n in inputs:
            inputs[n] = _flat_nested(inputs[n], 2)
        if info.get("within") and targets is not None and n in targets:
            targets[n] = _flat_nested(targets[n], 2)


def _initial_states(params, inputs, state0, dims, dtype):
    """Complete state0 in place with each state's initial value not given (zeros, a parameter,
    an input; none for one the network computes); state0['(given)']: which were given."""
    given = {}
    for n, info in STATES.items():
        given[n] = n in state0
        B = _batch(dims, info.get("axis"))
        if n in state0:
            if info.get("within"):
                state0[n] = _flat_nested(state0[n], len(_state_lead(info)) - 1)
            continue
        size = _size(info["size"], dims)
        if info["init"] == "given":
            raise ValueError(f"state0[{n!r}] is required: the spec says its initial value is "
                             f"given, shape "
                             f"{_shape_text(_state_lead(info) + (info['size'],), dims)}")
        if info["init"] == "value":  # computed by the network in forward
            continue
        if info["init"] == "param":
            state0[n] = np.broadcast_to(params[info["from"]], (B, size))  # (as dtype)
        elif info["init"] == "input":
            state0[n] = inputs[info["from"]]
        else:
            state0[n] = np.zeros((B, size), dtype)
    state0["(given)"] = given  # (a key no state name can be)


def _lead(info, steps=True):
    """The leading axes of an array: (T, B) for a sequence, (T_w, T_s, B) for one over steps w
    inside every step s, (B,) for one vector per sequence (per step s without ``steps``), () for
    a value computed from parameters only (kind 'shared')."""
    if info.get("kind") == "shared":  # computed from parameters only: one for all sequences
        return ()
    within = info.get("within")
    lead = (AXES[info["axis"]],) if steps and info.get("kind", "sequence") == "sequence" else ()
    if within:
        return lead + (AXES[within], "B")
    return lead + ("B",)


def _state_lead(info):
    """The leading axes of a state's initial or final value: (B,) (or (T_s, B) over steps w
    inside every step s), after (d,) when it carries d > 1 steps (STATES[n]['steps'])."""
    d = info.get("steps", 1)
    return ((str(d),) if d > 1 else ()) + _lead(info, steps=False)


def _flat_nested(a, k):
    """Merge axes k-1 and k (steps s and the batch) into the batch of a nested axis."""
    return a.reshape(a.shape[:k - 1] + (-1,) + a.shape[k + 1:])


def _batch(dims, axis=None):
    """The batch of an axis: B, or T_s * B for steps w inside every step s."""
    return dims["B" + AXES[axis][1:]] if axis in NESTED else dims["B"]


def _step_mask(dims, axis=None):
    """(T, B, 1) booleans, True up to each sequence's length; None when all are full length."""
    key = AXES[axis or next(iter(AXES))]
    if dims["lengths" + key[1:]] is None:
        return None
    return (np.arange(dims[key])[:, None] <= dims["last" + key[1:]][None, :])[..., None]


def _loss_weights(dims, axis=None, steps=None, mean=False):
    """Weights (T, B) of a per-step loss: the steps that count (selected steps, up to each
    sequence's own length), divided by their number for a mean.  None: every step counts once."""
    key = AXES[axis or next(iter(AXES))]
    T, B, last = dims[key], _batch(dims, axis), dims["last" + key[1:]]
    outer = AXES[NESTED[axis]] if axis in NESTED else None
    if steps is None and dims["lengths" + key[1:]] is None and not mean and (
            outer is None or dims["lengths" + outer[1:]] is None):
        return None
    if steps is None:
        w = (np.arange(T)[:, None] <= last[None, :]).astype(dims["dtype"])
    else:
        w = np.zeros((T, B), dims["dtype"])
        batch = np.arange(B)
        for kind, k in steps:  # ('abs', k): step k; ('end', -j): each sequence's end - j
            row = np.full(B, k - 1) if kind == "abs" else last + k
            ok = (row >= 0) & (row <= last)
            w[row[ok], batch[ok]] = 1
    if outer is not None:  # no loss in the steps s past their sequence's end
        w = w * (np.arange(dims[outer])[:, None] <= dims["last" + outer[1:]]).reshape(-1)
    if mean:
        w = w / np.maximum(w.sum(axis=0), 1)
    return w


def _upstream_entries(d_outputs, cache):
    """The upstream gradients given to backward(), checked by name: (up, entries), up holding
    'final': {} and the loss's scale, entries (kind, label, name, array, lead, size) the arrays
    still to be checked, kind 'final' for a state's, 'output' for a named value's."""
    if d_outputs is None:
        return {"final": {}}, []
    if not isinstance(d_outputs, dict):
        raise ValueError(f"d_outputs must be a dict, got {type(d_outputs).__name__}")
    up, entries = {"final": {}}, []
    for n, g in d_outputs.items():
        if n == "loss":
            if not cache["has_loss"]:
                raise ValueError("d_outputs['loss'] given, but forward computed no loss "
                                 "(call it with targets)")
            up[n] = float(g)
        elif n == "final":
            for s, gs in dict(g).items():
                if s not in STATES:
                    raise ValueError(f"d_outputs['final'] has unknown state {s!r}")
                entries.append(("final", f"d_outputs['final'][{s!r}]", s, gs,
                                _state_lead(STATES[s]), STATES[s]["size"]))
        elif n in OUTPUTS:
            entries.append(("output", f"d_outputs[{n!r}]", n, g, _lead(OUTPUTS[n]),
                            OUTPUTS[n]["size"]))
        else:
            raise ValueError(f"d_outputs has unknown name {n!r}; expected one of "
                             f"{list(OUTPUTS) + ['final', 'loss']}")
    return up, entries


def _upstream(d_outputs, cache):
    """Validate the upstream gradients given to backward() (names: _upstream_entries)."""
    dims = cache["dims"]
    up, entries = _upstream_entries(d_outputs, cache)
    for kind, label, name, g, lead, size in entries:
        g = np.asarray(g, dtype=dims["dtype"])
        shape = tuple(_size(k, dims) for k in lead) + (_size(size, dims),)
        if g.shape != shape:
            raise ValueError(f"{label} has shape {g.shape}, expected "
                             f"{_shape_text(lead + (size,), dims)}")
        info = STATES[name] if kind == "final" else OUTPUTS[name]
        if info.get("within"):
            g = _flat_nested(g, len(lead) - 1 if kind == "final" else 2)
        if kind == "final":
            up["final"][name] = g
            continue
        if info["kind"] == "sequence":
            mask = _step_mask(dims, info["axis"])
            if mask is not None:
                g = g * mask  # steps past a sequence's end get no gradient
        up[name] = g
    return up
