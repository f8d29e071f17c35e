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

BACKENDS = ("numpy", "numba", "array-api")


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; a ValueError naming them otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of " +
                         ", ".join(BACKENDS))
    return backend
