"""Sequence-to-sequence features: several time axes (encoder-decoder), attention, states
initialized from a static value, backward recurrences, teacher forcing and generation.

1. gradient checks of every two-axis spec and of self-attention at Tx != Ty (both ways), length 1
   on each axis, and padded batches with lengths per axis;
2. attention weights: recomputed by hand from the spec's formulas, summing to one, exactly zero
   past each key sequence's length and (mask=causal) above the diagonal;
3. a padded batch (both axes) equals its sequences run one by one;
4. teacher forcing: what feedback() feeds in each mode, gradients in both modes, generate() and
   `rnnspec sample`;
5. bidirectional: the backward state starts at each sequence's own last step;
6. bad specs for each new construct: position, message and hint of a SpecError.
"""
import functools
import re
import subprocess
import sys

import numpy as np
import pytest

import rnnspec
from conftest import BAD_FILENAME, SPECS, assert_rendered, first_error
from rnnspec.gradcheck import random_problem

ATTENTION = sorted(p.stem for p in SPECS.glob("attention_*.rnn"))
TWO_AXES = ["encdec"] + ATTENTION


def test_attention_specs_are_all_found():
    assert {"attention_dot", "attention_scaled", "attention_cosine", "attention_general",
            "attention_concat", "attention_local"} <= set(ATTENTION)


@functools.lru_cache(maxsize=None)
def module(stem):
    return rnnspec.compile_file(SPECS / f"{stem}.rnn")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def onehot(y, k):
    return np.eye(k)[y]


# ----- 1. gradient checks --------------------------------------------------------------------
def assert_gradcheck(mod, T, lengths=None, mode=None, batch=2, seed=1):
    report = rnnspec.gradcheck(mod, T=T, batch=batch, seed=seed, lengths=lengths, mode=mode)
    assert report.mode == "every entry"
    assert report.ok, report.table()
    for group, expected in (("params", mod.PARAMS), ("inputs", mod.INPUTS)):
        names = {r.name for r in report.rows if r.group == group}
        assert names == set(expected), report.table()  # every one, created parameters included
    for r in report.rows:
        assert r.checked == int(np.prod(r.shape)), r.label
    return report


SHAPES = [{"t": 3, "i": 2}, {"t": 2, "i": 3}, {"t": 1, "i": 3}, {"t": 3, "i": 1}]


@pytest.mark.parametrize("T", SHAPES, ids=lambda T: f"Tx{T['t']}-Ty{T['i']}")
@pytest.mark.parametrize("stem", TWO_AXES)
def test_gradcheck_two_axes(stem, T):
    mod = module(stem)
    assert mod.AXES == {"t": "T", "i": "T_i"}
    report = assert_gradcheck(mod, T)
    assert (report.sizes["T"], report.sizes["T_i"]) == (T["t"], T["i"])
    # the arrays really have those lengths
    shapes = {r.name: r.shape for r in report.rows if r.group == "inputs"}
    for name, info in mod.INPUTS.items():
        assert shapes[name][0] == T[info["axis"]], name


PADDED = [
    ({"t": 4, "i": 3}, {"t": np.array([4, 1, 2]), "i": np.array([1, 3, 2])}),
    ({"t": 2, "i": 4}, {"t": np.array([1, 2, 2]), "i": np.array([4, 1, 3])}),
]


@pytest.mark.parametrize("T, lengths", PADDED, ids=["Tx>Ty", "Tx<Ty"])
@pytest.mark.parametrize("stem", TWO_AXES)
def test_gradcheck_two_axes_padded(stem, T, lengths):
    assert_gradcheck(module(stem), T, lengths=lengths, batch=3, seed=2)


@pytest.mark.parametrize("T, lengths", [(1, None), (2, None), (5, None),
                                        (5, {"t": np.array([5, 1, 3])})],
                         ids=["T1", "T2", "T5", "padded"])
def test_gradcheck_self_attention(T, lengths):
    assert_gradcheck(module("self_attention"), T, lengths=lengths,
                     batch=2 if lengths is None else 3)


# ----- 2. attention weights ------------------------------------------------------------------
def padded_problem(mod, Tx, Ty, Lx, Ly, seed=5):
    T = {"t": Tx, "i": Ty} if "i" in mod.AXES else Tx
    lengths = {"t": np.asarray(Lx)}
    if "i" in mod.AXES:
        lengths["i"] = np.asarray(Ly)
    params, inputs, targets, state0, up = random_problem(mod, T=T, batch=len(Lx), seed=seed)
    return params, inputs, targets, state0, up, lengths


def reference_weights(stem, params, out, state0, Lx):
    """attend(s[i-1], h, score=...) of the specs, written out from their comments."""
    s_prev = np.concatenate([state0["s"][None], out["s"][:-1]])  # the queries s[i-1]
    h = out["h"]  # (Tx, B, n): the keys
    Tx = h.shape[0]
    score = stem.split("_")[1]
    if score in ("dot", "scaled"):
        e = np.einsum("ibn,tbn->ibt", s_prev, h)
        if score == "scaled":
            e = e / np.sqrt(h.shape[-1])
    elif score == "cosine":
        e = np.einsum("ibn,tbn->ibt", s_prev / np.linalg.norm(s_prev, axis=-1, keepdims=True),
                      h / np.linalg.norm(h, axis=-1, keepdims=True))
    elif score in ("general", "local"):
        e = np.einsum("ibm,mn,tbn->ibt", s_prev, params["Wa_c"], h)
    else:  # concat: va^T tanh(Wa [q; k])
        Wa, n = params["Wa_c"], s_prev.shape[-1]
        pre = (s_prev @ Wa[:, :n].T)[:, :, None, :] + (h @ Wa[:, n:].T).transpose(1, 0, 2)[None]
        e = np.tanh(pre) @ params["va_c"]
    if score == "local":  # p[i] = Tx sigmoid(vp . tanh(Wp s[i-1])), Gaussian of width d = 2
        r = np.tanh(s_prev @ params["Wp_c"].T) @ params["vp_c"]  # (Ty, B)
        p = np.asarray(Lx)[None, :] / (1 + np.exp(-r))
        steps = np.arange(1, Tx + 1)
        e = e * np.exp(-(steps[None, None, :] - p[..., None]) ** 2 / (2 * 2.0 ** 2))
    valid = np.arange(Tx)[None, None, :] < np.asarray(Lx)[None, :, None]
    return softmax(np.where(valid, e, -np.inf))


@pytest.mark.parametrize("stem", ATTENTION)
def test_attention_weights_padded_batch(stem):
    mod = module(stem)
    Lx, Ly = [5, 2, 1, 4], [3, 1, 3, 2]
    params, inputs, targets, state0, _, lengths = padded_problem(mod, 5, 3, Lx, Ly)
    out, _ = mod.forward(params, inputs, targets, state0, lengths=lengths)
    a = out["attention"]["c"]
    assert a.shape == (3, 4, 5)  # (T_query, B, T_keys)
    for b in range(4):
        valid = a[:Ly[b], b]
        np.testing.assert_allclose(valid.sum(axis=-1), 1.0, atol=1e-12)
        assert (valid >= 0).all()
        assert (a[:, b, Lx[b]:] == 0).all(), f"weight past the end of key sequence {b}"
    assert np.isfinite(a).all()
    ref = reference_weights(stem, params, out, state0, Lx)
    for b in range(4):
        np.testing.assert_allclose(a[:Ly[b], b], ref[:Ly[b], b], atol=1e-12, err_msg=f"seq {b}")
        # the context is the weighted sum of the keys (they are also the values)
        ctx = np.einsum("it,tn->in", a[:Ly[b], b], out["h"][:, b])
        np.testing.assert_allclose(out["c"][:Ly[b], b], ctx, atol=1e-12)


@pytest.mark.parametrize("stem", ATTENTION)
def test_attention_weights_full_length(stem):
    mod = module(stem)
    params, inputs, targets, state0, _ = random_problem(mod, T={"t": 3, "i": 4}, batch=2, seed=7)
    out, _ = mod.forward(params, inputs, targets, state0)
    a = out["attention"]["c"]
    assert a.shape == (4, 2, 3)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(a, reference_weights(stem, params, out, state0, [3, 3]),
                               atol=1e-12)


def test_local_attention_weights_exist_and_sum_to_one():
    mod = module("attention_local")
    assert {"Wa_c", "Wp_c", "vp_c"} <= set(mod.PARAMS)
    params, inputs, targets, state0, _ = random_problem(mod, T={"t": 6, "i": 2}, batch=3,
                                                        seed=3)
    out, _ = mod.forward(params, inputs, targets, state0)
    a = out["attention"]["c"]
    assert a.shape == (2, 3, 6)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-12)
    assert (a > 0).all()
    # the Gaussian window makes it differ from plain general attention with the same Wa
    plain = reference_weights("attention_general", params, out, state0, [6, 6, 6])
    assert np.abs(a - plain).max() > 1e-3


def test_self_attention_is_causal():
    mod = module("self_attention")
    L = np.array([6, 2, 1, 4])
    params, inputs, targets, state0, _ = random_problem(mod, T=6, batch=4, seed=3)
    out, _ = mod.forward(params, inputs, targets, state0, lengths={"t": L})
    a = out["attention"]["c"]
    assert a.shape == (6, 4, 6)
    above = np.triu(np.ones((6, 6), bool), k=1)  # key step after the query step
    for b in range(4):
        assert (a[:, b][above] == 0).all(), f"sequence {b} attends to later steps"
        assert (a[:, b, L[b]:] == 0).all()
        np.testing.assert_allclose(a[:L[b], b].sum(axis=-1), 1.0, atol=1e-12)
    # recomputed: softmax over t' <= t of q[t] . k[t'] / sqrt(key); the context sums x
    e = np.einsum("tbn,ubn->tbu", out["q"], out["k"]) / np.sqrt(out["q"].shape[-1])
    ok = ~above[:, None, :] & (np.arange(6)[None, None, :] < L[None, :, None])
    ref = softmax(np.where(ok, e, -np.inf))
    for b in range(4):
        np.testing.assert_allclose(a[:L[b], b], ref[:L[b], b], atol=1e-12)
        np.testing.assert_allclose(out["c"][:L[b], b], a[:L[b], b] @ inputs["x"][:, b],
                                   atol=1e-12)
    # the first step can only attend to itself
    np.testing.assert_array_equal(a[0, :, 0], 1.0)


# ----- 3. padded batch == sequences one by one ------------------------------------------------
def _cut(arrays, kinds, b, n):
    out = {}
    for name, a in arrays.items():
        info = kinds.get(name, {"kind": "static"})
        out[name] = a[:n[info["axis"]], b:b + 1] if info["kind"] == "sequence" else a[b:b + 1]
    return out


@pytest.mark.parametrize("stem", ["attention_dot", "attention_concat", "attention_local",
                                  "encdec"])
def test_padded_batch_equals_one_by_one_both_axes(stem):
    mod = module(stem)
    Lx, Ly = np.array([5, 2, 1, 4]), np.array([1, 4, 3, 2])
    params, inputs, targets, state0, up, lengths = padded_problem(mod, 5, 4, Lx, Ly, seed=11)
    for name, info in mod.OUTPUTS.items():  # no upstream gradient at undefined steps
        if info["kind"] == "sequence":
            L = lengths[info["axis"]]
            up[name] = up[name] * (np.arange(len(up[name]))[:, None] < L[None, :])[..., None]
    final_up = up.pop("final")
    out, cache = mod.forward(params, inputs, targets, state0, lengths=lengths)
    grads = mod.backward(params, cache, {**up, "final": final_up})
    total, summed = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    for b in range(4):
        n = {"t": int(Lx[b]), "i": int(Ly[b])}
        o1, c1 = mod.forward(params, _cut(inputs, mod.INPUTS, b, n),
                             _cut(targets, mod.TARGETS, b, n),
                             {k: v[b:b + 1] for k, v in state0.items()}, T=n)
        u1 = _cut(up, mod.OUTPUTS, b, n)
        u1["final"] = {k: v[b:b + 1] for k, v in final_up.items()}
        g1 = mod.backward(params, c1, u1)
        for name, info in mod.OUTPUTS.items():
            got = out[name][:n[info["axis"]], b] if info["kind"] == "sequence" else out[name][b]
            np.testing.assert_allclose(got, o1[name][:, 0] if info["kind"] == "sequence"
                                       else o1[name][0], atol=1e-12, err_msg=f"{name} seq {b}")
        for k, a in out.get("attention", {}).items():
            np.testing.assert_allclose(a[:n["i"], b, :n["t"]], o1["attention"][k][:, 0],
                                       atol=1e-12, err_msg=f"weights seq {b}")
        for s in mod.STATES:
            np.testing.assert_allclose(out["final"][s][b], o1["final"][s][0], atol=1e-12,
                                       err_msg=f"final {s} seq {b}")
        total += o1["loss"]
        for k in summed:
            summed[k] += g1["params"][k]
        for name, info in mod.INPUTS.items():
            m = n[info["axis"]]
            g = grads["inputs"][name]
            np.testing.assert_allclose(g[:m, b], g1["inputs"][name][:, 0], atol=1e-11,
                                       err_msg=f"d {name} seq {b}")
            assert not g[m:, b].any(), f"gradient of {name} past the end of sequence {b}"
        for s in g1["state0"]:
            np.testing.assert_allclose(grads["state0"][s][b], g1["state0"][s][0], atol=1e-11,
                                       err_msg=f"d state0 {s} seq {b}")
    assert abs(out["loss"] - total) < 1e-10
    for k in summed:
        np.testing.assert_allclose(grads["params"][k], summed[k], atol=1e-10, err_msg=k)


def test_encdec_context_is_each_sequences_own_last_encoder_state():
    mod = module("encdec")
    Lx, Ly = np.array([4, 1, 3]), np.array([2, 3, 1])
    params, inputs, targets, state0, _, lengths = padded_problem(mod, 4, 3, Lx, Ly)
    assert mod.STATES["s"]["init"] == "value" and mod.STATES["s"]["from"] == "C"
    assert "s" not in state0
    out, _ = mod.forward(params, inputs, targets, state0, lengths=lengths)
    C = out["h"][Lx - 1, np.arange(3)]
    np.testing.assert_allclose(out["C"], C, atol=0)
    p = params
    s1 = np.tanh(p["bs"] + C @ p["Ws"].T + inputs["e"][0] @ p["Us"].T + C @ p["R"].T)
    np.testing.assert_allclose(out["s"][0], s1, atol=1e-12)
    # state0 overrides the value the state is initialized from
    s0 = np.zeros((3, 5))
    out2, _ = mod.forward(params, inputs, targets, {**state0, "s": s0}, lengths=lengths)
    s1 = np.tanh(p["bs"] + inputs["e"][0] @ p["Us"].T + C @ p["R"].T)
    np.testing.assert_allclose(out2["s"][0], s1, atol=1e-12)


# ----- 4. teacher forcing and generation -----------------------------------------------------
def tf_problem(stem, T=5, B=3, seed=0):
    mod = module(stem)
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(0, 0.5, v.shape) for k, v in mod.init_params(seed=seed).items()}
    k = mod._size(mod.TARGETS["y"]["size"], mod.DIMS)
    inputs = {n: rng.normal(size=(T, B, mod._size(i["size"], mod.DIMS)))
              for n, i in mod.INPUTS.items()}
    y = rng.integers(0, k, (T, B))
    return mod, params, inputs, {"y": y}, k


@pytest.mark.parametrize("stem", ["teacher_forcing", "generate"])
def test_teacher_mode_feeds_onehot_of_previous_targets(stem):
    mod, params, inputs, targets, k = tf_problem(stem)
    y = targets["y"]
    out, _ = mod.forward(params, inputs, targets, mode="teacher")
    fb = out["fb"]
    np.testing.assert_array_equal(fb[0], onehot(np.zeros(3, int), k))  # the start class 0
    np.testing.assert_array_equal(fb[1:], onehot(y[:-1], k))
    # teacher forcing is the default
    default, _ = mod.forward(params, inputs, targets)
    np.testing.assert_array_equal(default["fb"], fb)
    assert default["loss"] == out["loss"]
    nll = -np.log(np.take_along_axis(out["o"], y[..., None], -1)).sum()
    assert np.isclose(out["loss"], nll)


@pytest.mark.parametrize("stem", ["teacher_forcing", "generate"])
def test_free_mode_feeds_previous_output(stem):
    mod, params, inputs, targets, k = tf_problem(stem)
    o0 = softmax(np.random.default_rng(1).normal(size=(3, k)))
    out, _ = mod.forward(params, inputs, targets, {"o": o0}, mode="free")
    np.testing.assert_array_equal(out["fb"][0], o0)
    np.testing.assert_array_equal(out["fb"][1:], out["o"][:-1])
    teacher, _ = mod.forward(params, inputs, targets, {"o": o0}, mode="teacher")
    assert np.abs(teacher["o"] - out["o"]).max() > 1e-6
    # without targets: no loss, same outputs
    out2, _ = mod.forward(params, inputs, None, {"o": o0}, T=5, mode="free")
    assert "loss" not in out2
    np.testing.assert_array_equal(out2["o"], out["o"])


def test_free_mode_by_hand():
    mod, p, inputs, targets, k = tf_problem("teacher_forcing", T=6)
    x = inputs["x"]
    out, _ = mod.forward(p, inputs, targets, mode="free")
    prev = np.zeros((3, k))
    for t in range(6):
        h = np.tanh(p["b"] + prev @ p["W"].T + x[t] @ p["U"].T)
        prev = softmax(p["c"] + h @ p["V"].T)
        np.testing.assert_allclose(out["o"][t], prev, atol=1e-12)
    nll = -np.log(np.take_along_axis(out["o"], targets["y"][..., None], -1)).sum()
    assert np.isclose(out["loss"], nll)


@pytest.mark.parametrize("mode", ["teacher", "free"])
@pytest.mark.parametrize("stem", ["teacher_forcing", "generate"])
def test_gradcheck_feedback(stem, mode):
    mod = module(stem)
    assert_gradcheck(mod, 4, mode=mode)
    assert_gradcheck(mod, 4, lengths=np.array([4, 1, 3]), mode=mode, batch=3)
    assert_gradcheck(mod, 1, mode=mode)


def test_teacher_mode_without_targets_is_a_clear_error():
    mod, params, inputs, _, _ = tf_problem("teacher_forcing")
    with pytest.raises(ValueError, match=r"teacher forcing feeds the targets back: pass targets, "
                                         r"or run with mode=\"free\""):
        mod.forward(params, inputs)
    with pytest.raises(ValueError, match="pass targets"):
        mod.forward(params, inputs, None, mode="teacher")
    with pytest.raises(ValueError, match=r"mode must be 'teacher' or 'free', not 'sample'"):
        mod.forward(params, inputs, mode="sample")


def greedy_by_hand(p, T, seed_class, B):
    """generate.rnn run free, feeding back the argmax of the previous output."""
    h = np.zeros((B, p["W"].shape[0]))
    prev = np.full(B, seed_class)
    tokens = []
    for _ in range(T):
        h = np.tanh(p["b"] + h @ p["W"].T + onehot(prev, p["U"].shape[1]) @ p["U"].T)
        prev = softmax(p["c"] + h @ p["V"].T).argmax(axis=-1)
        tokens.append(prev)
    return np.array(tokens)


def seed_state(k, classes):
    return {"o": onehot(np.asarray(classes), k)}


def test_generate_greedy_is_deterministic_and_argmax_feeding():
    mod, p, _, _, k = tf_problem("generate", seed=3)
    s0 = seed_state(k, [0, 1, 2, 3])
    tokens, lengths, out = mod.generate(p, T=8, state0=s0)
    assert tokens.shape == (8, 4) and np.issubdtype(tokens.dtype, np.integer)
    np.testing.assert_array_equal(lengths, [8, 8, 8, 8])
    again, _, _ = mod.generate(p, T=8, state0=s0, seed=123)  # the seed does not matter
    np.testing.assert_array_equal(again, tokens)
    np.testing.assert_array_equal(tokens, greedy_by_hand(p, 8, [0, 1, 2, 3], 4))
    np.testing.assert_array_equal(tokens, out["o"].argmax(axis=-1))
    np.testing.assert_array_equal(out["fb"][0], s0["o"])
    np.testing.assert_array_equal(out["fb"][1:], onehot(tokens[:-1], k))
    assert len(np.unique(tokens)) > 1, "a degenerate example: pick other parameters"


def test_generate_greedy_with_inputs():
    mod, p, inputs, _, k = tf_problem("teacher_forcing", T=6)
    tokens, lengths, out = mod.generate(p, inputs)
    assert tokens.shape == (6, 3)
    np.testing.assert_array_equal(tokens, out["o"].argmax(axis=-1))
    # the same as running free from the one-hot of each previous choice, by hand
    x, prev = inputs["x"], np.zeros((3, k))
    for t in range(6):
        h = np.tanh(p["b"] + onehot(prev.argmax(-1), k) @ p["W"].T + x[t] @ p["U"].T)
        prev = softmax(p["c"] + h @ p["V"].T)
        np.testing.assert_array_equal(tokens[t], prev.argmax(axis=-1))


def test_generate_sampled_is_reproducible_and_seeded():
    mod, p, _, _, k = tf_problem("generate", seed=3)
    s0 = seed_state(k, [0, 1, 2, 3, 4, 0])
    a, _, out = mod.generate(p, T=12, state0=s0, seed=7, greedy=False)
    b, _, _ = mod.generate(p, T=12, state0=s0, seed=7, greedy=False)
    c, _, _ = mod.generate(p, T=12, state0=s0, seed=8, greedy=False)
    greedy, _, _ = mod.generate(p, T=12, state0=s0)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert (a != greedy).any()
    assert a.min() >= 0 and a.max() < k
    # what was fed back is what was generated
    np.testing.assert_array_equal(out["fb"][1:], onehot(a[:-1], k))


def test_generate_sampling_follows_the_output_distribution():
    # many sequences of one step from one seed class: the class frequencies follow o[1]
    mod, p, _, _, k = tf_problem("generate", seed=3)
    tokens, _, out = mod.generate(p, T=1, state0=seed_state(k, np.zeros(4000, int)), seed=1,
                                  greedy=False)
    freq = np.bincount(tokens[0], minlength=k) / 4000
    np.testing.assert_allclose(freq, out["o"][0, 0], atol=0.03)


def test_generate_end_token_truncates():
    mod, p, _, _, k = tf_problem("generate", seed=3)
    s0 = seed_state(k, [0, 1, 2, 3, 4, 0, 1, 2])
    free, lengths, _ = mod.generate(p, T=10, state0=s0, seed=5, greedy=False)
    np.testing.assert_array_equal(lengths, 10)
    end = int(np.bincount(free.ravel()).argmax())
    tokens, lengths, _ = mod.generate(p, T=10, state0=s0, seed=5, greedy=False, end=end)
    assert lengths.shape == (8,) and (lengths < 10).any()
    for b in range(8):
        n = lengths[b]
        hits = np.flatnonzero(free[:, b] == end)
        assert n == (hits[0] + 1 if len(hits) else 10)
        np.testing.assert_array_equal(tokens[:n, b], free[:n, b])
        assert (tokens[n:, b] == end).all()
        assert end not in tokens[:n - 1, b]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnnspec.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _printed_tokens(stdout):
    lines = stdout.strip().split("\n")
    return lines[0], [[int(t) for t in line.split()] for line in lines[1:]]


def test_cli_sample(tmp_path):
    mod = module("generate")
    p = mod.init_params(seed=4)
    np.savez(tmp_path / "p.npz", **p)
    spec = str(SPECS / "generate.rnn")
    r = run_cli("sample", spec, "--params", str(tmp_path / "p.npz"), "--T", "7", "--batch", "3",
                "--seed-class", "2")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    head, rows = _printed_tokens(r.stdout)
    assert "3 sequence(s)" in head and "greedy" in head
    tokens, _, _ = mod.generate(p, T=7, state0=seed_state(5, [2, 2, 2]))
    assert rows == tokens.T.tolist()
    # sampled, with an end token
    r = run_cli("sample", spec, "--params", str(tmp_path / "p.npz"), "--T", "9", "--batch", "4",
                "--seed-class", "1", "--sample", "--seed", "3", "--end", "4")
    assert r.returncode == 0, r.stderr
    head, rows = _printed_tokens(r.stdout)
    assert "sampled" in head
    tokens, lengths, _ = mod.generate(p, T=9, state0=seed_state(5, [1] * 4), seed=3,
                                      greedy=False, end=4)
    assert rows == [tokens[:lengths[b], b].tolist() for b in range(4)]


def test_cli_sample_defaults():
    r = run_cli("sample", str(SPECS / "generate.rnn"), "--T", "5")
    assert r.returncode == 0, r.stderr
    head, rows = _printed_tokens(r.stdout)
    assert len(rows) == 1 and len(rows[0]) == 5
    assert all(0 <= t < 5 for t in rows[0])


def test_cli_sample_batch_without_seed_class():
    r = run_cli("sample", str(SPECS / "generate.rnn"), "--T", "5", "--batch", "3", "--sample")
    assert r.returncode == 0, r.stderr
    head, rows = _printed_tokens(r.stdout)
    assert "3 sequence(s)" in head
    assert len(rows) == 3


def test_cli_sample_spec_without_feedback(tmp_path):
    (tmp_path / "plain.rnn").write_text(
        "dim n = 3\ninput x[t]: n\ntarget y[t]: class(n)\nparam V: (n, n)\n"
        "o[t] = softmax(V @ x[t])\nloss = cross_entropy(o[t], y[t])\n", encoding="utf-8")
    r = run_cli("sample", "plain.rnn", cwd=tmp_path)
    assert r.returncode == 2
    assert re.search(r"^plain\.rnn:\d+:\d+: error: .*feedback", r.stderr, re.M), r.stderr
    assert "hint:" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == ""


# ----- 5. bidirectional -----------------------------------------------------------------------
def test_bidirectional_backward_state():
    mod = module("bidirectional")
    p, inputs, targets, state0, _ = random_problem(mod, T=5, batch=3, seed=2)
    x = inputs["x"]
    out, _ = mod.forward(p, inputs, targets, state0)
    np.testing.assert_array_equal(out["final"]["g"], out["g"][0])  # its value at step 1
    np.testing.assert_array_equal(out["final"]["h"], out["h"][-1])
    g = state0["g"]
    for t in reversed(range(5)):  # g[t] = tanh(b2 + W2 g[t+1] + U2 x[t]) from g[T+1]
        g = np.tanh(p["b2"] + g @ p["W2"].T + x[t] @ p["U2"].T)
        np.testing.assert_allclose(out["g"][t], g, atol=1e-12)


def test_bidirectional_lengths_start_at_each_sequences_last_step():
    mod = module("bidirectional")
    L = np.array([5, 2, 1, 3])
    p, inputs, targets, state0, up = random_problem(mod, T=5, batch=4, seed=4,
                                                    lengths={"t": L})
    x = inputs["x"]
    final_up = up.pop("final")
    out, cache = mod.forward(p, inputs, targets, state0, lengths={"t": L})
    grads = mod.backward(p, cache, {**up, "final": final_up})
    summed = {k: np.zeros_like(v) for k, v in p.items()}
    for b in range(4):
        n = L[b]
        g_last = np.tanh(p["b2"] + state0["g"][b] @ p["W2"].T + x[n - 1, b] @ p["U2"].T)
        np.testing.assert_allclose(out["g"][n - 1, b], g_last, atol=1e-12)
        np.testing.assert_array_equal(out["final"]["g"][b], out["g"][0, b])
        one, c1 = mod.forward(p, {"x": x[:n, b:b + 1]}, {"y": targets["y"][:n, b:b + 1]},
                              {k: v[b:b + 1] for k, v in state0.items()})
        for name in ("h", "g", "o"):
            np.testing.assert_allclose(out[name][:n, b], one[name][:, 0], atol=1e-12,
                                       err_msg=f"{name} seq {b}")
        for s in ("h", "g"):
            np.testing.assert_allclose(out["final"][s][b], one["final"][s][0], atol=1e-12)
        g1 = mod.backward(p, c1, {**{k: up[k][:n, b:b + 1] for k in up},
                                  "final": {k: v[b:b + 1] for k, v in final_up.items()}})
        np.testing.assert_allclose(grads["inputs"]["x"][:n, b], g1["inputs"]["x"][:, 0],
                                   atol=1e-11)
        assert not grads["inputs"]["x"][n:, b].any()
        for s in ("h", "g"):
            np.testing.assert_allclose(grads["state0"][s][b], g1["state0"][s][0], atol=1e-11)
        for k in summed:
            summed[k] += g1["params"][k]
    for k in summed:
        np.testing.assert_allclose(grads["params"][k], summed[k], atol=1e-10, err_msg=k)
    assert_gradcheck(mod, 4, lengths={"t": np.array([4, 1, 3])}, batch=3)


# ----- 6. bad specs ---------------------------------------------------------------------------
FILENAME = BAD_FILENAME

# two time axes; the statement under test starts on line 11
AXES2 = """dim in = 3
dim hidden = 5
dim out = 4
input x[t]: in
input e[i]: in
target y[i]: class(out)
param W: (hidden, in)
state h: hidden = zeros
state s: hidden = zeros
h[t] = tanh(W @ x[t] + h[t-1])
"""
DEC = "s[i] = tanh(c[i] + s[i-1])\n"

# feedback: the statement under test is on line 11
FB = """dim in = 3
dim hidden = 5
dim out = 4
input x[t]: in
target y[t]: class(out) = 0
param W: (hidden, out)
param V: (out, hidden)
state o: out = zeros
h[t] = tanh(W @ fb[t])
o[t] = softmax(V @ h[t])
"""

# one axis; the statement under test is on line 8
ONE = """dim in = 3
dim hidden = 5
dim out = 4
input x[t]: in
target y[t]: class(out)
param W: (hidden, in)
param Q: (hidden, hidden)
"""


def case(id, text, line, column, message, hint="", marks=()):
    return pytest.param(text, line, column, message, hint, id=id, marks=marks)


BAD = [
    # attention
    case("attend-over-static-value",
         AXES2 + "C = h[end]\nc[i] = attend(s[i-1], C, score=general)\n" + DEC,
         12, 23, "attention over 'C', which is not a sequence", "per-step value"),
    case("attend-over-parameter",
         AXES2 + "c[i] = attend(s[i-1], W, score=general)\n" + DEC,
         11, 23, "attention over 'W', which is not a sequence", "such as h"),
    case("attend-keys-with-index",
         AXES2 + "c[i] = attend(s[i-1], h[t])\n" + DEC,
         11, 25, "attention runs over all steps of 'h': write h, not h[t]", "attend(query, h)"),
    case("attend-keys-with-other-axis-index",
         AXES2 + "c[i] = attend(s[i-1], h[i-1])\n" + DEC,
         11, 25, "attention runs over all steps of 'h': write h, not h[i-1]", "attend(query, h)"),
    case("attend-keys-expression",
         AXES2 + "c[i] = attend(s[i-1], h + h)\n" + DEC,
         11, 23, "the keys must be the name of one, not `h + h`", "k[t] = ..."),
    case("score-dot-sizes-differ",
         AXES2 + "c[i] = attend(e[i], h, score=dot)\n" + DEC,
         11, 8, "score=dot compares the query with each key, but the query e[i] has size in and "
                "the keys 'h' size hidden", "score=general"),
    case("score-cosine-sizes-differ",
         AXES2 + "c[i] = attend(e[i], h, score=cosine)\n" + DEC,
         11, 8, "score=cosine compares the query with each key", "make the sizes equal"),
    case("unknown-score-typo",
         AXES2 + "c[i] = attend(s[i-1], h, score=dott)\n" + DEC,
         11, 32, "unknown attention score 'dott'", "did you mean 'dot'?"),
    case("unknown-score",
         AXES2 + "c[i] = attend(s[i-1], h, score=bilinear)\n" + DEC,
         11, 32, "unknown attention score 'bilinear'",
         "dot, scaled, cosine, general, concat"),
    case("causal-mask-across-axes",
         AXES2 + "c[i] = attend(s[i-1], h, mask=causal)\n" + DEC,
         11, 31, "mask=causal needs queries and keys on the same time axis", "self-attention"),
    case("unknown-mask",
         AXES2 + "c[i] = attend(s[i-1], h, mask=future)\n" + DEC,
         11, 31, "unknown mask future", "mask=causal"),
    case("window-zero",
         AXES2 + "c[i] = attend(s[i-1], h, score=general, window=0)\n" + DEC,
         11, 48, "window= is the width d of local attention's Gaussian, a positive number",
         "window=2"),
    case("window-negative",
         AXES2 + "c[i] = attend(s[i-1], h, score=general, window=-2)\n" + DEC,
         11, 48, "a positive number", "window=2"),
    case("attend-unknown-option",
         AXES2 + "c[i] = attend(s[i-1], h, temp=2)\n" + DEC,
         11, 26, "attend() has no option 'temp'", "score=, size=, name=, window=, mask="),
    case("attend-keys-and-values-on-different-axes",
         AXES2 + "c[i] = attend(s[i-1], h, e)\n" + DEC,
         11, 26, "keys 'h' run over steps t but values 'e' over steps i", "one sequence"),
    case("attend-creates-a-taken-name",
         AXES2 + "param Wa_c: (hidden, hidden)\nc[i] = attend(s[i-1], h, score=general)\n" + DEC,
         12, 8, "attend(...) creates parameter 'Wa_c', but that name is already used (line 11)",
         "name="),
    # axes
    case("other-axis-sequence-per-step",
         AXES2 + "s[i] = tanh(W @ x[i] + s[i-1])\n",
         11, 19, "'x' runs over steps t, not i", "x[end] or attend(x)"),
    case("other-axis-sequence-at-its-own-step",
         AXES2 + "s[i] = tanh(W @ x[t] + s[i-1])\n",
         11, 17, "'x[t]' runs over steps t, but 's' is computed at each step i",
         "x[end] or through attend(..., x)"),
    case("other-axis-state-delayed",
         AXES2 + "s[i] = tanh(h[t-1] + s[i-1])\n",
         11, 13, "'h[t-1]' runs over steps t, but 's' is computed at each step i", "h[end]"),
    # feedback and onehot
    case("onehot-of-an-input",
         FB + "fb[t] = feedback(onehot(x[t-1]), o[t-1])\n",
         11, 25, "onehot() turns class inputs and targets into vectors, but `x[t-1]` is neither",
         "target y[t]: class(K)"),
    case("onehot-of-an-expression",
         FB + "fb[t] = feedback(onehot(y[t-1] + 1), o[t-1])\n",
         11, 25, "`y[t-1] + 1` is neither", "onehot(y[t-1])"),
    case("onehot-without-start-class",
         FB.replace("class(out) = 0", "class(out)") + "fb[t] = feedback(onehot(y[t-1]), o[t-1])\n",
         11, 25, "'y[t-1]' reads before the first step, but target 'y' has no start value",
         "target y[t]: class(out) = 0"),
    case("onehot-of-a-later-step",
         FB + "fb[t] = feedback(onehot(y[t+1]), o[t-1])\n",
         11, 25, "onehot() takes a class target at an earlier step, such as y[t-1]",
         "onehot(y[t-1])"),
    case("start-class-too-large",
         FB.replace("class(out) = 0", "class(out) = 4")
         + "fb[t] = feedback(onehot(y[t-1]), o[t-1])\n",
         5, 1, "start class 4 of 'y' is not below out = 4", "class index"),
    case("target-on-the-free-side",
         FB + "fb[t] = feedback(o[t-1], onehot(y[t-1]))\n",
         11, 26, "targets are fed to the network only on the teacher side of feedback()",
         "feedback(onehot(y[t-1]), o[t-1])"),
    case("target-outside-feedback",
         FB + "fb[t] = onehot(y[t-1])\n",
         11, 9, "targets are fed to the network only on the teacher side of feedback()",
         "feedback(onehot(y[t-1]), o[t-1])"),
    case("target-outside-feedback-elsewhere",
         FB + "fb[t] = feedback(onehot(y[t-1]), o[t-1])\nz[t] = tanh(W @ onehot(y[t-1]))\n",
         12, 17, "targets are fed to the network only on the teacher side", "feedback("),
    case("feedback-sizes-differ",
         FB + "fb[t] = feedback(onehot(y[t-1]), x[t])\n",
         11, 9, "feedback(): the teacher side is a vector of size out but the free side is a "
                "vector of size in", "feed vectors of one size"),
    case("feedback-in-a-static-value",
         FB + "fb = feedback(onehot(y[t-1]), o[t-1])\n",
         11, 6, "feedback() feeds a step's input: use it in a per-step equation",
         "fb[t] = feedback("),
    case("feedback-three-arguments",
         FB + "fb[t] = feedback(onehot(y[t-1]), o[t-1], o[t-1])\n",
         11, 9, "feedback() takes two arguments", "feedback(onehot(y[t-1]), o[t-1])"),
    # states initialized from a value
    case("state-initialized-from-a-sequence-value",
         AXES2.replace("state s: hidden = zeros", "state s: hidden = z")
         + "z[t] = tanh(W @ x[t])\ns[i] = tanh(s[i-1])\n",
         9, 19, "initial value of state 's': 'z' is a sequence", "[end]"),
    case("state-initialized-from-a-sequence-input",
         AXES2.replace("state s: hidden = zeros", "state s: in = x") + "s[i] = tanh(s[i-1])\n",
         9, 15, "initial value of state 's': 'x' is a sequence input", "input x: in"),
    case("state-initialized-from-a-static-value-of-another-size",
         AXES2.replace("state s: hidden = zeros", "state s: in = C")
         + "C = h[end]\ns[i] = tanh(s[i-1])\n",
         9, 15, "initial value of state 's': 'C' has size hidden, but the state has size in",
         "the state's size"),
    case("state-initialized-from-a-state-sequence",
         AXES2.replace("state s: hidden = zeros", "state s: hidden = h") + "s[i] = tanh(s[i-1])\n",
         9, 19, "initial value of state 's': 'h' is a sequence", "h[end]"),
    # recurrence directions
    case("forward-and-backward-through-two-states",
         ONE + "state g: hidden = zeros\nstate k: hidden = zeros\n"
               "g[t] = tanh(W @ x[t] + k[t+1])\nk[t] = tanh(Q @ g[t-1])\n",
         10, 1, "the recurrence through g, k depends on both earlier steps",
         "split it into a forward and a backward state"),
    case("forward-and-backward-through-a-value",
         ONE + "state g: hidden = zeros\na[t] = tanh(W @ x[t] + g[t+1])\n"
               "g[t] = tanh(Q @ a[t] + g[t-1])\n",
         9, 1, "the recurrence through a, g depends on both earlier steps",
         "split it into a forward and a backward state"),
    case("forward-and-backward-on-the-second-axis",
         AXES2 + "s[i] = tanh(W @ e[i] + s[i-1] + s[i+1])\n",
         11, 1, "the recurrence through s depends on both earlier steps",
         "split it into a forward and a backward state"),
]


@pytest.mark.parametrize("text, line, column, message, hint", BAD)
def test_bad_spec(text, line, column, message, hint):
    exc = first_error(text)
    assert (exc.filename, exc.line, exc.column) == (FILENAME, line, column), str(exc)
    assert message in exc.message, str(exc)
    assert exc.hint and hint in exc.hint, str(exc)
    for d in exc.diagnostics:
        assert d.hint, str(d)
        assert_rendered(d, text)


def test_good_variants_of_the_bad_specs_compile():
    """The bad specs above differ from working ones only in the statement under test."""
    good = [
        AXES2 + "c[i] = attend(s[i-1], h, score=general)\n" + DEC,
        AXES2 + "c[i] = attend(e[i], h, score=concat, size=hidden)\n" + DEC,
        AXES2 + "c[i] = attend(s[i-1], h, score=general, window=0.5)\n" + DEC,
        AXES2 + "C = h[end]\ns[i] = tanh(W @ e[i] + s[i-1] + C)\n",
        AXES2.replace("state s: hidden = zeros", "state s: hidden = C")
        + "C = h[end]\ns[i] = tanh(s[i-1])\n",
        FB + "fb[t] = feedback(onehot(y[t-1]), o[t-1])\n",
        ONE + "state g: hidden = zeros\nstate k: hidden = zeros\n"
              "g[t] = tanh(W @ x[t] + k[t+1])\nk[t] = tanh(Q @ g[t+1])\n",
    ]
    for text in good:
        rnnspec.generate(text, filename=FILENAME)


def test_attention_over_itself_is_a_spec_error():
    text = (ONE + "state h: hidden = zeros\nh[t] = tanh(W @ x[t] + h[t-1])\n"
            "c[t] = attend(h[t], c)\n")
    exc = first_error(text)
    assert exc.line == 10 and exc.column in (1, 8, 21), str(exc)  # the equation, attend or c
    assert exc.hint, str(exc)


def test_mixed_recurrence_message_names_its_own_axis():
    exc = first_error(AXES2 + "s[i] = tanh(W @ e[i] + s[i-1] + s[i+1])\n")
    assert "(i-d)" in exc.message and "(i+d)" in exc.message, exc.message


def test_state_initialized_from_a_value_that_depends_on_it():
    exc = first_error(AXES2.replace("state s: hidden = zeros", "state s: hidden = C")
                       + "C = s[end]\ns[i] = tanh(s[i-1])\n")
    assert "cycle" in exc.message, str(exc)
    assert "C[end]" not in exc.hint and "'C' at a fixed step" not in exc.message, str(exc)


def test_attention_over_a_value_that_depends_on_it():
    exc = first_error(ONE + "state h: hidden = zeros\nc[t] = attend(h[t-1], h)\n"
                             "h[t] = tanh(W @ x[t] + Q @ c[t])\n")
    assert "cycle" in exc.message, str(exc)
    assert "fixed step" not in exc.message and "h[end]" not in exc.hint, str(exc)
