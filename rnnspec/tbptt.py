"""Williams & Peng's TBPTT(k1, k2) for any k1 <= k2: every k1 steps, the losses of those k1
steps backpropagated k2 steps back (the gradient reaching a state from more than k2 steps
later is cut).

In: a generated module, parameters, a batch, k1 and k2.  Out: :func:`tbptt` returns
``(loss, {'params': ...})``.  Each block of k1 steps ending at step tau is differentiated on
the window of its last k2 steps, run from the states the full run reaches at the window's start,
held constant; its own losses are the window's minus those of the window without the block
(the same run from the same held states, so the earlier steps' losses cancel exactly).  The
blocks follow the k1-step schedule: a last, shorter block's window still starts k2 steps
before its end on the schedule (so that ``(k, k)`` is the chunks run one by one).  So
``(1, k)`` is 9.7.1.2's sum cut after k steps for every loss term, ``(k, k)`` is the chunked
truncation (``backward(..., truncate=(k, k))`` computes it in one sweep), ``(T, T)`` is full
BPTT.  The work is O(T / k1 * k2) steps.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .surrogate import _take, _take_states, chunked_forward, splits_exactly


def tbptt(mod, params, inputs, targets, k1: int, k2: int, state0=None, lengths=None
          ) -> Tuple[float, dict]:
    """``(loss, {'params': gradients})`` of TBPTT(k1, k2) of ``mod``'s loss (a sum of per-step
    losses; a ValueError for a per-sequence or mean loss, or for a network that does not
    split into steps exactly)."""
    for k, name in ((k1, "k1"), (k2, "k2")):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{name} must be a positive number of steps, got {k!r}")
    if k2 < k1:
        raise ValueError(f"TBPTT({k1}, {k2}): k2 must be at least k1")
    refused = getattr(mod, "TRUNCATE", None)
    if refused is not None:
        raise ValueError(refused)
    if not targets or not mod.TARGETS or any(
            info["kind"] != "sequence" for info in mod.TARGETS.values()):
        raise ValueError("tbptt needs per-step targets: it cuts the gradient of each step's loss")
    T = next(np.shape(v)[0] for n, v in targets.items())
    B = next(np.shape(v)[1] for n, v in targets.items())
    length = np.full(B, T) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if not splits_exactly(mod, params, inputs, targets, state0, lengths):
        raise ValueError("this network run step by step is not the network run whole (targets "
                         "fed back, attention over earlier steps, or a mean loss): TBPTT of "
                         "windows from held states cannot follow it")
    full, _ = mod.forward(params, inputs, targets, state0, T, lengths)
    _, starts = chunked_forward(mod, params, inputs, targets, state0, T, 1, lengths)
    total = {n: np.zeros_like(np.asarray(v, dtype=float)) for n, v in params.items()}
    for first in range(0, T, k1):  # block [first, tau): its window starts k2 steps before
        end = first + k1  # the block's end on the k1-step schedule (a last block may be short)
        tau, lo = min(end, T), max(end - k2, 0)
        g_win = _window_grad(mod, params, inputs, targets, starts[lo] if lo else state0,
                             lo, tau, length)
        g_before = _window_grad(mod, params, inputs, targets, starts[lo] if lo else state0,
                                lo, first, length) if first > lo else None
        for n in total:
            total[n] += g_win[n] - (g_before[n] if g_before is not None else 0)
    return float(full["loss"]), {"params": total}


def _window_grad(mod, params, inputs, targets, start, a, b, length):
    """The parameter gradient of the losses of steps a..b-1 run from the states ``start``
    (held: they are arrays, not functions of the parameters) over the sequences with steps
    there."""
    rows = np.flatnonzero(length > a)
    out, cache = mod.forward(params, _take(mod.INPUTS, inputs, rows, a, b),
                             _take(mod.TARGETS, targets, rows, a, b),
                             None if start is None else _take_states(mod, start, rows), b - a,
                             np.clip(length[rows] - a, 1, b - a))
    return mod.backward(params, cache)["params"]
