"""Nothing from outside runs as code, and every spec name is safe (issue 9, sections 1 and 2).

File names, import paths and spec text reach a generated module only through
rnnspec.pytext.escape (comments, the docstring) or as literals; spec names never take a name the
module uses itself (codegen's placeholder namer).  Each hostile text carries a payload that
would create the file PWNED if it ever ran.
"""
import ast
import keyword
import os
import re
import subprocess
import sys
import tokenize
import io

import numpy as np
import pytest

import rnnspec
from rnnspec.pytext import escape
from conftest import SPECS

PAYLOAD = '__import__("os").system("touch PWNED")'
HOSTILE = {  # label -> a file name (stem), each trying to break out of a comment or a docstring
    "triple_double": f'e""";{PAYLOAD};"""',
    "triple_single": f"e''';{PAYLOAD};'''",
    "trailing_quote": 'e"',
    "backslash_quote": f'e\\""";{PAYLOAD};#',
    "newline": f"nl\n{PAYLOAD}\n#",
    "carriage_return": f"cr\r{PAYLOAD}\r#",
    "crlf": f"crlf\r\n{PAYLOAD}\r\n#",
    "nul": f"nul\x00{PAYLOAD}",
    "line_separator": f"ls\u2028{PAYLOAD}\u2028#",
    "next_line": f"nel\x85{PAYLOAD}\x85#",
    "form_feed": f"ff\x0c{PAYLOAD}",
    "non_utf8": os.fsdecode(b"bad\xff\xfe") + f'""";{PAYLOAD};"""',
    "mark": "\u01c2" + "0_0\u01c2",  # the namer's own placeholder mark
}
ELMAN = (SPECS / "elman.rnn").read_text()


def _doc(source):
    return ast.get_docstring(ast.parse(source), clean=False)


def _run_module(source, cwd):
    """Import ``source`` in a fresh interpreter with ``cwd`` as its directory."""
    path = cwd / "module_under_test.py"
    path.write_text(source, encoding="utf-8")
    subprocess.run([sys.executable, "-c", "import module_under_test"], cwd=cwd, check=True,
                   capture_output=True)
    path.unlink()


@pytest.mark.parametrize("text", list(HOSTILE.values()) + ["plain", "", '"', "\\", "\t"],
                         ids=list(HOSTILE) + ["plain", "empty", "quote", "backslash", "tab"])
def test_escape_reads_back_exactly(text):
    out = escape(text)
    assert all(ch.isprintable() or ch == "\t" for ch in out)
    assert "\u01c2" not in out
    assert eval('"""' + out + '"""') == text
    assert eval('"""x' + out + '\n"""') == "x" + text + "\n"


@pytest.mark.parametrize("label", list(HOSTILE))
def test_hostile_file_name_through_the_api(label, tmp_path):
    name = HOSTILE[label] + ".rnn"
    source = rnnspec.generate(ELMAN, filename=name)
    assert _doc(source).startswith(f"Forward pass and exact BPTT gradients for {name}.\n")
    assert source.splitlines()[0].startswith("# generated from ")
    _run_module(source, tmp_path)
    assert not (tmp_path / "PWNED").exists()


def _writable_names():
    names = {}
    for label, stem in HOSTILE.items():
        try:
            os.fsencode(stem)
        except UnicodeError:
            continue
        if "\x00" not in stem and "/" not in stem:
            names[label] = stem
    return names


@pytest.mark.parametrize("label", list(_writable_names()))
def test_hostile_spec_file_and_output_names_through_the_cli(label, tmp_path):
    stem = _writable_names()[label]
    spec = tmp_path / (stem + ".rnn")
    spec.write_text(ELMAN, encoding="utf-8")
    out = tmp_path / (stem + ".py")
    run = subprocess.run([sys.executable, "-m", "rnnspec", "compile", str(spec), "-o", str(out),
                          "--dim", "n=3"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "PWNED").exists()
    source = out.read_text(encoding="utf-8")
    assert _doc(source).startswith(f"Forward pass and exact BPTT gradients for {spec.name}.\n")
    _run_module(source, tmp_path)
    assert not (tmp_path / "PWNED").exists()


QUOTELESS = PAYLOAD.replace('"', "'")
IMPORT_NAMES = {  # an import path may hold anything but a double quote and a newline
    "carriage_return": f"lib\r{QUOTELESS}\r#",
    "triple_single": f"lib''';{QUOTELESS};'''",
    "backslash": "lib\\\\x",
    "line_separator": f"lib\u2028{QUOTELESS}\u2028#",
    "next_line": f"lib\x85{QUOTELESS}",
}
CELL = "block cell(x) -> h {\n    state h: n\n    h[t] = tanh(affine(x[t], h[t-1]))\n}\n"
USER = 'dim n = 3\nimport "{path}"\ninput x[t]: n\ntarget y[t]: n\n' \
       'h[t] = cell(x[t])\nloss = squared_error(h[t], y[t])\n'


@pytest.mark.parametrize("label", list(IMPORT_NAMES))
def test_hostile_import_path(label, tmp_path):
    path = IMPORT_NAMES[label] + ".rnn"
    (tmp_path / path).write_text(CELL, encoding="utf-8")
    source = rnnspec.generate(USER.replace("{path}", path), filename="user.rnn", base=tmp_path)
    assert f"\nImported {path}:\n" in _doc(source)
    _run_module(source, tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_symlinked_import_whose_target_name_holds_triple_quotes(tmp_path):
    target = tmp_path / f'cells""";{PAYLOAD};""".rnn'
    target.write_text(CELL, encoding="utf-8")
    (tmp_path / "cells.rnn").symlink_to(target.name)
    source = rnnspec.generate(USER.replace("{path}", "cells.rnn"), filename="user.rnn",
                              base=tmp_path)
    _run_module(source, tmp_path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("junk", ['"""', "'''", "\\", "\\\"\"\"", "\r", "\x0c", "\u2028",
                                  "\x85", "\u01c2"])
def test_hostile_spec_text_in_comments(junk, tmp_path):
    text = ELMAN.replace("# hidden size", f"# hidden {junk}{PAYLOAD}{junk} size")
    assert text != ELMAN
    source = rnnspec.generate(text, filename="e.rnn")
    assert f"hidden {junk}{PAYLOAD}{junk} size" in _doc(source)
    _run_module(source, tmp_path)
    assert not (tmp_path / "PWNED").exists()


# ----- section 2: spec names against the module's own names ----------------------------------
BASE = """dim m = 3
dim n = 4
input x[t]: m
target y[t]: class(m)
param U: (n, m)
param W: (n, n)
param V: (m, n)
state s: n
s[t] = tanh(U @ x[t] + W @ s[t-1])
o[t] = softmax(V @ s[t])
loss = cross_entropy(o[t], y[t])
"""
ROLES = {"param": "W", "state": "s", "value": "o", "input": "x", "dim": "n"}


def _module_names():
    """Every name the generated module of BASE spells (not attributes), Python's keywords and
    the builtins a spec might borrow: the names a careless generator would clash with."""
    source = rnnspec.generate(BASE)
    toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    names = {t.string for k, t in enumerate(toks)
             if t.type == tokenize.NAME and toks[k - 1].string != "."}
    names |= set(keyword.kwlist) | {"print", "sum", "len", "np", "numpy", "__debug__",
                                    "given", "final", "attention", "w_loss_o", "n_n", "T_t"}
    return sorted(n for n in names if re.fullmatch(r"[A-Za-z_]\w*", n))


def _run(text):
    mod = rnnspec.compile_source(text)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 3))
    y = rng.integers(0, 3, (3, 2))
    out, cache = mod.forward(mod.init_params(seed=0), {next(iter(mod.INPUTS)): x},
                             {next(iter(mod.TARGETS)): y})
    grads = mod.backward(mod.init_params(seed=0), cache)
    return out["loss"], [grads["params"][k] for k in mod.PARAMS]


def _accepted(role, name):
    """Whether the checker takes BASE with one role renamed (a refusal must be positioned)."""
    from rnnspec.check import check
    from rnnspec.parse import parse
    try:
        check(parse(re.sub(rf"\b{ROLES[role]}\b", name, BASE)))
    except rnnspec.SpecError as exc:
        assert exc.line, f"{role} {name}: a SpecError without a position"
        return False
    return True


def test_every_name_in_every_role_works_like_any_other_or_is_refused_with_a_position():
    """Every name of the module in every role: refused with a position, or exactly BASE's
    loss and gradients.  The accepted names of the five roles are run together, rotated, so
    that each (role, name) runs once in about as many modules as there are names."""
    names = _module_names()
    accepted = {role: [n for n in names if _accepted(role, n)] for role in ROLES}
    assert all(len(a) > len(names) // 2 for a in accepted.values())
    loss0, grads0 = _run(BASE)
    todo = {(role, n) for role, a in accepted.items() for n in a}
    cases = []
    for k in range(max(map(len, accepted.values()))):
        pick = {}
        for r, (role, a) in enumerate(accepted.items()):
            name = a[(k + 37 * r) % len(a)]
            if (role, name) in todo and name not in pick.values():
                pick[role] = name
        todo -= set(pick.items())
        cases.append(pick)
    cases += [{role: name} for role, name in sorted(todo)]
    failures = []
    for pick in cases:
        # all roles renamed at once: one after another, a name just given (value o -> n) would
        # be renamed again by a later role (dim n -> y)
        renamed = {ROLES[role]: name for role, name in pick.items()}
        text = re.sub(rf"\b({'|'.join(renamed)})\b", lambda m: renamed[m.group(1)], BASE)
        try:
            loss, grads = _run(text)
        except Exception as exc:  # a crash (or refusal): a name reached the module's own names
            failures.append((pick, f"{type(exc).__name__}: {exc}"))
            continue
        if loss != loss0 or any(not np.array_equal(a, b) for a, b in zip(grads, grads0)):
            failures.append((pick, "a different result"))
    assert not failures


def test_dims_and_outputs_keys_the_module_owns_are_refused_with_a_reason():
    from conftest import first_error
    err = first_error(BASE.replace("dim n = 4", "dim T = 4").replace("(n, n)", "(T, T)")
                      .replace("(n, m)", "(T, m)").replace("(m, n)", "(m, T)")
                      .replace("state s: n", "state s: T"))
    assert "cannot be called 'T'" in err.message and err.line == 2
    err = first_error(BASE.replace("o[t]", "final[t]"))
    assert "outputs['final']" in err.message and err.line == 10


def test_generated_names_stay_readable():
    source = rnnspec.generate(BASE.replace("W", "mask").replace("o[t]", "batch[t]")
                              .replace("(o[t]", "(batch[t]"))
    assert "mask_2 = params['mask']" in source
    assert "\u01c2" not in source


@pytest.mark.parametrize("label", ["newline", "carriage_return", "nul", "line_separator",
                                   "next_line", "non_utf8"])
def test_an_error_header_shows_a_hostile_file_name_escaped(label):
    name = HOSTILE[label] + ".rnn"
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate("dim n = 0\n", filename=name)
    head = str(info.value).split("\n")[0]
    assert head.isprintable() and head.endswith(":1:1: error: dimension 'n' must be at least 1, "
                                                "not 0")
    from rnnspec.pytext import shown
    assert head.startswith(shown(name) + ":1:1:")
    assert shown(name) != name  # each of these names holds a character shown as an escape


def test_docstring_read_back_parses_only_the_head():
    """codegen's last check: the module's docstring reads back as the text it was made from;
    it parses only the head (up to the first line of three quotes alone), and a docstring that
    outside text ended early (an unescaped quote run) is caught."""
    import pytest
    from rnnspec.codegen import _verify_docstring
    doc = "Forward pass for a.rnn.\n\n    x = 1"
    good = '# generated\n"""Forward pass for a.rnn.\n\n    x = 1\n"""\nimport numpy as np\n'
    _verify_docstring(good, doc)
    early = '# generated\n"""Forward pass for a.rnn.\n"""\nx = 1\n"""\n"""\nimport numpy\n'
    with pytest.raises(AssertionError, match="does not read back its docstring"):
        _verify_docstring(early, "Forward pass for a.rnn.\n\"\"\"\nx = 1\n\"\"\"")
    with pytest.raises(AssertionError, match="does not read back its docstring"):
        _verify_docstring(good.replace("x = 1", "x = 1\x07"), doc + "\x07")
