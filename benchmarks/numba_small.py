#!/usr/bin/env python
"""Small batches: the numba backend against the NumPy backend and jax.jit.

    python benchmarks/numba_small.py                      # B = 1, 2, 4, 32; elman, lstm, gru
    python benchmarks/numba_small.py --batches 1 --models lstm --dtypes float64 --repeats 51

For each model (specs/elman.rnn, lstm.rnn, gru.rnn at T = 50, in = out = 10, hidden = 32 as in
benchmarks/run.py's first size), batch size and dtype it times loss_and_grad of the module
generated with backend="numpy" and with backend="numba" (after a warm-up call that compiles the
loops), and, when jax is importable, jax.jit(jax.value_and_grad) of the same network written
with lax.scan (checked against the NumPy module's loss first).  Medians in milliseconds.
It also reports the numba backend's compile times: generating and importing the module, the
first call (numba's JIT, or its cache), and the same in a new process (numba's cache on disk).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import rnnspec  # noqa: E402

T, I, H, K = 50, 10, 32, 10


def dims_of(model):
    return {"m": I, "n": H} if model == "elman" else {"in": I, "hidden": H, "out": K}


def problem(B, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, I)).astype(dtype), rng.integers(0, K, size=(T, B)))


def params_of(mod, dims, dtype):
    p = mod.init_params(dims, seed=0, dtype=dtype)
    for name in p:  # (elman's normal(1.0) saturates: rescale as benchmarks/run.py does)
        if p[name].ndim == 2 and mod.INITS[name][0] == "normal":
            p[name] = (p[name] / np.sqrt(p[name].shape[1])).astype(dtype)
    return p


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


# ---- the same networks in jax ----------------------------------------------------------------
def jax_loss(model):
    import jax
    import jax.numpy as jnp

    def cell(p, h, x):
        if model == "elman":
            s = jnp.tanh(x @ p["U"].T + h @ p["W"].T + p["ba"])
            return s, s
        if model == "gru":
            z = jax.nn.sigmoid(p["bz"] + x @ p["Uz"].T + h @ p["Wz"].T)
            r = jax.nn.sigmoid(p["br"] + x @ p["Ur"].T + h @ p["Wr"].T)
            c = jnp.tanh(p["b"] + x @ p["U"].T + (r * h) @ p["W"].T)
            h = z * h + (1 - z) * c
            return h, h
        hh, cc = h
        gate = {k: x @ p[f"W_{k}_x"].T + hh @ p[f"W_{k}_h"].T + p[f"b_{k}"] for k in "fgqc"}
        cc = jax.nn.sigmoid(gate["f"]) * cc + jax.nn.sigmoid(gate["g"]) * jnp.tanh(gate["c"])
        hh = jnp.tanh(cc) * jax.nn.sigmoid(gate["q"])
        return (hh, cc), hh

    out_w, out_b = {"elman": ("V", "by"), "gru": ("V", "c"), "lstm": ("W_o_h", "b_o")}[model]

    def loss(p, x, y):
        B = x.shape[1]
        zero = jnp.zeros((B, H), x.dtype)
        h0 = (zero, zero) if model == "lstm" else zero
        _, hs = jax.lax.scan(lambda h, xt: cell(p, h, xt), h0, x)
        z = hs @ p[out_w].T + p[out_b]
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.take_along_axis(logp, y[..., None], axis=-1).sum()
    return jax.jit(jax.value_and_grad(loss))


def time_all(models, batches, dtypes, repeats, with_jax):
    rows = []
    for model in models:
        text = (ROOT / "specs" / f"{model}.rnn").read_text(encoding="utf-8")
        dims = dims_of(model)
        mods = {b: rnnspec.load_module(rnnspec.generate(text, dims, f"{model}.rnn", backend=b),
                                       model) for b in ("numpy", "numba")}
        vg = jax_loss(model) if with_jax else None
        for dtype in dtypes:
            for B in batches:
                x, y = problem(B, dtype)
                p = params_of(mods["numpy"], dims, dtype)
                row = {"model": model, "dtype": np.dtype(dtype).name, "B": B}
                for b, mod in mods.items():
                    row[b] = median_ms(lambda: mod.loss_and_grad(p, {"x": x}, {"y": y}), repeats)
                if vg is not None:
                    import jax.numpy as jnp
                    jp, jx, jy = ({k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(x),
                                  jnp.asarray(y))
                    ref = mods["numpy"].loss_and_grad(p, {"x": x}, {"y": y})[0]
                    got = float(vg(jp, jx, jy)[0])
                    assert abs(got - ref) <= 1e-3 * abs(ref), (model, got, ref)
                    row["jax"] = median_ms(lambda: vg(jp, jx, jy)[1][out_key(model)]
                                           .block_until_ready(), repeats)
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def out_key(model):
    return {"elman": "W", "gru": "W", "lstm": "W_f_h"}[model]


def format_row(r):
    jax_ms = f"{r['jax']:8.3f}" if "jax" in r else "       -"
    return (f"{r['model']:6s} {r['dtype']:8s} B={r['B']:<3d} numpy {r['numpy']:8.3f}  "
            f"numba {r['numba']:8.3f}  jax {jax_ms}  (ms)")


COLD = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np, rnnspec
text = open({spec!r}).read()
src = rnnspec.generate(text, {dims!r}, {name!r}, backend="numba")
mod = rnnspec.load_module(src, {model!r})
t1 = time.perf_counter()
p = mod.init_params({dims!r})
x = np.ones((5, 1, {I})); y = np.zeros((5, 1), int)
mod.loss_and_grad(p, {{"x": x}}, {{"y": y}})
t2 = time.perf_counter()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}}")
"""


def compile_times(models):
    """Generate + import, and the first call, in a new process: twice (numba's cache empty,
    then filled) with a fresh RNNSPEC_CACHE_DIR."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RNNSPEC_CACHE_DIR=tmp)
        for model in models:
            code = COLD.format(root=str(ROOT), spec=str(ROOT / "specs" / f"{model}.rnn"),
                               dims=dims_of(model), name=f"{model}.rnn", model=model, I=I)
            for run in ("first", "second"):
                out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                     capture_output=True, text=True).stdout.split()
                print(f"{model:6s} {run} process: generate+import {out[0]} s, first call "
                      f"(JIT or cache) {out[1]} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="elman,lstm,gru")
    ap.add_argument("--batches", default="1,2,4,32")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--no-compile-times", action="store_true")
    args = ap.parse_args()
    models = args.models.split(",")
    try:
        import jax  # noqa: F401
        with_jax = True
        jax.config.update("jax_enable_x64", True)
    except ImportError:
        with_jax = False
        print("jax is not installed: no jax column")
    time_all(models, [int(b) for b in args.batches.split(",")],
             [np.dtype(d).type for d in args.dtypes.split(",")], args.repeats, with_jax)
    if not args.no_compile_times:
        compile_times(models)


if __name__ == "__main__":
    main()
