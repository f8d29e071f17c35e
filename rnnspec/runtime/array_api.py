"""The runtime of modules generated with ``backend="array-api"``, as real code.

Codegen copies these groups into an array-API module instead of the NumPy ones (see
:mod:`rnnspec.codegen.xp`): the parts of validation that touch arrays (conversion, lengths, class
indices, initial states, masks, loss weights, upstream gradients), the op helpers, and the
refusal of ``xi=``/``truncate=``.  The shape logic of validation that touches no array
(``_terms``, ``_size``, ``_check_shapes``, ...) is taken from rnnspec/runtime/validate.py as it
is (``codegen.xp.SHARED``).  Everything here uses only the array API standard (2023.12) through
the namespace of the arrays given: ``array_namespace`` from array-api-compat, ``xp.*`` functions,
no methods beyond ``.shape``, ``.dtype``, ``.device``, ``.T`` of a matrix and ``@``; dtype and
device follow the parameters."""
from array_api_compat import array_namespace, device as _device, is_array_api_obj

from .api import init_params as _numpy_init_params  # (in a module: its copy, renamed)
from .validate import (AXES, INPUTS, MIN_T, NESTED, OUTPUTS, PARAMS, STATES, TARGETS,
                       _bind_dims, _check_names, _lead, _shape_text, _size, _state_lead)

TRUNCATE = None  # stand-in: the generated module's own


# ---- helper: xp_runtime
def _validate(params, inputs, targets, state0, T, lengths=None, B=None):
    """Check every array against the spec's shapes; bind dims (and T, B) from the arrays, and
    the namespace (dims['xp']), dtype and device of the run from the parameters."""
    _check_names(params, inputs, targets, state0)
    arrays = [a for a in list(params.values()) + list(inputs.values()) if is_array_api_obj(a)]
    if not arrays:
        raise ValueError("params and inputs hold no arrays: give the parameters as arrays of "
                         "one library (NumPy, CuPy, torch, ...)")
    xp, device = array_namespace(arrays[0]), _device(arrays[0])
    dtype = _float_type(xp, params)
    entries, params, inputs, targets, state0 = _converted(xp, params, inputs, targets, state0,
                                                          dtype, device)
    dims = _bind_dims(entries, T, B)
    dims["xp"], dims["device"], dims["dtype"] = xp, device, dtype
    _bind_lengths(lengths, dims)
    _check_classes("inputs", inputs, INPUTS, dims)
    if targets is not None:
        _check_classes("targets", targets, TARGETS, dims)
    _initial_states(params, inputs, state0, dims)
    return params, inputs, targets, state0, dims


def _float_type(xp, params):
    """The dtype of the run: the parameters' (float32 or float64), float64 for any other."""
    dtype = xp.result_type(*params.values()) if params else xp.float64
    return dtype if dtype in (xp.float32, xp.float64) else xp.float64


def _as(xp, label, a, dtype, device):
    """``a`` as an array of xp (dtype, device); a ValueError naming it if it cannot be one."""
    try:
        return xp.asarray(a, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{label} cannot be read as an array of {dtype}: {e}") from None


def _converted(xp, params, inputs, targets, state0, dtype, device):
    """The arrays as dtype on the parameters' device (class indices as integers): (entries,
    params, inputs, targets, state0), the entries (label, array, expected shape) for
    _bind_dims."""
    entries, out = [], [{}, {}, None if targets is None else {}, {}]
    given = ((PARAMS, params, "params"), (INPUTS, inputs, "inputs"),
             (TARGETS, targets, "targets"), (STATES, dict(state0 or {}), "state0"))
    for k, (table, arrays, what) in enumerate(given):
        for n in (table if k < 3 else arrays):
            if arrays is None:
                break
            label, info = f"{what}[{n!r}]", table[n]
            if k == 0:
                a, shape = _as(xp, label, arrays[n], dtype, device), info
            elif k == 3:
                a = _as(xp, label, arrays[n], dtype, device)
                shape = _state_lead(info) + (info["size"],)
            elif info.get("type") == "class":
                a, shape = _class_indices(xp, label, arrays[n], device), _lead(info)
            else:
                a, shape = _as(xp, label, arrays[n], dtype, device), _lead(info) + (info["size"],)
            out[k][n] = a
            entries.append((label, a, shape))
    return (entries, *out)


def _class_indices(xp, label, a, device):
    """Class indices (of a target or an input) as integers; refused unless its values are
    whole numbers."""
    a = _as(xp, label, a, None, device)
    if not xp.isdtype(a.dtype, "integral"):
        if not bool(xp.all(a == xp.round(a))):
            raise ValueError(f"{label} must hold integer class indices")
        a = xp.astype(a, xp.int64)
    return a


def _bind_lengths(lengths, dims):
    """Check lengths ((B,) for the main axis, or {axis: lengths}) and bind into dims each
    axis's lengths (None: every sequence full), last steps and B."""
    xp, device = dims["xp"], dims["device"]
    per_axis = isinstance(lengths, dict)  # (then messages name the axis)
    if lengths is not None and not per_axis:
        lengths = {next(iter(AXES)): lengths}
    for axis, n in dict(lengths or {}).items():
        if axis not in AXES:
            raise ValueError(f"lengths has unknown time axis {axis!r}; the axes are {list(AXES)}")
        key, label = AXES[axis], f"lengths[{axis!r}]" if per_axis else "lengths"
        n = _as(xp, label, n, None, device)
        _check_lengths(xp, axis, n, label, dims)
        dims.setdefault("B", n.shape[0])
        dims["lengths" + key[1:]] = xp.astype(n, xp.int64)
    dims.setdefault("B", 1)
    for axis, key in AXES.items():
        n = dims.setdefault("lengths" + key[1:], None)
        dims["last" + key[1:]] = n - 1 if n is not None else xp.full(
            (dims["B"],), dims[key] - 1, dtype=xp.int64, device=device)


def _check_lengths(xp, axis, n, label, dims):
    """Refuse lengths n of an axis with the wrong shape, not integers, out of range, or below
    the steps the network reads."""
    key = AXES[axis]
    if n.ndim != 1 or "B" in dims and n.shape[0] != dims["B"]:
        raise ValueError(f"{label} has shape {tuple(n.shape)}, expected "
                         f"{_shape_text(('B',), dict(dims, B=dims.get('B', n.shape[-1])))}")
    if n.shape[0] and not xp.isdtype(n.dtype, "integral"):
        raise ValueError(f"{label} must hold integers")
    if n.shape[0] and (int(xp.min(n)) < 1 or int(xp.max(n)) > dims[key]):
        raise ValueError(f"{label} must be between 1 and {key} = {dims[key]}, got "
                         f"{int(xp.min(n))}..{int(xp.max(n))}")
    if n.shape[0] and int(xp.min(n)) < MIN_T[key]:
        raise ValueError(f"{label} has a length below {MIN_T[key]}: this network needs at "
                         f"least {MIN_T[key]} steps {axis} in every sequence, as {key} alone "
                         f"does")


def _check_classes(what, arrays, table, dims):
    """Refuse class inputs or targets outside 0..k-1."""
    xp = dims["xp"]
    for n, info in table.items():
        a = arrays[n]
        if info.get("type") == "class" and 0 not in a.shape:
            k = _size(info["size"], dims)
            if int(xp.min(a)) < 0 or int(xp.max(a)) >= k:
                raise ValueError(f"{what}[{n!r}] holds class indices outside 0..{k - 1}")


def _initial_states(params, inputs, state0, dims):
    """Complete state0 in place with each state's initial value not given (zeros, a parameter,
    an input; none for one the network computes); state0['(given)']: which were given."""
    xp, given = dims["xp"], {}
    for n, info in STATES.items():
        given[n] = n in state0
        if n in state0:
            continue
        B, size = dims["B"], _size(info["size"], dims)
        if info["init"] == "given":
            raise ValueError(f"state0[{n!r}] is required: the spec says its initial value is "
                             f"given, shape "
                             f"{_shape_text(_state_lead(info) + (info['size'],), dims)}")
        if info["init"] == "value":  # computed by the network in forward
            continue
        if info["init"] == "param":
            state0[n] = xp.broadcast_to(params[info["from"]], (B, size))
        elif info["init"] == "input":
            state0[n] = inputs[info["from"]]
        else:
            state0[n] = xp.zeros((B, size), dtype=dims["dtype"], device=dims["device"])
    state0["(given)"] = given  # (a key no state name can be)


def _step_mask(dims, axis=None):
    """(T, B, 1) booleans, True up to each sequence's length; None when all are full length."""
    key, xp = AXES[axis or next(iter(AXES))], dims["xp"]
    if dims["lengths" + key[1:]] is None:
        return None
    steps = xp.arange(dims[key], device=dims["device"])
    return (steps[:, None] <= dims["last" + key[1:]][None, :])[..., None]


def _loss_weights(dims, axis=None, steps=None, mean=False):
    """Weights (T, B) of a per-step loss: the steps that count (selected steps, up to each
    sequence's own length), divided by their number for a mean.  None: every step counts once."""
    key, xp = AXES[axis or next(iter(AXES))], dims["xp"]
    T, last, dtype = dims[key], dims["last" + key[1:]], dims["dtype"]
    if steps is None and dims["lengths" + key[1:]] is None and not mean:
        return None
    rows = xp.arange(T, device=dims["device"])[:, None]
    if steps is None:
        w = xp.astype(rows <= last[None, :], dtype)
    else:
        w = xp.zeros((T, dims["B"]), dtype=dtype, device=dims["device"])
        for kind, k in steps:  # ('abs', k): step k; ('end', -j): each sequence's end - j
            row = xp.full_like(last, k - 1) if kind == "abs" else last + k
            hit = (rows == row[None, :]) & (row >= 0)[None, :] & (row <= last)[None, :]
            w = xp.where(hit, xp.ones_like(w), w)
    if mean:
        w = w / xp.clip(xp.sum(w, axis=0), min=1)
    return w


def _upstream(d_outputs, cache):
    """Validate the upstream gradients given to backward() (names: _upstream_entries)."""
    dims = cache["dims"]
    xp = dims["xp"]
    up, entries = _upstream_entries(d_outputs, cache)
    for kind, label, name, a, lead, size in entries:
        a = _as(xp, label, a, dims["dtype"], dims["device"])
        shape = tuple(_size(k, dims) for k in lead) + (_size(size, dims),)
        if tuple(a.shape) != shape:
            raise ValueError(f"{label} has shape {tuple(a.shape)}, expected "
                             f"{_shape_text(lead + (size,), dims)}")
        if kind == "final":
            up["final"][name] = a
            continue
        mask = _step_mask(dims, OUTPUTS[name]["axis"]) if OUTPUTS[name]["kind"] == "sequence" \
            else None
        up[name] = a if mask is None else xp.where(mask, a, xp.zeros_like(a))  # past its end: none
    return up


def _pick(a, rows):
    """a[rows[..., b], b] for every sequence b: (S, B, ...) -> rows.shape + (...), steps of
    each sequence (the standard indexes with integer arrays only when every index is one)."""
    xp = array_namespace(a)
    B = a.shape[1]
    flat = xp.reshape(a, (a.shape[0] * B,) + tuple(a.shape[2:]))
    at = rows * B + xp.arange(B, device=_device(a))
    return xp.reshape(xp.take(flat, xp.reshape(at, (-1,)), axis=0),
                      tuple(at.shape) + tuple(a.shape[2:]))


def _add_at(a, rows, g):
    """a[rows[..., b], b] += g[..., b] for every sequence b, in place: g added at steps of
    each sequence, where a one-hot of the steps selects it (a + 0 elsewhere)."""
    xp = array_namespace(a)
    if rows.ndim > 1:  # (d, B): d steps of each sequence, one after the other
        for k in range(rows.shape[0]):
            _add_at(a, rows[k, ...], g[k, ...])
        return
    hit = xp.arange(a.shape[0], device=_device(a))[:, None] == rows[None, :]
    a += xp.where(xp.reshape(hit, tuple(hit.shape) + (1,) * (a.ndim - 2)), g, xp.zeros_like(a))


def _sweeps(truncate, dims):
    """False: the full gradient (a ValueError for truncate=, refused like xi= by
    _truncation: the array-API backend computes full BPTT only)."""
    if truncate is not None:
        _truncation(None, truncate, dims)
    return False


def _truncation(xi, truncate, dims):
    """None (full BPTT), or a ValueError for xi= and truncate=, which this backend refuses."""
    if xi is None and truncate is None:
        return None
    raise ValueError("backward's xi= and truncate= are not supported by the array-api backend "
                     "yet: compile with the numpy backend for truncated BPTT")


# xi= and truncate= are refused above (_truncation, _sweeps): backward never reaches these
_tbptt_sweeps = _xi_span = _xi_final = None


# ---- helper: _flat
def _flat(a):
    """All rows of a (..., n) array as one (rows, n) matrix."""
    return array_namespace(a).reshape(a, (-1, a.shape[-1]))


# ---- helper: _rows
def _rows(a, b):
    """a @ b for an array a (..., n) of rows, as one matrix product over all of them."""
    xp = array_namespace(a, b)
    return xp.reshape(xp.reshape(a, (-1, a.shape[-1])) @ b,
                      tuple(a.shape[:-1]) + (b.shape[-1],))


# ---- helper: _sigmoid
def _sigmoid(a):
    """Logistic sigmoid 1 / (1 + exp(-a)); -a is capped below the overflow of exp (709 in
    float64, 88 in float32, where the sigmoid is 0 to the last digit)."""
    xp = array_namespace(a)
    return 1 / (1 + xp.exp(xp.clip(-a, max=88.0 if a.dtype == xp.float32 else 709.0)))


# ---- helper: _softmax
def _softmax(a):
    """Softmax over the last axis, shifted by the maximum for stability."""
    xp = array_namespace(a)
    e = xp.exp(a - xp.max(a, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


# ---- helper: _concat
def _concat(*parts):
    """Concatenate along the last axis, broadcasting the leading (time, batch) axes."""
    xp = array_namespace(*parts)
    rank = max(p.ndim for p in parts)
    lead = tuple(max(((1,) * (rank - p.ndim) + tuple(p.shape))[k] for p in parts)
                 for k in range(rank - 1))
    return xp.concat([xp.broadcast_to(p, lead + (p.shape[-1],)) for p in parts], axis=-1)


# ---- helper: _cross_entropy
def _cross_entropy(z, y, w=None, p=None):
    """Sum over all rows of -log softmax(z)[y] (weighted by w), via log-sum-exp (p unused: the
    NumPy runtime's shortcut through the probabilities is a speed-up only)."""
    xp = array_namespace(z)
    zz = xp.reshape(z, (-1, z.shape[-1]))
    m = xp.max(zz, axis=-1, keepdims=True)
    lse = m[:, 0] + xp.log(xp.sum(xp.exp(zz - m), axis=-1))
    hit = xp.reshape(y, (-1, 1)) == xp.arange(z.shape[-1], device=_device(z))[None, :]
    nll = lse - xp.sum(xp.where(hit, zz, xp.zeros_like(zz)), axis=-1)
    return float(xp.sum(nll if w is None else xp.reshape(w, (-1,)) * nll))


# ---- helper: _cross_entropy_grad
def _cross_entropy_grad(p, y, w=None, scale=1.0):
    """Gradient of scale * _cross_entropy with respect to the logits: softmax(z) - onehot(y),
    times scale (and the weights w)."""
    xp = array_namespace(p)
    hit = y[..., None] == xp.arange(p.shape[-1], device=_device(p))
    g = p - xp.astype(hit, p.dtype)
    return g * scale if w is None else g * (scale * w[..., None])


# ---- helper: _squared_error
def _squared_error(p, y, w=None):
    """Sum over all rows of 1/2 |p - y|^2 (weighted by w)."""
    xp = array_namespace(p)
    se = 0.5 * xp.sum((p - y) ** 2, axis=-1)
    return float(xp.sum(se if w is None else w * se))


# ---- helper: _squared_error_grad
def _squared_error_grad(p, y, w=None):
    """Gradient of _squared_error with respect to p."""
    return p - y if w is None else (p - y) * w[..., None]


# ---- helper: xp_init
def init_params(dims=None, seed=0, dtype=None, like=None):
    """Fresh parameters drawn with the spec's initializers (deterministic for a seed): the
    NumPy module's, the same numbers for a seed, as arrays of the namespace and device of
    ``like`` (any array: a torch tensor, a CuPy array), of ``dtype`` (a dtype of that
    namespace; default like's if it is a floating one, else float64).  Without ``like``: NumPy
    arrays (float64, or dtype)."""
    params = _numpy_init_params(dims, seed)
    if like is None:
        return params if dtype is None else {n: a.astype(dtype) for n, a in params.items()}
    xp = array_namespace(like)
    if dtype is None:
        dtype = like.dtype if xp.isdtype(like.dtype, "real floating") else xp.float64
    return {n: xp.asarray(a, dtype=dtype, device=_device(like)) for n, a in params.items()}
