#!/usr/bin/env python
"""RTRL against BPTT: time and peak memory of rnnspec.rtrl and of loss_and_grad (BPTT) on
elman.rnn, batch 1, float64, with the measured growth exponents.

    python benchmarks/rtrl.py                 # H = 8..64 at T = 100, T = 10..3000 at H = 16
    python benchmarks/rtrl.py --quick         # fewer sizes

Peak memory is tracemalloc's (NumPy's buffers included); time is the median of 3 runs."""
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


def row(H, T):
    mod = rnnspec.compile_file(SPEC, dims={"n": H, "m": 8})
    p, x, y, _, _ = random_problem(mod, None, T, 1, 0)
    t_r, m_r = measure(lambda: rnnspec.rtrl(mod, p, x, y), reps=1 if H * H * T > 2e5 else 3)
    t_b, m_b = measure(lambda: mod.loss_and_grad(p, x, y))
    return t_r, m_r, t_b, m_b


def slope(xs, ys):
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def table(name, values, rows):
    print(f"| {name} | RTRL ms | RTRL peak MB | BPTT ms | BPTT peak MB |")
    print("|--:|--:|--:|--:|--:|")
    for v, (t_r, m_r, t_b, m_b) in zip(values, rows):
        print(f"| {v} | {1e3 * t_r:.1f} | {m_r / 1e6:.2f} | {1e3 * t_b:.2f} | {m_b / 1e6:.2f} |")
    cols = list(zip(*rows))
    print(f"\ngrowth exponents (log-log slope over {name}): RTRL time {slope(values, cols[0]):.2f}, "
          f"RTRL memory {slope(values, cols[1]):.2f}, BPTT time {slope(values, cols[2]):.2f}, "
          f"BPTT memory {slope(values, cols[3]):.2f}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    Hs = [8, 16, 32] if args.quick else [8, 16, 32, 64]
    Ts = [10, 100, 300] if args.quick else [10, 100, 1000, 3000]
    print(f"elman.rnn, batch 1, float64, m = 8; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    table("H (T = 100)", Hs, [row(H, 100) for H in Hs])
    table("T (H = 16)", Ts, [row(16, T) for T in Ts])


if __name__ == "__main__":
    main()
