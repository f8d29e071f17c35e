"""Optimizers (issue 12, part of 2): two steps by hand, 20 steps against torch.optim (the
test-only oracle), state dicts that resume bit for bit, the refusals, and Adam training elman."""
import io
import math

import numpy as np
import pytest

import rnnspec
from rnnspec import SGD, Adam, AdamW, load_optimizer, make_optimizer


def exact(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-15)


P0 = np.array([1.0, -2.0])
G1 = np.array([0.5, 0.25])
G2 = np.array([-1.0, 2.0])


def two_steps(opt):
    p1 = opt.step({"w": P0}, {"w": G1})["w"]
    p2 = opt.step({"w": p1}, {"w": G2})["w"]
    return p1, p2


# ---- two steps by hand --------------------------------------------------------------------

def test_sgd_by_hand():
    p1, p2 = two_steps(SGD(lr=0.1))
    exact(p1, [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 0.25])            # [0.95, -2.025]
    exact(p2, [0.95 - 0.1 * -1.0, -2.025 - 0.1 * 2.0])          # [1.05, -2.225]


def test_sgd_weight_decay_by_hand():
    p1, p2 = two_steps(make_optimizer("sgd", lr=0.1, weight_decay=0.5))
    # g <- g + 0.5 p:  [0.5 + 0.5, 0.25 - 1.0] = [1.0, -0.75]
    exact(p1, [0.9, -1.925])
    # [-1 + 0.5 * 0.9, 2 + 0.5 * -1.925] = [-0.55, 1.0375]
    exact(p2, [0.9 + 0.055, -1.925 - 0.10375])                 # [0.955, -2.02875]


def test_momentum_with_dampening_by_hand():
    p1, p2 = two_steps(make_optimizer("momentum", lr=0.1, momentum=0.9, dampening=0.5))
    # step 1: b = g1 (no dampening on the first step)
    exact(p1, [0.95, -2.025])
    # step 2: b = 0.9 b + (1 - 0.5) g2 = [0.45 - 0.5, 0.225 + 1.0] = [-0.05, 1.225]
    exact(p2, [0.95 + 0.005, -2.025 - 0.1225])                 # [0.955, -2.1475]


def test_nesterov_by_hand():
    p1, p2 = two_steps(make_optimizer("nesterov", lr=0.1))  # momentum 0.9
    # step 1: b = g1; g = g1 + 0.9 b = [0.95, 0.475]
    exact(p1, [1.0 - 0.095, -2.0 - 0.0475])                    # [0.905, -2.0475]
    # step 2: b = 0.9 b + g2 = [-0.55, 2.225]; g = g2 + 0.9 b = [-1.495, 4.0025]
    exact(p2, [0.905 + 0.1495, -2.0475 - 0.40025])             # [1.0545, -2.44775]


def test_nesterov_weight_decay_by_hand():
    p1, p2 = two_steps(SGD(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.5))
    # step 1: g = g1 + 0.5 p0 = [1.0, -0.75]; b = g; g = g + 0.5 b = [1.5, -1.125]
    exact(p1, [0.85, -1.8875])
    # step 2: g = g2 + 0.5 p1 = [-0.575, 1.05625]; b = 0.5 [1.0, -0.75] + g = [-0.075, 0.68125]
    #         g = g + 0.5 b = [-0.6125, 1.396875]
    exact(p2, [0.85 + 0.06125, -1.8875 - 0.1396875])           # [0.91125, -2.0271875]


def adam_by_hand(p, grads, lr, b1, b2, eps, wd=0.0, decoupled=False, amsgrad=False):
    """Adam's textbook form (Kingma & Ba, with torch's eps after the bias correction)."""
    m = v = vmax = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, 1):
        if decoupled:
            p = p - lr * wd * p
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def test_adam_by_hand():
    p1, p2 = two_steps(Adam(lr=0.1))
    # step 1: m_hat = g1, v_hat = g1**2: p1 = p0 - 0.1 g1 / (|g1| + 1e-8)
    exact(p1, [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 - 0.1 * 0.25 / (0.25 + 1e-8)])
    exact(p2, adam_by_hand(P0, [G1, G2], 0.1, 0.9, 0.999, 1e-8)[1])


def test_adam_eps_after_bias_correction_by_hand():
    p1, p2 = two_steps(Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25))
    # step 1: m = 0.5 g1, v = 0.25 g1^2; m_hat = g1, v_hat = g1^2: p0 - 0.1 g1 / (|g1| + 0.25)
    exact(p1, [1.0 - 0.1 * 0.5 / 0.75, -2.0 - 0.1 * 0.25 / 0.5])
    # step 2: m = 0.25 g1 + 0.5 g2 = [-0.375, 1.0625], m_hat = m / 0.75;
    #         v = 0.1875 g1^2 + 0.25 g2^2 = [0.296875, 1.01171875], v_hat = v / 0.4375
    m_hat = np.array([-0.375, 1.0625]) / 0.75
    v_hat = np.array([0.296875, 1.01171875]) / 0.4375
    exact(p2, p1 - 0.1 * m_hat / (np.sqrt(v_hat) + 0.25))


def test_adam_weight_decay_and_amsgrad_by_hand():
    # g2 + 0.5 p1 near 0 in the first entry, so that vmax keeps step 1's v there
    g2 = np.array([-0.5, 2.0])
    opt = Adam(lr=0.1, betas=(0.5, 0.75), eps=1e-3, weight_decay=0.5, amsgrad=True)
    p1 = opt.step({"w": P0}, {"w": G1})["w"]
    p2 = opt.step({"w": p1}, {"w": g2})["w"]
    want = adam_by_hand(P0, [G1, g2], 0.1, 0.5, 0.75, 1e-3, wd=0.5, amsgrad=True)
    exact(p1, want[0])
    exact(p2, want[1])
    plain = adam_by_hand(P0, [G1, g2], 0.1, 0.5, 0.75, 1e-3, wd=0.5)
    assert abs(plain[1][0] - want[1][0]) > 1e-3  # (amsgrad changed the first entry)


def test_adamw_by_hand():
    p1, p2 = two_steps(AdamW(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.5))
    # step 1: p0 shrunk by 1 - 0.1 * 0.5 = 0.95 first, the gradient untouched
    exact(p1, [0.95 - 0.1 * 0.5 / 0.75, -1.9 - 0.1 * 0.25 / 0.5])
    want = adam_by_hand(P0, [G1, G2], 0.1, 0.5, 0.75, 0.25, wd=0.5, decoupled=True)
    exact(p2, want[1])
    coupled = adam_by_hand(P0, [G1, G2], 0.1, 0.5, 0.75, 0.25, wd=0.5)
    assert np.abs(coupled[1] - p2).max() > 1e-3  # (decoupled is not Adam's L2)


# ---- against torch.optim --------------------------------------------------------------------

OPTION_SETS = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "weight_decay": 0.1}),
    ("momentum", {"lr": 0.05}),
    ("momentum", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1}),
    ("nesterov", {"lr": 0.05}),
    ("nesterov", {"lr": 0.05, "momentum": 0.7, "weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    ("adam", {"lr": 0.05, "amsgrad": True}),
    ("adamw", {"lr": 0.05}),
    ("adamw", {"lr": 0.05, "betas": (0.5, 0.9), "weight_decay": 0.3, "amsgrad": True}),
]
TORCH = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adam": "Adam", "adamw": "AdamW"}


def problem(dtype=np.float64, steps=20, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=4), "v": rng.normal(size=(2,))}
    params = {k: v.astype(dtype) for k, v in params.items()}
    grads = [{k: rng.normal(size=v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(steps)]
    return params, grads


def torch_run(torch, name, options, params, grads):
    kwargs = dict(options)
    if name == "momentum":
        kwargs.setdefault("momentum", 0.9)
    if name == "nesterov":
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = True
    tensors = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    opt = getattr(torch.optim, TORCH[name])(list(tensors.values()), **kwargs)
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


def run(opt, params, grads):
    for g in grads:
        params = opt.step(params, g)
    return params


@pytest.mark.parametrize("name,options", OPTION_SETS)
def test_matches_torch_for_20_steps(name, options):
    torch = pytest.importorskip("torch", reason="torch is the test-only oracle")
    params, grads = problem()
    want = torch_run(torch, name, options, params, grads)
    got = run(make_optimizer(name, **options), params, grads)
    for k in params:
        assert got[k].dtype == np.float64
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12, err_msg=k)
        assert np.abs(got[k] - params[k]).max() > 1e-3  # (the parameters did move)


@pytest.mark.parametrize("name,options", [OPTION_SETS[3], OPTION_SETS[5], OPTION_SETS[10]])
def test_float32_stays_float32_and_matches_torch(name, options):
    torch = pytest.importorskip("torch", reason="torch is the test-only oracle")
    params, grads = problem(np.float32)
    want = torch_run(torch, name, options, params, grads)
    opt = make_optimizer(name, **options)
    got = run(opt, params, grads)
    for k in params:
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert all(a.dtype == np.float32 for slot in opt.state.values() for a in slot.values())


# ---- state dicts and the caller's arrays --------------------------------------------------------

@pytest.mark.parametrize("name,options", OPTION_SETS)
def test_state_dict_resumes_bit_for_bit(name, options):
    params, grads = problem(steps=10, seed=1)
    straight = run(make_optimizer(name, **options), params, grads)
    first = make_optimizer(name, **options)
    half = run(first, params, grads[:5])
    buffer = io.BytesIO()
    np.savez(buffer, **first.state_dict())
    buffer.seek(0)
    with np.load(buffer) as saved:
        second = load_optimizer(saved)
    assert type(second) is type(first) and second.hyper == first.hyper and second.t == 5
    resumed = run(second, half, grads[5:])
    for k in params:
        assert np.array_equal(resumed[k], straight[k]), k
    # into an optimizer made with other hyperparameters: the state's are taken
    third = make_optimizer(name, lr=0.5)
    third.load_state_dict(first.state_dict())
    assert third.hyper == first.hyper
    again = run(third, half, grads[5:])
    assert all(np.array_equal(again[k], straight[k]) for k in params)


def test_the_callers_arrays_are_not_changed():
    params, grads = problem(steps=3)
    before = {k: v.copy() for k, v in params.items()}
    gbefore = [{k: v.copy() for k, v in g.items()} for g in grads]
    for name in ("sgd", "momentum", "nesterov", "adam", "adamw"):
        opt = make_optimizer(name, lr=0.1, weight_decay=0.1)
        out = run(opt, params, grads)
        state, twin = opt.state_dict(), load_optimizer(opt.state_dict())
        for k in params:
            assert np.array_equal(params[k], before[k]) and out[k] is not params[k]
            assert all(np.array_equal(g[k], b[k]) for g, b in zip(grads, gbefore))
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                value += 1.0  # (a copy: the optimizer's own arrays are not these)
        assert np.array_equal(run(opt, out, grads[:1])["W"], run(twin, out, grads[:1])["W"])


def test_momentum_buffer_is_the_optimizers_own():
    opt = make_optimizer("momentum", lr=0.1)
    g = {"w": G1.copy()}
    opt.step({"w": P0}, g)
    g["w"][:] = 100.0  # the caller reuses its gradient array
    exact(opt.step({"w": P0}, {"w": G2})["w"], P0 - 0.1 * (0.9 * G1 + G2))


# ---- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("params,grads,message", [
    ({"W": np.ones(2), "b": np.ones(3)}, {"W": np.ones(2)}, "no gradient for parameter 'b'"),
    ({"W": np.ones(2)}, {"W": np.ones(2), "U": np.ones(2)}, "a gradient for 'U'"),
    ({"W": np.ones((2, 3))}, {"W": np.ones((3, 2))},
     r"the gradient of 'W' has shape \(3, 2\), its parameter \(2, 3\)"),
    ({"W": np.ones(2, dtype=int)}, {"W": np.ones(2)}, "parameter 'W' must be a float array"),
    ({"W": [1.0, 2.0]}, {"W": np.ones(2)}, "parameter 'W' must be a float array"),
    ({"W": np.ones(2)}, {"W": np.array(["a", "b"])}, "the gradient of 'W' is not an array"),
    ({"W": np.ones(2)}, {"params": {"W": np.ones(2)}}, r"pass backward\(...\)\['params'\]"),
    ({"W": np.ones(2)}, [np.ones(2)], "must be dicts of arrays"),
])
def test_bad_arguments_to_step(params, grads, message):
    with pytest.raises(ValueError, match=message):
        Adam().step(params, grads)


def test_parameters_must_stay_the_ones_the_state_is_for():
    opt = make_optimizer("adam")
    opt.step({"W": np.ones(2), "b": np.ones(3)}, {"W": np.ones(2), "b": np.ones(3)})
    with pytest.raises(ValueError, match="parameter 'b' is missing: the optimizer keeps its "
                                         "exp_avg"):
        opt.step({"W": np.ones(2)}, {"W": np.ones(2)})
    with pytest.raises(ValueError, match=r"parameter 'b' has shape \(4,\), its exp_avg \(3,\)"):
        opt.step({"W": np.ones(2), "b": np.ones(4)}, {"W": np.ones(2), "b": np.ones(4)})
    assert opt.t == 1  # (a refused step is not counted)


@pytest.mark.parametrize("name,options,message", [
    ("adma", {}, "unknown optimizer 'adma'; did you mean 'adam'"),
    ("rmsprop", {}, r"unknown optimizer 'rmsprop' \(the optimizers: sgd, momentum, nesterov, "
                    r"adam, adamw\)"),
    ("sgd", {"momentum": 0.9}, "optimizer 'sgd' takes no option 'momentum'"),
    ("nesterov", {"dampening": 0.1}, "optimizer 'nesterov' takes no option 'dampening'"),
    ("adam", {"nesterov": True}, r"takes no option 'nesterov' \(its options: lr, betas"),
    ("momentum", {"momentum": 0.0}, "optimizer 'momentum' needs momentum > 0"),
    ("sgd", {"lr": -0.1}, r"lr must be >= 0, got -0.1"),
    ("adam", {"lr": float("nan")}, "lr must be a finite number, got nan"),
    ("adam", {"lr": "0.1"}, "lr must be a finite number, got '0.1'"),
    ("adam", {"lr": True}, "lr must be a finite number, got True"),
    ("adam", {"betas": (0.9, 1.0)}, r"beta2 must be in \[0, 1\), got 1.0"),
    ("adamw", {"betas": (-0.1, 0.9)}, r"beta1 must be in \[0, 1\), got -0.1"),
    ("adam", {"betas": 0.9}, r"betas must be a pair \(beta1, beta2\)"),
    ("adam", {"eps": -1e-8}, "eps must be >= 0"),
    ("adamw", {"weight_decay": -1.0}, "weight_decay must be >= 0"),
    ("adam", {"amsgrad": 1}, "amsgrad must be True or False, got 1"),
    ("momentum", {"momentum": 1.5}, r"momentum must be in \[0, 1\), got 1.5"),
    ("momentum", {"dampening": 2.0}, r"dampening must be in \[0, 1\], got 2.0"),
])
def test_bad_names_and_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, **options)


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
        SGD(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_bad_state_dicts():
    state = make_optimizer("adam").state_dict()
    with pytest.raises(ValueError, match="the state of a 'adam' optimizer, not of 'sgd'"):
        SGD().load_state_dict(state)
    with pytest.raises(ValueError, match="the state has no 'step'"):
        Adam().load_state_dict({"kind": "adam"})
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        Adam().load_state_dict({**state, "colour": 1})
    with pytest.raises(ValueError, match="Adam has no hyperparameter 'momentum'"):
        Adam().load_state_dict({**state, "hyper.momentum": 0.9})
    with pytest.raises(ValueError, match=r"Adam keeps no 'momentum_buffer' arrays"):
        Adam().load_state_dict({**state, "momentum_buffer/W": np.ones(2)})
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        Adam().load_state_dict({**state, "step": -1})
    with pytest.raises(ValueError, match="beta2 must be in"):
        Adam().load_state_dict({**state, "hyper.beta2": 1.0})
    with pytest.raises(ValueError, match="unknown optimizer kind 'lion'"):
        load_optimizer({**state, "kind": "lion"})


def test_repr_names_the_hyperparameters():
    assert repr(make_optimizer("nesterov", lr=0.5)) == (
        "SGD(lr=0.5, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True)")
    assert repr(AdamW()) == ("AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, "
                             "weight_decay=0.01, amsgrad=False)")


# ---- end to end ----------------------------------------------------------------------------------

def test_adam_trains_elman():
    mod = rnnspec.compile_file("specs/elman.rnn")
    rng = np.random.default_rng(0)
    inputs, targets = {"x": rng.normal(size=(8, 4, 3))}, {"y": rng.integers(0, 3, size=(8, 4))}
    params = mod.init_params(seed=0)
    opt = make_optimizer("adam", lr=0.05)
    losses = []
    for _ in range(50):
        loss, grads = mod.loss_and_grad(params, inputs, targets)
        losses.append(float(loss))
        params = opt.step(params, grads["params"])
    # measured: 85.32 -> 16.78 (per token 2.67 -> 0.52) after 50 steps
    assert math.isfinite(losses[-1]) and losses[-1] < 0.25 * losses[0]
    assert opt.t == 50 and set(opt.state["exp_avg"]) == set(mod.PARAMS)
