"""rnnspec grad: the gradient of the loss on one batch (full, truncated, randomized), its norms,
clipped, saved; compared with the module's own loss_and_grad and clip_grads by hand."""
from pathlib import Path

import numpy as np
import pytest

import rnnspec
from rnnspec.cli import main
from rnnspec.gradcheck import random_problem

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_grad_truncated_and_clipped_by_norm_is_saved(tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["grad", str(SPECS / "lstm.rnn"), "--truncate", "2,5", "--clip-norm", "0.5",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gradient by TBPTT(2, 5)" in text and "before clipping by norm 0.5" in text
    mod = rnnspec.compile_file(SPECS / "lstm.rnn")
    params = mod.init_params(None, seed=0)
    _, x, y, _, _ = random_problem(mod, None, 10, 3, 0)
    loss, g = mod.loss_and_grad(params, x, y, None, 10, truncate=(2, 5))
    norm = np.sqrt(sum(np.sum(v ** 2) for v in g["params"].values()))
    assert f"loss {loss:.6g}" in text and f"global norm {norm:.6g}" in text
    saved = dict(np.load(out))
    assert saved.keys() == g["params"].keys()
    for n, v in g["params"].items():  # by hand: every array times 0.5 / norm
        np.testing.assert_allclose(saved[n], v * 0.5 / norm, rtol=1e-12)


def test_grad_on_user_data_clipped_by_value(tmp_path, capsys):
    mod = rnnspec.compile_file(SPECS / "gru.rnn")
    params = mod.init_params(None, seed=3)
    _, x, y, _, _ = random_problem(mod, None, 6, 2, 5)
    np.savez(tmp_path / "p.npz", **params)
    np.savez(tmp_path / "d.npz", **x, **y, lengths=np.array([6, 4]))
    assert main(["grad", str(SPECS / "gru.rnn"), "--params", str(tmp_path / "p.npz"),
                 "--data", str(tmp_path / "d.npz"), "--clip-value", "0.05",
                 "-o", str(tmp_path / "g.npz")]) == 0
    _, g = mod.loss_and_grad(params, x, y, None, 6, np.array([6, 4]))
    saved = dict(np.load(tmp_path / "g.npz"))
    for n, v in g["params"].items():
        assert np.array_equal(saved[n], np.clip(v, -0.05, 0.05))
    assert "gradient by full BPTT" in capsys.readouterr().out


def test_grad_randomized_truncation_is_one_draw(capsys):
    assert main(["grad", str(SPECS / "elman.rnn"), "--random-truncation", "0.5",
                 "--seed", "4"]) == 0
    text = capsys.readouterr().out
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    params = mod.init_params(None, seed=4)
    _, x, y, _, _ = random_problem(mod, None, 10, 3, 4)
    xi = rnnspec.random_truncation(10, 0.5, 4, B=3)
    _, g = mod.loss_and_grad(params, x, y, None, 10, xi=xi)
    _, full = mod.loss_and_grad(params, x, y, None, 10)
    norm = np.sqrt(sum(np.sum(v ** 2) for v in g["params"].values()))
    other = np.sqrt(sum(np.sum(v ** 2) for v in full["params"].values()))
    assert f"global norm {norm:.6g}" in text and f"{norm:.6g}" != f"{other:.6g}"


@pytest.mark.parametrize("args, message", [
    (["--clip-random"], "--clip-random draws a step of norm V"),
    (["-o", "g.txt"], "name it .npz"),
    (["--clip-norm", "1", "--clip-value", "1"], "not allowed with argument"),
    (["--truncate", "3,1"], "K1 <= K2"),
])
def test_grad_usage_errors(args, message, capsys):
    try:
        code = main(["grad", str(SPECS / "elman.rnn")] + args)
    except SystemExit as exc:  # (argparse's own errors)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_grad_data_errors_name_the_array(tmp_path, capsys):
    mod = rnnspec.compile_file(SPECS / "elman.rnn")
    _, x, y, _, _ = random_problem(mod, None, 6, 2, 0)
    np.savez(tmp_path / "extra.npz", **x, **y, z=np.zeros(3))
    np.savez(tmp_path / "missing.npz", **x)
    np.savez(tmp_path / "shape.npz", x=x["x"][..., :2], **y)
    for name, message in (("extra", "unknown array(s) ['z']"), ("missing", "missing array(s) "
                                                                           "['y']"),
                          ("shape", "x")):
        assert main(["grad", str(SPECS / "elman.rnn"), "--data", str(tmp_path / f"{name}.npz")
                     ]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["grad", str(SPECS / "bigru.rnn"), "--truncate", "2"]) == 2
    assert "truncated BPTT cannot cut this spec" in capsys.readouterr().err


def test_grad_by_rtrl_equals_bptt(tmp_path, capsys):
    """--rtrl: the generated rtrl's gradient, saved, equals BPTT's to 1e-10."""
    assert main(["grad", str(SPECS / "lstm.rnn"), "--rtrl", "-o", str(tmp_path / "r.npz")]) == 0
    assert "gradient by RTRL (forward in time)" in capsys.readouterr().out
    assert main(["grad", str(SPECS / "lstm.rnn"), "-o", str(tmp_path / "b.npz")]) == 0
    r, b = dict(np.load(tmp_path / "r.npz")), dict(np.load(tmp_path / "b.npz"))
    for n in b:
        assert np.abs(r[n] - b[n]).max() <= 1e-10 * max(1.0, np.abs(b[n]).max()), n
    assert main(["grad", str(SPECS / "bigru.rnn"), "--rtrl"]) == 2
    assert "RTRL (compile --rtrl) cannot follow this spec" in capsys.readouterr().err
    assert main(["grad", str(SPECS / "lstm.rnn"), "--rtrl", "--truncate", "2"]) == 2
