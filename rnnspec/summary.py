"""The summary ``rnnspec check`` prints, laid out like Keras' ``model.summary()``.

In: an :class:`rnnspec.api.Analysis` (the checked model and its schedule).  Out: the text of
:func:`summary`: one row for everything the network reads or computes, in the spec's order
(inputs and targets, states with their initial value and direction, values, loss terms), each
with its kind, size, steps, the parameters it creates (connections, attention) and the line
that defines it; then the parameter table and the totals (counts, parameters, and their bytes
in float64 and float32).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from . import ast
from .schedule import state_directions

Row = Tuple[str, ...]


def summary(a) -> str:
    """The summary text of analysis ``a`` (see the module docstring)."""
    m = a.model
    directions = {n: (d, axis) for n, d, axis in state_directions(a.schedule)}
    owned = _params_by_value(m)
    rows: List[Row] = []
    for kind, infos in (("input", m.inputs), ("target", m.targets)):
        for n, info in infos.items():
            size = f"class({_size(info.size, m)})" if info.kind == "class" else \
                _size(info.size, m)
            rows.append((n, kind, size, _steps(info.seq, info.decl), "", _line(m, info.decl)))
    for n, info in m.values.items():
        kind = "value"
        if n in m.states:
            st = m.states[n]
            d, axis = directions.get(n, ("not recurrent", None))
            kind = f"state ({_initial(st)}; {d}{' in ' + axis if axis else ''})"
        rows.append((n, kind, _size(info.size, m) if info.size is not None else "",
                     _steps(info.seq, info.eq), _count(owned.get(n, ()), m),
                     _line(m, info.eq)))
    for k, loss in enumerate(m.losses):
        rows.append((f"loss[{k}]" if len(m.losses) > 1 else "loss", "loss",
                     "scalar", _loss_steps(loss), "", _line(m, loss.node)))
    params = _param_rows(m)
    total = sum(int(r[2]) for r in params)
    head = ("name", "kind", "size", "steps", "params", "defined by")
    out = [_table(head, rows), "", _table(("parameter", "shape", "count", "initializer", ""),
                                          params)]
    counts = ", ".join(_plural(len(group), word) for group, word in (
        (m.inputs, "input"), (m.targets, "target"), (m.states, "state"), (m.values, "value"),
        (m.losses, "loss term")))
    out.append(f"total: {total} parameters ({_bytes(8 * total)} as float64, "
               f"{_bytes(4 * total)} as float32); {counts}")
    return "\n".join(out)


def _param_rows(m) -> List[Row]:
    rows = []
    for name, p in m.params.items():
        shape = "×".join(s.text() for s in p.shape) or "scalar"
        init = p.init + (f"({p.init_arg:g})" if p.init_arg is not None else "")
        rows.append((name, shape, str(_entries(m, name)), init, "auto" if p.auto else ""))
    return rows


def _entries(m, name: str) -> int:
    """The number of entries of parameter ``name`` at the model's dims."""
    count = 1
    for s in m.params[name].shape:
        count *= s.evaluate(m.dims)
    return count


def _params_by_value(m) -> Dict[str, List[str]]:
    """value -> the parameters its equation creates (connections, attention, embeddings)."""
    calls = {id(c): [w for w, _ in conn.weights] + ([conn.bias] if conn.bias else [])
             for c, conn in m.connections.items()}
    calls.update({id(c): [E] for c, E in m.embeds.items()})
    for c, att in m.attentions.items():
        calls[id(c)] = list(att.params.values())
    out: Dict[str, List[str]] = {}
    for n, info in m.values.items():
        for node in ast.walk(info.eq.expr):
            out.setdefault(n, []).extend(calls.get(id(node), []))
    return out


def _count(names: Sequence[str], m) -> str:
    return str(sum(_entries(m, n) for n in names)) if names else ""


def _size(size, m) -> str:
    text = size.text()
    value = size.evaluate(m.dims)
    return text if text == str(value) else f"{text}={value}"


def _steps(seq: bool, node) -> str:
    axis = getattr(node, "axis", None)
    within = getattr(node, "within", None)
    if not seq:
        return "one per sequence"
    return f"every {axis}" + (f" in {within}" if within else "")


def _initial(st) -> str:
    return {"zeros": "from zeros", "given": "from state0", "param": f"from {st.init_name}",
            "input": f"from {st.init_name}"}.get(st.init, f"from {st.init_name or st.init}")


def _loss_steps(loss) -> str:
    if loss.steps:
        return "steps " + ", ".join(i.text() for i in loss.steps)
    return f"{loss.reduce} over steps" if loss.pred.index is not None else loss.reduce


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _line(m, node) -> str:
    """``line: its text`` (shortened), of the imported file a node came from when it did."""
    origin = getattr(node, "origin", None)
    source = m.source if origin is None else origin.source
    text = source.splitlines()[node.line - 1].strip()
    text = text if len(text) <= 48 else text[:45] + "..."
    where = str(node.line) if origin is None else f"{origin.filename}:{node.line}"
    return f"{where}: {text}"


def _bytes(n: int) -> str:
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _table(head: Row, rows: List[Row]) -> str:
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)
