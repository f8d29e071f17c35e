"""Training data for generated modules: tasks that ship, text, and a user's arrays.

In: a task's name and a seed (the copy task, the adding problem, delayed XOR, delayed parity),
a text (the bundled sonnets or a user's file, characters or whitespace tokens), or a user's
``.npz`` keyed by a spec's input and target names.  Out: a :class:`Dataset`, arrays laid out as
a generated module takes them (sequences ``(T, N, n)`` time-major, class indices ``(T, N)``,
static arrays ``(N, n)`` / ``(N,)``), that a training loop asks for :class:`Batch` es; or, for a
long text, :class:`TextData`, whose ``chunks`` cut the token stream into B parallel streams of
T steps for stateful truncated BPTT.

Class-valued inputs (the characters of a text, the copy task's symbols) are kept as token ids;
a batch gives them one-hot as float vectors (``batch.inputs``, for ``input x[t]: V``) and as
the ids (``batch.tokens``, for class-index inputs ``input x[t]: class(V)``);
``batch.inputs_for(module)`` picks by the module's ``INPUTS`` table.  ``Dataset.check(module)``
compares the data's names, kinds and sizes with the module's ``INPUTS``/``TARGETS`` and raises a
ValueError naming the first mismatch.  Everything random is drawn from ``np.random.default_rng``
of the seed given: the same seed, the same data, the same batches.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .runtime.validate import _size  # a size text ('in + hidden') for given dims


# ---- fields, batches and datasets

@dataclass(frozen=True)
class Field:
    """One named array of a dataset: ``kind`` is 'sequence' (time axis 0, batch axis 1) or
    'static' (batch axis 0); ``type`` is 'real' (float vectors of ``size`` features) or 'class'
    (integer ids in ``range(size)``)."""
    kind: str
    type: str
    size: int

    def ndim(self) -> int:
        return (2 if self.kind == "sequence" else 1) + (self.type == "real")

    def describe(self) -> str:
        shape = "(T, N" if self.kind == "sequence" else "(N"
        return f"{shape}, {self.size})" if self.type == "real" else \
            f"{shape}) class ids in range({self.size})"


def onehot(ids: np.ndarray, size: int) -> np.ndarray:
    """Class ids of any shape -> float64 one-hot vectors, shape ``ids.shape + (size,)``."""
    out = np.zeros(ids.shape + (size,))
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


@dataclass
class Batch:
    """The arrays of one batch, as a generated module's ``forward`` takes them.

    ``inputs``: every input as floats (class-valued ones one-hot); ``tokens``: the class-valued
    inputs as ids; ``targets``: real arrays or class ids; ``lengths``: ``(B,)`` or None."""
    inputs: Dict[str, np.ndarray]
    tokens: Dict[str, np.ndarray]
    targets: Dict[str, np.ndarray]
    lengths: Optional[np.ndarray]
    size: int  # B, the number of sequences

    def inputs_for(self, module) -> Dict[str, np.ndarray]:
        """The inputs as ``module`` declares them: ids for a class-index input (``INPUTS[name]
        ['type'] == 'class'``), float vectors otherwise."""
        return {n: self.tokens[n] if module.INPUTS.get(n, {}).get("type") == "class"
                and n in self.tokens else a for n, a in self.inputs.items()}


class Dataset:
    """N sequences (or sequence pairs) with named inputs and targets.

    ``arrays``: name -> array laid out as its :class:`Field` in ``fields`` says (class-valued
    inputs as ids); ``inputs``/``targets``: which names are which; ``lengths``: ``(N,)`` steps
    of each sequence, or None when all have every step; ``vocab``: the :class:`Vocab` of a text.
    A wrong array is a ValueError naming it and the shape expected."""

    def __init__(self, arrays: Mapping[str, np.ndarray], fields: Mapping[str, Field],
                 inputs: Sequence[str], targets: Sequence[str],
                 lengths: Optional[np.ndarray] = None, vocab: Optional["Vocab"] = None,
                 name: str = "data"):
        self.arrays = {n: np.asarray(arrays[n]) for n in list(inputs) + list(targets)}
        self.fields = dict(fields)
        self.inputs, self.targets = tuple(inputs), tuple(targets)
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.vocab, self.name = vocab, name
        self.n = _validate(self.arrays, self.fields, self.lengths, name)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}: {self.fields[n].describe()}" for n in self.arrays)
        return f"Dataset({self.name!r}, N={self.n}, {fields})"

    def take(self, index) -> "Dataset":
        """The sequences ``index`` (an index array or slice), in that order."""
        arrays = {n: a[:, index] if self.fields[n].kind == "sequence" else a[index]
                  for n, a in self.arrays.items()}
        lengths = None if self.lengths is None else self.lengths[index]
        return Dataset(arrays, self.fields, self.inputs, self.targets, lengths, self.vocab,
                       self.name)

    def split(self, valid_fraction: float = 0.1, seed: int = 0) -> Tuple["Dataset", "Dataset"]:
        """(train, validation): the sequences dealt by a permutation of ``seed``, round(N *
        valid_fraction) of them (at least one) to validation, the rest to training; disjoint,
        together every sequence once, each part in its original order."""
        if not 0 < valid_fraction < 1:
            raise ValueError(f"valid_fraction = {valid_fraction}: give a fraction in (0, 1)")
        n_valid = max(1, int(round(self.n * valid_fraction)))
        if n_valid >= self.n:
            raise ValueError(f"{self.name}: {self.n} sequence(s) cannot be split into a training "
                             f"and a validation part (valid_fraction = {valid_fraction})")
        order = np.random.default_rng(seed).permutation(self.n)
        return self.take(np.sort(order[n_valid:])), self.take(np.sort(order[:n_valid]))

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                drop_last: bool = True) -> Iterator[Batch]:
        """One epoch of batches of ``batch_size`` sequences.  With ``shuffle`` the order is a
        permutation drawn from ``(seed, epoch)``, so epoch e is the same whether or not the epochs
        before it ran (a resumed run sees the same batches).  The last, short batch is dropped
        (``drop_last=True``, every batch has exactly ``batch_size`` sequences) or given as it is
        with fewer sequences (``drop_last=False``: for evaluation, every sequence once); batches
        are never padded with made-up sequences."""
        _at_least_one("batch_size", batch_size)
        order = np.random.default_rng([seed, epoch]).permutation(self.n) if shuffle \
            else np.arange(self.n)
        stop = self.n - self.n % batch_size if drop_last else self.n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size])

    def batch(self, index=slice(None)) -> Batch:
        """The sequences ``index`` (default: all of them) as one batch."""
        part = self.take(index)
        inputs, tokens = {}, {}
        for n in self.inputs:
            f, a = self.fields[n], part.arrays[n]
            if f.type == "class":
                tokens[n], inputs[n] = a, onehot(a, f.size)
            else:
                inputs[n] = a
        targets = {n: part.arrays[n] for n in self.targets}
        return Batch(inputs, tokens, targets, part.lengths, part.n)

    def check(self, module, dims: Optional[Mapping[str, int]] = None) -> None:
        """Raise a ValueError unless the data fits ``module``: the same input and target names,
        the same kind (per step or per sequence), type (class or real) and size, with
        ``module.DIMS`` updated by ``dims``."""
        check_fields(module, self.fields, self.inputs, self.targets, dims)


def _at_least_one(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} = {value!r}: give an integer of at least 1")


def _validate(arrays: Dict[str, np.ndarray], fields: Mapping[str, Field],
              lengths: Optional[np.ndarray], name: str) -> int:
    """Check every array against its field; return N, the number of sequences."""
    n = None
    for key, a in arrays.items():
        f = fields[key]
        if a.ndim != f.ndim() or (f.type == "real" and a.shape[-1] != f.size):
            raise ValueError(f"{name}: array {key!r} has shape {a.shape}; expected "
                             f"{f.describe()}")
        if f.type == "class":
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{name}: array {key!r} holds {a.dtype} values; class ids are "
                                 f"integers in range({f.size})")
            bad = (a < 0) | (a >= f.size)
            if bad.any():
                raise ValueError(f"{name}: array {key!r} holds the class id {a[bad][0]} at "
                                 f"{tuple(int(i) for i in np.argwhere(bad)[0])}; ids are in "
                                 f"range({f.size})")
        b = a.shape[1] if f.kind == "sequence" else a.shape[0]
        if n is not None and b != n:
            raise ValueError(f"{name}: array {key!r} holds {b} sequences, the arrays before it "
                             f"{n}")
        n = b
    if lengths is not None:
        if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"{name}: lengths has shape {lengths.shape} ({lengths.dtype}); "
                             f"expected ({n},) integers")
    return int(n)


def check_fields(module, fields: Mapping[str, Field], inputs: Sequence[str],
                 targets: Sequence[str], dims: Optional[Mapping[str, int]] = None) -> None:
    """Compare data fields with a generated module's ``INPUTS`` and ``TARGETS`` tables; raise a
    ValueError naming the first missing or unknown name, or the name whose kind, type or size
    differs (with the dimension to set when the spec's size is one dimension)."""
    dims = {**module.DIMS, **(dims or {})}
    for what, table, names in (("input", module.INPUTS, inputs),
                               ("target", module.TARGETS, targets)):
        missing, unknown = sorted(set(table) - set(names)), sorted(set(names) - set(table))
        if missing or unknown:
            raise ValueError(f"the spec's {what}s are {sorted(table)}, the data's {sorted(names)}"
                             + (f": missing {missing}" if missing else "")
                             + (f"; not in the spec {unknown}" if unknown else ""))
        for n in names:
            _check_one(what, n, table[n], fields[n], dims)


def _check_one(what: str, name: str, info: Mapping, f: Field, dims: Mapping[str, int]) -> None:
    if info["kind"] != f.kind:
        raise ValueError(f"{what} {name!r}: the spec's is {info['kind']} (one per "
                         f"{'step' if info['kind'] == 'sequence' else 'sequence'}), the "
                         f"data's {f.kind}")
    spec_type = info.get("type", "real")
    if what == "target" and spec_type != f.type:
        raise ValueError(f"target {name!r}: the spec's is {spec_type}, the data's {f.type} "
                         f"({f.describe()})")
    size_text = info["size"]
    try:
        size = _size(size_text, dims)
    except KeyError as exc:
        raise ValueError(f"{what} {name!r}: the spec's size {size_text} needs the dimension "
                         f"{exc.args[0]!r}") from None
    if size != f.size:
        hint = f" (set the dimension: {size_text}={f.size})" if size_text.isidentifier() else ""
        raise ValueError(f"{what} {name!r}: the data's size is {f.size}, the spec's "
                         f"{size_text} = {size}{hint}")


# ---- tasks, generated from a seed

def _real_seq(size: int) -> Field:
    return Field("sequence", "real", size)


def _two_marks(rng, T: int, n: int) -> np.ndarray:
    """``(T, n)`` markers: 1 at one step drawn in the first half (``t < T // 2``) and one in the
    second half of each sequence, 0 elsewhere."""
    marks = np.zeros((T, n))
    marks[rng.integers(0, T // 2, n), np.arange(n)] = 1.0
    marks[rng.integers(T // 2, T, n), np.arange(n)] = 1.0
    return marks


def adding_problem(n: int, T: int = 100, seed: int = 0, input_name: str = "x",
                   target_name: str = "y") -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997, "Long short-term memory", Neural
    Computation 9(8), experiment 4), in the form used since Le, Jaitly & Hinton 2015 and Arjovsky,
    Shah & Bengio 2016: each step's input is two numbers, a value drawn uniformly from [0, 1) and
    a marker, 1 at exactly two steps (one drawn in the first half, ``t < T // 2``, one in the
    second) and 0 elsewhere; the target is the sum of the two marked values, given once per
    sequence: a static real target of size 1, for a spec reading ``h[end]`` with
    ``loss = squared_error(o, y)`` (the loss at the last step).  Predicting 1 always gives a mean
    squared error of 1/6, the baseline to beat.  ``x``: ``(T, n, 2)``, ``y``: ``(n, 1)``."""
    if T < 2:
        raise ValueError(f"T = {T}: the adding problem needs at least 2 steps")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (T, n))
    marks = _two_marks(rng, T, n)
    y = (values * marks).sum(axis=0)[:, None]
    return Dataset({input_name: np.stack([values, marks], axis=-1), target_name: y},
                   {input_name: _real_seq(2), target_name: Field("static", "real", 1)},
                   [input_name], [target_name], name=f"adding(T={T})")


def copy_task(n: int, delay: int = 10, length: int = 10, symbols: int = 8, seed: int = 0,
              input_name: str = "x", target_name: str = "y") -> Dataset:
    """The copy task (the memory problem of Hochreiter & Schmidhuber 1997, in the form of
    Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural networks", 4.1):
    ``length`` symbols drawn from 1..``symbols``, then ``delay - 1`` blanks (0), a marker
    (``symbols + 1``) and ``length`` blanks; ``delay + 2*length`` steps.  The target is blank
    (0) for the first ``delay + length`` steps and the ``length`` symbols, in order, after the
    marker.  Input: ``symbols + 2`` classes (given one-hot and as ids); target: class ids over
    ``symbols + 1`` classes at every step.  Always predicting blank scores a cross-entropy of
    ``length * log(symbols) / (delay + 2*length)`` per step, the baseline to beat."""
    if delay < 1 or length < 1 or symbols < 1:
        raise ValueError(f"copy task: delay = {delay}, length = {length}, symbols = {symbols}; "
                         f"each must be at least 1")
    rng = np.random.default_rng(seed)
    steps = delay + 2 * length
    seq = rng.integers(1, symbols + 1, (length, n))
    x = np.zeros((steps, n), dtype=np.int64)
    y = np.zeros((steps, n), dtype=np.int64)
    x[:length] = seq
    x[length + delay - 1] = symbols + 1
    y[length + delay:] = seq
    return Dataset({input_name: x, target_name: y},
                   {input_name: Field("sequence", "class", symbols + 2),
                    target_name: Field("sequence", "class", symbols + 1)},
                   [input_name], [target_name], name=f"copy(delay={delay})")


def delayed_xor(n: int, T: int = 50, seed: int = 0, input_name: str = "x",
                target_name: str = "y") -> Dataset:
    """The XOR problem of Martens & Sutskever 2011 ("Learning recurrent neural networks with
    Hessian-free optimization", after Hochreiter & Schmidhuber 1997): the adding problem with
    bits: each step's input is a random bit (0 or 1) and a marker, 1 at two steps (one in each
    half); the target, one class per sequence, is the XOR of the two marked bits (2 classes).
    ``x``: ``(T, n, 2)``, ``y``: ``(n,)``; chance is a cross-entropy of log 2."""
    if T < 2:
        raise ValueError(f"T = {T}: delayed XOR needs at least 2 steps")
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (T, n))
    marks = _two_marks(rng, T, n)
    y = (bits * marks).sum(axis=0).astype(np.int64) % 2
    return Dataset({input_name: np.stack([bits.astype(float), marks], axis=-1), target_name: y},
                   {input_name: _real_seq(2), target_name: Field("static", "class", 2)},
                   [input_name], [target_name], name=f"xor(T={T})")


def delayed_parity(n: int, T: int = 50, delay: int = 5, window: int = 2, seed: int = 0,
                   input_name: str = "x", target_name: str = "y") -> Dataset:
    """Delayed parity: a random bit b[t] at every step (2 classes, one-hot and ids); the target
    at step t is the parity (XOR) of the ``window`` bits seen ``delay`` steps ago,
    ``b[t-delay-window+1] ^ ... ^ b[t-delay]`` (steps before the first count as 0): with
    ``window = 1`` the bit of ``delay`` steps ago (a delayed recall), with ``window = 2`` the
    delayed XOR of two neighbours; parity over a window is the long-dependency benchmark of
    Bengio, Simard & Frasconi 1994 and Hochreiter & Schmidhuber 1997.  Every step needs all
    ``window`` bits, so nothing short of remembering them beats chance (log 2 per step)."""
    if delay < 0 or window < 1:
        raise ValueError(f"delayed parity: delay = {delay}, window = {window}; give delay >= 0 "
                         f"and window >= 1")
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (T, n))
    ones = np.concatenate([np.zeros((delay + window, n), dtype=np.int64), np.cumsum(bits, 0)])
    # steps from 0: ones[k] counts the 1s of b[0 .. k - delay - window], so the 1s of the
    # window b[t - delay - window + 1 .. t - delay] are ones[t + window] - ones[t]
    y = (ones[window:T + window] - ones[:T]) % 2
    return Dataset({input_name: bits, target_name: y},
                   {input_name: Field("sequence", "class", 2),
                    target_name: Field("sequence", "class", 2)},
                   [input_name], [target_name], name=f"parity(delay={delay}, window={window})")


TASKS = {"adding": adding_problem, "copy": copy_task, "xor": delayed_xor,
         "parity": delayed_parity}  # name -> the function generating the task


def task(name: str, n: int, seed: int = 0, **options) -> Dataset:
    """The task ``name`` (a key of :data:`TASKS`) with n sequences; ``options`` go to its
    function (``T=``, ``delay=``, ...)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {sorted(TASKS)}")
    return TASKS[name](n, seed=seed, **options)


# ---- text: vocabularies, the bundled text, streams for stateful truncated BPTT

VOCAB_FORMAT = "rnnspec-vocab"


class Vocab:
    """Tokens <-> ids.  ``level``: 'char' (every character a token) or 'word' (whitespace-
    separated tokens, decoded joined by single spaces).  ``unk``: the token that unknown tokens
    become (one of ``tokens``), or None: then encoding a token not in the vocabulary is a
    ValueError naming it.  Saved and loaded as JSON (``save``/``load``) with a run."""

    def __init__(self, tokens: Sequence[str], level: str = "char", unk: Optional[str] = None):
        if level not in ("char", "word"):
            raise ValueError(f"level = {level!r}: give 'char' or 'word'")
        self.tokens, self.level, self.unk = list(tokens), level, unk
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a vocabulary lists each token once")
        if unk is not None and unk not in self.index:
            raise ValueError(f"the unknown token {unk!r} is not in the vocabulary")

    @classmethod
    def build(cls, text: str, level: str = "char", unk: Optional[str] = None) -> "Vocab":
        """The tokens of ``text``, sorted (plus ``unk`` first when given)."""
        tokens = sorted(set(split_tokens(text, level)) - {unk})
        return cls(([unk] if unk is not None else []) + tokens, level, unk)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and (self.tokens, self.level, self.unk) == \
            (other.tokens, other.level, other.unk)

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text``'s tokens, int64."""
        toks = split_tokens(text, self.level)
        fallback = None if self.unk is None else self.index[self.unk]
        ids = [self.index.get(t, fallback) for t in toks]
        if fallback is None and None in ids:
            unknown = sorted({t for t, i in zip(toks, ids) if i is None})
            raise ValueError(f"{len(unknown)} token(s) not in the vocabulary, e.g. "
                             f"{unknown[:5]}; build the vocabulary with unk= to map them to one "
                             f"token")
        return np.array(ids, dtype=np.int64)

    def decode(self, ids) -> str:
        """The text of ``ids``."""
        return ("" if self.level == "char" else " ").join(self.tokens[int(i)] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"format": VOCAB_FORMAT, "version": 1, "level": self.level,
                           "unk": self.unk, "tokens": self.tokens}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("format") != VOCAB_FORMAT or \
                not isinstance(d.get("tokens"), list):
            raise ValueError(f"not an rnnspec vocabulary (no \"format\": \"{VOCAB_FORMAT}\" "
                             f"with a list of \"tokens\")")
        return cls(d["tokens"], d.get("level", "char"), d.get("unk"))

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> "Vocab":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())


def split_tokens(text: str, level: str) -> List[str]:
    """Characters, or whitespace-separated tokens."""
    return list(text) if level == "char" else text.split()


BUNDLED = {"sonnets": "sonnets.txt"}  # name -> file under rnnspec/datasets/


def bundled_text(name: str = "sonnets") -> str:
    """A text that ships with rnnspec (no download), read through importlib.resources (so from
    an installed wheel as well): 'sonnets', 33 of Shakespeare's sonnets, the 1609 Quarto's text
    (public domain) in the modernized spelling of common editions, written out for rnnspec
    from memory (a word or a mark may differ from any one edition), 20 KB."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled text {name!r}; there is {sorted(BUNDLED)}")
    return resources.files("rnnspec").joinpath("datasets", BUNDLED[name]).read_text("utf-8")


def cut_streams(ids: np.ndarray, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A token stream cut into ``batch_size`` parallel streams for next-token prediction:
    ``(inputs, targets)``, both ``(L, B)`` with ``L = (len(ids) - 1) // B``; stream b is the
    consecutive piece ``ids[b*L : (b+1)*L]`` and its targets the tokens after each,
    ``ids[b*L + 1 : (b+1)*L + 1]``.  The last ``len(ids) - 1 - B*L`` tokens are left out."""
    L = (len(ids) - 1) // batch_size if batch_size >= 1 else 0
    if L < 1:
        raise ValueError(f"{len(ids)} tokens cannot be cut into {batch_size} streams of at least "
                         f"one step")
    starts = np.arange(batch_size) * L
    rows = starts[None, :] + np.arange(L)[:, None]
    return ids[rows], ids[rows + 1]


class TextData:
    """A text as one stream of token ids, for a language model with an input ``input_name``
    (a token each step) and a class target ``target_name`` (the next token).

    The validation part is the text's last ``valid_fraction`` of tokens (a contiguous tail:
    cutting a text at random places would break the stream apart); ``vocab`` is built from the
    whole text unless one is given (a run saves it, ``vocab.save``)."""

    def __init__(self, text: str, level: str = "char", valid_fraction: float = 0.1,
                 vocab: Optional[Vocab] = None, unk: Optional[str] = None,
                 input_name: str = "x", target_name: str = "y", name: str = "text"):
        self.vocab = vocab or Vocab.build(text, level, unk)
        ids = self.vocab.encode(text)
        n_valid = int(round(len(ids) * valid_fraction))
        if not 0 <= valid_fraction < 1 or len(ids) - n_valid < 2 or 0 < n_valid < 2:
            raise ValueError(f"{name}: {len(ids)} tokens with valid_fraction = {valid_fraction}: "
                             f"each part needs at least 2 tokens")
        self.train, self.valid = ids[:len(ids) - n_valid], ids[len(ids) - n_valid:]
        self.names, self.name = (input_name, target_name), name

    @classmethod
    def from_file(cls, path, **options) -> "TextData":
        """A UTF-8 text file; ``options`` as for the constructor."""
        with open(path, encoding="utf-8") as f:
            return cls(f.read(), name=str(path), **options)

    @classmethod
    def bundled(cls, name: str = "sonnets", **options) -> "TextData":
        return cls(bundled_text(name), name=name, **options)

    def _ids(self, part: str) -> np.ndarray:
        if part not in ("train", "valid"):
            raise ValueError(f"part = {part!r}: give 'train' or 'valid'")
        return self.train if part == "train" else self.valid

    def fields(self) -> Dict[str, Field]:
        x, y = self.names
        return {x: Field("sequence", "class", len(self.vocab)),
                y: Field("sequence", "class", len(self.vocab))}

    def chunks(self, batch_size: int, steps: int, part: str = "train") -> Iterator[Batch]:
        """The stream cut into ``batch_size`` streams (:func:`cut_streams`), then into chunks
        of ``steps`` steps, in order: chunk k of stream b continues chunk k-1 of stream b, so a
        training loop carries the final states of one chunk into the next (stateful truncated
        BPTT) and resets them at the first.  The last chunk has the ``L % steps`` steps left
        when ``steps`` does not divide ``L`` (nothing is padded or dropped)."""
        _at_least_one("steps", steps)
        x, y = cut_streams(self._ids(part), batch_size)
        xn, yn = self.names
        for start in range(0, len(x), steps):
            xs = x[start:start + steps]
            yield Batch({xn: onehot(xs, len(self.vocab))}, {xn: xs},
                        {yn: y[start:start + steps]}, None, batch_size)

    def sequences(self, steps: int, part: str = "train") -> Dataset:
        """The stream as independent sequences of ``steps`` steps (consecutive, not
        overlapping, the tail shorter than ``steps`` left out), for shuffled stateless
        training: a :class:`Dataset` whose sequence j reads tokens ``j*steps ..`` and predicts
        the tokens one after them."""
        _at_least_one("steps", steps)
        ids = self._ids(part)
        n = (len(ids) - 1) // steps
        if n < 1:
            raise ValueError(f"{self.name}: {len(ids)} {part} tokens hold no sequence of "
                             f"{steps} steps")
        rows = np.arange(steps)[:, None] + steps * np.arange(n)[None, :]
        x, y = self.names
        return Dataset({x: ids[rows], y: ids[rows + 1]}, self.fields(), [x], [y],
                       vocab=self.vocab, name=f"{self.name} ({part})")

    def check(self, module, dims: Optional[Mapping[str, int]] = None) -> None:
        """As :meth:`Dataset.check`."""
        check_fields(module, self.fields(), [self.names[0]], [self.names[1]], dims)


# ---- a user's arrays

def load_npz(path, module, valid_fraction: float = 0.1, seed: int = 0,
             dims: Optional[Mapping[str, int]] = None) -> Tuple[Dataset, Dataset]:
    """A user's ``.npz``, keyed by ``module``'s input and target names (and ``lengths``,
    optional, ``(N,)``), as (train, validation) :class:`Dataset` s split by sequences with
    ``seed`` (:meth:`Dataset.split`).  Sequence arrays are ``(T, N, ...)``, static ones
    ``(N, ...)``; class targets are integer ids.  A ValueError names a missing or unknown key,
    or an array whose shape, type or size does not fit the spec."""
    from .grads import split_data
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a NumPy .npz file ({exc})") from None
    inputs, targets, lengths, _ = split_data(module, arrays)
    dims = {**module.DIMS, **(dims or {})}
    fields = {}
    for table, group in ((module.INPUTS, inputs), (module.TARGETS, targets)):
        for n in group:
            info = table[n]
            if info["kind"] not in ("sequence", "static") or "within" in info:
                raise ValueError(f"{n!r}: {info['kind']} arrays are not supported as data yet")
            fields[n] = Field(info["kind"], info.get("type", "real"), _size(info["size"], dims))
    data = Dataset({**inputs, **targets}, fields, list(inputs), list(targets), lengths,
                   name=str(path))
    return data.split(valid_fraction, seed)
