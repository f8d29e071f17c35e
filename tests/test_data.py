"""rnnspec.data: the tasks by their definitions, determinism, batches, splits, text streams,
vocabularies, a user's .npz, matching a module's INPUTS/TARGETS, and the bundled text."""
import importlib.resources

import numpy as np
import pytest

import rnnspec
from rnnspec import data

LSTM_ADDING = """
dim in = 2
dim hidden = 4
input x[t]: in
target y: 1
state h: hidden = zeros
state C: hidden = zeros
f[t]: hidden = gate(x[t], h[t-1])
g[t]: hidden = gate(x[t], h[t-1])
q[t]: hidden = gate(x[t], h[t-1])
C[t] = f[t] * C[t-1] + g[t] * tanh(affine(x[t], h[t-1], name=c))
h[t] = tanh(C[t]) * q[t]
o = affine(h[end], size=1)
loss = squared_error(o, y)
"""


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name, options", [("adding", {"T": 12}), ("copy", {"delay": 5}),
                                           ("xor", {"T": 9}), ("parity", {"T": 11})])
def test_tasks_are_determined_by_the_seed(name, options):
    a, b = data.task(name, 20, seed=3, **options), data.task(name, 20, seed=3, **options)
    c = data.task(name, 20, seed=4, **options)
    assert same(a.arrays, b.arrays)
    assert not same(a.arrays, c.arrays)


def test_adding_targets_are_the_sum_of_the_two_marked_values():
    d = data.adding_problem(50, T=30, seed=1)
    x, y = d.arrays["x"], d.arrays["y"]
    assert x.shape == (30, 50, 2) and y.shape == (50, 1)
    for b in range(50):
        marked = [t for t in range(30) if x[t, b, 1] == 1.0]
        assert len(marked) == 2 and marked[0] < 15 <= marked[1]
        assert y[b, 0] == pytest.approx(x[marked[0], b, 0] + x[marked[1], b, 0], abs=1e-15)
        assert 0 <= x[:, b, 0].min() and x[:, b, 0].max() < 1


def test_copy_targets_repeat_the_symbols_after_the_marker():
    delay, length, symbols = 7, 4, 5
    d = data.copy_task(30, delay=delay, length=length, symbols=symbols, seed=2)
    x, y = d.arrays["x"], d.arrays["y"]
    assert x.shape == y.shape == (delay + 2 * length, 30)
    assert d.fields["x"].size == symbols + 2 and d.fields["y"].size == symbols + 1
    for b in range(30):
        seq = list(x[:length, b])
        assert all(1 <= s <= symbols for s in seq)
        marker = list(x[:, b]).index(symbols + 1)
        assert marker == length + delay - 1
        assert set(x[length:, b]) == {0, symbols + 1}
        assert list(y[marker + 1:, b]) == seq and not y[:marker + 1, b].any()


@pytest.mark.parametrize("delay, window", [(0, 1), (3, 1), (2, 2), (4, 3)])
def test_parity_targets_are_the_xor_of_the_window_seen_delay_steps_ago(delay, window):
    d = data.delayed_parity(8, T=15, delay=delay, window=window, seed=5)
    bits, y = d.arrays["x"], d.arrays["y"]
    for b in range(8):
        for t in range(15):
            seen = [bits[s, b] for s in range(t - delay - window + 1, t - delay + 1) if s >= 0]
            assert y[t, b] == sum(seen) % 2


def test_xor_targets_are_the_xor_of_the_two_marked_bits():
    d = data.delayed_xor(40, T=10, seed=6)
    x, y = d.arrays["x"], d.arrays["y"]
    for b in range(40):
        marked = np.flatnonzero(x[:, b, 1])
        assert len(marked) == 2
        assert y[b] == int(x[marked[0], b, 0]) ^ int(x[marked[1], b, 0])


def test_split_is_disjoint_and_complete_and_seeded():
    d = data.adding_problem(23, T=4, seed=0)
    train, valid = d.split(0.3, seed=9)
    assert (len(train), len(valid)) == (16, 7)
    rows = {tuple(d.arrays["x"][:, b].ravel()) for b in range(23)}
    got = [tuple(part.arrays["x"][:, b].ravel()) for part in (train, valid)
           for b in range(len(part))]
    assert len(got) == 23 and set(got) == rows
    assert same(d.split(0.3, seed=9)[1].arrays, valid.arrays)
    assert not same(d.split(0.3, seed=10)[1].arrays, valid.arrays)
    with pytest.raises(ValueError, match="valid_fraction"):
        d.split(1.0)


def test_batches_cover_an_epoch_once_seeded_per_epoch():
    d = data.adding_problem(10, T=3, seed=0)
    ids = {tuple(d.arrays["x"][:, b].ravel()): b for b in range(10)}
    assert len(ids) == 10

    def order(**options):
        return [[ids[tuple(batch.inputs["x"][:, b].ravel())] for b in range(batch.size)]
                for batch in d.batches(4, seed=1, **options)]
    full = order(drop_last=False)
    assert [len(b) for b in full] == [4, 4, 2]
    flat = sum(full, [])
    assert sorted(flat) == list(range(10)) and flat != list(range(10))
    assert order() == full[:2]                          # drop_last: the short batch dropped
    assert order(drop_last=False) == full                # the same seed and epoch: the same
    assert order(epoch=1, drop_last=False) != full       # another epoch: another order
    assert sum(order(shuffle=False, drop_last=False), []) == list(range(10))


def test_class_inputs_come_one_hot_and_as_ids():
    d = data.copy_task(5, delay=2, length=2, symbols=8, seed=0)
    batch = next(d.batches(4, seed=1))
    assert np.array_equal(batch.inputs["x"].argmax(-1), batch.tokens["x"])
    assert batch.inputs["x"].shape == (6, 4, 10) and batch.inputs["x"].sum() == 24


def test_a_task_batch_runs_through_a_matching_module():
    mod = rnnspec.compile_source(LSTM_ADDING)
    d = data.adding_problem(6, T=8, seed=0)
    d.check(mod)
    batch = next(d.batches(3))
    params = mod.init_params(seed=0)
    loss, grads = mod.loss_and_grad(params, batch.inputs_for(mod), batch.targets)
    outputs, _ = mod.forward(params, batch.inputs_for(mod), batch.targets)
    assert outputs["o"].shape == batch.targets["y"].shape == (3, 1)
    assert loss == pytest.approx(0.5 * ((outputs["o"] - batch.targets["y"]) ** 2).sum())
    assert set(grads["params"]) == set(params)


def test_check_names_the_mismatch():
    lstm = rnnspec.compile_file(str(rnnspec_path("lstm.rnn")))
    with pytest.raises(ValueError, match=r"input 'x': the data's size is 4, the spec's in = 3 "
                                         r"\(set the dimension: in=4\)"):
        data.copy_task(4, symbols=2, seed=0).check(lstm)
    data.copy_task(4, symbols=2, seed=0).check(lstm, dims={"in": 4, "out": 3})
    with pytest.raises(ValueError, match=r"target 'y': the data's size is 3, the spec's out = 4"):
        data.copy_task(4, symbols=2, seed=0).check(lstm, dims={"in": 4})
    with pytest.raises(ValueError, match=r"target 'y': the spec's is sequence \(one per step\), "
                                         r"the data's static"):
        data.adding_problem(3, T=4).check(lstm, dims={"in": 2})
    real = rnnspec.compile_source("input x[t]: 2\ntarget y[t]: 2\nstate h: 3 = zeros\n"
                                  "h[t] = tanh(affine(x[t], h[t-1]))\n"
                                  "o[t] = affine(h[t], size=2)\nloss = squared_error(o[t], y[t])")
    with pytest.raises(ValueError, match="target 'y': the spec's is real, the data's class"):
        data.delayed_parity(3, T=5).check(real)
    with pytest.raises(ValueError, match=r"the spec's inputs are \['x'\], the data's \['u'\]"):
        data.delayed_parity(3, T=5, input_name="u").check(lstm)


def rnnspec_path(name):
    from pathlib import Path
    return Path(__file__).resolve().parent.parent / "specs" / name


TEXT = "the cat sat on the mat; the dog sat on the log.\n" * 3


def test_stream_chunks_carry_each_stream_in_order():
    text = data.TextData(TEXT, valid_fraction=0.2)
    B, T = 3, 5
    chunks = list(text.chunks(B, T))
    L = (len(text.train) - 1) // B
    assert [c.tokens["x"].shape[0] for c in chunks] == [T] * (L // T) + ([L % T] if L % T else [])
    for b in range(B):      # stream b, chunk after chunk, is a consecutive piece of the text
        xs = np.concatenate([c.tokens["x"][:, b] for c in chunks])
        ys = np.concatenate([c.targets["y"][:, b] for c in chunks])
        assert text.vocab.decode(xs) == TEXT[b * L:(b + 1) * L]
        assert text.vocab.decode(ys) == TEXT[b * L + 1:(b + 1) * L + 1]
    streams = np.concatenate([np.concatenate([c.tokens["x"][:, b] for c in chunks])
                              for b in range(B)])
    assert text.vocab.decode(streams) == TEXT[:B * L]    # reassembled: the text's start
    assert text.vocab.decode(np.concatenate([text.train, text.valid])) == TEXT
    assert np.array_equal(chunks[0].inputs["x"].argmax(-1), chunks[0].tokens["x"])


def test_text_sequences_are_consecutive_windows():
    text = data.TextData(TEXT, level="word", valid_fraction=0.25)
    d = text.sequences(4)
    words = TEXT.split()
    n_train = len(text.train)
    assert len(d) == (n_train - 1) // 4
    for j in range(len(d)):
        assert text.vocab.decode(d.arrays["x"][:, j]) == " ".join(words[4 * j:4 * j + 4])
        assert text.vocab.decode(d.arrays["y"][:, j]) == " ".join(words[4 * j + 1:4 * j + 5])
    assert text.vocab.decode(text.valid) == " ".join(words[n_train:])


def test_vocabulary_round_trip_and_unknown_tokens(tmp_path):
    for level, unk in (("char", None), ("word", "<unk>")):
        v = data.Vocab.build(TEXT, level, unk=unk)
        v.save(tmp_path / "vocab.json")
        w = data.Vocab.load(tmp_path / "vocab.json")
        assert w == v and w.tokens == v.tokens and (w.level, w.unk) == (level, unk)
        assert np.array_equal(w.encode(TEXT), v.encode(TEXT))
    chars = data.Vocab.build("abc\u00e9")
    assert chars.decode(chars.encode("cab\u00e9")) == "cab\u00e9"
    with pytest.raises(ValueError, match=r"1 token\(s\) not in the vocabulary, e.g. \['z'\]"):
        chars.encode("abz")
    words = data.Vocab.build("a b c", "word", unk="<unk>")
    assert words.decode(words.encode("a zebra c")) == "a <unk> c"
    (tmp_path / "bad.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(ValueError, match="not an rnnspec vocabulary"):
        data.Vocab.load(tmp_path / "bad.json")


def test_text_file_with_a_saved_vocabulary(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    first = data.TextData.from_file(tmp_path / "t.txt", valid_fraction=0.1)
    first.vocab.save(tmp_path / "v.json")
    again = data.TextData.from_file(tmp_path / "t.txt", vocab=data.Vocab.load(tmp_path / "v.json"))
    assert np.array_equal(first.train, again.train)


def test_bundled_text_is_package_data():
    path = importlib.resources.files("rnnspec").joinpath("datasets", "sonnets.txt")
    assert path.is_file()
    text = data.bundled_text()
    assert text == path.read_text("utf-8") and "Shall I compare thee" in text
    assert 15_000 < len(text.encode()) < 100_000
    lm = data.TextData.bundled(valid_fraction=0.1)
    assert len(lm.vocab) == len(set(text)) and len(lm.valid) == round(0.1 * len(text))
    lstm = rnnspec.compile_file(str(rnnspec_path("lstm.rnn")))
    lm.check(lstm, dims={"in": len(lm.vocab), "out": len(lm.vocab)})


def test_npz_split_and_errors(tmp_path):
    lstm = rnnspec.compile_file(str(rnnspec_path("lstm.rnn")))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 10, 3)), rng.integers(0, 4, (6, 10))
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=np.arange(1, 11))
    train, valid = data.load_npz(tmp_path / "d.npz", lstm, valid_fraction=0.3, seed=1)
    assert (len(train), len(valid)) == (7, 3)
    got = sorted(list(train.lengths) + list(valid.lengths))
    assert got == list(range(1, 11))      # every sequence once (its length names it)
    for part in (train, valid):
        for j, n in enumerate(part.lengths):
            assert np.array_equal(part.arrays["x"][:, j], x[:, n - 1])
            assert np.array_equal(part.arrays["y"][:, j], y[:, n - 1])
    again = data.load_npz(tmp_path / "d.npz", lstm, valid_fraction=0.3, seed=1)[1]
    assert np.array_equal(again.lengths, valid.lengths)
    cases = [({"x": x, "y": y, "z": y}, r"unknown array\(s\) \['z'\]"),
             ({"x": x}, r"missing array\(s\) \['y'\]"),
             ({"x": x[..., :2], "y": y}, r"array 'x' has shape \(6, 10, 2\); expected \(T, N, 3\)"),
             ({"x": x, "y": y + 1}, r"array 'y' holds the class id 4 at"),
             ({"x": x, "y": y * 1.0}, r"array 'y' holds float64 values"),
             ({"x": x, "y": y[:, :9]}, r"array 'y' holds 9 sequences, the arrays before it 10")]
    for arrays, message in cases:
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(ValueError, match=message):
            data.load_npz(tmp_path / "bad.npz", lstm)
    (tmp_path / "not.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a NumPy .npz file"):
        data.load_npz(tmp_path / "not.npz", lstm)


def test_readme_data_example_prints_what_the_readme_shows(tmp_path, monkeypatch):
    import contextlib
    import io
    root = rnnspec_path("").parent
    section = (root / "README.md").read_text(encoding="utf-8").split("\n## Data\n")[1]
    code = section.split("```python\n")[1].split("```")[0]
    shown = section.split("```python\n")[1].split("```\n", 2)[2].split("```")[0]
    code = code.replace("/tmp/vocab.json", str(tmp_path / "vocab.json"))
    monkeypatch.chdir(root)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue() == shown
    assert data.Vocab.load(tmp_path / "vocab.json") == data.TextData.bundled().vocab


def test_sizes_below_one_are_refused():
    text = data.TextData(TEXT)
    for call, name in ((lambda: next(text.chunks(2, 0)), "steps = 0"),
                       (lambda: text.sequences(-1), "steps = -1"),
                       (lambda: next(text.chunks(0, 5)), "cannot be cut into 0 streams"),
                       (lambda: next(data.adding_problem(4, T=3).batches(0)), "batch_size = 0")):
        with pytest.raises(ValueError, match=name):
            call()
