#!/usr/bin/env python
"""The adding problem at T = 100, learned by an LSTM and not by an Elman network (004 3.1, 4.3).

    python benchmarks/adding_curves.py                 # 3000 steps each, docs/adding.png
    python benchmarks/adding_curves.py --steps 500 --out /tmp/adding.png

Both networks read the same data (rnnspec.data.adding_problem: 10,000 sequences of T = 100
steps, a tenth held out), have 16 units, and are trained by rnnspec.train with Adam (lr 0.01,
batch 32, gradients clipped to norm 1, seed 0); the loss is 1/2 (o - y)^2 at each sequence's
end, so answering the mean sum, 1, scores 1/12 (the baseline line).  The LSTM is
specs/adding.rnn; the Elman network is the same spec with the Elman cell written below.  It
prints the validation losses and draws both curves (matplotlib, the rnnspec[plot] extra).
Run time: about 4 minutes on a 2-core machine.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnspec.data import adding_problem  # noqa: E402
from rnnspec.train import train  # noqa: E402

ELMAN = """\
# The adding problem with an Elman network: the same data and output as specs/adding.rnn.
dim hidden = 16

input x[t]: 2
target y: 1

state h: hidden = zeros

h[t] = tanh(affine(x[t], h[t-1]))
o: 1 = affine(h[end])

loss = squared_error(o, y)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "docs" / "adding.png"))
    args = ap.parse_args()
    data = adding_problem(10_000, T=args.T, seed=0).split(0.1, seed=0)
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        elman = Path(tmp) / "adding_elman.rnn"
        elman.write_text(ELMAN)
        for name, spec in (("lstm (specs/adding.rnn)", ROOT / "specs" / "adding.rnn"),
                           ("elman", elman)):
            start = time.perf_counter()
            r = train(spec, data, optimizer="adam", lr=0.01, clip_norm=1.0, batch=32,
                      steps=args.steps, eval_every=100, seed=0, log=lambda line: None)
            valid = np.array(r.history.valid_loss)
            steps = np.array(r.history.step)[~np.isnan(valid)]
            curves[name] = (steps, valid[~np.isnan(valid)])
            print(f"{name}: validation loss {curves[name][1][0]:.4f} at step {steps[0]}, "
                  f"{curves[name][1][-1]:.4f} at step {steps[-1]} "
                  f"({time.perf_counter() - start:.0f} s)")
    print(f"baseline (always 1): {1 / 12:.4f}")
    plot(curves, args.T, args.out)


def plot(curves, T: int, out: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'rnnspec[plot]')")
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, (steps, valid) in curves.items():
        ax.plot(steps, valid, label=name)
    ax.axhline(1 / 12, color="gray", linestyle="--", label="answering 1 (1/12)")
    ax.set(xlabel="optimizer step (batch 32)", ylabel="validation loss, 1/2 (o - y)^2",
           yscale="log", title=f"the adding problem, T = {T}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
