"""RTRL (issue 11, part 3, from the module's one-step VJPs): the gradient computed forward in
time equals BPTT's; its per-step gradients are the gradients of each step's loss."""
from pathlib import Path

import numpy as np
import pytest

import rnnspec
from rnnspec.gradcheck import random_problem
from rnnspec.rtrl import rtrl

SPECS = Path(__file__).resolve().parent.parent / "specs"
FORWARD = ["elman", "jordan", "lstm", "gru", "lstm_peephole", "leaky", "skip", "deep",
           "stacked_lstm", "stacked_gru", "stacked_lstm_lib", "many_to_one", "one_to_many",
           "h0_from_input"]  # (torch_lstm, torch_gru: no loss, nothing for RTRL to follow)


def module(name):
    return rnnspec.compile_file(SPECS / f"{name}.rnn")


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("lengths", [None, [6, 3, 1]])
def test_rtrl_equals_bptt(name, lengths):
    mod = module(name)
    p, x, y, s0, _ = random_problem(mod, None, 6, 3, 0, lengths)
    loss, g = rtrl(mod, p, x, y, s0, lengths)
    want_loss, want = mod.loss_and_grad(p, x, y, s0, None, lengths)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert g["params"].keys() == want["params"].keys()
    for n, v in want["params"].items():
        assert np.abs(g["params"][n] - v).max() <= 1e-10 * max(np.abs(v).max(), 1e-300), n


@pytest.mark.parametrize("name", ["elman", "lstm", "skip"])
def test_per_step_gradients_are_each_steps_loss(name):
    """steps[t] is the gradient of step t's loss alone: the loss of the first t + 1 steps
    minus that of the first t, each by BPTT on the shorter run; they sum to the total."""
    mod = module(name)
    T = 5
    p, x, y, s0, _ = random_problem(mod, None, T, 2, 1)
    loss, g, steps = rtrl(mod, p, x, y, s0, per_step=True)
    assert len(steps) == T

    def upto(k):
        if k == 0:
            return {n: np.zeros_like(v) for n, v in p.items()}
        return mod.loss_and_grad(p, {n: v[:k] for n, v in x.items()},
                                 {n: v[:k] for n, v in y.items()}, s0)[1]["params"]
    for t in range(T):
        a, b = upto(t + 1), upto(t)
        for n in p:
            assert np.allclose(steps[t][n], a[n] - b[n], rtol=1e-10, atol=1e-12), (t, n)
    for n in p:
        assert np.allclose(sum(s[n] for s in steps), g["params"][n], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name, why", [("bidirectional", "runs the network forward one step"),
                                       ("encdec", "second time axis"),
                                       ("self_attention", "not the network run whole"),
                                       ("teacher_forcing", "not the network run whole"),
                                       ("linear", "not the network run whole"),
                                       ("torch_lstm", "rtrl needs targets")])
def test_rtrl_refuses_what_it_cannot_follow(name, why):
    mod = module(name)
    T = {a: 4 for a in mod.AXES}
    p, x, y, s0, _ = random_problem(mod, None, T, 2, 0)
    with pytest.raises(ValueError, match=why):
        rtrl(mod, p, x, y, s0)


def test_rtrl_edges_of_padded_batches_and_dtypes():
    mod = module("elman")
    p, x, y, s0, _ = random_problem(mod, None, 10, 2, 0, [3, 3])
    loss, g = rtrl(mod, p, x, y, s0, [3, 3])  # (every sequence ends before T)
    want = mod.loss_and_grad(p, x, y, s0, None, [3, 3])[1]["params"]
    for n in want:
        assert np.allclose(g["params"][n], want[n], rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="lengths"):
        rtrl(mod, p, x, y, s0, [60, 3])
    p32 = {n: v.astype(np.float32) for n, v in p.items()}
    x32 = {n: v.astype(np.float32) for n, v in x.items()}
    loss, g = rtrl(mod, p32, x32, y)
    want = mod.loss_and_grad(p32, x32, y)[1]["params"]
    for n in want:
        assert np.allclose(g["params"][n], want[n], rtol=1e-4, atol=1e-5)


def test_rtrl_and_tbptt_refuse_chosen_loss_steps_by_reason(tmp_path):
    text = (SPECS / "elman.rnn").read_text().replace(
        "loss = cross_entropy(o[t], y[t])", "loss = cross_entropy(o[t], y[t]) at t = 2, 8")
    mod = rnnspec.compile_source(text, name="at8")
    p, x, y, s0, _ = random_problem(mod, None, 12, 2, 0)
    with pytest.raises(ValueError, match="not the network run whole"):
        rtrl(mod, p, x, y, s0)
    with pytest.raises(ValueError, match="not the network run whole"):
        rnnspec.tbptt(mod, p, x, y, 2, 3, s0)
    spec = tmp_path / "at8.rnn"
    spec.write_text(text)
    from rnnspec.cli import main
    assert main(["gradcheck", str(spec), "--truncate", "3", "--T", "10"]) == 2
