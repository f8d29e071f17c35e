"""Each derivative rule alone, with no codegen: its expression nodes are printed, evaluated with
NumPy and the runtime helpers, and checked against central differences -- reverse mode
(vector-Jacobian products) and forward mode (Jacobian-vector products) -- and against each
other (<g, J v> = <J^T g, v>).  The printer is pinned on the cases whose parentheses matter."""
import zlib

import numpy as np
import pytest

from rnnspec import expr as E
from rnnspec.printer import show
from rnnspec import ops
from rnnspec.errors import missing_rule
from rnnspec.runtime import helpers, tangents

EPS = 1e-6
B, N = 3, 4


def _env(**arrays):
    env = {"np": np, **{k: v for module in (helpers, tangents)
                        for k, v in vars(module).items() if k.startswith("_")}}
    env.update(arrays)
    return env


def _eval(node, env):
    return eval(show(node), env)  # noqa: S307 - text printed from our own nodes


def _fit(g, shape):
    """A contribution summed over the axes it was broadcast along (what codegen's reduce does)."""
    g = np.asarray(g, dtype=float)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    return g.sum(axis=tuple(k for k, n in enumerate(shape) if n == 1 and g.shape[k] != 1),
                 keepdims=True) if g.ndim else g


def _rng(name):
    """A generator of its own for each case or test (seeded from its name: any order, any
    selection of tests draws the same numbers)."""
    return np.random.default_rng(zlib.crc32(name.encode()))


# name, argument arrays (drawn from the case's generator), attrs, differentiable arguments;
# every case is evaluated at a point where the inputs keep away from kinks (relu at 0) and
# domain edges (log at 0)
CASES = [
    ("add", lambda rng: [rng.normal(size=(B, N)), rng.normal(size=(N,))], {}, [0, 1]),
    ("sub", lambda rng: [rng.normal(size=(B, N)), rng.normal(size=(B, N))], {}, [0, 1]),
    ("neg", lambda rng: [rng.normal(size=(B, N))], {}, [0]),
    ("mul", lambda rng: [rng.normal(size=(B, N)), rng.normal(size=(B, N))], {}, [0, 1]),
    ("div", lambda rng: [rng.normal(size=(B, N)), rng.uniform(1, 2, size=(B, N))], {}, [0, 1]),
    ("matvec", lambda rng: [rng.normal(size=(5, N)), rng.normal(size=(B, N))], {}, [0, 1]),
    ("matvec", lambda rng: [rng.normal(size=(5, N)), rng.normal(size=(2, B, N))],
     {"rows": True}, [0, 1]),
    ("tanh", lambda rng: [rng.normal(size=(B, N))], {}, [0]),
    ("sigmoid", lambda rng: [rng.normal(size=(B, N))], {}, [0]),
    ("relu", lambda rng: [rng.choice([-1, 1], size=(B, N)) * rng.uniform(0.5, 1, size=(B, N))],
     {}, [0]),
    ("exp", lambda rng: [rng.normal(size=(B, N))], {}, [0]),
    ("log", lambda rng: [rng.uniform(0.5, 2, size=(B, N))], {}, [0]),
    ("identity", lambda rng: [rng.normal(size=(B, N))], {}, [0]),
    ("softmax", lambda rng: [rng.normal(size=(B, N))], {}, [0]),
    ("concat", lambda rng: [rng.normal(size=(B, N)), rng.normal(size=(B, 2))],
     {"sizes": [E.Num(4), E.Num(2)]}, [0, 1]),
    ("stack_rows", lambda rng: [rng.normal(size=(2, N)), rng.normal(size=(3, N))],
     {"bounds": [("", "2"), ("2", "5")]}, [0, 1]),
    ("part", lambda rng: [rng.normal(size=(B, 5))],
     {"bounds": [("", "2"), ("2", "5")], "index": 1}, [0]),
    ("regroup", lambda rng: [rng.normal(size=(6, N))], {"T": "2", "n": "4"}, [0]),
    ("attn_context", lambda rng: [rng.dirichlet(np.ones(5), size=B), rng.normal(size=(5, B, N))],
     {}, [0, 1]),
    ("squared_error", lambda rng: [rng.normal(size=(2, B, N)), rng.normal(size=(2, B, N))],
     {}, [0]),
    # embed(x[t], n): rows of E (5, N) picked by indices (2, B) that repeat (np.add.at)
    ("embed", lambda rng: [rng.normal(size=(5, N)), np.array([[0, 3, 0], [3, 3, 1]])], {}, [0]),
    ("squared_error", lambda rng: [rng.normal(size=(2, B, N)), rng.normal(size=(2, B, N))],
     {"w": "w"}, [0]),
]
IDS = [f"{c[0]}-{k}" for k, c in enumerate(CASES)]


def _into_part(g, F, attrs):
    """part's backward is g for its own slice: codegen puts the parts' gradients side by side."""
    lo, hi = attrs["bounds"][attrs["index"]]
    full = np.zeros_like(F)
    full[..., int(lo or 0):int(hi)] = g
    return full


def _apply(name, args, attrs, env):
    nodes = [E.Name(f"a{k}") for k in range(len(args))]
    env.update({f"a{k}": a for k, a in enumerate(args)})
    return _eval(ops.rule(name).forward(*nodes, **attrs), env), nodes


def _value(name, args, attrs, extra):
    return np.asarray(_apply(name, args, attrs, _env(**extra))[0], dtype=float)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_reverse_and_forward_mode_match_central_differences(case):
    """Each mode against central differences, and the two modes against each other: the
    adjoint identity <g, J v> = <J^T g, v> for every differentiable argument."""
    name, make_args, attrs, wrt = CASES[case]
    rng = _rng(IDS[case])
    args = make_args(rng)
    r = ops.rule(name)
    extra = {"w": rng.uniform(0.5, 1, size=(2, B))}
    env = _env(**extra)
    out, nodes = _apply(name, args, attrs, env)
    env["out"] = out
    g = np.asarray(rng.normal(size=np.shape(out)), dtype=float)
    env["g"] = g
    tangents = [rng.normal(size=np.shape(a)) for a in args]
    others = [rng.normal(size=np.shape(a)) for a in args]  # a second direction of each
    for k, (v, u) in enumerate(zip(tangents, others)):
        # forward mode takes a batch of directions, the direction axis first (lifted to the
        # rank of the op's value where the op broadcasts, as codegen gives it)
        lift = np.ndim(out) - np.ndim(v) if name in ops.BROADCASTING else 0
        env[f"v{k}"] = np.stack([v, u]).reshape((2,) + (1,) * max(lift, 0) + np.shape(v))

    def moved(step, k, towards=tangents):
        return [a + step * towards[k] if j == k else a for j, a in enumerate(args)]

    def difference(k, towards=tangents):
        return (_value(name, moved(EPS, k, towards), attrs, extra) -
                _value(name, moved(-EPS, k, towards), attrs, extra)) / (2 * EPS)

    for k in wrt:
        numeric = difference(k)
        vjp = r.backward(k, E.Name("g"), E.Name("out"), nodes, **attrs)
        assert vjp is not E.ZERO, f"{name}: no gradient for argument {k}"
        back = _fit(_eval(vjp, env), np.shape(args[k])) if name != "part" else \
            _into_part(_eval(vjp, env), args[k], attrs)
        assert back.shape == np.shape(args[k])
        np.testing.assert_allclose((back * tangents[k]).sum(), (g * numeric).sum(),
                                   rtol=1e-7, atol=1e-8)
        d = [E.Name(f"v{j}") if j == k else E.ZERO for j in range(len(args))]
        both = np.broadcast_to(_eval(r.tangent(d, E.Name("out"), nodes, **attrs), env),
                               (2,) + np.shape(numeric))
        fwd = both[0]
        np.testing.assert_allclose(fwd, numeric, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(both[1], difference(k, others), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose((g * fwd).sum(), (back * tangents[k]).sum(),
                                   rtol=1e-10, atol=1e-12)  # <g, J v> = <J^T g, v>


def test_cross_entropy_rules_from_the_logits():
    """cross_entropy(z, o, y) reads o = softmax(z): the differences move z and o together."""
    r = ops.rule("cross_entropy")
    rng = _rng("cross_entropy")
    z = rng.normal(size=(2, B, N))
    y = rng.integers(0, N, size=(2, B))
    v = rng.normal(size=z.shape)
    nodes = [E.Name("z"), E.Name("o"), E.Name("y")]

    def loss(zz):
        return _eval(r.forward(*nodes, w=None), _env(z=zz, o=helpers._softmax(zz), y=y))

    numeric = (loss(z + EPS * v) - loss(z - EPS * v)) / (2 * EPS)
    env = _env(z=z, o=helpers._softmax(z), y=y, g=2.0, v=v)
    back = _eval(r.backward(0, E.Name("g"), None, nodes, w=None), env)
    np.testing.assert_allclose((back * v).sum(), 2.0 * numeric, rtol=1e-7)
    env["v"] = v[None]  # one direction
    fwd, = _eval(r.tangent([E.Name("v"), E.ZERO, E.ZERO], None, nodes, w=None), env)
    np.testing.assert_allclose(fwd, numeric, rtol=1e-7)
    np.testing.assert_allclose((back * v).sum(), 2.0 * fwd, rtol=1e-10)  # <g, J v> = <J^T g, v>
    assert r.backward(2, E.Name("g"), None, nodes, w=None) is E.ZERO  # no gradient into y


def test_embedding_gradient_adds_every_use_of_a_row():
    """A row picked k times gets the sum of its k gradient rows (np.add.at, where E[x] += g
    would keep only one); rows never picked get zero; the indices get no gradient."""
    r = ops.rule("embed")
    E_ = np.arange(12.0).reshape(4, 3)
    x = np.array([[2, 0], [2, 2]])  # row 2 three times, row 0 once, rows 1 and 3 never
    g = np.arange(1.0, 13.0).reshape(2, 2, 3)
    nodes = [E.Name("E"), E.Name("x")]
    env = _env(E=E_, x=x, g=g)
    np.testing.assert_array_equal(_eval(r.forward(*nodes), env), E_[[[2, 0], [2, 2]]])
    dE = _eval(r.backward(0, E.Name("g"), None, nodes), env)
    want = np.zeros((4, 3))
    want[2] = [1 + 7 + 10, 2 + 8 + 11, 3 + 9 + 12]  # g[0, 0] + g[1, 0] + g[1, 1]
    want[0] = [4, 5, 6]  # g[0, 1]
    np.testing.assert_array_equal(dE, want)
    assert r.backward(1, E.Name("g"), None, nodes) is E.ZERO
    # forward mode: the tangent of E (directions first) gathers the same rows; x has none
    env["dE"] = np.stack([np.ones((4, 3)), np.eye(4, 3)])
    d = _eval(r.tangent([E.Name("dE"), E.ZERO], None, nodes), env)
    np.testing.assert_array_equal(d, env["dE"][:, x])


def test_rules_with_no_gradient_give_the_symbolic_zero():
    g, out = E.Name("g"), E.Name("out")
    assert ops.rule("onehot").backward(0, g, out, [E.Name("y")]) is E.ZERO
    assert ops.rule("choose").backward(0, g, out, [E.Name("p")]) is E.ZERO
    assert ops.rule("squared_error").backward(1, g, out, [E.Name("p"), E.Name("y")]) is E.ZERO
    # a tangent of nothing that varies is zero without asking the rule
    assert ops.rule("tanh").tangent([E.ZERO], out, [E.Name("a")]) is E.ZERO


def test_every_rule_has_a_forward_mode_rule_or_says_it_has_none():
    missing = sorted(n for n, r in ops.RULES.items() if r.jvp is None)
    assert missing == ["attn_weights"]  # attention: reverse mode only, for now
    with pytest.raises(NotImplementedError, match="forward-mode.*'attn_weights'"):
        ops.rule("attn_weights").tangent([E.Name("dq")], None, [E.Name("q"), E.Name("K")])
    assert "forward-mode" in str(missing_rule("x", mode="forward"))


@pytest.mark.parametrize("node,text", [
    (E.mul(E.Name("g"), E.sub(1, E.mul(E.Name("h"), E.Name("h")))), "g * (1 - h * h)"),
    (E.sub(E.Name("a"), E.sub(E.Name("b"), E.Name("c"))), "a - (b - c)"),
    (E.sub(E.sub(E.Name("a"), E.Name("b")), E.Name("c")), "a - b - c"),
    (E.div(E.mul(E.neg(E.Name("g")), E.Name("o")), E.Name("b")), "-g * o / b"),
    (E.neg(E.add(E.Name("a"), E.Name("b"))), "-(a + b)"),
    (E.neg(E.neg(E.Name("a"))), "a"),
    (E.neg(E.Code("-x")), "x"),
    (E.mul(E.Name("g"), E.greater(E.Name("o"), 0)), "g * (o > 0)"),
    (E.method(E.mul(E.Name("g"), E.Name("o")), "sum", axis=-1, keepdims=True),
     "(g * o).sum(axis=-1, keepdims=True)"),
    (E.subscript(E.Name("F"), E.ELLIPSIS, E.span("", "n")), "F[..., :n]"),
    (E.Attr(E.add(E.Name("a"), E.Name("b")), "T"), "(a + b).T"),
    (E.mul(E.Code("a + b"), E.Name("c")), "(a + b) * c"),
    (E.call("np.tanh", E.Name("a")).with_kwarg("out", E.Code("h[t]")), "np.tanh(a, out=h[t])"),
    (E.mul(E.Num(1), E.Name("a")), "a"),
    (E.add(E.ZERO, E.Name("a")), "a"),
    (E.mul(E.ZERO, E.Name("a")), None),
])
def test_printer_parenthesizes_exactly_as_python_needs(node, text):
    if text is None:
        assert node is E.ZERO
        with pytest.raises(AssertionError, match="symbolic zero"):
            show(node)
        return
    assert show(node) == text
    names = {n: np.full(2, 1.5) for n in "abcgox"}
    names.update(F=np.ones((2, 3)), n=2, h=np.ones((2, 2)), t=0, np=np)
    eval(text, names)  # noqa: S307 - it is Python


def test_printed_adjoint_of_tanh_is_pinned():
    """The adjoint program is data: the tanh rule's three results, printed."""
    r = ops.rule("tanh")
    g, h, a = E.Name("g"), E.Name("h"), E.Name("a")
    assert show(r.forward(a)) == "np.tanh(a)"
    assert show(r.backward(0, g, h, [a])) == "g * (1 - h * h)"
    assert show(r.tangent([E.Name("da")], h, [a])) == "da * (1 - h * h)"
    assert show(r.slope(h)) == "1 - h * h"


@pytest.mark.parametrize("score,roles", [("dot", ()), ("general", ("W",)), ("concat", ("W", "v"))])
def test_attention_weights_reverse_mode_matches_central_differences(score, roles):
    r = ops.rule("attn_weights")
    rng = _rng(f"attn_weights-{score}")
    q, K = rng.normal(size=(B, N)), rng.normal(size=(5, B, N))
    params = {"W": rng.normal(size=(N, N) if score == "general" else (3, 2 * N)),
              "v": rng.normal(size=(3,))}
    args = [q, K] + [params[role] for role in roles]
    attrs = dict(score=score, roles=roles, window=None, causal=False, qpos="'all'", last="None")
    nodes = [E.Name(f"a{k}") for k in range(len(args))]
    weights = lambda xs: _eval(r.forward(*nodes, **attrs), _env(**{f"a{k}": a for k, a in  # noqa
                                                                  enumerate(xs)}))
    out = weights(args)
    g = rng.normal(size=out.shape)
    env = _env(g=g, out=out, **{f"a{k}": a for k, a in enumerate(args)})
    for k in range(len(args)):
        v = rng.normal(size=args[k].shape)
        up = [a + EPS * v if j == k else a for j, a in enumerate(args)]
        down = [a - EPS * v if j == k else a for j, a in enumerate(args)]
        numeric = (g * (weights(up) - weights(down))).sum() / (2 * EPS)
        back = _fit(_eval(r.backward(k, E.Name("g"), E.Name("out"), nodes, **attrs), env),
                    args[k].shape)
        np.testing.assert_allclose((back * v).sum(), numeric, rtol=1e-6, atol=1e-9)
