"""Composition: ``block`` definitions and their uses -> a spec without blocks.

In: a parsed :class:`rnnspec.ast.Spec` that may define blocks (``block lstm(x) -> h { ... }``)
and use them as the whole right-hand side of an equation (``h1[t] = lstm(x[t])``).  Out: the
same spec with every use replaced by the block's statements, renamed for that use: every name
the block declares (parameters, states, values, constants, connection prefixes) gets the prefix
``h1_``, except the block's output, which becomes ``h1`` itself; the block's parameters are bound
to the arguments; its time index becomes the one of the use.  Two uses of a block are two
sub-networks with their own parameters.  Positions stay those of the block's text, so errors
point into the block.  A block may use other blocks.  Errors raise :class:`SpecError`.

Imports (relative to the importing file's directory): ``import "f.rnn"`` makes the blocks of
f.rnn (those it defines and those it imports) usable here, ``import a, b from "f.rnn"`` only
some; ``import "f.rnn" as NAME -> OUT`` makes the whole spec f.rnn the block NAME: its per-step
inputs (in order) are the parameters, its per-step value OUT the output; its targets and losses,
and what only they need, are dropped; the dimensions it needs join this file's (this file's own
declaration of a dimension wins).  A block's body uses the blocks of the file that defines it.
The statements of an imported file carry its :class:`rnnspec.ast.Origin`, so that errors about
them show that file.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import ast
from .check import FUNCTIONS, LOSS_FUNCS, suggest
from .errors import Reporter, SpecError

MAX_DEPTH = 10  # blocks using blocks, at most this deep
MAX_IMPORT_DEPTH = 10  # files importing files, at most this deep
MAX_SPEC_BYTES = 16 * 1024 * 1024  # a spec file (or an imported one) is at most this large
SPEC_SUFFIX = ".rnn"  # imports read only files with this suffix (also after symlinks)


class SpecFileError(Exception):
    """A spec file that cannot be read: ``message``; ``kind`` is 'missing', 'not a file' (a
    directory, a FIFO, a device), 'encoding' or 'other' (for the caller's hint)."""

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.message = message
        self.kind = kind


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_spec_file(path, name: str) -> str:
    """The UTF-8 text of the spec file ``path`` (``name``: how messages show it).  Regular files
    only: a directory, a FIFO or a device (``/dev/urandom``) is refused at once, without
    reading or blocking; at most :data:`MAX_SPEC_BYTES`.  :class:`SpecFileError` otherwise."""
    def refuse_kind(mode):
        if stat.S_ISDIR(mode):
            raise SpecFileError(f"{name} is a directory, not a {SPEC_SUFFIX} file", "not a file")
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
            raise SpecFileError(f"{name} is {kind}: specs are read from regular files only",
                                "not a file")
    try:
        refuse_kind(os.stat(path).st_mode)  # before opening: opening a device may act
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) |
                     getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            refuse_kind(st.st_mode)  # (the file may have changed since)
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecFileError(f"no such file: {name}", "missing") from None
    except ValueError:  # a NUL in the path
        raise SpecFileError(f"{name}: a file name cannot contain a NUL character") from None
    except OSError as exc:
        raise SpecFileError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecFileError(f"{name} is larger than {MAX_SPEC_BYTES // 2 ** 20} MB: too large "
                            f"for a spec")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecFileError(f"{name} is not UTF-8 text ({exc.reason})", "encoding") from None


@dataclass(eq=False)
class Block:
    """A block and the blocks its statements may use: those of the file that defines it."""
    decl: ast.BlockDecl
    scope: Dict[str, "Block"]


def expand_blocks(spec: ast.Spec, base=None) -> ast.Spec:
    """Resolve imports and replace every use of a block by its renamed statements.  Import paths
    are relative to ``base`` (default: the directory of ``spec.filename``)."""
    if not any(isinstance(st, (ast.BlockDecl, ast.ImportDecl)) for st in spec.statements):
        return spec
    rep = Reporter(spec.source, spec.filename)
    directory = Path(base) if base is not None else Path(spec.filename).parent
    main = Path(spec.filename)
    chain = ((_resolved(main), spec.filename),) if _is_file_of(main, spec.source) else ()
    imports = _Imports(rep, directory)
    scope, dims_of = imports.scope(spec.statements, directory, chain)
    rep.raise_if_errors()
    out = _flatten(spec.statements, scope, dims_of, rep)
    rep.raise_if_errors()
    return replace(spec, statements=tuple(out), blocks=tuple(scope),
                   imports=tuple((f.relname, f.spec.source) for f in imports.order))


def _flatten(statements, scope, dims_of, rep: Reporter) -> List[ast.Stmt]:
    """The statements of a file without blocks: block uses expanded, an import of a whole spec
    replaced by the dimensions it brings."""
    out: List[ast.Stmt] = []
    for st in statements:
        if isinstance(st, ast.ImportDecl):
            out.extend(dims_of.get(st, ()))
        elif not isinstance(st, ast.BlockDecl):
            out.extend(_expand(st, scope, rep, 0))
    return out


def _is_file_of(path: Path, text: str) -> bool:
    """Whether the spec being compiled is the file ``path`` (so that importing it is a cycle)."""
    try:
        return path.is_file() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # pragma: no cover - a symlink loop
        return path.absolute()


@dataclass(eq=False)
class _File:
    spec: ast.Spec
    name: str  # as shown in messages: the path from the current directory (or absolute)
    relname: str  # the path from the directory of the file being compiled (for the module)
    scope: Dict[str, Block] = field(default_factory=dict)  # its blocks: defined and imported
    dims_of: Dict[ast.ImportDecl, List[ast.DimDecl]] = field(default_factory=dict)
    flat: Optional[List[ast.Stmt]] = None  # its statements, blocks expanded (whole-spec import)
    broken: bool = False  # its imports had errors (reported)


class _Imports:
    """Loads imported files (each once), and resolves the blocks each file can use."""

    def __init__(self, rep: Reporter, main_dir: Path):
        self.rep = rep
        self.main_dir = _resolved(main_dir)
        self.files: Dict[Path, Optional[_File]] = {}
        self.order: List[_File] = []

    def scope(self, statements, directory: Path, chain) -> Tuple[Dict[str, Block], dict]:
        """The blocks a file's statements may use (its own and those it imports), and the
        dimensions each of its whole-spec imports brings."""
        rep = self.rep
        scope: Dict[str, Block] = {}
        for b in statements:
            if isinstance(b, ast.BlockDecl):
                _not_builtin(b.name, b, rep)
                if b.name in scope:
                    rep.error(b, f"block '{b.name}' is already defined "
                              f"({scope[b.name].decl.where()})", "give each block its own name")
                scope[b.name] = Block(b, scope)  # the same dict: imported blocks are added below
                _check_block(b, rep)
        local = set(scope)
        own_dims = {st.name for st in statements if isinstance(st, ast.DimDecl)}
        merged: Dict[str, Tuple[ast.DimDecl, str]] = {}
        dims_of: Dict[ast.ImportDecl, List[ast.DimDecl]] = {}
        for imp in statements:
            if not isinstance(imp, ast.ImportDecl):
                continue
            f = self.load(imp.path, directory, chain)
            if f is None:
                continue
            found: Dict[str, Tuple[Block, ast.Word]] = {}
            if imp.alias is not None:
                _not_builtin(imp.alias.text, imp.alias, rep)
                whole = self.whole(f, imp)
                if whole is None:
                    continue
                block, dims = whole
                found[imp.alias.text] = (block, imp.alias)
                new = []
                for d in dims:
                    if d.name in own_dims:
                        continue  # this file's declaration wins
                    if d.name in merged:
                        first, where = merged[d.name]
                        if first.value != d.value:
                            rep.error(imp.path, f"dimension '{d.name}' is {d.value} in {f.name} "
                                      f"but {first.value} in {where}",
                                      f"declare it in this file (dim {d.name} = ...): this "
                                      f"file's dimensions apply to everything it imports")
                        continue
                    merged[d.name] = (d, f.name)
                    new.append(d)
                dims_of[imp] = new
            elif imp.names:
                for w in imp.names:
                    if w.text in f.scope:
                        found[w.text] = (f.scope[w.text], w)
                    else:
                        rep.error(w, f"{f.name} has no block '{w.text}'",
                                  suggest(w.text, f.scope) or
                                  (f"its blocks: {', '.join(f.scope)}" if f.scope else
                                   f"it defines no blocks; to use the whole spec: import "
                                   f"\"{imp.path.text}\" as NAME -> OUTPUT"))
            else:
                if not f.scope and not f.broken:
                    rep.error(imp.path, f"{f.name} defines no blocks: there is nothing to import",
                              f"to use the whole spec as a block: import \"{imp.path.text}\" "
                              f"as NAME -> OUTPUT")
                found = {name: (b, imp.path) for name, b in f.scope.items()}
            for name, (block, word) in found.items():
                prev = scope.get(name)
                if prev is None:
                    scope[name] = block
                elif prev is not block:  # (the same block imported twice is one block)
                    what = "defined in this file" if name in local else "imported"
                    rep.error(word, f"block '{name}' from {f.name} clashes with the block "
                              f"'{name}' {what} ({prev.decl.where()})",
                              f"rename one of them, or import only the blocks you need: "
                              f"import NAME, ... from \"{imp.path.text}\"")
        return scope, dims_of

    def load(self, word: ast.Word, directory: Path, chain) -> Optional[_File]:
        """The file ``word`` names (relative to ``directory``), its blocks resolved; None (and
        errors reported at ``word``) if it cannot be read or parsed, or imports itself."""
        from .parse import parse
        rep = self.rep
        path = directory / word.text
        name = os.path.normpath(str(path))
        if not word.text.strip():
            rep.error(word, "empty file name", "write the path of a .rnn file, relative to "
                      "this file's directory")
            return None
        resolved = _resolved(path)
        for i, (r, _) in enumerate(chain):
            if r == resolved:
                cycle = " -> ".join([n for _, n in chain[i:]] + [name])
                rep.error(word, f"import cycle: {cycle}", "a file cannot import itself, "
                          "directly or through others: move the shared blocks to a file that "
                          "both import")
                return None
        if len(chain) > MAX_IMPORT_DEPTH:
            rep.error(word, f"imports nested more than {MAX_IMPORT_DEPTH} deep",
                      "import fewer levels of files")
            return None
        if resolved in self.files:
            return self.files[resolved]
        where = "relative to the directory of " + ("the importing file" if chain else
                                                   "this file (or the current directory)")
        if not word.text.lower().endswith(SPEC_SUFFIX) or \
                not str(resolved).lower().endswith(SPEC_SUFFIX):
            # refused unread: the lines of a file that is not a spec are never quoted
            links = "" if word.text.lower().endswith(SPEC_SUFFIX) else None
            rep.error(word, f"{name} is not a {SPEC_SUFFIX} file" if links is None else
                      f"{name} is a link to {resolved}, which is not a {SPEC_SUFFIX} file",
                      f"an import names a spec file ending in {SPEC_SUFFIX} (a path {where}, "
                      f"or absolute)")
            return None
        try:
            text = read_spec_file(path, name)
        except SpecFileError as exc:
            rep.error(word, exc.message, {"encoding": "save the spec as UTF-8",
                                          "other": "check the path and permissions"}.get(
                exc.kind, f"import paths are {where}"))
            return None
        try:
            spec = parse(text, name)
        except SpecError as exc:
            n = len(exc.diagnostics)
            rep.error(word, f"cannot import {name}: it has {n} syntax error{'s' * (n > 1)} "
                      f"(below)", f"fix {name}")
            rep.add(exc.diagnostics)
            self.files[resolved] = None
            return None
        spec = ast.stamp(spec, ast.Origin(name, text))
        spec = replace(spec, source=text)
        f = _File(spec, name, os.path.relpath(resolved, self.main_dir).replace(os.sep, "/"))
        self.files[resolved] = f
        errors = len(rep.errors)
        f.scope, f.dims_of = self.scope(spec.statements, path.parent,
                                        tuple(chain) + ((resolved, name),))
        f.broken = len(rep.errors) > errors
        self.order.append(f)
        return f

    def whole(self, f: _File, imp: ast.ImportDecl):
        """The spec of ``f`` as a block (its per-step inputs are the parameters, ``imp.output``
        the result; its targets, losses and whatever only they need are dropped), and the
        dimensions that block needs; None after an error."""
        rep = self.rep
        alias, output = imp.alias, imp.output
        if f.flat is None:
            f.flat = _flatten(f.spec.statements, f.scope, f.dims_of, rep)
        flat = f.flat
        inputs = [st for st in flat if isinstance(st, ast.InputDecl)]
        ok = True
        for inp in inputs:
            if inp.axis is None:
                rep.error(alias, f"{f.name} has a static input '{inp.name}' ({inp.where()}): a "
                          f"spec used as a block takes per-step inputs only",
                          f"import its blocks instead: import NAME from \"{imp.path.text}\"")
                ok = False
        axes = sorted({a for inp in inputs for a in (inp.axis, inp.within)
                       if a})
        if len(axes) > 1:
            rep.error(alias, f"{f.name} runs over several time axes ({', '.join(axes)}): a spec "
                      f"used as a block runs over one", f"import its blocks instead: import "
                      f"NAME from \"{imp.path.text}\"")
            ok = False
        per_step = {st.name: st for st in flat if isinstance(st, ast.Equation) and st.axis}
        if output.text not in per_step:
            static = any(isinstance(st, ast.Equation) and st.name == output.text for st in flat)
            rep.error(output, f"{f.name} has no per-step value '{output.text}' to return" +
                      (" (it is a static value)" if static else ""),
                      suggest(output.text, per_step) or
                      f"its per-step values: {', '.join(per_step) or 'none'}")
            return None
        if not ok:
            return None
        declared: Dict[str, list] = {}
        for st in flat:
            if isinstance(st, (ast.ParamDecl, ast.ConstDecl, ast.StateDecl, ast.Equation)):
                declared.setdefault(st.name, []).append(st)
        targets = {st.name: st for st in flat if isinstance(st, ast.TargetDecl)}
        keep, seen, todo = set(), set(), [output.text]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in targets:
                rep.error(output, f"'{output.text}' of {f.name} depends on its target '{name}' "
                          f"({targets[name].where()})", "a spec used as a block cannot read "
                          "its targets: import its blocks instead")
                return None
            for st in declared.get(name, ()):
                keep.add(id(st))
                todo.extend(n.name for n in ast.nodes(st) if isinstance(n, ast.Ref))
                if isinstance(st, ast.StateDecl) and st.init:
                    todo.append(st.init)
        body = tuple(st for st in flat if id(st) in keep)
        dims = {st.name: st for st in flat if isinstance(st, ast.DimDecl)}
        bound: Dict[str, ast.SizeExpr] = {}
        for b in imp.dims:
            if b.name not in dims:
                rep.error(b, f"{f.name} has no dimension '{b.name}'",
                          suggest(b.name, dims) or f"its dimensions: {', '.join(dims) or 'none'}")
            elif b.name in bound:
                rep.error(b, f"dimension '{b.name}' is set twice", "set it once")
            bound[b.name] = b.size
        if bound:
            body = _bind_dims(body, bound)
        used = {n.dim for n in ast.nodes(body) if isinstance(n, ast.SizeTerm) and n.dim} | \
            {n.name for n in ast.nodes(body) if isinstance(n, ast.Ref)}
        decl = ast.BlockDecl(alias.text, tuple(inp.name for inp in inputs), output.text, body,
                             line=alias.line, column=alias.column, origin=alias.origin)
        return Block(decl, {}), [d for name, d in dims.items() if name in used]


def _bind_dims(node, bound: Dict[str, ast.SizeExpr]):
    """``node`` with the dimensions ``bound`` replaced by their sizes (``2*in`` with in = a + 1
    becomes ``2*a + 2``)."""
    if isinstance(node, tuple):
        return tuple(_bind_dims(n, bound) for n in node)
    if isinstance(node, ast.SizeExpr):
        terms = []
        for term in node.terms:
            if term.dim in bound:
                terms.extend(replace(u, coef=u.coef * term.coef) for u in bound[term.dim].terms)
            else:
                terms.append(term)
        return replace(node, terms=tuple(terms))
    if not isinstance(node, ast.Node):
        return node
    changes = {f.name: _bind_dims(getattr(node, f.name), bound) for f in fields(node)
               if f.name not in ("line", "column", "origin")}
    return replace(node, **changes)


def _not_builtin(name: str, node, rep: Reporter) -> None:
    """A block named like a built-in function would silently replace it in every call."""
    if name in FUNCTIONS + LOSS_FUNCS:
        rep.error(node, f"a block cannot be named '{name}': that is a built-in function",
                  f"give it another name, e.g. {name}_block")


def _check_block(b: ast.BlockDecl, rep: Reporter) -> None:
    declared = set()
    for st in b.statements:
        if isinstance(st, (ast.DimDecl, ast.InputDecl, ast.TargetDecl, ast.Loss, ast.BlockDecl,
                           ast.ImportDecl)):
            what = type(st).__name__.replace("Decl", "").lower()
            rep.error(st, f"block '{b.name}' cannot contain a{'n' * (what[0] in 'aeiou')} {what} "
                      f"statement",
                      "declare dims, inputs, targets, losses, blocks and imports at the top "
                      "level; a block's inputs are its parameters")
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
    block, scope = table[call.func].decl, table[call.func].scope
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
                                    column=arg.column, origin=arg.origin))
    for inner in block.statements:
        renamed = _rename_stmt(inner, names, prefix, st.axis)
        if isinstance(inner, ast.Equation) and inner.name == block.output and st.size is not None \
                and renamed.size is None:
            renamed = replace(renamed, size=st.size)
        out.extend(_expand(renamed, scope, rep, depth + 1))
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
