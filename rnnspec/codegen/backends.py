"""The backends a module can be generated for, and the check of a backend's name.

In: a name from the API (``generate(..., backend=...)``) or the command line (``--backend``).
Out: the name, checked, or a ValueError that lists the backends.  Every backend generates the
same module (the same tables, functions and results); they differ in what runs the arrays:

- ``numpy``: NumPy only (the default);
- ``numba``: the time loops of forward and backward compiled with ``numba.njit`` (the optional
  extra ``rnnspec[numba]``), the all-steps parts NumPy;
- ``array-api``: the array namespace taken from the arrays given (array-api-compat), so that one
  file runs on NumPy, CuPy and torch tensors (the optional extra ``rnnspec[array-api]``).
"""
from __future__ import annotations

import importlib.util

BACKENDS = ("numpy", "numba", "array-api")
EXTRAS = {"numba": "numba"}  # backend -> the package it needs (its extra has the same name)


class BackendUnavailable(ImportError):
    """A backend whose package is not installed (the message says how to install it)."""


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; a ValueError naming them otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of " +
                         ", ".join(BACKENDS))
    package = EXTRAS.get(backend)
    if package and importlib.util.find_spec(package) is None:
        raise BackendUnavailable(f"the {backend} backend needs {package}, which is not "
                                 f'installed: pip install "rnnspec[{backend}]"')
    return backend


NUMBA_HINT = "use the default numpy backend (--backend numpy) for this spec"


def numba_refusal(sched, filename: str, variants=None, checkpoint=None, rtrl=None) -> None:
    """Raise the positioned SpecError naming why the numba backend cannot compile this module
    yet: feedback (its training and generation variants), checkpointing, rtrl.  (What a time
    loop holds that numba's form has no rule for is refused by :mod:`.lift`, at its statement.)"""
    from ..errors import Reporter
    m = sched.graph.model
    rep = Reporter(m.source, m.filename)  # (the spec's path as given, like every error)
    what = "the numba backend cannot compile this yet"
    for node in m.feedbacks[:1] if variants else ():
        rep.error(node, f"{what}: feedback(...) (the free-running and generation variants)",
                  NUMBA_HINT)
    if checkpoint:
        rep.error(m.spec, f"{what}: a checkpointed module (checkpoint={checkpoint})", NUMBA_HINT)
    if rtrl is not None:
        rep.error(m.spec, f"{what}: rtrl (compile --rtrl)", NUMBA_HINT)
    rep.raise_if_errors()


def lift_refusal(model, filename: str, err) -> Exception:
    """The positioned SpecError for :class:`.lift.Unliftable` ``err``: what a time loop holds
    that the numba backend has no form for, at the spec statement it comes from."""
    from ..errors import Reporter
    rep = Reporter(model.source, model.filename)  # (the path as given)
    rep.error(err.origin if err.origin is not None else model.spec,
              f"the numba backend cannot compile this statement's time loop yet: it needs "
              f"{err} at every step", NUMBA_HINT)
    return rep.error_or_none()
