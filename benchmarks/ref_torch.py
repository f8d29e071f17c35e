"""(c) PyTorch CPU autograd: nn.RNN(tanh) / nn.LSTM / nn.GRU + nn.Linear head +
cross_entropy(reduction='sum'), forward + loss.backward() for the loss and all gradients
(parameters, the input x and the initial states).

The weights are copied from the generated module's parameters (bias_hh = 0):
* elman: weight_ih = U, weight_hh = W, bias_ih = ba -- the same function as specs/elman.rnn;
* lstm: torch's gate order (i, f, g, o) = the spec's (g, f, c, q) -- the same function as
  specs/lstm.rnn;
* gru: torch's (r, z, n) = the spec's (r, z, c), but torch applies r *after* the product
  (n = tanh(W_in x + b_in + r * (W_hn h + b_hn))) while specs/gru.rnn applies it before
  (tanh(b + U x + W (r * h))): a different function with the same matrix-product FLOPs, so it is
  timed but not compared.
"""
import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the environment
    torch = None
    IMPORT_ERROR = f"{type(e).__name__}: {e}"
else:
    IMPORT_ERROR = None

SAME_FUNCTION = {"elman": True, "lstm": True, "gru": False}


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


class TorchModel:
    def __init__(self, model, params):
        dtype = torch.float64 if params[next(iter(params))].dtype == np.float64 else torch.float32
        self.model = model
        p = params
        if model == "elman":
            H, I = p["U"].shape
            self.rnn = torch.nn.RNN(I, H, nonlinearity="tanh")
            w_ih, w_hh, b_ih = p["U"], p["W"], p["ba"]
            V, c = p["V"], p["by"]
        elif model == "lstm":
            H, I = p["W_f_x"].shape
            self.rnn = torch.nn.LSTM(I, H)
            order = ("g", "f", "c", "q")  # torch's i, f, g, o
            w_ih = np.concatenate([p[f"W_{k}_x"] for k in order])
            w_hh = np.concatenate([p[f"W_{k}_h"] for k in order])
            b_ih = np.concatenate([p[f"b_{k}"] for k in order])
            V, c = p["W_o_h"], p["b_o"]
        elif model == "gru":
            H, I = p["U"].shape
            self.rnn = torch.nn.GRU(I, H)
            w_ih = np.concatenate([p["Ur"], p["Uz"], p["U"]])
            w_hh = np.concatenate([p["Wr"], p["Wz"], p["W"]])
            b_ih = np.concatenate([p["br"], p["bz"], p["b"]])
            V, c = p["V"], p["c"]
        else:
            raise ValueError(model)
        K = V.shape[0]
        self.H, self.K = H, K
        self.head = torch.nn.Linear(H, K)
        self.rnn.to(dtype)
        self.head.to(dtype)
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(_t(w_ih))
            self.rnn.weight_hh_l0.copy_(_t(w_hh))
            self.rnn.bias_ih_l0.copy_(_t(b_ih))
            self.rnn.bias_hh_l0.zero_()
            self.head.weight.copy_(_t(V))
            self.head.bias.copy_(_t(c))
        self.params = list(self.rnn.parameters()) + list(self.head.parameters())
        self.dtype = dtype

    def prepare(self, x, y):
        T, B, _ = x.shape
        xt = _t(x).requires_grad_(True)
        yt = _t(y.astype(np.int64)).reshape(-1)
        h0 = torch.zeros(1, B, self.H, dtype=self.dtype, requires_grad=True)
        state = (h0, torch.zeros(1, B, self.H, dtype=self.dtype, requires_grad=True)) \
            if self.model == "lstm" else h0
        return xt, yt, state

    def loss_and_grad(self, xt, yt, state):
        for p in self.params:
            p.grad = None
        xt.grad = None
        for s in (state if isinstance(state, tuple) else (state,)):
            s.grad = None
        out, _ = self.rnn(xt, state)
        logits = self.head(out)
        loss = F.cross_entropy(logits.reshape(-1, self.K), yt, reduction="sum")
        loss.backward()
        return loss.item(), None

    def spec_grads(self, xt, yt, state):
        """After loss_and_grad(*args): the gradients keyed like the generated module's."""
        g = lambda p: p.grad.detach().numpy()  # noqa: E731
        H = self.H
        w_ih, w_hh, b = g(self.rnn.weight_ih_l0), g(self.rnn.weight_hh_l0), g(self.rnn.bias_ih_l0)
        if self.model == "elman":
            p = {"U": w_ih, "W": w_hh, "ba": b, "V": g(self.head.weight), "by": g(self.head.bias)}
            s0 = {"s": state.grad[0].numpy()}
        elif self.model == "lstm":
            p = {"W_o_h": g(self.head.weight), "b_o": g(self.head.bias)}
            for i, k in enumerate(("g", "f", "c", "q")):
                p[f"W_{k}_x"] = w_ih[i * H:(i + 1) * H]
                p[f"W_{k}_h"] = w_hh[i * H:(i + 1) * H]
                p[f"b_{k}"] = b[i * H:(i + 1) * H]
            s0 = {"h": state[0].grad[0].numpy(), "C": state[1].grad[0].numpy()}
        else:
            raise ValueError("torch's GRU is a different function; not compared")
        return {"params": p, "inputs": {"x": xt.grad.numpy()}, "state0": s0}
