"""Forward-mode helpers of generated modules (copied into a module compiled with rtrl=True).

A tangent is an array of directions: its first axis counts them (one per entry of a parameter
in RTRL: the sensitivities d value / d theta_k), the rest are the value's own axes.  The
forward-mode rules of :mod:`rnnspec.ops` are written for that layout; these helpers give the
seeds (the tangent of a parameter with respect to itself) and the few operations the layout
needs beyond broadcasting.
"""
import numpy as np


# ---- helper: tangents
def _seed(p):
    """The tangent of parameter p with respect to its own entries: the identity, one direction
    per entry, (p.size,) + p.shape."""
    return np.eye(p.size, dtype=p.dtype).reshape((p.size,) + p.shape)


def _step_weights(w, dims):
    """A per-step loss's weights (T, B) as _loss_weights gives them, ones where it gives None
    (every step counts once), so that step t reads w[t]."""
    return np.ones((dims["T"], dims["B"]), dims["dtype"]) if w is None else w


def _seed_matvec(v, rows):
    """The tangent of v @ W.T with respect to the entries of W (rows, n): direction (i, j) is
    v[..., j] in output row i, (rows * n,) + v.shape[:-1] + (rows,) (what v @ _seed(W) would
    give, without forming the identity of W)."""
    n = v.shape[-1]
    out = np.zeros((rows, n) + v.shape[:-1] + (rows,), v.dtype)
    i = np.arange(rows)
    out[i, ..., i] = np.moveaxis(v, -1, 0)
    return out.reshape((rows * n,) + v.shape[:-1] + (rows,))


def _matvec_tangent(dW, v):
    """v @ W.T's tangent in W for every direction of dW (k, rows, n): (k,) + v.shape[:-1] +
    (rows,)."""
    return np.einsum("...n,krn->k...r", v, dW)


def _lift(d, k):
    """Tangent d with k singleton axes after its direction axis (a lower-rank value's tangent,
    such as a bias's, next to a batch of rows)."""
    return d.reshape(d.shape[:1] + (1,) * k + d.shape[1:])


def _directions_sum(x):
    """Sum over everything but the direction axis: a scalar's tangent, one number per direction."""
    return x.reshape(x.shape[0], -1).sum(axis=1)


def _tangent_reshape(d, *shape):
    """d reshaped to shape, keeping its direction axis first."""
    return d.reshape(d.shape[:1] + shape)


def _stack_rows_tangent(*parts):
    """The tangent of a matrix stacked from parts along its rows; a part that does not vary is
    given as its value (no direction axis) and counts as zero."""
    k = next(len(p) for p in parts if p.ndim == 3)
    return np.concatenate([p if p.ndim == 3 else np.zeros((k,) + p.shape, p.dtype)
                           for p in parts], axis=1)


def _context_tangent(a, dV):
    """The tangent of the attention context _context(a, V) in V: a (..., B, Tk) times the steps
    of every direction of dV (k, Tk, B, n)."""
    return np.einsum("...bt,ktbn->k...bn", a, dV)
