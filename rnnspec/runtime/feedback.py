"""The public entry points of modules with ``feedback(teacher, free)``, as real code.

Codegen copies the ``# ---- helper: feedback`` group below into each such module verbatim
(``codegen.FEEDBACK_API``): ``forward(mode=...)`` and ``backward`` over the module's own
teacher-forced and free-running passes, and ``generate``.  The module's own code says what
generate() feeds back in one table, ``FEEDBACK = {'value': ..., 'from': ...}``: the value that
feedback(...) defines and the value its free side reads one step back (None when the free side
is not such a read).  Here the passes, ``FEEDBACK`` and ``_choose`` are stand-ins, so that
this file imports and its functions can be tested with a network a test fills in."""
import numpy as np

from .helpers import _choose  # a module's own copy, there

# the generated module's own table (filled in by each module; nothing to feed back here)
FEEDBACK = {"value": None, "from": None}


def _forward_teacher(params, inputs, targets=None, state0=None, T=None, lengths=None):
    """Stand-in for the module's own teacher-forced forward pass."""
    raise NotImplementedError("_forward_teacher is the generated module's own")


def _forward_free(params, inputs, targets=None, state0=None, T=None, lengths=None):
    """Stand-in for the module's own free-running forward pass."""
    raise NotImplementedError("_forward_free is the generated module's own")


def _forward_sample(params, inputs, targets=None, state0=None, T=None, lengths=None, rng=None,
                    greedy=True, batch=None):
    """Stand-in for the module's own generating forward pass."""
    raise NotImplementedError("_forward_sample is the generated module's own")


def _backward_teacher(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    """Stand-in for the module's own backward pass of a teacher-forced run."""
    raise NotImplementedError("_backward_teacher is the generated module's own")


def _backward_free(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    """Stand-in for the module's own backward pass of a free-running run."""
    raise NotImplementedError("_backward_free is the generated module's own")


# ---- helper: feedback
def forward(params, inputs, targets=None, state0=None, T=None, lengths=None, mode="teacher"):
    """Run the network on a batch; return (outputs, cache).

    mode="teacher" (teacher forcing, 004 2.2): each feedback(...) is its teacher side, computed
    from the targets' earlier steps -- pass targets.  mode="free": its free side, the model's own
    earlier outputs.  See _forward_teacher for the arguments.
    """
    if mode == "teacher":
        return _forward_teacher(params, inputs, targets, state0, T, lengths)
    if mode == "free":
        return _forward_free(params, inputs, targets, state0, T, lengths)
    raise ValueError(f"mode must be 'teacher' or 'free', not {mode!r}")


def backward(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    """BPTT for the mode forward ran in; see _backward_teacher."""
    if cache["mode"] == "teacher":
        return _backward_teacher(params, cache, d_outputs, xi, truncate, state_grads)
    return _backward_free(params, cache, d_outputs, xi, truncate, state_grads)


def generate(params, inputs=None, T=None, state0=None, seed=0, greedy=True, end=None, batch=None):
    """Generate sequences from the model itself (004 1.2.1): at every step the class chosen from
    the previous output -- the most likely one (greedy) or one drawn at random -- is fed back.
    The first step feeds what teacher forcing feeds there, the declared start class
    (`target y[t]: class(K) = k`), unless state0 gives the fed-back state: then the class is
    chosen from it (a seed, e.g. a one-hot start token).  Returns (tokens (T, B) ints, lengths
    (B,), outputs); with `end`, a sequence stops at its first end token (its length counts it;
    later tokens repeat it).  batch: how many sequences, when no input or initial state says it.
    """
    if FEEDBACK["from"] is None:
        raise ValueError("generate() needs feedback(..., v[t-1]): the free side must be a value "
                         "one step back")
    rng = np.random.default_rng(seed)
    outputs, _ = _forward_sample(params, inputs or {}, None, state0, T, None, rng=rng,
                                 greedy=greedy, batch=batch)
    chosen = outputs[FEEDBACK["value"]].argmax(axis=-1)  # step t reads the class chosen after t-1
    last = _choose(outputs[FEEDBACK["from"]][-1], rng, greedy).argmax(axis=-1)
    tokens = np.concatenate([chosen[1:], last[None]], axis=0)
    T, B = tokens.shape
    lengths = np.full(B, T)
    if end is not None:
        hit = tokens == end
        first = np.where(hit.any(axis=0), hit.argmax(axis=0), T - 1)
        lengths = first + 1
        tokens = np.where(np.arange(T)[:, None] > first[None, :], end, tokens)
    return tokens, lengths, outputs
