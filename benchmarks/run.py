#!/usr/bin/env python
"""Benchmark the generated forward + BPTT code against hand-written NumPy, PyTorch and JAX.

    python benchmarks/run.py                 # the full run (all four sizes), ~15 min on 2 cores
    python benchmarks/run.py --quick         # smoke run: the two small sizes, few repeats
    python benchmarks/run.py --sizes 1,2 --models lstm --dtypes float32 --out /tmp/bench
    python benchmarks/run.py --sizes 1 --impls generated,expert,jax,torch
    python benchmarks/run.py --backend-only --sizes 1,2   # generated vs numba vs jax only

For elman.rnn, lstm.rnn and gru.rnn at each size (B, T, I, H, K) and in float32 and float64,
it times loss + all gradients of
  generated  the module rnnspec generates from the spec (compiled fresh, with the size's dims),
  expert     benchmarks/ref_expert.py, hand-written batched NumPy (fused, preallocated),
  naive      benchmarks/ref_naive.py, per-step per-cell NumPy in the style of the source texts,
  torch      benchmarks/ref_torch.py, PyTorch CPU autograd (when torch is importable),
  jax        benchmarks/ref_jax.py, jax.jit(jax.value_and_grad(loss)) over lax.scan (when jax is
             importable; a benchmark-only dependency),
  numba      the module rnnspec generates with backend="numba" (when rnnspec has that backend),
interleaved round-robin after one warm-up each, and reports medians, ratios, the fraction of
NumPy's matrix-multiply throughput measured in the same run, the size of the forward cache, and
the first call of each implementation (for jax and numba: the JIT compile, first call minus the
median).  --impls chooses the columns.  Before timing, every implementation (torch where it
computes the same function) is checked against the generated module in float64 at a small size.
See benchmarks/README.md.
"""
import os
import sys

# Timings measure steady-state computation: see steady_malloc.py (--system-malloc: not).
if __name__ == "__main__":
    import steady_malloc  # (the script's directory is on sys.path)
    steady_malloc.reexec(__file__)

import argparse
import datetime
import gc
import hashlib
import json
import platform
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # benchmark the checkout's rnnspec, not an installed copy

import numpy as np  # noqa: E402

import rnnspec  # noqa: E402
from ref_expert import EXPERT  # noqa: E402
from ref_naive import NAIVE  # noqa: E402
import ref_jax  # noqa: E402
import ref_torch  # noqa: E402

SIZES = [(1, 50, 10, 32, 10), (32, 100, 64, 128, 64), (32, 100, 256, 256, 256),
         (64, 200, 512, 512, 512)]
REPEATS = [31, 15, 7, 5]         # per size, full run
QUICK_SIZES, QUICK_REPEATS = [0, 1], 3
MODELS = ["elman", "lstm", "gru"]
DTYPES = {"float32": np.float32, "float64": np.float64}
IMPLS = ["generated", "expert", "naive", "torch", "jax", "numba"]
BACKEND_IMPLS = ["generated", "numba", "jax"]   # --backend-only
JIT_IMPLS = ["jax", "numba"]     # their first call compiles: reported separately
GATES = {"elman": 1, "lstm": 4, "gru": 3}
CHECK_SIZE = (3, 6, 4, 5, 4)     # B, T, I, H, K of the float64 equality check


def spec_path(model):
    return ROOT / "specs" / f"{model}.rnn"


def spec_dims(model, I, H, K):
    if model == "elman":
        if I != K:
            return None  # elman.rnn has one size m for the input and the output
        return {"m": I, "n": H}
    return {"in": I, "hidden": H, "out": K}


def model_flops(model, B, T, I, H, K):
    """FLOPs of the matrix products of forward + backward (2 per multiply-add).

    Every product X @ W (rows N = T*B) of the forward pass costs 2*N*rows*cols, and the backward
    pass has two of the same size (the gradient of X and of W): 3x in all.  The products are the
    input projections (G*H x I), the recurrent ones (G*H x H) and the head (K x H), with G = 1, 4,
    3 gates blocks for elman, lstm, gru.
    """
    G = GATES[model]
    return 6 * T * B * (G * H * I + G * H * H + K * H)


# --------------------------------------------------------------------------------------------
# implementations

class Generated:
    def __init__(self, mod, params):
        self.mod, self.params = mod, params

    def prepare(self, x, y):
        return {"x": x}, {"y": y}

    def loss_and_grad(self, inputs, targets):
        return self.mod.loss_and_grad(self.params, inputs, targets)

    def cache_bytes(self, inputs, targets):
        _, cache = self.mod.forward(self.params, inputs, targets)
        return array_bytes({k: v for k, v in cache.items() if k != "params"})


class Expert:
    def __init__(self, model, params):
        self.ref = EXPERT[model](params)

    def prepare(self, x, y):
        return self.ref.prepare(x, y)

    def loss_and_grad(self, x, y):
        return self.ref.loss_and_grad(x, y)

    def spec_grads(self, grads):
        return self.ref.grads_to_spec(grads)

    def cache_bytes(self, x, y):
        _, cache = self.ref.forward(x, y)
        return array_bytes(cache)


def numba_source(model, dims):
    """The module rnnspec generates from the spec with backend="numba"."""
    path = spec_path(model)
    return rnnspec.api.generate(path.read_text(encoding="utf-8"), dims, str(path),
                                backend="numba")


def numba_unsupported():
    """None when this rnnspec generates a numba module that imports and runs (elman at B, T =
    2, 3), else why not."""
    step = "rnnspec.api.generate(..., backend='numba')"
    try:
        mod = rnnspec.load_module(numba_source("elman", None), "elman_numba_probe")
        step = "the numba module's loss_and_grad"
        x, y = problem(2, 3, mod.DIMS["m"], mod.DIMS["m"], np.float64)
        mod.loss_and_grad(mod.init_params(), {"x": x}, {"y": y})
    except Exception as e:  # TypeError while generate has no backend=; ImportError without numba
        return (f"{step} failed: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}")
    return None


def impl_notes(wanted, no_torch):
    """{column: why it is skipped} for the wanted columns that cannot run here."""
    notes = {}
    if "torch" in wanted:
        if ref_torch.torch is None:
            notes["torch"] = f"torch is not importable ({ref_torch.IMPORT_ERROR})"
        elif no_torch:
            notes["torch"] = "--no-torch"
    if "jax" in wanted and ref_jax.jax is None:
        notes["jax"] = f"jax is not importable ({ref_jax.IMPORT_ERROR})"
    if "numba" in wanted:
        reason = numba_unsupported()
        if reason:
            notes["numba"] = reason
    return notes


def array_bytes(obj):
    """Bytes of the distinct buffers of all arrays in a (nested) container; views count once."""
    seen = {}

    def walk(o):
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            seen[id(base)] = base.nbytes
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
    walk(obj)
    return sum(seen.values())


def make_impls(model, mod, params, names, dims, setup_s=None):
    """{name: implementation} for the columns ``names`` (in that order), all with ``params``;
    the numba module is generated and imported here with ``dims`` (``setup_s``: a dict that
    receives each one's construction time, which for numba includes any compile at import)."""
    make = {"generated": lambda: Generated(mod, params),
            "expert": lambda: Expert(model, params),
            "naive": lambda: NAIVE[model](params),
            "torch": lambda: ref_torch.TorchModel(model, params),
            "jax": lambda: ref_jax.JaxModel(model, params),  # its calls block until done
            "numba": lambda: Generated(rnnspec.load_module(numba_source(model, dims),
                                                           f"{model}_numba"), params)}
    impls = {}
    for name in names:
        t0 = time.perf_counter()
        impls[name] = make[name]()
        if setup_s is not None:
            setup_s[name] = time.perf_counter() - t0
    return impls


def bench_params(mod, dims, dtype, seed=0):
    """mod.init_params, with matrices the spec draws from normal(std) rescaled by
    1/sqrt(columns): elman.rnn's normal(1.0) (the worked example's 3x5 matrices) saturates tanh
    and overflows the float32 gradients to inf/nan at H = 256, which is not a workload."""
    params = mod.init_params(dims, seed=seed, dtype=dtype)
    for name, (kind, _) in mod.INITS.items():
        if kind == "normal" and params[name].ndim == 2:
            params[name] = (params[name] / np.sqrt(params[name].shape[1])).astype(dtype)
    return params


def problem(B, T, I, K, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    y = rng.integers(0, K, size=(T, B))
    return x, y


# --------------------------------------------------------------------------------------------
# the equality check

def compare(ref_loss, ref_grads, loss, grads, rtol=1e-7, atol=1e-10):
    """Max relative error over the loss and every gradient array; a list of mismatches."""
    bad, worst = [], abs(loss - ref_loss) / max(abs(ref_loss), 1e-300)
    if not np.isclose(loss, ref_loss, rtol=rtol, atol=atol):
        bad.append(f"loss {loss!r} != {ref_loss!r}")
    for group in ("params", "inputs", "state0"):
        for name, want in ref_grads[group].items():
            got = grads.get(group, {}).get(name)
            if got is None:
                bad.append(f"{group}.{name} missing")
                continue
            got = np.asarray(got)
            if got.shape != want.shape:
                bad.append(f"{group}.{name} shape {got.shape} != {want.shape}")
                continue
            err = np.max(np.abs(got - want) / (np.abs(want) + atol / rtol)) if want.size else 0.0
            worst = max(worst, float(err))
            if not np.allclose(got, want, rtol=rtol, atol=atol):
                bad.append(f"{group}.{name} max abs diff {np.max(np.abs(got - want)):.3e}")
    return worst, bad


def run_checks(names, models):
    """float64 at a small size: every implementation in ``names`` (torch where it is the same
    function) must give the generated module's loss and gradients."""
    B, T, I, H, K = CHECK_SIZE
    results, fatal = [], []
    for model in models:
        dims = spec_dims(model, I, H, K)
        mod = rnnspec.compile_file(spec_path(model), dims=dims)
        params = mod.init_params(dims, seed=1, dtype=np.float64)
        x, y = problem(B, T, I, K, np.float64, seed=1)
        ref_loss, ref_grads = mod.loss_and_grad(params, {"x": x}, {"y": y})
        impls = make_impls(model, mod, params, names, dims)
        for name, impl in impls.items():
            if name == "generated":
                continue
            if name == "torch" and not ref_torch.SAME_FUNCTION[model]:
                results.append({"model": model, "impl": name, "ok": None,
                                "note": "not compared: torch's GRU applies r after W_hn"})
                continue
            args = impl.prepare(x, y)
            loss, grads = impl.loss_and_grad(*args)
            if name == "expert":
                grads = impl.spec_grads(grads)
            elif name == "torch":
                grads = impl.spec_grads(*args)
            elif name == "jax":
                loss, grads = impl.spec_result((loss, grads))
            worst, bad = compare(ref_loss, ref_grads, loss, grads)
            results.append({"model": model, "impl": name, "ok": not bad, "max_rel_err": worst,
                            "mismatches": bad})
            if bad and name != "torch":
                fatal.append(f"{name} {model}: " + "; ".join(bad))
    return results, fatal


# --------------------------------------------------------------------------------------------
# machine and throughput

def machine_info():
    model, cores = platform.processor() or platform.machine(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name" and model == (platform.processor()
                                                               or platform.machine()):
                    model = val.strip()
                elif key.strip() == "cpu cores" and cores is None:
                    cores = int(val.strip())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:
        pass
    return {"cpu": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "cores_per_socket": cores, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas}


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def blas_threads(usable):
    for var in THREAD_VARS[:3]:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return usable


def matmul_gflops(n, k, m, dtype, samples=5, min_time=0.05):
    """Median GFLOP/s of NumPy's (n x k) @ (k x m) product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((k, m)).astype(dtype)
    out = np.empty((n, m), dtype)
    np.matmul(a, b, out=out)
    reps, t = 1, 0.0
    while True:  # calibrate the inner repetitions
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        t = time.perf_counter() - t0
        if t >= min_time:
            break
        reps *= 2
    times = [t / reps]
    for _ in range(samples - 1):
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        times.append((time.perf_counter() - t0) / reps)
    return 2.0 * n * k * m / statistics.median(times) / 1e9


# --------------------------------------------------------------------------------------------
# compile pipeline

def default_sources(models):
    """The generated modules at the specs' default dims: {model: source}."""
    return {m: rnnspec.generate(spec_path(m).read_text(encoding="utf-8"), None,
                                str(spec_path(m))) for m in models}


def time_compile():
    path = spec_path("lstm")
    text = path.read_text(encoding="utf-8")
    t0 = time.perf_counter()
    src = rnnspec.generate(text, None, str(path))
    first = time.perf_counter() - t0
    gen = []
    for _ in range(20):
        t0 = time.perf_counter()
        rnnspec.generate(text, None, str(path))
        gen.append(time.perf_counter() - t0)
    mod = rnnspec.load_module(src, "lstm_default")
    from rnnspec.gradcheck import compile_dims
    small = compile_dims(mod.DIMS)  # as `rnnspec compile` does
    gc_times, ok = [], True
    for _ in range(3):
        t0 = time.perf_counter()
        small_mod = rnnspec.load_module(rnnspec.generate(text, small, str(path)), "lstm_small")
        t1 = time.perf_counter()
        report = rnnspec.gradcheck(small_mod, small, T=4, batch=2, seed=0)
        t2 = time.perf_counter()
        gc_times.append((t1 - t0, t2 - t1))
        ok = ok and report.ok
    return {"spec": "specs/lstm.rnn", "generate_first_s": first,
            "generate_median_s": statistics.median(gen),
            "gradcheck_dims": small, "gradcheck_T": 4, "gradcheck_batch": 2,
            "gradcheck_median_s": statistics.median(t for _, t in gc_times),
            "gradcheck_with_small_compile_median_s": statistics.median(a + b
                                                                       for a, b in gc_times),
            "gradcheck_ok": ok}


# --------------------------------------------------------------------------------------------
# timing

def time_case(model, size, dtype_name, repeats, names, log):
    B, T, I, H, K = size
    dims = spec_dims(model, I, H, K)
    dtype = DTYPES[dtype_name]
    # compiled fresh for every case (what rnnspec.compile_file does), since the code may change
    source = rnnspec.generate(spec_path(model).read_text(encoding="utf-8"), dims,
                              str(spec_path(model)))
    mod = rnnspec.load_module(source, model)
    params = bench_params(mod, dims, dtype)
    x, y = problem(B, T, I, K, dtype)
    setup = {}
    impls = make_impls(model, mod, params, names, dims, setup)
    args = {name: impl.prepare(x, y) for name, impl in impls.items()}
    notes = []
    times = {name: [] for name in impls}
    first = {}
    for name, impl in impls.items():  # warm-up; for jax and numba the JIT compile
        gc.collect()
        t0 = time.perf_counter()
        loss, grads = impl.loss_and_grad(*args[name])
        first[name] = time.perf_counter() - t0
        if name == "generated":
            wrong = sorted(f"{g}.{n}" for g in ("params", "inputs", "state0")
                           for n, a in grads[g].items() if np.asarray(a).dtype != dtype)
            if wrong:
                notes.append(f"generated returns non-{dtype_name} gradients: {wrong}")
        del loss, grads
    gc.collect()
    for _ in range(repeats):
        for name, impl in impls.items():
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            impl.loss_and_grad(*args[name])
            times[name].append(time.perf_counter() - t0)
            gc.enable()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    cache = {n: impls[n].cache_bytes(*args[n]) for n in ("generated", "expert") if n in impls}
    del impls, args
    gc.collect()
    flops = model_flops(model, B, T, I, H, K)
    ratios = {f"generated/{n}": med["generated"] / med[n] for n in med if n != "generated"}
    if "numba" in med and "jax" in med:  # issue 13: numba vs jax.jit at small B
        ratios["numba/jax"] = med["numba"] / med["jax"]
    case = {"model": model, "dtype": dtype_name, "B": B, "T": T, "I": I, "H": H, "K": K,
            "dims": dims, "repeats": repeats, "median_s": med, "times_s": times,
            "first_call_s": first, "setup_s": setup,
            "ratios": ratios, "flops": flops,
            "gflops": {n: flops / t / 1e9 for n, t in med.items()},
            "cache_bytes": cache, "notes": notes,
            "generated_sha1": hashlib.sha1(source.encode()).hexdigest()}
    log(f"  {model:5s} {dtype_name}  " + "  ".join(f"{n} {1e3 * t:9.2f} ms"
                                                   for n, t in med.items()))
    return case


# --------------------------------------------------------------------------------------------
# output

def fmt_ms(t):
    if t is None:
        return "—"
    ms = 1e3 * t
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def markdown(res):
    m = res["machine"]
    lines = [f"# rnnspec benchmark results", "",
             f"- date: {res['date']}",
             f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs "
             f"({m['usable_cpus']} usable), {m['platform']}",
             f"- Python {m['python']}, NumPy {m['numpy']} ({m['blas']}, {res['threads']} "
             f"threads), torch {res['torch_version'] or 'not used'}"
             + (f" (set_num_threads({res['threads']}))" if res["torch_version"] else ""),
             f"- command: `{res['command']}`"
             + (f" (run with GLIBC_TUNABLES={res['glibc_tunables']}: freed memory stays in the "
                f"process, no first-touch page faults; see benchmarks/README.md)"
                if res["glibc_tunables"] else " (system malloc)"),
             ""]
    if res.get("jax_version"):
        lines[-1:-1] = [f"- jax {res['jax_version']} (XLA CPU, its own thread pool)"]
    skipped_impls = res["impl_notes"] if "impl_notes" in res else (
        {"torch": res["torch_note"]} if res["torch_note"] else {})
    if skipped_impls:
        lines += [f"- {n} skipped: {why}" for n, why in skipped_impls.items()] + [""]
    lines += medians_table(res) + jit_table(res)
    spread = {}
    for c in res["cases"]:
        for n, ts in c["times_s"].items():
            if len(ts) > 2:
                q1, _, q3 = statistics.quantiles(ts, n=4)
                spread.setdefault(n, []).append((q3 - q1) / statistics.median(ts))
    if spread:
        lines += ["", "Repeat-to-repeat spread, interquartile range / median of a case's repeats, "
                  "median over the cases: " + ", ".join(f"{n} {100 * statistics.median(v):.0f}%"
                                                 for n, v in spread.items())
                  + " (every repeat is in results.json)."]
    lines += ["", "NumPy matmul throughput measured in this run (median GFLOP/s):", "",
              "| product | dtype | GFLOP/s |", "|---|---|--:|"]
    for key, v in res["matmul"].items():
        lines.append(f"| {v['product']} | {v['dtype']} | {v['gflops']:.1f} |")
    c = res["compile"]
    if c:  # (not measured with --backend-only)
        lines += ["", "Compile pipeline (specs/lstm.rnn):", "",
                  f"- `rnnspec.generate` (parse + check + graph + schedule + codegen): "
                  f"{1e3 * c['generate_median_s']:.1f} ms median "
                  f"(first call {1e3 * c['generate_first_s']:.1f} ms)",
                  f"- automatic gradient check of `rnnspec compile` (`gradcheck(mod, "
                  f"{c['gradcheck_dims']}, T=4, batch=2)`): "
                  f"{1e3 * c['gradcheck_median_s']:.0f} ms median "
                  f"({1e3 * c['gradcheck_with_small_compile_median_s']:.0f} ms with compiling "
                  f"the small module; {'passed' if c['gradcheck_ok'] else 'FAILED'})"]
    lines += ["", f"Equality checks before timing (float64, B, T, I, H, K = "
              f"{', '.join(map(str, CHECK_SIZE))}; rtol 1e-7):", ""]
    for ch in res["checks"]:
        if ch["ok"] is None:
            lines.append(f"- {ch['impl']} vs generated, {ch['model']}: {ch['note']}")
        else:
            lines.append(f"- {ch['impl']} vs generated, {ch['model']}: "
                         f"{'equal' if ch['ok'] else 'MISMATCH ' + '; '.join(ch['mismatches'])}"
                         f" (max rel err {ch['max_rel_err']:.1e})")
    notes = [f"{c['model']} {c['dtype']} {c['B']},{c['T']},{c['I']},{c['H']},{c['K']}: {n}"
             for c in res["cases"] for n in c["notes"]] + res["skipped"]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def medians_table(res):
    """The main table: median ms per column, generated/column ratios, % mm, cache sizes."""
    cols = res.get("impls", IMPLS[:4])  # the columns that ran (before --impls: these four)
    others = [n for n in cols if n != "generated"]
    mm_cols = [n for n in ("generated", "expert") if n in cols]
    extra = [k for k in ("numba/jax",) if any(k in c["ratios"] for c in res["cases"])]
    lines = ["Forward + backward (loss and all gradients, including those of x and the initial "
             "states); median milliseconds of the repeats (after one warm-up). `% mm` is the "
             "model's matrix-product FLOP rate as a fraction of the NumPy matmul throughput "
             "measured in this run for the size's (T·B×H)·(H×H) product in the dtype. "
             "`cache MB`: the arrays of the forward cache (params excluded).", "",
             "| model | dtype | B, T, I, H, K | reps | "
             + "".join(f"{n} ms | " for n in cols)
             + "".join(f"gen/{n} | " for n in others) + "".join(f"{k} | " for k in extra)
             + "".join(f"{n[:3] if n == 'generated' else n} % mm | " for n in mm_cols)
             + "".join(f"{n[:3] if n == 'generated' else n} cache MB | " for n in mm_cols)
             .rstrip(),
             "|---|---|---|--:|" + "--:|" * (len(cols) + len(others) + len(extra)
                                              + 2 * len(mm_cols))]
    for c in res["cases"]:
        med, r = c["median_s"], c["ratios"]
        mm = res["matmul"][f"{c['B']},{c['T']},{c['H']},{c['dtype']}"]["gflops"]
        lines.append(
            f"| {c['model']} | {c['dtype']} | {c['B']}, {c['T']}, {c['I']}, {c['H']}, "
            f"{c['K']} | {c['repeats']} | "
            + "".join(f"{fmt_ms(med.get(n))} | " for n in cols)
            + "".join(f"{fmt_ratio(r.get(f'generated/{n}'))} | " for n in others)
            + "".join(f"{fmt_ratio(r.get(k))} | " for k in extra)
            + "".join(f"{100 * c['gflops'][n] / mm:.0f}% | " if n in med else "— | "
                      for n in mm_cols)
            + "".join(f"{c['cache_bytes'][n] / 2**20:.1f} | " if n in c["cache_bytes"]
                      else "— | " for n in mm_cols).rstrip())
    return lines


def jit_table(res):
    """First call and JIT compile (first call minus the median) of the jax and numba columns."""
    cols = [n for n in JIT_IMPLS if any(n in c.get("first_call_s", {}) for c in res["cases"])]
    if not cols:
        return []
    numba = "numba" in cols
    lines = ["", "JIT compile, not in the medians above: the first call of each case (the "
             "warm-up: tracing and XLA compilation for jax, numba's compilation of the "
             "generated module's functions for numba) and the compile time estimated as first "
             "call minus the median call, milliseconds."
             + (" `numba setup`: generating and importing the numba module (with any compile "
                "done at import)." if numba else ""), "",
             ("| model | dtype | B, T, I, H, K | "
              + "".join(f"{n} first call ms | {n} compile ms | " for n in cols)
              + ("numba setup ms |" if numba else "")).rstrip(),
             "|---|---|---|" + "--:|--:|" * len(cols) + ("--:|" if numba else "")]
    for c in res["cases"]:
        first, med = c.get("first_call_s", {}), c["median_s"]
        setup = c.get("setup_s", {}).get("numba")
        lines.append((
            f"| {c['model']} | {c['dtype']} | {c['B']}, {c['T']}, {c['I']}, {c['H']}, "
            f"{c['K']} | "
            + "".join(f"{fmt_ms(first[n])} | {fmt_ms(first[n] - med[n])} | " if n in first
                      else "— | — | " for n in cols)
            + (f"{fmt_ms(setup)} |" if numba else "")).rstrip())
    return lines


def parse_sizes(text):
    sizes = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        if item.isdigit():
            i = int(item)
            if not 1 <= i <= len(SIZES):
                raise argparse.ArgumentTypeError(f"size index {i} is not in 1..{len(SIZES)}")
            sizes.append(i - 1)
        else:
            parts = item.lower().split("x")
            if len(parts) != 5 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise argparse.ArgumentTypeError(
                    f"{item!r}: give a size index 1..{len(SIZES)} or BxTxIxHxK")
            sizes.append(tuple(int(p) for p in parts))
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="sizes (B, T, I, H, K): " + ", ".join(
                                     f"{i + 1} = {s}" for i, s in enumerate(SIZES)))
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: sizes 1,2 with {QUICK_REPEATS} repeats (under a minute)")
    ap.add_argument("--sizes", type=parse_sizes,
                    help="comma-separated size indices 1..4 and/or BxTxIxHxK (default: all; "
                         "--quick: 1,2)")
    ap.add_argument("--models", default=",".join(MODELS), help="default: elman,lstm,gru")
    ap.add_argument("--dtypes", default="float32,float64", help="default: float32,float64")
    ap.add_argument("--repeats", type=int, help="timed repeats per case (default: "
                    f"{', '.join(map(str, REPEATS))} by size; --quick: {QUICK_REPEATS})")
    ap.add_argument("--impls", help="comma-separated columns among " + ",".join(IMPLS)
                    + " (default: all; generated, the reference of the checks and ratios, is "
                    "always included; a column whose package or backend is missing is skipped "
                    "with the reason printed)")
    ap.add_argument("--backend-only", action="store_true",
                    help="the backends only: columns " + ",".join(BACKEND_IMPLS) + " (unless "
                    "--impls), no compile-pipeline timing, no peak matmul; results default to "
                    "benchmarks/results/backends")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--system-malloc", action="store_true",
                    help="do not re-run with GLIBC_TUNABLES keeping freed memory in the process")
    ap.add_argument("--out", type=Path, help="results directory (default: benchmarks/results; "
                    "--quick: benchmarks/results/quick)")
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                    help="only rewrite results.md next to RESULTS_JSON from it, and print it")
    args = ap.parse_args(argv)
    if args.render:
        md = markdown(json.loads(args.render.read_text(encoding="utf-8")))
        (args.render.parent / "results.md").write_text(md, encoding="utf-8")
        print(md)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; choose from {MODELS}")
    for d in dtypes:
        if d not in DTYPES:
            ap.error(f"unknown dtype {d!r}; choose from {list(DTYPES)}")
    wanted = [n.strip() for n in (args.impls or ",".join(
        BACKEND_IMPLS if args.backend_only else IMPLS)).split(",") if n.strip()]
    for n in wanted:
        if n not in IMPLS:
            ap.error(f"unknown implementation {n!r}; choose from {IMPLS}")
    wanted = [n for n in IMPLS if n in wanted or n == "generated"]
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else list(range(len(SIZES)))
    sizes = [(SIZES[s], QUICK_REPEATS if args.quick else REPEATS[s]) if isinstance(s, int)
             else (s, QUICK_REPEATS if args.quick else 3) for s in args.sizes]
    if args.repeats:
        sizes = [(s, args.repeats) for s, _ in sizes]
    out = args.out or (HERE / "results" / ("quick" if args.quick else
                                           "backends" if args.backend_only else ""))

    def log(msg):
        print(msg, flush=True)

    started = time.perf_counter()
    machine = machine_info()
    threads = blas_threads(machine["usable_cpus"])
    notes = impl_notes(wanted, args.no_torch)
    names = [n for n in wanted if n not in notes]
    with_torch = "torch" in names
    torch_note = notes.get("torch")
    if with_torch:
        ref_torch.torch.set_num_threads(threads)
    log(f"machine: {machine['cpu']}, {machine['usable_cpus']} CPUs; numpy {np.__version__} "
        f"({machine['blas']}); torch "
        f"{ref_torch.torch.__version__ if ref_torch.torch else 'not installed'}; jax "
        f"{ref_jax.jax.__version__ if ref_jax.jax else 'not installed'}; {threads} threads")
    for n, why in notes.items():
        log(f"{n} column skipped: {why}")
    log(f"columns: {', '.join(names)}")

    log(f"checking {', '.join(n for n in names if n != 'generated') or 'nothing'} against the "
        f"generated modules (float64) ...")
    checks, fatal = run_checks(names, models)
    for ch in checks:
        state = ch["note"] if ch["ok"] is None else ("ok" if ch["ok"] else "MISMATCH")
        log(f"  {ch['impl']:6s} {ch['model']:5s} {state}"
            + (f" (max rel err {ch['max_rel_err']:.1e})" if ch["ok"] is not None else ""))
    if fatal:
        for f in fatal:
            log(f"FAILED: {f}")
        raise SystemExit("a reference disagrees with the generated module; not timing")

    sources = default_sources(models)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generated").mkdir(exist_ok=True)
    for m, src in sources.items():  # the code that was measured, for reading the results
        (out / "generated" / f"{m}.py").write_text(src, encoding="utf-8")

    comp = None if args.backend_only else time_compile()
    if comp:
        log("compile pipeline (specs/lstm.rnn):")
        log(f"  rnnspec.generate: {1e3 * comp['generate_median_s']:.1f} ms median "
            f"(first call {1e3 * comp['generate_first_s']:.1f} ms)")
        log(f"  gradcheck of `rnnspec compile` ({comp['gradcheck_dims']}, T=4, batch=2): "
            f"{1e3 * comp['gradcheck_median_s']:.0f} ms median "
            f"({'passed' if comp['gradcheck_ok'] else 'FAILED'})")

    matmul, cases, skipped = {}, [], []
    for size, repeats in sizes:
        B, T, I, H, K = size
        log(f"size B={B} T={T} I={I} H={H} K={K} ({repeats} repeats)")
        for dtype_name in dtypes:
            key = f"{B},{T},{H},{dtype_name}"
            if key not in matmul:
                g = matmul_gflops(T * B, H, H, DTYPES[dtype_name])
                matmul[key] = {"product": f"({T * B}×{H})·({H}×{H})", "dtype": dtype_name,
                               "gflops": g}
                log(f"  numpy matmul ({T * B}x{H})@({H}x{H}) {dtype_name}: {g:.1f} GFLOP/s")
        for model in models:
            if spec_dims(model, I, H, K) is None:
                skipped.append(f"{model} skipped at {size}: elman.rnn needs I == K")
                continue
            for dtype_name in dtypes:
                cases.append(time_case(model, size, dtype_name, repeats, names, log))
    for dtype_name in ([] if args.backend_only else dtypes):  # the machine's peak
        key = f"peak,{dtype_name}"
        matmul[key] = {"product": "(2048×2048)·(2048×2048)", "dtype": dtype_name,
                       "gflops": matmul_gflops(2048, 2048, 2048, DTYPES[dtype_name], samples=3,
                                               min_time=0.2)}

    changed = [m for m, src in default_sources(models).items() if src != sources[m]]
    if changed:
        skipped.append(f"the generated code of {', '.join(changed)} changed during the run "
                       f"(rnnspec was edited); generated/ holds the version from the start")
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "command": "".join(f"{v}={os.environ[v]} " for v in THREAD_VARS if v in os.environ)
           + "python benchmarks/run.py" + ("" if argv is None and len(sys.argv) < 2
                                           else " " + " ".join(argv or sys.argv[1:])),
           "machine": machine, "threads": threads,
           "torch_version": ref_torch.torch.__version__ if with_torch else None,
           "torch_note": torch_note, "rnnspec_version": rnnspec.__version__,
           "jax_version": ref_jax.jax.__version__ if "jax" in names else None,
           "impls": names, "impls_wanted": wanted, "impl_notes": notes,
           "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
           "generated_sha1": {m: hashlib.sha1(src.encode()).hexdigest()
                              for m, src in sources.items()},
           "checks": checks, "compile": comp, "matmul": matmul, "cases": cases,
           "skipped": skipped, "total_s": time.perf_counter() - started}
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n",
                                      encoding="utf-8")
    md = markdown(res)
    (out / "results.md").write_text(md, encoding="utf-8")
    print()
    print(md)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'} "
        f"({res['total_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
