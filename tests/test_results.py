"""Results on valid specs (issue 9, section 3): values of parameters only have one shape
everywhere, nested unnamed connections get their own prefixes, carrying states between pieces of a
sequence is exact for every spec where it applies (delays over one step too), generate() feeds
the declared start class, and a padded row obeys the same minimum length as a sequence alone."""
import numpy as np
import pytest

import rnnspec
from conftest import SPECS, spec_paths
from rnnspec.cli import main
from rnnspec.gradcheck import random_problem

# ---- 1. a static value of parameters only -------------------------------------------------------
SHARED = """
dim n = 3
input x[t]: n
param a: n
state h: n = zeros
s = sigmoid(a)
h[t] = s * h[t-1] + x[t]
"""


def test_value_of_parameters_only_has_one_shape_everywhere():
    mod = rnnspec.compile_source(SHARED)
    assert mod.OUTPUTS["s"]["kind"] == "shared"
    params = mod.init_params(seed=0)
    params["a"] = np.array([0.3, -0.2, 0.5])
    x = np.random.default_rng(0).normal(size=(4, 2, 3))
    out, cache = mod.forward(params, {"x": x})
    assert out["s"].shape == (3,)
    g = mod.backward(params, cache, {"s": np.ones(3)})
    assert g["params"]["a"].shape == (3,)
    s = 1 / (1 + np.exp(-params["a"]))
    np.testing.assert_allclose(g["params"]["a"], s * (1 - s))  # only s's own upstream gradient
    with pytest.raises(ValueError, match=r"d_outputs\['s'\] has shape \(2, 3\), expected \(n,\)"):
        mod.backward(params, cache, {"s": np.ones((2, 3))})


@pytest.mark.parametrize("variant", [
    SHARED,
    SHARED.replace("state h: n = zeros", "state h: n = s"),  # a state starting from it
    SHARED.replace("state h: n = zeros", "state h: n = s").replace("h[t-1]", "h[t-2]"),
    SHARED + "o = tanh(s + h[end])\n",
])
def test_value_of_parameters_only_gradchecks(variant):
    for lengths in (None, np.array([5, 2, 3])):
        report = rnnspec.gradcheck(rnnspec.compile_source(variant), lengths=lengths)
        assert report.ok, report.table()


def test_cli_compiles_a_value_of_parameters_only(tmp_path):
    spec = tmp_path / "shared.rnn"
    spec.write_text(SHARED)
    assert main(["compile", str(spec), "-o", str(tmp_path / "shared.py")]) == 0
    assert (tmp_path / "shared.py").exists()


# ---- 2. nested unnamed connections ---------------------------------------------------------------
def test_nested_unnamed_connections_get_their_own_prefixes():
    text = """
dim n = 3
dim inner = 4
input x[t]: n
state h: n = zeros
h[t] = tanh(affine(relu(affine(h[t-1], x[t], size=inner))))
"""
    mod = rnnspec.compile_source(text)
    assert mod.PARAMS == {"W_h2_h": ("inner", "n"), "W_h2_x": ("inner", "n"), "b_h2": ("inner",),
                          "W_h_1": ("n", "inner"), "b_h": ("n",)}
    assert rnnspec.gradcheck(mod).ok
    assert rnnspec.generate(text) == rnnspec.generate(text)


def test_connections_nested_and_side_by_side_are_numbered_outermost_first():
    text = """
dim n = 3
dim k = 2
input x[t]: n
state h: n = zeros
h[t] = tanh(affine(affine(x[t], size=k), tanh(affine(h[t-1], size=k))))
"""
    mod = rnnspec.compile_source(text)
    assert set(mod.PARAMS) == {"W_h_1", "W_h_2", "b_h", "W_h2_x", "b_h2", "W_h3_h", "b_h3"}
    assert rnnspec.gradcheck(mod).ok


# ---- 3. carrying states between pieces of a sequence ---------------------------------------------
# spec -> (forward mode, how its loss splits: 'sum' of per-step terms, 'mean' over T, or 'last':
# one loss per sequence, computed by the piece that holds the sequence's end)
CARRIED = {
    "elman": (None, "sum"), "linear": (None, "mean"), "jordan": (None, "sum"),
    "lstm": (None, "sum"), "lstm_peephole": (None, "sum"), "gru": (None, "sum"),
    "leaky": (None, "sum"), "skip": (None, "sum"), "deep": (None, "sum"),
    "torch_lstm": (None, "sum"), "torch_gru": (None, "sum"), "stacked_lstm": (None, "sum"),
    "stacked_lstm_lib": (None, "sum"), "stacked_gru": (None, "sum"),
    "one_to_many": (None, "sum"), "h0_from_input": (None, "sum"), "many_to_one": (None, "last"),
    "adding": (None, "last"), "char_lm": (None, "sum"),
    # teacher mode reads onehot(y[t-1]): a target, not a state, so a piece's first step would
    # read the start class; running free, the fed-back output is a state and carries
    "teacher_forcing": ("free", "sum"), "generate": ("free", "sum"),
}
NOT_CARRIED = {  # why splitting cannot give the unsplit result
    "bidirectional": "a backward-in-time state: each piece needs the next one's states",
    "bigru": "a backward-in-time state", "torch_bilstm": "a backward-in-time state",
    "torch_bigru": "a backward-in-time state",
    "encdec": "a second time axis reading the whole source (h[end])",
    "attention_concat": "attention over a whole sequence", "attention_cosine": "attention",
    "attention_dot": "attention", "attention_general": "attention",
    "attention_local": "attention", "attention_scaled": "attention",
    "self_attention": "attention over all earlier steps, which are not states",
    "hierarchical": "nested axes with backward-in-time states and attention",
}


def test_every_spec_is_classified_for_carrying():
    assert {p.stem for p in spec_paths()} == set(CARRIED) | set(NOT_CARRIED)
    assert not set(CARRIED) & set(NOT_CARRIED)


def _state_rows(mod, name, a, rows):
    return a[:, rows] if mod.STATES[name]["steps"] > 1 else a[rows]


def _set_state_rows(mod, name, a, rows, value):
    a = a.copy()
    if mod.STATES[name]["steps"] > 1:
        a[:, rows] = value
    else:
        a[rows] = value
    return a


def _split(mod, how, params, inputs, targets, state0, up, T, L, k, padded):
    """Run the batch whole and as steps 1..k then k+1..T (only the sequences longer than k
    continue, from the first piece's final states), and compare everything."""
    mode, loss_kind = how
    kw = {"mode": mode} if mode else {}
    lengths = L if padded else None
    out, cache = mod.forward(params, inputs, targets, state0, T=T, lengths=lengths, **kw)
    d_up = {n: g for n, g in up.items() if n == "final" or mod.OUTPUTS[n]["kind"] == "sequence"}
    grads = mod.backward(params, cache, d_up)
    rows = np.flatnonzero(L > k)  # the sequences that go on into the second piece
    ended = np.flatnonzero(L <= k)

    def piece(arrays, infos, sl, r):
        if arrays is None:  # no targets: no loss
            return None
        return {n: (a[sl, r] if infos[n]["kind"] == "sequence" else a[r])
                for n, a in arrays.items()}
    all_rows = np.arange(len(L))
    in_a = piece(inputs, mod.INPUTS, slice(0, k), all_rows)
    tg_a = piece(targets, mod.TARGETS, slice(0, k), all_rows)
    len_a = np.minimum(L, k) if padded else None
    out_a, cache_a = mod.forward(params, in_a, tg_a, state0, T=k, lengths=len_a, **kw)
    in_b = piece(inputs, mod.INPUTS, slice(k, T), rows)
    tg_b = piece(targets, mod.TARGETS, slice(k, T), rows)
    s0_b = {n: _state_rows(mod, n, v, rows) for n, v in out_a["final"].items()}
    len_b = L[rows] - k if padded else None
    out_b, cache_b = mod.forward(params, in_b, tg_b, s0_b, T=T - k, lengths=len_b, **kw)
    # outputs at every real step, static outputs and final states from the piece that ends them
    for n, info in mod.OUTPUTS.items():
        if info["kind"] == "sequence":
            for b in range(len(L)):
                m = min(L[b], k)
                np.testing.assert_allclose(out[n][:m, b], out_a[n][:m, b], atol=1e-12, err_msg=n)
            for j, b in enumerate(rows):
                np.testing.assert_allclose(out[n][k:L[b], b], out_b[n][:L[b] - k, j], atol=1e-12,
                                           err_msg=n)
        else:
            np.testing.assert_allclose(out[n][ended], out_a[n][ended], atol=1e-12, err_msg=n)
            np.testing.assert_allclose(out[n][rows], out_b[n], atol=1e-12, err_msg=n)
    for s in mod.STATES:
        np.testing.assert_allclose(_state_rows(mod, s, out["final"][s], ended),
                                   _state_rows(mod, s, out_a["final"][s], ended), atol=1e-12)
        np.testing.assert_allclose(_state_rows(mod, s, out["final"][s], rows),
                                   out_b["final"][s], atol=1e-12)
    # the loss and the gradients (the second piece's initial-state gradient is the upstream
    # gradient of the first piece's final states), where the loss splits
    if loss_kind == "mean" and padded or loss_kind == "last" and len(ended) or not len(rows):
        return
    w_a, w_b = {"sum": (1.0, 1.0), "mean": (k / T, (T - k) / T), "last": (0.0, 1.0)}[loss_kind]
    if "loss" in out:
        assert abs(out["loss"] - (w_a * out_a["loss"] + w_b * out_b["loss"])) < 1e-10
    up_b = {n: g[k:, rows] for n, g in d_up.items() if n != "final"}
    up_b["final"] = {s: _state_rows(mod, s, g, rows) for s, g in up["final"].items()}
    if "loss" in out:
        up_b["loss"] = w_b
    g_b = mod.backward(params, cache_b, up_b)
    up_a = {n: g[:k] for n, g in d_up.items() if n != "final"}
    up_a["final"] = {s: _set_state_rows(mod, s, g, rows, g_b["state0"][s])
                     for s, g in up["final"].items()}
    if "loss" in out:
        up_a["loss"] = w_a
    g_a = mod.backward(params, cache_a, up_a)
    for p in params:
        np.testing.assert_allclose(grads["params"][p], g_a["params"][p] + g_b["params"][p],
                                   atol=1e-10, err_msg=p)
    for n, info in mod.INPUTS.items():
        if info.get("type") == "class":  # indices: no gradient
            assert n not in grads["inputs"] and n not in g_a["inputs"]
            continue
        g = grads["inputs"][n]
        if info["kind"] == "sequence":
            np.testing.assert_allclose(g[:k], g_a["inputs"][n], atol=1e-10)
            np.testing.assert_allclose(g[k:, rows], g_b["inputs"][n], atol=1e-10)
        else:
            want = g_a["inputs"][n].copy()
            want[rows] += g_b["inputs"][n]
            np.testing.assert_allclose(g, want, atol=1e-10)
    for s in state0:
        np.testing.assert_allclose(grads["state0"][s], g_a["state0"][s], atol=1e-10)


@pytest.mark.parametrize("stem", sorted(CARRIED))
def test_splitting_a_sequence_anywhere_gives_the_unsplit_result(stem):
    mod = rnnspec.compile_file(SPECS / f"{stem}.rnn")
    T, B = 7, 3
    for padded, L in ((False, np.full(B, T)), (True, np.array([7, 4, 2]))):
        params, inputs, targets, state0, up = random_problem(
            mod, T=T, batch=B, seed=2, lengths=L if padded else None)
        for k in range(1, T):
            _split(mod, CARRIED[stem], params, inputs, targets, state0, up, T, L, k, padded)


def test_a_state_read_d_steps_back_carries_d_steps():
    mod = rnnspec.compile_file(SPECS / "skip.rnn")
    assert mod.STATES["h"]["steps"] == 3
    params = mod.init_params(seed=0)
    x = np.random.default_rng(0).normal(size=(8, 2, 3))
    out, _ = mod.forward(params, {"x": x})
    assert out["final"]["h"].shape == (3, 2, 5)
    np.testing.assert_array_equal(out["final"]["h"], out["h"][-3:])  # oldest first
    with pytest.raises(ValueError, match=r"state0\['h'\] has shape \(2, 5\), expected "
                                         r"\(3, B, hidden\) = \(3, 2, 5\)"):
        mod.forward(params, {"x": x}, state0={"h": np.zeros((2, 5))})
    one = rnnspec.compile_file(SPECS / "elman.rnn")  # one step: (B, n), as before
    assert one.STATES["s"]["steps"] == 1
    out, _ = one.forward(one.init_params(), {"x": x})
    assert out["final"]["s"].shape == (2, 5)


BACKWARD_IN_TIME = """
dim n = 3
input x[t]: n
param W: (n, n)
param U: (n, n)
state g: n = zeros
g[t] = tanh(W @ g[t+2] + U @ x[t])
"""


def test_a_backward_in_time_state_carries_its_first_steps_to_the_piece_before():
    """final of a backward recurrence is its first d steps (1..d): the state0 of the piece
    before it, so a backward network splits exactly when the later piece runs first."""
    mod = rnnspec.compile_source(BACKWARD_IN_TIME)
    assert mod.STATES["g"]["steps"] == 2
    params = mod.init_params(seed=1)
    params["W"] = params["W"] + 0.5
    x = np.random.default_rng(3).normal(size=(6, 2, 3))
    out, _ = mod.forward(params, {"x": x})
    np.testing.assert_array_equal(out["final"]["g"], out["g"][:2])
    for k in range(1, 6):
        later, _ = mod.forward(params, {"x": x[k:]})
        earlier, _ = mod.forward(params, {"x": x[:k]}, state0=later["final"])
        np.testing.assert_allclose(np.concatenate([earlier["g"], later["g"]]), out["g"],
                                   atol=1e-12)
    assert rnnspec.gradcheck(mod).ok


NESTED = """
dim v = 3
dim n = 2
input word[w in s]: v
param W: (n, n)
param U: (n, v)
state h: n = zeros
state g: n = zeros
h[w] = tanh(W @ h[w-2] + U @ word[w])
sv[s] = h[end]
g[s] = tanh(W @ g[s-2] + sv[s])
"""


def test_nested_axes_carry_the_outer_states_and_keep_the_inner_ones_per_sentence():
    """States over w are one per sentence ((d, T_s, B, n) for d carried steps) and are not
    carried between pieces of a document; the states over s are."""
    mod = rnnspec.compile_source(NESTED)
    assert mod.STATES["h"]["steps"] == mod.STATES["g"]["steps"] == 2
    params = mod.init_params(seed=0)
    word = np.random.default_rng(0).normal(size=(4, 5, 2, 3))
    out, _ = mod.forward(params, {"word": word})
    assert out["final"]["h"].shape == (2, 5, 2, 2) and out["final"]["g"].shape == (2, 2, 2)
    for k in range(1, 5):
        a, _ = mod.forward(params, {"word": word[:, :k]})
        b, _ = mod.forward(params, {"word": word[:, k:]}, state0={"g": a["final"]["g"]})
        np.testing.assert_allclose(np.concatenate([a["g"], b["g"]]), out["g"], atol=1e-12)
        np.testing.assert_allclose(b["final"]["g"], out["final"]["g"], atol=1e-12)
    lengths = {"s": np.array([3, 2]), "w": np.array([[4, 2], [1, 3], [2, 0]])}
    for kw in ({}, {"lengths": lengths}):
        report = rnnspec.gradcheck(mod, T={"s": 3, "w": 4}, batch=2, **kw)
        assert report.ok, report.table()


# ---- 4. generate() and the start class -----------------------------------------------------------
def test_generate_feeds_the_declared_start_class_like_teacher_mode():
    text = (SPECS / "generate.rnn").read_text().replace("class(vocab) = 0", "class(vocab) = 2")
    mod = rnnspec.compile_source(text)
    params = mod.init_params(seed=0)
    teacher, _ = mod.forward(params, {}, {"y": np.zeros((3, 2), int)})
    np.testing.assert_array_equal(teacher["fb"][0].argmax(-1), [2, 2])
    for greedy in (True, False):
        _, _, out = mod.generate(params, T=3, batch=2, greedy=greedy)
        np.testing.assert_array_equal(out["fb"][0], np.eye(5)[[2, 2]])
    seed = np.eye(5)[[4, 1]]  # a seed in state0 still chooses the first class
    _, _, out = mod.generate(params, T=3, state0={"o": seed})
    np.testing.assert_array_equal(out["fb"][0], seed)


# ---- 5. minimum lengths ----------------------------------------------------------------------------
AT3 = """
dim n = 3
input x[t]: n
target y[t]: class(n)
param W: (n, n)
state h: n = zeros
h[t] = tanh(W @ h[t-1] + x[t])
o[t] = softmax(h[t])
loss = cross_entropy(o[t], y[t]) at t = 3
"""


def test_a_padded_row_shorter_than_a_selected_step_is_refused_like_a_sequence_alone():
    mod = rnnspec.compile_source(AT3)
    params = mod.init_params()
    x, y = np.zeros((4, 2, 3)), np.zeros((4, 2), int)
    with pytest.raises(ValueError, match=r"this network needs at least 3 steps t, got T=2"):
        mod.forward(params, {"x": x[:2, 1:]}, {"y": y[:2, 1:]})
    with pytest.raises(ValueError, match=r"lengths\[1\] = 2: this network needs at least 3 "
                                         r"steps t in every sequence"):
        mod.forward(params, {"x": x}, {"y": y}, lengths=np.array([4, 2]))
    with pytest.raises(ValueError, match=r"lengths\[1\] = 2"):  # without targets too, as alone
        mod.forward(params, {"x": x}, lengths=np.array([4, 2]))
    out, _ = mod.forward(params, {"x": x}, {"y": y}, lengths=np.array([4, 3]))
    assert out["loss"] > 0


def test_zero_steps_only_for_padding_sentences():
    """A sequence has at least one step on every axis: 0 is refused on the main axis, and for
    a real sentence; it is allowed only for the padding sentences past a document's end."""
    elman = rnnspec.compile_file(SPECS / "elman.rnn")
    with pytest.raises(ValueError, match="lengths must be between 1 and T"):
        elman.forward(elman.init_params(), {"x": np.zeros((3, 2, 3))}, lengths=np.array([3, 0]))
    h = rnnspec.compile_file(SPECS / "hierarchical.rnn")
    params = h.init_params()
    word = np.zeros((4, 3, 2, 6))
    ok = {"s": np.array([3, 2]), "w": np.array([[4, 2], [1, 3], [2, 0]])}
    h.forward(params, {"word": word}, lengths=ok)
    bad = {"s": np.array([3, 2]), "w": np.array([[4, 2], [1, 0], [2, 0]])}
    with pytest.raises(ValueError, match="0 is allowed only for steps s past"):
        h.forward(params, {"word": word}, lengths=bad)
