#!/usr/bin/env python
"""Fuzz rnnspec with mutants of the specs in specs/, each run the way `rnnspec compile` runs it.

    python benchmarks/fuzz.py 1000                       # 1000 mutants, seed 0, one worker
    python benchmarks/fuzz.py 10000 --seed 3 --jobs 2 --out /tmp/fuzz-failures
    python benchmarks/fuzz.py --files tests/fuzz_findings/*.rnn   # run given spec files instead
    python benchmarks/fuzz.py --show 1234 --seed 3      # print mutant 1234 of seed 3

Mutant i of seed S is reproducible: it is made by ``rnnspec.mutate.mutant`` from a
``random.Random(f"{S}:{i}")`` (one to three edits of one spec of specs/, other specs as splice
donors).  Each case runs in a worker process with a timeout (--timeout, default 10 s) and a memory
limit (--memory-gb, default 4, through resource.setrlimit(RLIMIT_AS)): analyze (parse, imports
relative to specs/, check, graph, schedule), generate the module with every dim capped at 4,
import it, and gradient-check it at T = 4 steps per axis (more if the spec reads h[end-k]),
batch 2, seed 0, as `rnnspec compile` does before writing a module.  Outcomes:

  refused          a SpecError whose diagnostics all have a position (line, column, hint)
  checked          compiled, imported and passed its gradient check
  nonfinite        compiled, but the check's forward pass overflows to inf/NaN for these
                   values (e.g. exp(1e300)); reported to the user as such, not a wrong gradient
  crash            any other exception (a traceback a user would see), or a SpecError
                   without a position, or the worker died
  hang             over the timeout, or out of memory under the limit
  gradfail         compiled, but the gradient check fails
  import-fail      the generated module does not import

It prints the counts by outcome and writes each crash, hang, gradfail and import-fail mutant to
--out (default benchmarks/results/fuzz-failures/) as NNNNNN_outcome.rnn, with what happened in a
.txt beside it.  Exit status 1 if any case failed.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
import traceback
import warnings
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # fuzz the checkout's rnnspec, not an installed copy

SPECS_DIR = ROOT / "specs"
OUTCOMES = ("refused", "checked", "nonfinite", "crash", "hang", "gradfail", "import-fail")
FAILURES = ("crash", "hang", "gradfail", "import-fail")


def spec_texts():
    """(name, text) of every spec in specs/ (the mutants' sources and splice donors)."""
    return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(SPECS_DIR.glob("*.rnn"))]


def make_mutant(seed, i, specs) -> str:
    from rnnspec.mutate import mutant
    rng = random.Random(f"{seed}:{i}")
    _, text = specs[rng.randrange(len(specs))]
    return mutant(text, rng, [t for _, t in specs])


def _positioned(exc, filename: str) -> bool:
    return bool(exc.diagnostics) and all(
        d.line >= 1 and d.column >= 1 and d.message and d.hint for d in exc.diagnostics)


def run_case(text: str, filename: str = "fuzz.rnn", base=SPECS_DIR):
    """(outcome, detail) of compiling ``text`` the way `rnnspec compile` does (see the module's
    docstring); MemoryError is 'hang' (out of memory)."""
    import numpy as np
    from rnnspec import SpecError
    from rnnspec.api import analyze, generate, load_module, render
    from rnnspec.gradcheck import CheckTooLarge, compile_check, compile_dims
    try:
        a = analyze(text, None, filename, base)
        render(a)
        small = compile_dims(a.model.dims)  # as `rnnspec compile` checks
        source = generate(text, small, filename, base)
    except SpecError as exc:
        if _positioned(exc, filename):
            return "refused", str(exc).split("\n", 1)[0]
        return "crash", "SpecError without a position:\n" + str(exc)
    except MemoryError:
        return "hang", "MemoryError\n" + traceback.format_exc()
    except Exception:  # noqa: BLE001 - the point of fuzzing
        return "crash", traceback.format_exc()
    try:
        mod = load_module(source, "fuzz")
    except MemoryError:
        return "hang", "MemoryError\n" + traceback.format_exc()
    except Exception:  # noqa: BLE001
        return "import-fail", traceback.format_exc()
    try:
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
            warnings.simplefilter("always")
            report = compile_check(mod, small)  # bounded, as `rnnspec compile` runs it
        overflow = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
                    and "underflow" not in str(w.message)]  # (underflow to 0 is harmless)
    except CheckTooLarge as exc:  # refused up front with the work or memory it would need
        return "refused", str(exc).split("\n", 1)[0]
    except SpecError as exc:  # e.g. a dim or step count refused by the module's validation
        if _positioned(exc, filename):
            return "refused", str(exc).split("\n", 1)[0]
        return "crash", "SpecError without a position:\n" + str(exc)
    except MemoryError:
        return "hang", "MemoryError\n" + traceback.format_exc()
    except Exception:  # noqa: BLE001
        return "crash", traceback.format_exc()
    finally:
        _forget(mod)
    if report.ok:
        return "checked", ""
    if report.nonfinite or overflow:
        return "nonfinite", report.nonfinite or "; ".join(sorted(set(overflow)))
    return "gradfail", report.table()


def _forget(mod) -> None:
    """Drop a generated module from sys.modules and linecache (a worker runs thousands)."""
    import linecache
    for key in [k for k, v in sys.modules.items() if v is mod]:
        del sys.modules[key]
    linecache.cache.pop(getattr(mod, "__file__", None), None)


# ----- workers --------------------------------------------------------------------------------
def _worker(conn, memory_bytes: int) -> None:
    if memory_bytes:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        key, text, filename = job
        try:
            result = run_case(text, filename)
        except MemoryError:
            result = ("hang", "MemoryError outside the stages")
        except BaseException:  # noqa: BLE001
            result = ("crash", traceback.format_exc())
        conn.send((key,) + tuple(result))


class Worker:
    def __init__(self, ctx, memory_bytes):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, memory_bytes), daemon=True)
        self.proc.start()
        child.close()
        self.job = None
        self.deadline = None
        self.done = 0

    def give(self, job, timeout):
        self.job = job
        self.deadline = time.monotonic() + timeout
        self.conn.send(job)

    def kill(self):
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def run_all(jobs_iter, total, n_workers, timeout, memory_bytes, on_result, recycle=300):
    """Run (key, text, filename) jobs in ``n_workers`` processes; ``on_result(key, outcome,
    detail, text)`` for each.  A worker over its deadline is killed (outcome 'hang'); one that
    dies is a 'crash'; each is replaced, and every worker is replaced after ``recycle`` cases."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    jobs_iter = iter(jobs_iter)
    workers = [Worker(ctx, memory_bytes) for _ in range(max(1, min(n_workers, total)))]
    texts = {}
    pending = True

    def feed(w):
        nonlocal pending
        if not pending:
            return
        try:
            job = next(jobs_iter)
        except StopIteration:
            pending = False
            return
        texts[job[0]] = job[1]
        w.give(job, timeout)

    for w in workers:
        feed(w)
    while any(w.job for w in workers):
        busy = [w for w in workers if w.job]
        left = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=left)
        now = time.monotonic()
        for i, w in enumerate(workers):
            if not w.job:
                continue
            result = None
            if w.conn in ready:
                try:
                    result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
            if result is not None:
                key, outcome, detail = result
                w.job = None
                w.done += 1
                on_result(key, outcome, detail, texts.pop(key))
                if w.done >= recycle:
                    w.conn.send(None)
                    w.proc.join(5)
                    w.kill()
                    workers[i] = w = Worker(ctx, memory_bytes)
                feed(w)
            elif w.proc.sentinel in ready or now >= w.deadline:
                key = w.job[0]
                if now >= w.deadline and w.proc.is_alive():
                    outcome, detail = "hang", f"over the {timeout:g} s timeout"
                else:
                    outcome, detail = "crash", f"the worker died (exit code {w.proc.exitcode})"
                w.kill()
                on_result(key, outcome, detail, texts.pop(key))
                workers[i] = w = Worker(ctx, memory_bytes)
                feed(w)
    for w in workers:
        try:
            w.conn.send(None)
        except OSError:
            pass
        w.proc.join(5)
        if w.proc.is_alive():
            w.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=1000, help="number of mutants (1000)")
    ap.add_argument("--seed", default="0", help="seed of the mutants (0)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case (10)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1)")
    ap.add_argument("--memory-gb", type=float, default=4.0,
                    help="address-space limit per worker in GB, 0 for none (4)")
    ap.add_argument("--out", default=str(HERE / "results" / "fuzz-failures"),
                    help="directory for the failing mutants")
    ap.add_argument("--start", type=int, default=0, help="first mutant index (0)")
    ap.add_argument("--files", nargs="+", help="run these spec files instead of mutants")
    ap.add_argument("--show", type=int, help="print mutant SHOW of --seed and exit")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every failure's detail")
    args = ap.parse_args(argv)
    specs = spec_texts()
    if args.show is not None:
        sys.stdout.write(make_mutant(args.seed, args.show, specs))
        return 0
    if args.files:
        paths = [Path(f) for f in args.files if not f.endswith((".md", ".txt"))]
        jobs = [(p.name, p.read_text(encoding="utf-8", errors="surrogateescape"), p.name)
                for p in paths]
        total = len(jobs)
    else:
        total = args.n
        jobs = ((i, make_mutant(args.seed, i, specs), "fuzz.rnn")
                for i in range(args.start, args.start + args.n))
    out = Path(args.out)
    counts = Counter()
    started = time.monotonic()
    done = [0]

    def on_result(key, outcome, detail, text):
        counts[outcome] += 1
        done[0] += 1
        if args.files:
            print(f"{key}: {outcome}" + (f": {detail.strip().splitlines()[-1]}"
                                         if detail and outcome != "checked" else ""))
            if args.verbose and outcome in FAILURES:
                print(detail)
        elif outcome in FAILURES:
            out.mkdir(parents=True, exist_ok=True)
            stem = f"{key:06d}_{outcome}"
            (out / f"{stem}.rnn").write_text(text, encoding="utf-8", errors="surrogateescape")
            (out / f"{stem}.txt").write_text(f"seed {args.seed}, mutant {key}\n{detail}\n",
                                             encoding="utf-8", errors="replace")
            if args.verbose:
                print(f"{stem}: {detail}")
        if not args.files and done[0] % 1000 == 0:
            print(f"  {done[0]}/{total} ({time.monotonic() - started:.0f} s): "
                  + ", ".join(f"{k} {counts[k]}" for k in OUTCOMES if counts[k]),
                  file=sys.stderr, flush=True)

    memory = int(args.memory_gb * 2 ** 30)
    run_all(jobs, total, args.jobs, args.timeout, memory, on_result)
    elapsed = time.monotonic() - started
    what = f"{total} files" if args.files else \
        f"{total} mutants (seed {args.seed}, from {args.start})"
    print(f"{what} in {elapsed:.0f} s, {args.jobs} jobs, timeout {args.timeout:g} s, "
          f"memory {args.memory_gb:g} GB:")
    for k in OUTCOMES:
        print(f"  {k:<12} {counts[k]}")
    bad = sum(counts[k] for k in FAILURES)
    if bad and not args.files:
        print(f"failing mutants written to {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
