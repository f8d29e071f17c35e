"""rnnspec.train and `rnnspec train`: a bundled task learned, resume bit for bit, stateful
truncated BPTT's chunks and carried states, the NaN stop, the run directory, refusals."""
import json
import math

import numpy as np
import pytest

from rnnspec.api import compile_file
from rnnspec.cli import main
from rnnspec.data import TextData, adding_problem, bundled_text
from rnnspec.train import TrainingDiverged, train

from conftest import SPECS

LM = """dim vocab = 10
dim hidden = 8
input x[t]: vocab
target y[t]: class(vocab)
state h: hidden = zeros
state C: hidden = zeros
f[t]: hidden = gate(x[t], h[t-1])
g[t]: hidden = gate(x[t], h[t-1])
q[t]: hidden = gate(x[t], h[t-1])
C[t] = f[t] * C[t-1] + g[t] * tanh(affine(x[t], h[t-1], name=c))
h[t] = tanh(C[t]) * q[t]
o[t]: vocab = softmax(affine(h[t]))
loss = cross_entropy(o[t], y[t])
"""
TEXT = bundled_text()[:1500]


@pytest.fixture
def lm(tmp_path):
    path = tmp_path / "lm.rnn"
    path.write_text(LM)
    return path


def quiet(line):
    pass


def test_the_adding_problem_is_learned():
    # squared_error is 1/2 (o - y)^2: always answering 1 scores 1/12 (= 0.083) per sequence;
    # measured with this seed: validation 0.0072 at step 350, 0.0060 at 400
    data = adding_problem(1200, T=20, seed=0).split(0.1, seed=0)
    r = train(SPECS / "adding.rnn", data, lr=0.01, steps=400, batch=32, eval_every=50,
              seed=0, log=quiet)
    valid = np.array(r.history.valid_loss)
    assert len(r.history.loss) == 400 and np.isnan(valid[:49]).all()
    assert valid[-1] < 0.02 < 1 / 12
    assert np.mean(r.history.loss[:50]) > 0.05  # (it started at or above the baseline)


def _same_runs(a, b):
    for name in ("params.npz", "optimizer.npz", "history.npz", "carry.npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            assert sorted(x.files) == sorted(y.files), name
            for k in x.files:
                assert x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes(), (name, k)
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()


@pytest.mark.parametrize("kind", ["text", "task"])
def test_resume_equals_an_uninterrupted_run_bit_for_bit(kind, lm, tmp_path):
    if kind == "text":  # 4 streams of ~370 steps, chunks of 30: 13 steps an epoch
        data, spec = TextData(TEXT, valid_fraction=0.1), lm
        options = dict(truncate=30, batch=4, clip_norm=0.5)
    else:  # 180 sequences, batches of 32: 5 steps an epoch, shuffled per epoch
        data, spec = adding_problem(200, T=8, seed=1).split(0.1, seed=1), SPECS / "adding.rnn"
        options = dict(batch=32, clip_value=0.1)
    whole, part = tmp_path / "whole", tmp_path / "part"
    train(spec, data, lr=0.01, steps=17, out=whole, eval_every=3, log=quiet, seed=2, **options)
    train(spec, data, lr=0.01, steps=7, out=part, eval_every=3, log=quiet, seed=2, **options)
    with np.load(part / "carry.npz") as c:
        assert int(c["step"]) == 7 and bool(c["carried"]) == (kind == "text")
    r = train(spec, data, lr=0.01, steps=17, resume=part, eval_every=3, log=quiet, seed=2,
              **options)
    assert r.step == 17 and len(r.history.step) == 17
    _same_runs(whole, part)
    with pytest.raises(ValueError, match=r"trained with optimizer_options = \{'lr': 0.01\}, not \{'lr': 0.02\}"):
        train(spec, data, lr=0.02, steps=20, resume=part, log=quiet, seed=2, **options)


def test_truncated_chunks_carry_the_final_states(lm):
    data = TextData(TEXT, valid_fraction=0.1)
    seen = []
    train(lm, data, optimizer="sgd", lr=0.5, truncate=5, batch=3, steps=3, seed=4, log=quiet,
          callback=seen.append)
    mod = compile_file(lm, {"vocab": len(data.vocab)})
    p = mod.init_params({"vocab": len(data.vocab)}, seed=4)
    chunks = list(data.chunks(3, 5))
    x = [{"x": c.inputs["x"]} for c in chunks]
    y = [c.targets for c in chunks]
    assert seen[0].state0 is None
    loss, g = mod.loss_and_grad(p, x[0], y[0])
    assert seen[0].loss == pytest.approx(loss / 15, rel=1e-14)  # the sum over 5 steps * 3
    for n, a in g["params"].items():
        np.testing.assert_allclose(seen[0].grads[n] * 15, a, rtol=1e-13, atol=1e-15)
    out, _ = mod.forward(p, x[0])
    for s, a in out["final"].items():
        assert np.array_equal(seen[1].state0[s], a)  # carried exactly
        assert np.array_equal(seen[0].final[s], a)
    # the second chunk's gradient: from the carried states, none flowing into the first chunk
    loss, g = mod.loss_and_grad(seen[0].params, x[1], y[1], state0=out["final"])
    for n, a in g["params"].items():
        np.testing.assert_allclose(seen[1].grads[n] * 15, a, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(seen[0].params["W_c_h"], p["W_c_h"])  # it did update


def test_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_params(tmp_path):
    data = adding_problem(200, T=8, seed=1).split(0.1, seed=1)
    seen = []
    with pytest.raises(TrainingDiverged) as info:
        train(SPECS / "adding.rnn", data, optimizer="sgd", lr=1e12, steps=50, batch=16,
              out=tmp_path / "run", log=quiet, callback=seen.append)
    exc = info.value
    assert f"step {exc.step}: " in str(exc) and exc.step == len(seen) + 1 and exc.step > 1
    assert "params.npz" in str(exc) and ("loss" in exc.array or "'" in exc.array)
    with np.load(tmp_path / "run" / "params.npz") as f:
        saved = {k: f[k] for k in f.files}
    for n, a in seen[-1].params.items():  # the parameters after the last good step
        assert np.array_equal(saved[n], a) and np.isfinite(a).all()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["stopped"].startswith(f"diverged at step {exc.step}")
    with pytest.raises(ValueError, match="the run stopped"):
        train(SPECS / "adding.rnn", data, optimizer="sgd", lr=1e12, steps=60, batch=16,
              resume=tmp_path / "run", log=quiet)


def test_cli_trains_on_a_text_and_writes_the_run(lm, tmp_path, capsys):
    (tmp_path / "t.txt").write_text(TEXT)
    run = tmp_path / "run"
    code = main(["train", str(lm), "--data", f"text:{tmp_path / 't.txt'}", "--truncate", "20",
                 "--batch", "4", "--steps", "6", "--eval-every", "3", "--lr", "0.01",
                 "--clip-norm", "1", "--quiet", "--out", str(run), "--dim", "hidden=6"])
    out = capsys.readouterr().out
    assert code == 0
    assert "step 3/6  loss" in out and "valid" in out and "tok/s" in out
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "params.npz", "optimizer.npz", "carry.npz", "history.npz",
            "history.csv", "vocab.json"} <= names
    config = json.loads((run / "config.json").read_text())
    vocab = json.loads((run / "vocab.json").read_text())["tokens"]
    assert config["dims"] == {"vocab": len(vocab), "hidden": 6}
    assert config["command"][:2] == ["rnnspec", "train"] and config["settings"]["seed"] == 0
    import hashlib
    assert config["spec_sha256"] == hashlib.sha256(LM.encode()).hexdigest()
    assert set(config["versions"]) >= {"rnnspec", "numpy"}
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0] == "step,loss,valid_loss,grad_norm" and len(rows) == 7
    mod = compile_file(lm, config["dims"])
    params = dict(np.load(run / "params.npz"))
    x = np.eye(len(vocab))[np.zeros((2, 1), dtype=int)]
    assert np.isfinite(mod.forward(params, {"x": x})[0]["o"]).all()
    # resumed from the command line: its settings from config.json
    assert main(["train", str(lm), "--resume", str(run), "--steps", "9", "--quiet",
                 "--dim", "hidden=6"]) == 0
    assert len((run / "history.csv").read_text().splitlines()) == 10


@pytest.mark.parametrize("args, phrase", [
    (["--data", "nothing:here"], "give task:NAME"),
    (["--data", "task:sorting"], "unknown task 'sorting'"),
    (["--data", "task:adding,T=x"], "expected KEY=INTEGER"),
    (["--data", "task:adding,width=3"], "takes the options n and T"),
    (["--data", "task:xor"], "target 'y': the spec's is real, the data's class"),
    (["--data", "missing.npz"], "missing.npz: no such file"),
    (["--data", "task:adding", "--truncate", "4"], "the target 'y' is one per sequence"),
])
def test_cli_refusals_exit_2_without_traceback(args, phrase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(SPECS / "adding.rnn"), "--steps", "1", *args]) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_refuses_run_directories(capsys, tmp_path):
    spec = str(SPECS / "adding.rnn")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((5, 20, 2)), z=np.zeros((20, 1)))
    cases = [(["--out", str(tmp_path / "run")], "already holds a run; continue a run with "
                                                  "--resume"),
             (["--out", str(tmp_path / "file")], "is a file, not a run directory"),
             (["--out", str(tmp_path / "no" / "run")], "does not exist"),
             (["--resume", str(tmp_path / "empty")], "holds no run to resume"),
             (["--resume", str(tmp_path / "run")], "not an rnnspec run's"),
             (["--data", str(npz), "--out", str(tmp_path / "new")], "unknown array(s) ['z']")]
    for args, phrase in cases:
        data = [] if "--data" in args else ["--data", "task:adding"]
        assert main(["train", spec, "--steps", "1", *data, *args]) == 2, args
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "new").exists()  # (refused before any work)


@pytest.mark.parametrize("spec, per", [("linear.rnn", "B"), ("elman.rnn", "T*B")])
def test_per_token_loss_follows_the_modules_losses_table(spec, per, tmp_path):
    """A `mean` loss (linear.rnn: the mean over each sequence's steps) is divided by the
    sequences only; a per-step sum (elman.rnn) by steps times sequences (LOSSES)."""
    from rnnspec.data import load_npz
    mod = compile_file(SPECS / spec)
    T, N, B = 6, 8, 4
    rng = np.random.default_rng(0)
    arrays = {}
    for n, info in mod.INPUTS.items():
        arrays[n] = rng.standard_normal((T, N, mod._size(info["size"], mod.DIMS)))
    for n, info in mod.TARGETS.items():
        size = mod._size(info["size"], mod.DIMS)
        arrays[n] = rng.integers(0, size, (T, N)) if info["type"] == "class" else \
            rng.standard_normal((T, N, size))
    np.savez(tmp_path / "d.npz", **arrays)
    data = load_npz(tmp_path / "d.npz", mod, valid_fraction=0.5, seed=0)
    seen = []
    train(SPECS / spec, data, optimizer="sgd", lr=1e-3, batch=B, steps=1, seed=1, log=quiet,
          callback=seen.append)
    p = mod.init_params(None, seed=1)
    first = next(iter(data[0].batches(B, seed=1, epoch=0)))
    loss, _ = mod.loss_and_grad(p, first.inputs_for(mod), first.targets)
    assert seen[0].loss == pytest.approx(loss / (B if per == "B" else T * B), rel=1e-12)


def test_a_text_without_validation_part_trains(lm, tmp_path):
    """valid_fraction=0: nothing to validate (NaN), not a crash at the first validation."""
    data = TextData(TEXT, valid_fraction=0.0)
    r = train(lm, data, lr=0.01, truncate=5, batch=3, steps=4, eval_every=2, seed=0,
              log=quiet)
    assert r.step == 4 and np.isnan(r.history.valid_loss).all()
