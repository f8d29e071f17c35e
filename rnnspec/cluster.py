"""Data-parallel training on a Dask cluster (``rnnspec train --dask ADDRESS`` or ``--workers N``):
every step's batch split into contiguous shards, one per worker, each worker running the
generated module's forward and backward on its shard; the client adds the results.

In: a Dask ``distributed`` scheduler (its address, a ``distributed.Client``, or a local cluster of
N worker processes started here) and a generated module.  Out: :func:`connect` returns a
:class:`Cluster`; :meth:`Cluster.data_parallel` returns a :class:`DataParallel`, whose ``step``
is what :func:`rnnspec.train.train` calls for each optimizer step in place of
:func:`rnnspec.train.train_step`: ``step(params, unit, state0, count) -> (loss, grads, final)``.

The module: its source text (not a pickled module object) is broadcast to the workers once,
and imported on each with :func:`rnnspec.api.load_module`, cached there by the text's SHA-256;
each step's tasks name it by that digest.  Every worker needs the same rnnspec version
(checked when connecting), nothing else of the client.

Exactness: a module's loss is a sum over the sequences of a batch (the per-token mean is the
trainer's division, see :mod:`rnnspec.train`), so each worker returns its shard's *sums* -- the
loss and the gradients as the module computes them -- and the client adds them in shard order
and divides once by the whole unit's count: the single-process step up to rounding (the tests
ask 1e-12), with no per-shard weights to get wrong (a ``mean`` loss, a padded batch).  Shards:
``shard_bounds`` (sizes as equal as possible; a batch smaller than the workers uses fewer).

Carried states (truncated BPTT, a text's streams): each shard's final states stay on its
worker, keyed by (run, shard, step); the client holds a :class:`HeldStates` naming them.  The
next chunk reads them there; a checkpoint gathers them (:meth:`HeldStates.gather`: the whole
batch's states in shard order, what ``carry.npz`` saves); a resumed run sends the saved states
to the shards once.  A worker keeps its shard's states of the last two steps, so a step
interrupted after some workers finished still leaves the last completed step's states to
gather; the same shards and the same carried states make a resumed run continue bit for bit.
A worker leaving the cluster mid-run loses what it held: the step stops with a
:class:`ClusterError` naming it (resume from the last checkpoint).

``distributed`` is an optional extra (``pip install "rnnspec[dask]"``), imported only when a
cluster is asked for.
"""
from __future__ import annotations

import hashlib
import itertools
import linecache
import logging
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import __version__

INSTALL = 'pip install "rnnspec[dask]"'
POLL = 5.0  # seconds between checks, while a step runs, that its workers are still there

_LOCK = threading.Lock()  # (a worker may run tasks in several threads)
_MODULES: Dict[str, object] = {}  # on a worker: source digest -> the imported module
_HELD: Dict[Tuple[str, int, int], dict] = {}  # on a worker: (run, shard, step) -> states


class ClusterError(RuntimeError):
    """The cluster failed during training (a worker left, a held state is gone)."""


class ConnectError(ValueError):
    """No cluster to train on: the scheduler is not reached, has no worker, or a worker cannot
    run this rnnspec."""


def require():
    """The ``distributed`` package; an ImportError saying how to install it when it is not."""
    try:
        import distributed
    except ImportError:
        raise ImportError(f"training on a Dask cluster needs the package distributed: "
                          f"{INSTALL}") from None
    return distributed


# ---- shards

def shard_bounds(B: int, n: int) -> List[Tuple[int, int]]:
    """Contiguous ranges [lo, hi) of B sequences over min(n, B) shards, as equal as possible
    (the first B % n shards one sequence longer)."""
    n = min(n, B)
    q, r = divmod(B, n)
    ends = np.cumsum([0] + [q + (i < r) for i in range(n)])
    return [(int(lo), int(hi)) for lo, hi in zip(ends[:-1], ends[1:])]


def batch_axes(module) -> Dict[str, Dict[str, Optional[int]]]:
    """The axis of each input, target and state that runs over a batch's sequences (None: one
    array for all of them), from the module's own ``_lead``/``_state_lead``."""
    def axis(lead):
        return lead.index("B") if "B" in lead else None
    return {"inputs": {n: axis(module._lead(i)) for n, i in module.INPUTS.items()},
            "targets": {n: axis(module._lead(i)) for n, i in module.TARGETS.items()},
            "states": {n: axis(module._state_lead(i)) for n, i in module.STATES.items()}}


def _cut(arrays: Optional[dict], axes: Dict[str, Optional[int]], lo: int, hi: int):
    """The sequences lo:hi of each array (along its axis in ``axes``; whole where None)."""
    if arrays is None:
        return None
    out = {}
    for n, a in arrays.items():
        axis = axes.get(n)
        a = np.asarray(a)
        out[n] = a if axis is None else \
            np.ascontiguousarray(a[(slice(None),) * axis + (slice(lo, hi),)])
    return out


def _cut_lengths(lengths, lo: int, hi: int):
    """A padded batch's lengths ((B,), or per axis {axis: (..., B)}) of sequences lo:hi."""
    if lengths is None:
        return None
    if isinstance(lengths, dict):
        return {k: np.asarray(v)[..., lo:hi] for k, v in lengths.items()}
    return np.asarray(lengths)[..., lo:hi]


def module_source(module) -> str:
    """The source text of a generated module (registered in linecache by load_module)."""
    text = "".join(linecache.getlines(getattr(module, "__file__", "") or ""))
    if "def forward(" not in text:
        raise ValueError("training on a cluster sends the generated module's source to the "
                         "workers; this module's source is not known (compile it with "
                         "rnnspec.compile_file or rnnspec.load_module)")
    return text


# ---- on a worker

def _versions() -> dict:
    return {"rnnspec": __version__, "numpy": np.__version__}


def _worker_module(source: str, digest: str, name: str):
    with _LOCK:
        mod = _MODULES.get(digest)
        if mod is None:
            from .api import load_module
            mod = _MODULES[digest] = load_module(source, name)
    return mod


def _held_states(key: Tuple[str, int, int]) -> dict:
    with _LOCK:
        states = _HELD.get(key)
    if states is None:
        raise ClusterError(f"the states of shard {key[1]} after step {key[2]} are no longer "
                           f"on this worker (was it restarted?)")
    return states


def _shard_step(source, digest, name, params, inputs, targets, lengths, T, start, keep):
    """One shard's (loss, {param: gradient}), both sums as the module computes them.  ``start``:
    ('reset', None), ('given', states) or ('held', key of the states held here); ``keep``: the
    key to hold the final states under (None: not kept)."""
    mod = _worker_module(source, digest, name)
    kind, value = start
    state0 = None if kind == "reset" else value if kind == "given" else _held_states(value)
    with np.errstate(over="ignore", invalid="ignore"):  # (the client stops on a NaN)
        outputs, cache = mod.forward(params, inputs, targets, state0, T, lengths)
        if "loss" not in outputs:
            raise ValueError("this network has no loss: there is nothing to train")
        g = mod.backward(params, cache)
    if keep is not None:  # (and the step before it, what the client holds until this one ends)
        with _LOCK:
            for k in [k for k in _HELD if k[:2] == keep[:2] and k[2] < keep[2] - 1]:
                del _HELD[k]
            _HELD[keep] = outputs["final"]
    return float(outputs["loss"]), {n: np.asarray(v) for n, v in g["params"].items()}


def _forget(run: str) -> None:
    with _LOCK:
        for k in [k for k in _HELD if k[0] == run]:
            del _HELD[k]


# ---- on the client

@dataclass(frozen=True)
class HeldStates:
    """The states carried into the next chunk, held on the workers after step ``sid`` of a
    :class:`DataParallel` run (shard i's on worker i); ``gather()`` fetches them as one dict:
    the whole batch's states, as a single process would carry them."""
    owner: "DataParallel"
    sid: int
    bounds: Tuple[Tuple[int, int], ...]

    def gather(self) -> dict:
        return self.owner.gather(self)


class DataParallel:
    """``step(params, unit, state0, count)``: one training step of ``module`` split across the
    cluster's workers (see the module's docstring); ``keep``: hold the final states on the
    workers for the next chunk.  ``close()`` drops what the workers hold for this run."""

    def __init__(self, cluster: "Cluster", module, keep: bool):
        self.cluster, self.keep = cluster, keep
        source = module_source(module)
        self.digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        self.name = module.__name__
        self.axes = batch_axes(module)
        self.run = uuid.uuid4().hex
        self._ids = itertools.count(1)
        # (sent once to every worker; a task names it and finds it there)
        self.source = cluster.client.scatter(source, broadcast=True, hash=False)

    def step(self, params, unit, state0, count):
        """The per-token ``(loss, grads, final)`` of ``unit`` from ``state0`` (None: the spec's
        initial states; a HeldStates; a dict of the whole batch's states), like train_step;
        ``final`` is a HeldStates (None without ``keep``)."""
        bounds = tuple(shard_bounds(unit.B, len(self.cluster.workers)))
        sid = next(self._ids)
        futures = []
        for i, (lo, hi) in enumerate(bounds):
            futures.append(self.cluster.client.submit(
                _shard_step, self.source, self.digest, self.name, params,
                _cut(unit.inputs, self.axes["inputs"], lo, hi),
                _cut(unit.targets, self.axes["targets"], lo, hi),
                _cut_lengths(unit.lengths, lo, hi), unit.T, self._start(state0, i, bounds),
                (self.run, i, sid) if self.keep else None,
                workers=[self.cluster.workers[i]], pure=False))
        results = self.cluster.results(futures, self.cluster.workers[:len(bounds)])
        loss, grads = results[0][0], dict(results[0][1])
        for part_loss, part in results[1:]:  # (in shard order: the same sum every run)
            loss += part_loss
            for n, g in part.items():
                grads[n] = grads[n] + g
        final = HeldStates(self, sid, bounds) if self.keep else None
        return loss / count, {n: g / count for n, g in grads.items()}, final

    def _start(self, state0, i: int, bounds) -> tuple:
        if state0 is None:
            return ("reset", None)
        if isinstance(state0, HeldStates) and state0.owner is self and state0.bounds == bounds:
            return ("held", (self.run, i, state0.sid))
        if isinstance(state0, HeldStates):  # (held for another split: gathered, sent again)
            state0 = state0.gather()
        return ("given", _cut(state0, self.axes["states"], *bounds[i]))

    def gather(self, held: HeldStates) -> dict:
        """The states ``held`` names, fetched from the workers and joined in shard order."""
        client, workers = self.cluster.client, self.cluster.workers
        futures = [client.submit(_held_states, (self.run, i, held.sid), workers=[workers[i]],
                                 pure=False) for i in range(len(held.bounds))]
        parts = self.cluster.results(futures, workers[:len(held.bounds)])
        axes = self.axes["states"]
        return {n: parts[0][n] if axes.get(n) is None else
                np.concatenate([p[n] for p in parts], axis=axes[n]) for n in parts[0]}

    def close(self) -> None:
        try:
            self.cluster.client.run(_forget, self.run, on_error="ignore")
            self.cluster.client.cancel([self.source])
        except Exception:  # (closing after a failure: nothing more to free)
            pass


class Cluster:
    """A Dask client and the workers that train, in a fixed order (shard i on workers[i]);
    ``close()`` closes what :func:`connect` started (a client or a cluster it was given stays
    open)."""

    def __init__(self, client, owned: list, address: str):
        self.client, self.owned, self.address = client, owned, address
        self.workers = sorted(client.scheduler_info()["workers"])

    def data_parallel(self, module, keep: bool) -> DataParallel:
        return DataParallel(self, module, keep)

    def results(self, futures, workers: List[str]) -> list:
        """The futures' results, in order; a ClusterError when one of ``workers`` leaves the
        cluster while they run (checked every POLL seconds)."""
        out = []
        for future in futures:
            while True:
                try:
                    out.append(future.result(timeout=POLL))
                    break
                except TimeoutError:
                    self._check_present(futures, workers)
        return out

    def _check_present(self, futures, workers: List[str]) -> None:
        present = self.client.scheduler_info()["workers"]
        gone = [w for w in workers if w not in present]
        if gone:
            self.client.cancel(futures)
            raise ClusterError(f"the Dask worker {gone[0]} left the cluster during a step; "
                               f"the states it held are lost: resume the run from its last "
                               f"checkpoint (--resume)")

    def describe(self) -> dict:
        """What a run's config.json records of the cluster."""
        return {"scheduler": self.address, "workers": len(self.workers)}

    def close(self) -> None:
        for thing in self.owned:
            thing.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def local_cluster(distributed, workers: int):
    """A LocalCluster of ``workers`` processes of one thread, whose allocator is left as
    glibc's default.  Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, and setting it
    at all turns off glibc's adaptive mmap threshold: every array over 128 KB is then mapped
    and unmapped afresh, and on a virtual machine the first touch of fresh pages costs ~2-3 ms
    a MB (see benchmarks/steady_malloc.py).  Measured with benchmarks/scaling.py, an LSTM step
    of 256 hidden units and 256 sequences ran ~1.7x slower on a worker than in the client."""
    import dask
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                        processes=True, dashboard_address=":0",
                                        silence_logs=logging.ERROR)


def connect(address=None, workers: Optional[int] = None, timeout: float = 10.0) -> Cluster:
    """A :class:`Cluster` on the Dask scheduler at ``address`` (``tcp://HOST:8786``; a
    ``distributed.Client`` is used as it is), or on a local cluster of ``workers`` worker
    processes of one thread each, started here.  A ConnectError (a ValueError), within
    ``timeout`` seconds: the scheduler cannot be reached, it has no worker, or a worker cannot
    run this rnnspec."""
    distributed = require()
    if (address is None) == (workers is None):
        raise ValueError("give a scheduler's address or a number of local workers, not both")
    if isinstance(address, distributed.Client):
        client, owned, shown = address, [], str(address.scheduler.address)
    elif address is not None:
        shown = str(address)
        _reachable(shown, timeout)
        try:
            client = distributed.Client(shown, timeout=timeout, set_as_default=False)
        except (OSError, ValueError) as exc:
            raise ConnectError(f"cannot reach the Dask scheduler at {shown} ({exc})") from None
        owned = [client]
    else:
        local = local_cluster(distributed, workers)
        client = distributed.Client(local, set_as_default=False)
        owned, shown = [client, local], "local"
    try:
        client.wait_for_workers(workers or 1, timeout=timeout)
        _check_versions(client)
        return Cluster(client, owned, shown)
    except (TimeoutError, ConnectError) as exc:
        for thing in owned:
            thing.close()
        if isinstance(exc, ConnectError):
            raise
        raise ConnectError(f"the Dask scheduler at {shown} has no worker after {timeout:g} s; "
                         f"start some with `dask worker {shown}`") from None


def _reachable(address: str, timeout: float) -> None:
    """A ValueError, before any Client is made, when a tcp address has no port, nothing
    listens there, or what listens is not a Dask scheduler answering within ``timeout``
    seconds (a Client would wait for its answer for ever)."""
    from distributed.comm import get_address_host_port, parse_address, registry
    hint = "start a scheduler with `dask scheduler` and give its address, tcp://HOST:8786"
    try:
        scheme, _ = parse_address(address)
        registry.get_backend(scheme)  # (an unknown scheme: a ValueError naming the known)
        host, port = get_address_host_port(address) if scheme in ("tcp", "tls") else (None, 0)
    except ValueError as exc:
        raise ConnectError(f"the Dask scheduler address {address}: {exc}; {hint}") from None
    try:
        if host is not None:
            socket.create_connection((host, port), timeout=timeout).close()
        answer = _identity(address, timeout)
    except OSError as exc:  # (TimeoutError among them)
        why = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else \
            exc.strerror or str(exc)
        raise ConnectError(f"cannot reach the Dask scheduler at {address} ({why}); "
                         f"{hint}") from None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise ConnectError(f"{address} answers, but not as a Dask scheduler; {hint}")


def _identity(address: str, timeout: float):
    """The scheduler's identity, asked in a thread of its own (its own event loop) and given
    up after ``timeout`` seconds: TimeoutError."""
    import asyncio
    from distributed.comm import connect as connect_comm

    async def ask():
        comm = await connect_comm(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()
    box: dict = {}

    def run():
        try:
            box["answer"] = asyncio.run(asyncio.wait_for(ask(), timeout))
        except BaseException as exc:  # (handed to the caller's thread)
            box["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if "answer" in box:
        return box["answer"]
    error = box.get("error", TimeoutError())
    raise error if isinstance(error, OSError) else TimeoutError() from error


def _check_versions(client) -> None:
    """A ValueError naming the first worker that cannot import rnnspec or has another
    version (a generated module is only meant to run with the runtime it was made by)."""
    for worker, got in sorted(client.run(_versions, on_error="return").items()):
        if isinstance(got, BaseException):
            raise ConnectError(f"the Dask worker {worker} cannot run rnnspec ({type(got).__name__}"
                             f": {got}); install rnnspec {__version__} on every worker")
        if got["rnnspec"] != __version__:
            raise ConnectError(f"the Dask worker {worker} has rnnspec {got['rnnspec']}, this "
                             f"machine {__version__}: install the same version on every worker")
