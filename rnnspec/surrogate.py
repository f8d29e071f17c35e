"""The objective that truncated BPTT differentiates, computed independently of ``backward``.

In: a generated module, a problem (params, inputs, targets, initial states, lengths) and a chunk
length k.  Out: :func:`chunked_forward` runs the network chunk by chunk with the module's own
``forward``, each chunk of k steps starting from given states, and puts the chunks' outputs,
final states and losses together as one run's.  Started from the states a full run reaches at
each chunk's start (``held``, computed once at a point and then held constant), its loss is the
surrogate objective of Williams & Peng's TBPTT(k, k): a function of the parameters, the inputs
and the initial states whose exact gradient ``backward(..., truncate=(k, k))`` must give.  So
a truncated gradient *is* gradient-checked (:func:`rnnspec.gradcheck.gradcheck` with
``truncate=k``), against a computation that shares nothing with the generated backward.

In a padded batch, a sequence takes part in a chunk only while it has steps left in it (the
chunk runs on those rows of the batch, with their own lengths), so its final state and a
per-sequence loss come from the chunk in which it ends.

For TBPTT(k1, k2) with k1 < k2, :func:`windowed_forward` is the same for overlapping windows:
every block of k1 steps is run on the window of its last k2 steps from the held states at the
window's start, and counts only its own steps' losses and outputs.

It also holds what running one step at a time needs elsewhere: :func:`splits_exactly` (is the
stepwise run the whole run?) and :func:`one_step_jacobians` (a one-step run's Jacobians with
respect to the states before it and to the parameters), shared by :mod:`rnnspec.flow` and
:mod:`rnnspec.rtrl`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np


def chunked_forward(mod, params, inputs, targets, state0, T: int, k: int, lengths=None,
                    held: Optional[List[dict]] = None, mode: Optional[str] = None
                    ) -> Tuple[dict, List[dict]]:
    """(outputs, starts): the outputs of the whole run put together from chunks of ``k`` steps
    (every named sequence (T, B, ...), a per-sequence value from the chunk where each sequence
    ends, 'final', and 'loss' when targets are given), and the states at each chunk's start
    (``starts[0]`` is ``state0``).  With ``held``, chunk c > 0 starts from ``held[c]`` instead of
    the states the previous chunk reached."""
    if k < 1:
        raise ValueError(f"chunks must have at least one step, got k={k}")
    B = _batch_of(mod, inputs, targets, state0, lengths)
    length = np.full(B, T) if lengths is None else np.asarray(lengths, dtype=np.int64)
    per_sequence = targets is not None and any(
        info["kind"] != "sequence" for info in mod.TARGETS.values())
    if per_sequence and any(info["kind"] == "sequence" for info in mod.TARGETS.values()):
        raise ValueError("a chunked run cannot place both per-step and per-sequence losses")
    how = {"mode": mode} if mode else {}
    outputs: Dict[str, np.ndarray] = {}
    loss = 0.0
    state = state0
    starts = []
    for c, a in enumerate(range(0, T, k)):
        b = min(a + k, T)
        start = state if held is None or c == 0 else held[c]
        starts.append(start)
        # (a sequence that has ended keeps its state from this run, not the held one)
        state = {n: np.array(v, copy=True) for n, v in (state or {}).items()}
        active = length > a
        ending = active & (length <= b)
        groups = [(ending, True), (active & ~ending, False)] if per_sequence else [(active, True)]
        for rows, with_targets in groups:
            rows = np.flatnonzero(rows)
            if not len(rows):
                continue
            out, _ = mod.forward(params, _take(mod.INPUTS, inputs, rows, a, b),
                                 _take(mod.TARGETS, targets, rows, a, b) if with_targets
                                 else None,
                                 _take_states(mod, start, rows), b - a,
                                 np.clip(length[rows] - a, 1, b - a), **how)
            if "loss" in out:
                loss += float(out["loss"])
            for n, info in mod.OUTPUTS.items():
                if n not in out:
                    continue
                v = out[n]
                if n not in outputs:
                    lead = (T, B) if info["kind"] == "sequence" else (B,)
                    outputs[n] = np.zeros(lead + v.shape[len(lead):], v.dtype)
                if info["kind"] == "sequence":
                    outputs[n][a:b, rows] = v
                else:
                    ends = np.isin(rows, np.flatnonzero(ending))
                    outputs[n][rows[ends]] = v[ends]
            for n, v in out["final"].items():
                _put_states(mod, state, n, rows, v, B)
    outputs["final"] = state
    if targets is not None and mod.TARGETS:
        outputs["loss"] = loss
    return outputs, starts


def windowed_forward(mod, params, inputs, targets, state0, T: int, k1: int, k2: int,
                     lengths=None, held: Optional[List[dict]] = None,
                     mode: Optional[str] = None) -> dict:
    """The outputs of TBPTT(k1, k2)'s objective (k1 <= k2), put together like one run's: each
    block of k1 steps (on the k1-step schedule; a last block may be short) run on the window
    of its last k2 steps, from ``held[lo]``, the states a full run reaches at the window's start
    ``lo`` (``state0`` at step 0), its steps' outputs and losses taken from that run (its loss:
    the window's minus the same window without the block, from the same held states), a
    sequence's final states from the block where it ends.  Per-step losses only."""
    B = _batch_of(mod, inputs, targets, state0, lengths)
    length = np.full(B, T) if lengths is None else np.asarray(lengths, dtype=np.int64)
    how = {"mode": mode} if mode else {}
    outputs: Dict[str, np.ndarray] = {}
    final: Dict[str, np.ndarray] = {}
    loss = 0.0
    for first in range(0, T, k1):
        tau, lo = min(first + k1, T), max(first + k1 - k2, 0)
        rows = np.flatnonzero(length > lo)
        start = _take_states(mod, state0 if lo == 0 else held[lo], rows)

        def run(b):
            return mod.forward(params, _take(mod.INPUTS, inputs, rows, lo, b),
                               _take(mod.TARGETS, targets, rows, lo, b), start, b - lo,
                               np.clip(length[rows] - lo, 1, b - lo), **how)[0]
        out = run(tau)
        if "loss" in out:
            loss += float(out["loss"]) - (float(run(first)["loss"]) if first > lo else 0.0)
        for n, info in mod.OUTPUTS.items():
            if n in out:
                v = out[n]
                outputs.setdefault(n, np.zeros((T, B) + v.shape[2:], v.dtype))
                outputs[n][first:tau, rows] = v[first - lo:]
        ends = (length[rows] > first) & (length[rows] <= tau)
        for n, v in out["final"].items():
            _put_states(mod, final, n, rows[ends], _take_states(mod, {n: v}, ends)[n], B)
    outputs["final"] = final
    if targets is not None and mod.TARGETS:
        outputs["loss"] = loss
    return outputs


def _batch_of(mod, inputs, targets, state0, lengths) -> int:
    if lengths is not None:
        return len(lengths)
    for table, arrays in ((mod.INPUTS, inputs), (mod.TARGETS, targets or {})):
        for n, v in arrays.items():
            info = table[n]
            if info["kind"] == "sequence":
                return np.shape(v)[1]
            if info["kind"] != "shared":
                return np.shape(v)[0]
    for n, v in (state0 or {}).items():
        return np.shape(v)[_batch_axis(mod, n)]
    raise ValueError("a chunked run needs a batch: give lengths, a batched input or a state")


def _take(table, arrays, rows, a, b) -> Optional[dict]:
    """The steps a..b-1 (for sequences) of the batch rows ``rows`` of each array."""
    if arrays is None:
        return None
    out = {}
    for n, v in arrays.items():
        kind = table[n]["kind"]
        v = np.asarray(v)
        out[n] = v[a:b][:, rows] if kind == "sequence" else v if kind == "shared" else v[rows]
    return out


def _take_states(mod, states, rows) -> Optional[dict]:
    if not states:
        return None
    return {n: np.asarray(v)[:, rows] if _batch_axis(mod, n) else np.asarray(v)[rows]
            for n, v in states.items()}


def _put_states(mod, states, n, rows, v, B: int) -> None:
    """Write a chunk's final state ``v`` of its rows ``rows`` into the whole batch's."""
    several = _batch_axis(mod, n)
    if n not in states:  # (not given at the start: every row is in the first chunk)
        states[n] = np.zeros(((v.shape[0], B) if several else (B,)) + v.shape[-1:], v.dtype)
    if several:
        states[n][:, rows] = v
    else:
        states[n][rows] = v


def splits_exactly(mod, params, inputs, targets, state0=None, lengths=None, k: int = 1,
                   steps: int = 6) -> bool:
    """Whether the network run in chunks of k steps is the network run whole, seen on its
    first ``steps`` steps (where rounding has not grown yet: over a long run a chaotic
    network amplifies the rounding of either order).  False when something other than the
    states crosses a chunk's start (targets fed back, attention over earlier steps) or a mean
    loss divides by each chunk's steps."""
    T = next(np.shape(v)[0] for table, arrays in ((mod.INPUTS, inputs), (mod.TARGETS, targets))
             for n, v in (arrays or {}).items() if table[n]["kind"] == "sequence")
    n = min(T, max(steps, *getattr(mod, "MIN_T", {}).values(), 1))  # (a loss at t = 8: 8)
    head = lambda arrays, table: None if arrays is None else {  # noqa: E731
        name: v[:n] if table[name]["kind"] == "sequence" else v for name, v in arrays.items()}
    few = None if lengths is None else np.minimum(lengths, n)
    whole, _ = mod.forward(params, head(inputs, mod.INPUTS), head(targets, mod.TARGETS),
                           state0, n, few)
    try:
        run, _ = chunked_forward(mod, params, head(inputs, mod.INPUTS),
                                 head(targets, mod.TARGETS), state0, n, k, few)
    except ValueError:  # (a chunk too short for what the spec reads: h[end-2], loss at t = 5)
        return False
    if "loss" not in whole:
        return True
    single = any(np.asarray(v).dtype == np.float32 for v in params.values())
    tol = 1e-5 if single else 1e-10  # (float32 rounds at 1e-7: the two orders differ by more)
    return bool(np.isclose(whole["loss"], run["loss"], rtol=tol, atol=1e-12))


# ---- one step at a time (rnnspec.flow, rnnspec.rtrl) --------------------------------------
def _ones(n: int) -> np.ndarray:
    """Lengths of n one-step sequences (they also give the batch size when nothing else does)."""
    return np.ones(n, dtype=np.int64)


def _batch_axis(mod, n) -> int:
    """1 for a state carrying d > 1 steps ((d, B, size)), else 0 ((B, size))."""
    return 1 if mod.STATES[n].get("steps", 1) > 1 else 0


def _rows_to_state(mod, n, rows, shape, N):
    """(N, m) rows (one per batch copy) as the state's (d, N, size) or (N, size) array."""
    if _batch_axis(mod, n):
        d, _, size = shape
        return rows.reshape(N, d, size).transpose(1, 0, 2)
    return rows.reshape(N, shape[-1])


def _state_to_rows(mod, n, v, N):
    if _batch_axis(mod, n):
        return v.transpose(1, 0, 2).reshape(N, -1)
    return v.reshape(N, -1)


def one_step_jacobians(mod, params, x1, s1, final, R: int, names=None):
    """For each of the R rows of a one-step run from states ``s1`` (``final``: its final
    states): (J, D), the Jacobians of the final states (all states' carried steps, flattened
    and put together: N numbers) with respect to the states before the step, (N, N), from one
    VJP of a batch of N copies of every row (copy i gets the unit gradient e_i on the final
    states), and, when ``names`` lists the parameters, with respect to those, (N, n_theta)
    (one VJP per copy: a batch's parameter gradient is the sum over its rows).  J is None
    without ``s1`` (the states before the step are the spec's own initial values)."""
    order = list(final)
    shapes = {n: final[n].shape for n in order}
    N = sum(int(np.prod(s)) // R for s in shapes.values())
    rep = {n: np.repeat(v, N, axis=1 if mod.INPUTS[n]["kind"] == "sequence" else 0)
           if mod.INPUTS[n]["kind"] != "shared" else v for n, v in x1.items()}
    s0 = None if s1 is None else {n: np.repeat(v, N, axis=_batch_axis(mod, n))
                                  for n, v in s1.items()}
    _, cache = mod.forward(params, rep, None, s0, 1, _ones(R * N))
    eye = np.tile(np.eye(N), (R, 1))  # row r*N + i: e_i
    d_final, k = {}, 0
    for n in order:
        m = int(np.prod(shapes[n])) // R
        one = shapes[n][:1] + (R * N,) + shapes[n][2:] if _batch_axis(mod, n) else \
            (R * N,) + shapes[n][1:]
        d_final[n] = _rows_to_state(mod, n, eye[:, k:k + m], one, R * N)
        k += m
    # (each copy's own gradient: the batch's parameter gradient is their sum, so one VJP per
    # copy is needed for D_t; the state0 gradient is per copy)
    out = []
    g = mod.backward(params, cache, {"final": d_final})
    rows_J = np.concatenate([_state_to_rows(mod, n, g["state0"][n], R * N)
                             for n in order], axis=1) if s1 is not None else None
    D = None if names is None else _per_copy_params(mod, params, rep, s0, d_final, names, R * N)
    for r in range(R):
        J = None if rows_J is None else rows_J[r * N:(r + 1) * N]
        out.append((J, None if D is None else D[r * N:(r + 1) * N]))
    return out


def _per_copy_params(mod, params, rep, s0, d_final, names, M) -> np.ndarray:
    """(M, n_theta): the parameter gradient of each batch copy alone (its own VJP)."""
    rows = []
    for c in range(M):
        x = _take(mod.INPUTS, rep, [c], 0, 1)
        s = None if s0 is None else _take_states(mod, s0, np.asarray([c]))
        _, cache = mod.forward(params, x, None, s, 1, _ones(1))
        d = {n: (v[:, c:c + 1] if _batch_axis(mod, n) else v[c:c + 1])
             for n, v in d_final.items()}
        rows.append(_flat_params(mod.backward(params, cache, {"final": d})["params"], names))
    return np.array(rows)


def _flat_params(g, names) -> np.ndarray:
    return np.concatenate([np.ravel(g[n]) for n in names])
