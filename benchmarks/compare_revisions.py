#!/usr/bin/env python
"""Time the modules two revisions of rnnspec generate, side by side in one process.

    python benchmarks/compare_revisions.py 005847c          # that revision against the checkout
    python benchmarks/compare_revisions.py 005847c --reps 100

For elman, lstm and gru (I = K = 10, H = 32) at B, T = 1, 50 and 32, 100, in float32 and float64,
it generates the module with the given revision (exported with ``git archive``, run in a
subprocess) and with the checkout, and times ``loss_and_grad`` of both, interleaved repeat by
repeat (so that the machine's drift hits both alike); it prints the medians, their ratio, and
whether the two modules' losses and gradients are bit-identical.  A refactoring of the compiler
that must not change the generated code's speed is checked with this; the expert comparison of
benchmarks/run.py varies too much from run to run for that.
"""
import argparse
import importlib.util
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"elman": {"m": 10, "n": 32}, "lstm": {"in": 10, "hidden": 32, "out": 10},
          "gru": {"in": 10, "hidden": 32, "out": 10}}
GENERATE = """
import sys, pathlib
from rnnspec import api
spec, dims, out = sys.argv[1], eval(sys.argv[2]), sys.argv[3]
p = pathlib.Path(spec)
pathlib.Path(out).write_text(api.generate(p.read_text(), dims, p.name))
"""


def generate(src: Path, model: str, out: Path) -> None:
    spec = ROOT / "specs" / f"{model}.rnn"
    subprocess.run([sys.executable, "-c", GENERATE, str(spec), repr(MODELS[model]), str(out)],
                   check=True, cwd=src, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + str(abs(hash(path))), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="the git revision to compare the checkout with")
    ap.add_argument("--reps", type=int, default=60, help="repeats at B = 1 (a quarter at B = 32)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = subprocess.run(["git", "archive", args.base, "rnnspec", "grammars"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        tarfile.open(fileobj=BytesIO(archive)).extractall(tmp / "base")
        for model in MODELS:
            generate(tmp / "base", model, tmp / f"{model}_base.py")
            generate(ROOT, model, tmp / f"{model}_head.py")
        print(f"{'model':6} {'B, T':8} {'dtype':8} {args.base + ' ms':>12} {'checkout ms':>12} "
              f"{'ratio':>6}  identical")
        for model in MODELS:
            mods = [load(tmp / f"{model}_{k}.py") for k in ("base", "head")]
            for B, T in ((1, 50), (32, 100)):
                for dtype in (np.float32, np.float64):
                    print(_case(model, mods, B, T, dtype, args.reps if B == 1 else args.reps // 4))
    return 0


def _case(model, mods, B, T, dtype, reps) -> str:
    rng = np.random.default_rng(0)
    params = mods[0].init_params(seed=1, dtype=dtype)
    dims = mods[0].DIMS
    x = rng.normal(size=(T, B, dims.get("in", dims.get("m")))).astype(dtype)
    y = rng.integers(0, dims.get("out", dims.get("m")), size=(T, B))
    times = [[], []]
    for _ in range(reps):
        for k, m in enumerate(mods):
            t0 = time.perf_counter()
            m.loss_and_grad(params, {"x": x}, {"y": y})
            times[k].append(time.perf_counter() - t0)
    (l0, g0), (l1, g1) = (m.loss_and_grad(params, {"x": x}, {"y": y}) for m in mods)
    same = l0 == l1 and all(np.array_equal(g0["params"][n], g1["params"][n]) for n in g0["params"])
    base, head = (statistics.median(t) * 1e3 for t in times)
    return (f"{model:6} {f'{B}, {T}':8} "
            f"{np.dtype(dtype).name:8} {base:12.3f} {head:12.3f} {head / base:6.2f}  {same}")


if __name__ == "__main__":
    sys.exit(main())
