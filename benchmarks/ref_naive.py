"""(a) Naive per-step NumPy forward + BPTT, in the style of the source texts.

Written like 001's ``rnn_cell_forward`` / ``rnn_forward`` / ``rnn_cell_backward`` /
``rnn_backward``: column vectors (here B columns: a step's input is (I, B)), one function call
per cell, each gate its own ``np.dot(W, h_prev) + np.dot(U, x_t) + b``, the output softmax
computed inside the cell, a Python list of per-step cache tuples, and every weight gradient
accumulated step by step (``dU += dUt``).  Nothing is hoisted out of the time loop.

The equations are the specs' (specs/elman.rnn, specs/lstm.rnn, specs/gru.rnn); the classes take
the generated module's parameter dict (the spec's names) and return gradients keyed the same
way, so the harness can compare them with the generated module.
"""
import numpy as np


def softmax(z):
    """Column-wise softmax (each column is one sequence of the batch)."""
    e_x = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e_x / e_x.sum(axis=0, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _col(b):
    return b.reshape(-1, 1)


def _step_loss(out_pred, y_t):
    """Cross-entropy of one step, summed over the batch; and its gradient wrt the logits."""
    cols = np.arange(y_t.shape[0])
    loss = -np.sum(np.log(out_pred[y_t, cols]))
    do = out_pred.copy()
    do[y_t, cols] -= 1
    return loss, do


# ---------------------------------------------------------------------------------------------
# Elman (specs/elman.rnn): s[t] = tanh(U x[t] + W s[t-1] + ba), o[t] = softmax(V s[t] + by)

def rnn_cell_forward(x_t, s_prev, parameters):
    U, W, V, ba, by = (parameters[k] for k in ("U", "W", "V", "ba", "by"))
    s_next = np.tanh(np.dot(U, x_t) + np.dot(W, s_prev) + ba)
    out_pred = softmax(np.dot(V, s_next) + by)
    cache = (s_next, s_prev, x_t, parameters)
    return s_next, out_pred, cache


def rnn_cell_backward(ds_next, cache):
    (s_next, s_prev, x_t, parameters) = cache
    U, W = parameters["U"], parameters["W"]
    dtanh = (1 - s_next ** 2) * ds_next
    dx_t = np.dot(U.T, dtanh)
    dU = np.dot(dtanh, x_t.T)
    ds_prev = np.dot(W.T, dtanh)
    dW = np.dot(dtanh, s_prev.T)
    dba = np.sum(dtanh, axis=1, keepdims=True)
    return {"dx_t": dx_t, "ds_prev": ds_prev, "dU": dU, "dW": dW, "dba": dba}


class ElmanNaive:
    def __init__(self, params):
        self.parameters = {"U": params["U"], "W": params["W"], "V": params["V"],
                           "ba": _col(params["ba"]), "by": _col(params["by"])}

    def prepare(self, x, y):
        """The text's layout: x as (m, B, T); targets (T, B)."""
        return np.ascontiguousarray(x.transpose(2, 1, 0)), y

    def loss_and_grad(self, x, y):
        p = self.parameters
        m, B, T = x.shape
        n = p["W"].shape[0]
        # forward: rnn_forward
        caches, outs = [], []
        loss = 0.0
        s_next = np.zeros((n, B), x.dtype)
        for t in range(T):
            s_next, out_pred, cache = rnn_cell_forward(x[:, :, t], s_next, p)
            l_t, _ = _step_loss(out_pred, y[t])
            loss += l_t
            caches.append(cache)
            outs.append(out_pred)
        # backward: rnn_backward, with the output layer of each cell
        dx = np.zeros((m, B, T), x.dtype)
        dU = np.zeros_like(p["U"])
        dW = np.zeros_like(p["W"])
        dV = np.zeros_like(p["V"])
        dba = np.zeros_like(p["ba"])
        dby = np.zeros_like(p["by"])
        ds_prevt = np.zeros((n, B), x.dtype)
        for t in reversed(range(T)):
            _, do = _step_loss(outs[t], y[t])
            s_t = caches[t][0]
            dV += np.dot(do, s_t.T)
            dby += np.sum(do, axis=1, keepdims=True)
            ds = np.dot(p["V"].T, do)
            gradients = rnn_cell_backward(ds + ds_prevt, caches[t])
            dx_t, ds_prevt, dUt, dWt, dbat = (gradients[k] for k in
                                               ("dx_t", "ds_prev", "dU", "dW", "dba"))
            dx[:, :, t] = dx_t
            dU += dUt
            dW += dWt
            dba += dbat
        grads = {"params": {"U": dU, "W": dW, "V": dV, "ba": dba[:, 0], "by": dby[:, 0]},
                 "inputs": {"x": dx.transpose(2, 1, 0)},
                 "state0": {"s": ds_prevt.T}}
        return loss, grads


# ---------------------------------------------------------------------------------------------
# LSTM (specs/lstm.rnn): gates f, g, q; C[t] = f*C[t-1] + g*tanh(c); h = tanh(C)*q

_LSTM = ("f", "g", "q", "c")


def lstm_cell_forward(x_t, h_prev, c_prev, parameters):
    p = parameters
    f = sigmoid(np.dot(p["W_f_x"], x_t) + np.dot(p["W_f_h"], h_prev) + p["b_f"])
    g = sigmoid(np.dot(p["W_g_x"], x_t) + np.dot(p["W_g_h"], h_prev) + p["b_g"])
    q = sigmoid(np.dot(p["W_q_x"], x_t) + np.dot(p["W_q_h"], h_prev) + p["b_q"])
    cc = np.tanh(np.dot(p["W_c_x"], x_t) + np.dot(p["W_c_h"], h_prev) + p["b_c"])
    c_next = f * c_prev + g * cc
    tc = np.tanh(c_next)
    h_next = tc * q
    out_pred = softmax(np.dot(p["W_o_h"], h_next) + p["b_o"])
    cache = (h_next, c_next, h_prev, c_prev, f, g, q, cc, tc, x_t, parameters)
    return h_next, c_next, out_pred, cache


def lstm_cell_backward(dh_next, dc_next, cache):
    (h_next, c_next, h_prev, c_prev, f, g, q, cc, tc, x_t, p) = cache
    dq = dh_next * tc
    dc = dc_next + dh_next * q * (1 - tc ** 2)
    df = dc * c_prev
    dg = dc * cc
    dcc = dc * g
    dc_prev = dc * f
    da = {"f": df * f * (1 - f), "g": dg * g * (1 - g), "q": dq * q * (1 - q),
          "c": dcc * (1 - cc ** 2)}
    gradients = {"dc_prev": dc_prev}
    dx_t = 0
    dh_prev = 0
    for k in _LSTM:
        dx_t = dx_t + np.dot(p[f"W_{k}_x"].T, da[k])
        dh_prev = dh_prev + np.dot(p[f"W_{k}_h"].T, da[k])
        gradients[f"dW_{k}_x"] = np.dot(da[k], x_t.T)
        gradients[f"dW_{k}_h"] = np.dot(da[k], h_prev.T)
        gradients[f"db_{k}"] = np.sum(da[k], axis=1, keepdims=True)
    gradients["dx_t"] = dx_t
    gradients["dh_prev"] = dh_prev
    return gradients


class LSTMNaive:
    def __init__(self, params):
        self.parameters = {k: (_col(v) if v.ndim == 1 else v) for k, v in params.items()}

    prepare = ElmanNaive.prepare

    def loss_and_grad(self, x, y):
        p = self.parameters
        m, B, T = x.shape
        n = p["W_f_h"].shape[0]
        caches, outs = [], []
        loss = 0.0
        h_next = np.zeros((n, B), x.dtype)
        c_next = np.zeros((n, B), x.dtype)
        for t in range(T):
            h_next, c_next, out_pred, cache = lstm_cell_forward(x[:, :, t], h_next, c_next, p)
            l_t, _ = _step_loss(out_pred, y[t])
            loss += l_t
            caches.append(cache)
            outs.append(out_pred)
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros((m, B, T), x.dtype)
        dh_prevt = np.zeros((n, B), x.dtype)
        dc_prevt = np.zeros((n, B), x.dtype)
        for t in reversed(range(T)):
            _, do = _step_loss(outs[t], y[t])
            h_t = caches[t][0]
            grads["W_o_h"] += np.dot(do, h_t.T)
            grads["b_o"] += np.sum(do, axis=1, keepdims=True)
            dh = np.dot(p["W_o_h"].T, do)
            gradients = lstm_cell_backward(dh + dh_prevt, dc_prevt, caches[t])
            dx[:, :, t] = gradients["dx_t"]
            dh_prevt = gradients["dh_prev"]
            dc_prevt = gradients["dc_prev"]
            for k in _LSTM:
                grads[f"W_{k}_x"] += gradients[f"dW_{k}_x"]
                grads[f"W_{k}_h"] += gradients[f"dW_{k}_h"]
                grads[f"b_{k}"] += gradients[f"db_{k}"]
        grads = {k: (v[:, 0] if k.startswith("b_") else v) for k, v in grads.items()}
        return loss, {"params": grads, "inputs": {"x": dx.transpose(2, 1, 0)},
                      "state0": {"h": dh_prevt.T, "C": dc_prevt.T}}


# ---------------------------------------------------------------------------------------------
# GRU (specs/gru.rnn, 004 4.3.2): reset applied before W:
# h[t] = z*h[t-1] + (1-z)*tanh(b + U x + W (r*h[t-1]))

def gru_cell_forward(x_t, h_prev, parameters):
    p = parameters
    z = sigmoid(p["bz"] + np.dot(p["Uz"], x_t) + np.dot(p["Wz"], h_prev))
    r = sigmoid(p["br"] + np.dot(p["Ur"], x_t) + np.dot(p["Wr"], h_prev))
    rh = r * h_prev
    hc = np.tanh(p["b"] + np.dot(p["U"], x_t) + np.dot(p["W"], rh))
    h_next = z * h_prev + (1 - z) * hc
    out_pred = softmax(p["c"] + np.dot(p["V"], h_next))
    cache = (h_next, h_prev, z, r, rh, hc, x_t, parameters)
    return h_next, out_pred, cache


def gru_cell_backward(dh_next, cache):
    (h_next, h_prev, z, r, rh, hc, x_t, p) = cache
    dz = dh_next * (h_prev - hc)
    dhc = dh_next * (1 - z)
    dh_prev = dh_next * z
    dac = dhc * (1 - hc ** 2)
    drh = np.dot(p["W"].T, dac)
    dr = drh * h_prev
    dh_prev = dh_prev + drh * r
    daz = dz * z * (1 - z)
    dar = dr * r * (1 - r)
    dh_prev = dh_prev + np.dot(p["Wz"].T, daz) + np.dot(p["Wr"].T, dar)
    dx_t = np.dot(p["Uz"].T, daz) + np.dot(p["Ur"].T, dar) + np.dot(p["U"].T, dac)
    return {"dx_t": dx_t, "dh_prev": dh_prev,
            "dUz": np.dot(daz, x_t.T), "dWz": np.dot(daz, h_prev.T),
            "dbz": np.sum(daz, axis=1, keepdims=True),
            "dUr": np.dot(dar, x_t.T), "dWr": np.dot(dar, h_prev.T),
            "dbr": np.sum(dar, axis=1, keepdims=True),
            "dU": np.dot(dac, x_t.T), "dW": np.dot(dac, rh.T),
            "db": np.sum(dac, axis=1, keepdims=True)}


class GRUNaive:
    def __init__(self, params):
        self.parameters = {k: (_col(v) if v.ndim == 1 else v) for k, v in params.items()}

    prepare = ElmanNaive.prepare

    def loss_and_grad(self, x, y):
        p = self.parameters
        m, B, T = x.shape
        n = p["W"].shape[0]
        caches, outs = [], []
        loss = 0.0
        h_next = np.zeros((n, B), x.dtype)
        for t in range(T):
            h_next, out_pred, cache = gru_cell_forward(x[:, :, t], h_next, p)
            l_t, _ = _step_loss(out_pred, y[t])
            loss += l_t
            caches.append(cache)
            outs.append(out_pred)
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros((m, B, T), x.dtype)
        dh_prevt = np.zeros((n, B), x.dtype)
        for t in reversed(range(T)):
            _, do = _step_loss(outs[t], y[t])
            h_t = caches[t][0]
            grads["V"] += np.dot(do, h_t.T)
            grads["c"] += np.sum(do, axis=1, keepdims=True)
            dh = np.dot(p["V"].T, do)
            gradients = gru_cell_backward(dh + dh_prevt, caches[t])
            dx[:, :, t] = gradients["dx_t"]
            dh_prevt = gradients["dh_prev"]
            for k in ("Uz", "Wz", "bz", "Ur", "Wr", "br", "U", "W", "b"):
                grads[k] += gradients["d" + k]
        grads = {k: (v[:, 0] if k in ("bz", "br", "b", "c") else v)
                 for k, v in grads.items()}
        return loss, {"params": grads, "inputs": {"x": dx.transpose(2, 1, 0)},
                      "state0": {"h": dh_prevt.T}}


NAIVE = {"elman": ElmanNaive, "lstm": LSTMNaive, "gru": GRUNaive}
