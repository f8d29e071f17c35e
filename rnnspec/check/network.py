"""Whole-network checks, once every equation is typed: states, causality, unused names.

In: the symbol table with every value typed and ``Symbols.references`` (who reads whom, at which
delay).  Out: errors for states without an equation or with an initial value of the wrong kind
or size, for cycles within one time step (a value that needs itself, through delay-0 reads), and
for cycles through a chosen step, a state's initial value or attention (a value needing a whole
sequence that depends on it); warnings for parameters and inputs that are never used.  The
cycles of the references between values (:func:`rnnspec.recurrences.analyse`) are found once,
here, and kept for the graph (``Symbols.cycles``, then ``Model.cycles``).
"""
from __future__ import annotations

from ..delays import ATTEND, INIT, Delay
from ..recurrences import analyse
from .symbols import Symbols


def check_network(sym: Symbols) -> None:
    check_states(sym)
    check_cycles(sym)
    check_unused(sym)


def check_states(sym: Symbols) -> None:
    for name, st in sym.states.items():
        if name not in sym.values:
            sym.rep.error(st.decl, f"state '{name}' has no equation",
                          f"add one: {name}[{sym.axis or 't'}] = ...")
        if st.init == "value":
            v = sym.values[st.init_name]
            pos = (st.decl.init_line, st.decl.init_column)
            if v.seq:
                sym.rep.error(pos, f"initial value of state '{name}': '{v.name}' is a "
                              f"sequence", f"pick one step: {v.name} = ...[end]")
            elif v.size is not None and v.size != st.size:
                sym.rep.error(pos, f"initial value of state '{name}': '{v.name}' has size "
                              f"{v.size}, but the state has size {st.size}",
                              "the initial value must have the state's size")


def check_cycles(sym: Symbols) -> None:
    """The first cycle within one time step, else the first through a whole sequence, from
    the cycles of the references between values (kept for the graph: ``Model.cycles``)."""
    sym.cycles = cycles = analyse((src, dst, delay) for src, dst, delay in sym.references
                                  if src in sym.values and dst in sym.values)
    cycle = cycles.same_step_cycle()
    if cycle is not None:
        _same_step_cycle(sym, list(cycle))
        return
    # src[end] is known only after the last step: nothing src depends on, even through
    # delays, can read it (nor its initial value, nor attention over it)
    whole = cycles.whole_sequence_cycles()
    if whole:
        src, dst, kind = whole[0]
        _whole_sequence_cycle(sym, src, dst, kind, cycles.path(dst, src))


def _same_step_cycle(sym: Symbols, names) -> None:
    first = min(names, key=lambda n: (sym.values[n].eq.line, sym.values[n].eq.column))
    k = names.index(first)
    names = names[k:] + names[:k]
    path = " -> ".join(names + [names[0]])
    if len(names) == 1:
        msg = f"'{first}' depends on itself within one time step ({path})"
    else:
        msg = f"cycle within one time step: {path}"
    static = [n for n in names if not sym.values[n].seq]
    hint = ("break the cycle with a delay, e.g. "
            f"{names[-1]}[{sym.axis or 't'}-1] (and declare it a state)") if not static \
        else (f"'{static[0]}' is static (one value per sequence), so it cannot be "
              f"delayed: compute it from values outside the cycle")
    sym.rep.error(sym.values[first].eq, msg, hint)


def _whole_sequence_cycle(sym: Symbols, src: str, dst: str, kind: Delay, back) -> None:
    """``dst`` needs all of ``src`` (kind ``CHOSEN``, ``INIT`` or ``ATTEND``), which is computed
    from ``dst`` along ``back``."""
    path = " -> ".join([src] + back)
    if kind == INIT:
        st = sym.states[dst]
        sym.rep.error((st.decl.init_line, st.decl.init_column),
                      f"cycle: state '{dst}' starts from '{src}', but '{src}' is "
                      f"computed from '{dst}' ({path})",
                      f"the initial value must be known before '{dst}' runs: compute "
                      f"'{src}' without it")
    elif kind == ATTEND:
        sym.rep.error(sym.values[dst].eq, f"cycle: '{dst}' attends over every step of "
                      f"'{src}', but '{src}' is computed from '{dst}' ({path})",
                      f"attention reads the whole sequence '{src}' after it is complete: "
                      f"attend over a sequence computed without '{dst}'")
    else:
        what = "itself at a fixed step" if src == dst else \
            f"'{src}' at a fixed step, but '{src}' depends on '{dst}'"
        sym.rep.error(sym.values[dst].eq, f"cycle through a chosen step: '{dst}' "
                      f"reads {what} ({path})",
                      f"{src}[end] (or {src}[1], ...) is known only after the time "
                      f"loop: compute '{dst}' without it")


def check_unused(sym: Symbols) -> None:
    for name, p in sym.params.items():
        if name not in sym.used and not p.auto:
            sym.rep.warning(p.node, f"parameter '{name}' is never used",
                            "remove it, or use it in an equation")
    for name, inp in sym.inputs.items():
        if name not in sym.used:
            sym.rep.warning(inp.decl, f"input '{name}' is never used",
                            "remove it, or use it in an equation")
