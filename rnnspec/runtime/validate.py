"""The validation and upstream-gradient runtime of every generated module, as real code.

Codegen copies the ``# ---- helper: runtime`` group below into each module verbatim
(``codegen.RUNTIME = runtime.helper_texts("validate.py")["runtime"]``).  In a generated module
the tables it reads (``DIMS``, ``PARAMS``, ``INPUTS``, ...) are the module's own; here they are
empty, so that this file imports and its functions can be tested with tables a test fills in."""
import numpy as np

# the generated module's own tables (filled in by each module; empty here)
DIMS, PARAMS, INPUTS, TARGETS, STATES, OUTPUTS, AXES, NESTED = {}, {}, {}, {}, {}, {}, {}, {}
MIN_T = {}  # time axis key -> the fewest steps the network reads


# ---- helper: runtime
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
