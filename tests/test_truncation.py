"""Truncated and randomized BPTT (issue 11, parts 1 and 2): backward(..., xi=, truncate=).

Every result is compared with a computation that does not use the truncated backward: the
network run chunk by chunk with the module's own forward and backward (its states carried),
central differences of the chunked objective (rnnspec.surrogate), or the full gradient."""
from pathlib import Path

import numpy as np
import pytest

import rnnspec
from rnnspec.api import analyze, compile_file, compile_source
from rnnspec.cli import main
from rnnspec.gradcheck import gradcheck, random_problem
from rnnspec.surrogate import chunked_forward
from rnnspec.truncation import refusal

SPECS = Path(__file__).resolve().parent.parent / "specs"
ALL = sorted(p.stem for p in SPECS.glob("*.rnn"))
REFUSED = {"attention_concat", "attention_cosine", "attention_dot", "attention_general",
           "attention_local", "attention_scaled", "bidirectional", "bigru", "encdec",
           "hierarchical", "torch_bigru", "torch_bilstm"}
TRUNCATABLE = [s for s in ALL if s not in REFUSED]
# the network run in chunks is not the network run whole: targets fed back across a chunk's
# start (generate, teacher_forcing), attention over earlier chunks' inputs (self_attention), a
# mean loss (each chunk would divide by its own steps: linear)
UNCHUNKED = {"generate", "teacher_forcing", "self_attention", "linear"}

_modules = {}


def module(name):
    if name not in _modules:
        _modules[name] = compile_file(SPECS / f"{name}.rnn")
    return _modules[name]


def problem(mod, T=7, B=3, seed=0, lengths=None):
    return random_problem(mod, None, T, B, seed, lengths)


def same(g1, g2, tol=0.0):
    for group in ("params", "inputs", "state0"):
        assert g1[group].keys() == g2[group].keys()
        for n in g1[group]:
            a, b = np.asarray(g1[group][n]), np.asarray(g2[group][n])
            assert a.shape == b.shape, (group, n)
            if tol == 0.0:
                assert np.array_equal(a, b), (group, n)
            else:
                assert np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max()), (group, n)


def test_which_specs_can_be_truncated():
    """Every spec in specs/ is either truncatable or refused, with its position and a reason."""
    for name in ALL:
        a = analyze((SPECS / f"{name}.rnn").read_text(), filename=f"{name}.rnn", base=SPECS)
        err = refusal(a.schedule)
        assert (err is not None) == (name in REFUSED), name
        if err is not None:
            assert str(err).startswith(f"{name}.rnn:{err.line}:{err.column}: error: truncated BPTT "
                                       f"cannot cut this spec")
            assert "^" in str(err) and "hint:" in str(err)
            assert module(name).TRUNCATE == str(err)
        else:
            assert module(name).TRUNCATE is None


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_specs_raise_the_positioned_reason(name):
    mod = module(name)
    T = {a: 4 for a in mod.AXES}
    p, x, y, s0, _ = problem(mod, T=T)
    _, cache = mod.forward(p, x, y, s0, T)
    for kw in ({"truncate": (2, 2)}, {"xi": np.ones(4)}):
        with pytest.raises(ValueError) as e:
            mod.backward(p, cache, **kw)
        assert str(e.value) == mod.TRUNCATE
    mod.backward(p, cache)  # (without them: full BPTT)


@pytest.mark.parametrize("name", TRUNCATABLE)
@pytest.mark.parametrize("padded", [False, True])
def test_xi_ones_and_long_truncation_are_full_bptt(name, padded):
    """xi = 1 everywhere, truncate=(T, T) and k2 >= T give backward's gradients exactly."""
    mod = module(name)
    lengths = np.array([7, 4, 2]) if padded else None
    p, x, y, s0, up = problem(mod, lengths=lengths)
    _, cache = mod.forward(p, x, y, s0, 7, lengths)
    full = mod.backward(p, cache, up)
    same(mod.backward(p, cache, up, xi=np.ones(7)), full)
    same(mod.backward(p, cache, up, xi=np.ones((7, 3))), full)
    same(mod.backward(p, cache, up, truncate=(7, 7)), full)
    same(mod.backward(p, cache, up, truncate=(3, 9)), full)


def chunks_one_by_one(mod, p, x, y, up, T, k):
    """The gradient of running the chunks one by one, each from the previous chunk's final
    states (state0=final), each differentiated alone with its steps of the upstream gradients
    ``up`` (a per-sequence loss or output belongs to the last chunk), summed."""
    per_sequence = all(info["kind"] != "sequence" for info in mod.TARGETS.values())
    total, state = None, None
    for a in range(0, T, k):
        b = min(a + k, T)
        part = lambda arrays, table: {n: v[a:b] if table[n]["kind"] == "sequence" else v  # noqa
                                      for n, v in arrays.items()}
        targets = None if y is None or (per_sequence and b < T) else part(y, mod.TARGETS)
        out, cache = mod.forward(p, part(x, mod.INPUTS), targets, state, b - a)
        d = {n: g for n, g in part(up, mod.OUTPUTS).items()
             if mod.OUTPUTS[n]["kind"] == "sequence" or b == T}
        g = mod.backward(p, cache, d)
        state = out["final"]
        total = g["params"] if total is None else {n: total[n] + g["params"][n] for n in total}
    return total


@pytest.mark.parametrize("name", [s for s in TRUNCATABLE if s not in UNCHUNKED])
@pytest.mark.parametrize("k", [1, 3, 4])
def test_chunked_truncation_equals_the_chunks_run_one_by_one(name, k):
    """truncate=(k, k) on the whole run equals the chunks run one by one, to 1e-12, with the
    loss and upstream gradients on every named output."""
    mod = module(name)
    T = 10
    p, x, y, _, up = problem(mod, T=T)
    up = {n: g for n, g in up.items() if n in mod.OUTPUTS}
    _, cache = mod.forward(p, x, y, None, T)
    g = mod.backward(p, cache, up, truncate=(k, k))["params"]
    ref = chunks_one_by_one(mod, p, x, y, up, T, k)
    full = mod.backward(p, cache, up)["params"]
    for n in ref:
        assert np.abs(g[n] - ref[n]).max() <= 1e-12 * max(1.0, np.abs(ref[n]).max()), n
    # (and the truncation changes something: the test can fail)
    assert max(np.abs(full[n] - ref[n]).max() for n in ref) > 1e-3


def test_the_unchunked_specs_are_exactly_those_whose_chunked_run_differs():
    """The specs left out of the chunk test above are left out for the reason given."""
    differs = set()
    for name in TRUNCATABLE:
        mod = module(name)
        p, x, y, s0, _ = problem(mod, T=8)
        out, _ = mod.forward(p, x, y, s0, 8)
        run, _ = chunked_forward(mod, p, x, y, s0, 8, 3)
        if any(not np.allclose(out[n], run[n], rtol=1e-12, atol=1e-12)
               for n in ("loss", *mod.OUTPUTS) if n in out):
            differs.add(name)
    assert differs == UNCHUNKED


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "skip", "many_to_one", "deep",
                                  "h0_from_input", "jordan", "one_to_many", "stacked_lstm_lib"])
@pytest.mark.parametrize("lengths", [None, [7, 4, 2], [7, 1, 2]])
def test_gradcheck_of_the_truncated_gradient(name, lengths):
    """Every entry of backward(..., truncate=(3, 3)) against central differences of the
    chunked objective (states at the chunks' starts held constant), padded batches too."""
    report = gradcheck(module(name), T=7, truncate=3, lengths=lengths)
    assert report.ok, report.table()


def test_gradcheck_of_a_wrong_truncation_fails(monkeypatch):
    """The truncated check can fail: the full gradient is not the chunked objective's."""
    mod = module("elman")
    backward = mod.backward
    monkeypatch.setattr(mod, "backward", lambda p, c, d=None, xi=None, truncate=None:
                        backward(p, c, d))
    assert not gradcheck(mod, T=7, truncate=3).ok


def test_gradcheck_refuses_what_has_no_chunked_objective():
    with pytest.raises(ValueError, match="is not the network run whole"):
        gradcheck(module("self_attention"), T=6, truncate=2)
    with pytest.raises(ValueError, match=r"bidirectional\.rnn:\d+:\d+: error: truncated BPTT"):
        gradcheck(module("bidirectional"), T=6, truncate=2)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_checkpointed_modules_truncate_the_same(name):
    text = (SPECS / f"{name}.rnn").read_text()
    mod, ck = module(name), compile_source(text, name=name, checkpoint=3, base=SPECS)
    lengths = np.array([9, 5, 2])
    p, x, y, s0, up = problem(mod, T=9, lengths=lengths)
    xi = rnnspec.random_truncation(9, 0.6, seed=3, B=3)
    for kw in ({"truncate": (2, 2)}, {"truncate": (3, 3)}, {"xi": xi}):
        _, c1 = mod.forward(p, x, y, s0, 9, lengths)
        _, c2 = ck.forward(p, x, y, s0, 9, lengths)
        same(ck.backward(p, c2, up, **kw), mod.backward(p, c1, up, **kw), tol=1e-12)


def test_bad_arguments_are_refused_by_name():
    mod = module("elman")
    p, x, y, s0, _ = problem(mod, T=5)
    _, cache = mod.forward(p, x, y, s0, 5)
    with pytest.raises(ValueError, match=r"xi has shape \(4,\), expected \(T,\) = \(5,\) or "
                                         r"\(T, B\) = \(5, 3\)"):
        mod.backward(p, cache, xi=np.ones(4))
    with pytest.raises(ValueError, match="xi has entries that are not finite"):
        mod.backward(p, cache, xi=np.full(5, np.nan))
    for bad in (3, (0, 2), (2,), (2.0, 2), (True, 2), "2,2"):
        with pytest.raises(ValueError, match="truncate must be \\(k1, k2\\), two positive"):
            mod.backward(p, cache, truncate=bad)
    with pytest.raises(ValueError, match=r"truncate=\(3, 2\): k2 must be at least k1"):
        mod.backward(p, cache, truncate=(3, 2))
    many = module("many_to_one")  # (a loss per sequence: no blocks of steps to deal out)
    pm, xm, ym, _, _ = problem(many, T=5)
    _, cm = many.forward(pm, xm, ym, None, 5)
    with pytest.raises(ValueError, match=r"truncate=\(1, 3\): this module cuts \(k, k\) only .*"
                                         r"needs a loss made of per-step terms"):
        many.backward(pm, cm, truncate=(1, 3))


# ---- randomized truncation ------------------------------------------------------------------
def test_random_truncation_draws():
    xi = rnnspec.random_truncation(10000, 0.25, seed=0)
    assert set(np.unique(xi)) == {0.0, 4.0}
    assert abs((xi > 0).mean() - 0.25) < 0.02 and abs(xi.mean() - 1.0) < 0.08
    sched = rnnspec.random_truncation(3, [1.0, 0.5, 1.0], seed=1, B=4000)
    assert sched.shape == (3, 4000) and np.all(sched[0] == 1.0) and np.all(sched[2] == 1.0)
    assert set(np.unique(sched[1])) == {0.0, 2.0}
    assert np.array_equal(rnnspec.random_truncation(6, 0.5, seed=7),
                          rnnspec.random_truncation(6, 0.5, seed=7))
    for bad, msg in (((0, 0.5), "T must be"), ((5, 0.0), "p must be in"),
                     ((5, [0.5, 0.5]), "p has shape"), ((5, 1.5), "p must be in"),
                     ((5, 0.5, "x"), "seed must be None")):
        with pytest.raises(ValueError, match=msg):
            rnnspec.random_truncation(*bad)


def draws_mean(mod, p, x1, y1, T, rounds, rows, draw, seed=0):
    """(mean, standard error) over rounds*rows draws of xi of the parameter gradients of one
    sequence: each round runs `rows` copies of it in a batch, each with its own xi."""
    rng = np.random.default_rng(seed)
    rep = lambda arrays, table: {n: np.repeat(v, rows, axis=1 if table[n]["kind"] == "sequence"  # noqa
                                              else 0) for n, v in arrays.items()}
    _, cache = mod.forward(p, rep(x1, mod.INPUTS), rep(y1, mod.TARGETS), None, T)
    sums = []
    for _ in range(rounds):
        g = mod.backward(p, cache, xi=draw(T, rng, rows))["params"]
        sums.append(np.concatenate([g[n].ravel() for n in sorted(g)]) / rows)
    sums = np.array(sums)
    return sums.mean(axis=0), sums.std(axis=0, ddof=1) / np.sqrt(rounds)


def unbiased(mean, se, full):
    fixed = se < 1e-14  # entries that xi does not touch (an output layer's): exactly equal
    return bool(np.all(np.abs(mean - full)[fixed] <= 1e-12 * np.abs(full[fixed]).max()) and
                np.all(np.abs(mean - full)[~fixed] <= 4 * se[~fixed]))


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_randomized_truncation_is_unbiased(name):
    """The mean of N = 10**4 seeded draws of xi (pi = 0.7) equals the full gradient within 4
    standard errors, entry by entry; a biased variant (xi in {0, 1}) is caught by the same test."""
    mod = module(name)
    T = 6
    p, x, y, _, _ = problem(mod, T=T, B=1, seed=2)
    p = {n: 1.5 * v for n, v in p.items()}  # (strong recurrences: the cut gradients matter)
    _, cache = mod.forward(p, x, y, None, T)
    g = mod.backward(p, cache)["params"]
    full = np.concatenate([g[n].ravel() for n in sorted(g)])
    fair = lambda T, rng, rows: rnnspec.random_truncation(T, 0.7, rng, B=rows)  # noqa: E731
    mean, se = draws_mean(mod, p, x, y, T, 100, 100, fair)
    assert unbiased(mean, se, full)
    assert np.count_nonzero(se > 1e-14) > len(full) // 3  # (xi does act on most entries)
    biased = lambda T, rng, rows: (rng.random((T, rows)) < 0.7).astype(float)  # noqa: E731
    mean, se = draws_mean(mod, p, x, y, T, 100, 100, biased)
    assert not unbiased(mean, se, full)


# ---- the command line -----------------------------------------------------------------------
def test_cli_gradcheck_truncate(capsys):
    assert main(["gradcheck", str(SPECS / "lstm.rnn"), "--truncate", "3", "--T", "7"]) == 0
    out = capsys.readouterr().out
    assert "truncate=(3, 3)" in out and "PASSED" in out.upper()


def test_cli_gradcheck_truncate_refused(capsys):
    assert main(["gradcheck", str(SPECS / "bigru.rnn"), "--truncate", "3"]) != 0
    err = capsys.readouterr().err
    assert "bigru.rnn:" in err and "truncated BPTT cannot cut this spec" in err
    assert "Traceback" not in err


# ---- TBPTT(k1, k2) for any k1 <= k2 ----------------------------------------------------------
@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "skip", "deep"])
@pytest.mark.parametrize("lengths", [None, [9, 5, 2]])
def test_tbptt_k_k_and_T_T_are_backwards(name, lengths):
    """rnnspec.tbptt (windows from held states) and backward(truncate=(k, k)) (one sweep with
    xi) are two computations of TBPTT(k, k): they agree; (T, T) is backward."""
    mod = module(name)
    p, x, y, s0, _ = problem(mod, T=9, lengths=np.array(lengths) if lengths else None)
    _, cache = mod.forward(p, x, y, s0, 9, lengths)
    for k in (1, 2, 4, 9):
        _, g = rnnspec.tbptt(mod, p, x, y, k, k, s0, lengths)
        ref = mod.backward(p, cache, truncate=(k, k))["params"]
        for n in ref:
            assert np.abs(g["params"][n] - ref[n]).max() <= 1e-12 * max(1, np.abs(ref[n]).max())


def _cross_entropy_of_last_step(mod, p, x, y, start, a, t):
    """-sum_b log o[t][b, y[t, b]], o from the run of steps a..t from the held states ``start``:
    the loss term of step t alone, computed from the output, not from the module's loss."""
    out, _ = mod.forward(p, {n: v[a:t + 1] for n, v in x.items()}, None, start, t + 1 - a)
    o = out["o"][-1]
    return -np.log(o[np.arange(o.shape[0]), y["y"][t]]).sum()


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_tbptt_1_k_is_the_brute_force_truncation(name, k):
    """TBPTT(1, k), 9.7.1.2's sum cut after k steps: for each loss term t, the gradient of that
    term alone on the network whose states before step t - k + 1 are held at the full run's,
    by central differences, summed over t."""
    mod = module(name)
    T = 6
    p, x, y, _, _ = problem(mod, T=T, B=2, seed=4)
    _, g = rnnspec.tbptt(mod, p, x, y, 1, k)
    held = [None]
    state = None
    for t in range(T):
        out, _ = mod.forward(p, {n: v[t:t + 1] for n, v in x.items()}, None, state, 1)
        state = out["final"]
        held.append(state)

    def S(q):
        return sum(_cross_entropy_of_last_step(mod, q, x, y, held[max(t - k + 1, 0)],
                                               max(t - k + 1, 0), t) for t in range(T))
    rng = np.random.default_rng(0)
    for n in p:
        for index in [tuple(rng.integers(0, s) for s in p[n].shape) for _ in range(3)]:
            hi, lo = {**p, n: p[n].copy()}, {**p, n: p[n].copy()}
            hi[n][index] += 1e-6
            lo[n][index] -= 1e-6
            numeric = (S(hi) - S(lo)) / 2e-6
            assert abs(g["params"][n][index] - numeric) <= 1e-7 * max(1, abs(numeric)), (n, index)
    full = mod.loss_and_grad(p, x, y)[1]["params"]
    if k < T:  # (the cut changes the gradient: the test can fail)
        assert max(np.abs(full[n] - g["params"][n]).max() for n in p) > 1e-4


def test_tbptt_refusals():
    for name, kw, msg in (("bidirectional", {}, "truncated BPTT cannot cut this spec"),
                          ("many_to_one", {}, "needs per-step targets"),
                          ("linear", {}, "not the network run whole"),
                          ("elman", {"k1": 3, "k2": 2}, "k2 must be at least k1"),
                          ("elman", {"k1": 0, "k2": 2}, "k1 must be a positive")):
        mod = module(name)
        T = {a: 5 for a in mod.AXES}
        p, x, y, s0, _ = problem(mod, T=T)
        args = {"k1": 2, "k2": 3, **kw}
        with pytest.raises(ValueError, match=msg):
            rnnspec.tbptt(mod, p, x, y, args["k1"], args["k2"], s0)


# ---- rnnspec.unbiased: the same check as a library function and from the command line --------
BIASED = staticmethod(lambda T, rng, rows: (rng.random((T, rows)) < 0.7).astype(float))


@pytest.mark.parametrize("name", ["elman", "lstm", "skip"])
def test_check_unbiased_passes_fair_and_fails_biased(name):
    """check_unbiased on a padded batch with initial states and upstream gradients: the fair
    sampler passes, the biased one (xi in {0, 1}) does not; entries xi leaves alone are equal."""
    from rnnspec.unbiased import check_unbiased
    mod = module(name)
    lengths = np.array([6, 4])
    p, x, y, s0, up = problem(mod, T=6, B=2, seed=3, lengths=lengths)
    p = {n: 1.5 * v for n, v in p.items()}
    fair = check_unbiased(mod, p, x, y, 6, 0.7, draws=4000, copies=100, seed=1, state0=s0,
                          lengths=lengths, d_outputs=up)
    assert fair.ok, fair.table()
    assert sum(r.cut for r in fair.rows) > sum(r.entries for r in fair.rows) // 3
    assert all(r.worst_untouched <= 1e-12 * 10 for r in fair.rows)
    biased = check_unbiased(mod, p, x, y, 6, 0.7, draws=4000, copies=100, seed=1, state0=s0,
                            lengths=lengths, d_outputs=up, draw=BIASED.__func__)
    assert not biased.ok and "BIASED" in biased.table()


def test_check_unbiased_bound_and_arguments():
    from rnnspec.unbiased import bound, check_unbiased
    assert bound(1) == bound(100) == 4.0 and 4.0 < bound(1000) < bound(10 ** 5)
    mod = module("elman")
    p, x, y, s0, _ = problem(mod, T=4, B=1)
    for kw, msg in (({"draws": 150}, "draws must be an integer of at least 2 \\* copies"),
                    ({"copies": 0}, "copies must be a positive integer")):
        with pytest.raises(ValueError, match=msg):
            check_unbiased(mod, p, x, y, 4, **kw)


def test_cli_gradcheck_random_truncation(capsys):
    assert main(["gradcheck", str(SPECS / "gru.rnn"), "--random-truncation", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "mean of 10000 draws" in out and "UNBIASED" in out and "Wz" in out
    assert main(["gradcheck", str(SPECS / "bigru.rnn"), "--random-truncation", "0.7"]) == 2
    assert "truncated BPTT cannot cut this spec" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", str(SPECS / "gru.rnn"), "--random-truncation", "1.5"])
    assert exc.value.code == 2 and "probability in (0, 1]" in capsys.readouterr().err


# ---- TBPTT(k1, k2), k1 < k2, in backward: sweeps of blocks ----------------------------------
SWEPT = [s for s in TRUNCATABLE if s not in (
    "many_to_one", "adding", "torch_gru", "torch_lstm",  # a loss per sequence: refused
    "generate", "teacher_forcing", "self_attention", "linear")]  # tbptt refuses (see below)


@pytest.mark.parametrize("name", SWEPT)
def test_backward_tbptt_k1_k2_equals_windows(name):
    """backward(truncate=(k1, k2)) (ceil(k2/k1) sweeps over the cache, each counting its blocks'
    losses and cut at their windows' starts) equals rnnspec.tbptt (each block's window re-run
    from held states), two independent computations, to 1e-12, padded batches too."""
    mod = module(name)
    for lengths in (None, np.array([9, 5, 2])):
        p, x, y, s0, _ = problem(mod, T=9, lengths=lengths)
        _, cache = mod.forward(p, x, y, s0, 9, lengths)
        for k1, k2 in ((1, 2), (1, 3), (2, 3), (2, 5), (3, 7), (4, 6), (1, 8)):
            _, g = rnnspec.tbptt(mod, p, x, y, k1, k2, s0, lengths)
            ref = mod.backward(p, cache, truncate=(k1, k2))["params"]
            for n in ref:
                assert np.abs(g["params"][n] - ref[n]).max() <= \
                    1e-12 * max(1, np.abs(ref[n]).max()), (name, k1, k2, n)


def test_tbptt_sweeps_what_is_left_out():
    """The specs left out of the comparison above: those backward refuses (a loss per
    sequence) and those tbptt refuses (no windows from held states: targets fed back,
    attention over earlier steps, a mean loss), asserted so that the list stays honest."""
    for name in set(TRUNCATABLE) - set(SWEPT):
        mod = module(name)
        p, x, y, s0, _ = problem(mod, T=9)
        with pytest.raises(ValueError):
            rnnspec.tbptt(mod, p, x, y, 1, 3, s0)


def test_backward_tbptt_k1_k2_with_xi_and_refusals():
    mod = module("lstm")
    p, x, y, s0, up = problem(mod, T=9)
    _, cache = mod.forward(p, x, y, s0, 9)
    plain = mod.backward(p, cache, up, truncate=(2, 5))
    same(mod.backward(p, cache, up, xi=np.ones(9), truncate=(2, 5)), plain)
    xi = rnnspec.random_truncation(9, 0.5, seed=4, B=3)
    cut = mod.backward(p, cache, up, xi=xi, truncate=(2, 5))
    assert not np.allclose(cut["params"]["W_f_h"], plain["params"]["W_f_h"])
    same(mod.backward(p, cache, up, truncate=(2, 9)), mod.backward(p, cache, up))  # k2 >= T
    with pytest.raises(ValueError, match="xi has shape"):
        mod.backward(p, cache, truncate=(2, 5), xi=np.ones(4))
    ck = compile_source((SPECS / "lstm.rnn").read_text(), name="lstm", checkpoint=3, base=SPECS)
    _, c2 = ck.forward(p, x, y, s0, 9)
    with pytest.raises(ValueError, match="compiled without --checkpoint"):
        ck.backward(p, c2, truncate=(2, 5))


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "skip", "deep"])
@pytest.mark.parametrize("lengths", [None, np.array([7, 4, 2])])
def test_gradcheck_of_tbptt_k1_k2(name, lengths):
    """Every entry (params, inputs, initial states) of backward(..., truncate=(k1, k2)) with
    upstream gradients on the outputs and final states, against central differences of the
    windowed objective (surrogate.windowed_forward)."""
    for ks in ((1, 3), (2, 5)):
        report = gradcheck(module(name), T=7, truncate=ks, lengths=lengths)
        assert report.ok, report.table()
        assert f"truncate={ks}" in report.mode.replace(" ", "").replace(",", ", ")


def test_gradcheck_of_a_wrong_tbptt_fails(monkeypatch):
    """The windowed check can fail: TBPTT(k2, k2) is not TBPTT(k1, k2)."""
    mod = module("elman")
    backward = mod.backward
    monkeypatch.setattr(mod, "backward", lambda p, c, d=None, xi=None, truncate=None:
                        backward(p, c, d, truncate=(truncate[1], truncate[1])))
    assert not gradcheck(mod, T=7, truncate=(1, 3)).ok
    with pytest.raises(ValueError, match="a value per sequence"):
        gradcheck(module("many_to_one"), T=7, truncate=(1, 3))


def test_cli_gradcheck_truncate_k1_k2(capsys):
    assert main(["gradcheck", str(SPECS / "gru.rnn"), "--truncate", "1,3", "--T", "7"]) == 0
    out = capsys.readouterr().out
    assert "truncate=(1, 3) against the run in windows of 3 steps" in out and "PASSED" in out
    for bad in ("3,1", "0,2", "a,b", "1,2,3"):
        with pytest.raises(SystemExit) as exc:
            main(["gradcheck", str(SPECS / "gru.rnn"), "--truncate", bad])
        assert exc.value.code == 2
        assert "--truncate" in capsys.readouterr().err
