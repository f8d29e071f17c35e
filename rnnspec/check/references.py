"""References: a name with its time index (``h[t-1]``, ``x[t]``, ``h[end]``, ``W``) -> its type.

In: an ``ast.Ref`` and its :class:`.context.Context`.  Out: the type of what it reads (a value
of unknown size is typed on the spot, :func:`.values.value_size`), and one entry per value read in
``Symbols.references`` (source, reader, :mod:`~rnnspec.delays` delay: a ``Step``, or
``CHOSEN`` for a chosen step).  Reported
here: undefined names (did-you-mean for the first :data:`~.symbols.MAX_SUGGESTIONS`), indices on
names without steps, sequences read without a step, on another axis or from a static value,
delayed or later steps of values that are not states, steps before the first, and delays that
would keep more than :data:`MAX_STEP_BYTES` per sequence.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from .. import ast
from ..ast import unparse
from ..delays import CHOSEN, SAME, Step
from ..sizes import Size
from . import values
from .context import Context
from .model import PARAM, STATIC, STEP, Ty
from .symbols import MAX_SUGGESTIONS, Symbols, suggest

MAX_STEP_BYTES = 2 ** 30  # a delay or step number may ask for at most this per sequence


def type_ref(sym: Symbols, r: ast.Ref, ctx: Context) -> Optional[Ty]:
    """The type of what ``r`` reads (marked used): a parameter, const, input or value."""
    name, ix = r.name, r.index
    sym.used.add(name)
    if name in sym.params or name in sym.consts:
        if ix is not None:
            sym.rep.error(ix, f"'{name}' is a {sym.kind_of[name]}: it has no time index",
                          f"write {name}")
            return None
        if name in sym.consts:
            return Ty("scalar")
        p = sym.params[name]
        return Ty(p.kind, *(p.shape + (None, None))[:2], tk=PARAM)
    if name in sym.inputs:
        inp = sym.inputs[name]
        if inp.kind == "class":
            sym.rep.error(r, f"'{name}' is a class input (indices, not a vector): read it "
                          f"through embed() or onehot()",
                          f"embed({name}[{inp.axis}], 16) or onehot({name}[{inp.axis}])")
            return None
        if not inp.seq:
            if ix is not None:
                sym.rep.error(ix, f"'{name}' is a static input: it has no time index",
                              f"write {name}")
                return None
            return static_ref(sym, r, ctx, Ty("vec", inp.size, tk=STATIC))
        return seq_ref(sym, r, ctx, inp.size, is_state=False, what="input", axis=inp.axis)
    if name in sym.values:
        return _value_ref(sym, r, ctx)
    return _not_readable(sym, r)


def _value_ref(sym: Symbols, r: ast.Ref, ctx: Context) -> Optional[Ty]:
    name, ix = r.name, r.index
    info = sym.values[name]
    size = info.size if info.size is not None else values.value_size(sym, name)
    if size is None:
        if ix is not None and ix.kind == "rel" and ix.offset != 0:
            # a delayed or future reference to a value that is not a state (states have
            # a size): wrong whatever the size, seq_ref says why
            return seq_ref(sym, r, ctx, size, is_state=False, what="value", axis=info.axis)
        # a same-step reference to a value being inferred (or that could not be, for the
        # same reason): a cycle, reported with its path by the network checks
        sym.references.append((name, ctx.owner, SAME if ix is None or ix.kind == "rel"
                               else CHOSEN))
        return None
    if not info.seq:
        if ix is not None:
            sym.rep.error(ix, f"'{name}' is a static value: it has no time index",
                          f"write {name}")
            return None
        sym.references.append((name, ctx.owner, SAME))
        return static_ref(sym, r, ctx, Ty("vec", size, tk=STATIC))
    return seq_ref(sym, r, ctx, size, is_state=name in sym.states, what="value",
                   axis=info.axis)


def _not_readable(sym: Symbols, r: ast.Ref) -> None:
    """A name that is not an input, parameter, const or value: say what it is instead."""
    name = r.name
    if name in sym.targets:
        sym.rep.error(r, f"'{name}' is a target: targets can only be used in a loss",
                      "feed a value, not a target, into the network")
        return None
    if name in sym.dims:
        sym.rep.error(r, f"'{name}' is a dimension, not a value",
                      "use a const or a param for a number")
        return None
    if name in sym.states:  # a state with no equation (reported by the network checks)
        return None
    undefined_name(sym, r, lambda: list(sym.params) + list(sym.inputs) + list(sym.values) +
                   list(sym.consts), "declare it as an input, param, state, const or with an "
                   "equation")
    return None


def undefined_name(sym: Symbols, r: ast.Ref, known: Callable[[], List[str]], hint: str) -> None:
    """Report ``r``'s name as undefined: did you mean one of ``known()``, else ``hint``.  The
    did-you-mean is for the first :data:`MAX_SUGGESTIONS` undefined names only (each costs a
    search of all names)."""
    sym.undefined += 1
    close = suggest(r.name, known()) if sym.undefined <= MAX_SUGGESTIONS else ""
    sym.rep.error(r, f"undefined name '{r.name}'", close or hint)


def static_ref(sym: Symbols, r: ast.Ref, ctx: Context, ty: Ty) -> Optional[Ty]:
    """One vector per sequence: not readable from the steps of a nested axis (whose batch
    is every step s of every sequence)."""
    if ctx.seq and ctx.axis in sym.nested:
        inner, outer = ctx.axis, sym.nested[ctx.axis]
        sym.rep.error(r, f"'{unparse(r)}' is one vector per sequence, but the steps "
                      f"{inner} run inside every step {outer}",
                      f"compute what the steps {inner} need from them, their inputs and "
                      f"parameters")
        return None
    return ty


def seq_ref(sym: Symbols, r: ast.Ref, ctx: Context, size: Optional[Size], is_state: bool,
            what: str, axis: Optional[str] = None) -> Optional[Ty]:
    """A reference to a sequence (an input or a value over ``axis``) at a step."""
    name, ix = r.name, r.index
    if _too_many_bytes(sym, r, size):
        return None
    ax = axis or sym.axis or "t"
    if ix is None:
        sym.rep.error(r, f"'{name}' is a sequence: say which step", f"write {name}"
                      f"[{ax}], {name}[{ax}-1] or {name}[end] (or attend over it)")
        return None
    if ix.kind in ("abs", "end"):
        return _chosen_step(sym, r, ctx, size, ax)
    return _relative_step(sym, r, ctx, size, is_state, what, ax)


def _too_many_bytes(sym: Symbols, r: ast.Ref, size: Optional[Size]) -> bool:
    """A delay or step number whose steps would take more than MAX_STEP_BYTES (reported)."""
    name, ix = r.name, r.index
    need = abs(ix.offset) * size.evaluate(sym.dims) * 8 if ix is not None and \
        ix.kind in ("rel", "abs", "end") and size is not None else 0  # bytes, in float64
    if need <= MAX_STEP_BYTES:
        return False
    what_steps = f"keeps {abs(ix.offset)} steps of '{name}'" if ix.kind == "rel" else \
        f"needs at least {abs(ix.offset)} steps"
    sym.rep.error(ix, f"'{unparse(r)}' {what_steps}: {need / 2**30:.1f} GiB for every "
                  f"sequence of the batch (in float64), more than "
                  f"{MAX_STEP_BYTES / 2**30:.0f} GiB",
                  "read a nearer step (a delay or step number of at most a few "
                  "thousand), or a smaller size")
    return True


def _chosen_step(sym: Symbols, r: ast.Ref, ctx: Context, size: Optional[Size], ax: str
                 ) -> Optional[Ty]:
    """``h[end]``, ``h[end-k]``, ``h[3]``: one step of the sequence, known after it."""
    name, ix = r.name, r.index
    if ix.kind == "abs" and ix.offset == 0 and name in sym.states:
        sym.rep.error(ix, f"{name}[0] is the initial value of state '{name}', which an "
                      f"equation cannot read: steps are numbered from 1",
                      f"it is set by the declaration (state {name}: ... = zeros, a "
                      f"parameter or an input) or passed in state0; write {name}[1] "
                      f"for the first step")
        return None
    if ix.kind == "abs" and ix.offset < 1:
        sym.rep.error(ix, f"step {ix.offset} does not exist: steps are numbered from 1",
                      f"write {name}[1] for the first step")
        return None
    if ax in sym.nested:  # a chosen step w of every step s: one vector per step s
        outer = sym.nested[ax]
        if not ctx.seq or ctx.axis != outer:
            sym.rep.error(r, f"'{unparse(r)}' is a step {ax} of every step {outer}: "
                          f"one vector per step {outer}",
                          f"read it in a value over {outer}: v[{outer}] = {unparse(r)}")
            return None
        sym.references.append((name, ctx.owner, CHOSEN))
        return Ty("vec", size, tk=STEP, axis=outer)
    sym.references.append((name, ctx.owner, CHOSEN))
    return static_ref(sym, r, ctx, Ty("vec", size, tk=STATIC))


def _relative_step(sym: Symbols, r: ast.Ref, ctx: Context, size: Optional[Size],
                   is_state: bool, what: str, ax: str) -> Optional[Ty]:
    """``h[t]``, ``h[t-d]``, ``g[t+d]``: a step relative to the equation's own."""
    name, ix = r.name, r.index
    if ix.var != ax:
        if ix.var in sym.axes:
            sym.rep.error(ix, f"'{name}' runs over steps {ax}, not {ix.var}",
                          f"write {name}[{ax}]" + (f", or use {name}[end] or attend({name})"
                                                   f" from the steps of {ix.var}"
                                                   if ctx.axis != ax else ""))
        else:
            sym.rep.error(ix, f"unknown time index '{ix.var}'",
                          f"the time index of '{name}' is '{ax}'")
        return None
    if ctx.seq and ctx.axis != ax:
        sym.rep.error(r, f"'{name}[{ix.text()}]' runs over steps {ax}, but "
                      f"'{ctx.owner}' is computed at each step {ctx.axis}",
                      f"a different sequence can be read as {name}[end] or through "
                      f"attend(..., {name})")
        return None
    if not ctx.seq:
        sym.rep.error(r, f"static value '{ctx.owner}' cannot depend on step {ix.var}",
                      f"pick one step: {name}[end]")
        return None
    if ix.offset != 0 and not is_state:
        _not_a_state(sym, r, size, what)
        return None
    sym.references.append((name, ctx.owner, Step(-ix.offset)))
    return Ty("vec", size, tk=STEP, axis=ax)


def _not_a_state(sym: Symbols, r: ast.Ref, size: Optional[Size], what: str) -> None:
    """A later (``x[t+1]``) or delayed (``x[t-1]``) step of an input or a value that is not a
    state: it has no value after the last step or before the first."""
    name, ix = r.name, r.index
    kind = "an input" if what == "input" else "not a state"
    if ix.offset > 0:
        sym.rep.error(ix, f"'{name}[{ix.text()}]' refers to a later step, but '{name}' is "
                      f"{kind} and has no value after the last step",
                      f"for a recurrence running backward in time, declare a state: state "
                      f"{name}: {size or 'SIZE'} = zeros" if what != "input" else
                      f"feed {name}[{ix.var}] into a state that runs backward in time "
                      f"(g[{ix.var}] = f(g[{ix.var}+1], {name}[{ix.var}]))")
    else:
        sym.rep.error(ix, f"'{name}[{ix.text()}]' is a delayed reference, but '{name}' is "
                      f"{kind} and has no initial value",
                      f"declare it as a state with an initial value: state {name}: "
                      f"{size or 'SIZE'} = zeros" if what != "input" else
                      f"feed {name}[{ix.var}] into a state and delay that state instead")
