"""The public entry points every generated module has: loss_and_grad and init_params, as real code.

Codegen copies the ``# ---- helper: api`` group below into each module verbatim
(``codegen.LOSS_AND_GRAD``).  In a generated module ``forward``, ``backward`` and the tables
(``DIMS``, ``PARAMS``, ``INITS``) are the module's own; here they are stand-ins, so that this
file imports and its functions can be tested with tables and a network a test fills in."""
import numpy as np

from .validate import _size  # in a generated module: its copy of the validation runtime

# the generated module's own tables (filled in by each module; empty here)
DIMS, PARAMS, INITS = {}, {}, {}


def forward(params, inputs, targets=None, state0=None, T=None, lengths=None):
    """Stand-in for the module's own forward pass."""
    raise NotImplementedError("forward is the generated module's own")


def backward(params, cache, d_outputs=None, xi=None, truncate=None):
    """Stand-in for the module's own backward pass."""
    raise NotImplementedError("backward is the generated module's own")


# ---- helper: api
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
