"""Cross-check of specs/torch_lstm.rnn and specs/torch_gru.rnn against PyTorch, a test-only oracle.

torch.nn.LSTM / nn.GRU (one layer, float64, fixed seed) lend their weights to the generated
module, split per gate in torch's order (LSTM: i, f, g, o; GRU: r, z, n). Both are run on the
same random inputs and initial states; the per-step output h and the final states must agree,
and so must the gradients (of every weight, re-assembled into torch's stacked layout, of x and
of the initial states) of

    sum(out * G_out) + sum(h_n * G_hn) [+ sum(c_n * G_cn)]

for random upstream gradients G: all to 1e-10. A last check runs the generated module in
float32 and compares it with its own float64 results.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest

import rnnspec
from conftest import SPECS

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: the cross-check against torch.nn.LSTM/GRU is skipped")

F64 = torch.float64      # passed explicitly everywhere: torch's default dtype is left alone
ORACLE_TOL = dict(rtol=0, atol=1e-10)
FLOAT32_TOL = dict(rtol=1e-4, atol=1e-4)

# torch's stacked tensor -> the prefix of the spec's per-gate names cut from it
TORCH_TO_SPEC = {"weight_ih_l0": "W_i", "weight_hh_l0": "W_h",
                 "bias_ih_l0": "b_i", "bias_hh_l0": "b_h"}


@dataclass(frozen=True)
class Cell:
    spec: str
    torch_cls: type
    gates: tuple     # torch's gate order, the order of the chunks of its stacked tensors
    states: tuple    # names of the spec's states, in torch's order: (h,) or (h, c)

    def pack(self, tensors):
        """The states as torch takes and returns them: a tensor for one, a tuple for more."""
        return tuple(tensors) if len(self.states) > 1 else tensors[0]

    def unpack(self, packed):
        return dict(zip(self.states, packed if len(self.states) > 1 else (packed,)))


LSTM = Cell("torch_lstm.rnn", torch.nn.LSTM, ("i", "f", "g", "o"), ("h", "c"))
GRU = Cell("torch_gru.rnn", torch.nn.GRU, ("r", "z", "n"), ("h",))
CELLS = [pytest.param(LSTM, id="lstm"), pytest.param(GRU, id="gru")]
DIMS = [pytest.param(None, id="spec-dims"),
        pytest.param({"hidden": 8, "in": 6}, id="in6-hidden8")]
LENGTHS = [(1, 1), (7, 3), (50, 4)]    # (T, B)


# ----- weights: torch's stacked layout <-> the spec's per-gate params ----------------------------
def split_gates(stacked, prefix, gates):
    """A stacked (len(gates) * hidden, ...) array -> {prefix + gate: (hidden, ...) chunk}."""
    return {prefix + g: chunk for g, chunk in zip(gates, np.split(stacked, len(gates), axis=0))}


def join_gates(per_gate, prefix, gates):
    """The inverse of split_gates."""
    return np.concatenate([per_gate[prefix + g] for g in gates], axis=0)


def spec_params_from_torch(rnn, gates):
    """The spec's params holding a copy of the torch module's weights."""
    params = {}
    for torch_name, prefix in TORCH_TO_SPEC.items():
        stacked = getattr(rnn, torch_name).detach().numpy().copy()
        params.update(split_gates(stacked, prefix, gates))
    return params


def torch_layout(per_gate, gates):
    """Per-gate arrays keyed by the spec's names -> torch's stacked arrays, keyed by its names."""
    return {torch_name: join_gates(per_gate, prefix, gates)
            for torch_name, prefix in TORCH_TO_SPEC.items()}


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
    d_outputs: dict       # {'h': G_out (T, B, hidden), 'final': {state: (B, hidden)}}


def make_problem(cell, mod, T, B, seed=0):
    n_in, n_hidden = mod.DIMS["in"], mod.DIMS["hidden"]
    with torch.random.fork_rng(devices=[]):      # a fixed seed without touching the global RNG
        torch.manual_seed(seed)
        rnn = cell.torch_cls(n_in, n_hidden, num_layers=1, dtype=F64)
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape)   # noqa: E731
    return Problem(
        rnn=rnn,
        params=spec_params_from_torch(rnn, cell.gates),
        x=normal(T, B, n_in),
        state0={s: normal(B, n_hidden) for s in cell.states},
        d_outputs={"h": normal(T, B, n_hidden),
                   "final": {s: normal(B, n_hidden) for s in cell.states}},
    )


def run_spec(mod, params, x, state0, d_outputs):
    """outputs and grads of the generated module."""
    outputs, cache = mod.forward(params, {"x": x}, state0=state0)
    return outputs, mod.backward(params, cache, d_outputs)


def run_torch(cell, prob):
    """torch's {'h', 'final'} and the gradients of sum(out * G_out) + sum(final * G_final),
    shaped like the generated module's (params keyed by torch's names)."""
    rnn = prob.rnn
    rnn.zero_grad()
    x = torch.tensor(prob.x, dtype=F64, requires_grad=True)
    state0 = {s: torch.tensor(v[None], dtype=F64, requires_grad=True)   # (1 layer, B, H)
              for s, v in prob.state0.items()}
    out, final = rnn(x, cell.pack([state0[s] for s in cell.states]))
    final = cell.unpack(final)
    d_final = prob.d_outputs["final"]
    objective = (out * torch.tensor(prob.d_outputs["h"], dtype=F64)).sum() + sum(
        (final[s] * torch.tensor(d_final[s][None], dtype=F64)).sum() for s in cell.states)
    objective.backward()
    outputs = {"h": out.detach().numpy(),
               "final": {s: final[s].detach().numpy()[0] for s in cell.states}}
    grads = {"params": {name: p.grad.numpy() for name, p in rnn.named_parameters()},
             "inputs": {"x": x.grad.numpy()},
             "state0": {s: state0[s].grad.numpy()[0] for s in cell.states}}
    return outputs, grads


# ----- the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("T,B", LENGTHS, ids=[f"T{T}-B{B}" for T, B in LENGTHS])
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_backward_match_torch(cell, dims, T, B):
    mod = compile_spec(cell, dims)
    prob = make_problem(cell, mod, T, B)
    assert set(prob.params) == set(mod.PARAMS), "every spec param must come from torch"

    outputs, grads = run_spec(mod, prob.params, prob.x, prob.state0, prob.d_outputs)
    ref_outputs, ref_grads = run_torch(cell, prob)

    assert_trees_close({"h": outputs["h"], "final": outputs["final"]}, ref_outputs,
                       **ORACLE_TOL)
    assert set(grads["params"]) == set(mod.PARAMS)
    grads = {**grads, "params": torch_layout(grads["params"], cell.gates)}
    assert_trees_close(grads, ref_grads, **ORACLE_TOL)


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
