"""The runtime of generated modules as real code (rnnspec/runtime/helpers.py): every group that a
derivative rule names exists, every definition belongs to a group, the text codegen copies is
the file's own text, and the helpers compute what their docstrings say."""
import ast
from pathlib import Path

import numpy as np

import rnnspec.runtime.helpers as H
from rnnspec import ops
from rnnspec.runtime import helper_texts

HELPERS_FILE = Path(H.__file__)


def test_every_rule_helper_is_a_group_and_every_definition_is_in_one():
    groups = helper_texts()
    named = {h for r in ops.RULES.values() for h in r.helpers}
    assert named <= set(groups), named - set(groups)
    defined = {n.name for n in ast.parse(HELPERS_FILE.read_text()).body
               if isinstance(n, ast.FunctionDef)}
    in_groups = {n.name for text in groups.values() for n in ast.parse(text).body
                 if isinstance(n, ast.FunctionDef)}
    assert defined == in_groups


def test_copied_text_is_the_file_text_and_defines_the_same_functions():
    text = HELPERS_FILE.read_text()
    for name, body in helper_texts().items():
        assert body.strip("\n") in text
        scope = {"np": np}
        exec(compile(body, f"<helper {name}>", "exec"), scope)
        assert name in scope or any(k.startswith(name) for k in scope)


def test_sigmoid_softmax_onehot():
    a = np.array([-1000.0, -1.0, 0.0, 2.0, 800.0])
    np.testing.assert_allclose(H._sigmoid(a), 1 / (1 + np.exp(-np.clip(a, -709, 709))))
    z = np.random.default_rng(0).normal(size=(3, 4))
    p = H._softmax(z)
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(-1, keepdims=True))
    y = np.array([[1, 2], [0, 3], [2, 2]])
    np.testing.assert_array_equal(H._onehot(y, 4, 0, 0, np.float64).argmax(-1), y)
    shifted = H._onehot(y, 4, 1, 3, np.float64).argmax(-1)
    np.testing.assert_array_equal(shifted, [[3, 3], [1, 2], [0, 3]])


def test_cross_entropy_and_its_gradient_by_central_differences():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 3, 5))
    y = rng.integers(0, 5, size=(2, 3))
    w = rng.random((2, 3))
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -(w * np.take_along_axis(logp, y[..., None], -1)[..., 0]).sum()
    assert abs(H._cross_entropy(z, y, w) - expected) < 1e-12
    assert abs(H._cross_entropy(z, y, w, H._softmax(z)) - expected) < 1e-12
    g = H._cross_entropy_grad(H._softmax(z), y, w)
    num = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = 1e-6
        num[idx] = (H._cross_entropy(z + e, y, w) - H._cross_entropy(z - e, y, w)) / 2e-6
    np.testing.assert_allclose(g, num, atol=1e-8)


def test_validation_runtime_is_the_file_text_and_imports():
    import rnnspec.runtime.validate as V
    from rnnspec.codegen import RUNTIME
    text = Path(V.__file__).read_text()
    assert RUNTIME.strip("\n") in text
    assert callable(V._validate) and callable(V._upstream)
    assert V._terms("2*hidden + in") == ((2, "hidden"), (1, "in"))
