#!/usr/bin/env python
"""The README's gradient-flow figure: ||dL/ds_t|| for a loss on the last step's states, for
elman, lstm, leaky and skip at T = 100 (the spec's initializers, seed 0), on a log scale; for
the LSTM the cell state C, with its initializers and with the forget gate's bias at 3 (Gers et
al.'s remedy: f near 1 keeps the cell's gradient).

    python benchmarks/flow_figure.py            # writes docs/flow.png, prints the numbers

Needs matplotlib (pip install 'rnnspec[plot]')."""
from pathlib import Path

import numpy as np

import rnnspec
from rnnspec.api import analyze
from rnnspec.flow import gradient_flow
from rnnspec.graph import build_graph

ROOT = Path(__file__).resolve().parent.parent
RUNS = [("elman", None, "s"), ("lstm", None, "C"), ("lstm", 3.0, "C"), ("leaky", None, "h"),
        ("skip", None, "h")]  # (spec, the LSTM's forget bias, the state shown)


def main():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    T = 100
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    t = np.arange(1, T + 1)
    for name, forget, state in RUNS:
        path = ROOT / "specs" / f"{name}.rnn"
        a = analyze(path.read_text(), filename=path.name, base=path.parent)
        mod = rnnspec.compile_file(path)
        params = mod.init_params(seed=0)
        if forget is not None:
            params["b_f"] = np.full_like(params["b_f"], forget)
            name = f"{name} (b_f = {forget:g})"
        flow = gradient_flow(mod, params, T=T, seed=0, graph=build_graph(a.model),
                             spec=path.name)
        curve = flow.last[state]
        rho = ", ".join(f"rho({n}) = {r:.2f}" for n, r in flow.matrices.items())
        if len(flow.matrices) > 2:
            rho = f"max rho {max(flow.matrices.values()):.2f}"
        ax.semilogy(t, np.maximum(curve, 1e-300), label=f"{name}: |dL/d{state}_t|  ({rho})")
        print(f"{name:15s} |dL/d{state}_t| at t = 1, 50, 90, 100: "
              + ", ".join(f"{curve[k - 1]:.2e}" for k in (1, 50, 90, 100))
              + f";  median |J_t| {np.median(flow.jacobian_norm):.3f}, "
              f"median rho(J_t) {np.median(flow.jacobian_radius):.3f};  {rho}")
    ax.set_xlabel("step t (the loss is on the states after step 100)")
    ax.set_ylabel("gradient norm")
    ax.set_title("gradient flowing back from the last step (rnnspec flow, T = 100)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "docs" / "flow.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
