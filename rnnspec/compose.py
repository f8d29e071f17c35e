"""Composition: ``block`` definitions and their uses -> a spec without blocks.

In: a parsed :class:`rnnspec.ast.Spec` that may define blocks (``block lstm(x) -> h { ... }``)
and use them as the whole right-hand side of an equation (``h1[t] = lstm(x[t])``).  Out: the
same spec with every use replaced by the block's statements, renamed for that use: every name
the block declares (parameters, states, values, constants, connection prefixes) gets the prefix
``h1_``, except the block's output, which becomes ``h1`` itself; the block's parameters are bound
to the arguments; its time index becomes the one of the use.  Two uses of a block are two
sub-networks with their own parameters.  Positions stay those of the block's text, so errors
point into the block.  A block may use other blocks.  Errors raise :class:`SpecError`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List

from . import ast
from .errors import Reporter

MAX_DEPTH = 10  # blocks using blocks, at most this deep


def expand_blocks(spec: ast.Spec) -> ast.Spec:
    """Replace every use of a block by its renamed statements."""
    blocks = [st for st in spec.statements if isinstance(st, ast.BlockDecl)]
    if not blocks:
        return spec
    rep = Reporter(spec.source, spec.filename)
    table: Dict[str, ast.BlockDecl] = {}
    for b in blocks:
        if b.name in table:
            rep.error(b, f"block '{b.name}' is already defined (line {table[b.name].line})",
                      "give each block its own name")
        table[b.name] = b
        _check_block(b, rep)
    rep.raise_if_errors()
    out: List[ast.Stmt] = []
    for st in spec.statements:
        if not isinstance(st, ast.BlockDecl):
            out.extend(_expand(st, table, rep, 0))
    rep.raise_if_errors()
    return replace(spec, statements=tuple(out), blocks=tuple(table))


def _check_block(b: ast.BlockDecl, rep: Reporter) -> None:
    declared = set()
    for st in b.statements:
        if isinstance(st, (ast.DimDecl, ast.InputDecl, ast.TargetDecl, ast.Loss, ast.BlockDecl)):
            what = type(st).__name__.replace("Decl", "").lower()
            rep.error(st, f"block '{b.name}' cannot contain a {what} statement",
                      "declare dims, inputs, targets, losses and blocks at the top level; a "
                      "block's inputs are its parameters")
        elif hasattr(st, "name"):
            declared.add(st.name)
    if b.output not in declared:
        rep.error(b, f"block '{b.name}' has no value '{b.output}' to return",
                  f"define it inside the block: {b.output}[t] = ...")
    for p in b.params:
        if p in declared:
            rep.error(b, f"block '{b.name}': '{p}' is both a parameter and defined inside",
                      "rename one of them")


def _uses(expr, table) -> List[ast.Call]:
    """The calls of blocks inside an expression."""
    return [n for n in ast.walk(expr) if isinstance(n, ast.Call) and n.func in table]


def _expand(st: ast.Stmt, table, rep: Reporter, depth: int) -> List[ast.Stmt]:
    exprs = [st.expr] if isinstance(st, (ast.Equation, ast.Loss)) else []
    uses = [c for e in exprs for c in _uses(e, table)]
    if not uses:
        return [st]
    call = uses[0]
    if not isinstance(st, ast.Equation) or st.expr is not call or len(uses) > 1:
        rep.error(call, f"block '{call.func}' must be the whole right-hand side of an equation",
                  f"name its output: h[t] = {call.func}(...), then use h[t]")
        return []
    if depth >= MAX_DEPTH:
        rep.error(call, f"blocks nested more than {MAX_DEPTH} deep (does '{call.func}' use "
                  f"itself?)", "a block cannot use itself")
        return []
    block = table[call.func]
    if st.axis is None:
        rep.error(st, f"block '{block.name}' computes a per-step value", f"write {st.name}"
                  f"[t] = {block.name}(...)")
        return []
    if call.kwargs or len(call.args) != len(block.params):
        rep.error(call, f"block '{block.name}' takes {len(block.params)} argument(s) "
                  f"({', '.join(block.params)}), got {len(call.args) + len(call.kwargs)}",
                  f"{block.name}({', '.join(p + '[t]' for p in block.params)})")
        return []
    prefix = st.name
    names = {s.name: f"{prefix}_{s.name}" for s in block.statements if hasattr(s, "name")}
    names[block.output] = prefix
    out: List[ast.Stmt] = []
    for p, arg in zip(block.params, call.args):
        if isinstance(arg, ast.Ref) and arg.index is not None and arg.index.kind == "rel" \
                and arg.index.offset == 0 and arg.index.var == st.axis:
            names[p] = arg.name
        else:  # an expression: name it
            names[p] = f"{prefix}_{p}"
            out.append(ast.Equation(names[p], st.axis, None, arg, line=arg.line,
                                    column=arg.column))
    for inner in block.statements:
        renamed = _rename_stmt(inner, names, prefix, st.axis)
        if isinstance(inner, ast.Equation) and inner.name == block.output and st.size is not None \
                and renamed.size is None:
            renamed = replace(renamed, size=st.size)
        out.extend(_expand(renamed, table, rep, depth + 1))
    return out


def _rename_stmt(st, names: Dict[str, str], prefix: str, axis: str):
    if isinstance(st, ast.Equation):
        return replace(st, name=names[st.name], axis=axis if st.axis else None,
                       expr=_rename(st.expr, names, prefix, axis))
    if isinstance(st, ast.StateDecl):
        init = names.get(st.init, st.init) if st.init else None
        return replace(st, name=names[st.name], init=init)
    if isinstance(st, (ast.ParamDecl, ast.ConstDecl)):
        return replace(st, name=names[st.name])
    return st


def _rename(e, names: Dict[str, str], prefix: str, axis: str):
    if isinstance(e, ast.Ref):
        index = e.index
        if index is not None and index.kind == "rel":
            index = replace(index, var=axis)
        return replace(e, name=names.get(e.name, e.name), index=index)
    if isinstance(e, ast.Unary):
        return replace(e, operand=_rename(e.operand, names, prefix, axis))
    if isinstance(e, ast.Binary):
        return replace(e, left=_rename(e.left, names, prefix, axis),
                       right=_rename(e.right, names, prefix, axis))
    if isinstance(e, ast.Call):
        kwargs = []
        for k in e.kwargs:
            if k.name == "name" and isinstance(k.value, ast.Ref):  # a connection's own prefix
                kwargs.append(replace(k, value=replace(k.value, name=f"{prefix}_{k.value.name}")))
            elif k.name in ("score", "mask", "init", "bias"):  # option words, not names
                kwargs.append(k)
            else:
                kwargs.append(replace(k, value=_rename(k.value, names, prefix, axis)))
        return replace(e, args=tuple(_rename(a, names, prefix, axis) for a in e.args),
                       kwargs=tuple(kwargs))
    return e
