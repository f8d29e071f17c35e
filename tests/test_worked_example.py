"""specs/elman.rnn against the hand-written code of the worked example in 001 (4.1.4):
rnn_cell_forward / rnn_forward / rnn_cell_backward / rnn_backward, transcribed from the text
(column vectors, (n, 1, T) layout).  The generated module must give the same states, outputs
and gradients dU, dW, dba, dx, ds0 for the same upstream ds."""
import numpy as np

import rnnspec
from conftest import SPECS


def softmax(x):
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


def rnn_cell_forward(x_t, s_prev, parameters):
    U, W, V, ba, by = (parameters[k] for k in ("U", "W", "V", "ba", "by"))
    s_next = np.tanh(np.dot(U, x_t) + np.dot(W, s_prev) + ba)
    out_pred = softmax(np.dot(V, s_next) + by)
    return s_next, out_pred, (s_next, s_prev, x_t, parameters)


def rnn_forward(x, s0, parameters):
    caches = []
    m, _, T = x.shape
    m, n = parameters["V"].shape
    s = np.zeros((n, 1, T))
    y = np.zeros((m, 1, T))
    s_next = s0
    for t in range(T):
        s_next, out_pred, cache = rnn_cell_forward(x[:, :, t], s_next, parameters)
        s[:, :, t] = s_next
        y[:, :, t] = out_pred
        caches.append(cache)
    return s, y, caches


def rnn_cell_backward(ds_next, cache):
    (s_next, s_prev, x_t, parameters) = cache
    U, W = parameters["U"], parameters["W"]
    dtanh = (1 - s_next ** 2) * ds_next
    return {"dx_t": np.dot(U.T, dtanh), "dU": np.dot(dtanh, x_t.T),
            "ds_prev": np.dot(W.T, dtanh), "dW": np.dot(dtanh, s_prev.T),
            "dba": np.sum(dtanh, axis=1, keepdims=1)}


def rnn_backward(ds, caches):
    (s1, s0, x_1, parameters) = caches[0]
    n, _, T = ds.shape
    m, _ = x_1.shape
    dx = np.zeros((m, 1, T))
    dU = np.zeros((n, m))
    dW = np.zeros((n, n))
    dba = np.zeros((n, 1))
    ds_prevt = np.zeros((n, 1))
    for t in reversed(range(T)):
        g = rnn_cell_backward(ds[:, :, t] + ds_prevt, caches[t])
        dx[:, :, t] = g["dx_t"]
        ds_prevt = g["ds_prev"]
        dU += g["dU"]
        dW += g["dW"]
        dba += g["dba"]
    return {"dx": dx, "ds0": ds_prevt, "dU": dU, "dW": dW, "dba": dba}


def test_worked_example_forward_and_backward():
    np.random.seed(1)  # the text's own test data
    x = np.random.randn(3, 1, 4)
    s0 = np.random.randn(5, 1)
    W = np.random.randn(5, 5)
    U = np.random.randn(5, 3)
    V = np.random.randn(3, 5)
    ba = np.random.randn(5, 1)
    by = np.random.randn(3, 1)
    parameters = {"U": U, "W": W, "V": V, "ba": ba, "by": by}
    s, y, caches = rnn_forward(x, s0, parameters)
    ds = np.random.randn(5, 1, 4)
    ref = rnn_backward(ds, caches)

    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    params = {"U": U, "W": W, "V": V, "ba": ba[:, 0], "by": by[:, 0]}
    tm = lambda a: np.transpose(a, (2, 1, 0))  # (n, 1, T) -> time-major (T, 1, n)  # noqa: E731
    outputs, cache = mod.forward(params, {"x": tm(x)}, state0={"s": s0.T})
    np.testing.assert_allclose(outputs["s"], tm(s), rtol=0, atol=1e-13)
    np.testing.assert_allclose(outputs["o"], tm(y), rtol=0, atol=1e-13)
    grads = mod.backward(params, cache, {"s": tm(ds)})
    np.testing.assert_allclose(grads["params"]["U"], ref["dU"], atol=1e-12)
    np.testing.assert_allclose(grads["params"]["W"], ref["dW"], atol=1e-12)
    np.testing.assert_allclose(grads["params"]["ba"], ref["dba"][:, 0], atol=1e-12)
    np.testing.assert_allclose(grads["inputs"]["x"], tm(ref["dx"]), atol=1e-12)
    np.testing.assert_allclose(grads["state0"]["s"], ref["ds0"].T, atol=1e-12)
    # without a loss, nothing flows into V and by
    assert not grads["params"]["V"].any() and not grads["params"]["by"].any()


def test_loss_is_the_empirical_loss_summed_over_steps_and_sequences():
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    rng = np.random.default_rng(0)
    params = mod.init_params(seed=1)
    x = rng.normal(size=(5, 3, 3))
    y = rng.integers(0, 3, (5, 3))
    out, _ = mod.forward(params, {"x": x}, {"y": y})
    o = out["o"]
    expected = -sum(np.log(o[t, b, y[t, b]]) for t in range(5) for b in range(3))
    assert abs(out["loss"] - expected) < 1e-10
    # the batch loss is the sum of the per-sequence losses
    per_seq = [mod.forward(params, {"x": x[:, b:b + 1]}, {"y": y[:, b:b + 1]})[0]["loss"]
               for b in range(3)]
    assert abs(out["loss"] - sum(per_seq)) < 1e-10
