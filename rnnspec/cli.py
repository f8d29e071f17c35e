"""The ``rnnspec`` command line: a thin layer over the Python API.

In: argv.  Out: exit status 0 (success), 1 (a gradient check failed), 2 (a user error: bad spec,
bad option, missing file -- printed as ``file:line:col: error: ...`` with the source line, a caret
and a hint, never a traceback).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from . import __version__
from .api import analyze, generate, load_module, read_spec, render
from .checkpoint import checkpoint_steps
from .codegen.backends import BACKENDS, BackendUnavailable
from .errors import SpecError
from .graph import to_dot, unroll

EXAMPLES = {
    "compile": "example:\n  rnnspec compile specs/lstm.rnn -o lstm.py --dim hidden=128\n"
               "  rnnspec compile specs/lstm.rnn -o lstm_ck.py --checkpoint 32\n"
               "  rnnspec compile specs/elman.rnn -o elman_rtrl.py --rtrl",
    "check": "example:\n  rnnspec check specs/gru.rnn",
    "gradcheck": "example:\n  rnnspec gradcheck specs/elman.rnn --T 8 --batch 2 --seed 1\n"
                 "  rnnspec gradcheck specs/lstm.rnn --dim hidden=64 --directional\n"
                 "  rnnspec gradcheck specs/lstm.rnn --truncate 3\n"
                 "  rnnspec gradcheck specs/gru.rnn --random-truncation 0.7",
    "sample": "example:\n  rnnspec sample specs/generate.rnn --params trained.npz --T 20 "
              "--seed-class 0 --end 4\n  rnnspec sample specs/teacher_forcing.rnn --inputs x.npz "
              "--sample --seed 3\n  rnnspec sample specs/char_lm.rnn --run char_lm-run --T 300 "
              "--prime 'Shall I' --sample --temperature 0.8",
    "plan": "example:\n  rnnspec plan specs/lstm.rnn\n  rnnspec plan specs/lstm.rnn -o lstm.plan",
    "grad": "example:\n  rnnspec grad specs/lstm.rnn --truncate 2,5 --clip-norm 0.5\n"
            "  rnnspec grad specs/gru.rnn --rtrl\n"
            "  rnnspec grad specs/elman.rnn --params p.npz --data batch.npz -o grads.npz",
    "flow": "example:\n  rnnspec flow specs/elman.rnn --T 100\n  rnnspec flow specs/lstm.rnn "
            "--T 100 -o lstm_flow.png --json lstm_flow.json",
    "train": "example:\n  rnnspec train specs/adding.rnn --data task:adding,T=20 --steps 600 "
             "--lr 0.01 --out adding-run\n  rnnspec train specs/adding.rnn --resume adding-run "
             "--steps 1000\n  rnnspec train lm.rnn --data text:poems.txt --truncate 50 "
             "--clip-norm 1\n  rnnspec train lm.rnn --data text:poems.txt --workers 2\n"
             "  rnnspec train lm.rnn --data text:poems.txt --dask tcp://HOST:8786",
    "graph": "example:\n  rnnspec graph specs/elman.rnn -o elman.dot\n"
             "  rnnspec graph specs/elman.rnn --unroll 4 -o elman4.dot && dot -Tpng elman4.dot",
}
MAX_UNROLL = 1000  # `graph --unroll T`: at most this many steps


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


def _number(kind, low: float, strict: bool, what: str):
    """An argparse type: a finite int or float above ``low`` (``strict``) or at least ``low``."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or value < low or \
                (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return convert


positive_int = _number(int, 1, False, "a positive integer")
count_arg = _number(int, 0, False, "an integer 0 or more")
positive_float = _number(float, 0.0, True, "a positive finite number")
tolerance_arg = _number(float, 0.0, False, "a finite number 0 or more")


def truncate_arg(text: str):
    """--truncate K or K1,K2 (K1 <= K2): an int, or a pair for TBPTT(K1, K2)."""
    parts = text.split(",")
    try:
        ks = [positive_int(k) for k in parts]
    except argparse.ArgumentTypeError:
        ks = []
    if len(ks) not in (1, 2) or len(ks) != len(parts) or ks[-1] < ks[0]:
        raise argparse.ArgumentTypeError(f"expected K or K1,K2 (positive integers, K1 <= K2), "
                                         f"got {text!r}")
    return ks[0] if len(ks) == 1 else tuple(ks)


def probability_arg(text: str) -> float:
    """--random-truncation PI: a probability in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``rnnspec CMD: error: ...``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def checkpoint_arg(text: str) -> int:
    """--checkpoint K: a positive integer (argparse reports anything else, exit status 2)."""
    try:
        return checkpoint_steps(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer (steps per segment), "
                                         f"got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    c.add_argument("--rtrl", action="store_true",
                   help="also generate rtrl(params, inputs, targets, ...): the loss gradient "
                        "computed forward in time (real-time recurrent learning), memory "
                        "independent of T")
    _backend_option(c)
    cmd("check", "validate a spec and print its summary: every value, state and loss term, "
               "the parameters, the totals")
    g = cmd("gradcheck", "compare analytic gradients with central differences")
    g.add_argument("--T", type=positive_int,
                   help="sequence length (default: 5, or 2 more than the fewest steps the spec "
                        "needs)")
    g.add_argument("--batch", type=positive_int, default=3, help="batch size (default 3)")
    g.add_argument("--seed", type=count_arg, default=0, help="random seed (default 0)")
    g.add_argument("--directional", action="store_true",
                   help="check along random directions instead of every entry (large models)")
    g.add_argument("--directions", type=positive_int, default=3,
                   help="directions per array in --directional mode (default 3)")
    g.add_argument("--eps", type=positive_float, default=1e-5,
                   help="finite-difference step (1e-5)")
    g.add_argument("--rtol", type=tolerance_arg, default=1e-6, help="relative tolerance (1e-6)")
    g.add_argument("--atol", type=tolerance_arg, default=1e-8, help="absolute tolerance (1e-8)")
    g.add_argument("--checkpoint", type=checkpoint_arg, metavar="K",
                   help="check the module checkpointed every K steps")
    _backend_option(g)
    g.add_argument("--truncate", type=truncate_arg, metavar="K|K1,K2",
                   help="check backward(..., truncate=(K, K)), truncated BPTT, against the "
                        "objective it computes exactly: the run in chunks of K steps, each "
                        "from the states at its start held constant; K1,K2: TBPTT(K1, K2), "
                        "each block of K1 steps run on the window of its last K2 steps")
    g.add_argument("--random-truncation", type=probability_arg, metavar="PI",
                   help="check that randomized truncation is unbiased: the mean of --draws "
                        "gradients of backward(..., xi=random_truncation(T, PI)) equals the "
                        "full gradient within 4 standard errors, entry by entry")
    g.add_argument("--draws", type=positive_int, default=10_000,
                   help="draws of xi for --random-truncation (default 10000, at least 200; "
                        "with fewer a fair sampler fails the check more often)")
    _other_commands(cmd)
    return p


def _grad_command(cmd) -> None:
    gr = cmd("grad", "the gradient of the loss on one batch (full, truncated, randomized or "
                     "RTRL), its norms, and clipped")
    gr.add_argument("--params", metavar="FILE.npz",
                    help="parameters (np.savez(FILE, **params)); default: the spec's "
                         "initializers with --seed")
    gr.add_argument("--data", metavar="FILE.npz",
                    help="the batch: arrays named like the spec's inputs and targets (and "
                         "'lengths'); default: random data of --T steps and --batch sequences")
    gr.add_argument("--T", type=positive_int, default=10, help="steps of random data (10)")
    gr.add_argument("--batch", type=positive_int, default=3, help="sequences of random data (3)")
    gr.add_argument("--seed", type=count_arg, default=0,
                    help="seed of the random data, parameters, xi and random clipping (0)")
    gr.add_argument("--truncate", type=truncate_arg, metavar="K|K1,K2",
                    help="truncated BPTT: TBPTT(K, K), or TBPTT(K1, K2)")
    gr.add_argument("--random-truncation", type=probability_arg, metavar="PI",
                    help="one draw of randomized truncation: xi = 0 with probability 1 - PI, "
                         "else 1/PI, at every step")
    gr.add_argument("--rtrl", action="store_true",
                    help="compute it forward in time with the generated rtrl (real-time "
                         "recurrent learning) instead of BPTT")
    _clip_options(gr, "the gradients")
    gr.add_argument("--clip-random", action="store_true",
                    help="with --clip-norm: a random direction of norm V instead (004 3.4)")
    gr.add_argument("-o", "--output", metavar="GRADS.npz",
                    help="save the (clipped) parameter gradients, keyed like the parameters")
    _backend_option(gr)


def _backend_option(parser) -> None:
    """--backend NAME: what runs the generated module's arrays (rnnspec.codegen.backends)."""
    parser.add_argument("--backend", choices=BACKENDS, default="numpy",
                        help="generate the module for: numpy (default), numba (compiled time "
                             "loops; pip install \"rnnspec[numba]\") or array-api (NumPy, CuPy "
                             "or torch arrays; pip install \"rnnspec[array-api]\")")


def _clip_options(parser, what: str) -> None:
    """--clip-norm V | --clip-value V (one of them)."""
    clip = parser.add_mutually_exclusive_group()
    clip.add_argument("--clip-norm", type=positive_float, metavar="V",
                      help=f"scale {what} to global norm V when it is over V")
    clip.add_argument("--clip-value", type=positive_float, metavar="V",
                      help=f"clip every entry of {what} into [-V, V]")


def _other_commands(cmd) -> None:
    """The parsers of sample, flow, plan and graph (``cmd`` makes one with SPEC and --dim)."""
    sm = cmd("sample", "generate sequences from a spec with feedback(...), feeding back its own "
                       "choices")
    sm.add_argument("--params", metavar="FILE.npz",
                    help="trained parameters (np.savez(FILE, **params)); default: the spec's "
                         "initializers with --init-seed")
    sm.add_argument("--init-seed", type=count_arg, default=0,
                    help="seed of init_params without --params")
    sm.add_argument("--inputs", metavar="FILE.npz", help="the spec's inputs, if it has any")
    sm.add_argument("--T", type=positive_int, default=20,
                    help="steps to generate (default 20)")
    sm.add_argument("--batch", type=positive_int, default=1,
                    help="sequences to generate (default 1)")
    sm.add_argument("--sample", action="store_true",
                    help="draw each class at random from the output (default: greedy, the most "
                         "likely class)")
    sm.add_argument("--seed", type=count_arg, default=0,
                    help="random seed for --sample (default 0)")
    sm.add_argument("--seed-class", type=count_arg, metavar="K",
                    help="the class fed at the first step (the initial value of the fed-back "
                         "state, one-hot)")
    sm.add_argument("--end", type=count_arg, metavar="K", help="stop a sequence at this class")
    sm.add_argument("--run", metavar="RUN_DIR",
                    help="a language model's training run (rnnspec train ... --data text:FILE): "
                         "its params.npz and vocab.json; the text is generated one token at a "
                         "time, each fed back as the class input")
    sm.add_argument("--prime", default="", metavar="TEXT",
                    help="with --run: the text fed first (default: one random token)")
    sm.add_argument("--temperature", type=positive_float, default=1.0,
                    help="with --run and --sample: below 1 sharper, above 1 flatter (1.0)")
    _grad_command(cmd)
    _train_command(cmd)
    fl = cmd("flow", "show the gradient vanish or explode: its norm at every step, the step "
                     "Jacobian's norm and radius, the recurrent matrices' radii")
    fl.add_argument("--params", metavar="FILE.npz",
                    help="parameters (np.savez(FILE, **params)); default: the spec's "
                         "initializers with --seed")
    fl.add_argument("--T", type=positive_int, default=100, help="steps (default 100)")
    fl.add_argument("--seed", type=count_arg, default=0,
                    help="seed of the parameters, inputs and targets (default 0)")
    fl.add_argument("-o", "--output", metavar="FLOW.png",
                    help="also plot the curves (needs matplotlib: pip install 'rnnspec[plot]')")
    fl.add_argument("--json", metavar="FILE.json", help="also write every number as JSON")
    pl = cmd("plan", "print the schedule and where every value lives (inline, a step's variable, "
                     "an array over all steps, a loop buffer, a view; what the cache keeps)")
    pl.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    gr = cmd("graph", "write the cell graph (edges labelled with delays) as Graphviz DOT")
    gr.add_argument("--unroll", type=positive_int, metavar="T",
                    help="unroll the graph for T steps")
    gr.add_argument("--params", action="store_true", help="also draw the parameters")
    gr.add_argument("-o", "--output", metavar="FILE.dot", help="output file (default: stdout)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = ["rnnspec"] + list(sys.argv[1:] if argv is None else argv)
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
    except (UsageError, BackendUnavailable) as exc:
        print(f"rnnspec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        _discard_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"rnnspec {args.command}: interrupted", file=sys.stderr)
        return 130


def _load(args):
    path = Path(args.spec)
    text = read_spec(path)
    dims = parse_dims(args.dim)
    return path, text, dims


def _warn(analysis) -> None:
    for w in analysis.model.warnings:
        print(w.render(), file=sys.stderr)


def shown(path) -> str:
    """A path as messages print it: as given, or as a Python string literal when it holds a
    newline, a NUL, a byte that is not UTF-8 or anything else a terminal would not show as
    itself."""
    text = os.fspath(path)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def output_path(out: Optional[str], spec: Path, flag: str = "-o",
                default: Optional[str] = None) -> Optional[Path]:
    """The file a command will write (None: standard output), checked before any work: a
    UsageError (exit status 2) when its directory does not exist or cannot be written, when it
    names a directory or a .rnn file, or when it is the spec itself (also through a symlink, a
    hard link or another spelling: ``os.path.samefile``).  ``default`` (the output without
    ``-o``) gets the same checks."""
    given = out is not None
    out = out if given else default
    if out is None or (given and out == "-"):
        return None
    label = f"{flag} {shown(out)}" if given else f"the default output {shown(out)}"
    if not out:
        raise UsageError(f"{flag} '': the file name is empty")
    if "\x00" in out:
        raise UsageError(f"{label}: a file name cannot contain a NUL character")
    if out.lower().endswith(".rnn"):
        raise UsageError(f"{label} names a .rnn file: the output is not a spec (this refuses "
                         f"to overwrite one); name a .py or .dot file")
    if out.endswith(("/", os.sep)):
        raise UsageError(f"{label} names a directory: name the file to write")
    path = Path(out)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise UsageError(f"{label}: {shown(os.path.dirname(out))} is not a directory") from None
    except OSError as exc:
        raise UsageError(f"{label}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{label} is a directory: name the file to write, for example "
                         f"{flag} {shown(os.path.join(out, spec.stem + path.suffix))}"
                         if given else f"{label} is a directory: name the module with -o")
    if st is not None and _same_file(path, spec):
        raise UsageError(f"{label} is the spec {shown(spec)} itself: writing it would destroy "
                         f"the spec; name another file" + ("" if given else " with -o"))
    target = Path(os.path.realpath(path))  # a symlink's target is the file replaced
    parent = target.parent
    try:
        pst = os.stat(parent)
    except FileNotFoundError:
        raise UsageError(f"{label}: the directory {shown(_dirname(path, target))} does not "
                         f"exist") from None
    except OSError as exc:
        raise UsageError(f"{label}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(pst.st_mode):
        raise UsageError(f"{label}: {shown(_dirname(path, target))} is not a directory")
    if st is not None and stat.S_ISREG(st.st_mode) and not os.access(path, os.W_OK):
        raise UsageError(f"{label}: the file is not writable")
    if (st is None or stat.S_ISREG(st.st_mode)) and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{label}: no permission to write in {shown(_dirname(path, target))}")
    return path


def _dirname(path: Path, target: Path) -> str:
    return os.path.dirname(os.fspath(path)) or "." if not path.is_symlink() else str(target.parent)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def write_file(path: Path, text) -> None:
    """Write ``text`` (str, or bytes for a binary file) to ``path`` atomically: into a temporary file in the same directory, then
    renamed over it, so that a failure (a full disk) leaves the previous file as it was and no
    temporary file behind.  A symlink's target is replaced (the link stays); a device or FIFO
    (``/dev/stdout``, ``/dev/full``) is written in place."""
    target = Path(os.path.realpath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    how = {"mode": "wb"} if isinstance(text, bytes) else {"mode": "w", "encoding": "utf-8"}
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(target, **how) as f:
            f.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".rnnspec-", suffix=".tmp")
    try:
        with os.fdopen(fd, **how) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_output(path: Optional[Path], text: str) -> None:
    """``text`` to the file ``path`` (see :func:`write_file`) or, for None, to standard output;
    a failure is a one-line UsageError."""
    if path is None:
        write_stdout(text)
        return
    try:
        write_file(path, text)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot write {shown(path)}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    print(f"wrote {shown(path)}", file=sys.stderr)


def write_stdout(text: str) -> None:
    """Write to standard output and flush; a full or closed one is a one-line UsageError (and
    later writes, such as Python's own flush at exit, go nowhere instead of failing again)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        raise
    except (OSError, UnicodeError) as exc:
        _discard_stdout()
        raise UsageError(f"cannot write to standard output: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None


def _say(*parts) -> None:
    write_stdout(" ".join(map(str, parts)) + "\n")


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def cmd_check(args) -> int:
    from .schedule import state_directions
    from .summary import summary
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path), cli=True)
    _warn(a)
    m = a.model
    _say(f"{path}: ok ({len(m.values)} values, {len(m.states)} states, "
         f"{len(m.losses)} loss terms; dims " +
         ", ".join(f"{k}={v}" for k, v in m.dims.items()) + ")")
    for name, direction, axis in state_directions(a.schedule):
        _say(f"state {name}: runs {direction}" + (
            f" in {axis} (from step 1 to the last)" if direction == "forward" else
            f" in {axis} (from the last step to 1)" if axis else ""))
    _say("")
    _say(summary(a))
    return 0


def cmd_compile(args) -> int:
    from .gradcheck import CheckTooLarge, compile_check, compile_dims, rtrl_agreement
    path, text, dims = _load(args)
    out = output_path(args.output, path, default=path.stem + ".py")
    a = analyze(text, dims, str(path), cli=True)
    _warn(a)
    source = render(a, args.checkpoint, args.rtrl, args.backend)
    if not args.no_gradcheck:
        small = compile_dims(a.model.dims)
        mod = load_module(generate(text, small, str(path), checkpoint=args.checkpoint,
                                   rtrl=args.rtrl, backend=args.backend), path.stem)
        try:
            report = compile_check(mod, small)
        except CheckTooLarge as exc:
            raise UsageError(f"{shown(path)}: {exc}; compile with --no-gradcheck to write the "
                             f"module unchecked, or check it with rnnspec gradcheck "
                             f"--directional") from None
        if not report.ok:
            print(report.table(), file=sys.stderr)
            if report.nonfinite:
                why = ("the gradients could not be checked: values are not finite at the "
                       "check's random point (see above); check the spec's numeric ranges, or "
                       "compile with --no-gradcheck to write it unchecked")
            elif report.step_suspect:
                why = ("the gradient check failed, most likely because of the finite-difference "
                       "step rather than wrong gradients (see above); try rnnspec gradcheck "
                       f"{shown(path)} --eps 1e-7, or compile with --no-gradcheck")
            else:
                why = ("the generated gradients are WRONG. This is a bug in rnnspec: please "
                       "report it with the spec")
            print(f"{shown(path)}: no module written: {why}.", file=sys.stderr)
            return 1
        worst = max((r.max_abs for r in report.rows), default=0.0)
        sampled = " (a random subset: the check's work is bounded)" if any(
            r.sampled for r in report.rows) else ""
        print(f"gradcheck ok: {sum(r.checked for r in report.rows)} entries of "
              f"{len(report.rows)} arrays{sampled} (max abs error {worst:.1e})", file=sys.stderr)
        if args.rtrl:
            diff = rtrl_agreement(mod)
            if not diff <= 1e-8:
                print(f"{shown(path)}: no module written: rtrl differs from BPTT by {diff:.1e} "
                      f"(relative). This is a bug in rnnspec: please report it with the spec.",
                      file=sys.stderr)
                return 1
            print(f"rtrl ok: equals BPTT to {diff:.1e} (relative)", file=sys.stderr)
    write_output(out, source)
    return 0


def cmd_gradcheck(args) -> int:
    from .gradcheck import CLI_WORK, CheckTooLarge, NoChunkedObjective, gradcheck
    from .truncation import check_truncatable
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path), cli=True)
    _warn(a)
    if args.truncate is not None or args.random_truncation is not None:
        check_truncatable(a.schedule)  # (a positioned error before any work)
    dims = {k: a.model.dims[k] for k in dims}  # checked and converted to int
    mod = load_module(render(a, args.checkpoint, backend=args.backend), path.stem)
    need = max(mod.MIN_T.values(), default=1)
    if args.T is not None and args.T < need:
        raise UsageError(f"--T {args.T} is too short: {shown(path.name)} reads a step that needs "
                         f"at least {need} steps (for example h[end-{need - 1}]); use --T {need} "
                         f"or more")
    steps = args.T if args.T is not None else \
        {axis: max(5, mod.MIN_T[key] + 2) for axis, key in mod.AXES.items()}
    if args.random_truncation is not None:
        return _check_unbiased(args, path, mod, dims, steps)
    try:
        report = gradcheck(mod, dims, T=steps, batch=args.batch, seed=args.seed,
                           directional=args.directional, directions=args.directions,
                           eps=args.eps, rtol=args.rtol, atol=args.atol, max_work=CLI_WORK,
                           truncate=args.truncate)
    except CheckTooLarge as exc:
        raise UsageError(f"{shown(path)}: {exc}") from None
    except NoChunkedObjective as exc:
        raise UsageError(f"{shown(path)}: --truncate: {exc}") from None
    report.spec = str(path)
    _say(report.table())
    return 0 if report.ok else 1


def _check_unbiased(args, path, mod, dims, steps) -> int:
    """gradcheck --random-truncation PI: the randomized-truncation gradient's mean against the
    full gradient (rnnspec.unbiased)."""
    from .gradcheck import random_problem
    from .unbiased import check_unbiased
    if args.draws < 200:
        raise UsageError(f"--draws {args.draws} is too few: the check runs the draws in rounds "
                         f"of 100 and needs two rounds for a standard error; use --draws 200 "
                         f"or more")
    T = steps if isinstance(steps, int) else steps[next(iter(mod.AXES))]
    params, inputs, targets, state0, upstream = random_problem(mod, dims, T, args.batch,
                                                               args.seed)
    report = check_unbiased(mod, params, inputs, targets, T, args.random_truncation,
                            draws=args.draws, copies=100, seed=args.seed, state0=state0,
                            d_outputs=upstream)
    _say(f"{shown(path)}: T = {T}, batch {args.batch}, seed {args.seed}\n" + report.table())
    return 0 if report.ok else 1


def cmd_plan(args) -> int:
    from .layout import plan_layout
    path, text, dims = _load(args)
    out = output_path(args.output, path)
    a = analyze(text, dims, str(path), cli=True)
    dims_text = ", ".join(f"{k}={v}" for k, v in a.model.dims.items())
    write_output(out, f"plan of {path.name} ({dims_text}; T steps, batch B)\n" +
                 str(plan_layout(a.schedule)) + "\n")  # (with what the cache keeps)
    return 0


def cmd_graph(args) -> int:
    path, text, dims = _load(args)
    out = output_path(args.output, path)
    a = analyze(text, dims, str(path), cli=True)
    if args.unroll is not None:
        if args.unroll > MAX_UNROLL:
            raise UsageError(f"--unroll {args.unroll}: at most {MAX_UNROLL} steps (a graph "
                             f"of more would not be readable)")
        g = unroll(a.graph, args.unroll)
        title = f"{path.stem} unrolled T={args.unroll}"
    else:
        g = a.graph.cell_graph(params=args.params)
        title = path.stem
    write_output(out, to_dot(g, title))
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


def _sample_text(args, path, a) -> int:
    """rnnspec sample SPEC --run RUN_DIR: text from a trained language model."""
    from pathlib import Path as _Path
    from .data import Vocab
    from .sampling import sample_text
    run = _Path(args.run)
    vocab_file = run / "vocab.json"
    if not vocab_file.is_file():
        raise UsageError(f"--run {shown(args.run)}: no vocab.json there (a run of rnnspec train "
                         f"on text:FILE has one)")
    try:
        vocab = Vocab.load(vocab_file)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{shown(str(vocab_file))}: {exc}") from None
    params = _load_npz(args.params or str(run / "params.npz"), "params")
    mod = load_module(render(a), path.stem)
    try:
        text = sample_text(mod, params, vocab, args.T, prime=args.prime, seed=args.seed,
                           temperature=args.temperature, greedy=not args.sample)
    except ValueError as exc:
        raise UsageError(f"{shown(path)}: {exc}") from None
    _say(text)
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    path, text, dims = _load(args)
    a = analyze(text, dims, str(path), cli=True)
    _warn(a)
    if args.run is not None:
        return _sample_text(args, path, a)
    if not a.model.feedbacks:
        raise SpecError.at(f"{path.name} has no feedback(...): there is nothing to feed back "
                           f"when generating", a.model.source, str(path), 1, 1,
                           "write the step's input as feedback(onehot(y[t-1]), o[t-1])")
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
    _say(f"{path}: {tokens.shape[1]} sequence(s), {how}, up to {tokens.shape[0]} steps")
    for b in range(tokens.shape[1]):
        _say(" ".join(str(t) for t in tokens[:lengths[b], b]))
    return 0


def cmd_grad(args) -> int:
    from .gradcheck import random_problem
    from .grads import gradient, split_data
    from .truncation import check_truncatable
    path, text, dims = _load(args)
    out = output_path(args.output, path) if args.output else None
    if out is not None and out.suffix.lower() != ".npz":
        raise UsageError(f"-o {args.output}: the gradients are saved as a NumPy .npz file; "
                         f"name it .npz")
    if args.clip_random and args.clip_norm is None:
        raise UsageError("--clip-random draws a step of norm V: give --clip-norm V")
    if args.rtrl and (args.truncate is not None or args.random_truncation is not None):
        raise UsageError("--rtrl computes the full gradient forward in time: it takes no "
                         "--truncate or --random-truncation")
    a = analyze(text, dims, str(path), cli=True)
    _warn(a)
    if args.truncate is not None or args.random_truncation is not None:
        check_truncatable(a.schedule)  # (a positioned error before any work)
    dims = {k: a.model.dims[k] for k in dims}
    mod = load_module(render(a, rtrl=args.rtrl, backend=args.backend), path.stem)
    params = _load_npz(args.params, "params") if args.params else \
        mod.init_params(dims, seed=args.seed)
    try:
        if args.data:
            inputs, targets, lengths, T = split_data(mod, _load_npz(args.data, "data"))
            where = f"{shown(args.data)}"
        else:
            T, lengths = args.T, None
            _, inputs, targets, _, _ = random_problem(mod, dims, T, args.batch, args.seed)
            where = f"random data (T = {T}, batch {args.batch}, seed {args.seed})"
        report = gradient(mod, params, inputs, targets, T, None, lengths, args.truncate,
                          args.random_truncation, args.rtrl, args.clip_value, args.clip_norm,
                          args.clip_random, args.seed)
    except ValueError as exc:
        raise UsageError(f"{shown(path)}: {exc}") from None
    _say(f"{shown(path)} on {where}: {report.table()}")
    if out is not None:
        import io
        import numpy as np
        buf = io.BytesIO()
        np.savez(buf, **report.clipped)
        write_output(out, buf.getvalue())
    return 0


def cmd_flow(args) -> int:
    from .flow import gradient_flow
    from .graph import build_graph
    from .truncation import check_truncatable
    path, text, dims = _load(args)
    png = output_path(args.output, path) if args.output else None  # (checked before any work)
    js = output_path(args.json, path, "--json") if args.json else None
    if png is not None and png.suffix.lower() != ".png":
        raise UsageError(f"-o {args.output}: the plot is a PNG file; name it .png")
    if png is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("-o needs matplotlib for the plot: pip install 'rnnspec[plot]' (or "
                         "leave out -o for the table)")
    a = analyze(text, dims, str(path), cli=True)
    _warn(a)
    check_truncatable(a.schedule, "rnnspec flow measures a recurrence forward in time on one "
                      "axis", "flow the gradient of a network with one time axis, forward in "
                      "time")  # (a positioned error otherwise)
    dims = {k: a.model.dims[k] for k in dims}
    mod = load_module(render(a), path.stem)
    params = _load_npz(args.params, "params") if args.params else None
    try:
        flow = gradient_flow(mod, params, T=args.T, seed=args.seed, dims=dims,
                             graph=build_graph(a.model), spec=path.name)
    except ValueError as exc:
        raise UsageError(f"{shown(path)}: {exc}") from None
    _say(flow.table())
    if js is not None:
        write_output(js, flow.to_json() + "\n")
    if png is not None:
        flow.plot(png)
        _say(f"wrote {png}")
    return 0


def _train_command(cmd) -> None:
    tr = cmd("train", "train a spec on a task, a text or your arrays; save the run (params, "
                      "optimizer, history, curves) to continue it exactly")
    tr.add_argument("--data", metavar="DATA",
                    help="task:adding|copy|xor|parity[,T=..,n=..] (generated), text:FILE[,"
                         "level=word] (next-token prediction over B parallel streams), or "
                         "FILE.npz (arrays named like the spec's inputs and targets)")
    tr.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam", "adamw"],
                    help="(default adam)")
    tr.add_argument("--lr", type=positive_float, help="learning rate (default 0.001)")
    _clip_options(tr, "the per-token gradients")
    _backend_option(tr)
    tr.add_argument("--truncate", type=positive_int, metavar="K",
                    help="stateful truncated BPTT: chunks of K steps, the final states carried "
                         "into the next chunk, gradients cut between chunks (a text: default 50)")
    tr.add_argument("--batch", type=positive_int, help="sequences (streams) per step (32)")
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="optimizer steps in all")
    length.add_argument("--epochs", type=positive_int, help="epochs (default 1)")
    tr.add_argument("--seed", type=count_arg, help="seed of the parameters, data order and "
                                                   "split (default 0)")
    tr.add_argument("--out", metavar="RUN_DIR",
                    help="a new (or empty) run directory (default: SPEC-run, SPEC-run2, ...)")
    tr.add_argument("--resume", metavar="RUN_DIR",
                    help="continue this run exactly, with its settings, up to --steps/--epochs")
    tr.add_argument("--eval-every", type=positive_int, metavar="N",
                    help="validate (and save the run) every N steps (default: every epoch, at "
                         "most 100 steps)")
    tr.add_argument("--quiet", action="store_true",
                    help="no progress bar: a plain line at each validation")
    where = tr.add_mutually_exclusive_group()
    where.add_argument("--dask", metavar="ADDRESS",
                       help="split every batch across the workers of the Dask scheduler at "
                            "ADDRESS (tcp://HOST:8786), the gradients summed here (needs "
                            "pip install \"rnnspec[dask]\" here and on the workers)")
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="the same on a local Dask cluster of N worker processes")
    tr.add_argument("--dask-timeout", type=positive_float, metavar="SECONDS",
                    help="wait this long for the scheduler and a worker (default 10)")


def cmd_train(args) -> int:
    from .cluster import ClusterError, ConnectError
    from .train import TrainingDiverged, load_data, train
    cluster = _cluster_options(args)
    path, text, dims = _load(args)
    run, saved = _run_dir(args, path)
    s = saved.get("settings", {})
    settings = {"optimizer": args.optimizer or s.get("optimizer", "adam"),
                "lr": args.lr or s.get("optimizer_options", {}).get("lr", 1e-3),
                "clip_norm": args.clip_norm if args.clip_norm or args.clip_value
                else s.get("clip_norm"),
                "clip_value": args.clip_value if args.clip_norm or args.clip_value
                else s.get("clip_value"),
                "truncate": args.truncate or s.get("truncate"),
                "batch": args.batch or s.get("batch", 32),
                "seed": args.seed if args.seed is not None else s.get("seed", 0)}
    data_text = args.data or saved.get("data")
    if data_text is None:
        raise UsageError("give the training data: --data task:NAME, text:FILE or FILE.npz")
    if saved and args.data and args.data != saved.get("data"):
        raise UsageError(f"--resume {args.resume}: the run was trained on --data "
                         f"{saved.get('data')}, not {args.data}")
    a = analyze(text, {**s.get("dims", {}), **dims}, str(path), cli=True)
    _warn(a)
    dims = {k: a.model.dims[k] for k in {**s.get("dims", {}), **dims}}
    try:
        data = load_data(data_text, load_module(render(a), path.stem), settings["seed"])
        result = train(path, data, dims=dims, steps=args.steps, epochs=args.epochs,
                       out=None if args.resume else run, resume=args.resume,
                       eval_every=args.eval_every, quiet=args.quiet, command=args.argv,
                       data_name=data_text, log=_say, backend=args.backend, **cluster,
                       **settings)
    except (TrainingDiverged, ClusterError) as exc:
        print(f"rnnspec train: {exc}", file=sys.stderr)
        return 1
    except ConnectError as exc:  # (not the spec's: no cluster)
        raise UsageError(str(exc)) from None
    except SpecError:
        raise  # (positioned already: --backend's refusal of the spec)
    except ValueError as exc:
        raise UsageError(f"{shown(path)}: {exc}") from None
    h = result.history
    valid = [v for v in h.valid_loss if v == v]
    _say(f"{result.step} steps: loss {h.loss[-1]:.4f} per token" +
         (f", validation {valid[-1]:.4f}" if valid else "") + f"; the run is in {run}")
    return 0


def _cluster_options(args) -> dict:
    """train()'s dask=, workers=, dask_timeout= from --dask, --workers, --dask-timeout; a
    UsageError, before any work, when the package distributed is missing."""
    if args.dask is None and args.workers is None:
        if args.dask_timeout is not None:
            raise UsageError("--dask-timeout goes with --dask ADDRESS or --workers N")
        return {}
    from .cluster import require
    try:
        require()
    except ImportError as exc:
        raise UsageError(f"--{'dask' if args.dask is not None else 'workers'}: {exc}") from None
    return {"dask": args.dask, "workers": args.workers,
            "dask_timeout": args.dask_timeout or 10.0}


def _run_dir(args, spec: Path):
    """The run directory (checked before any work) and, for --resume, its config."""
    from .train import check_run_dir, read_config
    try:
        if args.resume is not None:
            if args.out is not None and args.out != args.resume:
                raise UsageError("--resume RUN_DIR continues the run in RUN_DIR: give no --out")
            check_run_dir(args.resume, resume=True)
            return Path(args.resume), read_config(args.resume)
        out = args.out
        if out is None:
            out = next(f"{spec.stem}-run{i if i > 1 else ''}" for i in range(1, 10_000)
                       if not os.path.exists(f"{spec.stem}-run{i if i > 1 else ''}"))
        if _same_file(Path(out), spec):
            raise UsageError(f"--out {shown(out)} is the spec itself")
        return check_run_dir(out), {}
    except ValueError as exc:
        raise UsageError(str(exc)) from None


COMMANDS = {"train": cmd_train, "compile": cmd_compile, "check": cmd_check, "gradcheck": cmd_gradcheck,
            "graph": cmd_graph, "plan": cmd_plan, "sample": cmd_sample, "flow": cmd_flow,
            "grad": cmd_grad}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
