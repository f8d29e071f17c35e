"""Derivative rules: one per primitive op, forward, reverse mode and forward mode side by side.

In: nothing at import time; codegen asks :func:`rule` for an op name.  Out: :class:`Rule`
objects whose functions build expression nodes (:mod:`rnnspec.expr`), never text:

- ``forward(*args, **attrs)``: the op's value from its arguments' nodes;
- ``backward(i, g, out, args, **attrs)``: the vector-Jacobian product for argument ``i`` given
  the upstream gradient ``g`` (:data:`~rnnspec.expr.ZERO` when the argument gets none);
- ``jvp(dargs, out, args, **attrs)``: the Jacobian-vector product, the tangent of the value from
  the tangents of the arguments (``ZERO`` for an argument that does not vary).  A tangent holds
  a batch of directions: its first axis counts them (one per parameter entry in RTRL), then
  come the value's own axes; the tangent of an argument of lower rank than the op's value (a
  bias next to a batch of rows) is given with singleton axes after the direction axis
  (``_lift``), so that element-wise rules broadcast as their forward does.  The helpers they
  call are in rnnspec/runtime/tangents.py.

Nodes work both for one step (arrays ``(B, n)``) and for all steps at once (``(T, B, n)``): the
leading axes broadcast.  Codegen sums a contribution over broadcast axes; a rule that already
returns a reduced contribution lists the argument in ``reduced``.  ``needs_out``/``needs_args``
say which values the backward pass reads, so codegen knows what to keep.

Asking for an op without a rule raises ``NotImplementedError`` naming the op; so does asking for
the forward-mode rule of an op that has none yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional

from .errors import missing_rule
from .expr import (ELLIPSIS, ZERO, Attr, Bin, Expr, List_, Lit, Slice, add, call, div, greater,
                   matmul, method, mul, neg, node, span, sub, subscript)
from .runtime import helper_texts


@dataclass(frozen=True)
class Rule:
    name: str
    forward: Callable[..., Expr]
    backward: Callable[..., Expr]
    jvp: Optional[Callable[..., Expr]] = None
    needs_out: bool = False
    needs_args: FrozenSet[int] = frozenset()
    reduced: FrozenSet[int] = frozenset()
    passthrough: FrozenSet[int] = frozenset()  # backward(i) is exactly g
    no_grad: FrozenSet[int] = frozenset()  # backward(i) is ZERO (targets, class indices)
    # backward(i) reads args[j] for j in needs_args other than i, and args[i] itself for i here
    reads_own: FrozenSet[int] = frozenset()
    helpers: tuple = ()
    # backward is g * slope(out) for an activation: in a time loop, slope is computed for all
    # steps before the loop (it does not depend on the recursion) and each step multiplies once
    slope: Optional[Callable[[Expr], Expr]] = None
    loss: bool = False  # a loss term: a scalar summed into the loss, never an output

    def tangent(self, dargs: List[Expr], out: Optional[Expr], args: List[Expr], **attrs) -> Expr:
        """The forward-mode rule applied (``ZERO`` when no argument varies)."""
        if self.jvp is None:
            raise missing_rule(self.name, mode="forward")
        if all(d is ZERO for d in dargs):
            return ZERO
        return self.jvp(dargs, out, args, **attrs)


RULES: Dict[str, Rule] = {}

# ops whose arguments broadcast against each other element by element (a bias (n,) against rows
# (B, n)): forward mode gives them lower-rank arguments' tangents lifted (rnnspec/runtime/
# tangents.py's _lift), so that the direction axis lines up
BROADCASTING = frozenset({"add", "sub", "mul", "div", "concat"})


def register(name: str, forward, backward, jvp=None, **kw) -> None:
    kw = {k: frozenset(v) if k in ("needs_args", "reduced", "passthrough", "no_grad",
                                                     "reads_own") else v
          for k, v in kw.items()}
    RULES[name] = Rule(name, forward, backward, jvp, **kw)


def is_loss(op_name: str) -> bool:
    """Whether the op is a loss term (the one place that says which ops are)."""
    r = RULES.get(op_name)
    return r is not None and r.loss


def rule(name: str) -> Rule:
    try:
        return RULES[name]
    except KeyError:
        raise missing_rule(name) from None


# ---- arithmetic ---------------------------------------------------------------------------------
register("add",
         lambda a, b, **_: add(a, b),
         lambda i, g, out, args, **_: g,
         lambda d, out, args, **_: add(d[0], d[1]),
         passthrough={0, 1})
register("sub",
         lambda a, b, **_: sub(a, b),
         lambda i, g, out, args, **_: g if i == 0 else neg(g),
         lambda d, out, args, **_: sub(d[0], d[1]),
         passthrough={0})
register("neg",
         lambda a, **_: neg(a),
         lambda i, g, out, args, **_: neg(g),
         lambda d, out, args, **_: neg(d[0]))
register("mul",
         lambda a, b, **_: mul(a, b),
         lambda i, g, out, args, **_: mul(g, args[1 - i]),
         lambda d, out, args, **_: add(mul(d[0], args[1]), mul(args[0], d[1])),
         needs_args={0, 1})
register("div",
         lambda a, b, **_: div(a, b),
         lambda i, g, out, args, **_: (div(g, args[1]) if i == 0 else
                                       div(mul(neg(g), out), args[1])),
         lambda d, out, args, **_: div(sub(d[0], mul(out, d[1])), args[1]),
         needs_out=True, needs_args={1}, reads_own={1})


# W @ v for a batch of row vectors v: v @ W.T; dW sums the outer products over all rows.
# For all steps at once (rows == True: a (T, B, n) array), the rows go through one product:
# NumPy would otherwise run T small products.
def _matvec(W, v, rows=False):
    if W is ZERO or v is ZERO:
        return ZERO
    return call("_rows", v, Attr(W, "T")) if rows else matmul(v, Attr(W, "T"))


register("matvec",
         lambda W, v, rows=False, **_: _matvec(W, v, rows),
         lambda i, g, out, args, rows=False, **_: (
             matmul(Attr(call("_flat", g), "T"), call("_flat", args[1])) if i == 0 else
             call("_rows", g, args[0]) if rows else matmul(g, args[0])),
         lambda d, out, args, **_: add(_matvec_tangent(d[0], args[1]),
                                       _matvec(args[0], d[1])),
         needs_args={0, 1}, reduced={0}, helpers=("_flat", "_rows"))


def _matvec_tangent(dW, v):
    """v @ dW.T for every direction of dW (k, rows, n)."""
    return ZERO if dW is ZERO else call("_matvec_tangent", dW, v)


# Fused products: W_1 @ v, ..., W_k @ v (the gates of an LSTM reading h[t-1]) become one product
# with the stacked weights; each original product is a part of it.
def _zeros_if(d, like):
    return call("np.zeros_like", like) if d is ZERO else d


register("stack_rows",
         lambda *Ws, **_: call("np.concatenate", List_(tuple(node(W) for W in Ws))),
         lambda i, g, out, args, bounds, **_: subscript(g, span(*bounds[i])),
         lambda d, out, args, **_: call("_stack_rows_tangent", *(
             a if di is ZERO else di for di, a in zip(d, args))),
         reduced=range(64))
register("part",
         lambda F, bounds, index, **_: _part(F, bounds[index]),
         lambda i, g, out, args, **_: g,  # assembled by codegen: one concatenation of all parts
         lambda d, out, args, bounds, index, **_: _part(d[0], bounds[index]))


def _part(F, bound):
    return subscript(F, ELLIPSIS, span(*bound))


# ---- element-wise functions ---------------------------------------------------------------------
# An activation's derivative is a function of its output: scale(x, out) is x * f'(.), so that
# backward (g * f'), forward mode (da * f') and the slope hoisted out of a loop (f' alone, x = 1)
# are one formula.
def activation(name: str, forward, scale, hoist: bool = True, **kw) -> None:
    register(name, forward,
             lambda i, g, out, args, **_: scale(g, out),
             lambda d, out, args, **_: scale(d[0], out),
             needs_out=True, slope=(lambda out: scale(1, out)) if hoist else None, **kw)


activation("tanh", lambda a, **_: call("np.tanh", a),
           lambda x, out: mul(x, sub(1, mul(out, out))))
activation("sigmoid", lambda a, **_: call("_sigmoid", a),
           lambda x, out: mul(mul(x, out), sub(1, out)), helpers=("_sigmoid",))
activation("relu", lambda a, **_: call("np.maximum", a, 0),
           lambda x, out: mul(x, greater(out, 0)))
activation("exp", lambda a, **_: call("np.exp", a), lambda x, out: mul(x, out), hoist=False)
register("identity",
         lambda a, **_: node(a),
         lambda i, g, out, args, **_: g,
         lambda d, out, args, **_: d[0],
         passthrough={0})
register("log",
         lambda a, **_: call("np.log", a),
         lambda i, g, out, args, **_: div(g, args[0]),
         lambda d, out, args, **_: div(d[0], args[0]),
         needs_args={0}, reads_own={0})


# ---- vector functions ---------------------------------------------------------------------------
def _softmax_scale(x, out):
    """out * (x - <x, out>): the softmax Jacobian (symmetric) applied to x."""
    return mul(out, sub(x, method(mul(x, out), "sum", axis=-1, keepdims=True)))


register("softmax",
         lambda a, **_: call("_softmax", a),
         lambda i, g, out, args, **_: _softmax_scale(g, out),
         lambda d, out, args, **_: _softmax_scale(d[0], out),
         needs_out=True, helpers=("_softmax",))


def _concat_bound(i, sizes: List[Expr]):
    """The columns of argument i of a concatenation of arguments of the given sizes."""
    return Slice(_total(sizes[:i]), _total(sizes[:i + 1]) if i < len(sizes) - 1 else None)


def _total(sizes: List[Expr]) -> Optional[Expr]:
    """The sum of sizes, as one flat sum (``n + 2 * n + 1``, not ``n + (2 * n + 1)``); None
    for no sizes."""
    total = None
    for size in sizes:
        total = size if total is None else _plus(total, size)
    return total


def _plus(a: Expr, b: Expr) -> Expr:
    if isinstance(b, Bin) and b.op == "+":
        return Bin("+", _plus(a, b.left), b.right)
    return Bin("+", a, b)


register("concat",
         lambda *args, **_: call("_concat", *args),
         lambda i, g, out, args, sizes, **_: subscript(g, ELLIPSIS, _concat_bound(i, sizes)),
         lambda d, out, args, **_: call("_concat", *(_zeros_if(di, a) for di, a in zip(d, args))),
         helpers=("_concat",))


# ---- time ---------------------------------------------------------------------------------------
# pick(h, k): one chosen step of a sequence (h[end], h[3]); codegen renders the index and the
# backward scatters the gradient into that step.
register("pick",
         lambda h, index, **_: subscript(h, index),  # index: rendered by codegen (last, batch)
         lambda i, g, out, args, **_: g,
         lambda d, out, args, index, **_: subscript(d[0], span("", ""), index))


# Rows for every step s of every sequence (a nested axis w in s runs with that batch) regrouped
# into a value over the steps s, and back.
register("regroup",
         lambda a, T, n, **_: method(a, "reshape", T, -1, n),
         lambda i, g, out, args, n, **_: method(g, "reshape", -1, n),
         lambda d, out, args, T, n, **_: call("_tangent_reshape", d[0], T, -1, n),
         reduced={0})


# ---- attention ----------------------------------------------------------------------------------
# attn_weights(q, K, *params): softmax over the steps of K of score(q, K[t]) -- one row per query
# step; attn_context(a, V): the weighted sum of V's steps.  K and V are whole sequences, so their
# gradients (and the parameters') are already summed over the query steps.
def _attention_options(params, score, roles, window, causal, qpos, last, **_):
    opts = {role: params[k] for k, role in enumerate(roles)}
    if window is not None:
        opts["d"] = Lit(window)
    opts["last"] = node(last)
    if causal:
        opts["qpos"] = node(qpos)
    return Lit(score), opts


def _attention_forward(q, K, *params, **attrs):
    score, opts = _attention_options(params, **attrs)
    return call("_attention", q, K, score, **opts)


def _attention_backward(i, g, out, args, roles, **attrs):
    q, K, params = args[0], args[1], args[2:]
    score, opts = _attention_options(params, roles=roles, **attrs)
    wrt = ("q", "K")[i] if i < 2 else roles[i - 2]
    return call("_attention_grad", g, out, q, K, score, Lit(wrt), **opts)


register("attn_weights", _attention_forward, _attention_backward,
         needs_out=True, needs_args=range(8), reduced=range(1, 8), reads_own=range(8),
         helpers=("_attention", "_attention_grad", "_flat"))
register("attn_context",
         lambda a, V, **_: call("_context", a, V),
         lambda i, g, out, args, **_: (call("_context_grad_weights", g, args[1]) if i == 0 else
                                       call("_context_grad_values", g, args[0])),
         lambda d, out, args, **_: add(call("_context", d[0], args[1]) if d[0] is not ZERO
                                       else ZERO,
                                       call("_context_tangent", args[0], d[1])
                                       if d[1] is not ZERO else ZERO),
         needs_args={0, 1}, reduced={1}, helpers=("_context",))

# ---- teacher forcing and generation ------------------------------------------------------------
# onehot(y[t-d]): class targets as one-hot vectors, d steps later (the start class before step 1);
# no gradient flows into targets.  choose(p): a class drawn from the distribution p (or its most
# likely class), as a one-hot vector -- generation only, it has no derivative.
register("onehot",
         lambda y, size, delay, start, **_: call("_onehot", y, size, delay, start, "dtype"),
         lambda i, g, out, args, **_: ZERO,
         lambda d, out, args, **_: ZERO,
         no_grad={0}, helpers=("_onehot",))
# embed(x[t], n): the rows E[x] of the (V, n) embedding matrix picked by class indices x (T, B)
# (or (B,) in a step); E's gradient adds g into the rows used, a row as often as it is picked
# (np.add.at); the indices get no gradient and have no tangent.
register("embed",
         lambda E, x, **_: subscript(E, x),
         lambda i, g, out, args, **_: call("_embed_grad", g, args[1], args[0]) if i == 0 else ZERO,
         lambda d, out, args, **_: subscript(d[0], Slice(None, None), args[1]),
         needs_args={0, 1}, reads_own={0}, reduced={0}, no_grad={1}, helpers=("_embed_grad",))
register("choose",
         lambda p, start=(), **_: call("_choose", p, "rng", "greedy", *start),
         lambda i, g, out, args, **_: ZERO,
         lambda d, out, args, **_: ZERO,
         no_grad={0}, helpers=("_choose",))


# ---- losses (scalar; their gradients go to the logits / prediction) -----------------------------
# A per-step loss is weighted by w (T, B): which steps count (selected steps, each sequence's own
# length) and 1/count for a mean; w is None when every step counts once.
def _w(w):
    return [w] if w else []


def _tangent_of_loss(grad_of_arg0):
    """The forward-mode rule of a loss whose only varying argument is the first: the sum of
    its gradient times the tangent, one number per direction."""
    def jvp(d, out, args, w=None, **_):
        return call("_directions_sum", mul(grad_of_arg0(args, w), d[0]))
    return jvp


def _cross_entropy_grad(args, w, g=1):
    return call("_cross_entropy_grad", args[1], args[2], w, g)


def _squared_error_grad(args, w):
    return call("_squared_error_grad", args[0], args[1], *_w(w))


# cross_entropy(z, o, y): -log softmax(z)[y] computed stably from the logits z; o = softmax(z).
register("cross_entropy",
         lambda z, o, y, w=None, **_: call("_cross_entropy", z, y, w, o),
         lambda i, g, out, args, w=None, **_: _cross_entropy_grad(args, w, g) if i == 0 else ZERO,
         _tangent_of_loss(_cross_entropy_grad),
         needs_args={1, 2}, no_grad={1, 2}, helpers=("_cross_entropy", "_cross_entropy_grad"),
         loss=True)
# squared_error(p, y): 1/2 |p - y|^2
register("squared_error",
         lambda p, y, w=None, **_: call("_squared_error", p, y, *_w(w)),
         lambda i, g, out, args, w=None, **_: (mul(g, _squared_error_grad(args, w)) if i == 0
                                               else ZERO),
         _tangent_of_loss(_squared_error_grad),
         needs_args={0, 1}, no_grad={1}, reads_own={0},
         helpers=("_squared_error", "_squared_error_grad"), loss=True)


# ---- helper functions emitted into generated modules (only those used) -------------------------
# Real code in rnnspec/runtime/helpers.py; codegen copies the text of the groups a module uses.
HELPERS: Dict[str, str] = helper_texts()
