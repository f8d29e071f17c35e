"""Every user error in a spec is a :class:`rnnspec.SpecError` with a position, a message, a hint
and the source line with a caret -- never a traceback.

The table below lists bad specs with the expected position and a distinctive part of the message;
the tests after it check that all semantic errors of a file are collected, that an unused
parameter is only a warning, and that the command line reports errors (exit status 2,
``file:line:col`` on stderr) without a traceback.
"""
import subprocess
import sys
from pathlib import Path

import pytest

import rnnspec
from conftest import BAD_FILENAME, assert_rendered, first_error
from rnnspec import SpecError

FILENAME = BAD_FILENAME

# five lines every semantic case starts with: the statement under test is on line 6
HEAD = """dim in = 3
dim hidden = 5
dim out = 4
input x[t]: in
target y[t]: class(out)
"""


def case(id, text, line, column, message, hint=""):
    """A bad spec, where its (first) error is and a distinctive part of the message and hint."""
    return pytest.param(text, line, column, message, hint, id=id)


SYNTAX = [
    case("missing-paren-next-statement",
         HEAD + "param W: (hidden, in)\nh[t] = tanh(W @ x[t]\no[t] = h[t]\n",
         8, 1, "unexpected 'o'", "')'"),
    case("missing-paren-at-eof",
         "dim n = 3\ninput x[t]: n\ny[t] = tanh(x[t]\n",
         3, 17, "unexpected end of file", "')'"),
    case("unexpected-character-dollar",
         "dim n = 3 $\n",
         1, 11, "unexpected character '$'", "a new statement"),
    case("unexpected-character-in-expression",
         HEAD + "h[t] = x[t] $ x[t]\n",
         6, 13, "unexpected character '$'", "'+'"),
    case("keyword-as-dimension-name",
         "dim input = 3\n",
         1, 5, "'input' is a keyword and cannot be used as a name", "not a keyword"),
    case("keyword-as-parameter-name",
         "dim n = 3\nparam sum: n\n",
         2, 7, "'sum' is a keyword and cannot be used as a name", "not a keyword"),
    case("keyword-as-value-name",
         HEAD + "state[t] = x[t]\n",
         6, 1, "'state' is a keyword and cannot be used as a name", "not a keyword"),
    case("keyword-in-expression",
         HEAD + "h[t] = tanh(end)\n",
         6, 13, "'end' is a keyword and cannot be used as a name", "not a keyword"),
    case("unexpected-eof-after-equals",
         "dim n =",
         1, 8, "unexpected end of file", "an integer"),
    case("unexpected-eof-before-trailing-comment",
         "dim n = 3\ninput x[t]:\n\n# a comment after the last statement\n",
         2, 12, "unexpected end of file", "a name"),
    case("nul-character",
         "dim n = 3\x00\n",
         1, 10, "NUL character", "remove it"),
    case("number-too-large",
         HEAD + "h[t] = 1e999 * x[t]\n",
         6, 8, "number 1e999 is too large", "1e308"),
    case("integer-too-large",
         "dim n = 12345678901\n",
         1, 9, "integer 12345678901 is too large", "at most"),
]

SEMANTIC = [
    case("undefined-name",
         HEAD + "param W: (hidden, in)\nparam U: (hidden, hidden)\nstate h: hidden\n"
                "h[t] = tanh(W @ x[t] + U @ hh[t-1])\n",
         9, 28, "undefined name 'hh'", "did you mean 'h'?"),
    case("duplicate-parameter",
         HEAD + "param W: (hidden, in)\nparam W: (hidden, hidden)\n",
         7, 1, "'W' is already defined (as a parameter at line 6)", "its own name"),
    case("duplicate-across-kinds",
         HEAD + "param x: in\n",
         6, 1, "'x' is already defined (as a sequence input at line 4)", "its own name"),
    case("duplicate-equation",
         HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t])\no[t] = tanh(V @ x[t])\n",
         8, 1, "'o' already has an equation (line 7)", "once"),
    case("duplicate-dimension",
         "dim n = 3\ndim n = 4\n",
         2, 1, "dimension 'n' is already defined", "once"),
    case("unknown-dimension",
         HEAD + "param W: (hidden, inn)\n",
         6, 19, "unknown dimension 'inn'", "did you mean 'in'?"),
    case("matmul-shape-mismatch",
         HEAD + "param W: (hidden, hidden)\nstate h: hidden\nh[t] = tanh(W @ x[t] + h[t-1])\n",
         8, 13, "`W @ x[t]`: W is hidden×hidden but x[t] has size in", "columns"),
    case("matmul-left-not-matrix",
         HEAD + "param b: hidden\nstate h: hidden\nh[t] = tanh(b @ h[t-1])\n",
         8, 13, "the left side of @ must be a matrix", "matrix parameter"),
    case("elementwise-size-mismatch",
         HEAD + "param b: out\nstate h: hidden\nh[t] = tanh(b + h[t-1])\n",
         8, 13, "`b + h[t-1]`: b is a vector of size out but h[t-1] is a vector of size hidden",
         "equal sizes"),
    case("cycle-two-values",
         HEAD + "param W: (hidden, in)\na[t] = tanh(W @ x[t] + b[t])\nb[t] = tanh(a[t])\n",
         7, 1, "cycle within one time step: a -> b -> a", "delay"),
    case("cycle-three-annotated-values",
         HEAD + "param W: (hidden, in)\na[t]: hidden = tanh(W @ x[t] + c[t])\n"
                "b[t]: hidden = tanh(a[t])\nc[t]: hidden = b[t]\n",
         7, 1, "cycle within one time step: a -> b -> c -> a", "c[t-1]"),
    case("cycle-self",
         HEAD + "param W: (hidden, in)\na[t]: hidden = tanh(W @ x[t] + a[t])\n",
         7, 1, "'a' depends on itself within one time step (a -> a)", "a[t-1]"),
    case("cycle-through-a-chosen-step",
         HEAD + "state h: hidden\nparam W: (hidden, in)\no = tanh(h[end])\n"
                "h[t] = tanh(W @ x[t] + h[t-1] + o)\n",
         8, 1, "cycle through a chosen step: 'o' reads 'h' at a fixed step, but 'h' depends on "
               "'o' (h -> o -> h)", "known only after the time loop"),
    case("cycle-static-values",
         HEAD + "param W: (hidden, in)\no = tanh(W @ x[end] + p)\np = o\n",
         7, 1, "cycle within one time step: o -> p -> o", "static"),
    case("delayed-non-state",
         HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t])\nz[t] = o[t-1]\n",
         8, 10, "'o[t-1]' is a delayed reference, but 'o' is not a state and has no initial value",
         "state o: out = zeros"),
    case("delayed-self-reference-non-state",
         HEAD + "param W: (hidden, in)\na[t] = tanh(W @ x[t] + a[t-1])\n",
         7, 26, "'a[t-1]' is a delayed reference, but 'a' is not a state", "state a"),
    case("delayed-input",
         HEAD + "state h: in\nh[t] = h[t-1] + x[t-1]\n",
         7, 19, "'x[t-1]' is a delayed reference, but 'x' is an input and has no initial value",
         "feed x[t] into a state"),
    case("later-step-of-non-state",
         HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t])\nz[t] = o[t+1]\n",
         8, 10, "'o[t+1]' refers to a later step, but 'o' is not a state", "state o: out = zeros"),
    case("later-step-of-input",
         HEAD + "state h: in\nh[t] = h[t+1] + x[t+1]\n",
         7, 19, "'x[t+1]' refers to a later step, but 'x' is an input", "runs backward in time"),
    case("forward-and-backward-in-one-recurrence",
         HEAD + "param W: (hidden, in)\nstate h: hidden\nh[t] = tanh(W @ x[t] + h[t-1] + h[t+1])\n",
         8, 1, "the recurrence through h depends on both earlier steps (t-d) and later steps",
         "split it into a forward and a backward state"),
    case("loss-without-target",
         HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t])\nloss = cross_entropy(o[t])\n",
         8, 8, "the loss has no target", "target y[t]: class(out)"),
    case("loss-with-input-as-target",
         HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t])\nloss = cross_entropy(o[t], x[t])\n",
         8, 28, "the loss has no target: 'x' is not a target",
         "declare one: target x[t]: class(K)"),
    case("squared-error-with-input-as-target",
         HEAD + "param V: (out, in)\no[t] = V @ x[t]\nloss = squared_error(o[t], x[t])\n",
         8, 28, "the loss has no target: 'x' is not a target",
         "declare one: target x[t]: SIZE (the prediction's size)"),
    case("cross-entropy-without-softmax",
         HEAD + "param V: (out, in)\no[t] = tanh(V @ x[t])\nloss = cross_entropy(o[t], y[t])\n",
         8, 22, "cross_entropy needs probabilities from softmax", "softmax(...)"),
    case("state-without-equation",
         HEAD + "param V: (out, in)\nstate h: hidden\no[t] = softmax(V @ x[t])\n"
                "loss = cross_entropy(o[t], y[t])\n",
         7, 1, "state 'h' has no equation", "h[t] = ..."),
    case("state-equation-independent-of-step",
         HEAD + "state h: hidden\nh[t] = 2\n",
         7, 1, "'h[t]' does not depend on the step", "static value"),
    case("unknown-function",
         HEAD + "param V: (out, in)\no[t] = sofmax(V @ x[t])\n",
         7, 8, "unknown function 'sofmax'", "did you mean 'softmax'?"),
    case("unknown-initializer",
         HEAD + "param V: (out, in) = xavir\no[t] = softmax(V @ x[t])\n",
         6, 22, "unknown initializer 'xavir'", "did you mean 'xavier'?"),
    case("initializer-needs-argument",
         HEAD + "param V: (out, in) = normal\no[t] = softmax(V @ x[t])\n",
         6, 22, "initializer 'normal' needs an argument", "normal(0.1)"),
    case("affine-size-unknown",
         HEAD + "o[t] = softmax(affine(x[t]))\n",
         6, 16, "cannot tell the output size of affine(...)", "size="),
    case("connection-parameter-name-taken",
         HEAD + "param W_h_x: (hidden, in)\nstate h: hidden\nh[t] = tanh(affine(x[t], h[t-1]))\n",
         8, 13, "affine(...) creates parameter 'W_h_x', but that name is already used (line 6)",
         "name="),
    case("static-value-depends-on-step",
         HEAD + "param V: (out, in)\no = softmax(V @ x[t])\n",
         7, 17, "static value 'o' cannot depend on step t", "x[end]"),
    case("sequence-of-another-axis",
         HEAD + "state h: in\nh[s] = h[s-1] + x[s]\n",
         7, 19, "'x' runs over steps t, not s", "x[end] or attend(x)"),
    case("target-used-as-value",
         HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t] + y[t])\n",
         7, 27, "'y' is a target", "feed a value"),
]


@pytest.mark.parametrize("text, line, column, message, hint", SYNTAX + SEMANTIC)
def test_error_position_message_hint(text, line, column, message, hint):
    exc = first_error(text)
    assert isinstance(exc, ValueError)
    assert (exc.filename, exc.line, exc.column) == (FILENAME, line, column), str(exc)
    assert message in exc.message, str(exc)
    assert exc.hint, f"no hint:\n{exc}"
    assert hint in exc.hint, str(exc)
    assert exc.diagnostics[0].line == line and exc.diagnostics[0].column == column
    for d in exc.diagnostics:
        assert d.hint, f"no hint:\n{d}"
        assert_rendered(d, text)
    assert str(exc.diagnostics[0]) in str(exc)


@pytest.mark.parametrize("text, line, column, message, hint", SYNTAX)
def test_syntax_error_hint_says_what_was_expected(text, line, column, message, hint):
    exc = first_error(text)
    assert exc.message.startswith("syntax error: ")
    if "unexpected" in exc.message:
        assert exc.hint.startswith("expected "), exc.hint


@pytest.mark.parametrize("text, line, column", [
    ("dim n = 3" + " " * 5000 + "$ # the end", 1, 5010),
    ("$" + " " * 5000, 1, 1),
    ("dim n = " + "9" * 5000 + "\n", 1, 9),
], ids=["end-of-long-line", "start-of-long-line", "long-integer"])
def test_long_source_line_is_shown_as_an_excerpt_with_the_caret_on_the_error(text, line, column):
    exc = first_error(text)
    assert (exc.line, exc.column) == (line, column)
    header, source, caret, hint = str(exc.diagnostics[0]).split("\n")
    assert len(source) < 120 and len(caret) < 120
    assert caret.strip() == "^"
    offset = caret.index("^")
    assert source[offset] == text[column - 1]


def test_compile_source_raises_the_same_error():
    text = SEMANTIC[0].values[0]
    with pytest.raises(SpecError) as info:
        rnnspec.compile_source(text, name="bad")
    assert (info.value.line, info.value.column) == (9, 28)
    assert info.value.filename == "bad.rnn"


def test_unknown_dimension_override():
    text = HEAD + "param V: (out, in)\no[t] = softmax(V @ x[t])\nloss = cross_entropy(o[t], y[t])\n"
    with pytest.raises(SpecError) as info:
        rnnspec.generate(text, dims={"hiden": 8, "out": 0})
    messages = [d.message for d in info.value.diagnostics]
    assert any("no dimension 'hiden'" in m for m in messages), messages
    assert any("positive integer" in m for m in messages), messages
    assert "did you mean 'hidden'?" in info.value.hint


def test_all_semantic_errors_are_collected_in_line_order():
    # found in the order 7 (unknown dim, while declaring), 8, 9 (while typing equations) and
    # 6 (a state without equation, checked last): reported sorted by position
    text = HEAD + ("state h: hidden\n"
                   "param W: (hidden, inn)\n"
                   "o[t] = sofmax(x[t])\n"
                   "q[t] = zz[t]\n")
    with pytest.raises(SpecError) as info:
        rnnspec.generate(text, filename=FILENAME)
    exc = info.value
    assert len(exc.diagnostics) == 4, str(exc)
    assert [d.line for d in exc.diagnostics] == [6, 7, 8, 9]
    assert "state 'h' has no equation" in exc.diagnostics[0].message
    assert "unknown dimension 'inn'" in exc.diagnostics[1].message
    assert "unknown function 'sofmax'" in exc.diagnostics[2].message
    assert "undefined name 'zz'" in exc.diagnostics[3].message
    assert (exc.line, exc.column) == (6, 1)  # the first one
    rendered = str(exc)
    positions = [rendered.index(f"{FILENAME}:{d.line}:{d.column}: error:") for d in exc.diagnostics]
    assert positions == sorted(positions)


def test_three_independent_errors_are_all_reported():
    text = HEAD + ("param W: (out, inn)\n"
                   "o[t] = sofmax(x[t])\n"
                   "q[t] = zz[t]\n")
    with pytest.raises(SpecError) as info:
        rnnspec.generate(text, filename=FILENAME)
    exc = info.value
    assert len(exc.diagnostics) == 3, str(exc)
    assert [(d.line, d.column) for d in exc.diagnostics] == [(6, 16), (7, 8), (8, 8)]
    for d in exc.diagnostics:
        assert d.hint
        assert_rendered(d, text)


UNUSED = HEAD + """param V: (out, in)
param Z: (out, in)
o[t] = softmax(V @ x[t])
loss = cross_entropy(o[t], y[t])
"""


def test_unused_parameter_is_a_warning_and_still_compiles():
    a = rnnspec.analyze(UNUSED, filename=FILENAME)
    warnings = a.model.warnings
    assert len(warnings) == 1
    w = warnings[0]
    assert (w.line, w.column, w.severity) == (7, 1, "warning")
    assert "parameter 'Z' is never used" in w.message
    assert w.hint
    assert str(w).startswith(f"{FILENAME}:7:1: warning: parameter 'Z' is never used")
    source = rnnspec.generate(UNUSED)
    compile(source, "unused.py", "exec")
    module = rnnspec.compile_source(UNUSED, name="unused")
    assert "Z" in module.PARAMS


# ----- the command line ----------------------------------------------------------------------
def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "rnnspec.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


GOOD = HEAD + """param V: (out, in)
o[t] = softmax(V @ x[t])
loss = cross_entropy(o[t], y[t])
"""


def test_cli_module_can_be_run():
    import rnnspec.cli
    source = Path(rnnspec.cli.__file__).read_text(encoding="utf-8")
    assert 'if __name__ == "__main__"' in source


@pytest.mark.parametrize("command", ["check", "compile", "gradcheck", "graph"])
def test_cli_bad_spec(tmp_path, command):
    (tmp_path / FILENAME).write_text(SEMANTIC[0].values[0], encoding="utf-8")
    r = run_cli(command, FILENAME, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"{FILENAME}:9:28: error: undefined name 'hh'" in r.stderr
    assert "hint: did you mean 'h'?" in r.stderr
    assert "^" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "bad.py").exists()


def test_cli_syntax_error(tmp_path):
    (tmp_path / FILENAME).write_text("dim n = 3\ninput x[t]: n\ny[t] = tanh(x[t]\n",
                                     encoding="utf-8")
    r = run_cli("check", FILENAME, cwd=tmp_path)
    assert r.returncode == 2
    assert f"{FILENAME}:3:17: error: syntax error: unexpected end of file" in r.stderr
    assert "hint: expected" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_reports_every_error(tmp_path):
    text = HEAD + "param W: (out, inn)\no[t] = sofmax(x[t])\nq[t] = zz[t]\n"
    (tmp_path / FILENAME).write_text(text, encoding="utf-8")
    r = run_cli("check", FILENAME, cwd=tmp_path)
    assert r.returncode == 2
    for pos in ("6:16", "7:8", "8:8"):
        assert f"{FILENAME}:{pos}: error:" in r.stderr
    assert "3 errors" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_missing_file(tmp_path):
    r = run_cli("check", "nosuch.rnn", cwd=tmp_path)
    assert r.returncode == 2
    assert "nosuch.rnn:1:1: error: no such file" in r.stderr
    assert "hint:" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_not_utf8(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"dim n = 3\n\xff\xfe\n")
    r = run_cli("check", FILENAME, cwd=tmp_path)
    assert r.returncode == 2
    assert f"{FILENAME}:1:1: error:" in r.stderr and "UTF-8" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_dim_not_an_integer_has_position(tmp_path):
    (tmp_path / "good.rnn").write_text(GOOD, encoding="utf-8")
    r = run_cli("check", "good.rnn", "--dim", "hidden=abc", cwd=tmp_path)
    assert r.returncode == 2
    # positioned at the declaration of the dimension it overrides
    assert "good.rnn:2:1: error: --dim hidden=abc: a dimension must be a positive integer" \
        in r.stderr
    assert "    dim hidden = 5" in r.stderr
    assert "hint: for example --dim hidden=8" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_dim_unknown_name(tmp_path):
    (tmp_path / "good.rnn").write_text(GOOD, encoding="utf-8")
    r = run_cli("check", "good.rnn", "--dim", "nosuch=3", cwd=tmp_path)
    assert r.returncode == 2
    assert "good.rnn:1:1: error: --dim nosuch=3: the spec has no dimension 'nosuch'" in r.stderr
    assert "hint: its dimensions are: in, hidden, out" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_warning_for_unused_parameter(tmp_path):
    (tmp_path / "unused.rnn").write_text(UNUSED, encoding="utf-8")
    r = run_cli("check", "unused.rnn", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unused.rnn:7:1: warning: parameter 'Z' is never used" in r.stderr
    assert "unused.rnn: ok" in r.stdout


def test_cli_main_in_process(tmp_path, capsys):
    from rnnspec import cli
    (tmp_path / FILENAME).write_text(SEMANTIC[0].values[0], encoding="utf-8")
    assert cli.main(["check", str(tmp_path / FILENAME)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / FILENAME}:9:28: error: undefined name 'hh'" in err
    assert "Traceback" not in err


def test_cli_compile_checks_a_spec_that_needs_more_steps(tmp_path):
    """compile's automatic gradient check runs enough steps for h[end-5]; gradcheck --T that
    is too short is a usage error, not a traceback."""
    spec = tmp_path / "endk.rnn"
    spec.write_text("dim n = 3\ninput x[t]: n\ntarget y: n\nstate h: n = zeros\n"
                    "h[t] = tanh(x[t] + h[t-1])\nloss = squared_error(h[end-5], y)\n")
    ok = run_cli("compile", str(spec), "-o", str(tmp_path / "endk.py"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    short = run_cli("gradcheck", str(spec), "--T", "3", cwd=tmp_path)
    assert short.returncode == 2 and "Traceback" not in short.stderr
    assert "--T 3 is too short" in short.stderr and "at least 6 steps" in short.stderr
