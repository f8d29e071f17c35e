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


def test_each_group_is_its_function_and_modules_copy_it_as_it_is():
    groups = helper_texts()
    for name, body in groups.items():
        scope = {"np": np}
        exec(compile(body, f"<helper {name}>", "exec"), scope)
        defined = {k for k, v in scope.items() if callable(v) and k != "np"}
        assert name in defined and all(k.startswith(name) for k in defined), (name, defined)
    copied = set()  # every group a generated module defines is the group's text, unchanged
    for path in sorted(SPECS.glob("*.rnn")):
        source = rnnspec.generate(path.read_text(), None, str(path), base=SPECS)
        for name in _defined(source) & set(groups):
            assert groups[name] in source, (path.name, name)
            copied.add(name)
    assert copied == set(groups), set(groups) - copied


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
    assert RUNTIME == helper_texts("validate.py")["runtime"]
    assert {"_validate", "_upstream"} <= _defined(RUNTIME) <= set(vars(V))
    assert V._terms("2*hidden + in") == ((2, "hidden"), (1, "in"))


# ----- the runtime files of generated modules: api.py, checkpoint.py, feedback.py, validate.py

import pytest  # noqa: E402

import rnnspec  # noqa: E402
import rnnspec.runtime.api as A  # noqa: E402
import rnnspec.runtime.checkpoint as C  # noqa: E402
import rnnspec.runtime.feedback as F  # noqa: E402
import rnnspec.runtime.validate as V  # noqa: E402
from rnnspec import codegen  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
RUNTIME_FILES = {"validate.py": ("runtime", "RUNTIME"), "api.py": ("api", "LOSS_AND_GRAD"),
                 "checkpoint.py": ("checkpoint", "CHECKPOINT_API"),
                 "feedback.py": ("feedback", "FEEDBACK_API"),
                 "truncation.py": ("truncation", "TRUNCATION"), "sweeps.py": ("sweeps", "SWEEPS"),
                 "tangents.py": ("tangents", "TANGENTS")}
RUNTIME_USERS = {"tangents.py": ("elman", {"rtrl": True}), "validate.py": ("elman", {}),
                 "api.py": ("elman", {}),
                 "checkpoint.py": ("elman", {"checkpoint": 3}), "feedback.py": ("generate", {}),
                 "truncation.py": ("elman", {}), "sweeps.py": ("elman", {})}


def _defined(text):
    return {n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("filename", sorted(RUNTIME_FILES))
def test_each_runtime_file_is_one_group_copied_as_it_is(filename):
    group, constant = RUNTIME_FILES[filename]
    text = (HELPERS_FILE.parent / filename).read_text()
    groups = helper_texts(filename)
    assert list(groups) == [group]
    assert getattr(codegen, constant) == groups[group]
    spec, kw = RUNTIME_USERS[filename]  # a module that has this file's group: it has it whole
    assert groups[group] in rnnspec.generate((SPECS / f"{spec}.rnn").read_text(), None,
                                             f"{spec}.rnn", **kw)
    stand_ins = text[:text.index("\n# ---- helper:")]  # defined for this file only, not copied
    assert _defined(stand_ins).isdisjoint(_defined(groups[group]))
    assert "{OWNER}" not in text and "{SOURCE}" not in text


def _layout(source):
    """(the functions before the runtime banner, those after it)"""
    before, banner, after = source.partition("\n" + codegen.RUNTIME_BANNER + "\n")
    assert banner and codegen.RUNTIME_BANNER not in after
    return _defined(before), _defined(after)


@pytest.mark.parametrize("spec, kw, network", [
    ("elman", {}, {"forward", "backward"}),
    ("generate", {}, {"_forward_teacher", "_forward_free", "_forward_sample",
                      "_backward_teacher", "_backward_free"}),
    ("elman", {"checkpoint": 3}, {"_forward_full", "_backward_full"}),
    ("elman", {"rtrl": True}, {"forward", "backward", "rtrl"}),
])
def test_modules_hold_the_network_first_then_the_runtime(spec, kw, network):
    text = (SPECS / f"{spec}.rnn").read_text()
    source = rnnspec.generate(text, None, f"{spec}.rnn", **kw)
    own, runtime = _layout(source)
    assert own == network
    copied = set().union(*(_defined(t) for f in RUNTIME_FILES for t in helper_texts(f).values()))
    copied |= {n for t in helper_texts().values() for n in _defined(t)}
    assert runtime <= copied and {"loss_and_grad", "init_params", "_validate"} <= runtime
    header = source[:source.index("\ndef ")]  # the tables come before any code
    assert ("\nFEEDBACK = {'value': 'fb', 'from': 'o'}" in header) == (spec == "generate")
    assert ("\nCHECKPOINT = 3" in header) == ("checkpoint" in kw)
    assert "\nFEEDBACK" not in source[len(header):]
    rnnspec.api.load_module(source, spec)  # imports: nothing at import time needs a later name


@pytest.fixture
def tables(monkeypatch):
    """Fill in the generated module's tables of runtime files (a fresh shape cache each test)."""
    monkeypatch.setattr(V, "_SHAPES_SEEN", {})

    def fill(*modules, **values):
        for name, value in values.items():
            owners = [m for m in modules if hasattr(m, name)]
            assert owners, f"no runtime file here has a table {name}"
            for module in owners:
                monkeypatch.setattr(module, name, value)
    return fill


# ----- api.py: init_params, loss_and_grad

INIT_TABLES = dict(
    DIMS={"hidden": 3, "in": 2},
    PARAMS={"W": ("hidden", "in"), "U": ("2*hidden", "hidden"), "Q": ("in", "hidden"),
            "b": ("hidden",), "c": ("in + 1",), "k": ("hidden",), "g": ("hidden", "in"),
            "n": ("hidden",)},
    INITS={"W": ("xavier", None), "U": ("orthogonal", None), "Q": ("orthogonal", None),
           "b": ("zeros", None), "c": ("ones", None), "k": ("constant", 0.25),
           "g": ("uniform", 0.1), "n": ("normal", 0.01)})


def test_init_params_shapes_dtypes_and_values(tables):
    tables(A, **INIT_TABLES)
    p = A.init_params()
    assert {n: a.shape for n, a in p.items()} == {
        "W": (3, 2), "U": (6, 3), "Q": (2, 3), "b": (3,), "c": (3,), "k": (3,), "g": (3, 2),
        "n": (3,)}
    assert all(a.dtype == np.float64 for a in p.values())
    assert not p["b"].any() and (p["c"] == 1).all() and (p["k"] == 0.25).all()
    assert np.abs(p["W"]).max() <= np.sqrt(6 / 5) and np.abs(p["g"]).max() <= 0.1
    np.testing.assert_allclose(p["U"].T @ p["U"], np.eye(3), atol=1e-12)  # orthonormal columns
    np.testing.assert_allclose(p["Q"] @ p["Q"].T, np.eye(2), atol=1e-12)  # (wide: rows)
    wider = A.init_params({"hidden": 4}, dtype=np.float32)
    assert wider["U"].shape == (8, 4) and wider["c"].shape == (3,)
    assert all(a.dtype == np.float32 for a in wider.values())


def test_init_params_is_deterministic_for_a_seed(tables):
    tables(A, **INIT_TABLES)
    a, b, c = A.init_params(seed=7), A.init_params(seed=7), A.init_params(seed=8)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert all(not np.array_equal(a[n], c[n]) for n in ("W", "U", "g", "n"))


def test_init_params_refuses_unknown_dims_and_initializers(tables):
    tables(A, **INIT_TABLES)
    with pytest.raises(ValueError, match=r"^init_params: unknown dim 'hiden'; did you mean "
                                         r"'hidden'\? \(the dims: \['hidden', 'in'\]\)$"):
        A.init_params({"hiden": 4})
    with pytest.raises(ValueError, match=r"^init_params: unknown dim 'zzzz' \(the dims"):
        A.init_params({"zzzz": 4})
    tables(A, PARAMS={"W": ("hidden",)}, INITS={"W": ("magic", None)})
    with pytest.raises(ValueError, match="unknown initializer 'magic'"):
        A.init_params()


def test_loss_and_grad_is_forward_then_backward_of_the_loss(monkeypatch):
    calls = []

    def forward(*args):
        calls.append(args)
        return {"loss": 2.5, "h": 1}, "the cache"
    monkeypatch.setattr(A, "forward", forward)
    monkeypatch.setattr(A, "backward", lambda params, cache, up, xi, truncate:
                        ("grads of", params, cache, up, xi, truncate))
    assert A.loss_and_grad("p", "x", "y", "s0", 4, "len") == (
        2.5, ("grads of", "p", "the cache", None, None, None))
    assert calls == [("p", "x", "y", "s0", 4, "len")]
    assert A.loss_and_grad("p", "x", "y", truncate=(2, 2))[1][-1] == (2, 2)
    monkeypatch.setattr(A, "forward", lambda *args: ({"h": 1}, None))
    with pytest.raises(ValueError, match="this network has no loss"):
        A.loss_and_grad("p", "x", None)


# ----- feedback.py: forward(mode=...), backward, generate

def test_feedback_forward_and_backward_run_the_mode(monkeypatch):
    monkeypatch.setattr(F, "_forward_teacher", lambda *a: ("teacher", a))
    monkeypatch.setattr(F, "_forward_free", lambda *a: ("free", a))
    monkeypatch.setattr(F, "_backward_teacher", lambda *a: ("d teacher", a))
    monkeypatch.setattr(F, "_backward_free", lambda *a: ("d free", a))
    assert F.forward("p", "x", "y") == ("teacher", ("p", "x", "y", None, None, None))
    assert F.forward("p", "x", T=3, mode="free") == ("free", ("p", "x", None, None, 3, None))
    with pytest.raises(ValueError, match=r"^mode must be 'teacher' or 'free', not 'sample'$"):
        F.forward("p", "x", mode="sample")
    assert F.backward("p", {"mode": "teacher"})[0] == "d teacher"
    assert F.backward("p", {"mode": "free"}, "up") == (
        "d free", ("p", {"mode": "free"}, "up", None, None, False))
    assert F.backward("p", {"mode": "free"}, "up", "xi", (2, 2), True)[1][3:] == ("xi", (2, 2), True)


def _sampler(monkeypatch, fed, probs):
    """A stand-in generating pass: 'fb' the classes fed (T, B), 'o' the distributions."""
    calls = []

    def sample(params, inputs, targets, state0, T, lengths, rng=None, greedy=True, batch=None):
        calls.append((inputs, targets, state0, T, lengths, greedy, batch))
        rng.random()  # (the pass draws from the same generator as the last step)
        return {"fb": np.eye(probs.shape[-1])[fed], "o": probs}, None
    monkeypatch.setattr(F, "_forward_sample", sample)
    monkeypatch.setattr(F, "FEEDBACK", {"value": "fb", "from": "o"})
    return calls


def test_generate_feeds_back_and_stops_at_the_end_token(monkeypatch):
    fed = np.array([[0, 0], [2, 1], [3, 3], [1, 2]])  # step t was fed the class chosen at t-1
    probs = np.full((4, 2, 4), 0.1)
    probs[-1, 0, 3] = probs[-1, 1, 2] = 0.7  # the last step's most likely classes
    calls = _sampler(monkeypatch, fed, probs)
    tokens, lengths, outputs = F.generate("p", T=4, batch=2)
    np.testing.assert_array_equal(tokens, [[2, 1], [3, 3], [1, 2], [3, 2]])
    np.testing.assert_array_equal(lengths, [4, 4])
    assert calls == [({}, None, None, 4, None, True, 2)] and set(outputs) == {"fb", "o"}
    tokens, lengths, _ = F.generate("p", {"x": 1}, 4, {"o": 0}, end=3)
    np.testing.assert_array_equal(tokens, [[2, 1], [3, 3], [3, 3], [3, 3]])  # 3 repeats once hit
    np.testing.assert_array_equal(lengths, [2, 2])
    assert calls[-1] == ({"x": 1}, None, {"o": 0}, 4, None, True, None)
    _, lengths, _ = F.generate("p", T=4, end=2)
    np.testing.assert_array_equal(lengths, [1, 3])


def test_generate_draws_reproducibly_for_a_seed(monkeypatch):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=(3, 50))
    _sampler(monkeypatch, rng.integers(0, 6, (3, 50)), probs)
    a, _, _ = F.generate("p", T=3, seed=4, greedy=False)
    b, _, _ = F.generate("p", T=3, seed=4, greedy=False)
    c, _, _ = F.generate("p", T=3, seed=5, greedy=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[-1], c[-1])  # the last step is drawn, not the most likely
    assert not np.array_equal(a[-1], probs[-1].argmax(-1))


def test_generate_needs_a_free_side_one_step_back(monkeypatch):
    monkeypatch.setattr(F, "FEEDBACK", {"value": "fb", "from": None})
    with pytest.raises(ValueError, match=r"generate\(\) needs feedback\(\.\.\., v\[t-1\]\)"):
        F.generate("p", T=3)


# ----- checkpoint.py: the segment driver, over a toy network s[t] = a * s[t-1] + x[t]

TOY = dict(DIMS={"n": 2}, AXES={"t": "T"}, NESTED={}, MIN_T={"T": 1}, PARAMS={"a": ("n",)},
           INPUTS={"x": {"size": "n", "kind": "sequence", "axis": "t"}},
           TARGETS={"y": {"size": "n", "kind": "sequence", "type": "real", "axis": "t"}},
           STATES={"s": {"size": "n", "init": "zeros", "from": None, "steps": 1}},
           OUTPUTS={"s": {"size": "n", "kind": "sequence", "axis": "t"}})


def _toy_forward(params, inputs, targets=None, state0=None, T=None, lengths=None, segment=None):
    params, inputs, targets, state0, dims = C._validate_segment(params, inputs, targets, state0,
                                                                T, lengths, segment)
    a, x, mask = params["a"], inputs["x"], V._step_mask(dims)
    s = np.empty((dims["T"] + 1,) + x.shape[1:])
    s[0] = state0["s"]
    for t in range(dims["T"]):
        s[t + 1] = a * s[t] + x[t]
        if mask is not None:
            s[t + 1] = np.where(mask[t], s[t + 1], s[t])
    out = {"s": s[1:], "final": {"s": s[dims["last"] + 1, np.arange(dims["B"])]}}
    cache = {"s": s, "a": a, "dims": dims, "has_loss": targets is not None, "w": 0, "y": 0}
    if targets is not None:  # loss = mean over each sequence's steps of <s[t], y[t]>
        w = C._segment_loss_weights(dims, mean=True)
        cache["w"], cache["y"] = w[..., None], targets["y"]
        out["loss"] = np.sum(cache["w"] * s[1:] * targets["y"])
    return out, cache


def _toy_backward(params, cache, d_outputs=None, xi=None, truncate=None, state_grads=False):
    up, dims, s, a = V._upstream(d_outputs, cache), cache["dims"], cache["s"], cache["a"]
    mask = V._step_mask(dims)
    d_s = np.zeros_like(s)  # the gradient of s[t], t = 0..T
    d_s[1:] += up.get("s", 0) + up.get("loss", 1.0) * cache["w"] * cache["y"]
    if "s" in up["final"]:
        d_s[dims["last"] + 1, np.arange(dims["B"])] += up["final"]["s"]
    d_a, d_x = np.zeros_like(a), np.zeros_like(s[1:])
    for t in reversed(range(dims["T"])):
        through = d_s[t + 1] if mask is None else d_s[t + 1] * mask[t]
        d_x[t] = through
        d_a += np.sum(through * s[t], axis=0)
        d_s[t] += through * a + (0 if mask is None else d_s[t + 1] * ~mask[t])
    return {"params": {"a": d_a}, "inputs": {"x": d_x}, "state0": {"s": d_s[0]}}


@pytest.fixture
def toy(tables, monkeypatch):
    tables(V, C, **TOY)
    tables(C, CHECKPOINT=2)
    monkeypatch.setattr(C, "_forward_full", _toy_forward)
    monkeypatch.setattr(C, "_backward_full", _toy_backward)
    rng = np.random.default_rng(3)
    T, B = 5, 4
    return dict(params={"a": rng.normal(size=2)}, inputs={"x": rng.normal(size=(T, B, 2))},
                targets={"y": rng.normal(size=(T, B, 2))},
                state0={"s": rng.normal(size=(B, 2))})


def test_segments_cover_the_steps_in_checkpoint_pieces(tables):
    tables(C, CHECKPOINT=3)
    assert C._segments(1) == [(0, 1)]
    assert C._segments(3) == [(0, 3)]
    assert C._segments(7) == [(0, 3), (3, 6), (6, 7)]
    dims = {"lengths": np.array([7, 4, 3, 1])}
    np.testing.assert_array_equal(C._segment_steps(dims, 3, 6), [3, 1, 0, 0])
    np.testing.assert_array_equal(C._segment_steps(dims, 6, 7), [1, 0, 0, 0])
    assert C._segment_steps({"lengths": None}, 0, 3) is None


def test_segment_loss_weights_divide_a_mean_by_the_whole_run(tables):
    tables(V, AXES={"t": "T"}, NESTED={})
    dims = {"T": 2, "B": 3, "dtype": np.float64, "lengths": np.array([2, 1, 0]),
            "last": np.array([1, 0, -1])}
    np.testing.assert_array_equal(C._segment_loss_weights(dims), [[1, 1, 0], [1, 0, 0]])
    dims["(mean steps)"] = np.array([4.0, 5.0, 2.0])  # each sequence's steps in the whole run
    np.testing.assert_array_equal(C._segment_loss_weights(dims, mean=True),
                                  [[1 / 4, 1 / 5, 0], [1 / 4, 0, 0]])
    full = dict(dims, lengths=None, last=np.array([1, 1, 1]))
    np.testing.assert_array_equal(C._segment_loss_weights(full, mean=True),
                                  np.ones((2, 3)) / [4, 5, 2])
    del full["(mean steps)"]
    assert C._segment_loss_weights(full) is None
    np.testing.assert_array_equal(C._segment_loss_weights(full, mean=True), np.full((2, 3), 0.5))


def test_validate_segment_allows_sequences_without_steps(toy):
    lengths = np.array([2, 1, 0, 0])  # in this segment: two sequences have ended before it
    *_, dims = C._validate_segment(toy["params"], {"x": toy["inputs"]["x"][:2]}, None,
                                   toy["state0"], None, lengths, {"steps": [5, 3, 1, 2]})
    np.testing.assert_array_equal(dims["lengths"], [2, 1, 0, 0])
    np.testing.assert_array_equal(dims["last"], [1, 0, -1, -1])
    assert dims["(mean steps)"].dtype == np.float64 and list(dims["(mean steps)"]) == [5, 3, 1, 2]


@pytest.mark.parametrize("lengths", [None, np.array([5, 3, 1, 4])])
def test_checkpointed_run_is_the_full_run(toy, lengths):
    args = (toy["params"], toy["inputs"], toy["targets"], toy["state0"], None, lengths)
    full, full_cache = _toy_forward(*args)
    out, cache = C.forward(*args)
    assert len(cache["checkpoints"]) == 3 and cache["checkpoints"][0] is toy["state0"]
    np.testing.assert_allclose(out["s"], full["s"], rtol=1e-13)
    np.testing.assert_allclose(out["final"]["s"], full["final"]["s"], rtol=1e-13)
    np.testing.assert_allclose(out["loss"], full["loss"], rtol=1e-13)
    rng = np.random.default_rng(4)
    up = {"s": rng.normal(size=out["s"].shape), "final": {"s": rng.normal(size=(4, 2))},
          "loss": 0.5}
    if lengths is not None:
        up["s"] *= (np.arange(5)[:, None] < lengths)[..., None]
    want, got = _toy_backward(toy["params"], full_cache, up), C.backward(toy["params"], cache, up)
    for group in ("params", "inputs", "state0"):
        for name, g in want[group].items():
            np.testing.assert_allclose(got[group][name], g, rtol=1e-12, atol=1e-14)
    # the toy's own gradient is right: the loss's derivative along a, by central differences
    h, v = 1e-6, np.array([0.3, -0.7])
    moved = [_toy_forward({"a": toy["params"]["a"] + e * h * v}, *args[1:])[0]["loss"]
             for e in (1, -1)]
    d_a = _toy_backward(toy["params"], full_cache)["params"]["a"]
    assert abs((moved[0] - moved[1]) / (2 * h) - d_a @ v) < 1e-7


# ----- validate.py: the steps of _validate

VAL = dict(DIMS={"n": 2, "k": 3}, AXES={"t": "T"}, NESTED={}, MIN_T={"T": 2},
           PARAMS={"W": ("n", "n"), "h0": ("n",)},
           INPUTS={"x": {"size": "n", "kind": "sequence", "axis": "t"}},
           TARGETS={"y": {"size": "k", "kind": "sequence", "type": "class", "axis": "t"}},
           STATES={"h": {"size": "n", "init": "param", "from": "h0", "steps": 1},
                   "c": {"size": "n", "init": "zeros", "from": None, "steps": 1},
                   "g": {"size": "n", "init": "given", "from": None, "steps": 1}},
           OUTPUTS={})


def _val_args(T=3, B=2):
    return ({"W": np.eye(2), "h0": np.ones(2)}, {"x": np.zeros((T, B, 2))},
            {"y": np.zeros((T, B), int)}, {"g": np.ones((B, 2))})


def test_validate_checks_names_before_shapes(tables):
    tables(V, **VAL)
    params, inputs, targets, state0 = _val_args()
    for bad, message in [
            (([], inputs, targets, state0), "params must be a dict, got list"),
            ((params, inputs, (1,), state0), "targets must be a dict or None, got tuple"),
            (({"W": 1}, inputs, targets, state0), r"params is missing \['h0'\]"),
            ((params, {}, targets, state0), r"inputs is missing \['x'\]"),
            ((params, inputs, targets, {"q": 1}), r"state0 has unknown names \['q'\]; expected "
                                                  r"\['h', 'c', 'g'\]"),
            ((params, inputs, {}, state0), r"targets is missing \['y'\]")]:
        with pytest.raises(ValueError, match=f"^{message}"):
            V._validate(*bad, None)


def test_validate_binds_dims_and_initial_states(tables):
    tables(V, **VAL)
    params, inputs, targets, state0 = _val_args()
    params = {n: np.asarray(a, np.float32) for n, a in params.items()}
    p, x, y, s0, dims = V._validate(params, inputs, {"y": np.ones((3, 2))}, state0, None)
    assert (dims["T"], dims["B"], dims["n"], dims["k"], dims["dtype"]) == (3, 2, 2, 3, np.float32)
    assert dims["lengths"] is None and list(dims["last"]) == [2, 2]
    assert x["x"].dtype == np.float32 and y["y"].dtype == np.int64
    assert s0["(given)"] == {"h": False, "c": False, "g": True}
    assert s0["h"].shape == s0["c"].shape == (2, 2) and (s0["h"] == 1).all() and not s0["c"].any()
    *_, dims = V._validate(p, x, None, state0, None, np.array([3, 2]))
    assert list(dims["lengths"]) == [3, 2] and list(dims["last"]) == [2, 1]


@pytest.mark.parametrize("change, message", [
    ({"inputs": {"x": np.zeros((2, 3, 2))}, "T": 3},
     r"inputs\['x'\] has shape \(2, 3, 2\), expected \(T, B, n\) = \(3, 3, 2\); arrays are "
     r"time-major"),
    ({"T": 0}, "T must be a positive integer, got 0"),
    ({"T": {"u": 3}}, r"T has unknown time axis 'u'; the axes are \['t'\]"),
    ({"inputs": {"x": np.zeros((1, 2, 2))}, "targets": None},
     "this network needs at least 2 steps t, got T=1"),
    ({"lengths": np.array([3, 4])}, r"lengths must be between 1 and T = 3, got 3\.\.4"),
    ({"lengths": np.array([3, 1])}, r"lengths\[1\] = 1: this network needs at least 2 steps t"),
    ({"lengths": np.array([3.0, 2.0])}, "lengths must hold integers"),
    ({"lengths": {"t": np.array([3])}}, r"lengths\['t'\] has shape \(1,\), expected \(B,\) = "),
    ({"targets": {"y": np.full((3, 2), 3)}}, r"targets\['y'\] holds class indices outside 0\.\.2"),
    ({"targets": {"y": np.full((3, 2), 0.5)}}, r"targets\['y'\] must hold integer class"),
    ({"state0": {}}, r"state0\['g'\] is required: the spec says its initial value is given, "
                     r"shape \(B, n\) = \(2, 2\)"),
])
def test_validate_refuses(tables, change, message):
    tables(V, **VAL)
    args = dict(zip(("params", "inputs", "targets", "state0"), _val_args()), T=None)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        V._validate(**args)


def test_validate_remembers_the_shapes_it_checked(tables, monkeypatch):
    tables(V, **VAL)
    checked = []
    check = V._check_shapes
    monkeypatch.setattr(V, "_check_shapes", lambda entries, dims: (
        checked.append([a.shape for _, a, _ in entries]), check(entries, dims))[1])
    args = _val_args()
    dims = V._validate(*args, None)[-1]
    assert len(checked) == 1
    again = V._validate(*args, None)[-1]
    assert len(checked) == 1  # the same shapes: not checked again, the same dims
    assert {k: v for k, v in again.items() if k not in ("last", "lengths")} == \
        {k: v for k, v in dims.items() if k not in ("last", "lengths")}
    assert list(again["last"]) == list(dims["last"])
    V._validate(*args, 3)  # T given: another call
    assert len(checked) == 2
    V._validate(*_val_args(T=4), None)  # new shapes: checked
    assert len(checked) == 3 and checked[-1][2] == (4, 2, 2)
    V._validate(*_val_args(T=4), None)
    assert len(checked) == 3


def test_steps_of_validate_alone(tables):
    tables(V, **VAL)
    assert V._float_type({"W": np.ones(2, np.float32)}) == np.float32
    assert V._float_type({"W": np.ones(2, np.float32), "b": np.ones(2)}) == np.float64
    assert V._float_type({"W": np.ones(2, int)}) == V._float_type({}) == np.float64
    assert V._class_indices("y", np.array([1.0, 2.0])).dtype == np.int64
    assert V._class_indices("y", np.array([1, 2], np.int8)).dtype == np.int8
    assert V._steps_given({"t": 4}, 2) == V._steps_given(4, 2) == {"T": 4, "B": 2}
    assert V._steps_given(None, None) == {}


def test_lengths_of_an_axis_inside_another(tables):
    tables(V, AXES={"s": "T", "w": "T_w"}, NESTED={"w": "s"}, MIN_T={"T": 1, "T_w": 1})
    dims = {"T": 2, "T_w": 3, "B": 2}
    V._bind_lengths({"s": np.array([2, 1]), "w": np.array([[3, 1], [2, 0]])}, dims)
    assert dims["B_w"] == 4  # every step s of every sequence
    np.testing.assert_array_equal(dims["lengths_w"], [3, 1, 2, 1])  # a padding step s runs one w
    np.testing.assert_array_equal(dims["last"], [1, 0])
    np.testing.assert_array_equal(dims["last_w"], [2, 0, 1, 0])
    with pytest.raises(ValueError, match=r"lengths\['w'\] must be between 1 and T_w = 3 \(0 is "
                                         r"allowed only for steps s past their sequence's end\)"):
        V._bind_lengths({"s": np.array([2, 2]), "w": np.array([[3, 1], [2, 0]])}, dict(dims))
