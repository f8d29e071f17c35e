"""rnnspec.cluster and `rnnspec train --dask/--workers`: data-parallel steps on a local Dask
cluster of 2 worker processes against the single process (gradients, 20 training steps with
and without truncation, resume), the command line end to end, and its refusals."""
import socket
import sys
import time

import numpy as np
import pytest

from rnnspec.api import compile_file
from rnnspec.cli import main
from rnnspec.cluster import DataParallel, HeldStates, connect, shard_bounds
from rnnspec.data import TextData, adding_problem
from rnnspec.train import Unit, train, train_step

from conftest import SPECS
from test_train import LM, TEXT, _same_runs, quiet


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip(
        "distributed", reason='the dask extra is not installed (pip install "rnnspec[dask]")')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def lm(tmp_path):
    path = tmp_path / "lm.rnn"
    path.write_text(LM)
    return path


def _batch(mod, T, B, rng):
    """Random inputs and targets of ``mod`` for B sequences of T steps."""
    arrays = {}
    for table in (mod.INPUTS, mod.TARGETS):
        for n, info in table.items():
            size = mod._size(info["size"], mod.DIMS)
            lead = (T, B) if info["kind"] == "sequence" else (B,)
            arrays[n] = rng.integers(0, size, lead) if info.get("type") == "class" else \
                rng.standard_normal(lead + (size,))
    return ({n: arrays[n] for n in mod.INPUTS}, {n: arrays[n] for n in mod.TARGETS})


def test_shards_are_contiguous_and_as_equal_as_possible():
    assert shard_bounds(7, 2) == [(0, 4), (4, 7)]
    assert shard_bounds(9, 4) == [(0, 3), (3, 5), (5, 7), (7, 9)]
    assert shard_bounds(1, 2) == [(0, 1)]  # (fewer sequences than workers: fewer shards)


@pytest.mark.parametrize("spec, lengths", [
    ("lstm.rnn", [5, 2, 4, 1, 5]),  # a padded batch: per-step sums over each one's steps
    ("linear.rnn", None),  # a `mean` loss: each sequence's steps averaged
    ("skip.rnn", None),  # a state read 3 steps back: (3, B, hidden) carried
    ("h0_from_input.rnn", None),  # a per-sequence input, a state computed from it
    ("many_to_one.rnn", None),  # one target per sequence
])
def test_summed_shards_give_the_single_process_gradients(client, spec, lengths):
    """Sums from the shards (5 sequences: 3 and 2; then 1 sequence: one shard) against
    loss_and_grad of the whole batch, and the states held on the workers against the
    single process's, carried into a second chunk there."""
    mod = compile_file(SPECS / spec)
    cluster = connect(client)
    dp = DataParallel(cluster, mod, keep=True)
    rng = np.random.default_rng(0)
    params = mod.init_params(None, seed=1)
    for B in (5, 1):
        x, y = _batch(mod, 5, B, rng)
        lens = None if lengths is None or B == 1 else np.array(lengths)
        loss, grads, held = dp.step(params, Unit(x, y, lens, 5, B, True), None, 1)
        ref_loss, ref = mod.loss_and_grad(params, x, y, lengths=lens)
        assert loss == pytest.approx(float(ref_loss), rel=1e-12)
        for n, g in ref["params"].items():
            np.testing.assert_allclose(grads[n], g, rtol=1e-12, atol=1e-13, err_msg=n)
        assert isinstance(held, HeldStates) and len(held.bounds) == min(B, 2)
        final = mod.forward(params, x, y, lengths=lens)[0]["final"]
        gathered = held.gather()
        assert sorted(gathered) == sorted(final)
        for n, a in final.items():
            np.testing.assert_allclose(gathered[n], a, rtol=1e-12, atol=1e-14, err_msg=n)
        x2, y2 = _batch(mod, 3, B, rng)  # the next chunk, from the states held on the workers
        loss2, grads2, _ = dp.step(params, Unit(x2, y2, None, 3, B, False), held, 2.0)
        _, _, ref_final = train_step(mod, params, Unit(x, y, lens, 5, B, True), None, 1)
        ref_loss2, ref2, _ = train_step(mod, params, Unit(x2, y2, None, 3, B, False),
                                        ref_final, 2.0)
        assert loss2 == pytest.approx(ref_loss2, rel=1e-12)
        for n, g in ref2.items():
            np.testing.assert_allclose(grads2[n], g, rtol=1e-12, atol=1e-13, err_msg=n)
    dp.close()


@pytest.mark.parametrize("kind", ["task", "text"])
def test_twenty_steps_equal_the_single_process_and_resume(client, kind, lm, tmp_path):
    """20 steps on 2 workers give the single process's parameters to 1e-12; a run stopped at
    step 7 (its carried states gathered from the workers) and resumed on the cluster is the
    uninterrupted cluster run bit for bit, and resumed in one process matches it to 1e-12."""
    if kind == "text":  # stateful TBPTT: 5 streams (3 + 2 per worker), chunks of 6 steps
        data, spec = TextData(TEXT, valid_fraction=0.1), lm
        options = dict(truncate=6, batch=5, clip_norm=0.5, optimizer="adam", lr=0.01)
    else:  # whole batches of 9 sequences (5 + 4), nothing carried
        data, spec = adding_problem(200, T=8, seed=1).split(0.1, seed=1), SPECS / "adding.rnn"
        options = dict(batch=9, truncate=None, clip_value=0.1, optimizer="sgd", lr=0.05)
    one, two, part, back = (tmp_path / n for n in ("one", "two", "part", "back"))
    r1 = train(spec, data, steps=20, out=one, eval_every=7, log=quiet, seed=2, **options)
    r2 = train(spec, data, steps=20, out=two, eval_every=7, log=quiet, seed=2, dask=client,
               **options)
    for n, a in r1.params.items():
        np.testing.assert_allclose(r2.params[n], a, rtol=1e-12, atol=1e-12, err_msg=n)
    np.testing.assert_allclose(r2.history.loss, r1.history.loss, rtol=1e-12)
    with np.load(one / "carry.npz") as c1, np.load(two / "carry.npz") as c2:
        assert sorted(c1.files) == sorted(c2.files)
        for k in c1.files:
            np.testing.assert_allclose(c2[k], c1[k], rtol=1e-12, atol=1e-13, err_msg=k)
    train(spec, data, steps=7, out=part, eval_every=7, log=quiet, seed=2, dask=client,
          **options)
    train(spec, data, steps=20, resume=part, eval_every=7, log=quiet, seed=2, dask=client,
          **options)
    _same_runs(two, part)
    if kind == "text":  # the carried states gathered at step 7, the run resumed in one process
        train(spec, data, steps=7, out=back, eval_every=7, log=quiet, seed=2, dask=client,
              **options)
        r3 = train(spec, data, steps=20, resume=back, log=quiet, seed=2, **options)
        for n, a in r1.params.items():
            np.testing.assert_allclose(r3.params[n], a, rtol=1e-12, atol=1e-12, err_msg=n)


def test_cli_trains_on_two_local_workers(lm, tmp_path, capsys):
    pytest.importorskip("distributed", reason='the dask extra is not installed '
                                              '(pip install "rnnspec[dask]")')
    text = tmp_path / "poems.txt"
    text.write_text(TEXT)
    args = ["train", str(lm), "--data", f"text:{text}", "--steps", "4", "--truncate", "5",
            "--batch", "3", "--eval-every", "2", "--quiet"]
    assert main(args + ["--workers", "2", "--out", str(tmp_path / "two")]) == 0
    out = capsys.readouterr()
    assert "4 steps: loss" in out.out and "Traceback" not in out.err
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    for name in ("params.npz", "carry.npz"):
        with np.load(tmp_path / "one" / name) as a, np.load(tmp_path / "two" / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-13, err_msg=k)


def test_cli_bad_scheduler_address_fails_fast_without_traceback(capsys, tmp_path):
    pytest.importorskip("distributed", reason='the dask extra is not installed '
                                              '(pip install "rnnspec[dask]")')
    silent = socket.socket()  # (accepts connections, never answers: only the timeout ends it)
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    spec = str(SPECS / "adding.rnn")
    cases = [(f"tcp://127.0.0.1:{silent.getsockname()[1]}", "no answer within 1 s"),
             ("127.0.0.1", "missing port number"),
             ("http://127.0.0.1:8786", "unknown address scheme")]
    with silent:
        for address, phrase in cases:
            start = time.perf_counter()
            assert main(["train", spec, "--data", "task:adding", "--steps", "1", "--dask",
                         address, "--dask-timeout", "1", "--out", str(tmp_path / "r")]) == 2
            assert time.perf_counter() - start < 10
            err = capsys.readouterr().err
            assert "cannot reach the Dask scheduler" in err or "scheduler address" in err, err
            assert phrase in err and "dask scheduler" in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_missing_distributed_is_a_clear_refusal(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # (import distributed fails)
    for option in (["--workers", "2"], ["--dask", "tcp://127.0.0.1:8786"]):
        assert main(["train", str(SPECS / "adding.rnn"), "--data", "task:adding", "--steps",
                     "1", "--out", str(tmp_path / "r"), *option]) == 2
        err = capsys.readouterr().err
        assert 'pip install "rnnspec[dask]"' in err and "Traceback" not in err, err
    with pytest.raises(ImportError, match=r'pip install "rnnspec\[dask\]"'):
        train(SPECS / "adding.rnn", adding_problem(50, T=4), workers=2, steps=1, log=quiet)
    assert not (tmp_path / "r").exists()
