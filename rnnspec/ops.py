"""Derivative rules: one per primitive op, forward and backward side by side.

In: nothing at import time; codegen asks :func:`rule` for an op name.  Out: :class:`Rule`
objects.  A rule renders Python/NumPy text: ``forward(args)`` is the op's value from the texts of
its arguments; ``backward(i, g, out, args)`` is the vector-Jacobian product for argument ``i``
given the text ``g`` of the upstream gradient (``None`` when the argument gets no gradient).
Texts work both for one step (arrays ``(B, n)``) and for all steps at once (``(T, B, n)``): the
leading axes broadcast.  Codegen sums the contribution over broadcast axes; a rule that already
returns a reduced contribution lists the argument in ``reduced``.  ``needs_out``/``needs_args``
say which values the backward pass reads, so codegen knows what to keep.

Asking for an op without a rule raises ``NotImplementedError`` naming the op.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional

from .errors import missing_rule
from .runtime import helper_texts

ATOM, UNARY, PRODUCT, SUM = 4, 3, 2, 1


def precedence(text: str) -> int:
    """The binding strength of a Python expression text: SUM < PRODUCT < UNARY < ATOM."""
    depth = 0
    level = ATOM
    i = 0
    if text.startswith("-"):
        level = UNARY
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch == " " and i + 2 < len(text) and text[i + 2] == " ":
            op = text[i + 1]
            if op in "+-":
                return SUM
            if op in "*/@":
                level = min(level, PRODUCT)
        elif depth == 0 and text.startswith(" if ", i):
            return 0
        i += 1
    return level


def wrap(text: str, level: int) -> str:
    """Parenthesize ``text`` if it binds less tightly than ``level``."""
    return text if precedence(text) >= level else f"({text})"


@dataclass(frozen=True)
class Rule:
    name: str
    forward: Callable[..., str]
    backward: Callable[..., Optional[str]]
    needs_out: bool = False
    needs_args: FrozenSet[int] = frozenset()
    reduced: FrozenSet[int] = frozenset()
    passthrough: FrozenSet[int] = frozenset()  # backward(i) is exactly g
    helpers: tuple = ()
    # backward is g * slope(out) for an activation: in a time loop, slope is computed for all
    # steps before the loop (it does not depend on the recursion) and each step multiplies once
    slope: Optional[Callable[[str], str]] = None
    loss: bool = False  # a loss term: a scalar summed into the loss, never an output


RULES: Dict[str, Rule] = {}


def register(name: str, forward, backward, **kw) -> None:
    kw = {k: frozenset(v) if k in ("needs_args", "reduced", "passthrough") else v
          for k, v in kw.items()}
    RULES[name] = Rule(name, forward, backward, **kw)


def is_loss(op_name: str) -> bool:
    """Whether the op is a loss term (the one place that says which ops are)."""
    r = RULES.get(op_name)
    return r is not None and r.loss


def rule(name: str) -> Rule:
    try:
        return RULES[name]
    except KeyError:
        raise missing_rule(name) from None


def _neg(g: str) -> str:
    return f"-{wrap(g, UNARY + 1)}" if not g.startswith("-") else wrap(g[1:], UNARY)


# ---- arithmetic ---------------------------------------------------------------------------------
register("add",
         lambda a, b, **_: f"{a} + {wrap(b, PRODUCT)}",
         lambda i, g, out, args, **_: g,
         passthrough={0, 1})
register("sub",
         lambda a, b, **_: f"{a} - {wrap(b, PRODUCT)}",
         lambda i, g, out, args, **_: g if i == 0 else _neg(g),
         passthrough={0})
register("neg",
         lambda a, **_: f"-{wrap(a, UNARY + 1)}",
         lambda i, g, out, args, **_: _neg(g))
register("mul",
         lambda a, b, **_: f"{wrap(a, PRODUCT)} * {wrap(b, UNARY)}",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * {wrap(args[1 - i], UNARY)}",
         needs_args={0, 1})
register("div",
         lambda a, b, **_: f"{wrap(a, PRODUCT)} / {wrap(b, UNARY)}",
         lambda i, g, out, args, **_: (f"{wrap(g, PRODUCT)} / {wrap(args[1], UNARY)}" if i == 0
                                       else f"-{wrap(g, UNARY + 1)} * {wrap(out, UNARY)} / "
                                            f"{wrap(args[1], UNARY)}"),
         needs_out=True, needs_args={1})
# W @ v for a batch of row vectors v: v @ W.T; dW sums the outer products over all rows.
# For all steps at once (rows == True: a (T, B, n) array), the rows go through one product:
# NumPy would otherwise run T small products.
register("matvec",
         lambda W, v, rows=False, **_: (f"_rows({v}, {wrap(W, ATOM)}.T)" if rows else
                                        f"{wrap(v, PRODUCT)} @ {wrap(W, ATOM)}.T"),
         lambda i, g, out, args, rows=False, **_: (
             f"_flat({g}).T @ _flat({args[1]})" if i == 0 else
             f"_rows({g}, {wrap(args[0], ATOM)})" if rows else
             f"{wrap(g, PRODUCT)} @ {wrap(args[0], ATOM)}"),
         needs_args={0, 1}, reduced={0}, helpers=("_flat", "_rows"))

# Fused products: W_1 @ v, ..., W_k @ v (the gates of an LSTM reading h[t-1]) become one product
# with the stacked weights; each original product is a part of it.
register("stack_rows",
         lambda *Ws, **_: f"np.concatenate([{', '.join(Ws)}])",
         lambda i, g, out, args, bounds, **_: "{}[{}:{}]".format(wrap(g, ATOM), *bounds[i]),
         reduced=range(64))
register("part",
         lambda F, bounds, index, **_: "{}[..., {}:{}]".format(wrap(F, ATOM), *bounds[index]),
         lambda i, g, out, args, **_: g)  # assembled by codegen: one concatenation of all parts

# ---- element-wise functions ---------------------------------------------------------------------
register("tanh",
         lambda a, **_: f"np.tanh({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * (1 - {out} * {out})",
         needs_out=True, slope=lambda out: f"1 - {out} * {out}")
register("sigmoid",
         lambda a, **_: f"_sigmoid({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * {out} * (1 - {out})",
         needs_out=True, helpers=("_sigmoid",), slope=lambda out: f"{out} * (1 - {out})")
register("relu",
         lambda a, **_: f"np.maximum({a}, 0)",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * ({out} > 0)",
         needs_out=True, slope=lambda out: f"{out} > 0")
register("identity",
         lambda a, **_: a,
         lambda i, g, out, args, **_: g,
         passthrough={0})
register("exp",
         lambda a, **_: f"np.exp({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} * {out}",
         needs_out=True)
register("log",
         lambda a, **_: f"np.log({a})",
         lambda i, g, out, args, **_: f"{wrap(g, PRODUCT)} / {wrap(args[0], UNARY)}",
         needs_args={0})

# ---- vector functions ---------------------------------------------------------------------------
register("softmax",
         lambda a, **_: f"_softmax({a})",
         lambda i, g, out, args, **_: (f"{out} * ({g} - ({wrap(g, PRODUCT)} * {out})"
                                       f".sum(axis=-1, keepdims=True))"),
         needs_out=True, helpers=("_softmax",))


def _concat_backward(i, g, out, args, sizes: List[str], **_):
    start = " + ".join(sizes[:i]) or "0"
    stop = " + ".join(sizes[:i + 1])
    lo = "" if start == "0" else start
    return f"{wrap(g, ATOM)}[..., {lo}:{stop}]" if i < len(sizes) - 1 else \
        f"{wrap(g, ATOM)}[..., {lo}:]"


register("concat",
         lambda *args, **_: f"_concat({', '.join(args)})",
         _concat_backward,
         helpers=("_concat",))


# ---- time ---------------------------------------------------------------------------------------
# pick(h, k): one chosen step of a sequence (h[end], h[3]); codegen renders the index and the
# backward scatters the gradient into that step.
register("pick",
         lambda h, index, **_: f"{h}[{index}]",
         lambda i, g, out, args, **_: g)

# Rows for every step s of every sequence (a nested axis w in s runs with that batch) regrouped
# into a value over the steps s, and back.
register("regroup",
         lambda a, T, n, **_: f"{wrap(a, ATOM)}.reshape({T}, -1, {n})",
         lambda i, g, out, args, n, **_: f"{wrap(g, ATOM)}.reshape(-1, {n})",
         reduced={0})

# ---- attention ----------------------------------------------------------------------------------
# attn_weights(q, K, *params): softmax over the steps of K of score(q, K[t]) -- one row per query
# step; attn_context(a, V): the weighted sum of V's steps.  K and V are whole sequences, so their
# gradients (and the parameters') are already summed over the query steps.
def _attention_options(score, roles, window, causal, qpos, last, **_):
    opts = [repr(score)]
    opts += [f"{role}={{{k}}}" for k, role in enumerate(roles)]
    if window is not None:
        opts.append(f"d={window!r}")
    opts.append(f"last={last}")
    if causal:
        opts.append(f"qpos={qpos}")
    return opts


def _attention_forward(q, K, *params, **attrs):
    opts = [o.format(*params) for o in _attention_options(**attrs)]
    return f"_attention({q}, {K}, {', '.join(opts)})"


def _attention_backward(i, g, out, args, roles, **attrs):
    q, K, params = args[0], args[1], args[2:]
    opts = [o.format(*params) for o in _attention_options(roles=roles, **attrs)]
    wrt = ("q", "K")[i] if i < 2 else roles[i - 2]
    return f"_attention_grad({g}, {out}, {q}, {K}, {opts[0]}, {wrt!r}, {', '.join(opts[1:])})"


register("attn_weights", _attention_forward, _attention_backward,
         needs_out=True, needs_args=range(8), reduced=range(1, 8),
         helpers=("_attention", "_attention_grad", "_flat"))
register("attn_context",
         lambda a, V, **_: f"_context({a}, {V})",
         lambda i, g, out, args, **_: (f"_context_grad_weights({g}, {args[1]})" if i == 0 else
                                       f"_context_grad_values({g}, {args[0]})"),
         needs_args={0, 1}, reduced={1}, helpers=("_context",))

# ---- teacher forcing and generation ------------------------------------------------------------
# onehot(y[t-d]): class targets as one-hot vectors, d steps later (the start class before step 1);
# no gradient flows into targets.  choose(p): a class drawn from the distribution p (or its most
# likely class), as a one-hot vector -- generation only, it has no derivative.
register("onehot",
         lambda y, size, delay, start, **_: f"_onehot({y}, {size}, {delay}, {start}, dtype)",
         lambda i, g, out, args, **_: None,
         helpers=("_onehot",))
register("choose",
         lambda p, start=None, **_: f"_choose({p}, rng, greedy{', ' + start if start else ''})",
         lambda i, g, out, args, **_: None,
         helpers=("_choose",))

# ---- losses (scalar; their gradients go to the logits / prediction) -----------------------------
# A per-step loss is weighted by w (T, B): which steps count (selected steps, each sequence's own
# length) and 1/count for a mean; w is None when every step counts once.
def _w(w):
    return f", {w}" if w else ""


# cross_entropy(z, o, y): -log softmax(z)[y] computed stably from the logits z; o = softmax(z).
register("cross_entropy",
         lambda z, o, y, w=None, **_: f"_cross_entropy({z}, {y}, {w}, {o})",
         lambda i, g, out, args, w=None, **_: (
             f"_cross_entropy_grad({args[1]}, {args[2]}, {w}, {g})" if i == 0 else None),
         needs_args={1, 2}, helpers=("_cross_entropy", "_cross_entropy_grad"), loss=True)
# squared_error(p, y): 1/2 |p - y|^2
register("squared_error",
         lambda p, y, w=None, **_: f"_squared_error({p}, {y}{_w(w)})",
         lambda i, g, out, args, w=None, **_: (
             f"{wrap(g, PRODUCT)} * _squared_error_grad({args[0]}, {args[1]}{_w(w)})"
             if i == 0 else None),
         needs_args={0, 1}, helpers=("_squared_error", "_squared_error_grad"), loss=True)


# ---- helper functions emitted into generated modules (only those used) -------------------------
# Real code in rnnspec/runtime/helpers.py; codegen copies the text of the groups a module uses.
HELPERS: Dict[str, str] = helper_texts()
