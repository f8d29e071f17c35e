"""Gradient clipping (004 3.4): elementwise, by the global norm, or a random step of norm v.

In: a gradient dict (arrays, or dicts of arrays nested to any depth, such as what a generated
``backward`` returns, or its ``['params']``) and one threshold.  Out: :func:`clip_grads` returns
``(clipped, norm)``: a new dict of the same nesting (the input is not changed) and the global
L2 norm of all its arrays *before* clipping (what a training log shows).
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from .truncation import _rng


def clip_grads(grads: dict, value: Optional[float] = None, norm: Optional[float] = None,
               random: bool = False, seed=None, error_if_nonfinite: bool = False
               ) -> Tuple[dict, float]:
    """Clip the gradients ``grads`` (a dict of arrays, nested to any depth); exactly one of:

    * ``value=v``: every entry into [-v, v] (``sign(g_i) * v`` past it);
    * ``norm=v``: when the global norm ``||g||`` over all arrays exceeds v, every array times
      ``v / ||g||`` (the direction kept);
    * ``norm=v, random=True``: when ``||g||`` exceeds v, a random direction (uniform on the
      sphere, drawn with ``seed``) of norm v instead (004 3.4, item 2).

    Returns ``(clipped, norm before clipping)``.  An inf or NaN in the gradients makes the norm
    inf or NaN, and norm clipping then turns the infs into NaNs (inf * 0); with
    ``error_if_nonfinite=True`` that is a ValueError naming the first array that holds one."""
    if (value is None) == (norm is None):
        raise ValueError("clip_grads: give exactly one of value= (elementwise) and norm= "
                         "(the global norm)")
    threshold = value if value is not None else norm
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating,
                                                                 np.integer)) \
            or not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"clip_grads: the threshold must be a positive finite number, got "
                         f"{threshold!r}")
    if random and norm is None:
        raise ValueError("clip_grads: random=True draws a step of norm v: give norm=v")
    leaves = list(_leaves(grads))
    for path, g in leaves:
        kind = np.asarray(g).dtype
        if not np.issubdtype(kind, np.number) or np.issubdtype(kind, np.complexfloating):
            raise ValueError(f"clip_grads: {_path_text(path)} is not an array of real numbers")
    total = _total(leaves)
    if error_if_nonfinite and not np.isfinite(total):
        path, g = next((path, g) for path, g in leaves if not np.isfinite(g).all())
        kind = "NaN" if np.isnan(g).any() else "inf"
        raise ValueError(f"clip_grads: the gradient norm is {total} ({_path_text(path)} holds "
                         f"{kind})" + ("; clipping by the norm would turn the gradients into "
                                       "NaNs" if norm is not None else ""))
    if value is not None:
        return _rebuild(grads, lambda path, g: np.clip(g, -value, value)), total
    if not total > norm:  # (a NaN norm is not over the threshold: nothing to scale by)
        return _rebuild(grads, lambda path, g: np.array(g, copy=True)), total
    if not random:
        scale = norm / total
        with np.errstate(invalid="ignore"):  # (inf * 0: NaN, as documented)
            return _rebuild(grads, lambda path, g: np.asarray(g) * scale), total
    rng = _rng(seed)
    steps = {path: rng.standard_normal(np.shape(g)) for path, g in leaves}
    size = float(np.sqrt(sum(float(np.sum(s * s)) for s in steps.values())))
    return _rebuild(grads, lambda path, g: (steps[path] * (norm / size)).astype(
        np.result_type(np.asarray(g).dtype, np.float32))), total


def global_norm(grads: dict) -> float:
    """The norm of all the arrays of ``grads`` (a nested dict) taken together, in float64: what
    ``clip_grads(..., norm=)`` compares with its threshold (and returns)."""
    return _total(_leaves(grads))


def _total(leaves) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(np.asarray(g, dtype=np.float64))))
                             for _, g in leaves)))


def _leaves(tree, path=()) -> Iterator[Tuple[tuple, np.ndarray]]:
    if not isinstance(tree, dict):
        raise ValueError(f"clip_grads: expected a dict of arrays, got {type(tree).__name__}"
                         + (f" at {_path_text(path)}" if path else ""))
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,), v


def _rebuild(tree, f, path=()) -> Dict:
    return {k: _rebuild(v, f, path + (k,)) if isinstance(v, dict) else f(path + (k,), v)
            for k, v in tree.items()}


def _path_text(path) -> str:
    return "grads" + "".join(f"[{k!r}]" for k in path)
