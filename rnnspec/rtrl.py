"""Real-time recurrent learning (RTRL): the loss gradient computed forward in time, online.

In: a generated module (one time axis, forward in time), parameters, a batch.  Out:
:func:`rtrl` returns ``(loss, {'params': ...})`` like ``loss_and_grad``, computed without
backpropagating through time: it carries the sensitivities ``P_t = dS_t/dtheta`` of all states
S (every state's carried steps) to every parameter entry theta along with the forward pass,

    P_t = J_t P_(t-1) + D_t,   dL_t/dtheta = (direct) + g_t P_(t-1),

where ``J_t = dS_t/dS_(t-1)`` (the rows of one batched VJP of the module's one-step run) and
``D_t = dS_t/dtheta`` with S_(t-1) held (one VJP of the one-step run per state coordinate: a
batch's parameter gradient is a sum over its rows), and ``g_t`` is the gradient of step t's loss with
respect to the states before it.  Memory is independent of T (P is N x n_theta per sequence,
N the states' size), and with ``per_step=True`` the gradient of each step's loss is available
as soon as the step has run (what an online learner uses).  The product J_t P costs
O(N^2 * n_theta) per step: O(H^4) for an Elman network of H units, against BPTT's O(H^2).

This is RTRL computed from the generated module's one-step VJPs; a generated forward-mode pass
from the JVP rules (``compile --rtrl``) is not written yet.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .surrogate import (_batch_of, _flat_params, _ones, _put_states, _state_to_rows, _take,
                        _take_states, one_step_jacobians, splits_exactly)


def rtrl(mod, params, inputs, targets, state0=None, lengths=None, per_step: bool = False
         ) -> Tuple[float, dict]:
    """``(loss, {'params': gradients})`` of ``mod``'s loss, by RTRL (forward in time); with
    ``per_step=True``, ``(loss, grads, steps)``, ``steps[t]`` the gradient of step t's loss.
    A ValueError for a network that cannot be run step by step exactly (a second time axis, a
    backward recurrence, attention over the sequence, targets fed back, a mean loss)."""
    refused = getattr(mod, "TRUNCATE", None)
    if refused is not None:
        raise ValueError(f"RTRL runs the network forward one step at a time; {refused}")
    if not mod.TARGETS or targets is None:
        raise ValueError("rtrl needs targets: it computes the gradient of the loss")
    inputs = inputs or {}
    T = _steps_of(mod, inputs, targets)
    B = _batch_of(mod, inputs, targets, state0, lengths)
    mod.forward(params, inputs, targets, state0, T, lengths)  # (its checks of every argument)
    if not splits_exactly(mod, params, inputs, targets, state0, lengths):
        raise ValueError("this network run one step at a time is not the network run whole "
                         "(targets fed back, attention over earlier steps, or a mean loss "
                         "that divides by the steps): RTRL cannot follow it step by step")
    length = np.full(B, T) if lengths is None else np.asarray(lengths, dtype=np.int64)
    names = list(mod.PARAMS)
    sizes = [np.asarray(params[n]).size for n in names]
    per_sequence = all(info["kind"] != "sequence" for info in mod.TARGETS.values())
    P: Dict[int, np.ndarray] = {}  # row -> (N, n_theta) sensitivities of its states
    state = state0
    total = np.zeros(sum(sizes))
    steps: List[dict] = []
    loss = 0.0
    for t in range(T):
        rows = np.flatnonzero(length > t)
        if not len(rows):  # (every sequence has ended)
            break
        x1 = _take(mod.INPUTS, inputs, rows, t, t + 1)
        s1 = _take_states(mod, state, rows) if state is not None else None
        # the rows with a loss at this step: every active one, or for a per-sequence loss
        # those that end here
        ending = rows[length[rows] == t + 1] if per_sequence else rows
        step_grad = np.zeros(sum(sizes))
        if len(ending):
            out, cache = mod.forward(params, _take(mod.INPUTS, inputs, ending, t, t + 1),
                                     _take(mod.TARGETS, targets, ending, t, t + 1),
                                     None if state is None else
                                     _take_states(mod, state, ending), 1, _ones(len(ending)))
            g = mod.backward(params, cache)
            loss += float(out["loss"])
            step_grad += _flat_params(g["params"], names)
            if t > 0:  # through the states before the step: g_t P_(t-1)
                gs = _state_rows(mod, g["state0"], len(ending))
                for k, b in enumerate(ending):
                    step_grad += gs[k] @ P[b]
        total += step_grad
        if per_step:
            steps.append(_unflat(step_grad, names, sizes, params))
        out, _ = mod.forward(params, x1, None, s1, 1, _ones(len(rows)))
        new = one_step_jacobians(mod, params, x1, s1, out["final"], len(rows), names)
        for k, b in enumerate(rows):
            J, D = new[k]
            P[b] = D if t == 0 else J @ P[b] + D
        state = {n: np.array(v, copy=True) for n, v in (state or {}).items()}
        for n, v in out["final"].items():
            _put_states(mod, state, n, rows, v, B)
    grads = {"params": _unflat(total, names, sizes, params)}
    return (loss, grads, steps) if per_step else (loss, grads)


def _steps_of(mod, inputs, targets) -> int:
    for table, arrays in ((mod.INPUTS, inputs), (mod.TARGETS, targets)):
        for n, v in (arrays or {}).items():
            if table[n]["kind"] == "sequence":
                return np.shape(v)[0]
    raise ValueError("rtrl needs a sequence input or target (it runs over their steps)")


def _state_rows(mod, states, R) -> np.ndarray:
    return np.concatenate([_state_to_rows(mod, n, v, R) for n, v in states.items()], axis=1)


def _unflat(v, names, sizes, params) -> dict:
    out, k = {}, 0
    for n, s in zip(names, sizes):
        out[n] = v[k:k + s].reshape(np.shape(params[n]))
        k += s
    return out
