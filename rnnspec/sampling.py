"""Text from a trained language model: a spec that reads a class input ``x[t]`` and predicts the
next token with a softmax (``specs/char_lm.rnn``), run one step at a time, each step's input the
token drawn from the previous step's output.

In: a generated module, its parameters and the run's :class:`rnnspec.data.Vocab`.  Out:
:func:`sample_text` returns the text: the prime (fed first, to set the states) and ``length``
tokens drawn from the model (or the most likely ones with ``greedy``), with ``temperature``
sharpening (< 1) or flattening (> 1) the distribution.  It uses the module's own ``forward``
with ``T = 1`` and the final states carried as ``state0``: nothing else of the network is
assumed than its tables (the class input, and the prediction of its cross-entropy loss whose
classes are the input's).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def model_names(mod) -> Tuple[str, str]:
    """(the class input, the output it predicts): the one input of type class and the
    prediction of a cross-entropy loss over the same classes (a ValueError otherwise)."""
    inputs = [n for n, info in mod.INPUTS.items() if info.get("type") == "class"]
    if len(mod.INPUTS) != 1 or len(inputs) != 1:
        raise ValueError("sampling text needs a spec with one input, of class indices "
                         "(input x[t]: class(vocab)), fed with the token drawn at each step")
    x = inputs[0]
    size = mod.INPUTS[x]["size"]
    preds = [t["pred"] for t in getattr(mod, "LOSSES", ())
             if t["kind"] == "cross_entropy" and t["per"] == "step" and
             mod.TARGETS[t["target"]]["size"] == size]
    if not preds:
        raise ValueError(f"sampling text needs a cross-entropy loss predicting classes of "
                         f"{size} at every step (the next token)")
    return x, preds[0]


def sample_text(mod, params, vocab, length: int = 200, prime: str = "", seed: int = 0,
                temperature: float = 1.0, greedy: bool = False) -> str:
    """``prime`` followed by ``length`` tokens drawn from the model (see the module
    docstring); the first token is drawn from a uniform choice when there is no prime."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be a positive number of tokens, got {length!r}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    x, o = model_names(mod)
    dims = {k: np.asarray(params[p]).shape[i] for p, shape in mod.PARAMS.items()
            for i, k in enumerate(shape) if k in mod.DIMS}
    if dims.get(mod.INPUTS[x]["size"], len(vocab)) != len(vocab):
        raise ValueError(f"the parameters are for {dims[mod.INPUTS[x]['size']]} classes, the "
                         f"vocabulary has {len(vocab)}: use the run's vocab.json")
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(prime)) if prime else [int(rng.integers(len(vocab)))]
    state, probs = None, None
    for i in ids:
        probs, state = _step(mod, params, x, o, i, state)
    out = list(ids)
    for _ in range(length):
        if greedy:
            nxt = int(np.argmax(probs))
        else:
            logits = np.log(np.maximum(probs, 1e-300)) / temperature
            p = np.exp(logits - logits.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(nxt)
        probs, state = _step(mod, params, x, o, nxt, state)
    return vocab.decode(out)


def _step(mod, params, x: str, o: str, token: int, state):
    """One step from ``state`` reading ``token``: (the predicted distribution, the states)."""
    outputs, _ = mod.forward(params, {x: np.array([[token]])}, None, state, 1)
    return np.asarray(outputs[o])[0, 0], outputs["final"]
