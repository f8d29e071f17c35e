"""The one way text from outside enters generated Python: :func:`escape`.

In: any ``str`` that the user controls -- a file name, an import path, the spec's own text, a
comment in it -- including quotes, backslashes, line breaks of any kind (``\\n``, ``\\r``,
U+2028, U+0085), NUL and the lone surrogates that stand for a file name's non-UTF-8 bytes.
Out: text made only of printable characters (and tabs), with no unescaped backslash and no quote
that could close a string, so that

* inside a comment it cannot end the comment (no line break of any kind survives), and
* inside a non-raw ``\"\"\"`` string it cannot end the string, and Python reads back exactly the
  original text (``eval('\"\"\"' + escape(s) + '\"\"\"') == s`` for every ``s``).

The code generator writes outside text into a module only through this function (comments and the
docstring) or as ``repr()`` of a string (a literal) or as a name the grammar accepted (an ASCII
identifier, see :func:`rnnspec.codegen` 's namer).
"""
from __future__ import annotations

__all__ = ["escape", "comment", "shown"]

MARK = "\u01c2"  # the code generator's placeholder names hold it: outside text never does


def _char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if (ch.isprintable() or ch == "\t") and ch != MARK:  # not line breaks, controls, surrogates
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` as printable characters that a ``\"\"\"`` string reads back exactly (see the
    module docstring); printable text without backslashes or quotes that could close a string is
    unchanged."""
    if text.isprintable() and MARK not in text and "\\" not in text and '""' not in text \
            and not text.endswith('"'):
        return text
    # a quote is escaped where it could start a closing triple quote: before another quote, or
    # last (the next text may start with one); a quote in prose stays as it is
    return "".join('\\"' if ch == '"' and text[k + 1:k + 2] in ('"', "") else _char(ch)
                   for k, ch in enumerate(text))


def comment(text: str) -> str:
    """A ``#`` comment line holding ``text``: one physical line, whatever ``text`` holds."""
    return "# " + escape(text)


def shown(text: str) -> str:
    """``text`` for a terminal: line breaks, control characters and a file name's undecodable
    bytes as escapes (a file name cannot move the cursor or split an error message), all else
    as it is."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _char(ch) for ch in text)
