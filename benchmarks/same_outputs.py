#!/usr/bin/env python
"""Check that a refactoring of the compiler changed nothing a user sees: the generated modules
and every diagnostic, for many spec texts, with a revision against the checkout.

    python benchmarks/same_outputs.py collect /tmp/cases.json        # texts the tests compile
    python benchmarks/same_outputs.py compare REV /tmp/cases.json    # REV against the checkout

``collect`` runs test files (``--tests``, by default the ones that compile many small texts:
the error tables, the checker's parts, the fuzz tests, ...) in-process with ``rnnspec.parse.parse``
wrapped, and writes every (text, filename) they parse.  ``compare`` exports REV with
``git archive`` and, for the revision and for the checkout (each in a subprocess, with
``PYTHONHASHSEED=0``), computes an outcome for every case: every spec of ``specs/`` (its module,
its warnings, its printed plan, the truncation refusal, ``checkpoint=2``), every file of
``tests/fuzz_findings/``, the mutants of ``tests/test_fuzz.py`` (every seed the test may draw,
``--mutants`` per spec) and the collected texts.  An outcome is the module's SHA-256, or the
whole text of the ``SpecError`` with each diagnostic's fields, or an escaped exception's type and
message.  It prints how many cases of each kind were compared and every case whose outcome
differs (exit status 1 if any).  With ``--time N`` (or ``time REV --time N`` alone) it also
times ``rnnspec.api.generate`` over ``specs/*.rnn`` with each: N processes of each, interleaved,
each timing 3 rounds after one to warm up.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["test_errors.py", "test_check_parts.py", "test_delays.py", "test_stages.py",
         "test_defects.py", "test_nested.py", "test_seq2seq.py", "test_compose.py",
         "test_fuzz.py", "test_layout.py", "test_truncation.py", "test_checkpoint.py",
         "test_codegen.py", "test_cli_safety.py", "test_safety.py", "test_lengths.py"]


class _Recorder:
    """A pytest plugin: while the session runs, every text given to rnnspec's parse is kept."""

    def __init__(self):
        self.cases = {}

    def pytest_sessionstart(self, session):
        import rnnspec.parse as p
        orig = p.parse

        def parse(text, filename="<spec>", *args, **kwargs):
            if isinstance(text, str):
                self.cases.setdefault(f"{filename}\0{text}", [text, filename])
            return orig(text, filename, *args, **kwargs)
        for name, mod in list(sys.modules.items()):
            if name == "rnnspec" or name.startswith("rnnspec."):
                for attr, value in list(vars(mod).items()):
                    if value is orig:
                        setattr(mod, attr, parse)


def collect(out: str, tests) -> None:
    import pytest
    rec = _Recorder()
    pytest.main(["-q", "-p", "no:cacheprovider", "-x"] + [str(ROOT / "tests" / t) for t in tests],
                plugins=[rec])
    Path(out).write_text(json.dumps(list(rec.cases.values())))
    print(f"{len(rec.cases)} texts collected")


def _outcome(fn) -> str:
    from rnnspec import SpecError
    try:
        return "ok " + fn()
    except SpecError as e:
        diags = [(d.severity, d.filename, d.line, d.column, d.message, d.hint, str(d))
                 for d in e.diagnostics]
        return "SpecError " + str(e) + "\n" + json.dumps(diags)
    except RecursionError:
        return "RecursionError"
    except Exception as e:  # noqa: BLE001 - what escapes is part of the outcome
        return f"{type(e).__name__}: {e}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _spec_outcomes(path: Path) -> dict:
    from rnnspec import api
    from rnnspec.layout import plan_layout
    from rnnspec import truncation
    text = path.read_text(encoding="utf-8")
    out = {}
    holder = {}

    def analyzed():
        holder["a"] = a = api.analyze(text, None, path.name, path.parent)
        return json.dumps([str(w) for w in a.model.warnings])
    out[f"spec {path.name} warnings"] = _outcome(analyzed)
    if "a" not in holder:
        return out
    a = holder["a"]
    out[f"spec {path.name} module"] = _outcome(lambda: _digest(api.render(a)))
    out[f"spec {path.name} plan"] = _outcome(lambda: _digest(str(plan_layout(a.schedule))))
    out[f"spec {path.name} checkpoint=2"] = _outcome(lambda: _digest(api.render(a, 2)))
    out[f"spec {path.name} truncation"] = _outcome(
        lambda: str(truncation.refusal(a.schedule)))
    return out


def run(cases_file: str, mutants: int, out: str) -> None:
    from rnnspec import api
    from rnnspec.mutate import mutant
    specs = sorted((ROOT / "specs").glob("*.rnn"))
    results = {}
    for path in specs:
        results.update(_spec_outcomes(path))
    for path in sorted((ROOT / "tests" / "fuzz_findings").glob("*.rnn")):
        text = path.read_text(encoding="utf-8")
        results[f"finding {path.name}"] = _outcome(
            lambda: _digest(api.generate(text, None, path.name, ROOT / "specs")))
    donors = [p.read_text(encoding="utf-8") for p in specs]
    for path, original in zip(specs, donors):
        for k in range(mutants):
            text = mutant(original, random.Random(f"{path.name}:{k}"), donors)
            results[f"mutant {path.name}:{k}"] = _outcome(
                lambda: _digest(api.generate(text, None, "fuzz.rnn", ROOT / "specs")))
    for k, (text, filename) in enumerate(json.loads(Path(cases_file).read_text())):
        results[f"test text {k} ({filename})"] = _outcome(
            lambda: _digest(api.generate(text, None, filename, ROOT / "specs")))
    Path(out).write_text(json.dumps(results))


def time_rounds(rounds: int) -> None:
    """Print the seconds of ``rounds`` rounds of generate over specs/ (after one to warm up)."""
    from rnnspec import api
    specs = [(p.name, p.read_text(encoding="utf-8"))
             for p in sorted((ROOT / "specs").glob("*.rnn"))]
    times = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        for name, text in specs:
            api.generate(text, None, name, ROOT / "specs")
        times.append(time.perf_counter() - t0)
    print(json.dumps(times[1:]))


def _child(src: Path, *args) -> str:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, __file__, *args], check=True, cwd=ROOT, env=env,
                          capture_output=True, text=True).stdout


def _export(base: str, tmp: Path) -> Path:
    archive = subprocess.run(["git", "archive", base, "rnnspec", "grammars"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    tarfile.open(fileobj=BytesIO(archive)).extractall(tmp / "base")
    return tmp / "base"


def compare(base: str, cases_file: str, mutants: int, rounds: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, src in (("base", _export(base, tmp)), ("head", ROOT)):
            _child(src, "_run", cases_file, str(mutants), str(tmp / f"{name}.json"))
        a, b = (json.loads((tmp / f"{k}.json").read_text()) for k in ("base", "head"))
        if rounds:
            _timings(tmp / "base", rounds)
    return _report(base, a, b)


def _timings(base: Path, rounds: int) -> None:
    times = {"base": [], "head": []}
    for _ in range(rounds):  # interleaved, so that the machine's drift hits both alike
        for name, src in (("base", base), ("head", ROOT)):
            times[name] += json.loads(_child(src, "_time", "3"))
    for name, t in times.items():
        t = sorted(t)
        print(f"generate over specs/*.rnn, {name}: min {t[0] * 1e3:.0f} ms, "
              f"median {t[len(t) // 2] * 1e3:.0f} ms ({len(t)} rounds in {rounds} processes)")


def _report(base: str, a: dict, b: dict) -> int:
    kinds = {}
    for key in a.keys() | b.keys():
        kind = key.split(" ")[0]
        kinds.setdefault(kind, [0, 0, 0])
        kinds[kind][0] += 1
        kinds[kind][1 if a.get(key, "").startswith("ok") else 2] += 1
    for kind, (n, ok, bad) in sorted(kinds.items()):
        print(f"{kind:8} {n:6} cases ({ok} compile, {bad} refused or failed)")
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    for k in diff:
        print(f"DIFFERS: {k}\n  {base}: {a.get(k, '(missing)')[:2000]}\n  checkout: "
              f"{b.get(k, '(missing)')[:2000]}")
    print(f"{len(a.keys() | b.keys())} cases, {len(diff)} differ")
    return 1 if diff else 0


def main() -> int:
    if sys.argv[1:2] == ["_run"]:
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    if sys.argv[1:2] == ["_time"]:
        time_rounds(int(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("out")
    c.add_argument("--tests", nargs="*", default=TESTS)
    r = sub.add_parser("compare")
    r.add_argument("base", help="the git revision to compare the checkout with")
    r.add_argument("cases", help="the file `collect` wrote")
    r.add_argument("--mutants", type=int, default=195, help="mutants per spec (seeds 0..N-1)")
    r.add_argument("--time", type=int, default=0,
                   help="processes (3 timed rounds each) of generate over specs/ to time")
    t = sub.add_parser("time")
    t.add_argument("base", help="the git revision to compare the checkout with")
    t.add_argument("--time", type=int, default=5, help="processes, 3 timed rounds each")
    args = ap.parse_args()
    if args.cmd == "collect":
        collect(args.out, args.tests)
        return 0
    if args.cmd == "time":
        with tempfile.TemporaryDirectory() as tmp:
            _timings(_export(args.base, Path(tmp)), args.time)
        return 0
    return compare(args.base, args.cases, args.mutants, args.time)


if __name__ == "__main__":
    sys.exit(main())
