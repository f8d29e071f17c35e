"""Truncated and randomized BPTT in generated modules, as real code.

Codegen copies the ``# ---- helper: truncation`` group below into every generated module: the
factors by which ``backward(..., xi=, truncate=)`` scales the gradient that crosses from a step
back to the one before (see :mod:`rnnspec.truncation`).  ``TRUNCATE`` is the module's own: None
when the network can be truncated, else the positioned reason why not."""
import numpy as np

TRUNCATE = None  # stand-in: the generated module's own


# ---- helper: truncation
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

