#!/usr/bin/env python
"""Training throughput in one process and on a local Dask cluster of 1 and 2 workers.

    python benchmarks/scaling.py                   # both cases, the table for the README
    python benchmarks/scaling.py --case small --steps 100

Each case trains a spec with rnnspec.train (Adam, no validation) on random data of B sequences
of T steps, ``--steps`` timed optimizer steps after one untimed step (the workers import the
module, the caches warm up); the cluster is started before the clock and given to train() as
``dask=client``.  Cases: ``large`` -- specs/lstm.rnn with 256 hidden units, a batch of 256
sequences of 50 steps, where each step's compute (~0.1 s a shard or more) dwarfs sending the
parameters and shards; ``small`` -- specs/elman.rnn as written (5 hidden units), a batch of 16
sequences of 20 steps, where a step computes in well under a millisecond and the round trip
to the workers (task submission, pickling, the scheduler) is all there is.

Honesty: the workers are processes on this machine, which has 2 cores (shared with whatever
else runs there), so "2 workers" is at most 2 cores' worth; one BLAS thread per process
(OPENBLAS/OMP/MKL_NUM_THREADS=1, set here before NumPy is imported, inherited by the workers)
so that the single process uses one core, as one worker does.  A real cluster has a core or
more per worker and a network between them instead of loopback.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnspec.api import compile_file  # noqa: E402
from rnnspec.data import load_npz  # noqa: E402
from rnnspec.train import train  # noqa: E402

CASES = {  # spec, dims, T, B, default steps
    "large": ("lstm.rnn", {"in": 64, "hidden": 256, "out": 64}, 50, 256, 5),
    "small": ("elman.rnn", {}, 20, 16, 60),
}


def _data(spec: Path, dims: dict, T: int, B: int, tmp: Path):
    """Random sequences for the spec's one input and target: 2 batches of B, and a tenth more
    split off (the validation part, not used)."""
    mod = compile_file(spec, dims)
    N = 2 * B + -(-2 * B // 9)
    rng = np.random.default_rng(0)
    (x, xi), = mod.INPUTS.items()
    (y, yi), = mod.TARGETS.items()
    arrays = {x: rng.standard_normal((T, N, mod._size(xi["size"], mod.DIMS))),
              y: rng.integers(0, mod._size(yi["size"], mod.DIMS), (T, N))}
    np.savez(tmp / "data.npz", **arrays)
    return load_npz(tmp / "data.npz", mod, valid_fraction=0.1, seed=0)[0]


def _rate(spec, dims, data, B, steps, **where) -> float:
    """Optimizer steps per second over ``steps`` steps after a first, untimed one."""
    times = []
    train(spec, data, dims=dims, batch=B, steps=steps + 1, seed=0, quiet=True,
          eval_every=10 ** 9, log=lambda line: None, lr=1e-3,
          callback=lambda info: times.append(time.perf_counter()), **where)
    return steps / (times[-1] - times[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--steps", type=int, help="timed steps (default: the case's)")
    args = ap.parse_args(argv)
    import distributed
    from distributed import Client
    from rnnspec.cluster import local_cluster  # (as rnnspec train --workers N starts it)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.case or list(CASES):
            name, dims, T, B, steps = CASES[case]
            steps = args.steps or steps
            spec = ROOT / "specs" / name
            data = _data(spec, dims, T, B, Path(tmp))
            rates = {"1 process": _rate(spec, dims, data, B, steps)}
            for n in (1, 2):
                with local_cluster(distributed, n) as cluster, \
                        Client(cluster, set_as_default=False) as client:
                    rates[f"{n} worker{'s' * (n > 1)}"] = _rate(spec, dims, data, B, steps,
                                                              dask=client)
            for where, rate in rates.items():
                rows.append((case, f"{name} T={T} B={B}", where, rate, rate * B, rate * B * T,
                             rate / rates["1 process"]))
    print(f"{'case':<6} {'model, batch':<22} {'where':<10} {'steps/s':>8} {'seq/s':>9} "
          f"{'tokens/s':>10} {'vs 1 process':>12}")
    for case, what, where, rate, seqs, toks, ratio in rows:
        print(f"{case:<6} {what:<22} {where:<10} {rate:>8.2f} {seqs:>9,.0f} {toks:>10,.0f} "
              f"{ratio:>11.2f}x")
    print(f"(this machine: {os.cpu_count()} cores shared by the client and all the workers; "
          f"one BLAS thread per process; load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
