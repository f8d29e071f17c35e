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

