"""(e) JAX: jax.jit(jax.value_and_grad(loss)) over jax.lax.scan, the specs' equations exactly.

For specs/elman.rnn, specs/lstm.rnn and specs/gru.rnn, ``loss(params, x, y, state0)`` is the
summed cross-entropy of the generated module's LOSSES table (``reduce: sum`` over every step and
sequence of the batch), with the generated module's parameter names and shapes (its PARAMS) and
its states (its STATES, zero initial values by default).  The gradient is taken with respect to
the parameters, the input x and the initial states, as the generated ``loss_and_grad`` returns
them, so the loss and every gradient can be compared entry by entry.

Written the way one writes an RNN in JAX for speed: the input projections of all steps (and all
gates) as one product over T*B rows before the scan, the recurrent product of all gates fused
into one per step (the weights concatenated inside the jitted function, so the gradients still
come back per spec parameter), the softmax head over all T*B rows after it.  XLA compiles the
forward pass and its transpose (the backward scan) into one executable on the first call.

float64 needs ``jax_enable_x64``: importing this module switches it on (float32 arrays stay
float32).  When jax is not importable, ``jax`` is None and IMPORT_ERROR says why.
"""
import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError as e:  # pragma: no cover - depends on the environment
    jax = jnp = None
    IMPORT_ERROR = f"{type(e).__name__}: {e}"
else:
    IMPORT_ERROR = None
    jax.config.update("jax_enable_x64", True)

# the generated modules' STATES: name -> the parameter whose first axis is its size
STATES = {"elman": {"s": "W"}, "lstm": {"h": "W_f_h", "C": "W_f_h"}, "gru": {"h": "W"}}


def _rows(x, W, b):
    """x (T, B, I) times W.T (I, G) plus b, as one product over the T*B rows: (T, B, G)."""
    T, B, I = x.shape
    return (x.reshape(T * B, I) @ W.T + b).reshape(T, B, W.shape[0])


def _cross_entropy_sum(h, V, c, y):
    """sum over steps and sequences of -log softmax(V h + c)[y]  (cross_entropy, reduce sum)."""
    logp = jax.nn.log_softmax(_rows(h, V, c), axis=-1)
    return -jnp.take_along_axis(logp, y[..., None], axis=-1).sum()


def elman_loss(p, x, y, state0):
    """s[t] = tanh(U x[t] + W s[t-1] + ba);  o[t] = softmax(V s[t] + by)."""
    a = _rows(x, p["U"], p["ba"])
    WT = p["W"].T

    def step(s, a_t):
        s = jnp.tanh(a_t + s @ WT)
        return s, s

    _, s = jax.lax.scan(step, state0["s"], a)
    return _cross_entropy_sum(s, p["V"], p["by"], y)


def lstm_loss(p, x, y, state0):
    """f, g, q = sigmoid(gate(x[t], h[t-1]));  C[t] = f C[t-1] + g tanh(affine c);
    h[t] = tanh(C[t]) q;  o[t] = softmax(W_o_h h[t] + b_o)."""
    H = p["W_f_h"].shape[0]
    gates = ("f", "g", "q", "c")  # three sigmoids, then the tanh candidate
    a = _rows(x, jnp.concatenate([p[f"W_{k}_x"] for k in gates]),
              jnp.concatenate([p[f"b_{k}"] for k in gates]))
    WhT = jnp.concatenate([p[f"W_{k}_h"] for k in gates]).T

    def step(carry, a_t):
        h, C = carry
        s = a_t + h @ WhT
        sig = jax.nn.sigmoid(s[:, :3 * H])
        f, g, q = sig[:, :H], sig[:, H:2 * H], sig[:, 2 * H:]
        C = f * C + g * jnp.tanh(s[:, 3 * H:])
        h = jnp.tanh(C) * q
        return (h, C), h

    _, h = jax.lax.scan(step, (state0["h"], state0["C"]), a)
    return _cross_entropy_sum(h, p["W_o_h"], p["b_o"], y)


def gru_loss(p, x, y, state0):
    """z = sigmoid(bz + Uz x + Wz h), r = sigmoid(br + Ur x + Wr h),
    h[t] = z h[t-1] + (1 - z) tanh(b + U x + W (r h[t-1]));  o[t] = softmax(c + V h[t])."""
    H = p["W"].shape[0]
    a = _rows(x, jnp.concatenate([p["Uz"], p["Ur"], p["U"]]),
              jnp.concatenate([p["bz"], p["br"], p["b"]]))
    WzrT = jnp.concatenate([p["Wz"], p["Wr"]]).T
    WT = p["W"].T

    def step(h, a_t):
        zr = jax.nn.sigmoid(a_t[:, :2 * H] + h @ WzrT)
        z, r = zr[:, :H], zr[:, H:]
        h = z * h + (1 - z) * jnp.tanh(a_t[:, 2 * H:] + (r * h) @ WT)
        return h, h

    _, h = jax.lax.scan(step, state0["h"], a)
    return _cross_entropy_sum(h, p["V"], p["c"], y)


LOSSES = {"elman": elman_loss, "lstm": lstm_loss, "gru": gru_loss}


class JaxModel:
    """One model's jitted loss and gradients.  Each instance jits its own function, so its
    first call traces and compiles (XLA) and later calls run the compiled executable."""

    def __init__(self, model, params):
        if jax is None:
            raise RuntimeError(f"jax is not importable ({IMPORT_ERROR})")
        self.model = model
        self.dtype = params[next(iter(params))].dtype
        self.params = {k: jnp.asarray(v) for k, v in params.items()}
        self.state_sizes = {s: params[w].shape[0] for s, w in STATES[model].items()}
        loss = LOSSES[model]
        # a fresh function object per instance: its own trace and compile cache
        self.fn = jax.jit(jax.value_and_grad(lambda p, x, y, s0: loss(p, x, y, s0),
                                             argnums=(0, 1, 3)))

    def prepare(self, x, y, state0=None):
        """Device arrays, made once before timing: x (T, B, I), y (T, B) classes, the initial
        states (zeros unless given, as the generated module)."""
        B = x.shape[1]
        state0 = state0 or {}
        s0 = {s: jnp.asarray(state0[s]) if s in state0 else jnp.zeros((B, n), self.dtype)
              for s, n in self.state_sizes.items()}
        return jnp.asarray(x), jnp.asarray(np.asarray(y, dtype=np.int32)), s0

    def loss_and_grad(self, x, y, s0):
        """(loss, (d params, d x, d state0)), computed: blocks until the arrays are ready."""
        return jax.block_until_ready(self.fn(self.params, x, y, s0))

    @staticmethod
    def spec_result(out):
        """loss_and_grad's result as the generated module's: (float loss, {'params': ...,
        'inputs': {'x': ...}, 'state0': ...}) with NumPy arrays."""
        loss, (dp, dx, ds) = out
        return float(loss), {"params": {k: np.asarray(v) for k, v in dp.items()},
                             "inputs": {"x": np.asarray(dx)},
                             "state0": {k: np.asarray(v) for k, v in ds.items()}}
