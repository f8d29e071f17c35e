"""The one printer (rnnspec.printer): statement nodes and the expressions codegen builds, each
printed to the exact text generated modules hold."""
import ast

import pytest

from rnnspec import expr as E
from rnnspec import stmt as S
from rnnspec.printer import show, show_block, show_stmt

t, T, B = E.Name("t"), E.Name("T"), E.Name("B")


def test_guarded_assignments_and_conditional_values():
    up = E.Name("up")
    add_up = S.guarded(E.compare(E.lit("h"), "in", up),
                       S.assign(E.subscript("d_h", E.span(1, None)), E.subscript(up, E.lit("h")),
                                "+="))
    assert show_stmt(add_up) == ["if 'h' in up:", "    d_h[1:] += up['h']"]
    assert show_stmt(S.guarded(None, S.assign("d_x", E.add("a", E.neg("b"))))) == ["d_x = a - b"]
    given = E.compare(E.Name("d_loss"), "is not", None)
    cond = S.assign("d_a", E.IfElse(E.Name("g"), given,
                                    E.call("np.zeros", E.tuple_of(T, B, "n"), "dtype")))
    assert show_stmt(cond) == ["d_a = g if d_loss is not None else np.zeros((T, B, n), dtype)"]
    with pytest.raises(TypeError, match="not a statement"):
        show_stmt(E.Name("x"))


def test_a_carried_state_step_is_one_statement_with_its_note():
    mask = E.subscript(E.Name("mask"), t)
    nxt = E.subscript("d_h", E.add(t, 1))
    carried = S.If(E.compare("mask", "is not", None), (
        S.assign(E.subscript("d_h", t), E.mul(E.Invert(mask), nxt), "+="),
        S.assign(nxt, mask, "*=")), "past its end, the state was carried over")
    assert show_stmt(carried) == [
        "if mask is not None:  # past its end, the state was carried over",
        "    d_h[t] += ~mask[t] * d_h[t + 1]",
        "    d_h[t + 1] *= mask[t]"]
    assert show(E.tuple_of("n")) == "(n,)"
    assert show(E.subscript("h", E.span(E.add(T, 2), None))) == "h[T + 2:]"
    assert show(E.subscript("h", E.span(1, E.add(T, 1)))) == "h[1:T + 1]"


def test_comparisons_and_not_take_the_parentheses_they_need():
    a, b = E.Name("a"), E.Name("b")
    assert show(E.Not(E.subscript("given", E.lit("h")))) == "not given['h']"
    assert show(E.IfElse(a, E.Not(b), E.Num(0))) == "a if not b else 0"
    assert show(E.mul(E.compare(a, "<", b), 2)) == "(a < b) * 2"
    assert show(E.compare(E.compare(a, "<", b), "is", None)) == "(a < b) is None"
    assert show(E.compare(E.add(a, 1), "<", b)) == "a + 1 < b"
    assert show(E.Not(E.IfElse(a, b, a))) == "not (a if b else a)"


def test_a_loop_with_its_body():
    loop = S.For(t, E.call("reversed", E.call("range", T)), (S.Do(E.call("f", t)),))
    assert show_stmt(loop) == ["for t in reversed(range(T)):", "    f(t)"]


def test_a_function_with_its_docstring_blank_lines_stay_empty():
    fn = S.define("forward", ["params", S.param("T", None), S.param("greedy", True)],
                  ["Run the network.", "", "More."],
                  [S.assign("x", 1), S.BLANK, S.Comment("done"),
                   S.If(E.Name("x"), (S.raises(E.call("ValueError", E.lit("it's \"x\""))),)),
                   S.returns(E.tuple_of("x", "y"))])
    assert show_stmt(fn) == [
        "def forward(params, T=None, greedy=True):",
        '    """Run the network.',
        "",
        "    More.",
        '    """',
        "    x = 1",
        "",
        "    # done",
        "    if x:",
        "        raise ValueError('it\\'s \"x\"')",
        "    return (x, y)"]
    ast.parse("\n".join(show_stmt(fn)))


def test_tables_are_literals_printed_with_repr():
    assert show_stmt(S.assign("DIMS", E.lit({"hidden": 4}), note="sizes")) == [
        "DIMS = {'hidden': 4}  # sizes"]
    table = E.dict_of([("W", E.lit(("hidden", "in"))), ("b", E.lit(("hidden",)))], lines=True)
    assert show_stmt(S.assign("PARAMS", table)) == [
        "PARAMS = {", "    'W': ('hidden', 'in'),", "    'b': ('hidden',),", "}"]
    assert show_stmt(S.assign("PARAMS", E.dict_of([], lines=True))) == ["PARAMS = {", "}"]
    assert show_stmt(S.assign("PARAMS", E.dict_of([]))) == ["PARAMS = {}"]


def test_nested_dicts_over_lines_with_notes_and_a_double_star():
    grads = E.dict_of([("params", E.dict_of([("W", "d_W")], lines=True)),
                       ("inputs", E.dict_of([])),
                       (None, E.IfElse(E.dict_of([("states", "d_states")]), E.Name("sg"),
                                       E.dict_of([])))],
                      lines=True, notes=["", "none", ""])
    assert show_stmt(S.returns(grads)) == [
        "return {",
        "    'params': {",
        "        'W': d_W,",
        "    },",
        "    'inputs': {},  # none",
        "    **({'states': d_states} if sg else {}),",
        "}"]


def test_a_filled_dict_continues_under_its_brace():
    items = [("params", "params"), ("dims", "dims"), ("state0_given", "g"), ("has_loss", "h")]
    d = E.Dict_(E.dict_of(items).items, fill=44)
    assert show_stmt(S.assign("cache", d)) == [
        "cache = {'params': params, 'dims': dims,",
        "         'state0_given': g, 'has_loss': h}"]
    assert show_stmt(S.assign("c", E.Dict_((), fill=44))) == ["c = {}"]


def test_unpacking_blocks_and_verbatim_runtime():
    dims = S.assign(E.tuple_of("T", "B", bare=True),
                    E.tuple_of(E.subscript("dims", E.lit("T")), E.subscript("dims", E.lit("B")),
                               bare=True))
    assert show_stmt(dims) == ["T, B = dims['T'], dims['B']"]
    block = [S.Import("numpy", "np"), S.BLANK, S.Docstring(("a \"\"\"quote", "b")),
             S.Verbatim("def f():\n    return 1")]
    assert show_block(block) == 'import numpy as np\n\n"""a \\"\\""quote\nb\n"""\n' \
                                'def f():\n    return 1'
    assert show_stmt(S.Comment("x\ny")) == ["# x\\x0ay"]


def test_concatenated_sizes_add_up_to_one_flat_sum():
    from rnnspec.ops import _concat_bound
    n, m = E.Name("n"), E.Name("m")
    two_n_plus_1 = E.Bin("+", E.Bin("*", E.Num(2), n), E.Num(1))
    sizes = [n, two_n_plus_1, m]
    assert show(_concat_bound(0, sizes)) == ":n"
    assert show(_concat_bound(1, sizes)) == "n:n + 2 * n + 1"
    assert show(_concat_bound(2, sizes)) == "n + 2 * n + 1:"


@pytest.mark.parametrize("stem, rtrl", [
    ("lstm", False), ("attention_concat", False), ("teacher_forcing", False),
    ("hierarchical", False), ("generate", False), ("bidirectional", False),
    ("lstm", True), ("h0_from_input", True), ("many_to_one", True), ("skip", True)])
def test_codegen_makes_no_text_leaves(stem, rtrl, monkeypatch):
    """Every value, size, condition and table of a generated module is a node: no expr.Code
    leaf (text with a binding strength read from it) is made while one is generated (with
    rtrl=True: the generated rtrl's too; h0_from_input: a computed initial state, many_to_one:
    a sequence's last step, skip: a state read two steps back)."""
    import rnnspec
    from conftest import SPECS
    made = []
    real = E.Code.__init__
    monkeypatch.setattr(E.Code, "__init__", lambda self, text, level=None: (
        made.append(text), real(self, text, level))[1])
    path = SPECS / f"{stem}.rnn"
    rnnspec.generate(path.read_text(), None, path.name, base=SPECS, rtrl=rtrl)
    assert made == []
    E.node("a[1:]")  # (the spy works: text that is not a name is a Code leaf)
    assert made == ["a[1:]"]


def test_a_statement_prints_the_same_twice_and_its_lines_cannot_be_changed_from_outside():
    loop = S.For(t, E.call("range", T), (S.assign("x", t),))
    first = show_stmt(loop)
    first.append("junk")
    assert show_stmt(loop) == ["for t in range(T):", "    x = t"]
    assert show_block([loop, loop]) == "for t in range(T):\n    x = t\nfor t in range(T):\n    x = t"
