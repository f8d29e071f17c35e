"""checkpoint=k: modules that store the states every k steps and recompute segments in backward
give the full cache's outputs and gradients, with a much smaller cache; specs that cannot be
segmented exactly are rejected with positioned errors."""
import subprocess
import sys

import numpy as np
import pytest

import rnnspec
from rnnspec.api import compile_file, generate
from rnnspec.gradcheck import gradcheck, random_problem

from conftest import ROOT, SPECS

ACCEPTED = ["deep", "elman", "gru", "h0_from_input", "jordan", "leaky", "linear", "lstm",
            "lstm_peephole", "one_to_many", "stacked_gru", "stacked_lstm", "stacked_lstm_lib",
            "torch_gru", "torch_lstm", "char_lm"]
REJECTED = {  # spec -> (line, a phrase of the message)
    "skip": (15, "`h[t-3]` is read 3 steps back"),
    "bidirectional": (31, "`g[t+1]` runs a recurrence backward in time"),
    "bigru": (22, "backward in time"),
    "torch_bilstm": (97, "backward in time"),
    "torch_bigru": (75, "backward in time"),
    "many_to_one": (24, "`h[end]` reads one chosen step"),
    "adding": (20, "`h[end]` reads one chosen step"),
    "self_attention": (30, "attention reads the whole sequence"),
    "encdec": (17, "second time axis 'i'"),
    "attention_general": (18, "second time axis 'i'"),
    "attention_local": (16, "second time axis 'i'"),
    "teacher_forcing": (26, "feedback(...)"),
    "generate": (24, "feedback(...)"),
    "hierarchical": (23, "second time axis 'w'"),
}
T = 7  # not a multiple of 3 or 2


def test_every_spec_is_classified():
    names = {p.stem for p in SPECS.glob("*.rnn")}
    attention = {n for n in names if n.startswith("attention_")}
    assert names - attention == set(ACCEPTED) | (set(REJECTED) - attention)


def _close(ref, got, where, mask=None):
    """Equal to 1e-12 of the array's largest entry (sums over segments round differently)."""
    if isinstance(ref, dict):
        assert set(ref) == set(got), where
        for k in ref:
            _close(ref[k], got[k], f"{where}.{k}", mask)
        return
    ref, got = np.asarray(ref), np.asarray(got)
    assert ref.shape == got.shape and ref.dtype == got.dtype, where
    if mask is not None and ref.ndim == 3 and ref.shape[0] == T:  # padded steps: unspecified
        ref, got = ref * mask, got * mask
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale, err_msg=where)


@pytest.fixture(scope="module")
def modules():
    cache = {}

    def get(name, k):
        if (name, k) not in cache:
            cache[name, k] = compile_file(SPECS / f"{name}.rnn", checkpoint=k)
        return cache[name, k]
    return get


@pytest.mark.parametrize("name", ACCEPTED)
@pytest.mark.parametrize("k", [1, 3, T, T + 5])
@pytest.mark.parametrize("padded", [False, True])
def test_same_outputs_and_gradients(name, k, padded, modules):
    full = compile_file(SPECS / f"{name}.rnn")
    ck = modules(name, k)
    assert ck.CHECKPOINT == k and not hasattr(full, "CHECKPOINT")
    assert "Checkpointed" in ck.forward.__doc__
    B = 4
    lengths = np.array([T, 2, 5, 1]) if padded else None
    params, inputs, targets, state0, up = random_problem(full, None, T, B, seed=1,
                                                         lengths=lengths)
    mask = None if lengths is None else (np.arange(T)[:, None] < lengths[None])[..., None]
    for s0, d_out in ((None, None), (state0, up), (state0, {**up, "loss": 0.7})):
        if d_out is not None and "loss" in d_out and targets is None:
            continue
        o1, c1 = full.forward(params, inputs, targets, s0, T=T, lengths=lengths)
        o2, c2 = ck.forward(params, inputs, targets, s0, T=T, lengths=lengths)
        _close(o1, o2, "outputs", mask)
        if targets is None and d_out is None:
            continue  # no loss and no upstream gradient: nothing to differentiate
        _close(full.backward(params, c1, d_out), ck.backward(params, c2, d_out), "grads")


def test_mean_loss_with_lengths_averages_each_sequence_over_its_own_steps(modules):
    full = compile_file(SPECS / "linear.rnn")  # loss = mean squared_error
    ck = modules("linear", 3)
    params, inputs, targets, state0, _ = random_problem(full, None, T, 3, seed=2)
    for lengths in (None, np.array([7, 3, 5])):
        l1, g1 = full.loss_and_grad(params, inputs, targets, state0, lengths=lengths)
        l2, g2 = ck.loss_and_grad(params, inputs, targets, state0, lengths=lengths)
        assert abs(l1 - l2) <= 1e-13 * abs(l1)
        _close(g1, g2, "grads")


def test_float32_stays_float32(modules):
    ck = modules("lstm", 3)
    full = compile_file(SPECS / "lstm.rnn")
    params, inputs, targets, _, _ = random_problem(full, None, T, 2, seed=0)
    params = {n: v.astype(np.float32) for n, v in params.items()}
    loss, grads = ck.loss_and_grad(params, inputs, targets)
    ref_loss, ref = full.loss_and_grad(params, inputs, targets)
    assert all(g.dtype == np.float32 for g in grads["params"].values())
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)


@pytest.mark.parametrize("name", ["lstm", "jordan", "one_to_many", "h0_from_input"])
def test_gradcheck(name):
    mod = compile_file(SPECS / f"{name}.rnn", checkpoint=2)
    assert gradcheck(mod, T=5, batch=2, seed=0).ok
    assert gradcheck(mod, T=5, batch=3, seed=1, lengths=np.array([5, 1, 3])).ok


def _nbytes(obj, seen=None):
    """Bytes of the distinct arrays held (recursively) in dicts, lists and tuples."""
    seen = set() if seen is None else seen
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        if id(base) in seen:
            return 0
        seen.add(id(base))
        return base.nbytes if isinstance(base, np.ndarray) else obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v, seen) for v in obj)
    return 0


@pytest.mark.parametrize("name,fraction", [("lstm", 0.1), ("elman", 0.25)])
def test_cache_is_smaller(name, fraction):
    dims = {"in": 8, "hidden": 32, "out": 8} if name == "lstm" else {"m": 8, "n": 32}
    full = compile_file(SPECS / f"{name}.rnn", dims)
    ck = compile_file(SPECS / f"{name}.rnn", dims, checkpoint=10)
    params, inputs, targets, _, _ = random_problem(full, dims, 200, 4, seed=0)
    _, c_full = full.forward(params, inputs, targets)
    _, c_ck = ck.forward(params, inputs, targets)
    assert len(c_ck["checkpoints"]) == 20
    # the checkpointed cache: the inputs and targets, and 20 checkpoints of the states
    assert _nbytes(c_ck) <= fraction * _nbytes(c_full), (_nbytes(c_ck), _nbytes(c_full))


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_specs_have_positioned_errors(name):
    line, phrase = REJECTED[name]
    path = SPECS / f"{name}.rnn"
    with pytest.raises(rnnspec.SpecError) as err:
        generate(path.read_text(), None, str(path), checkpoint=4)
    assert err.value.line == line
    assert "checkpointing cannot segment this spec exactly" in err.value.message
    assert phrase in err.value.message
    assert generate(path.read_text(), None, str(path))  # fine without checkpointing


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rnnspec.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_cli_rejects_with_exit_2_and_no_traceback():
    r = _cli("compile", "specs/skip.rnn", "-o", "-", "--checkpoint", "4")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert "specs/skip.rnn:15:34: error: checkpointing cannot segment" in r.stderr


@pytest.mark.parametrize("value", ["0", "-3", "x", "2.5"])
def test_cli_bad_checkpoint(value):
    r = _cli("compile", "specs/lstm.rnn", "-o", "-", "--checkpoint", value)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--checkpoint: expected a positive integer" in r.stderr


def test_cli_compiles_a_checkpointed_module():
    r = _cli("compile", "specs/elman.rnn", "-o", "-", "--checkpoint", "3")
    assert r.returncode == 0, r.stderr
    assert "CHECKPOINT = 3" in r.stdout and "gradcheck ok" in r.stderr
    ns = {}
    exec(compile(r.stdout, "elman_ck", "exec"), ns)
    assert ns["CHECKPOINT"] == 3
    assert [ln for ln in r.stdout.splitlines() if ln.startswith(("import", "from"))] == \
        ["import numpy as np"]
    r2 = _cli("gradcheck", "specs/elman.rnn", "--checkpoint", "2", "--T", "5")
    assert r2.returncode == 0 and "PASSED" in r2.stdout


@pytest.mark.parametrize("k", [0, -1, 2.0, "3", True, None.__class__])
def test_api_bad_checkpoint(k):
    with pytest.raises(ValueError, match="checkpoint must be a positive integer"):
        generate((SPECS / "elman.rnn").read_text(), checkpoint=k)


def test_deterministic_source():
    text = (SPECS / "lstm.rnn").read_text()
    a = generate(text, None, "lstm.rnn", checkpoint=5)
    assert a == generate(text, None, "lstm.rnn", checkpoint=5)
    assert a != generate(text, None, "lstm.rnn", checkpoint=6)
    assert "Checkpointed (checkpoint=5)" in a.split('"""')[1]
