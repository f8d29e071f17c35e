"""A grammar-aware mutator of spec texts, for fuzzing (tests/test_fuzz.py and benchmarks/fuzz.py).

:func:`mutate` applies one seeded random edit to a spec's text: delete, duplicate or swap tokens,
replace a name by another name of the file, by one of the generated module's own names or by a
Python keyword or builtin, change a time index, put an extreme number in place of a number,
drop, duplicate or swap lines, splice lines of another spec in, insert junk characters, truncate,
or replace a word by another word of the language (from the grammar's literals).  It is pure:
the same text, donor texts and ``random.Random`` state give the same mutant.
"""
from __future__ import annotations

import builtins
import functools
import io
import keyword
import random
import re
import tokenize
from typing import List, Sequence

from .parse import grammar_path

TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|#[^\n]*|\s+|.", re.S)
NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
INDEX = re.compile(r"\[\s*(t\s*[-+]\s*\d+|t|end(?:\s*-\s*\d+)?|\d+)\s*\]")
INSERTS = list("()[]@*+-/=:,#.$_0123456789\t\n ") + [
    "t", "t-1", "end", "é", "λ", "∑", "\u00a0", "\u2028", "\x00", "\x0c", "\r", "𝑥",
    "\ufeff", "affine(", "dim", "state", "[t+1]", "1e999"]
INDEX_REPLACEMENTS = ["[t+1]", "[t-0]", "[t]", "[t-2]", "[t-5]", "[end]", "[end-1]", "[0]",
                      "[1]", "[s]", "[t+0]", "[]", "[t-99999999999]", "", "[end-9]", "[t-400]",
                      "[400]", "[end-3000]", "[t+2]"]
NUMBERS = ["0", "1", "2", "3", "00", "0.5", "-1", "1e999", "99999999999", "4" * 5000, "1e-320",
           "1e308", "-1e308", "0.0", "1e-9", "65536", "100000", "3000", "1000000", "2e9",
           "18446744073709551617", "0" * 40 + "1", "7"]

GRAMMAR_WORDS = ("tanh", "sigmoid", "relu", "identity", "exp", "log", "softmax", "concat",
                 "affine", "gate", "cross_entropy", "squared_error", "zeros", "given", "xavier",
                 "orthogonal", "normal", "size", "name", "bias", "init", "true", "false")
PYTHON_NAMES = tuple(sorted(set(keyword.kwlist) | set(getattr(keyword, "softkwlist", ())) | {
    "print", "np", "sum", "len", "range", "min", "max", "abs", "float", "int", "dict", "list",
    "object", "type", "self", "__init__", "__name__", "__builtins__", "exec", "eval", "open",
    "globals", "locals", "super", "id", "iter", "next", "zip", "map"}))


@functools.lru_cache(maxsize=1)
def literals() -> tuple:
    """The grammar's quoted literals: its keywords and punctuation."""
    grammar = grammar_path().read_text(encoding="utf-8")
    return tuple(sorted(set(re.findall(r'"([^"\n]+)"', grammar))))


@functools.lru_cache(maxsize=1)
def vocabulary_words() -> tuple:
    """Every word of the language: the grammar's keywords and the built-in functions' names."""
    return tuple(sorted({w for w in literals() if NAME.fullmatch(w)} | set(GRAMMAR_WORDS)))


@functools.lru_cache(maxsize=1)
def generated_names() -> tuple:
    """The identifiers the generated module uses itself: those of the module compiled from a
    small spec exercising states, values, losses and a class target, with the spec's own names
    taken out (a spec name equal to one of these must work like any other name)."""
    from .api import generate
    spec = ("dim n = 3\ndim k = 2\ninput x[t]: n\ntarget y[t]: class(k)\nstate h: n\n"
            "state g: n\nparam a: n\ns = sigmoid(a)\nh[t] = tanh(affine(x[t], h[t-1])) * s\n"
            "g[t] = tanh(affine(x[t], g[t+1]))\no[t]: k = softmax(affine(h[t], g[t]))\n"
            "z = h[end]\nloss = cross_entropy(o[t], y[t])\n")
    own = set(NAME.findall(spec))
    source = generate(spec, filename="names.rnn")
    found = {tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.NAME}  # code only: not the docstrings' words
    return tuple(sorted(found - own - set(keyword.kwlist) - set(dir(builtins))))


def _tokens(text: str) -> List[str]:
    return TOKEN.findall(text)


def _code_tokens(tokens: Sequence[str]) -> List[int]:
    return [i for i, tok in enumerate(tokens) if not tok.isspace() and not tok.startswith("#")]


KINDS = 15


def mutate(text: str, rng: random.Random, donors: Sequence[str] = ()) -> str:
    """``text`` with one random edit (see the module's docstring); ``donors``: other specs'
    texts, for splices."""
    kind = rng.randrange(KINDS)
    tokens = _tokens(text)
    code = _code_tokens(tokens)
    lines = text.split("\n")
    if kind == 0 and code:  # delete a token
        del tokens[rng.choice(code)]
    elif kind == 1 and code:  # duplicate a token
        i = rng.choice(code)
        tokens.insert(i, tokens[i])
    elif kind == 2 and len(code) > 1:  # swap two tokens (often neighbours)
        i = rng.randrange(len(code))
        j = min(i + 1, len(code) - 1) if rng.random() < 0.5 else rng.randrange(len(code))
        a, b = code[i], code[j]
        tokens[a], tokens[b] = tokens[b], tokens[a]
    elif kind == 3 and code:  # replace a name with another name of the file
        names = [i for i in code if NAME.fullmatch(tokens[i])]
        if names:
            tokens[rng.choice(names)] = tokens[rng.choice(names)]
    elif kind == 4:  # change a time index: t-1 -> t+1, t-0, end, ...
        found = list(INDEX.finditer(text))
        if found:
            m = rng.choice(found)
            return text[:m.start()] + rng.choice(INDEX_REPLACEMENTS) + text[m.end():]
    elif kind == 5 and code:  # an extreme number in place of a number
        numbers = [i for i in code if tokens[i][0].isdigit()]
        if numbers:
            tokens[rng.choice(numbers)] = rng.choice(NUMBERS)
    elif kind == 6:  # drop a line
        del lines[rng.randrange(len(lines))]
        return "\n".join(lines)
    elif kind == 7:  # duplicate or swap lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if rng.random() < 0.5:
            lines.insert(i, lines[j])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    elif kind == 8:  # insert random characters
        i = rng.randrange(len(text) + 1)
        junk = "".join(rng.choice(INSERTS) for _ in range(rng.randint(1, 4)))
        return text[:i] + junk + text[i:]
    elif kind == 9 and text:  # delete, duplicate or swap characters
        i = rng.randrange(len(text))
        choice = rng.randrange(3)
        if choice == 0:
            return text[:i] + text[i + 1:]
        if choice == 1:
            return text[:i] + text[i] + text[i:]
        j = rng.randrange(len(text))
        chars = list(text)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    elif kind == 10:  # truncate
        return text[:rng.randrange(len(text) + 1)]
    elif kind == 11 and donors:  # splice: lines of another spec in place of some of these
        other = rng.choice(donors).split("\n")
        a = rng.randrange(len(other))
        piece = other[a:a + rng.randint(1, 6)]
        i = rng.randrange(len(lines) + 1)
        drop = rng.choice([0, 0, 1, len(piece)])
        return "\n".join(lines[:i] + piece + lines[i + drop:])
    elif kind in (12, 13) and code:  # a generated module's name, a Python keyword or builtin
        names = [i for i in code if NAME.fullmatch(tokens[i])]
        if names:
            new = rng.choice(generated_names() if kind == 12 else PYTHON_NAMES)
            i = rng.choice(names)
            if rng.random() < 0.5:  # everywhere: the spec stays valid if the name is allowed
                old = tokens[i]
                tokens = [new if tok == old else tok for tok in tokens]
            else:
                tokens[i] = new
    else:  # change a keyword or function into another word of the language
        words = [i for i in code if NAME.fullmatch(tokens[i])]
        if words:
            tokens[rng.choice(words)] = rng.choice(vocabulary_words())
    return "".join(tokens)


def mutant(text: str, rng: random.Random, donors: Sequence[str] = ()) -> str:
    """``text`` after one to three edits (mostly one)."""
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        text = mutate(text, rng, donors)
    return text
