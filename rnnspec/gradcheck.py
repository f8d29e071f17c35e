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
where ``noise = 32 * machine_epsilon * S / eps`` is the rounding error of the central difference
itself (``S``: the magnitude of the terms of J); an entry that fails is measured again at steps
eps/4 and 4*eps (the tolerance policy is documented at :func:`gradcheck`); the report prints the
noise.  Memory and work are bounded up front (:func:`estimate_bytes`, :func:`plan_work`);
:func:`compile_check` is the bounded check ``rnnspec compile`` runs.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .surrogate import chunked_forward, windowed_forward


@dataclass
class Row:
    group: str  # 'params' | 'inputs' | 'state0'
    name: str
    shape: tuple
    checked: int
    max_abs: float
    max_rel: float
    ok: bool
    total: int = 0  # the array's entries (``checked`` may be fewer: a random subset)
    directions: int = 0  # random directions among the ``checked``
    sampled: bool = False  # a random subset of the entries (the work bound), not every one
    worst_index: object = None  # the worst entry: an index tuple or "direction k"
    worst_analytic: float = 0.0
    worst_numeric: float = 0.0
    worst_numeric_small: Optional[float] = None  # the same at eps / 4 (when re-measured)
    nonfinite: Optional[float] = None  # the step at which the objective was not finite
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.group}.{self.name}"

    @property
    def checked_text(self) -> str:
        if not self.sampled:
            return str(self.checked)
        return f"{self.checked - self.directions} of {self.total} +{self.directions} dir"

    def cause(self) -> Optional[str]:
        """From the worst entry measured at eps and at eps / 4: 'gradient' when the two numeric
        values agree with each other far better than with the analytic one (the numeric
        derivative is sound: the gradient is off), 'step' when the error shrinks with the step
        (truncation: the step is off), None when not re-measured or unclear."""
        small = self.worst_numeric_small
        if small is None or not np.isfinite(small):
            return None
        err = abs(self.worst_analytic - self.worst_numeric)
        if abs(self.worst_numeric - small) <= 0.1 * err:
            return "gradient"
        if abs(self.worst_analytic - small) < 0.5 * err:
            return "step"
        return None


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
    nonfinite: Optional[str] = None  # where values stopped being finite (then nothing is judged)

    @property
    def ok(self) -> bool:
        return self.nonfinite is None and all(r.ok for r in self.rows)

    @property
    def step_suspect(self) -> bool:
        """A failure the finite-difference step more likely explains than wrong gradients: the
        worst errors shrink with the step, or every array (of several) fails."""
        bad = [r for r in self.rows if not r.ok]
        if not bad or self.nonfinite:
            return False
        causes = [r.cause() for r in bad]
        if "gradient" in causes:
            return False
        return "step" in causes or (len(bad) == len(self.rows) > 1)

    def diagnosis(self) -> List[str]:
        """Lines explaining a failure: the worst entry of each failing array, and the likely
        cause."""
        if self.nonfinite:
            return [f"NOT FINITE: {self.nonfinite}; no gradient was judged.",
                    f"  {NONFINITE_HINT}."]
        lines = []
        for r in self.rows:
            if r.ok:
                continue
            if r.note:
                lines.append(f"  {r.label}: {r.note}")
                continue
            small = "" if r.worst_numeric_small is None else \
                f", {r.worst_numeric_small:.10g} (eps={self.eps / 4:g})"
            lines.append(f"  {r.label}{_index_text(r.worst_index)}: analytic "
                         f"{r.worst_analytic:.10g}, numeric {r.worst_numeric:.10g} "
                         f"(eps={self.eps:g}){small}")
        bad = [r for r in self.rows if not r.ok]
        wrong = [r.label for r in bad if r.cause() == "gradient"]
        if wrong:
            lines.append(f"the numeric derivative agrees with itself at eps and eps/4 but not "
                         f"with the analytic gradient ({', '.join(wrong[:3])}"
                         f"{', ...' if len(wrong) > 3 else ''}): the gradients are wrong")
        elif any(r.cause() == "step" for r in bad):
            lines.append("the error shrinks as the step shrinks: the finite-difference step "
                         "(its truncation error), not the gradients, is the likely cause; "
                         f"try a smaller --eps (e.g. {self.eps / 100:g})")
        elif len(bad) == len(self.rows) > 1:
            lines.append("every array fails together: the step size (--eps) or the tolerance "
                         "not suiting this spec's values is the likely cause, rather than "
                         "wrong gradients; compare with --eps "
                         f"{self.eps / 100:g} and {self.eps * 100:g}")
        return lines

    def table(self) -> str:
        head = ("array", "shape", "checked", "max abs err", "max rel err", "ok")
        body = [(r.label, "×".join(map(str, r.shape)) or "scalar", r.checked_text,
                 f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", "ok" if r.ok else "FAIL")
                for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        lines = [f"gradcheck {self.spec} ({self.mode}, float64, central differences, "
                 f"eps={self.eps:g}; {sizes})",
                 f"an entry passes when |analytic - numeric| <= {self.atol:g} + noise "
                 f"{self.noise:.1e} + {self.rtol:g} * max(|analytic|, |numeric|) at step eps, "
                 f"eps/4 or 4*eps, or extrapolated from eps and eps/4", "",
                 fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row) for row in body]
        n_bad = sum(not r.ok for r in self.rows)
        lines.append("")
        if self.nonfinite:
            if not self.rows:  # (nothing was compared: no table)
                lines = lines[:1] + [""]
            lines += self.diagnosis()
        elif self.ok:
            lines.append("PASSED: all gradients match")
        else:
            lines.append(f"FAILED: {n_bad} of {len(self.rows)} arrays do not match; the worst "
                         f"entries:")
            lines += self.diagnosis()
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
        """(T, B), (T_w, T_s, B) for steps w inside every step s, (B,) or (T_s, B) per sequence,
        () for a value of parameters only (kind 'shared')."""
        if info.get("kind") == "shared":
            return ()
        lead = (steps[info["within"]], batch) if info.get("within") else (batch,)
        return ((steps[info["axis"]],) if per_step and info.get("kind", "sequence") == "sequence"
                else ()) + lead
    params = mod.init_params(dims, seed=seed)
    params = {k: v + rng.normal(0.0, 0.1, v.shape) for k, v in params.items()}
    inputs = {}
    for n, info in mod.INPUTS.items():
        if info.get("type") == "class":  # class indices: no gradient, not checked
            inputs[n] = rng.integers(0, size(info["size"]), lead_of(info))
        else:
            inputs[n] = rng.normal(0.0, 1.0, lead_of(info) + (size(info["size"]),))
    targets = {}
    for n, info in mod.TARGETS.items():
        lead = lead_of(info)
        if info["type"] == "class":
            targets[n] = rng.integers(0, size(info["size"]), lead)
        else:
            targets[n] = rng.normal(0.0, 1.0, lead + (size(info["size"]),))
    def state_lead(info):
        """(d,) + lead_of(info, False) for a state that carries d > 1 steps."""
        d = info.get("steps", 1)
        return ((d,) if d > 1 else ()) + lead_of(info, False)
    state0 = {}
    for n, info in mod.STATES.items():
        if info["init"] in ("zeros", "given"):
            state0[n] = rng.normal(0.0, 0.5, state_lead(info) + (size(info["size"]),))
    upstream = {}
    for n, info in mod.OUTPUTS.items():
        lead = lead_of(info)
        upstream[n] = rng.normal(0.0, 1.0, lead + (size(info["size"]),))
        if lengths and info["kind"] == "sequence" and info["axis"] in lengths:
            n_ax = np.asarray(lengths[info["axis"]])
            upstream[n] *= (np.arange(lead[0]).reshape((-1,) + (1,) * n_ax.ndim) < n_ax)[..., None]
    upstream["final"] = {n: rng.normal(0.0, 1.0, state_lead(info) + (size(info["size"]),))
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


def _check_options(T, batch, directions, eps, rtol, atol, seed) -> None:
    """ValueError for an option no check can run with (NaN, a step of 0, a negative tolerance)."""
    def number(x):
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
    for name, value in (("eps", eps),):
        if not number(value) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not number(value) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number 0 or more, got {value!r}")
    for name, value in (("batch", batch), ("directions", directions)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer 0 or more, got {seed!r}")
    for n in (T.values() if isinstance(T, dict) else [T]):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"T must be a positive integer (or a dict of them), got {n!r}")


class CheckTooLarge(ValueError):
    """The check would need more memory or work than allowed (raised before it starts)."""


MAX_BYTES = 2 * 1024 ** 3  # a check that would hold more than this is refused up front
CACHE_FACTOR = 6  # the forward cache, the gradients and the random problem: ~6 copies of the
                  # inputs, outputs and states (measured on specs/: 2-5)
COMPILE_WORK = 500_000  # the automatic check of `rnnspec compile`: ~2 s (see :func:`plan_work`)
CLI_WORK = 5_000_000  # `rnnspec gradcheck`: ~20 s at most


def estimate_bytes(mod, dims, T, batch) -> int:
    """About the memory a check at these sizes holds: every input, target, named output and
    state for every step (the product of the steps of all axes, an upper bound for nested
    axes) and batch row, :data:`CACHE_FACTOR` times, plus the parameters (float64)."""
    d = {**mod.DIMS, **(dims or {})}
    steps = _steps_run(mod, T)
    rows = 0
    for table in (mod.INPUTS, mod.TARGETS, mod.OUTPUTS, mod.STATES):
        for info in table.values():
            rows += 1 if info.get("type") == "class" else mod._size(info["size"], d)
    params = sum(int(np.prod([mod._size(e, d) for e in shape])) for shape in mod.PARAMS.values())
    return 8 * (CACHE_FACTOR * steps * batch * rows + 3 * params)


def evaluation_cost(mod, T) -> int:
    """The work of one evaluation of the objective, in array-steps: the steps it runs (the
    product over the axes, plus 10 for the work outside the time loops) times the arrays each
    step computes (parameters, named outputs and states: a proxy for its operations).  One
    array-step takes roughly 3-6 microseconds at the small sizes of the automatic check."""
    steps = _steps_run(mod, T)
    return (steps + 10) * (len(mod.PARAMS) + len(mod.OUTPUTS) + len(mod.STATES) + 1)


def _steps_run(mod, T) -> int:
    """The steps one evaluation runs: the product of the steps of all axes (an upper bound for
    nested axes), plus the most past steps a state keeps before step 1 (h[t-65536]: 65536),
    which every evaluation fills and reads like steps of its own."""
    steps = 1
    for n in per_axis(mod, T).values():
        steps *= n
    return steps + max([info.get("steps", 1) for info in mod.STATES.values()] + [0])


def plan_work(sizes: List[int], cost: int, max_work: Optional[int]):
    """How many entries of each array to check so that the check's objective evaluations (two
    per entry or direction, three for the base forward and backward) times ``cost`` stay within
    ``max_work``: every entry of every array when that fits; otherwise the same largest number
    ``c`` of random entries of every larger array, plus one random direction through all of its
    entries (so that every entry takes part).  Returns ``c`` (None: every entry).
    :class:`CheckTooLarge` when even one direction per array does not fit."""
    if max_work is None:
        return None
    evals = max_work // max(cost, 1) - 3
    if 2 * sum(sizes) <= evals:
        return None
    need = lambda c: sum(2 * min(n, c) + 2 * (n > c) for n in sizes)  # noqa: E731
    if need(0) > evals:
        raise CheckTooLarge(
            f"the gradient check would need at least {need(0) + 3} evaluations of "
            f"{cost:,} array-steps each ({(need(0) + 3) * cost:,} in all, more than the bound "
            f"of {max_work:,})")
    lo, hi = 0, max(sizes)
    while lo < hi:  # the largest c with need(c) <= evals
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need(mid) <= evals else (lo, mid - 1)
    return lo


def _first_nonfinite(items) -> Optional[str]:
    """'name' (and where) of the first array among ``items`` (label, array) that is not finite."""
    for label, a in items:
        a = np.asarray(a, dtype=np.float64) if not isinstance(a, dict) else None
        if a is None:
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            what = "nan" if np.isnan(a[idx]) else "inf"
            return f"{label} is {what}" + (f" at index {list(idx)}" if idx else "")
    return None


NONFINITE_HINT = ("the spec's values leave float64's range or are undefined at the check's "
                  "random point (inputs and initial states drawn from N(0, 1) and N(0, 0.5), "
                  "parameters from their initializers plus N(0, 0.1)): log or sqrt of a "
                  "negative or zero value, a division by a zero constant, exp of a large "
                  "value?  This is about the spec's numeric ranges, not about its gradients")


def gradcheck(spec: Union[str, Path, types.ModuleType], dims: Optional[Dict[str, int]] = None,
              T: int = 5, batch: int = 3, seed: int = 0, directional: bool = False,
              directions: int = 3, eps: float = 1e-5, rtol: float = 1e-6, atol: float = 1e-8,
              lengths=None, mode: Optional[str] = None, max_work: Optional[int] = None,
              max_bytes: Optional[int] = MAX_BYTES, truncate=None) -> GradcheckReport:
    """Check the analytic gradients of ``spec`` (a module, a .rnn path or spec text); with
    ``lengths`` (batch,), as a padded batch of sequences of those lengths.  ``T`` is the number
    of steps of every time axis, or a dict {axis: steps}.  ``mode`` ('teacher' or 'free') is
    passed to the forward of a spec with feedback().

    Bounds, checked before any work (:class:`CheckTooLarge`, a ValueError, with the numbers):
    the memory the check would hold (:func:`estimate_bytes`, at most ``max_bytes``), and, with
    ``max_work``, the objective evaluations it runs (:func:`plan_work`): past it, large arrays
    are checked at a random subset of entries plus one random direction, and the report says
    so ("12 of 2418 +1 dir").

    Tolerance policy.  The central difference ``D(h) = (J(x + h) - J(x - h)) / 2h`` has two
    errors: rounding, about ``noise(h) = 32 * machine_epsilon * S / h`` where ``S`` (at least
    1) is the magnitude of what the objective adds up (``|loss| + sum |G * v|``, not ``|J|``,
    whose terms may cancel; it grows with T and the batch), and truncation, which shrinks like
    ``h**2``.  An entry passes when ``|analytic - D(h)| <= atol + noise(h) + rtol *
    max(|analytic|, |D(h)|)`` for ``h = eps``; an entry that does not is measured again at
    ``eps / 4`` (less truncation) and ``4 * eps`` (less rounding) and passes if it agrees at
    either, or with the Richardson extrapolation ``(16 D(eps/4) - D(eps)) / 15`` (whose
    truncation error shrinks like ``h**4``; tolerance ``65/60 noise(eps/4)``), so that a
    mismatch at the numeric derivative's own noise level is not called wrong.
    A failing report names, for each failing array, its worst entry with the analytic and
    numeric values, and says when the step rather than the gradients is the likely cause (the
    error shrinks with the step, or every array fails); values that are not finite (NaN, inf)
    are reported as such, with the first array they appear in, not as a mismatch.
    ``truncate=k`` or ``(k1, k2)``: ``backward(..., truncate=(k1, k2))`` against the objective
    it computes exactly (:func:`truncated_objective`)."""
    _check_options(T, batch, directions, eps, rtol, atol, seed)
    mod = _module_for(spec, dims)
    T = per_axis(mod, T)
    if max_bytes is not None:
        _check_memory(mod, dims, T, batch, max_bytes)
    params, inputs, targets, state0, upstream = random_problem(mod, dims, T, batch, seed,
                                                               lengths)
    how = {"mode": mode} if mode else {}
    objective = _objective(mod, targets, T, lengths, how, upstream) if truncate is None else \
        truncated_objective(mod, params, inputs, targets, state0, T, lengths, mode, upstream,
                            truncate)
    k1, k2 = _truncate_pair(truncate) if truncate is not None else (None, None)
    cut = {} if truncate is None else {"truncate": (k1, k2)}
    sizes = _sizes(mod, dims, T, batch, seed)
    name = getattr(mod, "__name__", "spec")
    groups = {"params": params, "inputs": inputs, "state0": state0}
    arrays = [(g, n) for g, d in groups.items() for n in d  # (class inputs have no gradient)
              if g != "inputs" or mod.INPUTS[n].get("type") != "class"]
    cap = plan_work([groups[g][n].size if not directional else directions
                     for g, n in arrays], evaluation_cost(mod, T), max_work)
    mode_text = "directional" if directional else "every entry" if cap is None else \
        f"at most {cap} random entries and 1 direction per array"
    if truncate is not None:
        mode_text += f"; truncate=({k1}, {k2}) against the run in " + (
            "chunks" if k1 == k2 else f"windows of {k2} steps")
    report = GradcheckReport(name, [], rtol, atol, eps, mode_text, 0.0, sizes)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        out, cache = mod.forward(params, inputs, targets, state0, T, lengths, **how)
        grads, report.nonfinite = _gradients_at_point(mod, params, out, cache, upstream, arrays,
                                                      cut)
        if report.nonfinite is not None:
            return report
        J0, S = objective(params, inputs, state0, magnitude=True)
        noise_at = lambda h: 32 * np.finfo(np.float64).eps * max(S, 1.0) / h  # noqa: E731
        report.noise = noise_at(eps)
        rng = np.random.default_rng(seed + 1)
        retries = [0, 2 * sum(groups[g][n].size for g, n in arrays) if cap is None else
                   2 * (cap + 1) * len(arrays)]  # extra evaluations allowed for re-measuring
        for group, key in arrays:
            report.rows.append(_check_array(group, key, groups[group], grads, objective,
                                            (params, inputs, state0), eps, rtol, atol,
                                            noise_at, rng, directional, directions, cap,
                                            retries))
        bad = next((r for r in report.rows if r.nonfinite), None)
        if bad is not None:
            report.nonfinite = (f"the objective is not finite when {bad.label}"
                                f"{_index_text(bad.worst_index)} moves by {bad.nonfinite:g}")
    return report


def _check_memory(mod, dims, T, batch, max_bytes) -> None:
    """Refuse (CheckTooLarge) a check that would hold more than ``max_bytes``."""
    need = estimate_bytes(mod, dims, T, batch)
    if need > max_bytes:
        raise CheckTooLarge(
            f"the gradient check at {_sizes_text(mod, dims, T, batch)} would need about "
            f"{need / 1e9:.1f} GB of memory (more than {max_bytes / 1e9:.1f} GB): use fewer "
            f"steps, a smaller batch or smaller dims")


def _objective(mod, targets, T, lengths, how, upstream):
    """The objective J(params, inputs, state0) = loss + sum <G, v> over the random upstream
    gradients G; with ``magnitude``, (J, S), S the sum of the magnitudes of its terms."""
    has_loss = bool(mod.TARGETS) and targets is not None

    def objective(p, x, s0, magnitude=False) -> float:
        out, _ = mod.forward(p, x, targets, s0, T, lengths, **how)
        return _J(out, has_loss, upstream, magnitude)
    return objective


def _J(out, has_loss, upstream, magnitude):
    """loss + sum <G, v> of a run's outputs; with ``magnitude``, (J, the sum of |its terms|)."""
    total = float(out["loss"]) if has_loss and "loss" in out else 0.0
    size = abs(total)
    for n, g in upstream.items():
        pairs = ([(gs, out["final"][s]) for s, gs in g.items()] if n == "final"
                 else [(g, out[n])])
        for gs, v in pairs:
            total += float(np.sum(gs * v))
            size += float(np.sum(np.abs(gs * v)))
    return (total, size) if magnitude else total


class NoChunkedObjective(ValueError):
    """The network run in chunks is not the network run whole: a truncated gradient has no
    chunked objective to be checked against."""


def _truncate_pair(truncate) -> Tuple[int, int]:
    """truncate=k or (k1, k2) as (k1, k2), checked as backward checks it (a ValueError)."""
    from .runtime.truncation import _truncate_steps
    return _truncate_steps(truncate if isinstance(truncate, (tuple, list))
                           else (truncate, truncate))


def truncated_objective(mod, params, inputs, targets, state0, T, lengths, mode, upstream, k):
    """The objective of a truncated check: J of the chunked run (``k``: chunks of k steps, each
    from the states the run reaches at the check's point, held constant), or for ``k = (k1,
    k2)``, k1 < k2, of the blocks run on their windows (:func:`_windowed_objective`).  A
    ValueError when the spec cannot be truncated, or when the chunked run is not the same
    network as the full run (feedback of targets across a chunk's start, attention over
    earlier chunks' inputs)."""
    refused = getattr(mod, "TRUNCATE", None)
    if refused is not None:
        raise ValueError(refused)
    k1, k = _truncate_pair(k)
    steps = T[next(iter(mod.AXES))]
    if isinstance(lengths, dict):
        lengths = lengths.get(next(iter(mod.AXES)))
    how = {"mode": mode} if mode else {}
    out, _ = mod.forward(params, inputs, targets, state0, T, lengths, **how)
    try:
        whole, held = chunked_forward(mod, params, inputs, targets, state0, steps, k, lengths,
                                      mode=mode)
    except ValueError as exc:  # (a chunk too short for what the spec reads)
        raise NoChunkedObjective(f"this network cannot run in chunks of {k} steps: {exc} (it "
                                 f"reads chosen steps, e.g. h[end-2] or a loss at t = ...)"
                                 ) from None
    if "loss" in out and not np.isclose(out["loss"], whole["loss"], rtol=1e-10, atol=1e-12):
        raise NoChunkedObjective(f"this network run in chunks of {k} steps is not the network run whole "
                         f"(its loss is {whole['loss']:.12g}, not {float(out['loss']):.12g}): "
                         f"something crosses a chunk's start other than the states (targets fed "
                         f"back, attention over earlier steps) or a mean loss divides by the "
                         f"steps, so no chunked objective exists to check the truncated gradient "
                         f"against")
    has_loss = bool(mod.TARGETS) and targets is not None
    if k1 < k < steps:
        return _windowed_objective(mod, params, inputs, targets, state0, steps, lengths, mode,
                                   upstream, (k1, k), has_loss)

    def objective(p, x, s0, magnitude=False) -> float:
        run, _ = chunked_forward(mod, p, x, targets, s0, steps, k, lengths, held, mode)
        return _J(run, has_loss, upstream, magnitude)
    return objective


def _windowed_objective(mod, params, inputs, targets, state0, T, lengths, mode, upstream, ks,
                        has_loss):
    """J of TBPTT(k1, k2)'s objective: every block of k1 steps on the window of its last k2
    steps, from the states of the run at the check's point (every step's, held constant)."""
    per_sequence = [n for table in (mod.TARGETS if has_loss else {}, mod.OUTPUTS)
                    for n, info in table.items() if info["kind"] != "sequence"]
    if per_sequence:
        raise NoChunkedObjective(f"TBPTT{ks} with k1 < k2 splits the objective into blocks "
                                 f"of steps, but {per_sequence[0]!r} is a value per sequence")
    _, held = chunked_forward(mod, params, inputs, targets, state0, T, 1, lengths, mode=mode)

    def objective(p, x, s0, magnitude=False) -> float:
        run = windowed_forward(mod, p, x, targets, s0, T, *ks, lengths, held, mode)
        return _J(run, has_loss, upstream, magnitude)
    return objective


def _gradients_at_point(mod, params, out, cache, upstream, arrays, cut=None):
    """(backward's gradients, None) at the check's random point; (None, where) when a value of
    the forward pass or a gradient there is not finite (NaN, inf): the report's text for it."""
    where = _first_nonfinite([(f"outputs[{k!r}]", out[k]) for k in mod.OUTPUTS if k in out]
                             + [("the loss", out[k]) for k in ("loss",) if k in out]
                             + [(f"outputs['final'][{k!r}]", v)
                                for k, v in out.get("final", {}).items()])
    if where is not None:
        return None, f"{where} in the forward pass at the check's random point"
    grads = mod.backward(params, cache, upstream, **(cut or {}))
    where = _first_nonfinite([(f"the gradient of {g}[{n!r}]", grads[g][n])
                              for g, n in arrays if n in grads.get(g, {})])
    if where is not None:
        return None, f"{where} at the check's random point"
    return grads, None


def _check_array(group, key, table, grads, objective, point, eps, rtol, atol, noise_at, rng,
                 directional, directions, cap, retries) -> Row:
    """The row of one array: its entries (or directions) compared as :func:`gradcheck`
    documents; ``retries`` [used, allowed] bounds the re-measurements at other steps."""
    a = table[key]
    analytic = np.asarray(grads[group][key], dtype=np.float64)
    if analytic.shape != a.shape:
        return Row(group, key, a.shape, 0, np.inf, np.inf, False, total=a.size,
                   worst_index="shape", worst_analytic=np.nan, worst_numeric=np.nan,
                   note=f"backward returned shape {analytic.shape}")

    def D(v, h) -> float:
        saved = table[key]
        try:
            table[key] = saved + h * v
            up = objective(*point)
            table[key] = saved - h * v
            down = objective(*point)
        finally:
            table[key] = saved
        return (up - down) / (2 * h)

    probes = []  # (label, direction)
    if directional:
        count, dirs = 0, directions
    elif cap is None or a.size <= cap:
        count, dirs = a.size, 0
    else:
        count, dirs = cap, 1
    if count == a.size:
        flat = range(a.size)
    else:
        flat = sorted(rng.choice(a.size, size=count, replace=False).tolist())
    for i in flat:
        idx = np.unravel_index(i, a.shape) if a.shape else ()
        e = np.zeros(a.shape)
        e[idx] = 1.0
        probes.append((tuple(int(j) for j in idx), e, float(analytic[idx])))
    for k in range(dirs):
        v = rng.normal(0.0, 1.0, a.shape)
        v /= np.linalg.norm(v) or 1.0
        probes.append((f"direction {k + 1}", v, float(np.sum(analytic * v))))
    row = Row(group, key, a.shape, len(probes), 0.0, 0.0, True, total=a.size,
              directions=dirs, sampled=count < a.size and not directional)

    def agrees(ana, num, h, noise_factor=1.0):
        return abs(ana - num) <= (atol + noise_factor * noise_at(h)
                                  + rtol * max(abs(ana), abs(num)))

    worst = -1.0
    for label, v, ana in probes:
        num = D(v, eps)
        if not np.isfinite(num):
            row.ok = False
            row.max_abs = row.max_rel = np.inf
            row.nonfinite = eps
            row.worst_index, row.worst_analytic, row.worst_numeric = label, ana, num
            break
        ok = agrees(ana, num, eps)
        small = None
        if not ok and retries[0] < retries[1]:
            retries[0] += 4
            small = D(v, eps / 4)
            # Richardson: the h**2 truncation terms of D(eps) and D(eps/4) cancel, leaving h**4;
            # its rounding is (16 noise(eps/4) + noise(eps)) / 15 = 65/60 noise(eps/4)
            extrapolated = (16 * small - num) / 15
            ok = (agrees(ana, small, eps / 4) or agrees(ana, extrapolated, eps / 4, 65 / 60)
                  or agrees(ana, D(v, eps * 4), eps * 4))
        err = abs(ana - num)
        scale = max(abs(ana), abs(num))
        row.max_abs = max(row.max_abs, err)
        row.max_rel = max(row.max_rel, err / scale if scale > 0 else 0.0)
        # the worst entry: the failing one farthest outside its tolerance (else the largest error)
        excess = (not ok) * 1e300 + err / (atol + noise_at(eps) + rtol * scale or 1.0)
        if excess > worst:
            worst = excess
            row.worst_index, row.worst_analytic, row.worst_numeric = label, ana, num
            row.worst_numeric_small = small
        row.ok = row.ok and ok
    return row


def _index_text(index) -> str:
    if isinstance(index, tuple):
        return "[" + ", ".join(map(str, index)) + "]"
    return f" ({index})" if index else ""


def _sizes(mod, dims, T, batch, seed) -> Dict[str, int]:
    return {**{k: v for k, v in {**mod.DIMS, **(dims or {})}.items()},
            **{mod.AXES[a]: n for a, n in T.items()}, "batch": batch, "seed": seed}


def _sizes_text(mod, dims, T, batch) -> str:
    d = _sizes(mod, dims, T, batch, 0)
    d.pop("seed")
    return ", ".join(f"{k}={v}" for k, v in d.items())


CHECK_DIM_CAP = 4  # the automatic check of `rnnspec compile` runs at dims capped to this size


def compile_dims(dims: Dict[str, int]) -> Dict[str, int]:
    """The dims :func:`compile_check` runs at: each of ``dims`` capped at :data:`CHECK_DIM_CAP`
    (generate the module to check at these)."""
    return {k: min(v, CHECK_DIM_CAP) for k, v in dims.items()}


def compile_check(mod, dims=None) -> GradcheckReport:
    """The automatic check of ``rnnspec compile``: float64, batch 2, seed 0, every time axis at
    2 more steps than the spec needs (at least 4), work bounded by :data:`COMPILE_WORK`
    (``dims``: the small dims the module was generated with)."""
    return gradcheck(mod, dims, T=_compile_steps(mod), batch=2, seed=0, max_work=COMPILE_WORK)


def _compile_steps(mod) -> Dict[str, int]:
    """compile's steps: every time axis 2 more than the spec needs, at least 4."""
    return {axis: max(4, mod.MIN_T[key] + 2) for axis, key in mod.AXES.items()}


def rtrl_agreement(mod) -> float:
    """The largest difference, relative to each array's largest entry, between the generated
    ``rtrl`` of ``mod`` (compiled with ``rtrl=True``) and its BPTT (``loss_and_grad``), on
    compile_check's problem with a padded batch (what ``rnnspec compile --rtrl`` reports)."""
    steps = _compile_steps(mod)
    T = next(iter(steps.values()))
    params, inputs, targets, state0, _ = random_problem(mod, None, steps, 2, 0, [T, T - 1])
    loss, grads = mod.rtrl(params, inputs, targets, state0, [T, T - 1])
    want_loss, want = mod.loss_and_grad(params, inputs, targets, state0, None, [T, T - 1])
    worst = abs(loss - want_loss) / max(abs(want_loss), 1e-300)
    for name, v in want["params"].items():
        worst = max(worst, float(np.abs(grads["params"][name] - v).max() /
                                 max(np.abs(v).max(), 1e-300)))
    return worst
