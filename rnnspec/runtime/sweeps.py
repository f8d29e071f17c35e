"""TBPTT(k1, k2) with k1 < k2 in generated modules, as real code.

Codegen copies the ``# ---- helper: sweeps`` group below into a generated module whose backward
can run it (truncatable, not checkpointed, every loss term with per-step weights in the cache):
``backward(..., truncate=(k1, k2))`` then calls ``_tbptt_sweeps`` with itself.  Above the
marker: stand-ins for what the module defines itself (its tables, the truncation group)."""
import numpy as np

from .truncation import TRUNCATE, _truncate_steps, _truncation  # noqa: F401 (stand-ins)

OUTPUTS, STATES = {}, {}  # stand-ins: the generated module's tables


# ---- helper: sweeps
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
