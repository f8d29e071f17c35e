"""Defects found by trying to break rnnspec (issue 9, sections 4 and 7): statement order, short
sequences, quadratic paths, s[0], per-state directions, unclosed brackets, BOMs, non-ASCII names."""
import random
import re

import numpy as np
import pytest

import rnnspec
from conftest import spec_paths
from rnnspec.gradcheck import random_problem

SPECS = spec_paths()
DECLARATIONS = ("dim", "input", "target", "param", "state", "loss", "import", "block", "use")


def equation_lines(text):
    """Indexes of the top-level one-line equations (outside blocks and multi-line calls)."""
    lines, depth, found = text.split("\n"), 0, []
    for i, line in enumerate(lines):
        s = line.split("#")[0].strip()
        head = s.split("=")[0]
        if depth == 0 and re.match(r"^[A-Za-z_]\w*(\[[^\]]*\])?\s*(:[^=]*)?=", s) and \
                s.split()[0].split("[")[0].rstrip(":") not in DECLARATIONS and "(" not in head \
                and s.count("(") == s.count(")") and "{" not in s:
            found.append(i)
        depth += s.count("{") - s.count("}") + s.count("(") - s.count(")")
    return found


def permuted(text, seed):
    """``text`` with its equations moved, in a shuffled order, after every declaration."""
    lines = text.split("\n")
    eqs = equation_lines(text)
    order = eqs[:]
    random.Random(seed).shuffle(order)
    rest = [line for i, line in enumerate(lines) if i not in set(eqs)]
    return "\n".join(rest + [lines[i] for i in order]) + "\n", len(eqs)


def run(mod, params, problem):
    _, inputs, targets, state0, up = problem
    out, cache = mod.forward(params, inputs, targets, state0)
    return out, mod.backward(params, cache, {k: v for k, v in up.items() if k != "final"})


def assert_same(a, b, where=()):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], where + (k,))
    elif isinstance(a, tuple):
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, where + (k,))
    else:
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=str(where))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_equation_order_does_not_change_results(path):
    text = path.read_text()
    ref = rnnspec.compile_source(text, base=path.parent)
    params = ref.init_params(seed=1)
    problem = random_problem(ref, T=5, batch=2, seed=1)
    expected = run(ref, params, problem)
    for seed in range(3):
        other, n = permuted(text, seed)
        if n < 2:
            continue
        mod = rnnspec.compile_source(other, base=path.parent)
        assert_same(run(mod, params, problem), expected, (path.name, seed))



DELAYED_ONEHOT = """\
dim hidden = 4
dim out = 3
target y[t]: class(out) = 2
param W: (hidden, hidden)
param U: (hidden, out)
param V: (out, hidden)
state h: hidden = zeros
state o: out = zeros
fb[t] = feedback(onehot(y[t-7]), o[t-1])
h[t] = tanh(W @ h[t-1] + U @ fb[t])
o[t] = softmax(V @ h[t])
loss = cross_entropy(o[t], y[t])
"""


@pytest.mark.parametrize("T", [1, 3, 6, 7, 9])
def test_onehot_of_a_long_delay_on_a_short_sequence(T):
    # before step 1 the target is its start class, also when T is shorter than the delay
    mod = rnnspec.compile_source(DELAYED_ONEHOT)
    params = mod.init_params(seed=0)
    _, inputs, targets, state0, _ = random_problem(mod, T=T, batch=2, seed=0)
    out, _ = mod.forward(params, inputs, targets, state0)
    y = targets["y"]
    expected = np.concatenate([np.full((min(7, T), 2), 2), y[:max(T - 7, 0)]])
    np.testing.assert_array_equal(out["fb"], np.eye(3)[expected])
    report = rnnspec.gradcheck(mod, T=T, batch=2, seed=0)
    assert report.ok, report.table()


def test_late_values_is_linear_in_a_long_recurrence(monkeypatch):
    # one recurrence through n equations: finding what is computed from it must not search
    # the graph once per equation (10,000 equations took over a minute)
    import networkx as nx
    from rnnspec import recurrences
    from rnnspec.delays import SAME, Step
    n = 3000
    refs = [(f"v{i - 1}", f"v{i}", SAME) for i in range(1, n)] + [(f"v{n - 1}", "v0", Step(1))]
    refs += [(f"v{n - 1}", "out", SAME)]
    work = [0]
    succ, desc = nx.DiGraph.successors, nx.descendants

    def successors(self, node):
        work[0] += 1
        return succ(self, node)

    def descendants(g, node):
        found = desc(g, node)
        work[0] += len(found)
        return found
    monkeypatch.setattr(nx.DiGraph, "successors", successors)
    monkeypatch.setattr(nx, "descendants", descendants)
    late = recurrences.analyse(refs).late()
    assert late == {f"v{i}" for i in range(n)} | {"out"}
    assert work[0] <= 2 * (n + 1)


def test_many_undefined_names_search_for_suggestions_a_bounded_number_of_times(monkeypatch):
    # 3,000 undefined names each searched all 3,000 names for a did-you-mean (37 s)
    from rnnspec import check
    from rnnspec.check import symbols  # where the did-you-mean search runs
    searched = [0]
    close = symbols.difflib.get_close_matches

    def counted(word, possibilities, *a, **k):
        searched[0] += len(possibilities)
        return close(word, possibilities, *a, **k)
    monkeypatch.setattr(symbols.difflib, "get_close_matches", counted)
    n = 3000
    text = "dim n = 2\ninput x[t]: n\n" + "".join(
        f"value{i}[t] = x[t] + valeu{i}[t]\n" for i in range(n)) + \
        "target y[t]: n\nloss = squared_error(value0[t], y[t])\n"
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.analyze(text)
    undefined = [d for d in info.value.diagnostics if "undefined name" in d.message]
    assert len(undefined) == n  # every one is still reported, at its place
    assert undefined[0].hint == "did you mean 'value0'?"
    assert searched[0] <= check.MAX_SUGGESTIONS * (n + 1)


SMALL = """\
dim n = 2
input x[t]: n
target y[t]: n
param W: (n, n)
state h: n = zeros
h[t] = tanh(W @ h[t-1] + x[t])
loss = squared_error(h[t], y[t])
"""


def test_byte_order_mark_is_accepted(tmp_path):
    assert rnnspec.generate("\ufeff" + SMALL) == rnnspec.generate(SMALL)
    # a spec file and a file it imports, both with the mark
    specs = SPECS[0].parent
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cells.rnn").write_bytes(b"\xef\xbb\xbf" +
                                                 (specs / "lib" / "cells.rnn").read_bytes())
    main = tmp_path / "stacked_lstm_lib.rnn"
    main.write_bytes(b"\xef\xbb\xbf" + (specs / "stacked_lstm_lib.rnn").read_bytes())
    assert rnnspec.compile_file(main).OUTPUTS == \
        rnnspec.compile_file(specs / "stacked_lstm_lib.rnn").OUTPUTS


def test_byte_order_mark_keeps_error_positions():
    from conftest import assert_rendered, first_error
    text = SMALL.replace("W @ h[t-1]", "W @ hh[t-1]")
    plain, marked = first_error(text), first_error("\ufeff" + text)
    assert (marked.line, marked.column, marked.message) == (plain.line, plain.column, plain.message)
    assert_rendered(marked, text)


@pytest.mark.parametrize("name", ["\uff58", "\ufb01", "caf\u00e9", "\u0394t"])
def test_non_ascii_names_are_refused_with_a_reason(name):
    from conftest import assert_rendered, first_error
    text = SMALL.replace("param W:", f"param {name}:")
    diag = first_error(text)
    assert "in a name" in diag.message
    assert diag.hint == "names are ASCII letters, digits and underscore (a-z, A-Z, 0-9, _)"
    assert (diag.line, diag.column) == (4, 7 + next(i for i, c in enumerate(name) if not c.isascii()))
    assert_rendered(diag, text)


@pytest.mark.parametrize("text,opened,bracket", [
    ("dim n = 2\ninput x[t]: n\nh[t] = tanh(x[t]\nloss = squared_error(h[t], x[t])\n",
     (3, 12), "("),
    ("dim n = 2\ninput x[t]: n\nh[t] = tanh(x[t]\n", (3, 12), "("),
    ("dim n = 2\ninput x[t]: n\nblock f(a) -> b {\n  b[t] = tanh(a[t])\n\nh[t] = f(x[t])\n",
     (3, 17), "{"),
    ("dim n = 2\n# a comment with ( in it\ninput x[t]: n\nh[t] = concat(x[t], tanh(x[t])\n",
     (4, 14), "("),
])
def test_unclosed_bracket_points_at_where_it_was_opened(text, opened, bracket):
    from conftest import first_error
    diag = first_error(text)
    assert diag.related is not None
    line, column, source, what = diag.related
    assert (line, column) == opened
    assert what == f"'{bracket}' opened here"
    assert source == text.split("\n")[line - 1]
    rendered = str(diag).split("\n")
    assert rendered[-3] == f"bad.rnn:{line}:{column}: note: '{bracket}' opened here"
    assert rendered[-2] == "    " + source
    assert rendered[-1] == "    " + " " * (column - 1) + "^"
    assert (diag.line, diag.column) != opened  # the error itself is still where it was found


def test_closed_brackets_add_no_note():
    from conftest import first_error
    diag = first_error("dim n = 2\ninput x[t]: n\nh[t] = tanh(x[t]))\n")
    assert diag.related is None


TYPO = SMALL.replace("h[t-1]", "h[t+1]")


def test_state_directions_show_a_typo_that_reverses_time():
    from rnnspec.schedule import state_directions
    assert state_directions(rnnspec.analyze(SMALL).schedule) == [("h", "forward", "t")]
    assert state_directions(rnnspec.analyze(TYPO).schedule) == [("h", "backward", "t")]
    path = SPECS[0].parent / "hierarchical.rnn"
    got = state_directions(rnnspec.analyze(path.read_text(), filename=str(path)).schedule)
    assert got == [("hf", "forward", "w"), ("hb", "backward", "w"), ("gf", "forward", "s"),
                   ("gb", "backward", "s")]


def test_check_command_prints_each_state_direction(tmp_path, capsys):
    from rnnspec.cli import main
    spec = tmp_path / "typo.rnn"
    spec.write_text(TYPO)
    assert main(["check", str(spec)]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[1] == "state h: runs backward in t (from the last step to 1)"


def test_readme_shows_the_real_check_output_for_the_typo(tmp_path, capsys):
    import subprocess
    import sys
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("$ rnnspec check typo.rnn")[1].split("```")[0].split("\n", 1)[1]
    spec = tmp_path / "typo.rnn"
    spec.write_text("dim n = 3\ninput x[t]: n\ntarget y[t]: n\nparam W: (n, n)\n"
                    "state h: n = zeros\nh[t] = tanh(W @ h[t+1] + x[t])\n"
                    "loss = squared_error(h[t], y[t])\n")
    out = subprocess.run([sys.executable, "-m", "rnnspec", "check", "typo.rnn"], cwd=tmp_path,
                         capture_output=True, text=True).stdout
    assert out == block


def test_reading_a_states_step_0_says_it_is_the_initial_value():
    """README: s[0] is a state's initial value; an equation cannot read it, and the error says
    so (it used to say only that step 0 does not exist)."""
    from conftest import assert_rendered, first_error
    text = ("dim n = 3\ninput x[t]: n\ntarget y: n\nstate s: n\ns[t] = tanh(x[t] + s[t-1])\n"
            "z = s[0]\nloss = squared_error(z, y)\n")
    err = first_error(text)
    assert (err.line, err.column) == (6, 7)
    assert "initial value of state 's'" in err.message and "state0" in err.hint
    assert_rendered(err, text)


def _chain(n, state=False, cycle=True):
    """n values, each reading a later-declared one (v_i = v_{i+1}), the last reading x (and,
    with ``cycle``, v0 one step back: a cycle, legal only through a state)."""
    last = "tanh(v0[t-1] + x[t])" if cycle else "tanh(x[t])"
    lines = ["dim n = 3", "input x[t]: n", "target y[t]: n"] + (["state v0: n"] if state else [])
    lines += [f"v{i}[t] = v{i + 1}[t]" for i in range(n - 1)] + [f"v{n - 1}[t] = {last}"]
    return "\n".join(lines + ["loss = squared_error(v0[t], y[t])"]) + "\n"


def test_long_chains_of_values_reading_later_ones_are_typed_without_deep_recursion():
    """3,000 values each reading a later-declared one: typed in dependency order (was a
    RecursionError, a traceback); through a state the cycle is a network; without one, a
    positioned error."""
    import sys
    assert 3000 > sys.getrecursionlimit() // 2
    rnnspec.generate(_chain(3000, cycle=False))
    rnnspec.generate(_chain(3000, state=True))
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate(_chain(3000))
    assert info.value.line and ("cycle" in info.value.message or "state" in info.value.message)
