"""The ``runbook`` command: options derived from the engine's requests, one engine run each, events streamed.

Connection settings come from govc's environment variables (GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD,
GOVC_INSECURE, GOVC_TLS_CA_CERTS); with none set, the lab vCenter is used. Options are validated here,
in this process, before any kernel starts; a run then goes through the papermill pipeline, whose events
(each check, the task's percent, probes lost so far) are printed as they come.
"""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runbook import __version__, errors
from runbook.engine.requests import REQUESTS, WAVE_REQUESTS, MoveRequest, Param, PlanRequest, Request, build
from runbook.errors import RunbookError

EXIT_CODES = textwrap.dedent("""\
    exit codes:
      0  succeeded (also: dry run, nothing to do, a check that passed)
      1  the move or the run failed (task fault, failed verification, notebook error)
      2  refused: bad input, an unknown name or a failed check; nothing was changed
      3  timed out, cancelled or interrupted (SIGINT, SIGTERM): the vCenter task was cancelled
      4  no vCenter, unreachable, wrong credentials or untrusted certificate
      5  outcome unknown: a task was started and could not be followed (see its id)
    """)
EXAMPLES = {
    "inventory": "  runbook inventory --cluster Cluster-A",
    "check": "  runbook check --vm app-01 --host esx-02.lab.local\n\n"
             "exit 0 when nothing failed (warnings allowed), 2 when a check failed",
    "migrate": "  runbook migrate --vm web-01 --host esx-02.lab.local\n"
               "  runbook migrate --vm web-01 --datastore nfs-02 --disk-format thin --dry-run",
    "enable-vmotion": "  runbook enable-vmotion --host esx-03.lab.local            # dry run\n"
                      "  runbook enable-vmotion --cluster Cluster-A --apply",
}
EXAMPLES.update({
    "migrate": EXAMPLES["migrate"] + "\n  runbook migrate --plan moves.csv --dry-run          # a wave: one move per row",
    "evacuate": "  runbook evacuate --host esx-01.lab.local --dry-run\n"
                "  runbook evacuate --host esx-01.lab.local --to esx-02.lab.local,esx-03.lab.local --maintenance",
    "drain": "  runbook drain --datastore nfs-01 --dry-run\n"
             "  runbook drain --datastore nfs-01 --to nfs-02 --disk-format thin --min-free 15",
    "undo": "  runbook reports                      # the run ids (column run)\n"
            "  runbook undo run-120000Z --dry-run",
    "app": "  runbook app                          # serves on a free port and opens the browser\n"
           "  runbook app --port 8866 --no-browser --reports ~/change-records",
    "lab": "  eval \"$(runbook lab start --scenario prereq-failures)\"",
})
HELP = {"inventory": "inventory the vCenter into an HTML report",
        "check": "check every prerequisite of a move; change nothing",
        "migrate": "move a running VM to another host and/or datastore",
        "enable-vmotion": "enable vMotion on a VMkernel adapter of hosts",
        "evacuate": "move every VM off a host (a wave); optionally enter maintenance mode",
        "drain": "move every VM with a file on a datastore off it (a wave of Storage vMotions)",
        "undo": "move the VMs of a run or wave back where they were (a new wave)",
        "app": "serve the migrate wizard and the inventory as a web app (Voila), without code"}
#: What ``runbook migrate --plan FILE`` adds to migrate's options (a wave; the shared ones are migrate's).
PLAN_OPTIONS = tuple(p.name for p in PlanRequest.params() if p.name not in {q.name for q in MoveRequest.params()})
FRONT_OPTIONS = ("with_code", "reports", "quiet")  # how to show and where to keep, not what to do


def add_request_options(cmd: argparse.ArgumentParser, cls: type[Request]) -> None:
    """One option per request field, named by the field (``dest``); values stay raw text so that the
    request's own validation gives the one message for them, whatever front they came from."""
    _add_options(cmd, cls.params())


def _add_options(cmd: argparse.ArgumentParser, params: Sequence[Param]) -> None:
    for p in params:
        kwargs: dict[str, Any] = {"dest": p.name, "help": p.help}
        if p.type is bool:
            kwargs["action"] = "store_true"
        elif p.repeat:
            kwargs.update(action="append", default=None, metavar=p.metavar or p.name.upper())
        else:
            kwargs.update(default=None, metavar=p.metavar or p.flag.lstrip("-").upper().replace("-", "_"))
        cmd.add_argument(p.flag, **kwargs)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runbook", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="vMotion runbook: inventory, prerequisite checks, the move, ping loss and change records.",
        epilog=EXIT_CODES + "\nconnection: GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD (or RUNBOOK_PASSWORD_FILE), "
                            "GOVC_INSECURE, GOVC_TLS_CA_CERTS;\nwith no GOVC_URL the running lab vCenter is used.")
    p.add_argument("--version", action="version", version=f"runbook {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the runbook does")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = sub.add_parser("lab", help="start, stop or show the lab vCenter (a simulator)",
                         description="The lab vCenter: govmomi's simulator, extended to behave like vCenter.",
                         epilog="example:\n" + EXAMPLES["lab"],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    start = lab_sub.add_parser("start", help="build (first time) and start the lab; print govc exports")
    start.add_argument("--scenario", default="default", help="scenario name in sim/scenarios (default: default)")
    start.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    start.add_argument("--tls", action="store_true", help="serve HTTPS with a generated certificate")
    start.add_argument("--vms", type=int, help="scale scenario: number of VMs")
    start.add_argument("--hosts", type=int, help="scale scenario: number of hosts")
    lab_sub.add_parser("stop", help="stop the lab and remove its files")
    lab_sub.add_parser("status", help="say whether the lab runs, and where")
    lab_sub.add_parser("env", help="print the govc exports of the running lab")

    for kind, cls in REQUESTS.items():
        epilog = "example" + ("s" if "\n  runbook" in EXAMPLES[kind] else "") + ":\n" + EXAMPLES[kind]
        if kind == "migrate":
            epilog += "\n\n" + EXIT_CODES
        cmd = sub.add_parser(kind, help=HELP[kind], description=cls.__doc__, epilog=epilog,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        add_request_options(cmd, cls)
        cmd.add_argument("--with-code", action="store_true", help="show the code cells in the HTML report")
        cmd.add_argument("--reports", type=Path, help="reports directory (default: reports/ or $RUNBOOK_REPORTS)")
        cmd.add_argument("-q", "--quiet", action="store_true",
                         help="print only the outcome and the report's path (for schedulers)")
        if kind == "migrate":
            waves = cmd.add_argument_group("a wave of moves from a plan file (--plan; the options above that "
                                           "say how to move apply to each row)")
            _add_options(waves, [p for p in PlanRequest.params() if p.name in PLAN_OPTIONS])
    for kind, cls in WAVE_REQUESTS.items():
        if kind == "plan":
            continue  # runbook migrate --plan
        epilog = "examples:\n" + EXAMPLES[kind] + "\n\n" + EXIT_CODES
        cmd = sub.add_parser(kind, help=HELP[kind], description=cls.__doc__, epilog=epilog,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        params = cls.params()
        if kind == "undo":
            cmd.add_argument("run_id", metavar="RUN_ID", help=params[0].help)
            params = params[1:]
        _add_options(cmd, params)
        cmd.add_argument("--reports", type=Path, help="reports directory (default: reports/ or $RUNBOOK_REPORTS)")
        cmd.add_argument("-q", "--quiet", action="store_true",
                         help="print only the outcome and the record's path (for schedulers)")

    rep = sub.add_parser("reports", help="list the change records under reports/")
    rep.add_argument("--reports", type=Path, help="reports directory")

    app = sub.add_parser("app", help=HELP["app"], formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Serve the migrate wizard (Move) and the inventory (paged tables) as a web page "
                                     "without code cells, with Voila, on 127.0.0.1. Same widgets, engine and change "
                                     "records as the notebooks; the records say via app. Ctrl-C or SIGTERM stops it.",
                         epilog="examples:\n" + EXAMPLES["app"] + "\n\nexit 0 when stopped by Ctrl-C or SIGTERM; "
                                "4 with no vCenter (as every command); 2 for a port in use")
    app.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    app.add_argument("--no-browser", action="store_true", help="only print the URL; open no browser")
    app.add_argument("--reports", type=Path, help="reports directory (default: reports/ or $RUNBOOK_REPORTS)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="runbook: %(levelname)s: %(message)s")
    try:
        return _dispatch(args)
    except RunbookError as exc:
        print(f"runbook: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("runbook: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "lab":
        return _lab(args)
    if args.command == "reports":
        return _reports(args)
    if args.command == "app":
        from runbook.fronts.app import serve

        return serve(args.port, open_browser=not args.no_browser, reports_dir=args.reports,
                     say=lambda text: print(text, flush=True))
    if args.command in WAVE_REQUESTS or (args.command == "migrate" and args.plan):
        return _run_wave(_wave_request(args), args)
    cls = REQUESTS[args.command]
    request = build(cls, {p.name: getattr(args, p.name) for p in cls.params()})
    return _run(request, args)


def _wave_request(args: argparse.Namespace) -> Request:
    """The wave's request from its options; ``migrate --plan`` refuses the options of a single move."""
    cls = WAVE_REQUESTS["plan" if args.command == "migrate" else args.command]
    if args.command == "migrate":
        single = [p.flag for p in MoveRequest.params() if p.name not in {q.name for q in cls.params()}
                  and getattr(args, p.name) not in (None, False, [])]
        if single:
            raise errors.BadInput(f"--plan runs the moves its file lists: leave out {', '.join(single)} (give them "
                                  f"as columns of the plan)")
    return build(cls, {p.name: getattr(args, p.name) for p in cls.params()})


def _run_wave(request: Request, args: argparse.Namespace) -> int:
    """A wave runs in this process (one run for all its moves), its events printed as they come."""
    from runbook.engine.context import RunContext
    from runbook.engine.events import RunFinished, printer
    from runbook.engine.wave import wave

    show = printer(lambda text: print(text, flush=True))  # live through a pipe too (a scheduler, a log)

    def on_event(event: Any) -> None:
        if not args.quiet and not isinstance(event, RunFinished):
            show(event)

    result = wave(request, on_event=on_event, context=RunContext(reports_dir=args.reports, via="headless"))
    print(_last_line(result), flush=True)
    print(f"record: {result.run_dir / 'record.json' if result.run_dir else '-'}", flush=True)
    if result.report:
        print(f"report: {result.report}", flush=True)
    return result.exit_code


def _run(request: Request, args: argparse.Namespace) -> int:
    from runbook.engine.context import RunContext
    from runbook.engine.events import RunFinished, printer
    from runbook.engine.preflight import preflight

    # The names first, then the pipeline's imports (papermill, nbconvert: about a second of CPU): a refusal pays
    # for the look-up alone and never starts a kernel. Loading them on a thread during the look-up gained nothing
    # measurable for a check on two busy cores (12.0 s against 12.2 s) and cost an unknown name at 10,000 VMs
    # 0.7 s of CPU (2.39 s against 1.66 s): the thread's imports competed with the names read for the interpreter.
    preflight(request)
    from runbook.fronts.pipeline import prestart, run_notebook

    kernel = prestart()  # the names exist: the kernel boots while the run is prepared (a refusal never starts one)

    show = printer(lambda text: print(text, flush=True))  # live through a pipe too (a scheduler, a log)

    def on_event(event: Any) -> None:
        if not args.quiet and not isinstance(event, RunFinished):  # the outcome is printed from the record
            show(event)

    context = RunContext(reports_dir=args.reports, via="headless", with_code=args.with_code)
    result = run_notebook(request, context=context, on_event=on_event, kernel=kernel)
    print(_last_line(result), flush=True)
    print(f"report: {result.report or result.run_dir / 'record.json'}", flush=True)
    error = result.record.get("error") or {}
    if result.exit_code and error.get("message") and not args.quiet:
        print(f"runbook: error: {error['message']}", file=sys.stderr)
    return result.exit_code


def _last_line(result: Any) -> str:
    """The outcome as its kind says it (a check PASSED or FAILED, a move SUCCEEDED...), then the summary; the
    exit code is the record's outcome's, whatever the word."""
    from runbook.records.record import outcome_word

    word = outcome_word(str(result.record.get("kind") or ""), result.outcome)
    return f"{word}: {result.summary}".rstrip(": ")


def _reports(args: argparse.Namespace) -> int:
    from runbook.records.record import outcome_word
    from runbook.records.report import list_runs

    runs = list_runs(args.reports)
    for path, why in runs.attrs.get("skipped", []):  # one line each; a bad file never fails the listing
        print(f"runbook: skipped {path}: {why}", file=sys.stderr)
    if runs.empty:
        print("no runs yet")
        return 0
    # the run id (the run directory's name) is what `runbook undo` takes; the outcome as its kind says it
    runs.insert(0, "run", runs["report"].map(lambda path: Path(path).parent.name))
    runs["outcome"] = [outcome_word(kind, outcome) for kind, outcome in zip(runs["kind"], runs["outcome"])]
    print(runs.drop(columns=["report", "outcome_word"], errors="ignore").to_string(index=False))
    return 0


def _lab(args: argparse.Namespace) -> int:
    try:
        import runbook_lab as lab
    except ImportError:
        raise errors.LabError("the lab vCenter is not installed here: it ships with the source checkout "
                              "(make demo), not with the package") from None

    if args.lab_command == "start":
        info = lab.start(args.scenario, args.port, tls=args.tls, vms=args.vms, hosts=args.hosts)
        print(f"# lab vCenter ({info.scenario}) running at {info.url}, pid {info.pid}", file=sys.stderr)
        print(info.exports(), end="")
        return 0
    if args.lab_command == "stop":
        print("lab stopped" if lab.stop() else "no lab was running")
        return 0
    info = lab.status()
    if args.lab_command == "status":
        if info is None:
            print("no lab running (start one with: runbook lab start)")
            return 1
        print(f"lab vCenter ({info.scenario}) running at {info.url}, pid {info.pid}")
        return 0
    if info is None:
        raise errors.LabError("no lab running: start one with: runbook lab start")
    print(info.exports(), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
