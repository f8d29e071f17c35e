"""Text from a trained language model (rnnspec.sampling, rnnspec sample --run): the tokens drawn
one step at a time agree with the whole-sequence forward of the same tokens."""
import numpy as np
import pytest

import rnnspec
from rnnspec.cli import main
from rnnspec.data import Vocab
from rnnspec.sampling import model_names, sample_text

from conftest import SPECS

VOCAB = Vocab.build("abcdefg")


@pytest.fixture(scope="module")
def lm():
    mod = rnnspec.compile_file(SPECS / "char_lm.rnn")
    return mod, mod.init_params(None, seed=3)


def test_greedy_text_is_the_argmax_of_the_whole_run(lm):
    """Greedy: every token after the prime is the most likely one under the forward pass of the
    whole sequence so far (the step-by-step run with carried states is the whole run)."""
    mod, p = lm
    text = sample_text(mod, p, VOCAB, 25, prime="abc", greedy=True)
    assert text.startswith("abc") and len(text) == 28
    ids = VOCAB.encode(text)
    out, _ = mod.forward(p, {"x": ids[:-1, None]})
    assert np.array_equal(np.argmax(out["o"][:, 0], axis=-1)[2:], ids[3:])


def test_sampling_is_seeded_and_follows_temperature(lm):
    mod, p = lm
    a = sample_text(mod, p, VOCAB, 200, prime="ab", seed=5)
    assert a == sample_text(mod, p, VOCAB, 200, prime="ab", seed=5)
    assert a != sample_text(mod, p, VOCAB, 200, prime="ab", seed=6)
    cold = sample_text(mod, p, VOCAB, 200, prime="ab", seed=5, temperature=1e-6)
    assert cold == sample_text(mod, p, VOCAB, 200, prime="ab", greedy=True)  # (the argmax)
    assert set(a) <= set("abcdefg")


def test_sampling_refusals(lm):
    mod, p = lm
    assert model_names(mod) == ("x", "o")
    with pytest.raises(ValueError, match="length must be a positive"):
        sample_text(mod, p, VOCAB, 0)
    with pytest.raises(ValueError, match="temperature must be a positive"):
        sample_text(mod, p, VOCAB, 5, temperature=0.0)
    with pytest.raises(ValueError, match="the vocabulary has 3"):
        sample_text(mod, p, Vocab.build("abc"), 5)
    with pytest.raises(ValueError, match="one input, of class indices"):
        model_names(rnnspec.compile_file(SPECS / "elman.rnn"))


def test_cli_samples_a_trained_run(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 40)
    run = tmp_path / "run"
    assert main(["train", str(SPECS / "char_lm.rnn"), "--data", f"text:{text}", "--steps", "20",
                 "--batch", "4", "--truncate", "10", "--lr", "0.02", "--out", str(run),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sample", str(SPECS / "char_lm.rnn"), "--run", str(run), "--T", "40",
                 "--prime", "the ", "--sample", "--seed", "2"]) == 0
    out = capsys.readouterr().out.rstrip("\n")
    assert out.startswith("the ") and len(out) == 44 and set(out) <= set("the cat sat on mat.")
    assert main(["sample", str(SPECS / "char_lm.rnn"), "--run", str(tmp_path)]) == 2
    assert "no vocab.json there" in capsys.readouterr().err
    assert main(["sample", str(SPECS / "elman.rnn"), "--run", str(run)]) == 2
    assert "one input, of class indices" in capsys.readouterr().err
