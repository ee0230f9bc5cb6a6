"""The `sdpa-fuzz` command line: run, replay, repro, show."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from fuzz.backends import BackendError, resolve_backend
from fuzz.campaign import LEASE_S, StoreError, campaign_status, redis_url
from fuzz.case import DEVICES, CaseError
from fuzz.caseio import load_case
from fuzz.defaults import MAX_EXAMPLES, PROBES, TIME_BUDGET_S
from fuzz.version import tool_version
from strategies import SPACES

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_TOOL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_STATUSES = """exit status:
  0    nothing new failed
  1    new findings (run), or entries not showing what they record (replay); findings
       win over an interruption
  2    bad usage or a bad input file, with a message naming it
  3    an internal error of sdpa-fuzz (not of the code under test)
  130  interrupted (Ctrl-C, SIGTERM) with nothing new"""


# Signals that came while torch was imported, acted on once the import is done.
_DEFERRED: list[int] = []
_IMPORTING = [False]


def _terminate(signum, frame) -> None:
    """SIGTERM (a scheduler's, `timeout`'s) stops a run as Ctrl-C does: findings kept,
    summary printed, report written. While torch is imported, SIGTERM and Ctrl-C wait
    for the import to end (`_import_torch`)."""
    if _IMPORTING[0]:
        _DEFERRED.append(signum)
        return
    raise KeyboardInterrupt


def _import_torch() -> None:
    """Import torch and Dynamo with SIGTERM and Ctrl-C held back, then act on them. A
    KeyboardInterrupt raised inside a library's import leaves it half imported, and some
    import code swallows it: one stopped run recursed without end in numpy's `linalg`
    (exit 3), another went on running, another died of SIGINT at exit (-2 for 130)."""
    previous = signal.signal(signal.SIGINT, _terminate)
    _IMPORTING[0] = True
    try:
        importlib.import_module("torch._dynamo")
    finally:
        _IMPORTING[0] = False
        signal.signal(signal.SIGINT, previous)
    if _DEFERRED:
        raise KeyboardInterrupt


class UsageError(Exception):
    """Bad usage or a bad input; reported as one line and exit status 2."""


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value
    return parse


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdpa-fuzz", description=__doc__.splitlines()[0],
                                     epilog=EXIT_STATUSES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {tool_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate cases until the budget is spent",
                         epilog=EXIT_STATUSES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--backend", default="inductor",
                     help="registered torch.compile backend, or module:attr")
    run.add_argument("--device", default="cpu", choices=DEVICES)
    run.add_argument("--space", default="all", choices=SPACES,
                     help="programs around SDPA calls, hand-written attention that Inductor "
                     "may rewrite into SDPA, attention layers as models write them, "
                     "torch.nn attention modules, or any of them (default)")
    run.add_argument("--time-budget", type=_positive(float), default=TIME_BUDGET_S,
                     metavar="S", help=f"seconds of search (default {TIME_BUDGET_S:g})")
    run.add_argument("--confirm-budget", type=_positive(float), metavar="S",
                     help="seconds more for confirming findings, after which the run ends "
                          "and what is left is written unconfirmed (default: a quarter of "
                          "--time-budget, at least 60)")
    run.add_argument("--max-examples", type=_positive(int), default=MAX_EXAMPLES, metavar="N")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--workers", type=_positive(int), default=os.cpu_count() or 1,
                     metavar="N", help="worker processes (default: the core count)")
    run.add_argument("--case-timeout", type=_positive(float), metavar="S",
                     help="a case running longer is a timeout finding (default: adaptive, "
                          "10 times the slowest case so far, at least 30)")
    run.add_argument("--variants", type=_non_negative_int, metavar="N",
                     help="seed variants run on each compiled program (default: adaptive)")
    run.add_argument("--corpus", type=Path, default=Path("fuzz-out"), metavar="DIR")
    run.add_argument("--db", metavar="DIR|redis://HOST:PORT/N",
                     help="Hypothesis example database (default: DIR/.hypothesis); a "
                          "redis:// URL shares examples, claims and findings with every "
                          "machine of the campaign")
    run.add_argument("--claim-lease", type=_positive(float), default=LEASE_S, metavar="S",
                     help="with a redis:// --db: how long a dead machine's claim on a bug "
                          f"holds (default {LEASE_S:g})")
    run.add_argument("--report", type=Path, metavar="FILE.json")
    run.add_argument("--known", type=Path, action="append", default=[], metavar="DIR",
                     help="another corpus whose signatures are not reported again "
                          "(repeatable), e.g. the committed corpus/")
    run.add_argument("--stop-after", type=_positive(int), metavar="N",
                     help="end the run once N new findings are confirmed, writing those "
                          "still being shrunk unconfirmed (a CI gate that fails fast; "
                          "default: run out the budget)")
    run.add_argument("--probes", type=_non_negative_int, default=PROBES, metavar="N",
                     help="cases judged per new finding, setting its knobs (dtypes, values, "
                          "mask rank, the forms of hand-written and model attention, "
                          "mutation method, module options, dynamic, grad mode, autocast) otherwise, so that "
                          "one bug seen at several settings is reported once (default "
                          f"{PROBES}; 0: none)")
    run.add_argument("--no-confirm", action="store_true",
                     help="skip re-running each finding in a fresh process")
    status = sub.add_parser("status", help="print a campaign: machines, cases, findings")
    status.add_argument("--db", required=True, metavar="redis://HOST:PORT/N")
    replay = sub.add_parser("replay", help="run corpus entries against their expectations")
    replay.add_argument("paths", nargs="*", type=Path, default=[Path("corpus")])
    replay.add_argument("--backend", help="override the backend each case records")
    replay.add_argument("--device", choices=DEVICES)
    replay.add_argument("--case-timeout", type=_positive(float), default=300.0, metavar="S")
    for name, text in (("repro", "print the minimal repro script of the entry's failure"),
                       ("show", "print the case readably")):
        p = sub.add_parser(name, help=text)
        p.add_argument("case", type=Path)
        p.add_argument("--backend", help="backend for the script (default: the case's)")
        if name == "repro":
            p.add_argument("--full", action="store_true",
                           help="the full checker instead: every check, every call, for "
                                "triage")
    return parser


def _check_backend(name: str | None) -> None:
    if name is not None:
        try:
            resolve_backend(name)
        except BackendError as exc:
            raise UsageError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from fuzz.driver import Fuzzer, RunConfig

    _check_backend(args.backend)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here")
    for folder in args.known:
        if not folder.is_dir():
            raise UsageError(f"--known {folder}: no such folder")
    campaign = args.db if args.db and redis_url(args.db) else None
    config = RunConfig(backend=args.backend, device=args.device, space=args.space,
                       time_budget=args.time_budget,
                       max_examples=args.max_examples, seed=args.seed, corpus=args.corpus,
                       database=None if campaign else args.db and Path(args.db),
                       campaign=campaign, lease_s=args.claim_lease,
                       report=args.report, confirm=not args.no_confirm,
                       workers=args.workers, case_timeout=args.case_timeout,
                       confirm_budget=args.confirm_budget,
                       variants=args.variants, known=tuple(args.known), probes=args.probes,
                       stop_after=args.stop_after,
                       progress=sys.stderr.isatty(), arguments=tuple(sys.argv[1:]))
    stats = Fuzzer(config).run()
    print(f"{stats.examples} cases ({stats.programs} programs) in {stats.elapsed:.1f}s "
          f"({stats.examples / max(stats.elapsed, 1e-9):.2f} cases/s, {args.workers} "
          f"worker(s)), {len(stats.findings)} new failure(s), {len(stats.flaky)} flaky, "
          f"{len(stats.unconfirmed)} unconfirmed, {stats.restarts} worker restart(s)"
          + (" [interrupted]" if stats.interrupted else ""))
    for item in stats.findings + stats.unconfirmed:
        print(f"  {item['signature']}: {item['case']}")
    status = EXIT_FAILURES if stats.findings or stats.unconfirmed else \
        EXIT_INTERRUPTED if stats.interrupted else EXIT_OK
    if stats.interrupted:  # everything is on disk and said; skip the interpreter's
        sys.stdout.flush()  # exit-time joins of abandoned searches and their workers
        sys.stderr.flush()
        os._exit(status)
    return status


def _cmd_status(args: argparse.Namespace) -> int:
    if not redis_url(args.db):
        raise UsageError(f"--db {args.db}: status needs a redis:// URL")
    print(campaign_status(args.db))
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from fuzz.corpus import corpus_files, known_bugs_for, load_entry
    import torch

    from fuzz.replay import replay_entry
    from fuzz.worker import Worker

    _check_backend(args.backend)
    files = corpus_files(args.paths)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {missing[0]}")
    entries = [load_entry(p) for p in files]  # refuse a bad file before running anything
    bad = 0
    skipped = [e for e in entries if e.case.device == "cuda"] \
        if args.device is None and not torch.cuda.is_available() else []
    for entry in skipped:
        print(f"{entry.path}: skipped: a CUDA entry, and no GPU here (--device cpu replays "
              "it on the CPU)", flush=True)
    entries = [e for e in entries if e not in skipped]
    cuda = args.device == "cuda" or any(e.case.device == "cuda" for e in entries)
    # On another backend, a case may fail only as the replayed corpora's known bugs do.
    known = known_bugs_for(args.backend, [p for p in args.paths if p.is_dir()]) \
        if args.backend else []
    worker = Worker(args.case_timeout, device="cuda" if cuda else "cpu")
    try:
        for entry in entries:
            result = replay_entry(entry, worker, args.backend, args.device, known)
            print(result.describe(), flush=True)
            bad += not result.ok
    finally:
        worker.close()
    print(f"{len(entries) - bad} ok, {bad} not as recorded"
          + (f", {len(skipped)} skipped" if skipped else ""))
    return EXIT_FAILURES if bad else EXIT_OK


def _cmd_repro(args: argparse.Namespace) -> int:
    from fuzz.codegen import repro_script
    from fuzz.corpus import entry_script, load_entry

    entry = load_entry(args.case)
    backend = args.backend or entry.case.compile.backend
    script = None if args.full else entry_script(entry.case, entry.finding, backend)
    if script is None and not args.full:
        raise UsageError(f"{args.case} records no failure to show; `--full` prints the "
                         "full checker for it")
    print(script or repro_script(entry.case, backend), end="")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from fuzz.codegen import function_source
    from fuzz.corpus import load_entry

    entry = load_entry(args.case)
    case = entry.case
    print(f"# {args.case}")
    print(f"expect: {entry.expect.to_dict()}")
    if entry.finding:
        print(f"finding: {entry.finding.get('signature')} ({entry.finding.get('torch')}, "
              f"{entry.finding.get('backend')}, {entry.finding.get('date')})")
    print(f"device: {case.device}; compile: {case.compile}")
    for name, spec in case.inputs:
        print(f"input {name}: {spec}")
    print(function_source(case), end="")
    return EXIT_OK


COMMANDS = {"run": _cmd_run, "replay": _cmd_replay, "repro": _cmd_repro, "show": _cmd_show,
            "status": _cmd_status}


def _read_named_cases(args: argparse.Namespace) -> None:
    """Read the case files a command names outright before anything imports torch, so
    that a bad one is refused at once, not after torch's seconds of import."""
    named = [args.case] if hasattr(args, "case") else getattr(args, "paths", [])
    for path in named:
        if Path(path).is_file():
            load_case(path)


def main(argv: list[str] | None = None) -> int:
    # From the start: a scheduler's SIGTERM may come while a command still imports torch.
    signal.signal(signal.SIGTERM, _terminate)
    args = _parser().parse_args(argv)
    try:
        _read_named_cases(args)
        if args.command != "status":
            _import_torch()
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:  # one the command did not stop on its own (a run, with a report)
        print(f"sdpa-fuzz: interrupted; `{args.command}` did not finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, CaseError) as exc:
        print(f"sdpa-fuzz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:  # the campaign's Redis: unreachable, or gone mid-run
        print(f"sdpa-fuzz: error: {exc}", file=sys.stderr)
        return EXIT_TOOL
    except Exception as exc:  # sdpa-fuzz's own failure: not a finding (1), not bad input (2)
        with tempfile.NamedTemporaryFile("w", prefix="sdpa-fuzz-internal-error-",
                                         suffix=".txt", delete=False) as log:
            traceback.print_exc(file=log)
        print(f"sdpa-fuzz: internal error (a bug in sdpa-fuzz, not in the code under test): "
              f"{type(exc).__name__}: {exc}; traceback in {log.name}", file=sys.stderr)
        return EXIT_TOOL


if __name__ == "__main__":
    sys.exit(main())
