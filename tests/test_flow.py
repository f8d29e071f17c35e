"""Seeing gradients vanish and explode (issue 11, part 5): backward(..., state_grads=True) and
rnnspec flow, against direct computations (powers of W^T, finite-difference Jacobians, the
gradient of the rest of the run from a state)."""
import json
from pathlib import Path

import numpy as np
import pytest

import rnnspec
from rnnspec.api import analyze
from rnnspec.cli import main
from rnnspec.flow import gradient_flow, step_jacobians
from rnnspec.gradcheck import random_problem
from rnnspec.graph import build_graph

SPECS = Path(__file__).resolve().parent.parent / "specs"

LINEAR = """\
dim n = 4
dim m = 2
input x[t]: m
param W: (n, n) = normal(0.6)
param U: (n, m) = normal(1.0)
state h: n = zeros
h[t] = identity(W @ h[t-1] + U @ x[t])
"""


def test_linear_network_curve_is_powers_of_W_transposed():
    """004 3.1: for h_t = W h_(t-1) + U x_t and a loss on h_T, dL/dh_t = (W^T)^(T-t) g."""
    mod = rnnspec.compile_source(LINEAR, name="linear4")
    a = analyze(LINEAR, filename="linear4.rnn")
    params = mod.init_params(seed=3)
    T = 25
    flow = gradient_flow(mod, params, T=T, seed=1, graph=build_graph(a.model))
    g = flow.upstream["h"][0]
    W = params["W"]
    want = [np.linalg.norm(np.linalg.matrix_power(W.T, T - t) @ g) for t in range(1, T + 1)]
    assert np.allclose(flow.last["h"], want, rtol=1e-12, atol=0)
    assert want[0] < 1e-2 * want[-1] or want[0] > 1e2 * want[-1]  # (it does vanish or grow)
    # the step Jacobian of a linear network is W at every step; rho is W's
    rho = np.abs(np.linalg.eigvals(W)).max()
    assert np.allclose(flow.jacobian_norm, np.linalg.norm(W, 2), rtol=1e-12)
    assert np.allclose(flow.jacobian_radius, rho, rtol=1e-12)
    assert flow.matrices == {"W": pytest.approx(rho, rel=1e-12)}
    assert flow.loss == {}  # (no loss in this spec)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "skip", "deep"])
def test_step_jacobians_equal_finite_differences(name):
    mod = rnnspec.compile_file(SPECS / f"{name}.rnn")
    params = mod.init_params(seed=0)
    _, x, _, _, _ = random_problem(mod, None, 4, 1, 0)
    Js = step_jacobians(mod, params, x, 4)
    state = None
    for t, J in enumerate(Js):
        one = {n: v[t:t + 1] for n, v in x.items()}
        out, _ = mod.forward(params, one, None, state, 1)
        if state is None:
            state = {n: np.zeros_like(v) for n, v in out["final"].items()}
        assert np.abs(J - fd_jacobian(mod, params, one, state)).max() < 1e-8, (name, t)
        state = out["final"]


def fd_jacobian(mod, params, one, state):
    """d final / d state0 of the one-step run on inputs ``one`` from ``state``, by central
    differences over every state entry."""
    names = list(state)
    flat = np.concatenate([np.ravel(state[n]) for n in names])

    def step(v):
        s0, k = {}, 0
        for n in names:
            s0[n] = v[k:k + state[n].size].reshape(state[n].shape)
            k += state[n].size
        o, _ = mod.forward(params, one, None, s0, 1)
        return np.concatenate([np.ravel(o["final"][n]) for n in names])
    return np.array([(step(flat + 1e-6 * e) - step(flat - 1e-6 * e)) / 2e-6
                     for e in np.eye(len(flat))]).T


# the states computed last in a step (nothing else of the step reads them): for those, the
# run after step t from the states at t is everything they act on (lstm's C[t] also makes
# h[t], deep's h[t] also makes z[t], in the same step: the run after t has no such path)
LAST_IN_STEP = {"elman": {"s"}, "skip": {"h"}, "lstm": {"h"}, "deep": {"z"}, "gru": {"h"}}


@pytest.mark.parametrize("name", sorted(LAST_IN_STEP))
def test_state_grads_are_the_gradient_of_the_rest_of_the_run(name):
    """With an upstream gradient on the final states only, the gradient of a state computed
    last in its step, at step t, is the state0 gradient of the run of the steps after t,
    started from the states at t."""
    mod = rnnspec.compile_file(SPECS / f"{name}.rnn")
    T = 6
    p, x, y, s0, up = random_problem(mod, None, T, 2, 0)
    d = {"final": up["final"], "loss": 0.0}
    out, cache = mod.forward(p, x, y, s0, T)
    states = mod.backward(p, cache, d, state_grads=True)["states"]
    assert set(states) == set(mod.STATES)
    for t in range(T - 1):
        head, _ = mod.forward(p, {n: v[:t + 1] for n, v in x.items()}, None, s0, t + 1)
        tail_x = {n: v[t + 1:] for n, v in x.items()}
        _, c = mod.forward(p, tail_x, None, head["final"], T - t - 1)
        g = mod.backward(p, c, {"final": up["final"]})["state0"]
        for n in LAST_IN_STEP[name]:
            v = states[n]
            want = g[n][-1] if mod.STATES[n].get("steps", 1) > 1 else g[n]
            assert np.allclose(v[t], want, rtol=1e-12, atol=1e-14), (name, n, t)
    # without state_grads, the result is what it was
    assert "states" not in mod.backward(p, cache, d)


def test_checkpointed_state_grads_agree():
    text = (SPECS / "lstm.rnn").read_text()
    mod, ck = rnnspec.compile_source(text, name="l1"), rnnspec.compile_source(text, name="l2",
                                                                              checkpoint=3)
    p, x, y, s0, up = random_problem(mod, None, 8, 2, 0, [8, 5])
    g1 = mod.backward(p, mod.forward(p, x, y, s0, 8, [8, 5])[1], up, state_grads=True)
    g2 = ck.backward(p, ck.forward(p, x, y, s0, 8, [8, 5])[1], up, state_grads=True)
    for n in g1["states"]:
        assert np.allclose(g1["states"][n][:, 0], g2["states"][n][:, 0], rtol=1e-12, atol=1e-14)
        assert np.allclose(g1["states"][n][:5, 1], g2["states"][n][:5, 1], rtol=1e-12,
                           atol=1e-14)


def test_cli_flow_table_and_json(tmp_path, capsys):
    js = tmp_path / "f.json"
    assert main(["flow", str(SPECS / "elman.rnn"), "--T", "30", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "gradient flow of elman.rnn (T=30" in out and "rho(W) = " in out
    data = json.loads(js.read_text())
    assert len(data["last"]["s"]) == 30 and len(data["jacobian_norm"]) == 30
    assert data["last"]["s"][-1] == pytest.approx(1.0)  # (a unit gradient on the last state)


def test_cli_flow_refusals(tmp_path, capsys):
    assert main(["flow", str(SPECS / "bigru.rnn")]) == 2
    err = capsys.readouterr().err
    assert "bigru.rnn:22:28: error: rnnspec flow measures a recurrence forward in time" in err
    assert main(["flow", str(SPECS / "elman.rnn"), "-o", str(tmp_path / "f.jpg")]) == 2
    assert "name it .png" in capsys.readouterr().err
    assert main(["flow", str(SPECS / "elman.rnn"), "--json", str(tmp_path / "no" / "f.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_flow_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the optional extra rnnspec[plot]")
    png = tmp_path / "f.png"
    assert main(["flow", str(SPECS / "lstm.rnn"), "--T", "20", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_computed_initial_states_have_no_first_jacobian():
    """h0_from_input starts from h0 = f(x0): J_1 (with respect to a computed state) is not
    formed, the later ones are those of the run itself (equal to finite differences there)."""
    mod = rnnspec.compile_file(SPECS / "h0_from_input.rnn")
    params = mod.init_params(seed=0)
    _, x, _, _, _ = random_problem(mod, None, 4, 1, 0)
    Js = step_jacobians(mod, params, x, 4)
    assert Js[0] is None and all(J is not None for J in Js[1:])
    flow = gradient_flow(mod, params, T=4)
    assert np.isnan(flow.jacobian_norm[0]) and np.isfinite(flow.jacobian_norm[1:]).all()
    out, _ = mod.forward(params, {n: v[:1] if mod.INPUTS[n]["kind"] == "sequence" else v
                                  for n, v in x.items()}, None, None, 1)
    state = out["final"]  # the states after step 1 of the real run
    one = {n: v[1:2] if mod.INPUTS[n]["kind"] == "sequence" else v for n, v in x.items()}
    assert np.abs(Js[1] - fd_jacobian(mod, params, one, state)).max() < 1e-8


def test_large_states_by_power_iteration():
    """Past MAX_EXACT state numbers the step Jacobian's norm and radius are power-iteration
    estimates: within 1% of the exact SVD norm and eigenvalue radius of the same Jacobians,
    said so in the note; and the estimator alone on matrices whose answer is known."""
    from rnnspec.flow import MAX_EXACT, power_norm_radius
    mod = rnnspec.compile_file(SPECS / "elman.rnn", {"n": MAX_EXACT + 88})
    params = mod.init_params({"n": MAX_EXACT + 88}, seed=0)
    flow = gradient_flow(mod, params, T=3, dims={"n": MAX_EXACT + 88})
    assert "power-iteration estimates" in flow.note
    _, x, _, _, _ = random_problem(mod, {"n": MAX_EXACT + 88}, 3, 1, 0)
    for t, J in enumerate(step_jacobians(mod, params, x, 3)):
        assert abs(flow.jacobian_norm[t] / np.linalg.norm(J, 2) - 1) < 1e-2
        assert abs(flow.jacobian_radius[t] / np.abs(np.linalg.eigvals(J)).max() - 1) < 1e-2
    rotation = np.kron(np.eye(300), [[0.0, -0.9], [0.9, 0.0]])  # eigenvalues +-0.9i only
    assert np.allclose(power_norm_radius(rotation), (0.9, 0.9), rtol=1e-9)
    diag = np.diag(np.linspace(0.1, 2.0, 600))  # (600 close values: the slowest case)
    norm, radius = power_norm_radius(diag)
    assert 2.0 * (1 - 1e-2) < norm <= 2.0 and abs(radius - 2.0) < 2e-2
