"""(b) Expert hand-written batched NumPy forward + BPTT, the specs' equations exactly.

What makes it "expert" (the techniques the generated code is measured against):

* time-major (T, B, size) rows; one matrix product for the input projections of all steps and
  all gates (x @ Wx.T over T*B rows, bias added once) before the time loop;
* fused gate weights: one (B, H) @ (H, 4H) recurrent product per step for the LSTM, one
  (H, 2H) product for the GRU's r and z (plus the unavoidable W @ (r*h) after r is known);
* gate layouts chosen so that the slices the loops touch together are contiguous
  (LSTM [q, f, g, c]: three sigmoids then one tanh; GRU [r, z, c]);
* sigmoid(a) = 0.5 * tanh(a / 2) + 0.5, overflow free, with the 1/2 folded into the (copied)
  sigmoid rows of the weights and biases, so one tanh call per step covers every gate;
* buffers for all steps allocated once per call (np.empty) and written with out=, no per-step
  allocation in either loop;
* the element-wise factors of the backward pass that do not depend on the recursion
  (1 - tanh^2, sigmoid derivatives times the values they multiply) computed for all steps at
  once before the backward loop, so each backward step is a few multiplies and ONE product;
* weight gradients, bias gradients and the input gradient as single products / sums over all
  T*B rows after the backward loop;
* the softmax + cross-entropy head over all T*B rows at once, stabilised by the row maximum.

Parameters are converted once (setup, not timed) from the generated module's parameter dict;
grads_to_spec() maps the fused gradients back to the spec's names for the equality check.
"""
import numpy as np


def _head_forward(hflat, V, by, yflat):
    """Softmax + summed cross-entropy over all rows; returns (loss, probabilities)."""
    z = hflat @ V.T
    z += by
    z -= z.max(axis=1, keepdims=True)
    rows = np.arange(len(yflat))
    loss = -z[rows, yflat].sum(dtype=np.float64)
    np.exp(z, out=z)
    s = z.sum(axis=1, keepdims=True)
    loss += np.log(s).sum(dtype=np.float64)
    z /= s
    return float(loss), z


def _head_backward(probs, yflat, hflat, V):
    """dV, dby and the gradient flowing into the hidden rows (probs is overwritten)."""
    dz = probs
    dz[np.arange(len(yflat)), yflat] -= 1
    return dz.T @ hflat, dz.sum(axis=0), dz @ V


class ElmanExpert:
    def __init__(self, params):
        self.U, self.W, self.V = params["U"], params["W"], params["V"]
        self.ba, self.by = params["ba"], params["by"]

    def prepare(self, x, y):
        return x, y

    def forward(self, x, y):
        T, B, I = x.shape
        H, N = self.W.shape[0], T * B
        h = np.empty((T + 1, B, H), x.dtype)
        h[0] = 0
        a = x.reshape(N, I) @ self.U.T
        a += self.ba
        a = a.reshape(T, B, H)
        WT = self.W.T
        for t in range(T):
            ht = h[t + 1]
            np.matmul(h[t], WT, out=ht)
            ht += a[t]
            np.tanh(ht, out=ht)
        loss, probs = _head_forward(h[1:].reshape(N, H), self.V, self.by, y.reshape(N))
        return loss, {"x": x, "y": y, "h": h, "probs": probs}

    def backward(self, cache):
        x, y, h, probs = cache["x"], cache["y"], cache["h"], cache["probs"]
        T, B, I = x.shape
        H, N = self.W.shape[0], T * B
        dV, dby, da = _head_backward(probs, y.reshape(N), h[1:].reshape(N, H), self.V)
        da = da.reshape(T, B, H)  # dL/dh from the head; turned into dL/da in place
        fac = h[1:] * h[1:]  # 1 - h^2 for all steps at once
        np.subtract(1, fac, out=fac)
        W = self.W
        dnext = np.zeros((B, H), x.dtype)
        for t in range(T - 1, -1, -1):
            dat = da[t]
            if t < T - 1:
                dat += dnext
            dat *= fac[t]
            np.matmul(dat, W, out=dnext)
        daf = da.reshape(N, H)
        grads = {"U": daf.T @ x.reshape(N, I), "W": daf.T @ h[:-1].reshape(N, H), "V": dV,
                 "ba": daf.sum(axis=0), "by": dby}
        return {"params": grads, "inputs": {"x": (daf @ self.U).reshape(T, B, I)},
                "state0": {"s": dnext}}

    def loss_and_grad(self, x, y):
        loss, cache = self.forward(x, y)
        return loss, self.backward(cache)

    @staticmethod
    def grads_to_spec(grads):
        return grads


_LSTM_ORDER = ("q", "f", "g", "c")  # three sigmoid gates, then the tanh candidate


class LSTMExpert:
    def __init__(self, params):
        H = params["W_f_h"].shape[0]
        self.H = H
        self.Wx = np.concatenate([params[f"W_{k}_x"] for k in _LSTM_ORDER])  # (4H, I)
        self.Wh = np.concatenate([params[f"W_{k}_h"] for k in _LSTM_ORDER])  # (4H, H)
        self.b = np.concatenate([params[f"b_{k}"] for k in _LSTM_ORDER])     # (4H,)
        half = np.ones(4 * H, self.Wx.dtype)
        half[:3 * H] = 0.5  # sigmoid(a) = 0.5 tanh(a/2) + 0.5: fold the 1/2 into the weights
        self.WxT_half = np.ascontiguousarray((self.Wx * half[:, None]).T)
        self.WhT_half = np.ascontiguousarray((self.Wh * half[:, None]).T)
        self.b_half = self.b * half
        self.Wo, self.bo = params["W_o_h"], params["b_o"]

    prepare = ElmanExpert.prepare

    def forward(self, x, y):
        T, B, I = x.shape
        H, N, dt = self.H, T * B, x.dtype
        A = x.reshape(N, I) @ self.WxT_half
        A += self.b_half
        A = A.reshape(T, B, 4, H)  # pre-activations, turned into the gate values in place
        h = np.empty((T + 1, B, H), dt)
        C = np.empty((T + 1, B, H), dt)
        h[0] = 0
        C[0] = 0
        tC = np.empty((T, B, H), dt)
        tmp4 = np.empty((B, 4 * H), dt)
        tmp = np.empty((B, H), dt)
        WhT = self.WhT_half
        for t in range(T):
            At = A[t]
            A2 = At.reshape(B, 4 * H)
            np.matmul(h[t], WhT, out=tmp4)
            A2 += tmp4
            np.tanh(A2, out=A2)
            S = A2[:, :3 * H]
            S *= 0.5
            S += 0.5
            np.multiply(At[:, 1], C[t], out=C[t + 1])  # f * C[t-1]
            np.multiply(At[:, 2], At[:, 3], out=tmp)   # g * tanh(c)
            C[t + 1] += tmp
            np.tanh(C[t + 1], out=tC[t])
            np.multiply(tC[t], At[:, 0], out=h[t + 1])  # tanh(C) * q
        loss, probs = _head_forward(h[1:].reshape(N, H), self.Wo, self.bo, y.reshape(N))
        return loss, {"x": x, "y": y, "A": A, "C": C, "tC": tC, "h": h, "probs": probs}

    def backward(self, cache):
        x, y, A, C, tC, h = (cache[k] for k in ("x", "y", "A", "C", "tC", "h"))
        T, B, I = x.shape
        H, N, dt = self.H, T * B, x.dtype
        dWo, dbo, dh_out = _head_backward(cache["probs"], y.reshape(N), h[1:].reshape(N, H),
                                          self.Wo)
        dh_out = dh_out.reshape(T, B, H)
        q, f, g, c = A[:, :, 0], A[:, :, 1], A[:, :, 2], A[:, :, 3]
        # the factors that do not depend on the recursion, for all steps at once
        kq = tC * tC                    # dC += dh * (1 - tanh(C)^2) q
        np.subtract(1, kq, out=kq)
        kq *= q
        Pq = 1 - q                      # dA_q = dh * tanh(C) q (1 - q)
        Pq *= q
        Pq *= tC
        P3 = np.empty((T, B, 3, H), dt)  # dA_{f,g,c} = dC * P3
        np.subtract(1, f, out=P3[:, :, 0])
        P3[:, :, 0] *= f
        P3[:, :, 0] *= C[:-1]
        np.subtract(1, g, out=P3[:, :, 1])
        P3[:, :, 1] *= g
        P3[:, :, 1] *= c
        np.multiply(c, c, out=P3[:, :, 2])
        np.subtract(1, P3[:, :, 2], out=P3[:, :, 2])
        P3[:, :, 2] *= g
        dA = np.empty((T, B, 4, H), dt)
        dC = np.empty((B, H), dt)
        dC_next = np.zeros((B, H), dt)
        dh_next = np.zeros((B, H), dt)
        Wh = self.Wh
        for t in range(T - 1, -1, -1):
            dh = dh_out[t]
            if t < T - 1:
                dh += dh_next
            np.multiply(dh, kq[t], out=dC)
            dC += dC_next
            np.multiply(dh, Pq[t], out=dA[t, :, 0])
            np.multiply(dC[:, None, :], P3[t], out=dA[t, :, 1:])
            np.multiply(dC, f[t], out=dC_next)
            np.matmul(dA[t].reshape(B, 4 * H), Wh, out=dh_next)
        dAf = dA.reshape(N, 4 * H)
        return {"params": {"Wx": dAf.T @ x.reshape(N, I), "Wh": dAf.T @ h[:-1].reshape(N, H),
                           "b": dAf.sum(axis=0), "W_o_h": dWo, "b_o": dbo},
                "inputs": {"x": (dAf @ self.Wx).reshape(T, B, I)},
                "state0": {"h": dh_next, "C": dC_next}}

    loss_and_grad = ElmanExpert.loss_and_grad

    def grads_to_spec(self, grads):
        H, g = self.H, grads["params"]
        p = {"W_o_h": g["W_o_h"], "b_o": g["b_o"]}
        for i, k in enumerate(_LSTM_ORDER):
            p[f"W_{k}_x"] = g["Wx"][i * H:(i + 1) * H]
            p[f"W_{k}_h"] = g["Wh"][i * H:(i + 1) * H]
            p[f"b_{k}"] = g["b"][i * H:(i + 1) * H]
        return {"params": p, "inputs": grads["inputs"], "state0": grads["state0"]}


class GRUExpert:
    """Layout [r, z, c]: r and z from one (H, 2H) product; the candidate's W @ (r*h) after."""

    def __init__(self, params):
        H = params["W"].shape[0]
        self.H = H
        self.Ux = np.concatenate([params["Ur"], params["Uz"], params["U"]])  # (3H, I)
        self.b = np.concatenate([params["br"], params["bz"], params["b"]])
        self.Wrz = np.concatenate([params["Wr"], params["Wz"]])              # (2H, H)
        self.W = params["W"]
        half = np.ones(3 * H, self.Ux.dtype)
        half[:2 * H] = 0.5
        self.UxT_half = np.ascontiguousarray((self.Ux * half[:, None]).T)
        self.b_half = self.b * half
        self.WrzT_half = np.ascontiguousarray((self.Wrz * 0.5).T)
        self.WT = np.ascontiguousarray(self.W.T)
        self.V, self.c = params["V"], params["c"]

    prepare = ElmanExpert.prepare

    def forward(self, x, y):
        T, B, I = x.shape
        H, N, dt = self.H, T * B, x.dtype
        A = x.reshape(N, I) @ self.UxT_half
        A += self.b_half
        A = A.reshape(T, B, 3, H)
        h = np.empty((T + 1, B, H), dt)
        h[0] = 0
        rh = np.empty((T, B, H), dt)
        tmp2 = np.empty((B, 2 * H), dt)
        tmp = np.empty((B, H), dt)
        WrzT, WT = self.WrzT_half, self.WT
        for t in range(T):
            At = A[t]
            RZ = At.reshape(B, 3 * H)[:, :2 * H]
            np.matmul(h[t], WrzT, out=tmp2)
            RZ += tmp2
            np.tanh(RZ, out=RZ)
            RZ *= 0.5
            RZ += 0.5
            c = At[:, 2]
            np.multiply(At[:, 0], h[t], out=rh[t])
            np.matmul(rh[t], WT, out=tmp)
            c += tmp
            np.tanh(c, out=c)
            np.subtract(h[t], c, out=tmp)  # h = c + z (h[t-1] - c)
            tmp *= At[:, 1]
            np.add(c, tmp, out=h[t + 1])
        loss, probs = _head_forward(h[1:].reshape(N, H), self.V, self.c, y.reshape(N))
        return loss, {"x": x, "y": y, "A": A, "rh": rh, "h": h, "probs": probs}

    def backward(self, cache):
        x, y, A, rh, h = (cache[k] for k in ("x", "y", "A", "rh", "h"))
        T, B, I = x.shape
        H, N, dt = self.H, T * B, x.dtype
        dV, dc, dh_out = _head_backward(cache["probs"], y.reshape(N), h[1:].reshape(N, H),
                                        self.V)
        dh_out = dh_out.reshape(T, B, H)
        r, z, c = A[:, :, 0], A[:, :, 1], A[:, :, 2]
        hp = h[:-1]
        Pzc = np.empty((T, B, 2, H), dt)  # dA_{z,c} = dh * Pzc
        np.subtract(1, z, out=Pzc[:, :, 1])
        np.multiply(Pzc[:, :, 1], z, out=Pzc[:, :, 0])
        Pzc[:, :, 0] *= hp - c
        cc = c * c
        np.subtract(1, cc, out=cc)
        Pzc[:, :, 1] *= cc
        Pr = 1 - r                        # dA_r = d(r*h) * h r (1 - r)
        Pr *= r
        Pr *= hp
        dA = np.empty((T, B, 3, H), dt)
        drh = np.empty((B, H), dt)
        tmp = np.empty((B, H), dt)
        dh_next = np.zeros((B, H), dt)
        W, Wrz = self.W, self.Wrz
        for t in range(T - 1, -1, -1):
            dh = dh_out[t]
            if t < T - 1:
                dh += dh_next
            np.multiply(dh[:, None, :], Pzc[t], out=dA[t, :, 1:])
            np.matmul(dA[t, :, 2], W, out=drh)
            np.multiply(drh, Pr[t], out=dA[t, :, 0])
            np.matmul(dA[t].reshape(B, 3 * H)[:, :2 * H], Wrz, out=dh_next)
            np.multiply(dh, z[t], out=tmp)
            dh_next += tmp
            np.multiply(drh, r[t], out=tmp)
            dh_next += tmp
        dAf = dA.reshape(N, 3 * H)
        return {"params": {"Ux": dAf.T @ x.reshape(N, I),
                           "Wrz": dAf[:, :2 * H].T @ hp.reshape(N, H),
                           "W": dAf[:, 2 * H:].T @ rh.reshape(N, H),
                           "b": dAf.sum(axis=0), "V": dV, "c": dc},
                "inputs": {"x": (dAf @ self.Ux).reshape(T, B, I)},
                "state0": {"h": dh_next}}

    loss_and_grad = ElmanExpert.loss_and_grad

    def grads_to_spec(self, grads):
        H, g = self.H, grads["params"]
        p = {"Ur": g["Ux"][:H], "Uz": g["Ux"][H:2 * H], "U": g["Ux"][2 * H:],
             "br": g["b"][:H], "bz": g["b"][H:2 * H], "b": g["b"][2 * H:],
             "Wr": g["Wrz"][:H], "Wz": g["Wrz"][H:], "W": g["W"], "V": g["V"], "c": g["c"]}
        return {"params": p, "inputs": grads["inputs"], "state0": grads["state0"]}


EXPERT = {"elman": ElmanExpert, "lstm": LSTMExpert, "gru": GRUExpert}
