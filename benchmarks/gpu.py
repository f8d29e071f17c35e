"""The array-api backend on a GPU: the generated module on CuPy arrays against torch's cuDNN
nn.LSTM / nn.GRU (forward + backward, the sizes of benchmarks/run.py), when a CUDA GPU and CuPy
are present.  Without them it says so and times what it can here: the same array-API module on
torch CPU tensors against the NumPy backend's module.

    python benchmarks/gpu.py                  # sizes 1,2 of run.py (B, T, I, H, K), float32
    python benchmarks/gpu.py --sizes 1,2,3,4 --repeats 5
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import rnnspec  # noqa: E402
from run import SIZES, spec_dims, spec_path  # noqa: E402

MODELS = ["lstm", "gru"]


def _best(fn, repeats, sync=lambda: None):
    fn()  # warm-up (cuDNN plans, CuPy kernels, namespace lookups)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def _problem(model, B, T, I, H, K, rng):
    dims = spec_dims(model, I, H, K)
    text = spec_path(model).read_text()
    return dims, text, rng.normal(0, 1, (T, B, I)), rng.integers(0, K, (T, B))


def _module_step(mod, params, x, y):
    def run():
        out, cache = mod.forward(params, {"x": x}, {"y": y})
        mod.backward(params, cache)
    return run


def gpu_rows(sizes, repeats, dtype):
    """(model, size, seconds of the array-API module on CuPy, of torch cuDNN)."""
    import cupy
    import torch
    rows, rng = [], np.random.default_rng(0)
    sync = cupy.cuda.Device().synchronize
    for model in MODELS:
        for s in sizes:
            B, T, I, H, K = SIZES[s]
            dims, text, x, y = _problem(model, B, T, I, H, K, rng)
            mod = rnnspec.compile_source(text, dims, name=f"{model}_xp", backend="array-api")
            params = mod.init_params(like=cupy.zeros(1, dtype=dtype))
            step = _module_step(mod, params, cupy.asarray(x, dtype=dtype), cupy.asarray(y))
            xp_s = _best(step, repeats, sync)
            net = (torch.nn.LSTM if model == "lstm" else torch.nn.GRU)(I, H).cuda()
            head = torch.nn.Linear(H, K).cuda()
            net, head = net.to(getattr(torch, dtype)), head.to(getattr(torch, dtype))
            tx = torch.tensor(x, dtype=getattr(torch, dtype), device="cuda")
            ty = torch.tensor(y, device="cuda")

            def torch_step():
                h, _ = net(tx)
                loss = torch.nn.functional.cross_entropy(head(h).reshape(-1, K), ty.reshape(-1),
                                                         reduction="sum")
                loss.backward()
            rows.append((model, SIZES[s], xp_s, _best(torch_step, repeats,
                                                       torch.cuda.synchronize)))
    return rows


def cpu_rows(sizes, repeats, dtype):
    """(model, size, seconds of the array-API module on torch CPU tensors, of the NumPy
    module)."""
    import torch
    rows, rng = [], np.random.default_rng(0)
    for model in MODELS:
        for s in sizes:
            B, T, I, H, K = SIZES[s]
            dims, text, x, y = _problem(model, B, T, I, H, K, rng)
            ref = rnnspec.compile_source(text, dims, name=f"{model}_np")
            mod = rnnspec.compile_source(text, dims, name=f"{model}_xp", backend="array-api")
            tdtype = getattr(torch, dtype)
            tparams = mod.init_params(like=torch.zeros(1, dtype=tdtype))
            nparams = ref.init_params(dtype=getattr(np, dtype))
            xp_s = _best(_module_step(mod, tparams, torch.tensor(x, dtype=tdtype),
                                      torch.tensor(y)), repeats)
            np_s = _best(_module_step(ref, nparams, x.astype(dtype), y), repeats)
            rows.append((model, SIZES[s], xp_s, np_s))
    return rows


def table(rows, a, b):
    lines = [f"{'model':6} {'B, T, I, H, K':24} {a:>18} {b:>18} {'ratio':>7}"]
    for model, size, ta, tb in rows:
        lines.append(f"{model:6} {str(size):24} {ta * 1e3:15.2f} ms {tb * 1e3:15.2f} ms "
                     f"{ta / tb:7.2f}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,2", help="1-based sizes of benchmarks/run.py")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    sizes = [int(s) - 1 for s in args.sizes.split(",")]
    why = None
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            why = "CuPy is installed but sees no CUDA GPU"
    except ImportError:
        why = "CuPy is not installed"
    except Exception as e:  # (no driver, no device: CuPy raises its own errors)
        why = f"no CUDA GPU ({type(e).__name__}: {e})"
    if why is None:
        print(f"GPU: array-api module on CuPy vs torch cuDNN, forward + backward, {args.dtype}")
        print(table(gpu_rows(sizes, args.repeats, args.dtype), "array-api on CuPy",
                    "torch cuDNN"))
    else:
        print(f"no GPU timing: {why}; the CuPy-vs-cuDNN table needs a CUDA GPU and CuPy.")
    print(f"\nCPU: array-api module on torch CPU tensors vs the NumPy module, forward + "
          f"backward, {args.dtype}")
    print(table(cpu_rows(sizes, args.repeats, args.dtype), "array-api on torch", "numpy"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
