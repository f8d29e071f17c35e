"""The printer: the one place where the Python text of generated code is made.

In: expression nodes (:mod:`rnnspec.expr`) and statement nodes (:mod:`rnnspec.stmt`).  Out:
text.  :func:`show` prints an expression with exactly the parentheses Python's precedence needs;
:func:`show_stmt` prints a statement as lines, a body indented by four spaces (blank lines
stay empty), comments after a line (``note``) or on their own line (escaped:
:func:`rnnspec.pytext.comment`).
"""
from __future__ import annotations

from typing import List

from .expr import (ATOM, COMPARE, COND, NOT, PRODUCT, SUM, UNARY, Attr, Bin, Call, Code, Dict_,
                   Ellipsis_, Expr, IfElse, Index, Invert, List_, Lit, Name, Neg, Not, Num, Slice,
                   Tuple_, Zero)
from .pytext import comment, escape
from .stmt import (Assign, Blank, Comment, Def, Do, Docstring, For, FromImport, If, Import, Pass,
                   Stmt, Verbatim)

INDENT = "    "

_BIN_LEVEL = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "@": PRODUCT}


# ---- expressions --------------------------------------------------------------------------------
def level(e: Expr) -> int:
    """How tightly ``e`` binds when printed (see the constants of :mod:`rnnspec.expr`)."""
    if isinstance(e, Code):
        return e.level
    if isinstance(e, Bin):
        return _BIN_LEVEL.get(e.op, COMPARE)
    if isinstance(e, (Neg, Invert)):
        return UNARY
    if isinstance(e, Num):
        return UNARY if e.value < 0 else ATOM
    if isinstance(e, Not):
        return NOT
    if isinstance(e, IfElse) or (isinstance(e, Tuple_) and e.bare):
        return COND
    return ATOM


def show(e: Expr, at_least: int = COND) -> str:
    """The Python text of ``e``, parenthesized if it binds less tightly than ``at_least``."""
    text = _text(e)
    return text if level(e) >= at_least else f"({text})"


def _text(e: Expr) -> str:  # (one case per kind of node: a flat dispatch, kept in one place)
    if isinstance(e, Code):
        return e.text
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Lit):
        return repr(e.value)
    if isinstance(e, Num):
        v = e.value
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(e, Bin):  # left-associative: the right operand must bind more tightly
        lv = level(e)  # (a comparison does not chain: both sides bind more tightly)
        return f"{show(e.left, lv + (lv == COMPARE))} {e.op} {show(e.right, lv + 1)}"
    if isinstance(e, (Neg, Invert)):
        return f"{'-' if isinstance(e, Neg) else '~'}{show(e.operand, ATOM)}"
    if isinstance(e, Not):
        return f"not {show(e.operand, NOT)}"
    if isinstance(e, Attr):
        return f"{show(e.value, ATOM)}.{e.attr}"
    if isinstance(e, Index):
        return f"{show(e.value, ATOM)}[{', '.join(_text(i) for i in e.index)}]"
    if isinstance(e, Slice):
        return f"{'' if e.lo is None else _text(e.lo)}:{'' if e.hi is None else _text(e.hi)}"
    if isinstance(e, Ellipsis_):
        return "..."
    if isinstance(e, List_):
        return f"[{', '.join(_text(i) for i in e.items)}]"
    if isinstance(e, Tuple_):
        inner = ', '.join(_text(i) for i in e.items) + (',' if len(e.items) == 1 else '')
        return inner if e.bare else f"({inner})"
    if isinstance(e, Dict_):
        return _dict(e)
    if isinstance(e, Call):
        parts = [_text(a) for a in e.args] + [f"{k}={_text(v)}" for k, v in e.kwargs]
        return f"{show(e.func, ATOM)}({', '.join(parts)})"
    if isinstance(e, IfElse):
        return f"{show(e.then, NOT)} if {show(e.cond, NOT)} else {_text(e.other)}"
    if isinstance(e, Zero):
        raise AssertionError("bug in rnnspec: a symbolic zero reached the printer")
    raise TypeError(f"not an expression node: {e!r}")


def _items(d: Dict_) -> List[str]:
    return [f"**{show(v, ATOM)}" if k is None else f"{_text(k)}: {_text(v)}" for k, v in d.items]


def _dict(d: Dict_) -> str:
    """``{...}`` on one line, or (``lines``) one item a line, each followed by a comma, and
    the closing brace on a line of its own (even with no items)."""
    items = _items(d)
    if not d.lines:
        return "{" + ", ".join(items) + "}"
    notes = d.notes or ("",) * len(items)
    body = [INDENT + item.replace("\n", "\n" + INDENT) + "," + _note(note)
            for item, note in zip(items, notes)]
    return "\n".join(["{"] + body + ["}"])


def _filled(head: str, d: Dict_) -> str:
    """``head`` and the items of ``d`` filled into lines of at most ``d.fill`` columns, each
    continued under the character after the brace."""
    lines, cur = [], head + "{"
    items = _items(d)
    for k, item in enumerate(items):
        piece = item + ("," if k < len(items) - 1 else "}")
        if not cur.endswith("{") and len(cur) + 1 + len(piece) > d.fill:
            lines.append(cur)
            cur = " " * (len(head) + 1) + piece
        else:
            cur += ("" if cur.endswith("{") else " ") + piece
    return "\n".join(lines + [cur if items else cur + "}"])


# ---- statements ---------------------------------------------------------------------------------
def show_stmt(s: Stmt) -> List[str]:
    """The lines of statement ``s`` (at no indentation; its bodies indented).  Nodes are
    immutable, so a statement's lines are kept on it once printed (codegen prints a function's
    body to see which names it reads, then the module prints it again)."""
    lines = s.__dict__.get("_lines")
    if lines is None:
        lines = tuple(_lines(s))
        object.__setattr__(s, "_lines", lines)
    return list(lines)


def _lines(s: Stmt) -> List[str]:
    if isinstance(s, Assign):
        head = f"{show(s.target)} {s.op} "
        text = _filled(head, s.value) if isinstance(s.value, Dict_) and s.value.fill else \
            head + show(s.value)
        return (text + _note(s.note)).split("\n")
    if isinstance(s, If):
        lines = [f"if {show(s.cond)}:" + _note(s.note)] + show_body(s.body)
        if s.orelse:
            lines += ["else:" + _note(s.else_note)] + show_body(s.orelse)
        return lines
    if isinstance(s, For):
        return [f"for {show(s.var)} in {show(s.iterable)}:"] + show_body(s.body)
    if isinstance(s, Do):
        return ((s.keyword + " " if s.keyword else "") + show(s.value)).split("\n")
    if isinstance(s, Def):
        params = [p if isinstance(p, str) else f"{p[0]}={show(p[1])}" for p in s.params]
        doc = show_stmt(Docstring(s.doc)) if s.doc else []
        return [f"@{show(d)}" for d in s.decorators] + \
            [f"def {s.name}({', '.join(params)}):"] + show_body((), doc) + show_body(s.body)
    if isinstance(s, Docstring):
        return ['"""' + escape(s.lines[0])] + [escape(line) for line in s.lines[1:]] + ['"""']
    if isinstance(s, Comment):
        return [comment(s.text)]
    if isinstance(s, Blank):
        return [""]
    if isinstance(s, Pass):
        return ["pass"]
    if isinstance(s, Import):
        return [f"import {s.module}" + (f" as {s.alias}" if s.alias != s.module else "")
                + _note(s.note)]
    if isinstance(s, FromImport):
        names = [n if isinstance(n, str) else f"{n[0]} as {n[1]}" for n in s.names]
        return [f"from {s.module} import {', '.join(names)}" + _note(s.note)]
    if isinstance(s, Verbatim):
        return s.text.split("\n")
    raise TypeError(f"not a statement node: {s!r}")


def show_body(body, lines=()) -> List[str]:
    """The lines of statements ``body`` (after the given ``lines``), indented one level."""
    out = [INDENT + line if line else "" for line in lines]
    for s in body:
        out += [INDENT + line if line else "" for line in show_stmt(s)]
    return out


def show_block(body) -> str:
    """The text of statements ``body`` at no indentation."""
    return "\n".join(line for s in body for line in show_stmt(s))


def _note(text: str) -> str:
    return f"  # {text}" if text else ""
