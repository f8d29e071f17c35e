"""Nested time axes, ``[w in s]``: the words w of every sentence s (004 4.5.3).

The word level runs as one batch of T_s * B sentences; attention pooling with a shared query
(or ``h[end]``) gives one vector per sentence, a value over s.  Checked here: the hierarchical
attention network against a direct NumPy transcription of 4.5.3's equations, every sentence
against the same sentence run alone (the layout of (T_w, T_s, B) arrays), padded documents
(fewer sentences, shorter sentences, empty padding sentences) against each document run alone,
gradient checks with padding, a word-level loss, the metadata and positioned errors.
"""
import numpy as np
import pytest

import rnnspec
from conftest import SPECS
from rnnspec.gradcheck import gradcheck, random_problem

HAN = SPECS / "hierarchical.rnn"


@pytest.fixture(scope="module")
def han():
    return rnnspec.compile_file(HAN)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _gru(p, pre, xs, backward=False):
    """The GRU of the spec's blocks (004 4.3.2), prefix ``pre`` (e.g. 'hf'), over rows xs."""
    H = p[f"b_{pre}_z"].shape[0]
    h = np.zeros(H)
    out = [None] * len(xs)
    order = reversed(range(len(xs))) if backward else range(len(xs))
    rec = pre  # the recurrent weights are named after the state: W_<pre>_z_<pre>
    inp = "x" if f"W_{pre}_z_x" in p else "sv"  # the word level reads x[w], the sentence sv[s]
    for t in order:
        x = xs[t]
        z = _sigmoid(p[f"W_{pre}_z_{inp}"] @ x
                     + p[f"W_{pre}_z_{rec}"] @ h + p[f"b_{pre}_z"])
        r = _sigmoid(p[f"W_{pre}_r_{inp}"] @ x
                     + p[f"W_{pre}_r_{rec}"] @ h + p[f"b_{pre}_r"])
        c = np.tanh(p[f"W_{pre}_c_{inp}"] @ x
                    + p[f"W_{pre}_c_2"] @ (r * h) + p[f"b_{pre}_c"])
        h = z * h + (1 - z) * c
        out[t] = h
    return np.array(out)


def _pool(u, ctx, h):
    a = np.exp(u @ ctx - (u @ ctx).max())
    a = a / a.sum()
    return a @ h


def _han_reference(p, doc, y):
    """4.5.3 for one document: a list of sentences, each an array (words, vocab)."""
    svs = []
    for sent in doc:
        x = sent @ p["We"].T
        h = np.concatenate([_gru(p, "hf", x), _gru(p, "hb", x, backward=True)], axis=1)
        u = np.tanh(h @ p["W_word_att_h"].T + p["b_word_att"])
        svs.append(_pool(u, p["uw"], h))
    sv = np.array(svs)
    g = np.concatenate([_gru(p, "gf", sv), _gru(p, "gb", sv, backward=True)], axis=1)
    e = np.tanh(g @ p["W_sent_att_g"].T + p["b_sent_att"])
    v = _pool(e, p["us"], g)
    z = p["W_o_v"] @ v + p["b_o"]
    o = np.exp(z - z.max())
    o = o / o.sum()
    return o, -np.log(o[y])


def _documents(rng, n_sent, n_words, vocab):
    """Padded (T_w, T_s, B, vocab) words and the documents as lists of sentences."""
    T_s, T_w, B = max(n_sent), max(max(w) for w in n_words), len(n_sent)
    words = rng.normal(size=(T_w, T_s, B, vocab))
    lengths_w = np.zeros((T_s, B), dtype=int)
    docs = []
    for b in range(B):
        docs.append([words[:n_words[b][j], j, b] for j in range(n_sent[b])])
        lengths_w[:n_sent[b], b] = n_words[b]
    return words, {"s": np.array(n_sent), "w": lengths_w}, docs


def test_metadata_and_layout(han):
    assert han.NESTED == {"w": "s"}
    assert han.AXES == {"s": "T", "w": "T_w"}
    assert han.INPUTS["word"] == {"size": "vocab", "kind": "sequence", "axis": "w", "within": "s"}
    params = han.init_params(seed=1)
    words = np.random.default_rng(0).normal(size=(5, 3, 2, 6))  # (T_w, T_s, B, vocab)
    out, _ = han.forward(params, {"word": words}, {"y": np.array([0, 2])})
    assert out["h"].shape == (5, 3, 2, 6)  # word level: (T_w, T_s, B, 2 hidden)
    assert out["sv"].shape == (3, 2, 6) and out["g"].shape == (3, 2, 6)
    assert out["attention"]["sv"].shape == (3, 2, 5)  # each sentence's weights over its words
    np.testing.assert_allclose(out["attention"]["sv"].sum(-1), 1)
    assert out["final"]["hf"].shape == (3, 2, 3)  # one final word state per sentence


def test_han_equals_the_equations_of_4_5_3(han):
    rng = np.random.default_rng(3)
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in han.init_params(seed=2).items()}
    words, lengths, docs = _documents(rng, [3, 1, 2], [[4, 2, 5], [3], [1, 5]], 6)
    y = np.array([2, 0, 1])
    out, _ = han.forward(params, {"word": words}, {"y": y}, lengths=lengths)
    total = 0.0
    for b, doc in enumerate(docs):
        o, nll = _han_reference(params, doc, y[b])
        np.testing.assert_allclose(out["o"][b], o, rtol=1e-12, atol=1e-14)
        total += nll
    assert abs(out["loss"] - total) < 1e-11


def test_every_sentence_equals_that_sentence_alone(han):
    """Word-level values at [:, j, b] are sentence j of document b: the (T_w, T_s, B) layout."""
    rng = np.random.default_rng(4)
    params = han.init_params(seed=3)
    words = rng.normal(size=(4, 3, 2, 6))
    out, _ = han.forward(params, {"word": words})
    for j in range(3):
        for b in range(2):
            one, _ = han.forward(params, {"word": words[:, j:j + 1, b:b + 1]})
            for name in ("hf", "hb", "h", "u"):
                np.testing.assert_allclose(out[name][:, j, b], one[name][:, 0, 0], atol=1e-14)
            np.testing.assert_allclose(out["sv"][j, b], one["sv"][0, 0], atol=1e-14)


def test_padded_documents_equal_documents_one_by_one(han):
    rng = np.random.default_rng(5)
    params = han.init_params(seed=4)
    words, lengths, docs = _documents(rng, [2, 4, 1], [[3, 1], [2, 4, 4, 1], [2]], 6)
    y = np.array([1, 0, 2])
    _, _, _, _, up = random_problem(han, T={"s": 4, "w": 4}, batch=3, seed=6)
    up = {k: up[k] for k in ("g", "h")}
    lw = lengths["w"]
    up["h"] *= (np.arange(4)[:, None, None] < lw)[..., None]  # no upstream past the ends
    up["g"] *= (np.arange(4)[:, None] < lengths["s"])[..., None]
    out, cache = han.forward(params, {"word": words}, {"y": y}, lengths=lengths)
    grads = han.backward(params, cache, up)
    summed = {k: np.zeros_like(v) for k, v in params.items()}
    total = 0.0
    for b, doc in enumerate(docs):
        S, W = len(doc), max(len(s) for s in doc)
        xb = words[:W, :S, b:b + 1]
        lb = {"s": np.array([S]), "w": lw[:S, b:b + 1]}
        o1, c1 = han.forward(params, {"word": xb}, {"y": y[b:b + 1]}, lengths=lb)
        g1 = han.backward(params, c1, {"g": up["g"][:S, b:b + 1], "h": up["h"][:W, :S, b:b + 1]})
        total += o1["loss"]
        np.testing.assert_allclose(out["o"][b], o1["o"][0], atol=1e-13)
        np.testing.assert_allclose(out["sv"][:S, b], o1["sv"][:, 0], atol=1e-13)
        for j in range(S):
            n = lw[j, b]
            np.testing.assert_allclose(out["h"][:n, j, b], o1["h"][:n, j, 0], atol=1e-13)
            np.testing.assert_allclose(out["final"]["hf"][j, b], o1["final"]["hf"][j, 0],
                                       atol=1e-13)
        np.testing.assert_allclose(out["final"]["gf"][b], o1["final"]["gf"][0], atol=1e-13)
        dx = grads["inputs"]["word"]
        np.testing.assert_allclose(dx[:W, :S, b], g1["inputs"]["word"][:, :, 0], atol=1e-12)
        assert not dx[W:, :, b].any() and not dx[:, S:, b].any(), "gradient in padding"
        for j in range(S):
            assert not dx[lw[j, b]:, j, b].any(), f"gradient past the end of sentence {j}"
        for k in summed:
            summed[k] += g1["params"][k]
    assert abs(out["loss"] - total) < 1e-11
    for k in summed:
        np.testing.assert_allclose(grads["params"][k], summed[k], atol=1e-11, err_msg=k)


@pytest.mark.parametrize("T", [{"s": 1, "w": 1}, {"s": 4, "w": 2}, {"s": 2, "w": 6}])
def test_han_gradcheck_at_several_lengths(han, T):
    report = gradcheck(han, T=T, batch=2, seed=7)
    assert report.ok, report.table()


def test_han_gradcheck_padded(han):
    report = gradcheck(han, T={"s": 3, "w": 4}, batch=3, seed=8,
                       lengths={"s": np.array([3, 1, 2]),
                                "w": np.array([[4, 2, 1], [1, 0, 3], [3, 0, 0]])})
    assert report.ok, report.table()


WORD_LOSS = """
dim n = 3
dim hidden = 4
dim k = 2
input word[w in s]: n
target tag[w in s]: class(k)
target y: class(k)
state h: hidden = zeros
state g: hidden = zeros
h[w] = tanh(affine(word[w], h[w-1]))
p[w]: k = softmax(affine(h[w], name=tagger))
sv[s] = h[end]
g[s] = tanh(affine(sv[s], g[s-1]))
o: k = softmax(affine(g[end]))
loss = cross_entropy(o, y)
loss = cross_entropy(p[w], tag[w])
"""


def test_last_word_as_sentence_vector_and_a_word_level_loss():
    mod = rnnspec.compile_source(WORD_LOSS, name="tagger")
    lengths = {"s": np.array([3, 1]), "w": np.array([[4, 2], [1, 0], [3, 0]])}
    report = gradcheck(mod, T={"s": 3, "w": 4}, batch=2, seed=9, lengths=lengths)
    assert report.ok, report.table()
    rng = np.random.default_rng(1)
    params = mod.init_params(seed=1)
    words = rng.normal(size=(4, 3, 2, 3))
    tags = rng.integers(0, 2, (4, 3, 2))
    y = np.array([1, 0])
    out, _ = mod.forward(params, {"word": words}, {"tag": tags, "y": y}, lengths=lengths)
    # sv[s] = h[end]: each sentence's own last word
    for j in range(3):
        for b in range(2):
            n = max(lengths["w"][j, b], 1)
            np.testing.assert_allclose(out["sv"][j, b], out["h"][n - 1, j, b])
    # the loss counts the words of real sentences only, up to each sentence's length
    nll = -np.log(np.take_along_axis(out["p"], tags[..., None], -1)[..., 0])
    words_loss = sum(nll[:lengths["w"][j, b], j, b].sum() for j in range(3) for b in range(2)
                     if j < lengths["s"][b])
    doc_loss = -np.log(out["o"][np.arange(2), y]).sum()
    assert abs(out["loss"] - (words_loss + doc_loss)) < 1e-12


def test_bad_arrays_and_lengths(han):
    params = han.init_params()
    with pytest.raises(ValueError, match=r"inputs\['word'\] has shape \(4, 3, 6\), expected "
                                         r"\(T_w, T, B, vocab\)"):
        han.forward(params, {"word": np.zeros((4, 3, 6))})
    words = np.zeros((4, 3, 2, 6))
    with pytest.raises(ValueError, match=r"lengths\['w'\] has shape \(2,\), expected \(T, B\) = "
                                         r"\(3, 2\)"):
        han.forward(params, {"word": words}, lengths={"w": np.array([1, 2])})
    with pytest.raises(ValueError, match=r"0 is allowed only for steps s past"):
        han.forward(params, {"word": words}, lengths={"w": np.array([[1, 2], [0, 1], [1, 1]])})
    with pytest.raises(ValueError, match=r"lengths\['w'\] must be between 1 and T_w = 4"):
        han.forward(params, {"word": words}, lengths={"w": np.full((3, 2), 5)})
    # an empty sentence is fine past its document's end
    out, _ = han.forward(params, {"word": words}, lengths={"s": np.array([1, 3]),
                                                           "w": np.array([[1, 2], [0, 1], [0, 1]])})
    assert np.isfinite(out["v"]).all()
    with pytest.raises(ValueError, match=r"state0\['hf'\] has shape \(2, 3\), expected "
                                         r"\(T, B, hidden\) = \(3, 2, 3\)"):
        han.forward(params, {"word": words}, state0={"hf": np.zeros((2, 3))})


BASE = """
dim n = 3
input word[w in s]: n
input doc: n
param u: n
state h: n = zeros
"""


@pytest.mark.parametrize("body, message", [
    ("h[w] = tanh(word[w] + h[w-1])\nx[w in w] = h[w]\nv[s] = attend(u, h)\n",
     "axis 'w' cannot be inside itself"),
    ("h[w] = tanh(word[w] + h[w-1])\ninput c[k in w]: n\nv[s] = attend(u, h)\n",
     "would nest axes two levels deep"),
    ("h[w] = tanh(word[w] + h[w-1])\ninput c[w in t]: n\nv[s] = attend(u, h)\n",
     "axis 'w' is inside 's' (line 3), not 't'"),
    ("h[w] = tanh(word[w] + h[w-1] + doc)\nv[s] = attend(u, h)\n",
     "'doc' is one vector per sequence, but the steps w run inside every step s"),
    ("h[w] = tanh(word[w] + h[w-1])\nv = attend(u, h)\n",
     "attention over 'h', whose steps w run inside every step s"),
    ("h[w] = tanh(word[w] + h[w-1])\nv[s] = attend(doc, h)\n",
     "the query must be a parameter"),
    ("h[w] = tanh(word[w] + h[w-1])\nv = h[end]\n",
     "'h[end]' is a step w of every step s: one vector per step s"),
    ("h[w] = tanh(word[w] + h[w-1])\nv[w] = h[end]\n",
     "'h[end]' is a step w of every step s"),
    ("h[w] = tanh(word[w] + h[w-1])\nv[s] = h[w]\n",
     "'h[w]' runs over steps w, but 'v' is computed at each step s"),
    ("h[w] = tanh(word[w] + h[w-1])\nv[s] = attend(u, h)\ntarget y[s]: n\n"
     "loss = squared_error(h[w], y[s])\n",
     "h[w] is compared at every step, so the target must be a sequence indexed [w] (it runs "
     "over steps s)"),
])
def test_positioned_errors(body, message):
    with pytest.raises(rnnspec.SpecError) as exc:
        rnnspec.compile_source(BASE + body, name="bad")
    text = str(exc.value)
    assert message in text, text
    assert "bad.rnn:" in text and "^" in text and "hint:" in text


def test_nested_state_cannot_start_from_a_static_input():
    src = BASE.replace("state h: n = zeros", "state h: n = doc") + \
        "h[w] = tanh(word[w] + h[w-1])\nv[s] = attend(u, h)\n"
    with pytest.raises(rnnspec.SpecError, match="initial value of state 'h': 'doc' is one vector "
                                                "per sequence"):
        rnnspec.compile_source(src)


def test_cli_gradchecks_the_hierarchical_spec(tmp_path):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "rnnspec.cli", "gradcheck", str(HAN)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "PASSED" in run.stdout


def test_a_nested_spec_cannot_be_imported_as_a_one_axis_block(tmp_path):
    (tmp_path / "net.rnn").write_text(
        f'dim in = 6\ninput x[t]: in\nimport "{HAN}" as han(vocab = in) -> hf\n'
        f'h[t] = han(x[t])\n')
    with pytest.raises(rnnspec.SpecError, match=r"runs over several time axes \(s, w\)"):
        rnnspec.compile_file(tmp_path / "net.rnn")
