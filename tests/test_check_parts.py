"""Unit tests of the parts of the check (rnnspec/check/): the builtin table, the typing context,
the symbol table's created parameters, and the checker's independence of typing order."""
import dataclasses
import re

import pytest

import rnnspec
from conftest import ROOT, SPECS
from rnnspec import ast
from rnnspec.check import (BUILTINS, FUNCTIONS, LOSS_FUNCS, MAX_SUGGESTIONS, STATIC, STEP, Context,
                           Symbols, Ty)
from rnnspec.check import elaborate, functions
from rnnspec.check.model import ValueInfo
from rnnspec.compose import expand_blocks
from rnnspec.ops import RULES
from rnnspec.parse import parse
from rnnspec.sizes import Size

CALLS = "dim n = 3\ninput x[t]: n\nstate h: n\nh[t] = {}\n"


def _errors(text):
    with pytest.raises(rnnspec.SpecError) as info:
        rnnspec.generate(text, filename="bad.rnn")
    return info.value.diagnostics


# ---- the builtin table ----------------------------------------------------------------------
def test_builtin_table_is_the_functions_and_the_loss_ops():
    assert set(BUILTINS) == set(FUNCTIONS) | set(LOSS_FUNCS)
    assert len(BUILTINS) == len(FUNCTIONS) + len(LOSS_FUNCS)
    assert set(LOSS_FUNCS) == {name for name, rule in RULES.items() if rule.loss}
    # the order the hints list them in
    assert FUNCTIONS == ("tanh", "sigmoid", "relu", "identity", "exp", "log", "softmax",
                         "concat", "affine", "gate", "attend", "feedback", "onehot", "embed")


def test_every_function_documented_or_used_is_in_the_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    functions_line = readme[readme.index("**Functions**"):readme.index("**Connections**")]
    documented = set(re.findall(r"`([a-z_]+)", functions_line))
    documented |= {"affine", "gate", "attend", "feedback", "onehot", "cross_entropy",
                   "squared_error"}
    assert documented <= set(BUILTINS)
    used = set()
    for path in sorted(SPECS.glob("*.rnn")):
        spec = expand_blocks(parse(path.read_text(encoding="utf-8"), str(path)), SPECS)
        for st in spec.statements:
            for node in ast.walk(getattr(st, "expr", None)) if hasattr(st, "expr") else ():
                if isinstance(node, ast.Call):
                    used.add(node.func)
    assert used and used <= set(BUILTINS), used - set(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_each_builtin_reaches_its_own_typing_function(name):
    """A call of every builtin with a keyword none takes: refused by its own entry (never as
    an unknown function)."""
    diags = _errors(CALLS.format(f"{name}(x[t], nope=1)"))
    messages = [d.message for d in diags]
    assert not any("unknown function" in m for m in messages), messages
    assert any(name in m for m in messages), messages


def test_an_unknown_function_is_refused_with_its_position_and_a_suggestion():
    text = CALLS.format("tanh(x[t]) + tanhh(x[t])")
    (d,) = _errors(text)
    assert d.message == "unknown function 'tanhh'"
    assert (d.line, d.column) == (4, 21)
    assert d.hint == "did you mean 'tanh'?"
    (d,) = _errors(CALLS.format("zzz(x[t])"))
    assert d.hint == "functions: " + ", ".join(FUNCTIONS)


def test_the_table_dispatches_by_name(monkeypatch):
    unary = ("tanh", "sigmoid", "relu", "identity", "exp", "log")
    expected = {**{name: functions.unary for name in unary},
                "softmax": functions.softmax, "concat": functions.concat,
                "affine": elaborate.connection, "gate": elaborate.connection,
                "attend": elaborate.attention, "feedback": functions.feedback,
                "onehot": functions.onehot, "embed": elaborate.embedding,
                "cross_entropy": functions.loss_outside_loss,
                "squared_error": functions.loss_outside_loss}
    assert set(BUILTINS) == set(expected)
    for name, typer in expected.items():
        assert BUILTINS[name] is typer, (name, BUILTINS[name])
    seen = []

    def spy(sym, call, ctx):
        seen.append((call.func, ctx.owner, ctx.seq, ctx.axis))
        return sym.note(call, ctx.ty("vec", Size.dim("n"), None, STEP))

    monkeypatch.setitem(functions.BUILTINS, "relu", spy)
    rnnspec.generate(CALLS.format("tanh(relu(x[t]) + h[t-1])") + "o[t] = softmax(h[t])\n",
                     filename="ok.rnn")
    assert seen == [("relu", "h", True, "t")]


# ---- the context ----------------------------------------------------------------------------
def _value(name="h", axis="t", size=Size.dim("n")):
    eq = ast.Equation(name, axis, None, ast.Num(1.0, line=1, column=1), line=1, column=1)
    return ValueInfo(name, axis is not None, eq, size)


def test_context_of_a_value_and_its_changed_copies():
    ctx = Context.of_value(_value())
    assert (ctx.owner, ctx.seq, ctx.axis, ctx.expected, ctx.teacher) == \
        ("h", True, "t", Size.dim("n"), False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.axis = "i"
    operand = ctx.operand()
    assert operand.expected is None and operand.owner == "h" and operand.axis == "t"
    assert ctx.expected == Size.dim("n")  # unchanged
    teacher = operand.teacher_side()
    assert teacher.teacher and not operand.teacher and teacher.expected is None
    assert not teacher.free_side().teacher
    static = Context.of_value(_value("c", None, None))
    assert (static.seq, static.axis) == (False, None)


def test_context_types_put_only_per_step_parts_on_the_axis():
    ctx = Context.of_value(_value(axis="i"))
    assert ctx.ty("vec", Size.dim("n"), None, STEP) == Ty("vec", Size.dim("n"), None, STEP, "i")
    assert ctx.ty("vec", Size.dim("n"), None, STATIC).axis is None


TEACHER = """dim in = 3
dim out = 4
input x[t]: in
target y[t]: class(out) = 0
param U: (out, in)
state o: out = zeros
{}
o[t] = softmax(U @ x[t] + fb[t])
loss = cross_entropy(o[t], y[t])
"""


def test_the_teacher_side_lasts_for_the_whole_first_argument():
    """A feedback() inside the teacher side of another does not end it for what follows."""
    for fb in ("feedback(feedback(onehot(y[t-1]), o[t-1]) + onehot(y[t-1]), o[t-1])",
               "feedback(onehot(y[t-1]) + feedback(onehot(y[t-1]), o[t-1]), o[t-1])"):
        mod = rnnspec.compile_source(TEACHER.format(f"fb[t] = {fb}"), name="nested_feedback")
        assert rnnspec.gradcheck(mod, T=3).ok
    diags = _errors(TEACHER.format("fb[t] = feedback(o[t-1], onehot(y[t-1]))"))
    assert (7, 26) in {(d.line, d.column) for d in diags if "only on the teacher side" in d.message}


CYCLE = TEACHER.replace("{}", "{}\n{}").replace("fb[t]", "b[t]")
A = "a[t] = tanh(onehot(y[t-1]) + U @ x[t] + b[t])"
B = "b[t] = feedback(onehot(y[t-1]) + a[t], o[t-1])"


def test_an_equation_typed_from_inside_another_is_typed_in_its_own_context():
    """Whichever is declared first, a's onehot() is not on a teacher side (the context of b's
    feedback does not reach a's equation, typed while b's is because they read each other)."""
    teacher_only = "targets are fed to the network only on the teacher side of feedback()"
    for text, a_line in ((CYCLE.format(A, B), 7), (CYCLE.format(B, A), 8)):
        diags = _errors(text)
        assert [(d.line, d.column) for d in diags if d.message == teacher_only] == [(a_line, 13)]
        assert any(d.message.startswith("cycle within one time step") for d in diags)


# ---- the symbol table -----------------------------------------------------------------------
def test_created_parameters_are_refused_on_a_taken_name_and_each_reported():
    diags = _errors("dim n = 3\ninput x[t]: n\nparam W_h_x: (n, n)\nparam b_h: n\n"
                    "h[t]: n = affine(x[t])\n")
    assert [d.message for d in diags] == [
        "affine(...) creates parameter 'W_h_x', but that name is already used (line 3)",
        "affine(...) creates parameter 'b_h', but that name is already used (line 4)"]
    assert all(d.hint == "give the connection its own prefix with name=..." for d in diags)
    spec = parse("dim n = 3\n", "s.rnn")
    sym = Symbols(spec, {})
    call = ast.Call("attend", (), (), line=1, column=1)
    assert sym.create_param(call, "Wa_c", (Size.dim("n"),), "normal", 0.1, maker="attention")
    assert sym.params["Wa_c"].auto and "Wa_c" in sym.used
    assert not sym.create_param(call, "Wa_c", (Size.dim("n"),), "normal", 0.1,
                                maker="attention")
    assert sym.rep.errors[-1].hint == "give the attention its own prefix with name=..."


def test_undefined_keys_of_attention_share_the_did_you_mean_cap():
    """attend(q, keys) over an undefined name goes the way of every undefined name: a
    did-you-mean for the first MAX_SUGGESTIONS of them (counted together), the hint after."""
    n = MAX_SUGGESTIONS + 3
    text = "dim n = 3\ninput x[t]: n\nh[t] = tanh(x[t] + hx[t])\n" + "".join(
        f"c{k}[t] = attend(h[t], hh)\n" for k in range(n))
    diags = [d for d in _errors(text) if d.message in ("undefined name 'hx'",
                                                       "undefined name 'hh'")]
    assert len(diags) == n + 1 and diags[0].message == "undefined name 'hx'"
    hints = [d.hint for d in diags[1:]]
    assert hints == ["did you mean 'h'?"] * (MAX_SUGGESTIONS - 1) + [
        "attend over an input or a value with a time index, such as h"] * (n - MAX_SUGGESTIONS + 1)
