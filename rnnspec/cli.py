"""The ``rnnspec`` command line: a thin layer over the Python API.

In: argv.  Out: exit status 0 (success), 1 (a gradient check failed), 2 (a user error: bad spec,
bad option, missing file -- printed as ``file:line:col: error: ...`` with the source line, a caret
and a hint, never a traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from . import __version__
from .api import analyze, generate, load_module, read_spec, render
from .checkpoint import checkpoint_steps
from .errors import SpecError
from .graph import to_dot, unroll

EXAMPLES = {
    "compile": "example:\n  rnnspec compile specs/lstm.rnn -o lstm.py --dim hidden=128\n"
               "  rnnspec compile specs/lstm.rnn -o lstm_ck.py --checkpoint 32",
    "check": "example:\n  rnnspec check specs/gru.rnn",
    "gradcheck": "example:\n  rnnspec gradcheck specs/elman.rnn --T 8 --batch 2 --seed 1\n"
                 "  rnnspec gradcheck specs/lstm.rnn --dim hidden=64 --directional",
    "sample": "example:\n  rnnspec sample specs/generate.rnn --params trained.npz --T 20 "
              "--seed-class 0 --end 4\n  rnnspec sample specs/teacher_forcing.rnn --inputs x.npz "
              "--sample --seed 3",
    "graph": "example:\n  rnnspec graph specs/elman.rnn -o elman.dot\n"
             "  rnnspec graph specs/elman.rnn --unroll 4 -o elman4.dot && dot -Tpng elman4.dot",
}
CHECK_DIM_CAP = 4  # the automatic check of `compile` runs at dims capped to this size


class UsageError(Exception):
    pass


def parse_dims(items: Optional[List[str]]) -> Dict[str, str]:
    """NAME=VALUE pairs; the values are checked against the spec (errors at its dim lines)."""
    dims: Dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--dim {item}: expected NAME=VALUE, for example --dim hidden=64")
        dims[name.strip()] = value.strip()
    return dims


def checkpoint_arg(text: str) -> int:
    """--checkpoint K: a positive integer (argparse reports anything else, exit status 2)."""
    try:
        return checkpoint_steps(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer (steps per segment), "
                                         f"got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rnnspec",
        description="Compile recurrent network specs (.rnn) to NumPy forward + BPTT code, "
                    "gradient-checked.",
        epilog="example:\n  rnnspec compile specs/elman.rnn -o elman.py\n"
               "  rnnspec gradcheck specs/elman.rnn",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"rnnspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name, help_text):
        s = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("spec", metavar="SPEC", help="the .rnn file")
        s.add_argument("--dim", action="append", metavar="NAME=VALUE",
                       help="override a dimension (repeatable)")
        return s

    c = cmd("compile", "compile a spec to a standalone NumPy module (gradient-checked first)")
    c.add_argument("-o", "--output", metavar="OUT.py",
                   help="where to write the module (default: SPEC's name with .py in the current "
                        "directory; '-' for standard output)")
    c.add_argument("--no-gradcheck", action="store_true",
                   help="skip the automatic gradient check")
    c.add_argument("--checkpoint", type=checkpoint_arg, metavar="K",
                   help="store the states every K steps and recompute the rest in backward "
                        "(memory O(T/K + K) steps instead of O(T), the same gradients)")
    cmd("check", "validate a spec and print its parameter table")
    g = cmd("gradcheck", "compare analytic gradients with central differences")
    g.add_argument("--T", type=int, default=5, help="sequence length (default 5)")
    g.add_argument("--batch", type=int, default=3, help="batch size (default 3)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--directional", action="store_true",
                   help="check along random directions instead of every entry (large models)")
    g.add_argument("--directions", type=int, default=3,
                   help="directions per array in --directional mode (default 3)")
    g.add_argument("--eps", type=float, default=1e-5, help="finite-difference step (1e-5)")
    g.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (1e-6)")
    g.add_argument("--atol", type=float, default=1e-8, help="absolute tolerance (1e-8)")
    g.add_argument("--checkpoint", type=checkpoint_arg, metavar="K",
                   help="check the module checkpointed every K steps")
    sm = cmd("sample", "generate sequences from a spec with feedback(...), feeding back its own "
                       "choices")
    sm.add_argument("--params", metavar="FILE.npz",
                    help="trained parameters (np.savez(FILE, **params)); default: the spec's "
                         "initializers with --init-seed")
    sm.add_argument("--init-seed", type=int, default=0, help="seed of init_params without --params")
    sm.add_argument("--inputs", metavar="FILE.npz", help="the spec's inputs, if it has any")
    sm.add_argument("--T", type=int, default=20, help="steps to generate (default 20)")
    sm.add_argument("--batch", type=int, default=1, help="sequences to generate (default 1)")
    sm.add_argument("--sample", action="store_true",
                    help="draw each class at random from the output (default: greedy, the most "
                         "likely class)")
    sm.add_argument("--seed", type=int, default=0, help="random seed for --sample (default 0)")
    sm.add_argument("--seed-class", type=int, metavar="K",
                    help="the class fed at the first step (the initial value of the fed-back "
                         "state, one-hot)")
    sm.add_argument("--end", type=int, metavar="K", help="stop a sequence at this class")
    gr = cmd("graph", "write the cell graph (edges labelled with delays) as Graphviz DOT")
    gr.add_argument("--unroll", type=int, metavar="T", help="unroll the graph for T steps")
    gr.add_argument("--params", action="store_true", help="also draw the parameters")
    gr.add_argument("-o", "--output", metavar="FILE.dot", help="output file (default: stdout)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        n = len(exc.diagnostics)
        if n > 1:
            print(f"{n} errors", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"rnnspec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0


def _load(args):
    path = Path(args.spec)
    text = read_spec(path)
    dims = parse_dims(args.dim)
    return path, text, dims


def _warn(analysis) -> None:
    for w in analysis.model.warnings:
        print(w.render(), file=sys.stderr)


def cmd_check(args) -> int:
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path))
    _warn(a)
    m = a.model
    d = m.dims
    rows = []
    total = 0
    for name, p in m.params.items():
        shape = "×".join(s.text() for s in p.shape) or "scalar"
        count = 1
        for s in p.shape:
            count *= s.evaluate(d)
        total += count
        init = p.init + (f"({p.init_arg:g})" if p.init_arg is not None else "")
        rows.append((name, shape, str(count), init, "auto" if p.auto else ""))
    print(f"{path}: ok ({len(m.values)} values, {len(m.states)} states, "
          f"{len(m.losses)} loss terms; dims " +
          ", ".join(f"{k}={v}" for k, v in d.items()) + ")")
    head = ("parameter", "shape", "count", "initializer", "")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    print(fmt.format(*head).rstrip())
    print(fmt.format(*("-" * w for w in widths[:4]), "").rstrip())
    for r in rows:
        print(fmt.format(*r).rstrip())
    print(f"total: {total} parameters")
    return 0



def cmd_compile(args) -> int:
    from .gradcheck import gradcheck
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path))
    _warn(a)
    source = render(a, args.checkpoint)
    if not args.no_gradcheck:
        small = {k: min(v, CHECK_DIM_CAP) for k, v in a.model.dims.items()}
        mod = load_module(generate(text, small, str(path), checkpoint=args.checkpoint),
                          path.stem)
        steps = {axis: max(4, mod.MIN_T[key]) for axis, key in mod.AXES.items()}  # h[end-5]
        report = gradcheck(mod, small, T=steps, batch=2, seed=0)
        if not report.ok:
            print(report.table(), file=sys.stderr)
            print(f"{path}: the generated gradients are WRONG; no module written. This is a bug "
                  f"in rnnspec: please report it with the spec.", file=sys.stderr)
            return 1
        worst = max((r.max_abs for r in report.rows), default=0.0)
        print(f"gradcheck ok: {sum(r.checked for r in report.rows)} entries of "
              f"{len(report.rows)} arrays (max abs error {worst:.1e})", file=sys.stderr)
    out = args.output or (path.stem + ".py")
    if out == "-":
        sys.stdout.write(source)
    else:
        Path(out).write_text(source, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_gradcheck(args) -> int:
    from .gradcheck import gradcheck
    path, text, dims = _load(args)
    for flag in ("T", "batch", "directions"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be at least 1")
    if args.eps <= 0:
        raise UsageError("--eps must be positive")
    a = analyze(text, dims, str(path))
    _warn(a)
    dims = {k: a.model.dims[k] for k in dims}  # checked and converted to int
    mod = load_module(render(a, args.checkpoint), path.stem)
    need = max(mod.MIN_T.values(), default=1)
    if args.T < need:
        raise UsageError(f"--T {args.T} is too short: {path.name} reads a step that needs at "
                         f"least {need} steps (for example h[end-{need - 1}]); use --T {need} "
                         f"or more")
    report = gradcheck(mod, dims, T=args.T, batch=args.batch, seed=args.seed,
                       directional=args.directional, directions=args.directions, eps=args.eps,
                       rtol=args.rtol, atol=args.atol)
    report.spec = str(path)
    print(report.table())
    return 0 if report.ok else 1


def cmd_graph(args) -> int:
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path))
    if args.unroll is not None:
        if args.unroll < 1:
            raise UsageError("--unroll must be at least 1")
        g = unroll(a.graph, args.unroll)
        title = f"{path.stem} unrolled T={args.unroll}"
    else:
        g = a.graph.cell_graph(params=args.params)
        title = path.stem
    dot = to_dot(g, title)
    if args.output and args.output != "-":
        Path(args.output).write_text(dot, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(dot)
    return 0


def _load_npz(path: str, what: str) -> dict:
    import numpy as np
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UsageError(f"--{what} {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--{what} {path}: not a NumPy .npz file ({exc})") from None


def cmd_sample(args) -> int:
    import numpy as np
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path))
    _warn(a)
    if not a.model.feedbacks:
        raise SpecError.at(f"{path.name} has no feedback(...): there is nothing to feed back "
                           f"when generating", a.model.source, str(path), 1, 1,
                           "write the step's input as feedback(onehot(y[t-1]), o[t-1])")
    for flag in ("T", "batch"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be at least 1")
    dims = {k: a.model.dims[k] for k in dims}
    mod = load_module(render(a), path.stem)
    params = _load_npz(args.params, "params") if args.params else \
        mod.init_params(dims, seed=args.init_seed)
    inputs = _load_npz(args.inputs, "inputs") if args.inputs else {}
    state0 = {}
    if args.seed_class is not None:
        source = mod.FEEDBACK["from"]
        k = mod._size(mod.STATES[source]["size"], {**mod.DIMS, **dims}) if source in \
            mod.STATES else 0
        if not 0 <= args.seed_class < k:
            raise UsageError(f"--seed-class {args.seed_class}: classes are 0..{k - 1}")
        state0[source] = np.zeros((args.batch, k))
        state0[source][:, args.seed_class] = 1
    try:
        tokens, lengths, _ = mod.generate(params, inputs, T=args.T, state0=state0 or None,
                                          seed=args.seed, greedy=not args.sample, end=args.end,
                                          batch=args.batch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    how = "sampled" if args.sample else "greedy"
    print(f"{path}: {tokens.shape[1]} sequence(s), {how}, up to {tokens.shape[0]} steps")
    for b in range(tokens.shape[1]):
        print(" ".join(str(t) for t in tokens[:lengths[b], b]))
    return 0


COMMANDS = {"compile": cmd_compile, "check": cmd_check, "gradcheck": cmd_gradcheck,
            "graph": cmd_graph, "sample": cmd_sample}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
