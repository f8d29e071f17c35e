"""Stage 6, gradcheck: a generated module -> a :class:`GradcheckReport`.

In: a generated module (or a spec path / spec text, compiled here in float64), sizes (dims, T,
batch) and a seed.  Out: a report comparing, for every parameter, every real-valued input and
every initial state, the analytic gradient of ``backward`` with central differences of the
objective

    J = loss + sum_v <G_v, v> + sum_s <G_s, final_s>

where the upstream gradients ``G`` are random (so every named output and every final state is
checked, not only the loss).  In the default mode every entry is compared; in directional mode
each array is compared along a few random unit directions (for models too large for that).
An entry passes when ``|analytic - numeric| <= atol + noise + rtol * max(|analytic|, |numeric|)``
where ``noise = 32 * machine_epsilon * max(|J|, 1) / eps`` is the rounding error of the central
difference itself (it grows with the size of the objective); the report prints it.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np


@dataclass
class Row:
    group: str  # 'params' | 'inputs' | 'state0'
    name: str
    shape: tuple
    checked: int
    max_abs: float
    max_rel: float
    ok: bool

    @property
    def label(self) -> str:
        return f"{self.group}.{self.name}"


@dataclass
class GradcheckReport:
    spec: str
    rows: List[Row]
    rtol: float
    atol: float
    eps: float
    mode: str
    noise: float = 0.0
    sizes: Dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self) -> str:
        head = ("array", "shape", "checked", "max abs err", "max rel err", "ok")
        body = [(r.label, "×".join(map(str, r.shape)) or "scalar", str(r.checked),
                 f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", "ok" if r.ok else "FAIL")
                for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        lines = [f"gradcheck {self.spec} ({self.mode}, float64, central differences, "
                 f"eps={self.eps:g}; {sizes})",
                 f"an entry passes when |analytic - numeric| <= {self.atol:g} + noise "
                 f"{self.noise:.1e} + {self.rtol:g} * max(|analytic|, |numeric|)", "",
                 fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row) for row in body]
        n_bad = sum(not r.ok for r in self.rows)
        lines.append("")
        lines.append("PASSED: all gradients match" if self.ok else
                     f"FAILED: {n_bad} of {len(self.rows)} arrays have wrong gradients")
        return "\n".join(lines)

    __str__ = table


def _module_for(spec, dims) -> types.ModuleType:
    from .api import compile_file, compile_source
    if isinstance(spec, types.ModuleType):
        return spec
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec
                                  and spec.endswith(".rnn")):
        return compile_file(spec, dims)
    return compile_source(spec, dims)


def random_problem(mod, dims=None, T=5, batch=3, seed=0, lengths=None):
    """Seeded random params, inputs, targets, initial states and upstream gradients (zero past
    each sequence's end when ``lengths`` is given: those steps have no defined value)."""
    rng = np.random.default_rng(seed)
    d = {**mod.DIMS, **(dims or {})}
    size = lambda expr: mod._size(expr, d)  # noqa: E731
    steps = per_axis(mod, T)
    main = next(iter(mod.AXES))
    if lengths is not None and not isinstance(lengths, dict):
        lengths = {main: lengths}

    def lead_of(info, per_step=True):
        """(T, B), (T_w, T_s, B) for steps w inside every step s, (B,) or (T_s, B) per sequence."""
        lead = (steps[info["within"]], batch) if info.get("within") else (batch,)
        return ((steps[info["axis"]],) if per_step and info.get("kind", "sequence") == "sequence"
                else ()) + lead
    params = mod.init_params(dims, seed=seed)
    params = {k: v + rng.normal(0.0, 0.1, v.shape) for k, v in params.items()}
    inputs = {}
    for n, info in mod.INPUTS.items():
        inputs[n] = rng.normal(0.0, 1.0, lead_of(info) + (size(info["size"]),))
    targets = {}
    for n, info in mod.TARGETS.items():
        lead = lead_of(info)
        if info["type"] == "class":
            targets[n] = rng.integers(0, size(info["size"]), lead)
        else:
            targets[n] = rng.normal(0.0, 1.0, lead + (size(info["size"]),))
    state0 = {}
    for n, info in mod.STATES.items():
        if info["init"] in ("zeros", "given"):
            state0[n] = rng.normal(0.0, 0.5, lead_of(info, False) + (size(info["size"]),))
    upstream = {}
    for n, info in mod.OUTPUTS.items():
        lead = lead_of(info)
        upstream[n] = rng.normal(0.0, 1.0, lead + (size(info["size"]),))
        if lengths and info["kind"] == "sequence" and info["axis"] in lengths:
            n_ax = np.asarray(lengths[info["axis"]])
            upstream[n] *= (np.arange(lead[0]).reshape((-1,) + (1,) * n_ax.ndim) < n_ax)[..., None]
    upstream["final"] = {n: rng.normal(0.0, 1.0, lead_of(info, False) + (size(info["size"]),))
                         for n, info in mod.STATES.items()}
    return params, inputs, targets or None, state0, upstream


def per_axis(mod, T) -> Dict[str, int]:
    """Steps per time axis: ``T`` is an int (every axis) or a dict {axis: steps}."""
    if isinstance(T, dict):
        unknown = set(T) - set(mod.AXES)
        if unknown:
            raise ValueError(f"T has unknown time axes {sorted(unknown)}; the axes are "
                             f"{list(mod.AXES)}")
        return {a: int(T.get(a, 5)) for a in mod.AXES}
    return {a: int(T) for a in mod.AXES}


def gradcheck(spec: Union[str, Path, types.ModuleType], dims: Optional[Dict[str, int]] = None,
              T: int = 5, batch: int = 3, seed: int = 0, directional: bool = False,
              directions: int = 3, eps: float = 1e-5, rtol: float = 1e-6, atol: float = 1e-8,
              lengths=None, mode: Optional[str] = None) -> GradcheckReport:
    """Check the analytic gradients of ``spec`` (a module, a .rnn path or spec text); with
    ``lengths`` (batch,), as a padded batch of sequences of those lengths.  ``T`` is the number
    of steps of every time axis, or a dict {axis: steps}.  ``mode`` ('teacher' or 'free') is
    passed to the forward of a spec with feedback()."""
    mod = _module_for(spec, dims)
    T = per_axis(mod, T)
    params, inputs, targets, state0, upstream = random_problem(mod, dims, T, batch, seed,
                                                               lengths)
    has_loss = bool(mod.TARGETS) and targets is not None

    def objective(p, x, s0) -> float:
        out, _ = mod.forward(p, x, targets, s0, T, lengths, **how)
        total = float(out["loss"]) if has_loss and "loss" in out else 0.0
        for n, g in upstream.items():
            if n == "final":
                for s, gs in g.items():
                    total += float(np.sum(gs * out["final"][s]))
            else:
                total += float(np.sum(g * out[n]))
        return total

    how = {"mode": mode} if mode else {}
    out, cache = mod.forward(params, inputs, targets, state0, T, lengths, **how)
    grads = mod.backward(params, cache, upstream)
    noise = 32 * np.finfo(np.float64).eps * max(abs(objective(params, inputs, state0)), 1.0) / eps
    tol = atol + noise
    groups = {"params": params, "inputs": inputs, "state0": state0}
    rows = []
    rng = np.random.default_rng(seed + 1)
    for group, arrays in groups.items():
        for name in arrays:
            a = arrays[name]
            analytic = np.asarray(grads[group][name], dtype=np.float64)
            if analytic.shape != a.shape:
                rows.append(Row(group, name, a.shape, 0, np.inf, np.inf, False))
                continue

            def J(delta):
                saved = arrays[name]
                arrays[name] = saved + delta
                try:
                    return objective(params, inputs, state0)
                finally:
                    arrays[name] = saved

            errs_abs, errs_rel, oks = [], [], []
            if directional:
                for _ in range(directions):
                    v = rng.normal(0.0, 1.0, a.shape)
                    v /= np.linalg.norm(v) or 1.0
                    num = (J(eps * v) - J(-eps * v)) / (2 * eps)
                    ana = float(np.sum(analytic * v))
                    errs_abs.append(abs(ana - num))
                    scale = max(abs(ana), abs(num))
                    errs_rel.append(abs(ana - num) / scale if scale > 0 else 0.0)
                    oks.append(abs(ana - num) <= tol + rtol * scale)
            else:
                for idx in np.ndindex(a.shape):
                    e = np.zeros(a.shape)
                    e[idx] = eps
                    num = (J(e) - J(-e)) / (2 * eps)
                    ana = float(analytic[idx])
                    errs_abs.append(abs(ana - num))
                    scale = max(abs(ana), abs(num))
                    errs_rel.append(abs(ana - num) / scale if scale > 0 else 0.0)
                    oks.append(abs(ana - num) <= tol + rtol * scale)
            rows.append(Row(group, name, a.shape, len(oks), max(errs_abs, default=0.0),
                            max(errs_rel, default=0.0), all(oks)))
    name = getattr(mod, "__name__", "spec")
    return GradcheckReport(name, rows, rtol, atol, eps,
                           "directional" if directional else "every entry", noise,
                           {**{k: v for k, v in {**mod.DIMS, **(dims or {})}.items()},
                            **{mod.AXES[a]: n for a, n in T.items()}, "batch": batch,
                            "seed": seed})
