"""Stage 1, parse: spec text -> :class:`rnnspec.ast.Spec`.

In: the text of a .rnn file and its file name.  Out: a ``Spec`` of frozen dataclasses, each node
carrying the line and column where it starts.  A syntax error raises :class:`SpecError` with the
position, the source line with a caret, and what was expected there.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Optional

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .errors import SpecError, make_diagnostic, source_line

KEYWORDS = {"dim", "input", "target", "param", "state", "const", "loss", "block", "class", "scalar",
            "at", "end", "sum", "mean", "import"}
STATEMENT_KEYWORDS = {"DIM", "INPUT", "TARGET", "PARAM", "STATE", "CONST", "LOSS", "BLOCK",
                      "IMPORT"}
MAX_NESTING = 100  # deeper expressions are rejected: later stages (and Python) recurse on them
MAX_ARGUMENTS = 100  # a call with more is rejected: later stages chain its arguments
MAX_INT = 10 ** 9  # larger integers are rejected (and int() refuses more than 4300 digits)

# terminals defined by a pattern; those defined by a literal string are described by the string
_TOKEN_NAMES = {
    "NAME": "a name", "INT": "an integer", "SIGNED_NUMBER": "a number", "REDUCE": "sum/mean",
    "FILE_PATH": "a quoted file name", "$END": "end of file",
}
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def grammar_path() -> Path:
    """The grammar: inside the installed package (wheel), else ``grammars/`` of the source tree."""
    packaged = resources.files("rnnspec").joinpath("grammars/rnnspec.lark")
    if packaged.is_file():
        return Path(str(packaged))
    source_tree = Path(__file__).resolve().parent.parent / "grammars" / "rnnspec.lark"
    if source_tree.is_file():
        return source_tree
    raise FileNotFoundError("rnnspec grammar not found: neither rnnspec/grammars/rnnspec.lark "
                            "(installed) nor grammars/rnnspec.lark (source tree) exists")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr",
                propagate_positions=True, maybe_placeholders=False)


def _pos(meta_or_tok) -> dict:
    return {"line": getattr(meta_or_tok, "line", 1), "column": getattr(meta_or_tok, "column", 1)}


def _word(tok: Token) -> ast.Word:
    return ast.Word(str(tok), line=tok.line, column=tok.column)


def _number(text: str) -> float:
    return float(text)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, source: str, filename: str):
        super().__init__()
        self.source = source
        self.filename = filename

    # statements
    def start(self, meta, items):
        return ast.Spec(tuple(items), source=self.source, filename=self.filename, line=1, column=1)

    def dim_decl(self, meta, items):
        name, value = items
        return ast.DimDecl(str(name), int(value), **_pos(meta))

    def input_decl(self, meta, items):
        name, *rest = items
        axis, within = rest[0][1:] if len(rest) == 2 else (None, None)
        kind, size = rest[-1]
        return ast.InputDecl(str(name), axis, size, within, kind, **_pos(meta))

    def target_decl(self, meta, items):
        name, *rest = items
        start = None
        if rest and isinstance(rest[-1], Token) and rest[-1].type == "INT":
            start = int(rest.pop())
        axis, within = rest[0][1:] if len(rest) == 2 else (None, None)
        kind, size = rest[-1]
        return ast.TargetDecl(str(name), axis, kind, size, start, within, **_pos(meta))

    def class_target(self, meta, items):
        return ("class", items[0])

    def real_target(self, meta, items):
        return ("real", items[0])

    def param_decl(self, meta, items):
        name, shape, *rest = items
        return ast.ParamDecl(str(name), shape, rest[0] if rest else None, **_pos(meta))

    def state_decl(self, meta, items):
        name, size, *rest = items
        if rest:
            tok = rest[0]
            return ast.StateDecl(str(name), size, str(tok), tok.line, tok.column, **_pos(meta))
        return ast.StateDecl(str(name), size, None, **_pos(meta))

    def block_decl(self, meta, items):
        name, *rest = items
        names = [str(t) for t in rest if isinstance(t, Token)]
        body = tuple(t for t in rest if not isinstance(t, Token))
        *params, output = names
        return ast.BlockDecl(str(name), tuple(params), output, body, **_pos(meta))

    def import_file(self, meta, items):
        path, *rest = items
        dims = ()
        if len(rest) == 3:
            dims = rest.pop(1)
        alias, output = (_word(rest[0]), _word(rest[1])) if rest else (None, None)
        return ast.ImportDecl(path, (), alias, output, dims, **_pos(meta))

    def dim_bindings(self, meta, items):
        return tuple(items)

    def dim_binding(self, meta, items):
        return ast.DimBinding(str(items[0]), items[1], **_pos(meta))

    def import_names(self, meta, items):
        *names, path = items
        return ast.ImportDecl(path, tuple(_word(n) for n in names), **_pos(meta))

    def import_path(self, meta, items):
        tok = items[0]
        return ast.Word(str(tok)[1:-1], line=tok.line, column=tok.column)

    def state_init(self, meta, items):
        return items[0]

    def const_decl(self, meta, items):
        return ast.ConstDecl(str(items[0]), items[1].value, **_pos(meta))

    def loss_stmt(self, meta, items):
        reduce = "sum"
        if isinstance(items[0], Token) and items[0].type == "REDUCE":
            reduce = str(items[0])
            items = items[1:]
        expr = items[0]
        select = items[1] if len(items) > 1 else None
        return ast.Loss(reduce, expr, select, **_pos(meta))

    def step_select(self, meta, items):
        return ast.StepSelect(str(items[0]), tuple(items[1:]), **_pos(meta))

    def step_abs(self, meta, items):
        return ast.Index("abs", int(items[0]), **_pos(meta))

    def step_end(self, meta, items):
        return ast.Index("end", -int(items[0]) if items else 0, **_pos(meta))

    def equation(self, meta, items):
        name = items[0]
        axis = within = None
        size = None
        rest = items[1:]
        if rest and isinstance(rest[0], tuple) and rest[0][0] == "axis":
            axis, within = rest[0][1:]
            rest = rest[1:]
        if len(rest) == 2:
            size = rest[0]
        return ast.Equation(str(name), axis, size, rest[-1], within, **_pos(meta))

    def axis(self, meta, items):
        return ("axis", str(items[0]), str(items[1]) if len(items) > 1 else None)

    # shapes and sizes
    def shape_scalar(self, meta, items):
        return ()

    def shape_vector(self, meta, items):
        return (items[0],)

    def shape_matrix(self, meta, items):
        return (items[0], items[1])

    def size(self, meta, items):
        return ast.SizeExpr(tuple(items), **_pos(meta))

    def size_int(self, meta, items):
        return ast.SizeTerm(int(items[0]), None, **_pos(meta))

    def size_dim(self, meta, items):
        return ast.SizeTerm(1, str(items[0]), **_pos(meta))

    def size_scaled(self, meta, items):
        return ast.SizeTerm(int(items[0]), str(items[1]), **_pos(meta))

    def init(self, meta, items):
        return ast.Init(str(items[0]), items[1].value if len(items) > 1 else None, **_pos(meta))

    # expressions
    def number(self, meta, items):
        return ast.Num(_number(str(items[0])), **_pos(meta))

    def ref(self, meta, items):
        return ast.Ref(str(items[0]), items[1] if len(items) > 1 else None, **_pos(meta))

    def index(self, meta, items):
        return items[0]

    def ix_rel(self, meta, items):
        return ast.Index("rel", 0, str(items[0]), **_pos(meta))

    def ix_rel_minus(self, meta, items):
        return ast.Index("rel", -int(items[1]), str(items[0]), **_pos(meta))

    def ix_rel_plus(self, meta, items):
        return ast.Index("rel", int(items[1]), str(items[0]), **_pos(meta))

    def ix_abs(self, meta, items):
        return ast.Index("abs", int(items[0]), **_pos(meta))

    def ix_end(self, meta, items):
        return ast.Index("end", -int(items[0]) if items else 0, **_pos(meta))

    def _binary(op):
        def build(self, meta, items):
            return ast.Binary(op, items[0], items[1], **_pos(meta))
        return build

    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    matmul = _binary("@")

    def neg(self, meta, items):
        return ast.Unary("-", items[0], **_pos(meta))

    def call(self, meta, items):
        name, *args = items
        args = [a for a in args if a is not None]
        pos_args = tuple(a for a in args if not isinstance(a, ast.KwArg))
        kwargs = tuple(a for a in args if isinstance(a, ast.KwArg))
        return ast.Call(str(name), pos_args, kwargs, **_pos(meta))

    def kwarg(self, meta, items):
        return ast.KwArg(str(items[0]), items[1], **_pos(meta))


@functools.lru_cache(maxsize=1)
def _terminal_names() -> dict:
    names = {t.name: repr(t.pattern.value) for t in _parser().terminals
             if t.pattern.type == "str"}
    names.update(_TOKEN_NAMES)
    return names


def _describe_expected(expected) -> str:
    expected = {e for e in expected if e == "$END" or not e.islower()}  # terminals, not rules
    statement = STATEMENT_KEYWORDS <= expected
    if statement:  # the start of a statement: keywords or an equation's name
        expected -= STATEMENT_KEYWORDS | {"NAME"}
    known = _terminal_names()
    names = sorted({known.get(e, repr(e.lower())) for e in expected})
    if statement:
        names.append("a new statement (dim, input, target, param, state, const, loss, block, "
                     "import or an equation)")
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _expected_terminals(exc: UnexpectedInput) -> set:
    """What the parser accepts where ``exc`` happened (the lexer's own set omits keywords)."""
    state = getattr(exc, "state", None)
    try:
        return set(state.parse_conf.parse_table.states[state.position])
    except (AttributeError, KeyError, TypeError):
        return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


def _line_col(text: str, pos: int) -> tuple:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _end_of_code(text: str) -> tuple:
    """Line and column just after the last token (trailing blank lines and comments skipped)."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        code = lines[i].split("#", 1)[0].rstrip()
        if code:
            return i + 1, len(code) + 1
    return 1, 1


def parse(text: str, filename: str = "<spec>") -> ast.Spec:
    """Parse spec text into a :class:`rnnspec.ast.Spec`; raise :class:`SpecError` on bad syntax."""
    if not isinstance(text, str):
        raise TypeError("parse() takes the spec text as a str")
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark (editors write it): not text
        text = text[1:]
    bad = _BAD_CHARACTER.search(text)
    if bad:
        line, column = _line_col(text, bad.start())
        what = "NUL character" if bad.group() == "\x00" else \
            f"character U+{ord(bad.group()):04X} (a lone surrogate, not valid Unicode)"
        raise SpecError.at(f"syntax error: {what}", text, filename, line, column,
                           "remove it: a spec is UTF-8 text (is this a binary file?)")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, filename) from None
    except RecursionError:
        raise SpecError.at("expression nested too deeply", text, filename, 1, 1,
                           "split it into several equations") from None
    errors = _check_tree(tree, text, filename)
    if errors:
        raise SpecError(errors)
    try:
        return _ToAst(text, filename).transform(tree)
    except RecursionError:
        raise SpecError.at("expression nested too deeply", text, filename, 1, 1,
                           "split it into several equations") from None


def _short(word: str) -> str:
    return word if len(word) <= 24 else word[:20] + "..."


def _check_tree(tree: Tree, text: str, filename: str) -> list:
    """What the grammar lets through but the language forbids: keywords as names, numbers too
    large, calls with more than :data:`MAX_ARGUMENTS` arguments, expressions nested deeper than
    :data:`MAX_NESTING` (checked iteratively: the tree may be deep)."""
    errors: list = []

    def error(message: str, pos, hint: str) -> None:
        errors.append(make_diagnostic(f"syntax error: {message}", text, filename,
                                      pos.line, pos.column, hint))

    for stmt in tree.children:
        stack = [(stmt, 0)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, Token):
                word = str(node)
                if node.type == "NAME" and word in KEYWORDS:
                    error(f"unexpected {word!r} ('{word}' is a keyword and cannot be used as a "
                          f"name)", node, f"expected a name that is not a keyword, e.g. "
                          f"'{word}_'")
                elif node.type == "SIGNED_NUMBER" and not math.isfinite(float(word)):
                    error(f"number {_short(word)} is too large", node,
                          "write a number below 1e308")
                elif node.type == "INT" and (len(word) > 10 or int(word) > MAX_INT):
                    error(f"integer {_short(word)} is too large", node,
                          f"sizes, steps and delays are at most {MAX_INT}")
                continue
            if node.data == "call" and len(node.children) - 1 > MAX_ARGUMENTS:
                error(f"{_short(node.children[0])}() has {len(node.children) - 1} arguments, "
                      f"more than {MAX_ARGUMENTS}", node.meta, "join vectors with concat(...) in "
                      "separate equations, and pass fewer arguments")
                break
            if depth > MAX_NESTING:
                meta = node.meta if not node.meta.empty else stmt.meta
                error(f"expression nested too deeply (more than {MAX_NESTING} levels of "
                      f"operators, calls and indices)", meta,
                      "split it into several equations")
                break
            stack.extend((child, depth + 1) for child in reversed(node.children))
    errors.sort(key=lambda d: (d.line, d.column))
    return errors


def _syntax_error(exc: UnexpectedInput, text: str, filename: str) -> SpecError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if line < 1:
        line, column = 1, 1
    expected = _expected_terminals(exc)
    hint = ""
    if isinstance(exc, UnexpectedEOF):
        line, column = _end_of_code(text)
        message = "unexpected end of file"
        hint = f"expected {_describe_expected(expected)}"
    elif isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else "?"
        message = f"unexpected character {ch!r}"
        hint = f"expected {_describe_expected(expected)}" if expected else "remove it"
        if not ch.isascii() and (unicodedata.normalize("NFKC", ch).isidentifier() or
                                 ch.isalnum()):  # fullwidth letters, the 'ﬁ' ligature, 'é'
            message = f"unexpected character {ch!r} (U+{ord(ch):04X}) in a name"
            hint = "names are ASCII letters, digits and underscore (a-z, A-Z, 0-9, _)"
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        stack = getattr(getattr(exc, "state", None), "value_stack", None) or [None]
        prev = stack[-1]
        if tok.type == "$END":
            line, column = _end_of_code(text)
            message = "unexpected end of file"
        elif (isinstance(prev, Token) and prev.type in STATEMENT_KEYWORDS and tok.type == "LSQB"
              and getattr(prev, "line", None)):  # `input[t] = ...`: a keyword as a value's name
            word = str(prev)
            line, column = prev.line, prev.column
            message = f"unexpected {word!r} ('{word}' is a keyword and cannot be used as a name)"
            hint = f"expected a name that is not a keyword, e.g. '{word}_'"
        else:
            word = str(tok)
            message = f"unexpected {word!r}"
            if word in KEYWORDS and "NAME" in expected:
                message += f" ('{word}' is a keyword and cannot be used as a name)"
        hint = hint or f"expected {_describe_expected(expected)}"
    else:  # pragma: no cover - lark has no other UnexpectedInput kinds
        message, hint = "syntax error", ""
    diag = make_diagnostic(f"syntax error: {message}", text, filename, line, column, hint)
    at = len(text) if isinstance(exc, UnexpectedEOF) or message == "unexpected end of file" \
        else getattr(exc, "pos_in_stream", None)
    opener = _open_bracket(text, at if at is not None else len(text))
    if opener is not None:
        o_line, o_col = _line_col(text, opener)
        if (o_line, o_col) != (line, column):
            diag = dataclasses.replace(diag, related=(
                o_line, o_col, source_line(text, o_line), f"'{text[opener]}' opened here"))
    return SpecError([diag])


CLOSING = {"(": ")", "[": "]", "{": "}"}


def _open_bracket(text: str, end: int) -> Optional[int]:
    """The offset of the innermost bracket still open at offset ``end`` (comments and quoted
    import paths skipped), or None."""
    stack, i = [], 0
    while i < min(end, len(text)):
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        if ch == '"':
            j = text.find('"', i + 1)
            i = len(text) if j < 0 else j + 1
            continue
        if ch in CLOSING:
            stack.append(i)
        elif ch in CLOSING.values() and stack and CLOSING[text[stack[-1]]] == ch:
            stack.pop()
        i += 1
    return stack[-1] if stack else None
