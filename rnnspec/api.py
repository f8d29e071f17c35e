"""The Python API: spec text or file in, generated module (source or imported) out.

In: spec text (or a path), optional dimension overrides.  Out: :func:`generate` returns the module
source; :func:`compile_source`/:func:`compile_file` import it as a real module, registered with
``linecache`` so that tracebacks and ``inspect.getsource`` show the generated lines.  Any user
error raises :class:`SpecError`; nothing else escapes for bad spec text.
"""
from __future__ import annotations

import hashlib
import importlib.util
import linecache
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .check import Model, check
from .checkpoint import check_segmentable, checkpoint_steps
from .codegen import generate_code
from .codegen.backends import check_backend
from .codegen.rtrl import rtrl_refusal
from .compose import SpecFileError, expand_blocks, read_spec_file
from .fuse import fuse_products
from .errors import SpecError
from .graph import Graph, build_graph
from .parse import parse
from .schedule import Schedule, schedule


@dataclass
class Analysis:
    model: Model
    graph: Graph
    schedule: Schedule


def analyze(text: str, dims: Optional[Dict[str, int]] = None, filename: str = "<spec>",
            base=None, cli: bool = False) -> Analysis:
    """Parse, resolve imports and expand blocks, check, build the graph and schedule it (all
    before codegen).  Import paths are relative to ``base``, by default the directory of
    ``filename`` (the current directory for a bare name such as ``spec.rnn``).  ``cli``: errors
    name the dimension overrides as the command line's ``--dim NAME=VALUE``."""
    spec = expand_blocks(parse(text, filename), base)
    model = check(spec, dims, cli)
    return Analysis(model, *_scheduled(model, "teacher"))


def _scheduled(model: Model, mode: str):
    """The graph of ``model`` in a feedback mode, with fused products, and its schedule."""
    graph = build_graph(model, mode)
    graph = fuse_products(graph, schedule(graph))
    return graph, schedule(graph)


def generate(text: str, dims: Optional[Dict[str, int]] = None, filename: str = "spec.rnn",
             base=None, checkpoint: Optional[int] = None, rtrl: bool = False,
             backend: str = "numpy") -> str:
    """The generated module's source text for spec ``text`` (imports relative to ``base``, see
    :func:`analyze`).  ``checkpoint=k``: a module that stores the states every k steps and
    recomputes the rest in backward (see :mod:`rnnspec.checkpoint`; a SpecError for a spec that
    cannot be segmented exactly).  ``rtrl=True``: the module also has ``rtrl(params, inputs,
    targets, state0=None, lengths=None, per_step=False)``, the loss gradient forward in time
    (see :mod:`rnnspec.codegen.rtrl`; a SpecError for a spec it cannot follow).  ``backend``:
    one of :data:`rnnspec.codegen.backends.BACKENDS` (see there)."""
    check_backend(backend)  # a bad option is refused before the work of analyzing
    if checkpoint is not None:
        checkpoint_steps(checkpoint)
    return render(analyze(text, dims, filename, base), checkpoint, rtrl, backend)


def _rtrl_schedule(a: Analysis) -> Schedule:
    """The schedule the generated rtrl follows: the spec's ops without fused products (each
    product's forward-mode rule stays that of ``W @ v``); a SpecError for a spec that cannot
    be followed step by step."""
    sched = schedule(build_graph(a.model, "teacher"))
    err = rtrl_refusal(sched, a.model.filename)
    if err is not None:
        raise err
    return sched


def render(a: Analysis, checkpoint: Optional[int] = None, rtrl: bool = False,
           backend: str = "numpy") -> str:
    """The generated module's source text for an analysis (see :func:`analyze`); with
    ``checkpoint=k``, checkpointed in segments of k steps; with ``rtrl``, with ``rtrl``; for
    ``backend`` (see :mod:`rnnspec.codegen.backends`)."""
    check_backend(backend)
    name = Path(a.model.filename).name
    unfused = _rtrl_schedule(a) if rtrl else None
    if checkpoint is not None:
        k = checkpoint_steps(checkpoint)
        check_segmentable(a)
        return generate_code(a.schedule, name, checkpoint=k, rtrl=unfused, backend=backend)
    if unfused is not None:
        return generate_code(a.schedule, name, rtrl=unfused, backend=backend)
    variants = None
    if a.model.feedbacks:  # teacher forcing, free-running and generation: three schedules
        variants = {mode: _scheduled(a.model, mode)[1] for mode in ("free", "sample")}
    return generate_code(a.schedule, name, variants, backend=backend)


def load_module(source: str, name: str = "spec", filename: Optional[str] = None
                ) -> types.ModuleType:
    """Import generated ``source`` as module ``name`` (registered in linecache and sys.modules).
    A module of the numba backend is imported from a file (numba's ``cache=True`` needs one):
    see :func:`_numba_file`."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    if NUMBA_IMPORT in source:
        return _import_file(_numba_file(source, name, digest), f"rnnspec_generated.{name}_{digest}")
    filename = filename or f"<rnnspec {name} {digest}>"
    module = types.ModuleType(name)
    module.__file__ = filename
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)
    sys.modules.setdefault(f"rnnspec_generated.{name}_{digest}", module)
    return module


# in the header of a numba backend's module, and nowhere else: at column 0 (the docstring
# indents the spec's lines; its blank lines do not end the header)
NUMBA_IMPORT = "\nimport numba\n"


def cache_dir() -> Path:
    """Where rnnspec keeps the files of compiled numba modules (and numba its compiled loops,
    in their __pycache__): $RNNSPEC_CACHE_DIR, else $XDG_CACHE_HOME/rnnspec, else
    ~/.cache/rnnspec."""
    if os.environ.get("RNNSPEC_CACHE_DIR"):
        return Path(os.environ["RNNSPEC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnspec"


def _numba_file(source: str, name: str, digest: str) -> Path:
    """The file holding ``source`` in :func:`cache_dir`, named by its name and the digest of its
    text (written once, atomically: a second process imports the same file, and numba finds
    the loops it compiled for it)."""
    folder = cache_dir() / "numba"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{digest}.py"
    if not path.is_file() or path.read_text(encoding="utf-8") != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, path)
    return path


def _import_file(path: Path, modname: str) -> types.ModuleType:
    """Import the Python file ``path`` as ``modname`` (registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module


def _module_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return cleaned or "spec"


def compile_source(text: str, dims: Optional[Dict[str, int]] = None, name: str = "spec",
                   base=None, checkpoint: Optional[int] = None, rtrl: bool = False,
                   backend: str = "numpy") -> types.ModuleType:
    """Compile spec ``text`` and return the generated module, imported.  Its imports are
    relative to ``base`` (default: the current directory); ``checkpoint``, ``rtrl``,
    ``backend``: see :func:`generate`."""
    source = generate(text, dims, f"{name}.rnn", base, checkpoint, rtrl, backend)
    return load_module(source, _module_name(name))


def compile_file(path, dims: Optional[Dict[str, int]] = None,
                 checkpoint: Optional[int] = None, rtrl: bool = False,
                 backend: str = "numpy") -> types.ModuleType:
    """Compile the spec file at ``path`` and return the generated module, imported
    (``checkpoint``, ``rtrl``, ``backend``: see :func:`generate`)."""
    path = Path(path)
    text = read_spec(path)
    source = generate(text, dims, str(path), checkpoint=checkpoint, rtrl=rtrl, backend=backend)
    return load_module(source, _module_name(path.stem))


def read_spec(path: Path) -> str:
    """The text of the spec file ``path`` (a regular UTF-8 file: see
    :func:`rnnspec.compose.read_spec_file`); a SpecError at its line 1 otherwise."""
    try:
        return read_spec_file(path, str(path))
    except SpecFileError as exc:
        hint = {"missing": "check the path", "encoding": "save the spec as UTF-8",
                "not a file": "give the path of a regular .rnn file"}.get(
            exc.kind, "check the path and permissions")
        raise SpecError.at(exc.message, "", str(path), 1, 1, hint) from None
