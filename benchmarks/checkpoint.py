#!/usr/bin/env python
"""Benchmark gradient checkpointing: time and memory of forward + backward with and without it.

    python benchmarks/checkpoint.py               # lstm and elman, T = 1000 and 10000, ~6 min
    python benchmarks/checkpoint.py --quick       # T = 200 and 1000, one repeat, ~20 s
    python benchmarks/checkpoint.py --models lstm --T 1000,10000 --ks sqrt,100 --repeats 3

For each model at B = 32, H = 128, I = K = 64 (float64) and each T, it compiles the spec without
checkpointing and with checkpoint=k for each k (default: round(sqrt(T))), and reports for one
loss_and_grad (the summed cross-entropy and all gradients):
  ms          median wall time of forward + backward over the repeats (after one warm-up),
  cache MB    bytes of the distinct arrays in the cache forward returns (what backward keeps:
              for a checkpointed module the inputs, targets and the states every k steps),
  peak MB     peak memory traced by tracemalloc during one forward + backward (NumPy reports its
              allocations to it): the cache, the outputs, and backward's buffers and gradients.
It writes results/checkpoint.json and results/checkpoint.md (--out DIR to change).
"""
import os
import sys

if __name__ == "__main__":
    import steady_malloc  # (the script's directory is on sys.path)
    steady_malloc.reexec(__file__)

import argparse
import datetime
import gc
import json
import statistics
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # benchmark the checkout's rnnspec, not an installed copy

import numpy as np  # noqa: E402

import rnnspec  # noqa: E402
from run import array_bytes, bench_params, machine_info, problem, spec_dims, spec_path  # noqa

B, I, H, K = 32, 64, 128, 64


def k_values(T, ks):
    out = []
    for k in ks:
        k = round(T ** 0.5) if k == "sqrt" else int(k)
        if k not in out:
            out.append(k)
    return out


def measure(mod, params, x, y, repeats):
    inputs, targets = {"x": x}, {"y": y}
    _, cache = mod.forward(params, inputs, targets)
    cache_bytes = array_bytes({k: v for k, v in cache.items() if k != "params"})
    del cache
    mod.loss_and_grad(params, inputs, targets)  # warm-up
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        mod.loss_and_grad(params, inputs, targets)
        times.append(time.perf_counter() - t0)
        gc.enable()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    loss, grads = mod.loss_and_grad(params, inputs, targets)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"ms": [t * 1e3 for t in times], "median_ms": statistics.median(times) * 1e3,
            "cache_bytes": cache_bytes, "peak_bytes": peak}, loss, grads


def max_rel_diff(ref, got):
    worst = abs(ref[0] - got[0]) / abs(ref[0])
    for group in ("params", "inputs", "state0"):
        for n, a in ref[1][group].items():
            scale = max(float(np.max(np.abs(a))), 1e-300)
            worst = max(worst, float(np.max(np.abs(a - got[1][group][n]))) / scale)
    return worst


def markdown(res):
    lines = ["# Checkpointing: forward + backward time and memory", "",
             f"{res['date']}, {res['machine']['cpu']}, {res['machine']['usable_cpus']} usable "
             f"CPUs, NumPy {res['machine']['numpy']} ({res['machine']['blas']}); float64, "
             f"B={B}, I={I}, H={H}, K={K}; median of {res['repeats']} repeats after a warm-up.",
             "", "| model | T | checkpoint k | ms | × time | cache MB | peak MB | max rel diff |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in res["cases"]:
        k = "none" if r["k"] is None else str(r["k"])
        diff = "" if r["k"] is None else f"{r['max_rel_diff']:.1e}"
        lines.append(f"| {r['model']} | {r['T']} | {k} | {r['median_ms']:.0f} | "
                     f"{r['time_ratio']:.2f} | {r['cache_bytes'] / 2**20:.1f} | "
                     f"{r['peak_bytes'] / 2**20:.1f} | "
                     f"{diff} |")
    lines += ["", "× time: the median over the uncheckpointed module's at the same T. cache MB: "
              "bytes of the arrays in the cache forward returns (for a checkpointed module: the "
              "input x, the targets and the states at every segment start). peak MB: peak "
              "tracemalloc'ed memory during one forward + backward, which also holds the outputs "
              "(every named value at every step, O(T) either way) and the gradients (d x is "
              "(T, B, I)). max rel diff: largest difference of the loss and every gradient from "
              "the uncheckpointed module's, relative to the array's largest entry.", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lstm,elman")
    p.add_argument("--T", default="1000,10000", help="comma-separated sequence lengths")
    p.add_argument("--ks", default="sqrt", help="comma-separated k values ('sqrt': round(√T))")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--system-malloc", action="store_true")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    Ts = [int(t) for t in args.T.split(",")]
    if args.quick:
        Ts, args.repeats = [200, 1000], 1
        args.out = str(Path(args.out) / "quick")
    res = {"date": datetime.date.today().isoformat(), "machine": machine_info(),
           "repeats": args.repeats, "B": B, "I": I, "H": H, "K": K, "cases": []}
    for model in args.models.split(","):
        dims = spec_dims(model, I, H, K)
        text = spec_path(model).read_text()
        full = rnnspec.compile_source(text, dims, model)
        params = bench_params(full, dims, np.float64)
        for T in Ts:
            x, y = problem(B, T, I, K, np.float64)
            ref_row, loss, grads = measure(full, params, x, y, args.repeats)
            ref = (loss, grads)
            rows = [dict(ref_row, model=model, T=T, k=None, time_ratio=1.0)]
            del grads
            for k in k_values(T, args.ks.split(",")):
                mod = rnnspec.compile_source(text, dims, f"{model}_ck{k}", checkpoint=k)
                row, loss, grads = measure(mod, params, x, y, args.repeats)
                diff = max_rel_diff(ref, (loss, grads))
                if not diff <= 1e-10:  # a benchmark of wrong gradients is not a result
                    sys.exit(f"{model} T={T} checkpoint={k}: the loss or a gradient differs from "
                             f"the full cache's by {diff:.1e} (relative): not timed further")
                rows.append(dict(row, model=model, T=T, k=k,
                                 time_ratio=row["median_ms"] / ref_row["median_ms"],
                                 max_rel_diff=diff))
                del grads
            for r in rows:
                print(f"{model:6} T={T:6} k={str(r['k']):5} {r['median_ms']:9.0f} ms  cache "
                      f"{r['cache_bytes'] / 2**20:8.1f} MB  peak {r['peak_bytes'] / 2**20:8.1f} "
                      f"MB", flush=True)
            res["cases"] += rows
            del ref
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (out / "checkpoint.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
