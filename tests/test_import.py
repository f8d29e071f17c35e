"""Imports: blocks of another .rnn file, or a whole spec file used as a block.  An imported block
compiles to exactly the module of the same block written inline; a whole imported spec to the
network written by hand; paths are relative to the importing file; errors are positioned, in the
importing file for the import itself and in the imported file for what is wrong inside it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnspec
from conftest import ROOT, SPECS
from test_compose import HAND_WRITTEN

ELMAN_BY_HAND = """
dim m = 3
dim n = 4
input x[t]: m
target y[t]: class(m)
param h1_U: (n, m) = normal(1.0)
param h1_W: (n, n) = normal(1.0)
param h1_ba: n = normal(1.0)
state h1: n = zeros
h1[t] = tanh(h1_U @ x[t] + h1_W @ h1[t-1] + h1_ba)
param h2_U: (n, n) = normal(1.0)
param h2_W: (n, n) = normal(1.0)
param h2_ba: n = normal(1.0)
state h2: n = zeros
h2[t] = tanh(h2_U @ h1[t] + h2_W @ h2[t-1] + h2_ba)
o[t] = softmax(affine(h2[t], size=m))
loss = cross_entropy(o[t], y[t])
"""

TWO_ELMANS = """
dim m = 3
dim n = 4
input x[t]: m
target y[t]: class(m)
import "elman.rnn" as E -> s
import "elman.rnn" as E2(m = n) -> s
h1[t] = E(x[t])
h2[t] = E2(h1[t])
o[t] = softmax(affine(h2[t], size=m))
loss = cross_entropy(o[t], y[t])
"""


def same_behaviour(a, b, n_in=3, n_out=4, T=6):
    assert a.PARAMS == b.PARAMS and list(a.PARAMS) == list(b.PARAMS)
    params = a.init_params(seed=3)
    rng = np.random.default_rng(0)
    x = {"x": rng.normal(size=(T, 2, n_in))}
    y = {"y": rng.integers(0, n_out, (T, 2))}
    oa, ca = a.forward(params, x, y)
    ob, cb = b.forward(params, x, y)
    assert oa["loss"] == ob["loss"]
    ga, gb = a.backward(params, ca), b.backward(params, cb)
    for k in params:
        np.testing.assert_array_equal(ga["params"][k], gb["params"][k])


def test_imported_block_equals_the_block_written_inline():
    imported = rnnspec.compile_file(SPECS / "stacked_lstm_lib.rnn")
    inline = rnnspec.compile_file(SPECS / "stacked_lstm.rnn")
    by_hand = rnnspec.compile_source(HAND_WRITTEN, name="stacked_by_hand")
    same_behaviour(imported, inline)
    same_behaviour(imported, by_hand)


def test_whole_spec_import_equals_the_hand_written_network():
    imported = rnnspec.compile_source(TWO_ELMANS, name="two_elmans", base=SPECS)
    by_hand = rnnspec.compile_source(ELMAN_BY_HAND, name="two_elmans_by_hand")
    same_behaviour(imported, by_hand, n_out=3)
    assert imported.DIMS == {"m": 3, "n": 4}  # this file's dims win over elman.rnn's n = 5
    assert "h1_V" not in imported.PARAMS  # elman.rnn's output layer and loss are dropped


def test_stacked_gru_has_one_set_of_gru_parameters_per_use():
    mod = rnnspec.compile_file(SPECS / "stacked_gru.rnn")
    assert mod.PARAMS["h1_Uz"] == ("hidden", "in")
    assert mod.PARAMS["h2_Uz"] == ("hidden", "hidden")  # gru2(in = hidden)
    assert not any(k.endswith("_V") or k.endswith("_c") for k in mod.PARAMS)


def test_module_quotes_the_imported_files_and_is_deterministic():
    a = rnnspec.generate((SPECS / "stacked_lstm_lib.rnn").read_text(), None,
                         "stacked_lstm_lib.rnn", base=SPECS)
    b = rnnspec.generate((SPECS / "stacked_lstm_lib.rnn").read_text(), None,
                         str(SPECS / "stacked_lstm_lib.rnn"))
    assert a == b
    assert a.startswith("# generated from stacked_lstm_lib.rnn")
    assert "Imported lib/cells.rnn:" in a and "block gru(u) -> h {" in a
    assert "[cells.rnn line " in a  # comments on imported statements name their file


def test_paths_are_relative_to_the_importing_file(tmp_path):
    text = (SPECS / "stacked_lstm_lib.rnn").read_text()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "lib").mkdir()
    (tmp_path / "sub" / "lib" / "cells.rnn").write_text((SPECS / "lib" / "cells.rnn").read_text())
    (tmp_path / "sub" / "net.rnn").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "rnnspec.cli", "check", "../sub/net.rnn"],
                         cwd=elsewhere, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    # text only: relative to the current directory, or to base=
    old = os.getcwd()
    try:
        os.chdir(tmp_path / "sub")
        assert "W_h1_f_x" in rnnspec.compile_source(text, name="from_cwd").PARAMS
    finally:
        os.chdir(old)
    assert "W_h1_f_x" in rnnspec.compile_source(text, base=tmp_path / "sub").PARAMS


def test_nested_imports(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.rnn").write_text(
        "# base\nblock cell(u) -> h {\n  state h: n = zeros\n  h[t] = tanh(affine(u[t], h[t-1]))"
        "\n}\n")
    (tmp_path / "lib" / "two.rnn").write_text(
        "import cell from \"base.rnn\"\nblock two(u) -> b {\n  a[t] = cell(u[t])\n"
        "  b[t] = cell(a[t])\n}\n")
    (tmp_path / "net.rnn").write_text(
        "dim n = 3\ninput x[t]: n\ntarget y[t]: n\nimport two from \"lib/two.rnn\"\n"
        "z[t] = two(x[t])\nloss = squared_error(z[t], y[t])\n")
    mod = rnnspec.compile_file(tmp_path / "net.rnn")
    assert {"W_z_a_x", "W_z_a_z_a", "W_z_z_a", "W_z_z"} <= set(mod.PARAMS)
    assert rnnspec.gradcheck(mod, T=3).ok
    # a whole spec that itself imports: net.rnn as a block of a third file
    (tmp_path / "top.rnn").write_text(
        "dim n = 3\ninput x[t]: n\ntarget y[t]: n\nimport \"net.rnn\" as net -> z\n"
        "k[t] = net(x[t])\nloss = squared_error(k[t], y[t])\n")
    top = rnnspec.compile_file(tmp_path / "top.rnn")
    assert "W_k_z_a_x" in top.PARAMS
    assert rnnspec.gradcheck(top, T=3).ok


# ----- errors -----------------------------------------------------------------------------------
CELLS = """# cells
block cell(u) -> h {
    state h: n = zeros
    h[t] = tanh(affine(u[t], h[t-1]))
}
block bad(u) -> h {
    param W: (n, 2)
    state h: n = zeros
    h[t] = tanh(W @ u[t] + h[t-1])
}
"""
HEAD = "dim n = 3\ninput x[t]: n\ntarget y[t]: n\n"
TAIL = "h1[t] = cell(x[t])\nloss = squared_error(h1[t], y[t])\n"


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cells.rnn").write_text(CELLS)
    (tmp_path / "lib" / "broken.rnn").write_text("# broken\nblock cell(u) -> h {\n"
                                                 "    h[t] = tanh(u[t] +)\n}\n")
    (tmp_path / "a.rnn").write_text("# a\nimport \"b.rnn\"\n")
    (tmp_path / "b.rnn").write_text("# b\nimport \"a.rnn\"\n")
    (tmp_path / "elman.rnn").write_text((SPECS / "elman.rnn").read_text())
    return tmp_path


@pytest.mark.parametrize("body, file, line, column, message, hint", [
    ('import "lib/nothere.rnn"\n', "main.rnn", 4, 8, "no such file", "relative to"),
    ('import cel from "lib/cells.rnn"\n', "main.rnn", 4, 8, "has no block 'cel'",
     "did you mean 'cell'?"),
    ('import "a.rnn"\n', "b.rnn", 2, 8, "import cycle: ", "cannot import itself"),
    ('block cell(u) -> h {\n  h[t] = u[t]\n}\nimport "lib/cells.rnn"\n', "main.rnn", 7, 8,
     "block 'cell' from", "import only the blocks you need"),
    ('import "lib/broken.rnn"\n', "main.rnn", 4, 8, "cannot import", "fix"),
    ('import "elman.rnn" as cell -> q\n', "main.rnn", 4, 31, "has no per-step value 'q'",
     "its per-step values: s, o"),
    ('import "elman.rnn" as cell(k = n) -> s\n', "main.rnn", 4, 28, "has no dimension 'k'",
     "its dimensions: m, n"),
], ids=["missing-file", "missing-name", "cycle", "name-clash", "parse-error", "bad-output",
        "bad-dimension"])
def test_import_errors(tree, body, file, line, column, message, hint):
    (tree / "main.rnn").write_text(HEAD + body + TAIL)
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.compile_file(tree / "main.rnn")
    e = info.value
    where = [(os.path.basename(d.filename), d.line, d.column) for d in e.diagnostics]
    assert (file, line, column) in where, str(e)
    d = e.diagnostics[where.index((file, line, column))]
    assert message in d.message and hint in d.hint, str(e)
    assert d.source_line and "^" in str(d)


def test_parse_error_inside_the_imported_file_shows_that_file(tree):
    (tree / "main.rnn").write_text(HEAD + 'import "lib/broken.rnn"\n' + TAIL)
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.compile_file(tree / "main.rnn")
    first, inner = info.value.diagnostics[:2]
    assert first.filename.endswith("main.rnn") and first.line == 4  # at the import statement
    assert inner.filename.endswith(os.path.join("lib", "broken.rnn"))
    assert (inner.line, inner.column) == (3, 23)
    assert inner.source_line == "    h[t] = tanh(u[t] +)"
    assert "broken.rnn:3:23: error: syntax error: unexpected ')'" in str(info.value)


def test_shape_error_inside_an_imported_block_shows_that_file(tree):
    (tree / "main.rnn").write_text(HEAD + 'import bad from "lib/cells.rnn"\n'
                                   "h1[t] = bad(x[t])\nloss = squared_error(h1[t], y[t])\n")
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.compile_file(tree / "main.rnn")
    e = info.value
    assert e.filename.endswith(os.path.join("lib", "cells.rnn")), str(e)
    assert (e.line, e.column) == (9, 17)
    assert "h1_W is n×2" in e.message
    assert "h[t] = tanh(W @ u[t] + h[t-1])" in str(e)


def test_whole_spec_import_rejects_static_inputs_and_target_reads(tmp_path):
    (tmp_path / "static.rnn").write_text(
        "# s\ndim n = 2\ninput img: n\ninput x[t]: n\nstate h: n = img\n"
        "h[t] = tanh(affine(x[t], h[t-1]))\n")
    (tmp_path / "main.rnn").write_text(HEAD.replace("n = 3", "n = 2") +
                                       'import "static.rnn" as S -> h\n'
                                       "h1[t] = S(x[t])\nloss = squared_error(h1[t], y[t])\n")
    with pytest.raises(rnnspec.SpecError, match="static input 'img'") as info:
        rnnspec.compile_file(tmp_path / "main.rnn")
    assert (info.value.line, info.value.column) == (4, 24)
    (tmp_path / "tf.rnn").write_text((SPECS / "teacher_forcing.rnn").read_text())
    (tmp_path / "main.rnn").write_text(HEAD + 'import "tf.rnn" as S -> o\n'
                                       "h1[t] = S(x[t])\nloss = squared_error(h1[t], y[t])\n")
    with pytest.raises(rnnspec.SpecError, match="depends on its target"):
        rnnspec.compile_file(tmp_path / "main.rnn")


def test_cli_exits_2_without_traceback(tree):
    (tree / "main.rnn").write_text(HEAD + 'import "lib/broken.rnn"\nimport "lib/x.rnn"\n' + TAIL)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "rnnspec.cli", "check", "main.rnn"], cwd=tree,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "main.rnn:4:8: error: cannot import lib/broken.rnn" in run.stderr
    assert "main.rnn:5:8: error: no such file: lib/x.rnn" in run.stderr
    assert "lib/broken.rnn:3:23: error: syntax error" in run.stderr
