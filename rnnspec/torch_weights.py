"""PyTorch's weights both ways: a torch-style spec's params <-> torch.nn.LSTM/GRU's state_dict.

In: a generated module whose PARAMS follow torch's names (specs/torch_lstm.rnn, torch_gru.rnn,
torch_bilstm.rnn, torch_bigru.rnn), and its params (``to_torch_state_dict``) or a torch
state_dict (``from_torch_state_dict``).  Out: the other one, as NumPy arrays (copies).

The family and the layers are recognized from the module's PARAMS (names and shapes), never from
its file name: the gate letters say LSTM (i, f, g, o) or GRU (r, z, n), the suffixes say the
layers and directions.  Each torch tensor is the spec's per-gate params stacked along axis 0 in
torch's gate order::

    torch key                    spec params (G = 4 for LSTM, 3 for GRU)    shape
    weight_ih_l{k}[_reverse]     W_i<gate><s> for each gate                (G*hidden, in_k)
    weight_hh_l{k}[_reverse]     W_h<gate><s>                              (G*hidden, hidden)
    bias_ih_l{k}[_reverse]       b_i<gate><s>                              (G*hidden,)
    bias_hh_l{k}[_reverse]       b_h<gate><s>                              (G*hidden,)

<s> is empty for a one-layer, one-direction spec (torch's _l0), else _l{k} (torch's _l{k}) or
_l{k}r (torch's _l{k}_reverse); in_0 is the input size, in_k = hidden (times 2 when
bidirectional) for k > 0.  Only the names and shapes are checked: that the spec's equations are
torch's is what tests/test_torch_weights.py and tests/test_torch_oracle.py show for the four
torch_* specs.  rnnspec does not import torch: tensors are recognized by their ``detach``.
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

FAMILIES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}
# torch's tensor (less its layer/direction suffix) -> the prefix of the spec's per-gate names
KINDS = (("weight_ih", "W_i"), ("weight_hh", "W_h"), ("bias_ih", "b_i"), ("bias_hh", "b_h"))
_NAME = re.compile(r"[Wb]_[ih]([a-z])(?:_l(\d+)(r?))?\Z")


@dataclass(frozen=True)
class TorchLayout:
    """How a module's params map onto a torch.nn.LSTM/GRU's state_dict."""
    family: str              # "LSTM" or "GRU": the torch class
    gates: Tuple[str, ...]   # torch's gate order
    num_layers: int
    bidirectional: bool
    units: Tuple[Tuple[str, str], ...]   # (torch suffix, spec suffix) per layer and direction

    @property
    def keys(self) -> List[Tuple[str, Tuple[str, ...]]]:
        """(torch key, the spec's names stacked into it, in order), in torch's key order."""
        return [(kind + torch_sfx, tuple(prefix + g + sfx for g in self.gates))
                for torch_sfx, sfx in self.units for kind, prefix in KINDS]

    def shapes(self, hidden: int, n_in: int) -> Dict[str, Tuple[int, ...]]:
        """Every spec param's and every torch key's shape, for these sizes: layer 0 reads the
        input, a later layer the previous layer's output (both directions')."""
        out = {}
        directions = 1 + self.bidirectional
        for k, (torch_sfx, sfx) in enumerate(self.units):
            cols = n_in if k < directions else hidden * directions
            for (kind, prefix), shape in zip(KINDS, _gate_shapes(hidden, cols)):
                out[kind + torch_sfx] = (len(self.gates) * hidden,) + shape[1:]
                out.update((prefix + g + sfx, shape) for g in self.gates)
        return out


def _gate_shapes(hidden, cols):
    """One gate's shapes in KINDS' order: W_i (hidden, cols), W_h (hidden, hidden), b_i, b_h."""
    return (hidden, cols), (hidden, hidden), (hidden,), (hidden,)


def torch_layout(module, others: bool = False) -> TorchLayout:
    """Recognize a module's torch family and layers from its PARAMS; ValueError, naming what
    is missing or extra, for a module that does not follow torch's names (``others``: params
    outside the recurrent layers, such as an output layer, are allowed)."""
    params = module.PARAMS
    found = {family: [n for n in params if (m := _NAME.match(n)) and m.group(1) in gates]
             for family, gates in FAMILIES.items()}
    families = [f for f in FAMILIES if found[f]]
    if len(families) != 1:
        why = ("mixes both families' names: " + ", ".join(found["LSTM"][:1] + found["GRU"][:1])
               if families else "has no parameter named so")
        raise ValueError(f"{_label(module)} does not follow PyTorch's names (nn.LSTM: W_ii, "
                         "W_hi, b_ii, b_hi, ... for gates i, f, g, o; nn.GRU: W_ir, W_hr, b_ir, "
                         "b_hr, ... for gates r, z, n; suffixed _l0, _l0r, _l1, ... for several "
                         f"layers or directions): it {why}")
    family = families[0]
    layout = TorchLayout(family, FAMILIES[family], *_units(module, found[family]))
    wanted = [n for _, names in layout.keys for n in names]
    missing = [n for n in wanted if n not in params]
    extra = [] if others else [n for n in params if n not in wanted]
    if missing or extra:
        raise ValueError(
            f"{_label(module)} does not follow nn.{family}'s layout ({layout.num_layers} "
            f"layer(s), {'bi' if layout.bidirectional else 'uni'}directional): "
            + "; ".join(filter(None, [
                missing and "missing param(s) " + ", ".join(missing),
                extra and "param(s) with no place in its state_dict " + ", ".join(extra)])))
    _check_declared_shapes(module, layout)
    return layout


def _units(module, names):
    """(num_layers, bidirectional, units) from the suffixes of a family's names."""
    matches = [_NAME.match(n) for n in names]
    if all(m.group(2) is None for m in matches):
        return 1, False, (("_l0", ""),)
    if any(m.group(2) is None for m in matches):
        plain = next(n for n, m in zip(names, matches) if m.group(2) is None)
        raise ValueError(f"{_label(module)} mixes unsuffixed names ({plain}) with _l<k> ones: "
                         "use no suffix for one layer in one direction, _l<k>[r] otherwise")
    layers = 1 + max(int(m.group(2)) for m in matches)
    bidirectional = any(m.group(3) for m in matches)
    directions = (("", ""), ("_reverse", "r"))[:1 + bidirectional]
    return layers, bidirectional, tuple((f"_l{k}{t}", f"_l{k}{s}") for k in range(layers)
                                        for t, s in directions)


def _check_declared_shapes(module, layout):
    """The spec's declared shapes, per layer and direction: W_i* (H, X), W_h* (H, H), b_* (H,)
    for every gate (sizes compared as the spec writes them; X checked on the arrays)."""
    for _, sfx in layout.units:
        first = layout.gates[0] + sfx
        hidden, cols = module.PARAMS["W_h" + first][0], module.PARAMS["W_i" + first][-1]
        for (kind, prefix), shape in zip(KINDS, _gate_shapes(hidden, cols)):
            for name in (prefix + g + sfx for g in layout.gates):
                if tuple(module.PARAMS[name]) != shape:
                    raise ValueError(
                        f"{_label(module)}: param {name} is declared "
                        f"({', '.join(module.PARAMS[name])}), not ({', '.join(shape)}) like "
                        f"W_h{first}: torch's {kind} stacks one shape for every gate")


def to_torch_state_dict(module, params, others: bool = False):
    """The module's params -> torch.nn.LSTM/GRU's state_dict, as NumPy arrays (new copies).

    Load it with ``rnn.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` into
    ``torch.nn.LSTM(in, hidden, num_layers, bidirectional=...)`` (nn.GRU for a GRU spec).  With
    ``others=True`` (a trained model with an output layer or a loss head beside the recurrent
    layers) it returns ``(state_dict, the other params)``."""
    layout = torch_layout(module, others)
    wanted = [n for _, names in layout.keys for n in names]
    rest = {n: np.array(v, copy=True) for n, v in params.items() if n not in wanted}
    _check_keys("params", {n: v for n, v in params.items() if n in wanted} if others
                else params, wanted)
    arrays = {k: np.asarray(v) for k, v in params.items()}
    hh, ih = layout.keys[1][1][0], layout.keys[0][1][0]
    hidden, n_in = _dims("params", arrays, hh, ih)
    _check_shapes("params", arrays, layout.shapes(hidden, n_in),
                  f"hidden = {hidden} and in = {n_in} from {hh} and {ih}")
    sd = {key: np.concatenate([arrays[n] for n in names], axis=0) for key, names in layout.keys}
    return (sd, rest) if others else sd


def from_torch_state_dict(module, state_dict, others=None) -> Dict[str, np.ndarray]:
    """torch.nn.LSTM/GRU's state_dict (NumPy arrays or torch tensors) -> the module's params,
    NumPy arrays (copies) keyed by the spec's names, in the tensors' dtype; ``others``: the
    params outside the recurrent layers (what ``to_torch_state_dict(..., others=True)`` gave
    back), put in as they are."""
    layout = torch_layout(module, others is not None)
    _check_keys("state_dict", state_dict, [key for key, _ in layout.keys])
    arrays = {k: _numpy(v) for k, v in state_dict.items()}
    hh, ih = layout.keys[1][0], layout.keys[0][0]
    hidden, n_in = _dims("state_dict", arrays, hh, ih)
    _check_shapes("state_dict", arrays, layout.shapes(hidden, n_in),
                  f"hidden = {hidden} and in = {n_in} from {hh} and {ih}")
    params = {n: np.array(_numpy(v), copy=True) for n, v in (others or {}).items()}
    for key, names in layout.keys:
        params.update(zip(names, (c.copy() for c in np.split(arrays[key], len(names)))))
    missing = [name for name in module.PARAMS if name not in params]
    if missing:
        raise ValueError(f"others: missing param(s) {', '.join(missing)} (the params outside "
                         f"the recurrent layers)")
    return {name: params[name] for name in module.PARAMS}


def _numpy(value):
    """A torch tensor (anything with .detach) or an array-like -> a NumPy array."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _check_keys(what, given, wanted):
    missing = [k for k in wanted if k not in given]
    extra = [k for k in given if k not in wanted]
    if missing or extra:
        raise ValueError(f"{what}: " + "; ".join(filter(None, [
            missing and "missing " + ", ".join(map(repr, missing)),
            extra and "unexpected " + ", ".join(map(repr, extra))])) + f" (expected the keys "
            f"{', '.join(wanted[:4])}{', ...' if len(wanted) > 4 else ''})")


def _dims(what, arrays, hh, ih):
    """(hidden, in): the columns of layer 0's recurrent and input weights."""
    for key in (hh, ih):
        if arrays[key].ndim != 2:
            raise ValueError(f"{what}[{key!r}]: expected a matrix, got shape "
                             f"{arrays[key].shape}")
    return arrays[hh].shape[1], arrays[ih].shape[1]


def _check_shapes(what, arrays, shapes, source):
    for key, shape in shapes.items():
        if key in arrays and arrays[key].shape != shape:
            raise ValueError(f"{what}[{key!r}]: expected shape {shape} ({source}), "
                             f"got {arrays[key].shape}")


def _label(module):
    """The module's spec file, as its docstring names it ('... for torch_lstm.rnn.')."""
    first = (module.__doc__ or "").split("\n", 1)[0]
    return "module for " + first.rsplit(" for ", 1)[-1].rstrip(".") if " for " in first \
        else f"module {module.__name__}"
