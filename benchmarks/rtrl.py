#!/usr/bin/env python
"""RTRL against BPTT: time and peak memory of the generated rtrl (compile --rtrl) and of
loss_and_grad (BPTT) on elman.rnn, batch 1, float64, with the measured growth exponents.

    python benchmarks/rtrl.py                 # H = 8..128 at T = 100, T = 10..10^4 at H = 16
    python benchmarks/rtrl.py --quick         # fewer sizes
    python benchmarks/rtrl.py --library       # also rnnspec.rtrl (from one-step VJPs; slow)

Peak memory is tracemalloc's (NumPy's buffers included); time is the median of 3 runs (one run
for the largest sizes)."""
import argparse
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

import rnnspec
from rnnspec.gradcheck import random_problem

SPEC = Path(__file__).resolve().parent.parent / "specs" / "elman.rnn"


def measure(f, reps=3):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    f()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak


def row(H, T, library=False):
    mod = rnnspec.compile_file(SPEC, dims={"n": H, "m": 8}, rtrl=True)
    p, x, y, _, _ = random_problem(mod, None, T, 1, 0)
    reps = 1 if H ** 4 * T > 1e8 or T > 3000 else 3
    t_r, m_r = measure(lambda: mod.rtrl(p, x, y), reps=reps)
    t_b, m_b = measure(lambda: mod.loss_and_grad(p, x, y))
    out = [t_r, m_r, t_b, m_b]
    if library:
        out += measure(lambda: rnnspec.rtrl(mod, p, x, y), reps=1)
    return out


def slope(xs, ys):
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def table(name, values, rows):
    lib = len(rows[0]) > 4
    print(f"| {name} | RTRL ms | RTRL peak MB | BPTT ms | BPTT peak MB |"
          + (" library rtrl ms | library peak MB |" if lib else ""))
    print("|--:|--:|--:|--:|--:|" + ("--:|--:|" if lib else ""))
    for v, r in zip(values, rows):
        print(f"| {v} | {1e3 * r[0]:.1f} | {r[1] / 1e6:.2f} | {1e3 * r[2]:.2f} | {r[3] / 1e6:.2f} |"
              + (f" {1e3 * r[4]:.1f} | {r[5] / 1e6:.2f} |" if lib else ""))
    cols = list(zip(*rows))
    print(f"\ngrowth exponents (log-log slope over {name}): RTRL time {slope(values, cols[0]):.2f} "
          f"(last two sizes: {slope(values[-2:], cols[0][-2:]):.2f}), "
          f"RTRL memory {slope(values, cols[1]):.2f} "
          f"(last two: {slope(values[-2:], cols[1][-2:]):.2f}), "
          f"BPTT time {slope(values, cols[2]):.2f}, BPTT memory {slope(values, cols[3]):.2f} "
          f"(last two: {slope(values[-2:], cols[3][-2:]):.2f})\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--library", action="store_true",
                    help="also time rnnspec.rtrl, RTRL from the module's one-step VJPs")
    args = ap.parse_args()
    Hs = [8, 16, 32] if args.quick else [8, 16, 32, 64, 128]
    Ts = [10, 100, 300] if args.quick else [10, 100, 1000, 10000]
    print(f"elman.rnn, batch 1, float64, m = 8; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    table("H (T = 100)", Hs, [row(H, 100, args.library) for H in Hs])
    table("T (H = 16)", Ts, [row(16, T, args.library) for T in Ts])


if __name__ == "__main__":
    main()
