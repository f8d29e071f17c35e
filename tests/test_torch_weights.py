"""rnnspec.to_torch_state_dict / from_torch_state_dict, with torch.nn.LSTM/GRU as the oracle.

For specs/torch_{lstm,gru,bilstm,bigru}.rnn: the round trips params -> state_dict -> params and
state_dict -> params -> state_dict are bit-identical; the generated module's params (from
init_params plus seeded noise, so that no bias is zero) loaded into torch.nn.LSTM/GRU in float64
give its outputs and final states to 1e-12; a torch module's own random state_dict (tensors)
turned into params does the same; and bad input (a missing or unexpected key, a wrong shape, a
spec that does not follow torch's names) raises a ValueError naming it.
"""
import subprocess
import sys
import types
from functools import lru_cache

import numpy as np
import pytest

import rnnspec
from conftest import ROOT, SPECS

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: the state_dict mapping is checked against it")

TOL = dict(rtol=0, atol=1e-12)
# spec -> (torch class, num_layers, bidirectional, torch's states (h,) or (h, c), its output)
TORCH_SPECS = {
    "torch_lstm.rnn": (torch.nn.LSTM, 1, False, ("h", "c"), "h"),
    "torch_gru.rnn": (torch.nn.GRU, 1, False, ("h",), "h"),
    "torch_bilstm.rnn": (torch.nn.LSTM, 2, True, ("h", "c"), "y"),
    "torch_bigru.rnn": (torch.nn.GRU, 2, True, ("h",), "y"),
}
SPEC_IDS = [s[:-4] for s in TORCH_SPECS]


@lru_cache(maxsize=None)
def compile_spec(spec):
    return rnnspec.compile_file(SPECS / spec)


def noisy_params(mod, seed, dims=None):
    """init_params plus seeded noise: every entry (the zero biases too) distinct."""
    rng = np.random.default_rng(seed)
    return {k: v + 0.3 * rng.standard_normal(v.shape)
            for k, v in mod.init_params(dims=dims, seed=seed).items()}


def torch_rnn(spec, n_in, hidden, seed=0, dtype=torch.float64):
    cls, layers, bidirectional, _, _ = TORCH_SPECS[spec]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(n_in, hidden, num_layers=layers, bidirectional=bidirectional, dtype=dtype)


def state_names(spec):
    """The spec's states in torch's order of h_0's first axis, per torch state kind."""
    _, layers, bidirectional, kinds, _ = TORCH_SPECS[spec]
    if layers == 1 and not bidirectional:
        return {k: [k] for k in kinds}
    units = [f"l{k}{r}" for k in range(layers) for r in ("", "r")[:1 + bidirectional]]
    return {k: [k + u for u in units] for k in kinds}


def assert_bit_identical(actual, expected):
    assert list(actual) == list(expected)
    for key in expected:
        a, b = actual[key], np.asarray(expected[key])
        assert isinstance(a, np.ndarray), key
        assert (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes()), key


def assert_torch_agrees(spec, mod, params, rnn, seed=0, T=7, B=3):
    """The module's outputs and final states equal rnn's on random inputs and initial states."""
    hidden, n_in = rnn.hidden_size, rnn.input_size
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, n_in))
    names = state_names(spec)
    state0 = {s: rng.standard_normal((B, hidden)) for ss in names.values() for s in ss}

    outputs, _ = mod.forward(params, {"x": x}, state0=state0)

    h0 = [torch.from_numpy(np.stack([state0[s] for s in ss])) for ss in names.values()]
    with torch.no_grad():
        out, final = rnn(torch.from_numpy(x), tuple(h0) if len(h0) > 1 else h0[0])
    final = final if isinstance(final, tuple) else (final,)
    output = TORCH_SPECS[spec][4]
    np.testing.assert_allclose(outputs[output], out.numpy(), err_msg=output, **TOL)
    for ss, f in zip(names.values(), final):
        for s, a in zip(ss, f.numpy()):
            np.testing.assert_allclose(outputs["final"][s], a, err_msg=s, **TOL)


def load(rnn, state_dict):
    """Documented way in: tensors from the arrays, then a strict load_state_dict."""
    rnn.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    return rnn


# ----- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", TORCH_SPECS, ids=SPEC_IDS)
def test_params_round_trip_is_bit_identical(spec):
    mod = compile_spec(spec)
    params = noisy_params(mod, seed=3)
    state_dict = rnnspec.to_torch_state_dict(mod, params)
    assert_bit_identical(rnnspec.from_torch_state_dict(mod, state_dict), params)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("spec", TORCH_SPECS, ids=SPEC_IDS)
def test_state_dict_round_trip_is_bit_identical(spec, dtype):
    mod = compile_spec(spec)
    torch_sd = torch_rnn(spec, n_in=5, hidden=6, seed=4, dtype=dtype).state_dict()
    as_numpy = {k: v.numpy() for k, v in torch_sd.items()}
    params = rnnspec.from_torch_state_dict(mod, torch_sd)
    assert list(params) == list(mod.PARAMS)
    assert {a.dtype for a in params.values()} == {as_numpy["weight_hh_l0"].dtype}
    assert_bit_identical(rnnspec.to_torch_state_dict(mod, params), as_numpy)
    assert_bit_identical(rnnspec.from_torch_state_dict(mod, as_numpy), params)


def test_params_are_copies_not_views_of_the_tensors():
    mod = compile_spec("torch_gru.rnn")
    rnn = torch_rnn("torch_gru.rnn", 3, 5)
    params = rnnspec.from_torch_state_dict(mod, rnn.state_dict())
    before = params["W_hz"].copy()
    with torch.no_grad():
        rnn.weight_hh_l0.add_(1.0)
    np.testing.assert_array_equal(params["W_hz"], before)


# ----- against torch -----------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [None, {"in": 2, "hidden": 6}], ids=["spec-dims", "in2-hidden6"])
@pytest.mark.parametrize("spec", TORCH_SPECS, ids=SPEC_IDS)
def test_params_loaded_into_torch_give_the_same_outputs(spec, dims):
    mod = compile_spec(spec)
    params = noisy_params(mod, seed=1, dims=dims)
    dims = {**mod.DIMS, **(dims or {})}
    rnn = load(torch_rnn(spec, dims["in"], dims["hidden"], seed=9),
               rnnspec.to_torch_state_dict(mod, params))
    assert_torch_agrees(spec, mod, params, rnn, seed=2)


@pytest.mark.parametrize("spec", TORCH_SPECS, ids=SPEC_IDS)
def test_torch_state_dict_gives_the_same_outputs(spec):
    mod = compile_spec(spec)
    rnn = torch_rnn(spec, n_in=4, hidden=3, seed=5)
    params = rnnspec.from_torch_state_dict(mod, rnn.state_dict())   # tensors, as torch gives
    assert_torch_agrees(spec, mod, params, rnn, seed=6, T=9, B=2)


def test_gates_are_stacked_in_torch_order():
    """torch's documented layout, independently of the mapping: rows [H:2H] of weight_ih_l0 are
    the forget gate's (LSTM), [2H:3H] of bias_hh_l1_reverse the new gate's (GRU)."""
    lstm = compile_spec("torch_lstm.rnn")
    params = noisy_params(lstm, seed=0)
    H = lstm.DIMS["hidden"]
    np.testing.assert_array_equal(
        rnnspec.to_torch_state_dict(lstm, params)["weight_ih_l0"][H:2 * H], params["W_if"])
    bigru = compile_spec("torch_bigru.rnn")
    params = noisy_params(bigru, seed=0)
    H = bigru.DIMS["hidden"]
    np.testing.assert_array_equal(
        rnnspec.to_torch_state_dict(bigru, params)["bias_hh_l1_reverse"][2 * H:],
        params["b_hn_l1r"])


# ----- errors ------------------------------------------------------------------------------------
def test_missing_and_unexpected_state_dict_keys_are_named():
    mod = compile_spec("torch_bilstm.rnn")
    sd = {k: v.numpy() for k, v in torch_rnn("torch_bilstm.rnn", 3, 4).state_dict().items()}
    del sd["bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match=r"state_dict: missing 'bias_hh_l1_reverse'"):
        rnnspec.from_torch_state_dict(mod, sd)
    three = torch.nn.LSTM(3, 4, num_layers=3, bidirectional=True, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"unexpected 'weight_ih_l2', 'weight_hh_l2'"):
        rnnspec.from_torch_state_dict(mod, three.state_dict())


def test_wrong_state_dict_shapes_are_named():
    mod = compile_spec("torch_bigru.rnn")
    sd = {k: v.numpy() for k, v in torch_rnn("torch_bigru.rnn", 3, 4).state_dict().items()}
    bad = {**sd, "weight_hh_l0_reverse": sd["weight_hh_l0_reverse"][:9]}
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l0_reverse'\]: expected "
                                         r"shape \(12, 4\) \(hidden = 4 and in = 3 .*got \(9, 4\)"):
        rnnspec.from_torch_state_dict(mod, bad)
    bad = {**sd, "weight_ih_l1": sd["weight_ih_l1"][:, :4]}   # layer 1 reads both directions
    with pytest.raises(ValueError, match=r"\['weight_ih_l1'\]: expected shape \(12, 8\)"):
        rnnspec.from_torch_state_dict(mod, bad)
    bad = {**sd, "weight_hh_l0": sd["bias_hh_l0"]}
    with pytest.raises(ValueError, match=r"\['weight_hh_l0'\]: expected a matrix"):
        rnnspec.from_torch_state_dict(mod, bad)
    lstm_sd = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).state_dict()
    with pytest.raises(ValueError, match=r"\['weight_ih_l0'\]: expected shape \(12, 3\)"):
        rnnspec.from_torch_state_dict(mod, lstm_sd)      # an LSTM's weights into a GRU spec


def test_missing_params_and_wrong_param_shapes_are_named():
    mod = compile_spec("torch_lstm.rnn")
    params = mod.init_params()
    with pytest.raises(ValueError, match=r"params: missing 'W_io'"):
        rnnspec.to_torch_state_dict(mod, {k: v for k, v in params.items() if k != "W_io"})
    with pytest.raises(ValueError, match=r"params: unexpected 'W_ix'"):
        rnnspec.to_torch_state_dict(mod, {**params, "W_ix": params["W_ii"]})
    with pytest.raises(ValueError,
                       match=r"params\['W_hf'\]: expected shape \(5, 5\).*got \(5, 3\)"):
        rnnspec.to_torch_state_dict(mod, {**params, "W_hf": params["W_if"]})


def test_a_spec_without_torch_names_is_refused():
    with pytest.raises(ValueError, match=r"module for lstm\.rnn does not follow PyTorch's "
                                         r"names \(nn\.LSTM: W_ii, .*\): it has no parameter "
                                         r"named so"):
        rnnspec.to_torch_state_dict(compile_spec("lstm.rnn"), {})
    with pytest.raises(ValueError, match=r"lstm\.rnn does not follow"):
        rnnspec.from_torch_state_dict(compile_spec("lstm.rnn"), {})


ONE_GATE = """\
dim in = 3
dim hidden = 5
input x[t]: in
param W_ii: (hidden, in)
param W_hi: (hidden, hidden)
param b_ii: hidden
param b_hi: hidden
param V: (hidden, hidden)
state h: hidden = zeros
h[t] = tanh(W_ii @ x[t] + b_ii + W_hi @ h[t-1] + b_hi)
y[t] = V @ h[t]
"""


def test_missing_gates_and_extra_params_are_named():
    mod = rnnspec.compile_source(ONE_GATE, name="one_gate")
    with pytest.raises(ValueError, match=r"nn\.LSTM's layout \(1 layer\(s\), unidirectional\): "
                                         r"missing param\(s\) W_if, W_ig, W_io, W_hf, .*; "
                                         r"param\(s\) with no place in its state_dict V"):
        rnnspec.to_torch_state_dict(mod, mod.init_params())


def fake_module(params):
    """A module's PARAMS table only: declarations a compiled spec could not have."""
    return types.SimpleNamespace(PARAMS=params, __doc__="Forward pass for fake.rnn.",
                                 __name__="fake")


def test_declared_shapes_and_mixed_names_are_refused():
    gru = dict(compile_spec("torch_gru.rnn").PARAMS)
    with pytest.raises(ValueError, match=r"fake\.rnn: param W_hz is declared \(hidden, in\), "
                                         r"not \(hidden, hidden\)"):
        rnnspec.to_torch_state_dict(fake_module({**gru, "W_hz": ("hidden", "in")}), {})
    mixed = {**gru, **{k + "_l1": v for k, v in gru.items()}}
    with pytest.raises(ValueError, match=r"mixes unsuffixed names \(W_ir\) with _l<k> ones"):
        rnnspec.from_torch_state_dict(fake_module(mixed), {})
    both = {**gru, "W_ii": ("hidden", "in")}
    with pytest.raises(ValueError, match=r"mixes both families' names: W_ii, W_ir"):
        rnnspec.from_torch_state_dict(fake_module(both), {})


def test_rnnspec_does_not_import_torch():
    code = ("import sys, rnnspec, rnnspec.torch_weights; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_a_model_trained_by_rnnspec_train_loads_into_torch(tmp_path):
    """torch_lstm.rnn's cell with an output layer and a loss, trained by rnnspec.train (Adam,
    20 steps): its LSTM params go to nn.LSTM (others=True keeps the output layer apart), which
    gives the trained module's h to 1e-12; and they come back bit for bit."""
    from rnnspec.data import load_npz
    from rnnspec.train import train
    text = (SPECS / "torch_lstm.rnn").read_text()
    text += "\ndim out = 3\ntarget y[t]: class(out)\np[t]: out = softmax(affine(h[t], " \
            "name=head))\nloss = cross_entropy(p[t], y[t])\n"
    spec = tmp_path / "trained_lstm.rnn"
    spec.write_text(text)
    mod = rnnspec.compile_file(spec)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 3))
    np.savez(tmp_path / "d.npz", x=x, y=(x.sum(axis=-1) > 0).astype(int) + (x[..., 0] > 1))
    data = load_npz(tmp_path / "d.npz", mod, valid_fraction=0.25, seed=0)
    r = train(spec, data, lr=0.05, steps=20, batch=16, seed=0, log=lambda line: None)
    assert not np.array_equal(r.params["W_hi"], mod.init_params(None, seed=0)["W_hi"])
    sd, head = rnnspec.to_torch_state_dict(mod, r.params, others=True)
    assert set(head) == {"W_head_h", "b_head"}
    lstm = torch.nn.LSTM(3, 5, dtype=torch.float64)
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    out, _ = mod.forward(r.params, {"x": x[:, :4]})
    h, _ = lstm(torch.from_numpy(x[:, :4]))
    np.testing.assert_allclose(h.detach().numpy(), out["h"], **TOL)
    back = rnnspec.from_torch_state_dict(mod, lstm.state_dict(), others=head)
    assert all(np.array_equal(back[n], r.params[n]) for n in r.params)
    with pytest.raises(ValueError, match="param\\(s\\) with no place in its state_dict"):
        rnnspec.to_torch_state_dict(mod, r.params)
    with pytest.raises(ValueError, match="others: missing param\\(s\\) W_head_h, b_head"):
        rnnspec.from_torch_state_dict(mod, lstm.state_dict(), others={})
