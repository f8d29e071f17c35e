"""The segment driver of checkpointed modules (``generate(..., checkpoint=k)``), as real code.

Codegen copies the ``# ---- helper: checkpoint`` group below into each checkpointed module
verbatim (``codegen.CHECKPOINT_API``): the public ``forward`` and ``backward``, which run the
network in segments of ``CHECKPOINT`` steps over the module's own ``_forward_full`` and
``_backward_full`` (the network on one segment, its initial states given).  Here those, the
tables and ``CHECKPOINT`` are stand-ins, so that this file imports and its functions can be
tested with a network and tables a test fills in."""
import numpy as np

from .truncation import _truncation
from .validate import _loss_weights, _upstream, _validate  # a module's own copies, there

# the generated module's own tables and segment length (filled in by each module; empty here)
INPUTS, TARGETS, STATES, OUTPUTS = {}, {}, {}, {}
CHECKPOINT = 1


def _forward_full(params, inputs, targets=None, state0=None, T=None, lengths=None, segment=None):
    """Stand-in for the module's own forward pass over one segment."""
    raise NotImplementedError("_forward_full is the generated module's own")


def _backward_full(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    """Stand-in for the module's own backward pass over one segment."""
    raise NotImplementedError("_backward_full is the generated module's own")


# ---- helper: checkpoint
def _validate_segment(params, inputs, targets, state0, T, lengths, segment):
    """_validate for one segment of a checkpointed run.  A sequence may have 0 steps in the
    segment (it ended before it: it keeps its state and gets no loss), and a mean loss divides
    by each sequence's number of steps in the whole run, segment['steps'] (B,)."""
    full = None if lengths is None else np.maximum(lengths, 1)
    params, inputs, targets, state0, dims = _validate(params, inputs, targets, state0, T, full)
    if lengths is not None:
        dims["lengths"] = np.asarray(lengths, dtype=np.int64)
        dims["last"] = dims["lengths"] - 1
    if segment is not None:
        dims["(mean steps)"] = np.asarray(segment["steps"], dtype=dims["dtype"])
    return params, inputs, targets, state0, dims


def _segment_loss_weights(dims, axis=None, steps=None, mean=False):
    """_loss_weights of one segment: a mean divides by the steps of the whole run."""
    count = dims.get("(mean steps)")
    if not mean or count is None:
        return _loss_weights(dims, axis, steps, mean)
    w = _loss_weights(dims, axis, steps)
    if w is None:
        w = np.ones((dims["T"], dims["B"]), dims["dtype"])
    return w / count


def _segments(T):
    """(start, stop) of each segment of CHECKPOINT steps (the last one may be shorter)."""
    return [(a, min(a + CHECKPOINT, T)) for a in range(0, T, CHECKPOINT)]


def _segment_steps(dims, a, b):
    """Each sequence's number of steps in segment [a, b) (0 once it has ended); None: all."""
    if dims["lengths"] is None:
        return None
    return np.clip(dims["lengths"] - a, 0, b - a)


def _run_segment(params, inputs, targets, state0, dims, a, b):
    """_forward_full on steps a..b-1, from the states state0 at the segment's start."""
    def part(arrays, infos):
        return {n: v[a:b] if infos[n]["kind"] == "sequence" else v for n, v in arrays.items()}
    total = dims["lengths"] if dims["lengths"] is not None else np.full(dims["B"], dims["T"])
    return _forward_full(params, part(inputs, INPUTS),
                         None if targets is None else part(targets, TARGETS), state0, b - a,
                         _segment_steps(dims, a, b), segment={"steps": total})


def forward(params, inputs, targets=None, state0=None, T=None, lengths=None):
    """Run the network on a batch; return (outputs, cache).  Checkpointed: the steps run in
    segments of CHECKPOINT, and the cache keeps only the states at each segment's start (and
    the inputs and targets), not the activations; backward recomputes them segment by segment.

    The arguments and outputs are those of _forward_full (the network on the whole sequence):
    params, inputs, targets, state0 keyed by the spec's names; arrays time-major, (T, B, size);
    lengths (B,) for a padded batch; outputs['final'] the states after each sequence's last step.
    """
    _, inputs, targets, _, dims = _validate(params, inputs, targets, state0, T, lengths)
    checkpoints, parts, statics, loss = [], {}, {}, None
    carry = state0
    for a, b in _segments(dims["T"]):
        checkpoints.append(carry)
        out, _ = _run_segment(params, inputs, targets, carry, dims, a, b)
        for n, info in OUTPUTS.items():
            if info["kind"] == "sequence":
                parts.setdefault(n, []).append(out[n])
            elif a == 0:  # a static value is the same in every segment
                statics[n] = out[n]
        final = out.get("final", {})
        steps = _segment_steps(dims, a, b)
        if a > 0 and steps is not None:  # a sequence that has ended keeps its state
            ended = (steps == 0)[:, None]
            final = {n: np.where(ended, carry[n], v) for n, v in final.items()}
        carry = final
        if "loss" in out:
            loss = out["loss"] if loss is None else loss + out["loss"]
    outputs = {n: np.concatenate(parts[n], axis=0) if n in parts else statics[n]
               for n in OUTPUTS}
    if STATES:
        outputs["final"] = carry
    if loss is not None:
        outputs["loss"] = loss
    cache = {"checkpoints": checkpoints, "inputs": inputs, "targets": targets, "dims": dims,
             "has_loss": "loss" in outputs}
    return outputs, cache


def backward(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    """BPTT segment by segment, last first: each segment is recomputed from its checkpoint and
    differentiated with _backward_full, the gradient of its initial states carried into the
    previous segment.  Arguments and result as _backward_full's: {'params', 'inputs', 'state0'}
    (xi, truncate: each segment gets its steps of the factors, see _truncation; state_grads:
    the segments' per-step state gradients, put together).
    """
    up = _upstream(d_outputs, cache)
    dims = cache["dims"]
    xi = _truncation(xi, truncate, dims)
    inputs, targets = cache["inputs"], cache["targets"]
    d_params, d_inputs = None, {}
    for n, v in inputs.items():
        if INPUTS[n].get("type") != "class":  # (class indices have no gradient)
            d_inputs[n] = np.zeros_like(v)
    d_final = up["final"]
    d_states = {}
    segments = _segments(dims["T"])
    for s in reversed(range(len(segments))):
        a, b = segments[s]
        _, seg_cache = _run_segment(params, inputs, targets, cache["checkpoints"][s], dims, a, b)
        d = {n: g[a:b] if OUTPUTS[n]["kind"] == "sequence" else g for n, g in up.items()
             if n in OUTPUTS and (s == 0 or OUTPUTS[n]["kind"] == "sequence")}
        if cache["has_loss"]:
            d["loss"] = up.get("loss", 1.0)
        steps = _segment_steps(dims, a, b)
        passed = {}
        if s > 0 and steps is not None:  # an ended sequence's state went through unchanged
            ended = (steps == 0)[:, None]
            passed = {n: np.where(ended, g, 0) for n, g in d_final.items()}
            d_final = {n: np.where(ended, 0, g) for n, g in d_final.items()}
        d["final"] = d_final
        grads = _backward_full(params, seg_cache, d, None if xi is None else xi[a:b, :, 0],
                               None, state_grads)
        for n, g in grads.get("states", {}).items():
            d_states.setdefault(n, np.zeros((dims["T"],) + g.shape[1:], g.dtype))[a:b] = g
        if d_params is None:
            d_params = grads["params"]
        else:
            d_params = {n: d_params[n] + g for n, g in grads["params"].items()}
        for n, g in grads["inputs"].items():
            if INPUTS[n]["kind"] == "sequence":
                d_inputs[n][a:b] = g
            else:
                d_inputs[n] = d_inputs[n] + g
        d_final = {n: g + passed[n] if n in passed else g for n, g in grads["state0"].items()}
    grads = {"params": d_params, "inputs": d_inputs, "state0": d_final}
    if state_grads:
        grads["states"] = d_states
    return grads
