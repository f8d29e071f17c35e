"""Gradient clipping (issue 11, part 4), against computations by hand and torch's."""
import numpy as np
import pytest

from rnnspec import clip_grads


def grads():
    return {"params": {"W": np.array([[3.0, -4.0], [0.0, 12.0]]), "b": np.array([-0.5, 0.25])},
            "state0": {"h": np.array([[2.0, -1.0]])}}


def test_elementwise():
    g = grads()
    out, n = clip_grads(g, value=1.0)
    assert np.array_equal(out["params"]["W"], [[1.0, -1.0], [0.0, 1.0]])
    assert np.array_equal(out["params"]["b"], [-0.5, 0.25])
    assert np.array_equal(out["state0"]["h"], [[1.0, -1.0]])
    assert n == pytest.approx(np.sqrt(9 + 16 + 144 + 0.25 + 0.0625 + 4 + 1))
    assert g["params"]["W"][0, 0] == 3.0  # (the input is not changed)


def test_by_norm_keeps_the_direction():
    g = grads()
    total = np.sqrt(9 + 16 + 144 + 0.25 + 0.0625 + 4 + 1)
    out, n = clip_grads(g, norm=2.0)
    assert n == pytest.approx(total)
    assert np.allclose(out["params"]["W"], g["params"]["W"] * 2.0 / total, rtol=1e-15)
    flat = np.concatenate([out["params"]["W"].ravel(), out["params"]["b"], out["state0"]["h"].ravel()])
    assert np.linalg.norm(flat) == pytest.approx(2.0, rel=1e-14)
    same, n2 = clip_grads(g, norm=100.0)  # under the threshold: unchanged (copies)
    assert n2 == n and np.array_equal(same["params"]["W"], g["params"]["W"])
    assert same["params"]["W"] is not g["params"]["W"]


def test_by_norm_matches_torch():
    torch = pytest.importorskip("torch", reason="torch is the test-only oracle")
    rng = np.random.default_rng(0)
    g = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=5)}}
    ts = [torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64)),
          torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))]
    ts[0].grad, ts[1].grad = torch.tensor(g["a"]), torch.tensor(g["b"]["c"])
    norm = torch.nn.utils.clip_grad_norm_(ts, max_norm=1.5)
    out, n = clip_grads(g, norm=1.5)
    assert n == pytest.approx(float(norm), rel=1e-14)
    # (torch divides by norm + 1e-6)
    assert np.allclose(out["a"], ts[0].grad.numpy(), rtol=1e-5)
    assert np.allclose(out["b"]["c"], ts[1].grad.numpy(), rtol=1e-5)


def test_random_step_of_norm_v():
    g = grads()
    out, n = clip_grads(g, norm=2.0, random=True, seed=3)
    flat = np.concatenate([out["params"]["W"].ravel(), out["params"]["b"], out["state0"]["h"].ravel()])
    assert np.linalg.norm(flat) == pytest.approx(2.0, rel=1e-14)
    again, _ = clip_grads(g, norm=2.0, random=True, seed=3)
    assert np.array_equal(again["params"]["W"], out["params"]["W"])
    other, _ = clip_grads(g, norm=2.0, random=True, seed=4)
    assert not np.array_equal(other["params"]["W"], out["params"]["W"])
    # the direction is random, not the gradient's: over many draws the mean is near zero
    rng = np.random.default_rng(0)
    mean = sum(clip_grads(g, norm=1.0, random=True, seed=rng)[0]["params"]["W"]
               for _ in range(2000)) / 2000
    assert np.abs(mean).max() < 0.05
    small, _ = clip_grads(g, norm=100.0, random=True, seed=3)  # under the threshold: kept
    assert np.array_equal(small["params"]["W"], g["params"]["W"])


def test_inf_and_nan():
    g = {"W": np.array([1.0, np.inf]), "b": np.array([2.0])}
    out, n = clip_grads(g, value=1.0)
    assert n == np.inf and np.array_equal(out["W"], [1.0, 1.0])
    out, n = clip_grads(g, norm=1.0)  # inf * (1 / inf): NaN, as the docstring says
    assert n == np.inf and np.isnan(out["W"][1]) and out["W"][0] == 0.0
    with pytest.raises(ValueError, match=r"grads\['W'\] holds inf\); clipping by the norm"):
        clip_grads(g, norm=1.0, error_if_nonfinite=True)
    g = {"p": {"W": np.array([np.nan])}}
    out, n = clip_grads(g, norm=1.0)
    assert np.isnan(n) and np.isnan(out["p"]["W"][0])
    with pytest.raises(ValueError, match=r"grads\['p'\]\['W'\] holds NaN"):
        clip_grads(g, norm=1.0, error_if_nonfinite=True)


def test_bad_arguments():
    for kw, msg in (({}, "exactly one of"), ({"value": 1, "norm": 1}, "exactly one of"),
                    ({"norm": 0}, "positive finite"), ({"value": -1}, "positive finite"),
                    ({"norm": np.inf}, "positive finite"), ({"value": True}, "positive finite"),
                    ({"value": 1.0, "random": True}, "give norm=v")):
        with pytest.raises(ValueError, match=msg):
            clip_grads(grads(), **kw)
    with pytest.raises(ValueError, match="expected a dict of arrays, got list"):
        clip_grads([np.ones(2)], norm=1.0)
    with pytest.raises(ValueError, match=r"grads\['x'\] is not an array of real numbers"):
        clip_grads({"x": "abc"}, norm=1.0)
    with pytest.raises(ValueError, match="not an array of real numbers"):
        clip_grads({"x": np.array([3 + 4j])}, norm=1.0)


def test_integer_gradients_get_a_float_random_step():
    out, n = clip_grads({"a": np.array([3, 4])}, norm=1.0, random=True, seed=0)
    assert n == 5.0 and out["a"].dtype.kind == "f"
    assert np.linalg.norm(out["a"]) == pytest.approx(1.0)
