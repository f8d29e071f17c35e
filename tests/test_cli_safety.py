"""The command line's files and numbers: output paths checked before any work, atomic writes,
a full standard output, `python -m rnnspec`, numeric options, gradient-check reports (the worst
entries, the step as a cause, values that are not finite), bounded checks, imports that read only
regular .rnn files, and messages worded for the API or the command line."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import importlib

import rnnspec
from rnnspec import cli
from rnnspec.gradcheck import CheckTooLarge, compile_check, estimate_bytes, gradcheck, plan_work

gc = importlib.import_module("rnnspec.gradcheck")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ELMAN = (SPECS / "elman.rnn").read_text(encoding="utf-8")
S400 = ("dim n = 3\ninput x[t]: n\nparam W: (n, n)\nstate s: n = zeros\n"
        "s[t] = tanh(W @ s[t-1] + x[t])\nz = s[400]\n")


def run(argv, capsys):
    """cli.main in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err, *words):
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], err


@pytest.fixture
def no_check(monkeypatch):
    """Fails the test if compile's gradient check starts (paths are checked before it)."""
    def refuse(*a, **k):
        raise AssertionError("the gradient check ran before the output path was checked")
    monkeypatch.setattr(gc, "compile_check", refuse)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "elman.rnn"
    path.write_text(ELMAN, encoding="utf-8")
    return path


# ----- output paths, checked before any work ------------------------------------------------
def test_output_in_a_missing_directory(spec, tmp_path, capsys, no_check):
    target = tmp_path / "missing" / "dir" / "x.py"
    status, _, err = run(["compile", spec, "-o", target], capsys)
    one_line_error(status, err, "does not exist", "missing")
    assert not (tmp_path / "missing").exists()


def test_output_naming_a_directory(spec, tmp_path, capsys, no_check):
    status, _, err = run(["compile", spec, "-o", tmp_path], capsys)
    one_line_error(status, err, "is a directory")
    status, _, err = run(["compile", spec, "-o", f"{tmp_path}/sub/"], capsys)
    one_line_error(status, err, "directory")


def test_output_under_a_file(spec, tmp_path, capsys, no_check):
    status, _, err = run(["compile", spec, "-o", spec.with_suffix(".txt") / "x.py"], capsys)
    one_line_error(status, err)
    (tmp_path / "plain").write_text("x")
    status, _, err = run(["compile", spec, "-o", tmp_path / "plain" / "x.py"], capsys)
    one_line_error(status, err, "is not a directory")


def test_graph_output_in_a_missing_directory(spec, tmp_path, capsys):
    status, out, err = run(["graph", spec, "-o", tmp_path / "missing" / "x.dot"], capsys)
    one_line_error(status, err, "does not exist")
    assert out == ""


@pytest.mark.parametrize("how", ["same", "symlink", "spelling", "hardlink"])
def test_output_is_the_spec(tmp_path, capsys, no_check, how):
    spec = tmp_path / "model.py"  # not .rnn: only the same-file test can refuse it
    spec.write_text(ELMAN, encoding="utf-8")
    out = {"same": spec, "spelling": tmp_path / "." / ".." / tmp_path.name / "model.py"}.get(how)
    if how == "symlink":
        out = tmp_path / "link.py"
        out.symlink_to(spec)
    elif how == "hardlink":
        out = tmp_path / "hard.py"
        os.link(spec, out)
    status, _, err = run(["compile", spec, "-o", out], capsys)
    one_line_error(status, err, "is the spec", "itself")
    assert spec.read_text(encoding="utf-8") == ELMAN


def test_default_output_is_never_the_spec(tmp_path, capsys, no_check, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("model.py").write_text(ELMAN, encoding="utf-8")
    status, _, err = run(["compile", "model.py"], capsys)
    one_line_error(status, err, "default output", "is the spec", "-o")
    assert Path("model.py").read_text(encoding="utf-8") == ELMAN


def test_output_naming_another_spec_is_refused(spec, tmp_path, capsys, no_check):
    other = tmp_path / "other.rnn"
    other.write_text("dim n = 3\n", encoding="utf-8")
    for command in ("compile", "graph"):
        status, _, err = run([command, spec, "-o", other], capsys)
        one_line_error(status, err, ".rnn file")
    assert other.read_text(encoding="utf-8") == "dim n = 3\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_a_read_only_directory(spec, tmp_path, capsys, no_check):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, _, err = run(["compile", spec, "-o", locked / "x.py"], capsys)
        one_line_error(status, err, "no permission")
    finally:
        locked.chmod(0o700)


def test_dev_full(spec, capsys):
    status, _, err = run(["compile", spec, "-o", "/dev/full", "--no-gradcheck"], capsys)
    one_line_error(status, err, "cannot write /dev/full", "No space left")
    assert Path("/dev/full").is_char_device()  # written in place, never replaced


def test_full_standard_output():
    """`-o -` (and every table a command prints) into a full stdout: one line, exit 2."""
    for args in (["compile", "specs/elman.rnn", "-o", "-", "--no-gradcheck"],
                 ["check", "specs/elman.rnn"]):
        with open("/dev/full", "w") as full:
            r = subprocess.run([sys.executable, "-m", "rnnspec", *args], stdout=full,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().split("\n") == [
            f"rnnspec {args[0]}: error: cannot write to standard output: No space left on "
            f"device"], r.stderr


@pytest.mark.parametrize("name", ["a\x00b.py", "a\nb.py", "a\rb.py", " lead.py", "x\u2028y.py",
                                  "e\"\"\"';x.py", "\udcff.py"])
def test_hostile_output_names(spec, tmp_path, capsys, name):
    out = str(tmp_path / name)
    status, _, err = run(["graph", spec, "-o", out], capsys)
    assert "Traceback" not in err
    if "\x00" in name:
        one_line_error(status, err, "NUL")
        return
    assert status == 0, err
    assert err == f"wrote {cli.shown(out)}\n" and len(err.split("\n")) == 2
    assert Path(out).read_text(encoding="utf-8").startswith("digraph")


# ----- atomic writes -------------------------------------------------------------------------
@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_previous_file(spec, tmp_path, capsys, monkeypatch, failing):
    out = tmp_path / "elman.py"
    out.write_text("# the previous good module\n", encoding="utf-8")
    before = sorted(os.listdir(tmp_path))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(cli.os, failing, full)
    status, _, err = run(["compile", spec, "-o", out, "--no-gradcheck"], capsys)
    one_line_error(status, err, "cannot write", "No space left on device")
    assert out.read_text(encoding="utf-8") == "# the previous good module\n"
    assert sorted(os.listdir(tmp_path)) == before  # the temporary file is gone


def test_a_write_replaces_the_file_and_keeps_its_mode_and_links(spec, tmp_path, capsys):
    real = tmp_path / "real.dot"
    real.write_text("old", encoding="utf-8")
    real.chmod(0o640)
    link = tmp_path / "link.dot"
    link.symlink_to(real)
    status, _, err = run(["graph", spec, "-o", link], capsys)
    assert status == 0, err
    assert link.is_symlink() and real.read_text(encoding="utf-8").startswith("digraph")
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["elman.rnn", "link.dot", "real.dot"]


# ----- python -m rnnspec ---------------------------------------------------------------------
def test_python_m_rnnspec():
    r = subprocess.run([sys.executable, "-m", "rnnspec", "check", "specs/elman.rnn"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("specs/elman.rnn: ok")
    r = subprocess.run([sys.executable, "-m", "rnnspec", "--version"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("rnnspec ")


# ----- numeric options -----------------------------------------------------------------------
@pytest.mark.parametrize("command,option,value", [
    ("gradcheck", "--eps", "nan"), ("gradcheck", "--eps", "0"), ("gradcheck", "--eps", "-1"),
    ("gradcheck", "--eps", "inf"), ("gradcheck", "--rtol", "-1"), ("gradcheck", "--rtol", "nan"),
    ("gradcheck", "--atol", "-0.001"), ("gradcheck", "--atol", "inf"), ("gradcheck", "--T", "0"),
    ("gradcheck", "--T", "2.5"), ("gradcheck", "--batch", "-2"), ("gradcheck", "--seed", "-1"),
    ("gradcheck", "--directions", "0"), ("sample", "--T", "0"), ("sample", "--seed", "-1"),
    ("sample", "--init-seed", "-1"), ("sample", "--batch", "0"), ("sample", "--end", "-1"),
    ("graph", "--unroll", "0"), ("graph", "--unroll", "x")])
def test_bad_numbers_are_refused_in_one_line(capsys, command, option, value):
    status, out, err = run([command, SPECS / "elman.rnn", option, value], capsys)
    one_line_error(status, err, f"argument {option}", repr(value))
    assert out == ""


@pytest.mark.parametrize("kw", [dict(eps=float("nan")), dict(eps=0.0), dict(rtol=-1.0),
                                dict(atol=float("nan")), dict(batch=0), dict(seed=-1),
                                dict(T=0), dict(directions=0, directional=True)])
def test_api_refuses_bad_numbers(kw):
    mod = rnnspec.compile_source(ELMAN, name="elman")
    with pytest.raises(ValueError, match="must be"):
        gradcheck(mod, **kw)


# ----- gradient-check reports ----------------------------------------------------------------
def _broken(entry=(1, 2), by=0.01):
    """elman with one wrong entry in the gradient of W."""
    mod = rnnspec.compile_source(ELMAN, name="elman_broken")
    backward = mod.backward

    def wrong(params, cache, upstream=None):
        g = backward(params, cache, upstream)
        g["params"]["W"][entry] += by
        return g
    mod.backward = wrong
    return mod


def test_a_failure_names_the_worst_entry_and_the_gradient_as_the_cause():
    mod = _broken()
    report = gradcheck(mod, T=4, batch=2)
    assert not report.ok and not report.step_suspect
    row = next(r for r in report.rows if r.label == "params.W")
    assert row.worst_index == (1, 2)
    assert abs(row.worst_analytic - row.worst_numeric - 0.01) < 1e-6
    text = report.table()
    assert f"params.W[1, 2]: analytic {row.worst_analytic:.10g}, numeric " in text
    assert "the gradients are wrong" in text
    assert [r.label for r in report.rows if not r.ok] == ["params.W"]


def test_a_step_too_large_is_named_as_the_cause():
    mod = rnnspec.compile_source(ELMAN, name="elman")
    report = gradcheck(mod, T=3, batch=2, eps=0.3)
    assert not report.ok and report.step_suspect
    assert "the error shrinks as the step shrinks" in report.table()
    assert "not the gradients" in report.table()


def test_huge_exact_gradients_pass_by_extrapolation_and_wrong_ones_still_fail():
    """An exp recurrence (old fuzz finding 003341) whose gradient of alpha is about -5.7e18:
    D(eps) and D(eps/4) are off by 4e-5 and 2e-6 relative (truncation), their Richardson
    extrapolation agrees to 1e-9; a gradient wrong by 1e-4 relative is still a FAIL."""
    path = Path(__file__).parent / "fuzz_findings" / "003341_gradfail.rnn"
    dims = {"hidden": 4}
    mod = rnnspec.compile_file(path, dims=dims)
    report = gradcheck(mod, dims=dims, T=4, batch=2)
    assert report.ok, report.table()
    backward = mod.backward

    def wrong(params, cache, upstream=None):
        g = backward(params, cache, upstream)
        g["params"]["alpha"] = g["params"]["alpha"] * (1 + 1e-4)
        return g
    mod.backward = wrong
    report = gradcheck(mod, dims=dims, T=4, batch=2)
    assert [r.label for r in report.rows if not r.ok] == ["params.alpha"], report.table()


NONFINITE = {
    "log": "o[t] = log(x[t])",
    "division": "const z = 0\no[t] = x[t] / z",
    "exp": "o[t] = exp(1000 * x[t])",
}


@pytest.mark.parametrize("case", sorted(NONFINITE))
def test_values_that_are_not_finite_are_not_called_a_bug(tmp_path, capsys, case):
    spec = tmp_path / f"{case}.rnn"
    spec.write_text(f"dim n = 3\ninput x[t]: n\ntarget y[t]: n\n{NONFINITE[case]}\n"
                    f"loss = squared_error(o[t], y[t])\n", encoding="utf-8")
    report = gradcheck(rnnspec.compile_file(spec), T=3, batch=2)
    assert not report.ok and report.nonfinite.startswith("outputs['o'] is ")
    assert "NOT FINITE" in report.table() and "numeric ranges" in report.table()
    status, _, err = run(["compile", spec, "-o", tmp_path / "out.py"], capsys)
    assert status == 1 and "Traceback" not in err
    assert "bug in rnnspec" not in err and "not finite" in err
    assert "RuntimeWarning" not in err
    assert not (tmp_path / "out.py").exists()
    status, out, err = run(["gradcheck", spec], capsys)
    assert status == 1 and "NOT FINITE: outputs['o']" in out and "bug" not in out + err


def test_bug_wording_only_for_wrong_gradients(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "elman.rnn"
    spec.write_text(ELMAN, encoding="utf-8")
    real = cli.load_module

    def load_broken(source, name="spec", filename=None):
        mod = real(source, name, filename)
        backward = mod.backward

        def wrong(params, cache, upstream=None):
            g = backward(params, cache, upstream)
            g["params"]["V"][0, 0] += 0.01
            return g
        mod.backward = wrong
        return mod
    monkeypatch.setattr(cli, "load_module", load_broken)
    status, _, err = run(["compile", spec, "-o", tmp_path / "out.py"], capsys)
    assert status == 1
    assert "params.V[0, 0]: analytic" in err and "WRONG" in err and "bug in rnnspec" in err
    assert not (tmp_path / "out.py").exists()


# ----- bounded checks ------------------------------------------------------------------------
def _counting(mod):
    calls = []
    forward = mod.forward

    def counted(*a, **k):
        calls.append(1)
        return forward(*a, **k)
    mod.forward = counted
    return calls


def test_plan_work():
    assert plan_work([10, 20], cost=10, max_work=None) is None
    assert plan_work([10, 20], cost=1, max_work=1000) is None  # 60 evaluations fit
    cap = plan_work([4, 1000], cost=1, max_work=103)  # 100 evaluations
    assert cap == 45  # 2 * 4 + (2 * 45 + 2 for one direction) = 100 evaluations
    with pytest.raises(CheckTooLarge, match="at least 7 evaluations"):
        plan_work([5, 5], cost=1000, max_work=5000)


def test_compile_check_of_a_far_step_is_bounded_and_says_so(tmp_path, capsys):
    mod = rnnspec.compile_source(S400, name="s400")
    assert mod.MIN_T["T"] == 400
    calls = _counting(mod)
    report = compile_check(mod)
    assert report.ok, report.table()
    assert report.sizes["T"] == 402  # the fewest steps plus 2
    cost = gc.evaluation_cost(mod, {"t": 402})
    assert len(calls) * cost <= 3 * gc.COMPILE_WORK  # the base run, the plan, re-measuring
    x = next(r for r in report.rows if r.label == "inputs.x")
    assert x.sampled and x.total == 402 * 2 * 3 and x.directions == 1
    assert f"of {x.total} +1 dir" in report.table()
    spec = tmp_path / "s400.rnn"
    spec.write_text(S400, encoding="utf-8")
    status, _, err = run(["compile", spec, "-o", tmp_path / "s400.py"], capsys)
    assert status == 0 and "a random subset" in err


def test_a_loss_at_a_far_step_is_bounded(tmp_path):
    text = ELMAN.replace("loss = cross_entropy(o[t], y[t])",
                         "loss = cross_entropy(o[t], y[t]) at t = 3000")
    mod = rnnspec.compile_source(text, name="far", dims={"m": 3, "n": 4})
    calls = _counting(mod)
    report = compile_check(mod, {"m": 3, "n": 4})
    assert report.ok, report.table()
    assert len(calls) <= 3 * gc.COMPILE_WORK // gc.evaluation_cost(mod, {"t": 3001})


def test_too_much_work_is_refused_up_front(tmp_path, capsys):
    text = S400.replace("s[400]", "s[200000]")
    spec = tmp_path / "far.rnn"
    spec.write_text(text, encoding="utf-8")
    status, _, err = run(["compile", spec, "-o", tmp_path / "far.py"], capsys)
    one_line_error(status, err, "evaluations", "--no-gradcheck")
    assert not (tmp_path / "far.py").exists()


def test_gigabytes_are_refused_up_front_with_the_number(capsys):
    mod = rnnspec.compile_source(ELMAN, name="elman")
    with pytest.raises(CheckTooLarge, match=r"would need about \d+\.\d GB"):
        gradcheck(mod, T=10 ** 8, batch=2)
    assert estimate_bytes(mod, None, {"t": 10 ** 8}, 2) > 10 ** 9
    status, _, err = run(["gradcheck", SPECS / "elman.rnn", "--T", "100000000"], capsys)
    one_line_error(status, err, "GB of memory")


def test_the_estimate_bounds_the_memory_actually_used():
    import tracemalloc
    for stem in ("elman", "lstm", "attention_general", "hierarchical"):
        mod = rnnspec.compile_file(SPECS / f"{stem}.rnn")
        T = {a: 6 for a in mod.AXES}
        tracemalloc.start()
        gradcheck(mod, T=T, batch=3, directional=True, directions=1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= estimate_bytes(mod, None, T, 3) + 2 ** 20, stem


def test_gradcheck_default_steps_follow_the_spec(capsys, tmp_path):
    spec = tmp_path / "s20.rnn"
    spec.write_text(S400.replace("s[400]", "s[20]"), encoding="utf-8")
    status, out, err = run(["gradcheck", spec], capsys)
    assert status == 0, out + err
    assert "T=22" in out.split("\n")[0]


# ----- imports read regular .rnn files only --------------------------------------------------
def _import_error(tmp_path, path_text):
    main = tmp_path / "main.rnn"
    main.write_text(f'import "{path_text}"\ndim n = 3\ninput x[t]: n\nh[t] = tanh(x[t])\n',
                    encoding="utf-8")
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.compile_file(main)
    e = info.value
    assert (e.filename, e.line, e.column) == (str(main), 1, 8)
    return str(e)


def test_import_of_a_fifo_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.rnn")
    code = ("import rnnspec, sys\ntry:\n    rnnspec.compile_file(sys.argv[1])\n"
            "except rnnspec.SpecError as e:\n    print(e)\n")
    (tmp_path / "main.rnn").write_text('import "pipe.rnn"\ndim n = 3\n', encoding="utf-8")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "main.rnn")],
                       capture_output=True, text=True, timeout=60)  # a hang fails here
    assert "main.rnn:1:8: error:" in r.stdout and "is a FIFO" in r.stdout, r.stdout + r.stderr
    assert _import_error(tmp_path, "pipe.rnn").count("regular files only") == 1


def test_a_fifo_spec_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.rnn")
    r = subprocess.run([sys.executable, "-m", "rnnspec", "check", "pipe.rnn"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "pipe.rnn:1:1: error: pipe.rnn is a FIFO" in r.stderr


@pytest.mark.parametrize("target", ["/dev/urandom", "/etc/passwd", "/proc/self/environ"])
def test_import_of_a_file_that_is_not_a_spec_quotes_none_of_it(tmp_path, target):
    if not os.path.exists(target):
        pytest.skip(f"no {target}")
    text = _import_error(tmp_path, target)
    assert "is not a .rnn file" in text
    assert text.count("\n") == 3  # the header, the import line, the caret, the hint


def test_a_parent_directory_file_and_a_link_named_rnn_are_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET=hunter2 is not a spec\n", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "looks.rnn").symlink_to(secret)
    for path_text in ("../secret.txt", "looks.rnn"):
        text = _import_error(sub, path_text)
        assert "hunter2" not in text and "not a .rnn file" in text


def test_imports_of_specs_by_absolute_and_parent_paths_still_work(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "cells.rnn").write_text((SPECS / "lib" / "cells.rnn").read_text(encoding="utf-8"),
                                   encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    body = "dim n = 3\ninput x[t]: n\nh[t] = elman(x[t])\n"
    for path_text in ("../lib/cells.rnn", str(lib / "cells.rnn")):
        (sub / "main.rnn").write_text(f'import elman from "{path_text}"\n{body}',
                                      encoding="utf-8")
        try:
            rnnspec.compile_file(sub / "main.rnn")
        except rnnspec.SpecError as e:  # (cells.rnn's blocks may need other arguments)
            assert "not a .rnn file" not in str(e) and "regular" not in str(e), str(e)


# ----- messages worded for the API or the command line ---------------------------------------
def test_dim_errors_are_worded_for_the_api(tmp_path, capsys):
    for kw, words in ((dict(dims={"nn": 3}), "dims={'nn': 3}: the spec has no dimension"),
                      (dict(dims={"n": 0}), "dims={'n': 0}: a dimension must be a positive")):
        with pytest.raises(rnnspec.SpecError) as info:
            rnnspec.compile_source(ELMAN, **kw)
        assert words in str(info.value) and "--dim" not in str(info.value)
        path = tmp_path / "elman.rnn"
        path.write_text(ELMAN, encoding="utf-8")
        with pytest.raises(rnnspec.SpecError) as info:
            rnnspec.compile_file(path, **kw)
        assert "--dim" not in str(info.value)
    status, _, err = run(["check", SPECS / "elman.rnn", "--dim", "nn=3"], capsys)
    assert status == 2 and "--dim nn=3: the spec has no dimension 'nn'" in err


def test_init_params_refuses_an_unknown_dim():
    mod = rnnspec.compile_source(ELMAN, name="elman")
    with pytest.raises(ValueError, match=r"unknown dim 'nn'; did you mean 'n'\?"):
        mod.init_params(dims={"nn": 8})
    assert mod.init_params(dims={"n": 8})["W"].shape == (8, 8)


@pytest.mark.parametrize("T", [None, 7])
def test_batch_major_arrays_are_called_time_major(T):
    mod = rnnspec.compile_source(ELMAN, name="elman")
    x = np.zeros((4, 7, 3))  # (B, T, m): batch-major
    y = np.zeros((7, 4), dtype=int)
    with pytest.raises(ValueError, match=r"arrays are time-major, \(T, B, \.\.\.\)"):
        mod.forward(mod.init_params(), {"x": x}, {"y": y}, T=T)
