"""Seeing gradients vanish and explode (004 3.1): how the gradient of a loss shrinks or grows as
it flows back through the recurrence, measured on a generated module.

In: a generated module (one time axis, forward in time), parameters, T and a seed.  Out: a
:class:`Flow`: for every state s and step t, ``||dL/ds_t||`` for a loss on the last step's states
(a random unit upstream gradient on the final states: the classic curve ``||(W^T)^(T-t) g||``
of a linear network) and for the spec's own loss (random targets), both from the generated
backward's per-step state gradients (``backward(..., state_grads=True)``); the spectral norm and
the spectral radius of the step Jacobian ``dS_t/dS_{t-1}`` of all states together at every t
(its rows are one batched VJP of a one-step run; exact norm and eigenvalues up to
``MAX_EXACT`` state numbers, power iteration with the Jacobian and its transpose beyond, up to
``MAX_JACOBIAN``); and the spectral radius of every recurrent matrix (a parameter multiplying a
state read steps back).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .delays import Step
from .gradcheck import random_problem
from .surrogate import one_step_jacobians

MAX_EXACT = 512  # states' total size up to which the norm and radius are exact (SVD, eigvals)
MAX_JACOBIAN = 4096  # past it the step Jacobian is not formed (N copies in one VJP, N^2 floats)
POWER_STEPS = 200  # power iterations beyond MAX_EXACT


@dataclass
class Flow:
    spec: str
    T: int
    last: Dict[str, np.ndarray]  # state -> (T,) ||dL/ds_t|| for the loss on the last states
    loss: Dict[str, np.ndarray]  # the same for the spec's own loss (empty without one)
    jacobian_norm: Optional[np.ndarray]  # (T,) ||dS_t/dS_{t-1}||_2 (t = 1: from state0)
    jacobian_radius: Optional[np.ndarray]  # (T,) its spectral radius
    matrices: Dict[str, float] = field(default_factory=dict)  # recurrent matrix -> its rho
    upstream: Dict[str, np.ndarray] = field(default_factory=dict)  # the unit g on the finals
    note: str = ""

    def table(self, rows: int = 11) -> str:
        """The curves at ``rows`` steps spread over 1..T, and the matrices' radii."""
        steps = sorted(set(np.linspace(0, self.T - 1, min(rows, self.T)).round().astype(int)))
        head = ["t"] + [f"|dL/d{s}| last" for s in self.last] + \
            [f"|dL/d{s}| loss" for s in self.loss]
        if self.jacobian_norm is not None:
            head += ["|J_t|", "rho(J_t)"]
        body = []
        for t in steps:
            row = [str(t + 1)] + [f"{v[t]:.3e}" for v in self.last.values()] + \
                [f"{v[t]:.3e}" for v in self.loss.values()]
            if self.jacobian_norm is not None:
                row += [f"{self.jacobian_norm[t]:.3f}", f"{self.jacobian_radius[t]:.3f}"]
            body.append(row)
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        fmt = "  ".join("{:>%d}" % w for w in widths)
        lines = [f"gradient flow of {self.spec} (T={self.T}, batch 1): the gradient's norm at "
                 f"each step, for a loss on the last step's states ('last') and for the spec's "
                 f"loss; J_t = dS_t/dS_(t-1), all states together", "",
                 fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*r) for r in body]
        if self.matrices:
            lines += ["", "spectral radius of the recurrent matrices: " + ", ".join(
                f"rho({n}) = {r:.3f}" for n, r in self.matrices.items())]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)

    def to_json(self) -> str:
        conv = lambda d: {k: v.tolist() for k, v in d.items()}  # noqa: E731
        return json.dumps({"spec": self.spec, "T": self.T, "last": conv(self.last),
                           "loss": conv(self.loss),
                           "jacobian_norm": None if self.jacobian_norm is None
                           else self.jacobian_norm.tolist(),
                           "jacobian_radius": None if self.jacobian_radius is None
                           else self.jacobian_radius.tolist(),
                           "matrices": self.matrices, "note": self.note}, indent=1)

    def plot(self, path) -> None:
        """The curves on a log scale, as a PNG (needs matplotlib: ``pip install rnnspec[plot]``)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        t = np.arange(1, self.T + 1)
        for s, v in self.last.items():
            ax.semilogy(t, np.maximum(v, 1e-300), label=f"|dL/d{s}_t|, loss on the last step")
        for s, v in self.loss.items():
            ax.semilogy(t, np.maximum(v, 1e-300), "--", label=f"|dL/d{s}_t|, the spec's loss")
        ax.set_xlabel("t")
        ax.set_title(f"gradient flow: {self.spec}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def gradient_flow(mod, params=None, T: int = 100, seed: int = 0, dims=None, graph=None,
                  spec: str = "spec") -> Flow:
    """The :class:`Flow` of module ``mod`` (parameters: ``params``, else its initializers with
    ``seed``) on one random sequence of T steps; ``graph`` (the spec's op graph) names the
    recurrent matrices."""
    if len(mod.AXES) != 1 or getattr(mod, "TRUNCATE", None) is not None:
        raise ValueError("rnnspec flow needs a network with one time axis running forward in "
                         "time" + (f": {mod.TRUNCATE}" if getattr(mod, "TRUNCATE", None) else ""))
    if params is None:
        params = mod.init_params(dims, seed=seed)
    _, inputs, targets, _, _ = random_problem(mod, dims, T, 1, seed)
    out, cache = mod.forward(params, inputs, targets, None, T)
    rng = np.random.default_rng(seed + 1)
    g = {n: rng.standard_normal(v.shape) for n, v in out["final"].items()}
    size = np.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
    up = {"final": {n: v / size for n, v in g.items()}}
    if "loss" in out:
        up["loss"] = 0.0
    last = _norms(mod.backward(params, cache, up, state_grads=True)["states"])
    loss = _norms(mod.backward(params, cache, state_grads=True)["states"]) if "loss" in out \
        else {}
    norm = radius = None
    note = ""
    n_state = sum(v.size for v in out["final"].values())
    if n_state <= MAX_JACOBIAN:
        norm, radius = _jacobians(mod, params, inputs, T)
        if n_state > MAX_EXACT:
            note = (f"the states hold {n_state} numbers (more than {MAX_EXACT}): the step "
                    f"Jacobian's norm and radius are power-iteration estimates "
                    f"({POWER_STEPS} steps)")
    else:
        note = (f"the step Jacobian is not formed: the states hold {n_state} numbers "
                f"(more than {MAX_JACOBIAN}); use smaller dims")
    return Flow(spec, T, last, loss, norm, radius, _recurrent_radii(graph, params),
                note=note, upstream=up["final"])


def _norms(states) -> Dict[str, np.ndarray]:
    """||.|| over everything but the step axis of each (T, B=1, ...) state gradient."""
    return {n: np.sqrt(np.sum(np.reshape(v, (v.shape[0], -1)) ** 2, axis=1))
            for n, v in states.items()}


def step_jacobians(mod, params, inputs, T: int) -> List[np.ndarray]:
    """The list of :func:`iter_jacobians` (all T at once: for small states)."""
    return list(iter_jacobians(mod, params, inputs, T))


def iter_jacobians(mod, params, inputs, T: int) -> Iterator[Optional[np.ndarray]]:
    """dS_t/dS_{t-1} for t = 1..T, S every state's carried steps flattened and put together:
    each is the one-step run from the states before step t (reached step by step, which is
    exactly the whole run), its rows at once as one VJP of a batch of N copies.  J_1 is None
    when the initial states are computed (``state h: n = h0``) rather than zeros."""
    state = None
    for t in range(T):
        one = {n: v[t:t + 1] if mod.INPUTS[n]["kind"] == "sequence" else v
               for n, v in inputs.items()}
        out, _ = mod.forward(params, one, None, state, 1)
        if state is None:
            if any(info["init"] != "zeros" for info in mod.STATES.values()):
                # the initial states are computed (from an input, a value): J_1 is the
                # Jacobian with respect to what they were computed as, not formed here
                yield None
                state = out["final"]
                continue
            state = {n: np.zeros_like(v) for n, v in out["final"].items()}  # (S_0 = 0)
        (J, _), = one_step_jacobians(mod, params, one, state, out["final"], 1)
        yield J  # (row i: the gradient of final coordinate i)
        state = out["final"]


def _jacobians(mod, params, inputs, T):
    """(norm, radius) of every step Jacobian, one Jacobian at a time (each is dropped once
    measured: N^2 numbers each)."""
    norm, radius = np.full(T, np.nan), np.full(T, np.nan)
    for t, J in enumerate(iter_jacobians(mod, params, inputs, T)):
        if J is not None:
            norm[t], radius[t] = (np.linalg.norm(J, 2), np.abs(np.linalg.eigvals(J)).max()) \
                if len(J) <= MAX_EXACT else power_norm_radius(J, seed=t)
    return norm, radius


def power_norm_radius(J: np.ndarray, steps: int = POWER_STEPS, seed: int = 0
                      ) -> Tuple[float, float]:
    """Estimates of ``||J||_2`` and of the spectral radius of J by power iteration: the norm
    by subspace iteration of ``J^T J`` on a block of 8 vectors (products with J and its
    transpose, then the largest Ritz value; it converges from below), the radius as ``||J^k v||^(1/k)`` over the last half of ``steps``
    products (Gelfand's formula: it needs no dominant real eigenvalue, so a complex pair or a
    rotation is measured too)."""
    rng = np.random.default_rng(seed)
    V = np.linalg.qr(rng.standard_normal((len(J), min(8, len(J)))))[0]
    for _ in range(steps // 4):  # (a block of 8: top singular values close together converge)
        V = np.linalg.qr(J.T @ (J @ V))[0]
    JV = J @ V
    sigma = np.sqrt(max(np.linalg.eigvalsh(JV.T @ JV).max(), 0.0))  # (Rayleigh-Ritz)
    u = rng.standard_normal(len(J))
    u /= np.linalg.norm(u)
    logs = []
    for _ in range(steps):
        u = J @ u
        size = np.linalg.norm(u)
        if size == 0.0:
            return float(sigma), 0.0
        logs.append(np.log(size))
        u /= size
    half = logs[len(logs) // 2:]
    return float(sigma), float(np.exp(np.mean(half)))


def _recurrent_radii(graph, params) -> Dict[str, float]:
    """rho of every square parameter matrix that multiplies a value read steps back."""
    if graph is None:
        return {}
    names = []
    for op in graph.ops.values():
        if op.op != "matvec" or len(op.args) != 2:
            continue
        (w, _), (v, delay) = op.args
        wop = graph.ops[w]
        if wop.op == "param" and isinstance(delay, Step) and delay.steps > 0 and \
                wop.name not in names:
            names.append(wop.name)
    out = {}
    for n in names:
        W = np.asarray(params[n])
        if W.ndim == 2 and W.shape[0] == W.shape[1]:
            out[n] = float(np.abs(np.linalg.eigvals(W)).max())
    return out
