"""One gradient of a spec's loss, the way a user asks for it: full BPTT, truncated (TBPTT(k1,
k2)), randomized truncation or RTRL, then clipped (what ``rnnspec grad`` prints).

In: a generated module, parameters, a batch (inputs, targets, lengths) and how.  Out: a
:class:`GradReport`: the loss, every parameter's gradient, the global norm before clipping, the
clipped gradients, and :meth:`GradReport.table`.  Every method is the module's own
(``loss_and_grad`` with ``truncate=``/``xi=``, ``rtrl``); clipping is :func:`rnnspec.clip_grads`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .clip import clip_grads, global_norm
from .surrogate import _batch_of


@dataclass
class GradReport:
    method: str  # 'full BPTT', 'TBPTT(2, 5)', ...
    loss: float
    grads: Dict[str, np.ndarray]  # parameter -> gradient (before clipping)
    norm: float  # the global norm before clipping
    clipped: Dict[str, np.ndarray]
    clip: Optional[str] = None  # how they were clipped ('by norm 0.5'), None: not

    def table(self) -> str:
        rows = [(n, "×".join(map(str, g.shape)) or "scalar", _norm(g),
                 float(np.abs(g).max(initial=0.0)), _norm(self.clipped[n]))
                for n, g in self.grads.items()]
        w = max([len("parameter")] + [len(r[0]) for r in rows])
        s = max([len("shape")] + [len(r[1]) for r in rows])
        head = f"{'parameter':<{w}}  {'shape':<{s}}  {'norm':>10}  {'max |g|':>10}"
        head += f"  {'clipped norm':>12}" if self.clip else ""
        lines = [f"loss {self.loss:.6g}; gradient by {self.method}", head, "-" * len(head)]
        for n, shape, norm, top, after in rows:
            line = f"{n:<{w}}  {shape:<{s}}  {norm:>10.4g}  {top:>10.4g}"
            lines.append(line + (f"  {after:>12.4g}" if self.clip else ""))
        total = f"global norm {self.norm:.6g}"
        if self.clip:
            total += f" before clipping {self.clip}; after: {global_norm(self.clipped):.6g}"
        lines.append(total)
        return "\n".join(lines)


def _norm(g) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(g, dtype=np.float64)))))


def gradient(mod, params, inputs, targets, T: int, state0=None, lengths=None, truncate=None,
             random_truncation: Optional[float] = None, rtrl: bool = False,
             clip_value: Optional[float] = None, clip_norm: Optional[float] = None,
             clip_random: bool = False, seed=0) -> GradReport:
    """The gradient of ``mod``'s loss on one batch of ``T`` steps: full BPTT, or with
    ``truncate=k | (k1, k2)`` TBPTT, with ``random_truncation=pi`` one draw of randomized
    truncation (``seed``), with ``rtrl=True`` the module's ``rtrl`` (compiled with rtrl=True);
    then clipped by ``clip_value`` (elementwise) or ``clip_norm`` (the global norm; a random
    step of that norm with ``clip_random``).  ValueErrors name what is wrong."""
    from .truncation import random_truncation as draw
    if not mod.TARGETS or targets is None:
        raise ValueError("the gradient of the loss needs targets (this spec has none, or none "
                         "were given)")
    if rtrl and (truncate is not None or random_truncation is not None):
        raise ValueError("RTRL computes the full gradient forward in time: it takes no "
                         "truncation")
    if rtrl:
        if not hasattr(mod, "rtrl"):
            raise ValueError("this module was compiled without rtrl=True")
        loss, g = mod.rtrl(params, inputs, targets, state0, lengths)
        method = "RTRL (forward in time)"
    else:
        ks = None if truncate is None else \
            (truncate, truncate) if np.ndim(truncate) == 0 else tuple(truncate)
        xi = None
        if random_truncation is not None:
            B = _batch_of(mod, inputs, targets, None, lengths)
            xi = draw(T, random_truncation, seed, B=B)
        loss, g = mod.loss_and_grad(params, inputs, targets, state0, T, lengths, xi=xi,
                                    truncate=ks)
        method = _method(ks, random_truncation, seed)
    grads = {n: np.asarray(v) for n, v in g["params"].items()}
    clip = None
    if clip_value is not None or clip_norm is not None:
        clipped, norm = clip_grads(grads, value=clip_value, norm=clip_norm, random=clip_random,
                                   seed=seed)
        clip = (f"by value {clip_value:g}" if clip_value is not None else
                f"{'to a random step of' if clip_random else 'by'} norm {clip_norm:g}")
    else:
        clipped, norm = grads, global_norm(grads)
    return GradReport(method, float(loss), grads, norm, clipped, clip)


def _method(ks: Optional[Tuple[int, int]], pi: Optional[float], seed) -> str:
    parts = [] if ks is None else [f"TBPTT({ks[0]}, {ks[1]})"]
    if pi is not None:
        parts.append(f"randomized truncation (pi = {pi:g}, seed {seed})")
    return " and ".join(parts) or "full BPTT"


def split_data(mod, arrays: dict) -> Tuple[dict, dict, Optional[np.ndarray], int]:
    """An .npz's arrays as (inputs, targets, lengths, T): keyed by the spec's input and target
    names (and ``lengths``, optional).  A ValueError names a missing or unknown key."""
    known = set(mod.INPUTS) | set(mod.TARGETS) | {"lengths"}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise ValueError(f"unknown array(s) {unknown}: the data holds the spec's inputs "
                         f"{sorted(mod.INPUTS)}, targets {sorted(mod.TARGETS)} and optionally "
                         f"'lengths'")
    missing = sorted((set(mod.INPUTS) | set(mod.TARGETS)) - set(arrays))
    if missing:
        raise ValueError(f"missing array(s) {missing}")
    inputs = {n: arrays[n] for n in mod.INPUTS}
    targets = {n: arrays[n] for n in mod.TARGETS}
    T = next((np.shape(v)[0] for table, group in ((mod.INPUTS, inputs), (mod.TARGETS, targets))
              for n, v in group.items() if table[n]["kind"] == "sequence"), None)
    if T is None:
        raise ValueError("no input or target is a sequence: nothing gives the number of steps")
    return inputs, targets, arrays.get("lengths"), int(T)
