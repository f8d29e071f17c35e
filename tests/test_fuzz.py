"""Robustness: for any text whatsoever, ``rnnspec.generate`` returns module source that Python
compiles, or raises :class:`rnnspec.SpecError` with sane diagnostics -- nothing else escapes.

(a) Mutation fuzzing of every spec in ``specs/`` (seeded random edits of tokens, characters,
names, time indices and lines), (b) random garbage: bytes decoded as text, token soup from the
grammar's vocabulary, deep nesting, very long lines, empty and comment-only files, NUL characters.
Everything is seeded, so a failure is reproducible; the failing text is in the assertion message.
"""
import random
import traceback
from pathlib import Path

import pytest

import rnnspec
from rnnspec import SpecError

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.rnn"))
FILENAME = "fuzz.rnn"

MUTANTS = 1300  # in all, shared by the specs: the whole file runs in well under 20 s
MUTANTS_PER_SPEC = max(30, MUTANTS // max(len(SPECS), 1))


def _show(text: str) -> str:
    return repr(text) if len(text) <= 2000 else f"{text[:1000]!r} ... {text[-500:]!r}"


def outcome(text: str) -> str:
    """'ok' or 'error'; fails the test if anything but a SpecError escapes, if a diagnostic is
    malformed, or if the generated source does not compile."""
    return "ok" if attempt(text) is None else "error"


def attempt(text: str):
    """None if ``text`` compiles (to source that Python compiles), else its SpecError."""
    try:
        source = rnnspec.generate(text, filename=FILENAME, base=ROOT / "specs")  # (imports)
    except SpecError as exc:
        check_diagnostics(exc, text)
        return exc
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(exc).__name__} escaped rnnspec.generate for input {_show(text)}:\n"
                    + "".join(traceback.format_exception(exc)), pytrace=False)
    assert isinstance(source, str)
    try:
        compile(source, "<generated>", "exec")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"generated source does not compile ({type(exc).__name__}: {exc}) for input "
                    f"{_show(text)}", pytrace=False)
    return None


def check_diagnostics(exc: SpecError, text: str) -> None:
    context = f"for input {_show(text)}:\n{str(exc)[:3000]}"
    assert isinstance(exc, ValueError)
    assert exc.diagnostics, context
    lines = text.split("\n")
    for d in exc.diagnostics:
        assert d.severity == "error", context
        if d.filename != FILENAME:  # in a file the spec imports (e.g. a dimension it lacks)
            assert d.source_line and d.message and d.hint, context
            continue
        assert 1 <= d.line <= len(lines), context
        assert 1 <= d.column <= len(lines[d.line - 1]) + 1, context
        assert d.message and d.hint, context
        assert str(d).startswith(f"{FILENAME}:{d.line}:{d.column}: error: "), context
    first = exc.diagnostics[0]
    assert (exc.filename, exc.line, exc.column, exc.hint) == \
        (first.filename, first.line, first.column, first.hint)
    positions = [(d.line, d.column) for d in exc.diagnostics if d.filename == FILENAME]
    assert positions == sorted(positions), context
    assert str(exc)


# ----- (a) mutations of the example specs -----------------------------------------------------
from rnnspec.mutate import literals, mutant, vocabulary_words  # noqa: E402 (the mutator)

DONORS = [p.read_text(encoding="utf-8") for p in SPECS]  # splices between specs


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_mutated_specs(spec):
    original = spec.read_text(encoding="utf-8")
    assert outcome(original) == "ok"
    seen = {"ok": 0, "error": 0}
    # MUTANTS_PER_SPEC mutants, and more (up to 5x) until both sides are seen: the mutants
    # depend on the vocabulary, which holds the names generated code uses, so a change to the
    # generated code can make the first few mutants of a large spec all rejected
    for k in range(5 * MUTANTS_PER_SPEC):
        if k >= MUTANTS_PER_SPEC and seen["ok"] and seen["error"]:
            break
        rng = random.Random(f"{spec.name}:{k}")
        seen[outcome(mutant(original, rng, DONORS))] += 1
    # the mutants exercise both sides: some still compile, some are rejected
    assert seen["ok"] > 0 and seen["error"] > 0, seen


def test_line_endings_tabs_and_spacing():
    for spec in SPECS:
        text = spec.read_text(encoding="utf-8")
        expected = rnnspec.generate(text, filename=FILENAME, base=spec.parent)
        assert rnnspec.generate(text.replace("\n", "\r\n"), filename=FILENAME,
                                base=spec.parent) == expected
        for variant in (text.replace("    ", "\t"), text.replace(" = ", "=").replace(", ", ","),
                        text.replace("\n", "\n\n"), text.replace("\n", " \t\x0c\n")):
            assert outcome(variant) == "ok"


# ----- (b) garbage ----------------------------------------------------------------------------
LITERALS = list(literals())  # keywords and punctuation, read from the grammar
VOCABULARY_WORDS = list(vocabulary_words())
VOCABULARY = LITERALS + VOCABULARY_WORDS + [
    "t", "x", "h", "W", "b", "o", "y", "n", "hidden", "0", "1", "3", "0.5", "-1", "1e-3",
    "\n", "\n", "  ", "# comment\n", "t-1", "t+1"]


def test_vocabulary_comes_from_the_grammar():
    for word in ("dim", "input", "target", "param", "state", "const", "loss", "class", "scalar",
                 "at", "end", "(", ")", "[", "]", "@", ":", "=", ","):
        assert word in LITERALS


def test_random_token_sequences():
    rng = random.Random(20240601)
    seen = {"ok": 0, "error": 0}
    for _ in range(700):
        n = rng.randint(0, 40)
        seen[outcome(" ".join(rng.choice(VOCABULARY) for _ in range(n)))] += 1
    assert seen["error"] > 0


def test_random_statement_shaped_token_sequences():
    # start statements with their keyword so that parsing gets further than the first token
    rng = random.Random(7)
    starts = ["dim n =", "input x[t]:", "target y[t]:", "param W:", "state h:", "const c =",
              "loss =", "h[t] =", "o[t]: n =", "z ="]
    for _ in range(400):
        parts = ["dim n = 3", "input x[t]: n"]
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(starts) + " " + " ".join(
                rng.choice(VOCABULARY) for _ in range(rng.randint(0, 8))))
        outcome("\n".join(parts) + "\n")


@pytest.mark.parametrize("decode", ["utf-8-replace", "latin-1", "surrogateescape"])
def test_random_bytes(decode):
    rng = random.Random(f"bytes:{decode}")
    for _ in range(250):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 120)))
        if decode == "utf-8-replace":
            text = data.decode("utf-8", errors="replace")
        elif decode == "latin-1":
            text = data.decode("latin-1")
        else:
            text = data.decode("utf-8", errors="surrogateescape")
        outcome(text)


def test_random_bytes_after_a_valid_spec():
    rng = random.Random(99)
    base = SPECS[0].read_text(encoding="utf-8")
    for _ in range(100):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        pos = rng.randrange(len(base) + 1)
        outcome(base[:pos] + data.decode("latin-1") + base[pos:])


PRELUDE = "dim n = 3\ninput x[t]: n\n"
DEPTH = 5000


@pytest.mark.parametrize("text", [
    PRELUDE + "y[t] = " + "(" * DEPTH + "x[t]" + ")" * DEPTH + "\n",
    PRELUDE + "y[t] = " + "(" * DEPTH + "x[t]\n",
    PRELUDE + "y[t] = x[t]" + ")" * DEPTH + "\n",
    "(" * DEPTH,
    PRELUDE + "y[t] = " + "tanh(" * DEPTH + "x[t]" + ")" * DEPTH + "\n",
    PRELUDE + "y[t] = " + "-" * DEPTH + "x[t]\n",
    PRELUDE + "y[t] = " + " + ".join(["x[t]"] * DEPTH) + "\n",
    PRELUDE + "y[t] = " + "x[t] * (" * DEPTH + "x[t]" + ")" * DEPTH + "\n",
    PRELUDE + "y[t] = " + "concat(" * DEPTH + "x[t]" + ")" * DEPTH + "\n",
    PRELUDE + "y[t] = x" + "[" * DEPTH + "t" + "]" * DEPTH + "\n",
    PRELUDE + "y[t] = " + "x[t] @ " * DEPTH + "x[t]\n",
], ids=["balanced-parens", "unclosed-parens", "unopened-parens", "only-parens", "nested-calls",
        "unary-minus-chain", "long-sum", "nested-products", "nested-concat", "nested-brackets",
        "matmul-chain"])
def test_deep_nesting(text):
    exc = attempt(text)
    if exc is not None:
        assert "recursion" not in str(exc).lower()


def test_deep_nesting_is_reported_where_it_happens():
    text = PRELUDE + "y[t] = " + "tanh(" * DEPTH + "x[t]" + ")" * DEPTH + "\n"
    exc = attempt(text)
    assert exc.line == 3 and 8 <= exc.column < len(text.split("\n")[2])
    assert "nested too deeply" in exc.message
    assert "split it into several equations" in exc.hint


def test_moderate_nesting_still_compiles():
    text = PRELUDE + "state h: n\nh[t] = " + "tanh(" * 40 + "h[t-1] + x[t]" + ")" * 40 + "\n"
    assert outcome(text) == "ok"


LONG = 100_000


@pytest.mark.parametrize("text", [
    "# " + "x" * LONG + "\n",
    PRELUDE + "y[t] = x[t] # " + "é" * LONG + "\n",
    "dim " + "n" * LONG + " = 3\n",
    PRELUDE + "y[t] = x[t]" + " " * LONG + "$\n",
    PRELUDE + "y[t] = x[t] * " + "1" * LONG + "\n",
    PRELUDE + "y[t] = x[t] * 0." + "1" * LONG + "\n",
    "dim n = 3 " * 3000,
    PRELUDE + "".join(f"v{i}[t] = q[t] " for i in range(2000)),
    PRELUDE + "y[t] = concat(" + ", ".join(["x[t]"] * 3000) + ")\n",
    PRELUDE + "y[t]: n = affine(" + ", ".join(["x[t]"] * 3000) + ")\n",
    PRELUDE + "y[t] = concat(" + ", ".join(["x[t]"] * 60) + ")\n",
    PRELUDE + "y[t]: n = tanh(affine(" + ", ".join(["x[t]"] * 60) + "))\n",
    "\n" * LONG,
], ids=["long-comment", "long-unicode-comment", "long-name", "long-whitespace",
        "long-integer-literal", "long-fraction", "many-statements-one-line",
        "many-errors-one-line", "very-wide-concat", "very-wide-affine", "wide-concat",
        "wide-affine", "many-empty-lines"])
def test_very_long_lines(text):
    outcome(text)


def test_many_errors_one_line_are_all_reported_with_short_excerpts():
    exc = attempt("dim n = 3 " * 3000)
    assert len(exc.diagnostics) == 2999
    assert max(len(line) for line in str(exc).split("\n")) < 200


def test_too_many_arguments_is_a_positioned_error():
    exc = attempt(PRELUDE + "y[t] = tanh(concat(" + ", ".join(["x[t]"] * 3000) + "))\n")
    assert (exc.line, exc.column) == (3, 13)
    assert "concat() has 3000 arguments" in exc.message


@pytest.mark.parametrize("text", [
    "", " ", "\n", "\t\n\r\n", "\x0c", "# only a comment", "# one\n# two\n\n   # three\n",
    "#", "#\x00", "\x00", "\x00" * 10, "dim n = 3\x00", "dim\x00n = 3", "# ok\n\x00\n",
    "dim n = 3\n# a comment with a NUL \x00 inside\ninput x[t]: n\n",
    "dim n = 3 # \ud800 a lone surrogate in a comment\n", "\ufeffdim n = 3\n",
    "\r", "dim n = 3\rinput x[t]: n\r", "\u2028", "dim n = 3\u2028",
], ids=lambda t: repr(t)[:40])
def test_degenerate_texts(text):
    outcome(text)


def test_empty_and_comment_only_texts_compile():
    for text in ("", "\n\n", "# nothing here\n", "   \t\n# x\n"):
        assert outcome(text) == "ok"


def test_nul_anywhere_is_a_positioned_error():
    exc = attempt("dim n = 3\ninput x[t]: n # note\x00\n")
    assert (exc.line, exc.column) == (2, 21)
    assert "\x00" not in str(exc)
