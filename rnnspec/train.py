"""Training a generated module: optimizer steps over batches (or chunks of them), per-token
losses, clipping, validation, a run directory, exact resume (what ``rnnspec train`` runs).

In: a spec (a path or a generated module), training data (a :class:`rnnspec.data.Dataset`, a
``(train, validation)`` pair of them, or a :class:`rnnspec.data.TextData`) and the settings.
Out: :func:`train` returns a :class:`TrainResult`: the trained parameters, the optimizer, the
:class:`History` and, with ``out=``, a run directory holding ``params.npz`` (``dict(np.load(
...))`` is the module's params), ``optimizer.npz``, ``carry.npz`` (where the run stands: the
step and the states carried between chunks), ``history.npz``/``history.csv``, ``config.json``,
``vocab.json`` for a text and ``curves.png`` when matplotlib is installed.

Losses per token: a generated module's loss is a sum over sequences (and, unless the spec says
``mean``, over steps).  It is divided by the number of (step, sequence) pairs it counts, from the
module's LOSSES table -- each sequence's steps (``T * B``, or ``sum(lengths)`` in a padded
batch) for a per-step sum, the chosen steps times B for a sum at chosen steps, the number of
sequences B for a ``mean`` over each sequence's steps or a loss per sequence (a spec that mixes
them is divided by the first that applies, in that order) -- and the gradient likewise: the
optimizer follows the gradient of the per-token mean, so the learning rate does not depend on
B or T.  The module still computes the sum; the loss logged is ``sum / count``.

Steps: without truncation one step is one batch.  With ``truncate=k`` every batch is cut into
chunks of k steps, one optimizer step each: the first chunk starts from the spec's initial
states, every next one from the final states of the chunk before (``outputs['final']``, carried
as ``state0``, no gradient flowing back into the earlier chunk: stateful truncated BPTT).  A text
is always run this way: B parallel streams (``TextData.chunks``) cut into chunks of ``truncate``
steps (default 50), the states reset at the start of each epoch.  Step s lies in epoch ``s //
steps_per_epoch``; the epoch's batch order is drawn from ``(seed, epoch)``, so a run resumed at
step s sees exactly the batches it would have seen (and, saved in ``carry.npz``, the carried
states): resuming gives the same parameters and history, bit for bit, as a run never stopped.

On a Dask cluster (``dask=ADDRESS`` or ``workers=N``, :mod:`rnnspec.cluster`): each step's
batch is split across the workers, which return their shards' sums; the client adds them and
divides by the whole unit's count, then clips, steps the optimizer, validates and logs exactly
as above (the single-process step up to rounding).  States carried between chunks stay on the
workers; a checkpoint gathers them into ``carry.npz``, so a run can be resumed on a cluster or
in one process, either way.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import linecache
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import __version__
from .clip import clip_grads, global_norm
from .data import Dataset, TextData
from .optim import Optimizer, load_optimizer, make_optimizer

RUN_FORMAT = "rnnspec-run"
TEXT_CHUNK = 50  # the chunk length of a text without truncate=
FILES = ("config.json", "params.npz", "optimizer.npz", "carry.npz", "history.npz",
         "history.csv")


class TrainingDiverged(RuntimeError):
    """NaN or inf in a loss, a gradient or updated parameters.  ``step``: the step (from 1);
    ``array``: 'loss', 'gradient of NAME' or 'parameter NAME'; ``params``: the last good
    parameters (saved in the run directory, when there is one)."""

    def __init__(self, message: str, step: int, array: str, params: dict):
        super().__init__(message)
        self.step, self.array, self.params = step, array, params


@dataclass
class History:
    """One row per optimizer step: the step (from 1), the per-token training loss, the
    validation loss (NaN at steps without a validation) and the gradient norm before
    clipping."""
    step: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    valid_loss: List[float] = field(default_factory=list)
    grad_norm: List[float] = field(default_factory=list)

    COLUMNS = ("step", "loss", "valid_loss", "grad_norm")

    def add(self, step: int, loss: float, norm: float) -> None:
        self.step.append(step)
        self.loss.append(loss)
        self.valid_loss.append(math.nan)
        self.grad_norm.append(norm)

    def arrays(self) -> Dict[str, np.ndarray]:
        return {"step": np.array(self.step, dtype=np.int64),
                **{c: np.array(getattr(self, c), dtype=np.float64) for c in self.COLUMNS[1:]}}

    @classmethod
    def from_arrays(cls, arrays) -> "History":
        return cls(*[[x.item() for x in np.asarray(arrays[c])] for c in cls.COLUMNS])

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.COLUMNS)
        for row in zip(*(getattr(self, c) for c in self.COLUMNS)):
            w.writerow([row[0]] + ["" if math.isnan(v) else repr(v) for v in row[1:]])
        return buf.getvalue()


@dataclass
class TrainResult:
    params: Dict[str, np.ndarray]
    optimizer: Optimizer
    history: History
    step: int  # steps taken in all (a resumed run counts the earlier ones)
    run_dir: Optional[Path]
    module: object


@dataclass
class Unit:
    """What one optimizer step trains on: a batch, or a chunk of one."""
    inputs: Dict[str, np.ndarray]
    targets: Dict[str, np.ndarray]
    lengths: Optional[np.ndarray]
    T: int
    B: int
    reset: bool  # start from the spec's initial states (else: the carried ones)


# ---- the data as optimizer steps

class Plan:
    """The training data as a sequence of :class:`Unit` s per epoch (see the module's
    docstring), and the validation data."""

    def __init__(self, module, data, batch: int, truncate: Optional[int], seed: int):
        self.module, self.batch, self.truncate, self.seed = module, batch, truncate, seed
        self.text = isinstance(data, TextData)
        if self.text:
            self.train, self.valid = data, data
            self.k = truncate or TEXT_CHUNK
            L = (len(data.train) - 1) // batch
            if L < 1:
                raise ValueError(f"{data.name}: {len(data.train)} training tokens cannot feed "
                                 f"{batch} parallel streams; give a smaller batch")
            self.per_epoch = -(-L // self.k)
        else:
            self.train, self.valid = data if isinstance(data, tuple) else (data, None)
            self.per_epoch = len(self.train) // batch * self._chunks_per_batch()
            if self.per_epoch < 1:
                raise ValueError(f"{self.train.name}: {len(self.train)} training sequences "
                                 f"hold no batch of {batch}; give a smaller batch")
        self.per_step = any(t["kind"] == "sequence" for t in module.TARGETS.values())

    def _chunks_per_batch(self) -> int:
        if self.truncate is None:
            return 1
        if self.train.lengths is not None:
            raise ValueError("truncate= cuts sequences into chunks of equal steps; these "
                             "sequences have their own lengths (padded): train them whole")
        static = [n for n in self.train.targets if self.train.fields[n].kind != "sequence"]
        if static:
            raise ValueError(f"truncate= gives every chunk its own loss; the target "
                             f"{static[0]!r} is one per sequence: train without truncation")
        T = next(self.train.arrays[n].shape[0] for n in self.train.inputs + self.train.targets
                 if self.train.fields[n].kind == "sequence")  # (not a per-sequence input's N)
        return -(-T // self.truncate)

    def units(self, epoch: int) -> Iterator[Unit]:
        """The steps of ``epoch``, in order."""
        if self.text:
            for i, b in enumerate(self.train.chunks(self.batch, self.k)):
                yield self._unit(b, i == 0)
            return
        for b in self.train.batches(self.batch, seed=self.seed, epoch=epoch):
            if self.truncate is None:
                yield self._unit(b, True)
                continue
            T = next(iter(b.targets.values())).shape[0]
            seq = {n for n, info in self.module.INPUTS.items() if info["kind"] == "sequence"}
            for i, start in enumerate(range(0, T, self.truncate)):
                cut = slice(start, start + self.truncate)
                yield Unit({n: a[cut] if n in seq else a  # (a per-sequence input: whole)
                            for n, a in b.inputs_for(self.module).items()},
                           {n: a[cut] for n, a in b.targets.items()}, None,
                           len(range(T)[cut]), b.size, i == 0)

    def _unit(self, b, reset: bool) -> Unit:
        T = next(a.shape[0] for table, arrays in ((self.module.TARGETS, b.targets),
                                                  (self.module.INPUTS, b.inputs))
                 for n, a in arrays.items() if table[n]["kind"] == "sequence")
        return Unit(b.inputs_for(self.module), b.targets, b.lengths, T, b.size, reset)

    def count(self, u: Unit) -> int:
        """The (step, sequence) pairs the unit's loss counts (see the module's docstring)."""
        terms = getattr(self.module, "LOSSES", None)
        if terms is None:  # (a module compiled before LOSSES: from its targets)
            terms = [{"per": "step" if self.per_step else "sequence", "reduce": "sum",
                      "steps": None}]
        summed = [t for t in terms if t["per"] == "step" and t["reduce"] == "sum"]
        if any(t["steps"] is None for t in summed):
            return int(np.sum(u.lengths)) if u.lengths is not None else u.T * u.B
        if summed:  # (a sum over chosen steps: that many per sequence)
            return max(t["steps"] for t in summed) * u.B
        return u.B  # (means over each sequence's steps, or one term per sequence)

    def valid_units(self) -> Iterator[Unit]:
        if self.text:
            ids = self.valid.valid
            if len(ids) < 2:  # (no validation part: validation_loss is NaN)
                return
            B = max(1, min(self.batch, (len(ids) - 1) // self.k))
            for i, b in enumerate(self.valid.chunks(B, self.k, part="valid")):
                yield self._unit(b, i == 0)
        elif self.valid is not None:
            for b in self.valid.batches(self.batch, shuffle=False, drop_last=False):
                yield self._unit(b, True)


def validation_loss(module, params, plan: Plan) -> float:
    """The per-token loss over the validation data (states carried through a text's chunks);
    NaN without validation data."""
    total, count, carry = 0.0, 0, None
    for u in plan.valid_units():
        outputs, _ = module.forward(params, u.inputs, u.targets, None if u.reset else carry,
                                    u.T, u.lengths)
        total, count, carry = total + float(outputs["loss"]), count + plan.count(u), \
            outputs["final"]
    return total / count if count else math.nan


# ---- one step

def train_step(module, params, unit: Unit, state0, count: int):
    """The loss and gradient of one unit, per token: ``(loss, grads, final)`` with ``loss`` and
    ``grads`` (``{param: array}``) the module's sums divided by ``count``, and ``final`` the
    states after the unit's last step (to carry into the next chunk)."""
    outputs, cache = module.forward(params, unit.inputs, unit.targets, state0, unit.T,
                                    unit.lengths)
    if "loss" not in outputs:
        raise ValueError("this network has no loss: there is nothing to train")
    g = module.backward(params, cache)
    grads = {n: np.asarray(v) / count for n, v in g["params"].items()}
    return float(outputs["loss"]) / count, grads, outputs["final"]


def _nonfinite(step: int, loss: float, grads: dict, params: dict) -> Optional[Tuple[str, str]]:
    """(array, what) for the first NaN or inf in the loss, a gradient or the new params."""
    if not math.isfinite(loss):
        return "loss", f"the loss is {loss}"
    for what, arrays in (("gradient of", grads), ("parameter", params)):
        for n, a in arrays.items():
            if not np.isfinite(a).all():
                kind = "NaN" if np.isnan(a).any() else "inf"
                where = "" if what != "parameter" else f" after the update of step {step}"
                return f"{what} {n!r}", f"the {what} {n!r} holds {kind}{where}"
    return None


# ---- the run directory

def _write(path: Path, data) -> None:
    """``data`` (bytes or str) to ``path`` through a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    os.replace(tmp, path)


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def check_run_dir(out, resume: bool = False) -> Path:
    """The run directory ``out``, checked before any work: a ValueError when it is a file, a
    directory holding anything but (with ``resume``) an rnnspec run, or a place that cannot be
    written.  A directory that does not exist yet is fine when its parent does."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{out} is a file, not a run directory")
    if resume:
        if not (path / "config.json").is_file():
            raise ValueError(f"{out} holds no run to resume (no config.json)")
        return path
    if path.is_dir() and any(path.iterdir()):
        held = "a run" if (path / "config.json").is_file() else "other files"
        raise ValueError(f"{out} already holds {held}; continue a run with --resume {out}, "
                         f"or give a new or empty directory")
    parent = path.parent if not path.is_dir() else path
    if not parent.is_dir():
        raise ValueError(f"{out}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: no permission to write in {parent}")
    return path


def read_config(run_dir) -> dict:
    """A run directory's config.json (a ValueError when it is not an rnnspec run's)."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{run_dir}: cannot read config.json ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise ValueError(f"{run_dir}/config.json is not an rnnspec run's (no \"format\": "
                         f"\"{RUN_FORMAT}\")")
    return config


@dataclass
class _State:
    """Where a run stands: what a checkpoint saves and a resume loads."""
    params: dict
    opt: Optimizer
    history: History
    step: int
    carry: Optional[dict]  # the states carried into the next chunk (None: reset)


def _save(run: Path, config: dict, st: _State, plot: bool = True) -> None:
    run.mkdir(exist_ok=True)
    _write(run / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    _write(run / "params.npz", _npz(st.params))
    _write(run / "optimizer.npz", _npz(st.opt.state_dict()))
    held = st.carry if st.carry is None or isinstance(st.carry, dict) else st.carry.gather()
    carry = {f"state/{n}": a for n, a in (held or {}).items()}
    _write(run / "carry.npz", _npz({"step": np.int64(st.step),
                                     "carried": np.bool_(st.carry is not None), **carry}))
    _write(run / "history.npz", _npz(st.history.arrays()))
    _write(run / "history.csv", st.history.csv())
    if plot:
        plot_curves(st.history, run / "curves.png")


def _load(run: Path) -> _State:
    carry = _load_npz(run / "carry.npz")
    states = {k[len("state/"):]: a for k, a in carry.items() if k.startswith("state/")}
    return _State(_load_npz(run / "params.npz"), load_optimizer(_load_npz(run /
                                                                           "optimizer.npz")),
                  History.from_arrays(_load_npz(run / "history.npz")), int(carry["step"]),
                  states if bool(carry["carried"]) else None)


def plot_curves(history: History, path: Path) -> bool:
    """The loss curves (training, validation) and the gradient norm, as a PNG, when
    matplotlib is installed (returns whether it was)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    h = history.arrays()
    keep = np.isfinite(h["loss"]) & np.isfinite(h["grad_norm"]) & (h["loss"] < 1e100) & \
        (h["grad_norm"] < 1e100)  # (a diverging run's last steps would overflow the axes)
    h = {k: a[keep] for k, a in h.items()}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(h["step"], h["loss"], label="training", lw=0.8)
    ok = ~np.isnan(h["valid_loss"])
    if ok.any():
        a.plot(h["step"][ok], h["valid_loss"][ok], "o-", label="validation", ms=3)
    a.set(xlabel="step", ylabel="loss per token", yscale="log")
    a.legend()
    b.plot(h["step"], h["grad_norm"], lw=0.8)
    b.set(xlabel="step", ylabel="gradient norm (before clipping)", yscale="log")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True


# ---- progress

class Progress:
    """tqdm's bar on a terminal when tqdm is installed (an optional import, not a dependency);
    else, and with ``quiet``, a plain line every ``every`` steps: step, loss (the mean since
    the last line), validation loss, gradient norm, tokens per second."""

    def __init__(self, start: int, total: int, every: int, quiet: bool, log: Callable):
        self.total, self.every, self.log = total, every, log
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
            except ImportError:
                pass
        self.losses: List[float] = []
        self.tokens, self.clock = 0, time.perf_counter()

    def update(self, step: int, loss: float, norm: float, tokens: int, valid: float) -> None:
        self.losses.append(loss)
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.clock, 1e-9)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4g}", norm=f"{norm:.3g}",
                                 tok_s=f"{rate:,.0f}", refresh=False)
            if not math.isnan(valid):
                self.bar.write(f"step {step}: validation loss {valid:.4f}")
            return
        if step % self.every and step != self.total:
            return
        valid_text = f"  valid {valid:.4f}" if not math.isnan(valid) else ""
        self.log(f"step {step:>{len(str(self.total))}}/{self.total}  loss "
                 f"{float(np.mean(self.losses)):.4f}{valid_text}  |g| {norm:.3g}  "
                 f"{rate:,.0f} tok/s")
        self.losses, self.tokens, self.clock = [], 0, time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- the loop

@dataclass
class StepInfo:
    """What ``train(callback=...)`` is given after each step."""
    step: int
    loss: float  # per token
    norm: float  # the gradient norm before clipping
    state0: Optional[dict]  # the states the step started from (None: the spec's initial)
    final: dict  # the states after its last step (carried into the next chunk); on a Dask
    # cluster both are cluster.HeldStates (their .gather() fetches them), or None when not kept
    grads: dict  # the per-token gradients, before clipping
    params: dict  # the parameters after the update


def _loop(mod, plan: Plan, st: _State, total: int, s: dict, eval_every: int,
          progress: Progress, checkpoint: Callable, callback, step: Callable) -> None:
    """Steps from ``st.step`` to ``total`` (``st`` updated in place), each unit's loss and
    gradients from ``step(params, unit, state0, count)`` (train_step's, or a cluster's); a
    checkpoint after each validation; TrainingDiverged at the first non-finite loss, gradient
    or parameter."""
    while st.step < total:
        epoch, skip = divmod(st.step, plan.per_epoch)
        for i, u in enumerate(plan.units(epoch)):
            if i < skip:
                continue
            if st.step >= total:
                break
            state0 = None if u.reset else st.carry
            with np.errstate(over="ignore", invalid="ignore"):  # (a NaN stops the run below)
                loss, grads, final = step(st.params, u, state0, plan.count(u))
            clip = {"norm": s["clip_norm"]} if s["clip_norm"] is not None else \
                {"value": s["clip_value"]} if s["clip_value"] is not None else None
            with np.errstate(over="ignore", invalid="ignore"):
                clipped, norm = clip_grads(grads, **clip) if clip else (grads, global_norm(grads))
            new = st.opt.step(st.params, clipped) if math.isfinite(norm) and \
                math.isfinite(loss) else {}
            bad = _nonfinite(st.step + 1, loss, grads, new)
            if bad is not None:
                raise TrainingDiverged(f"step {st.step + 1}: {bad[1]}", st.step + 1, bad[0],
                                       st.params)
            st.params = new
            st.carry = final if plan.text or plan.truncate else None  # (else: reset anyway)
            st.step += 1
            st.history.add(st.step, loss, norm)
            valid = math.nan
            if st.step % eval_every == 0:
                valid = validation_loss(mod, st.params, plan)
                st.history.valid_loss[-1] = valid
                checkpoint()
            if callback is not None:
                callback(StepInfo(st.step, loss, norm, state0, final, grads, st.params))
            progress.update(st.step, loss, norm, u.T * u.B, valid)


def _settings(optimizer, lr, optimizer_options, clip_norm, clip_value, truncate, batch, seed,
              dims) -> dict:
    """What a run's result depends on (besides the spec and the data): compared on resume."""
    if clip_norm is not None and clip_value is not None:
        raise ValueError("give at most one of clip_norm= and clip_value=")
    for name, v in (("batch", batch), ("truncate", truncate)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} = {v!r}: give an integer of at least 1")
    options = {"lr": lr, **(optimizer_options or {})}
    make_optimizer(optimizer, **options)  # (checks the name and the options)
    return {"optimizer": optimizer, "optimizer_options": options, "clip_norm": clip_norm,
            "clip_value": clip_value, "truncate": truncate, "batch": batch, "seed": seed,
            "dims": {k: int(v) for k, v in (dims or {}).items()}}


def _module_for(spec, dims: dict, data, backend: str = "numpy"
                ) -> Tuple[object, str, str, dict]:
    """(module, what to hash, hash key, dims): a spec file compiled with ``dims`` and the
    dimensions the data fixes (a size that is one dimension not in ``dims``), for ``backend``,
    or a module."""
    from .api import analyze, load_module, read_spec, render
    if not isinstance(spec, (str, os.PathLike)):
        text = "".join(linecache.getlines(getattr(spec, "__file__", "") or ""))
        return spec, text, "module_sha256", dict(dims)
    path = Path(spec)
    text = read_spec(path)
    a = analyze(text, dims, str(path))
    mod = load_module(render(a), path.stem)  # (its tables: which dimensions the data fixes)
    fields = data.fields() if isinstance(data, TextData) else \
        (data[0] if isinstance(data, tuple) else data).fields
    fixed = {}
    for table in (mod.INPUTS, mod.TARGETS):
        for n, info in table.items():
            size = info["size"]
            if n in fields and size.isidentifier() and size not in dims and \
                    mod.DIMS.get(size) != fields[n].size:
                fixed[size] = fields[n].size
    if fixed:
        a = analyze(text, {**dims, **fixed}, str(path))
    if fixed or backend != "numpy":
        mod = load_module(render(a, backend=backend), path.stem)
    return mod, text, "spec_sha256", {k: a.model.dims[k] for k in {**dims, **fixed}}


def train(spec_or_module, data, *, dims: Optional[dict] = None, optimizer: str = "adam",
          lr: float = 1e-3, optimizer_options: Optional[dict] = None,
          clip_norm: Optional[float] = None, clip_value: Optional[float] = None,
          truncate: Optional[int] = None, batch: int = 32, steps: Optional[int] = None,
          epochs: Optional[int] = None, seed: int = 0, out=None, resume=None,
          eval_every: Optional[int] = None, quiet: bool = False,
          log: Optional[Callable[[str], None]] = None, callback=None,
          command: Optional[List[str]] = None, data_name: Optional[str] = None,
          dask=None, workers: Optional[int] = None, dask_timeout: float = 10.0,
          backend: str = "numpy") -> TrainResult:
    """Train the spec (a ``.rnn`` path, compiled with ``dims`` and the dimensions the data
    fixes) or generated module on ``data`` (a Dataset, a (train, validation) pair, a TextData).

    ``optimizer``/``lr``/``optimizer_options``: :func:`rnnspec.make_optimizer`'s; ``clip_norm``
    or ``clip_value``: :func:`rnnspec.clip_grads` on the per-token gradients; ``truncate=k``:
    stateful TBPTT over chunks of k steps; ``steps`` optimizer steps in all, or ``epochs``
    (default: 1 epoch); the parameters from ``init_params(dims, seed)``; a validation (and,
    with ``out``, a checkpoint) every ``eval_every`` steps (default: every epoch, at most 100
    steps apart).  ``out``: a new run directory; ``resume``: a run directory to continue (its
    settings must be these: a ValueError names the one that differs).  ``log`` prints the
    progress lines (default: standard output); ``callback(StepInfo)`` is called after each
    step.  TrainingDiverged on a NaN or inf (the last good parameters saved with ``out``).
    ``dask``: a Dask scheduler's address (or a ``distributed.Client``), ``workers``: a local
    Dask cluster of that many worker processes -- each batch split across the workers (see
    :mod:`rnnspec.cluster`; a ValueError when the scheduler is not reached within
    ``dask_timeout`` seconds).  ``backend``: the spec compiled for it (see
    :mod:`rnnspec.codegen.backends`; "numba": the small-batch steps compiled)."""
    s = _settings(optimizer, lr, optimizer_options, clip_norm, clip_value, truncate, batch,
                  seed, dims)
    if steps is not None and epochs is not None:
        raise ValueError("give at most one of steps= and epochs=")
    run = Path(resume) if resume is not None else None
    if resume is not None:
        check_run_dir(resume, resume=True)
        if out is not None and Path(out).resolve() != run.resolve():
            raise ValueError("a resumed run continues in its own directory: give no out=")
    elif out is not None:
        run = check_run_dir(out)
    cluster = None
    if dask is not None or workers is not None:
        from .cluster import connect
        cluster = connect(dask, workers, dask_timeout)
    try:
        mod, plan, st, total, eval_every, config = _start(
            spec_or_module, data, s, run, resume, steps, epochs, eval_every, command,
            data_name, backend)
        return _run(mod, plan, st, total, s, eval_every, run, config, quiet, log, callback,
                    cluster)
    finally:
        if cluster is not None:
            cluster.close()


def _start(spec_or_module, data, s: dict, run: Optional[Path], resume, steps, epochs,
           eval_every, command, data_name, backend: str = "numpy"):
    """The module, the plan, the state to start from (new, or the resumed run's), the total
    steps, the validation interval and the config of a run (see :func:`train`)."""
    mod, text, hash_key, used_dims = _module_for(spec_or_module, s["dims"], data, backend)
    s["dims"] = used_dims
    data.check(mod) if isinstance(data, TextData) else \
        (data[0] if isinstance(data, tuple) else data).check(mod)
    plan = Plan(mod, data, s["batch"], s["truncate"], s["seed"])
    total = steps if steps is not None else (epochs or 1) * plan.per_epoch
    eval_every = eval_every or min(plan.per_epoch, 100)
    config = {"format": RUN_FORMAT, "command": command, "settings": s, "eval_every": eval_every,
              hash_key: hashlib.sha256(text.encode("utf-8")).hexdigest(),
              "data": data_name, "steps_per_epoch": plan.per_epoch, "steps": total,
              "versions": {"rnnspec": __version__, "numpy": np.__version__,
                           "python": sys.version.split()[0]},
              "dims": {k: int(v) for k, v in mod.DIMS.items()} if not used_dims else
              {**{k: int(v) for k, v in mod.DIMS.items()}, **used_dims},
              "stopped": None}
    if resume is not None:
        st = _resume(run, config, hash_key)
        eval_every = config["eval_every"]
    else:
        params = mod.init_params(used_dims, seed=s["seed"])
        st = _State(params, make_optimizer(s["optimizer"], **s["optimizer_options"]),
                    History(), 0, None)
        if run is not None:
            run.mkdir(exist_ok=True)
            if isinstance(data, TextData):
                data.vocab.save(run / "vocab.json")
    return mod, plan, st, total, eval_every, config


def _resume(run: Path, config: dict, hash_key: str) -> _State:
    """The saved state of ``run``, after checking that ``config`` continues it."""
    saved = read_config(run)
    if saved.get("stopped"):
        raise ValueError(f"{run}: the run stopped ({saved['stopped']}); start a new run")
    if saved.get(hash_key) != config[hash_key]:
        raise ValueError(f"{run} was trained on another spec (its {hash_key} differs)")
    for key, value in config["settings"].items():
        if saved["settings"].get(key) != json.loads(json.dumps(value)):
            raise ValueError(f"{run} was trained with {key} = {saved['settings'].get(key)!r}, "
                             f"not {value!r}")
    if saved.get("steps_per_epoch") != config["steps_per_epoch"]:
        raise ValueError(f"{run} was trained on other data ({saved.get('steps_per_epoch')} "
                         f"steps per epoch, not {config['steps_per_epoch']})")
    config["eval_every"], config["command"] = saved["eval_every"], \
        [saved.get("command"), config["command"]]
    config["data"] = config["data"] or saved.get("data")
    return _load(run)


def _run(mod, plan, st: _State, total, s, eval_every, run, config, quiet, log,
         callback, cluster=None) -> TrainResult:
    log = log or (lambda line: print(line, flush=True))
    progress = Progress(st.step, total, eval_every, quiet, log)
    step, parallel = functools.partial(train_step, mod), None
    if cluster is not None:  # (each step split across its workers; the carried states kept there)
        parallel = cluster.data_parallel(mod, keep=plan.text or plan.truncate is not None)
        step, config["cluster"] = parallel.step, cluster.describe()

    def checkpoint(plot=False):
        if run is not None:
            _save(run, config, st, plot)
    try:
        _loop(mod, plan, st, total, s, eval_every, progress, checkpoint, callback, step)
        progress.close()
        checkpoint(plot=True)
    except TrainingDiverged as exc:
        progress.close()
        config["stopped"] = f"diverged at step {exc.step}: {exc}"
        checkpoint(plot=True)
        where = f"; the last good parameters (after step {exc.step - 1}) are in " \
                f"{run / 'params.npz'}" if run is not None else ""
        raise TrainingDiverged(f"{exc}: training stopped{where}", exc.step, exc.array,
                               st.params) from None
    except KeyboardInterrupt:
        progress.close()
        checkpoint()  # (the last completed step: --resume continues from it)
        raise
    finally:
        if parallel is not None:  # (after the last checkpoint gathered their states)
            parallel.close()
    return TrainResult(st.params, st.opt, st.history, st.step, run, mod)


TASK_SIZES = {"adding": 2000, "copy": 2000, "xor": 2000, "parity": 2000}  # default n


def load_data(text: str, module, seed: int = 0, valid_fraction: float = 0.1):
    """The command line's ``--data``: ``task:NAME[,key=value...]`` (a task of
    :mod:`rnnspec.data` with n = 2000 sequences unless ``n=`` says, split with ``seed``),
    ``text:FILE`` (characters; ``text:FILE,level=word`` for whitespace tokens; ``text:sonnets``
    the bundled text unless a file of that name exists) or
    ``FILE.npz`` (arrays keyed by ``module``'s inputs and targets, split with ``seed``).
    Names follow the spec's one input and one target.  A ValueError says what is wrong."""
    from .data import BUNDLED, bundled_text, load_npz, task
    kind, colon, rest = text.partition(":")
    if kind == "task" and colon:
        name, *items = rest.split(",")
        options = _options(text, items)
        n = options.pop("n", TASK_SIZES.get(name, 2000))
        names = _io_names(module, f"task:{name}")
        try:
            data = task(name, n, seed=seed, **names, **options)
        except TypeError:
            raise ValueError(f"--data {text}: task {name!r} takes the options n and "
                             f"{', '.join(_task_options(name))}") from None
        return data.split(valid_fraction, seed)
    if kind == "text" and colon:
        path, *items = rest.split(",")
        level = _options(text, items, str).pop("level", "char")
        x, y = _io_names(module, "a text").values()
        try:
            if path in BUNDLED and not os.path.exists(path):  # (text:sonnets: the bundled text)
                return TextData(bundled_text(path), level=level, valid_fraction=valid_fraction,
                                input_name=x, target_name=y, name=path)
            return TextData.from_file(path, level=level, valid_fraction=valid_fraction,
                                      input_name=x, target_name=y)
        except OSError as exc:
            raise ValueError(f"text:{path}: {exc.strerror or exc}") from None
    if text.endswith(".npz"):
        if not os.path.isfile(text):
            raise ValueError(f"{text}: no such file")
        return tuple(load_npz(text, module, valid_fraction, seed))
    raise ValueError(f"--data {text}: give task:NAME (tasks: adding, copy, xor, parity), "
                     f"text:FILE or FILE.npz")


def _task_options(name: str) -> List[str]:
    import inspect
    from .data import TASKS
    return [p for p in inspect.signature(TASKS[name]).parameters
            if p not in ("n", "seed", "input_name", "target_name")]


def _options(text: str, items: List[str], kind=int) -> dict:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            out[key.strip()] = kind(value) if kind is str or key != "level" else value
        except ValueError:
            raise ValueError(f"--data {text}: {item!r}: expected KEY=INTEGER") from None
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"--data {text}: {item!r}: expected KEY=VALUE")
    return out


def _io_names(module, what: str) -> Dict[str, str]:
    if len(module.INPUTS) != 1 or len(module.TARGETS) != 1:
        raise ValueError(f"{what} has one input and one target; the spec's inputs are "
                         f"{sorted(module.INPUTS)}, its targets {sorted(module.TARGETS)}")
    return {"input_name": next(iter(module.INPUTS)), "target_name": next(iter(module.TARGETS))}
