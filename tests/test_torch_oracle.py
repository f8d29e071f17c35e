"""Cross-check of specs/torch_{lstm,gru,bilstm,bigru}.rnn against PyTorch, a test-only oracle.

torch.nn.LSTM / nn.GRU (float64, fixed seed; one layer, or two bidirectional layers for the
torch_bi*.rnn specs) lend their weights to the generated module through
rnnspec.from_torch_state_dict (rnnspec/torch_weights.py: split per gate in torch's order, LSTM:
i, f, g, o; GRU: r, z, n, and per layer and direction, torch's weight_*_l0, _l0_reverse, _l1,
_l1_reverse <-> the spec's *_l0, *_l0r, *_l1, *_l1r). Both are run on the same random inputs and
initial states (torch's h_0/c_0, (layers * directions, B, H), split into the spec's states hl0,
hl0r, ...); the per-step output (h, or y = [hl1; hl1r]) and the final states must agree -- for a
reverse direction torch's h_n is the state after step 1, as is the spec's final state -- and so
must the gradients (of every weight, re-assembled into torch's stacked layout by
rnnspec.to_torch_state_dict, of x and of the initial states) of

    sum(out * G_out) + sum(h_n * G_hn) [+ sum(c_n * G_cn)]

for random upstream gradients G: all to 1e-10. Variable-length batches are checked the same
way against torch.nn.utils.rnn.pack_padded_sequence: only steps before each sequence's end
count (G_out is zero past it, x holds random garbage there and gets exactly zero gradient), a
forward direction ends at each sequence's own last step and a reverse one starts there.
A last check runs the generated module in float32 and compares it with its own float64 results.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import pytest

import rnnspec
from conftest import SPECS

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: the cross-check against torch.nn.LSTM/GRU is skipped")

F64 = torch.float64      # passed explicitly everywhere: torch's default dtype is left alone
ORACLE_TOL = dict(rtol=0, atol=1e-10)
FLOAT32_TOL = dict(rtol=1e-4, atol=1e-4)

@dataclass(frozen=True)
class Cell:
    spec: str
    torch_cls: type
    kinds: tuple     # torch's states, in its order: (h,) or (h, c)
    output: str      # the spec's value that is torch's output
    num_layers: int = 1
    bidirectional: bool = False

    @property
    def layers(self):
        """(torch's suffix, the spec's suffix) of every layer and direction, in torch's order
        (that of the first axis of h_0 and h_n): _l0, _l0_reverse, _l1, ... <-> l0, l0r, l1, ...
        A one-layer, one-direction spec has no suffix: W_ir, h."""
        if self.num_layers == 1 and not self.bidirectional:
            return (("_l0", ""),)
        directions = (("", ""), ("_reverse", "r"))[:1 + self.bidirectional]
        return tuple((f"_l{layer}{t}", f"l{layer}{s}")
                     for layer in range(self.num_layers) for t, s in directions)

    @property
    def states(self):
        """Names of the spec's states: kind + suffix, e.g. hl0r."""
        return tuple(k + sfx for k in self.kinds for _, sfx in self.layers)

    def to_torch(self, states):
        """{spec state: (B, H)} -> {kind: (layers * directions, B, H)}, torch's layout."""
        return {k: np.stack([states[k + sfx] for _, sfx in self.layers]) for k in self.kinds}

    def from_torch(self, per_kind):
        """The inverse of to_torch."""
        return {k + sfx: per_kind[k][i] for k in self.kinds
                for i, (_, sfx) in enumerate(self.layers)}

    def pack(self, tensors):
        """The states as torch takes and returns them: a tensor for one, a tuple for more."""
        return tuple(tensors) if len(self.kinds) > 1 else tensors[0]

    def unpack(self, packed):
        return dict(zip(self.kinds, packed if len(self.kinds) > 1 else (packed,)))


LSTM = Cell("torch_lstm.rnn", torch.nn.LSTM, ("h", "c"), output="h")
GRU = Cell("torch_gru.rnn", torch.nn.GRU, ("h",), output="h")
BILSTM = Cell("torch_bilstm.rnn", torch.nn.LSTM, LSTM.kinds, output="y",
              num_layers=2, bidirectional=True)
BIGRU = Cell("torch_bigru.rnn", torch.nn.GRU, GRU.kinds, output="y",
             num_layers=2, bidirectional=True)
CELLS = [pytest.param(LSTM, id="lstm"), pytest.param(GRU, id="gru")]
BICELLS = [pytest.param(BILSTM, id="bilstm"), pytest.param(BIGRU, id="bigru")]
DIMS = [pytest.param(None, id="spec-dims"),
        pytest.param({"hidden": 8, "in": 6}, id="in6-hidden8")]
LENGTHS = [(1, 1), (7, 3), (50, 4)]    # (T, B)
BILENGTHS = [(1, 1), (6, 3), (30, 2)]
# a padded batch: (T, each sequence's length); in the second no sequence reaches T
PADDED = [(6, (6, 2, 4, 1)), (8, (3, 7, 1, 5, 2))]


def valid_steps(lengths, T):
    """(T, B, 1) booleans, True before each sequence's end."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :])[..., None]


# ----- nested dicts of arrays ---------------------------------------------------------------------
def leaves(tree, path=()):
    """(path, array) for every array in a nested dict."""
    if isinstance(tree, dict):
        for key in sorted(tree):
            yield from leaves(tree[key], path + (key,))
    else:
        yield path, tree


def tree_map(fn, tree):
    return {k: tree_map(fn, v) for k, v in tree.items()} if isinstance(tree, dict) else fn(tree)


def assert_trees_close(actual, expected, **tol):
    """Same keys at every level, and every array close to its counterpart."""
    assert [p for p, _ in leaves(actual)] == [p for p, _ in leaves(expected)]
    for (path, a), (_, b) in zip(leaves(actual), leaves(expected)):
        np.testing.assert_allclose(a, b, err_msg="/".join(path), **tol)


# ----- one problem, run by torch and by the generated module -------------------------------------
@lru_cache(maxsize=None)
def _compile(spec, dims_items):
    return rnnspec.compile_file(SPECS / spec, dims=dict(dims_items) if dims_items else None)


def compile_spec(cell, dims):
    return _compile(cell.spec, tuple(sorted(dims.items())) if dims else None)


@dataclass
class Problem:
    rnn: "torch.nn.RNNBase"
    params: dict          # the spec's params, copied from rnn
    x: np.ndarray         # (T, B, in)
    state0: dict          # {state: (B, hidden)}
    d_outputs: dict       # {output: G_out (T, B, out), 'final': {state: (B, hidden)}}
    lengths: Optional[np.ndarray] = None   # (B,): a padded batch; x is random garbage past
                                           # each end, G_out zero


def make_problem(cell, mod, T, B, seed=0, lengths=None):
    n_in, n_hidden = mod.DIMS["in"], mod.DIMS["hidden"]
    n_out = n_hidden * (1 + cell.bidirectional)
    with torch.random.fork_rng(devices=[]):      # a fixed seed without touching the global RNG
        torch.manual_seed(seed)
        rnn = cell.torch_cls(n_in, n_hidden, num_layers=cell.num_layers,
                             bidirectional=cell.bidirectional, dtype=F64)
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape)   # noqa: E731
    prob = Problem(
        rnn=rnn,
        params=rnnspec.from_torch_state_dict(mod, rnn.state_dict()),
        x=normal(T, B, n_in),
        state0={s: normal(B, n_hidden) for s in cell.states},
        d_outputs={cell.output: normal(T, B, n_out),
                   "final": {s: normal(B, n_hidden) for s in cell.states}},
    )
    if lengths is not None:
        prob.lengths = np.asarray(lengths, dtype=np.int64)
        valid = valid_steps(prob.lengths, T)
        prob.x = np.where(valid, prob.x, 10 * normal(T, B, n_in))   # garbage past each end
        prob.d_outputs[cell.output] *= valid
    return prob


def run_spec(mod, params, x, state0, d_outputs, lengths=None):
    """outputs and grads of the generated module."""
    outputs, cache = mod.forward(params, {"x": x}, state0=state0, lengths=lengths)
    return outputs, mod.backward(params, cache, d_outputs)


def run_torch(cell, prob):
    """torch's {output, 'final'} and the gradients of sum(out * G_out) + sum(final * G_final),
    shaped like the generated module's (params keyed by torch's names). A padded batch goes
    through pack_padded_sequence / pad_packed_sequence."""
    rnn = prob.rnn
    rnn.zero_grad()
    x = torch.tensor(prob.x, dtype=F64, requires_grad=True)
    state0 = {k: torch.tensor(v, dtype=F64, requires_grad=True)   # (layers * directions, B, H)
              for k, v in cell.to_torch(prob.state0).items()}
    packed = x if prob.lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.as_tensor(prob.lengths), enforce_sorted=False)
    out, final = rnn(packed, cell.pack([state0[k] for k in cell.kinds]))
    if prob.lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=len(prob.x))
    final = cell.unpack(final)
    d_final = cell.to_torch(prob.d_outputs["final"])
    objective = (out * torch.tensor(prob.d_outputs[cell.output], dtype=F64)).sum() + sum(
        (final[k] * torch.tensor(d_final[k], dtype=F64)).sum() for k in cell.kinds)
    objective.backward()
    outputs = {cell.output: out.detach().numpy(),
               "final": cell.from_torch({k: final[k].detach().numpy() for k in cell.kinds})}
    grads = {"params": {name: p.grad.numpy() for name, p in rnn.named_parameters()},
             "inputs": {"x": x.grad.numpy()},
             "state0": cell.from_torch({k: state0[k].grad.numpy() for k in cell.kinds})}
    return outputs, grads


def assert_matches_torch(cell, mod, prob):
    """The generated module's outputs (before each sequence's end) and gradients are torch's."""
    assert set(prob.params) == set(mod.PARAMS), "every spec param must come from torch"
    outputs, grads = run_spec(mod, prob.params, prob.x, prob.state0, prob.d_outputs,
                              prob.lengths)
    ref_outputs, ref_grads = run_torch(cell, prob)

    outputs = {cell.output: outputs[cell.output], "final": outputs["final"]}
    if prob.lengths is not None:    # past each end: ours is left undefined, torch pads with 0
        valid = valid_steps(prob.lengths, len(prob.x))
        outputs[cell.output] = np.where(valid, outputs[cell.output], 0)
        ref_outputs[cell.output] = np.where(valid, ref_outputs[cell.output], 0)
        dx_past_end = np.where(valid, 0, grads["inputs"]["x"])
        assert not dx_past_end.any(), "dx must be exactly zero past each sequence's end"
    assert_trees_close(outputs, ref_outputs, **ORACLE_TOL)
    assert set(grads["params"]) == set(mod.PARAMS)
    grads = {**grads, "params": rnnspec.to_torch_state_dict(mod, grads["params"])}
    assert_trees_close(grads, ref_grads, **ORACLE_TOL)


# ----- the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("T,B", LENGTHS, ids=[f"T{T}-B{B}" for T, B in LENGTHS])
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_backward_match_torch(cell, dims, T, B):
    mod = compile_spec(cell, dims)
    assert_matches_torch(cell, mod, make_problem(cell, mod, T, B))


@pytest.mark.parametrize("T,B", BILENGTHS, ids=[f"T{T}-B{B}" for T, B in BILENGTHS])
@pytest.mark.parametrize("cell", BICELLS)
def test_two_layer_bidirectional_matches_torch(cell, T, B):
    mod = compile_spec(cell, None)
    assert_matches_torch(cell, mod, make_problem(cell, mod, T, B))


@pytest.mark.parametrize("T,lengths", PADDED, ids=[f"T{T}-len{'-'.join(map(str, n))}"
                                                   for T, n in PADDED])
@pytest.mark.parametrize("cell", BICELLS + CELLS)
def test_padded_batch_matches_packed_sequence(cell, T, lengths):
    assert min(lengths) < T, "a reverse direction must start before the padded end"
    mod = compile_spec(cell, None)
    prob = make_problem(cell, mod, T, len(lengths), seed=1, lengths=lengths)
    assert_matches_torch(cell, mod, prob)


@pytest.mark.parametrize("T,B", [(7, 3), (50, 4)], ids=["T7-B3", "T50-B4"])
@pytest.mark.parametrize("cell", CELLS)
def test_float32_keeps_dtype_and_agrees_with_float64(cell, T, B):
    mod = compile_spec(cell, None)
    prob = make_problem(cell, mod, T, B)
    args64 = (prob.params, prob.x, prob.state0, prob.d_outputs)
    args32 = [tree_map(lambda a: a.astype(np.float32), arg) for arg in args64]

    out64, grads64 = run_spec(mod, *args64)
    out32, grads32 = run_spec(mod, *args32)

    for path, a in leaves({"outputs": out32, "grads": grads32}):
        assert a.dtype == np.float32, "/".join(path)
    assert_trees_close(out32, out64, **FLOAT32_TOL)
    assert_trees_close(grads32, grads64, **FLOAT32_TOL)
