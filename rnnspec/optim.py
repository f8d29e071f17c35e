"""Optimizers over parameter dicts: SGD (momentum, Nesterov, dampening), Adam (AMSGrad), AdamW.

In: the parameters as a generated module's ``init_params`` returns them (``{name: ndarray}``)
and their gradients as ``backward(...)['params']`` gives them (the same keys and shapes).
Out: :meth:`Optimizer.step` returns the new parameters, a new dict of new arrays (the caller's
arrays are never changed), each of its parameter's dtype (float32 stays float32).

The updates are torch.optim's (the algorithms printed in its documentation), step for step:
weight decay as an L2 term added to the gradient for SGD and Adam, decoupled (the parameters
shrunk by ``1 - lr * weight_decay`` before the Adam step) for AdamW; SGD's momentum buffer starts
as the first gradient (no dampening on step 1); Adam's moments are bias-corrected.

:meth:`Optimizer.state_dict` is a flat dict of numbers, strings and arrays (``np.savez(f,
**opt.state_dict())`` saves it; :func:`load_optimizer` or :meth:`Optimizer.load_state_dict`
takes back what ``np.load`` gives), so a run resumes bit for bit.  :func:`make_optimizer` is the
command line's factory: ``'sgd'``, ``'momentum'``, ``'nesterov'``, ``'adam'``, ``'adamw'``.
"""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Dict, Optional, Tuple

import numpy as np

Params = Dict[str, np.ndarray]


class Optimizer:
    """What every optimizer shares: checked hyperparameters, the step count ``t``, the arrays
    it keeps per parameter (``slots``), the checks of ``step``'s arguments, the state dict.
    A subclass checks its hyperparameters and defines ``_update(name, p, g)``: one
    parameter's new value (``self.t`` already counts this step)."""

    kind = ""       # its name in a state dict
    slots: Tuple[str, ...] = ()  # the arrays kept per parameter, by name

    def __init__(self, **hyper):
        self.hyper = hyper          # (checked by the subclass before it calls this)
        self.t = 0                  # the number of steps taken
        self.state: Dict[str, Params] = {slot: {} for slot in self.slots}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.hyper.items())})"

    def step(self, params: Params, grads: Params) -> Params:
        """One update: the new parameters (a new dict of new arrays) from ``params`` and their
        gradients ``grads`` (same keys, same shapes; a gradient is cast to its parameter's
        dtype).  ValueError, naming the parameter, for a missing or extra gradient, a shape
        that differs, a parameter that is not a float array, or parameters that are not the
        ones the optimizer's state was made for."""
        self._check(params, grads)
        self.t += 1
        return {name: self._update(name, params[name],
                                   np.asarray(grads[name]).astype(params[name].dtype, copy=False))
                for name in params}

    def state_dict(self) -> dict:
        """The optimizer as a flat dict: ``kind``, ``step``, ``hyper.NAME`` for each
        hyperparameter and ``SLOT/PARAM`` for each array kept (copies)."""
        out = {"kind": self.kind, "step": self.t}
        for key, value in self.hyper.items():
            if key == "betas":
                out["hyper.beta1"], out["hyper.beta2"] = value
            else:
                out[f"hyper.{key}"] = value
        for slot, arrays in self.state.items():
            out.update({f"{slot}/{name}": a.copy() for name, a in arrays.items()})
        return out

    def load_state_dict(self, state: dict) -> None:
        """Take the step count, the hyperparameters and the arrays of a :meth:`state_dict`
        (also as ``np.load`` gives it back: 0-d arrays for the numbers).  ValueError for a
        state of another kind of optimizer or a key this optimizer does not know."""
        fields = _read_state(state)
        if fields["kind"] != self.kind:
            raise ValueError(f"load_state_dict: this is the state of a {fields['kind']!r} "
                             f"optimizer, not of {self.kind!r}")
        fresh = _construct(type(self), fields["hyper"])  # (checks the hyperparameters)
        unknown = sorted(set(fields["arrays"]) - set(self.slots))
        if unknown:
            raise ValueError(f"load_state_dict: {type(self).__name__} keeps no {unknown[0]!r} "
                             f"arrays (it keeps {list(self.slots) or 'none'})")
        self.hyper, self.t = fresh.hyper, fields["step"]
        self.state = {slot: {name: np.array(a, copy=True)
                             for name, a in fields["arrays"].get(slot, {}).items()}
                      for slot in self.slots}

    def _check(self, params: Params, grads: Params) -> None:
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise ValueError(f"step: params and grads must be dicts of arrays, got "
                             f"{type(params).__name__} and {type(grads).__name__}")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"step: parameter {name!r} must be a float array, got "
                                 f"{getattr(p, 'dtype', type(p).__name__)}")
            if name not in grads:
                hint = (" (pass backward(...)['params'], not backward's whole result)"
                        if "params" in grads and isinstance(grads["params"], dict) else "")
                raise ValueError(f"step: no gradient for parameter {name!r}{hint}")
            g = np.asarray(grads[name])
            if g.shape != p.shape:
                raise ValueError(f"step: the gradient of {name!r} has shape {g.shape}, its "
                                 f"parameter {p.shape}")
            if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
                raise ValueError(f"step: the gradient of {name!r} is not an array of real "
                                 f"numbers ({g.dtype})")
        extra = [name for name in grads if name not in params]
        if extra:
            raise ValueError(f"step: a gradient for {extra[0]!r}, which is not a parameter "
                             f"(the parameters: {list(params)})")
        for slot, arrays in self.state.items():
            for name, a in arrays.items():
                if name not in params:
                    raise ValueError(f"step: parameter {name!r} is missing: the optimizer "
                                     f"keeps its {slot} (from earlier steps)")
                if a.shape != params[name].shape:
                    raise ValueError(f"step: parameter {name!r} has shape "
                                     f"{params[name].shape}, its {slot} {a.shape}")


class SGD(Optimizer):
    """Stochastic gradient descent, torch.optim.SGD's update: with ``g`` the gradient,

        g <- g + weight_decay * p                      (when weight_decay != 0)
        b <- g  (step 1),  momentum * b + (1 - dampening) * g  (later)   (when momentum != 0)
        g <- g + momentum * b  (nesterov)  or  b
        p <- p - lr * g
    """

    kind = "sgd"
    slots = ("momentum_buffer",)

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        hyper = dict(lr=_number("lr", lr), momentum=_number("momentum", momentum, below=1.0),
                     dampening=_number("dampening", dampening, most=1.0),
                     weight_decay=_number("weight_decay", weight_decay),
                     nesterov=_flag("nesterov", nesterov))
        if nesterov and (hyper["momentum"] == 0 or hyper["dampening"] != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={momentum!r}, dampening={dampening!r}")
        super().__init__(**hyper)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        h = self.hyper
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p
        if h["momentum"] != 0:
            buffers = self.state["momentum_buffer"]
            if name not in buffers:
                b = g.copy()
            else:
                b = h["momentum"] * buffers[name] + (1 - h["dampening"]) * g
            buffers[name] = b
            g = g + h["momentum"] * b if h["nesterov"] else b
        return p - h["lr"] * g


class Adam(Optimizer):
    """Adam with bias correction, torch.optim.Adam's update: at step t, with ``g`` the gradient,

        g <- g + weight_decay * p                      (when weight_decay != 0)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        vmax <- max(vmax, v)                           (amsgrad; then v is vmax below)
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``decoupled=True`` (what :class:`AdamW` is) shrinks ``p`` by ``1 - lr * weight_decay``
    instead of adding the L2 term to ``g``."""

    kind = "adam"
    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False   # (AdamW: True)

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got "
                             f"{betas!r}")
        betas = (_number("beta1", betas[0], below=1.0), _number("beta2", betas[1], below=1.0))
        super().__init__(lr=_number("lr", lr), betas=betas, eps=_number("eps", eps),
                         weight_decay=_number("weight_decay", weight_decay),
                         amsgrad=_flag("amsgrad", amsgrad))

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        h, t = self.hyper, self.t
        (beta1, beta2), lr, wd = h["betas"], h["lr"], h["weight_decay"]
        if wd != 0 and self.decoupled:
            p = p * (1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        zeros = np.zeros_like(p)
        m = beta1 * self.state["exp_avg"].get(name, zeros) + (1 - beta1) * g
        v = beta2 * self.state["exp_avg_sq"].get(name, zeros) + (1 - beta2) * (g * g)
        self.state["exp_avg"][name], self.state["exp_avg_sq"][name] = m, v
        if h["amsgrad"]:
            v = np.maximum(self.state["max_exp_avg_sq"].get(name, zeros), v)
            self.state["max_exp_avg_sq"][name] = v
        step_size = lr / (1 - beta1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + h["eps"]
        return p - step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): ``p <- p * (1 - lr *
    weight_decay)`` before the Adam step, the gradient left as it is.  Its default
    weight_decay is torch's, 1e-2."""

    kind = "adamw"
    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


# The command line's names: the class, its fixed options, and the options a user may set.
OPTIMIZERS = {
    "sgd": (SGD, {}, ("lr", "weight_decay")),
    "momentum": (SGD, {"momentum": 0.9}, ("lr", "momentum", "dampening", "weight_decay")),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}, ("lr", "momentum", "weight_decay")),
    "adam": (Adam, {}, ("lr", "betas", "eps", "weight_decay", "amsgrad")),
    "adamw": (AdamW, {}, ("lr", "betas", "eps", "weight_decay", "amsgrad")),
}


def make_optimizer(name: str, **options) -> Optimizer:
    """The optimizer called ``name`` (``sgd``, ``momentum``, ``nesterov``, ``adam``,
    ``adamw``) with ``options`` (its keyword arguments; ``momentum`` and ``nesterov`` default
    to momentum 0.9, and their momentum must be > 0).  ValueError for an unknown name, an
    option the optimizer does not take, or a value out of range."""
    if name not in OPTIMIZERS:
        close = difflib.get_close_matches(str(name), OPTIMIZERS, n=1)
        raise ValueError(f"unknown optimizer {name!r}" + (f"; did you mean {close[0]!r}?"
                                                          if close else "")
                         + f" (the optimizers: {', '.join(OPTIMIZERS)})")
    cls, fixed, allowed = OPTIMIZERS[name]
    for key in options:
        if key not in allowed:
            raise ValueError(f"optimizer {name!r} takes no option {key!r} (its options: "
                             f"{', '.join(allowed)})")
    if "momentum" in fixed and options.get("momentum", fixed["momentum"]) == 0:
        raise ValueError(f"optimizer {name!r} needs momentum > 0 (for none, use 'sgd')")
    return cls(**{**fixed, **options})


def load_optimizer(state: dict) -> Optimizer:
    """A new optimizer from a :meth:`Optimizer.state_dict` (or what ``np.load`` gives back
    of one): of its kind, with its hyperparameters, step count and arrays."""
    kinds = {cls.kind: cls for cls in (SGD, Adam, AdamW)}
    fields = _read_state(state)
    if fields["kind"] not in kinds:
        raise ValueError(f"load_optimizer: unknown optimizer kind {fields['kind']!r} (the "
                         f"kinds: {', '.join(kinds)})")
    opt = _construct(kinds[fields["kind"]], fields["hyper"])
    opt.load_state_dict(state)
    return opt


def _read_state(state) -> dict:
    """A state dict's fields: kind, step, hyper (keyword arguments), arrays {slot: {name: a}}."""
    if not hasattr(state, "keys"):
        raise ValueError(f"load_state_dict: expected a dict (or an np.load result), got "
                         f"{type(state).__name__}")
    for key in ("kind", "step"):
        if key not in state:
            raise ValueError(f"load_state_dict: the state has no {key!r} (not an optimizer's "
                             f"state_dict?)")
    scalar = {key: _item(state[key]) for key in state.keys() if "/" not in key}
    hyper = {key[len("hyper."):]: value for key, value in scalar.items()
             if key.startswith("hyper.")}
    if "beta1" in hyper or "beta2" in hyper:
        hyper["betas"] = (hyper.pop("beta1", None), hyper.pop("beta2", None))
    unknown = [key for key in scalar if key not in ("kind", "step")
               and not key.startswith("hyper.")]
    if unknown:
        raise ValueError(f"load_state_dict: unknown key {unknown[0]!r}")
    step = scalar["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"load_state_dict: step must be a non-negative integer, got {step!r}")
    arrays: Dict[str, Params] = {}
    for key in state.keys():
        if "/" in key:
            slot, name = key.split("/", 1)
            arrays.setdefault(slot, {})[name] = np.asarray(state[key])
    return {"kind": str(scalar["kind"]), "step": step, "hyper": hyper, "arrays": arrays}


def _construct(cls, hyper: dict) -> Optimizer:
    """``cls(**hyper)``, a ValueError naming a hyperparameter ``cls`` does not have."""
    known = inspect.signature(cls.__init__).parameters
    for key in hyper:
        if key == "self" or key not in known:
            raise ValueError(f"load_state_dict: {cls.__name__} has no hyperparameter {key!r}")
    return cls(**hyper)


def _item(value):
    """A number, string or flag as Python has it (np.load gives 0-d arrays)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, np.generic):
        return value.item()
    return value


def _number(name: str, value, most: Optional[float] = None,
            below: Optional[float] = None) -> float:
    """``value`` as a float, checked: finite, >= 0, <= most, < below (ValueError else)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < 0 or (most is not None and value > most) or (below is not None
                                                             and value >= below):
        bound = (f"in [0, {below:g})" if below is not None else f"in [0, {most:g}]"
                 if most is not None else ">= 0")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
