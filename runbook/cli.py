"""The ``runbook`` command: a thin layer that turns options into one library call each.

Connection settings come from govc's environment variables (GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD,
GOVC_INSECURE, GOVC_TLS_CA_CERTS); with none set, the lab vCenter is used.
"""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, errors
from .errors import RunbookError

EXIT_CODES = textwrap.dedent("""\
    exit codes:
      0  succeeded (also: dry run, nothing to do)
      1  the move or the run failed (task fault, notebook error)
      2  refused: bad input or a failed check; nothing was changed
      3  timed out or cancelled (the vCenter task was cancelled)
      4  no vCenter, unreachable, wrong credentials or untrusted certificate
      5  outcome unknown: a task was started and could not be followed (see its id)
    """)


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
                         epilog="example:\n  eval \"$(runbook lab start --scenario prereq-failures)\"",
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

    def run_options(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--change-id", help="change ticket: names the run directory and goes in the record")
        cmd.add_argument("--with-code", action="store_true", help="show the code cells in the HTML report")
        cmd.add_argument("--reports", type=Path, help="reports directory (default: reports/ or $RUNBOOK_REPORTS)")

    inv = sub.add_parser("inventory", help="inventory the vCenter into an HTML report",
                         epilog="example:\n  runbook inventory --cluster Cluster-A",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    inv.add_argument("--datacenter", help="only this datacenter")
    inv.add_argument("--cluster", help="only this cluster")
    run_options(inv)

    def move_options(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--vm", required=True, help="VM name or moid")
        cmd.add_argument("--host", help="target host (name or moid)")
        cmd.add_argument("--datastore", help="target datastore (name or moid)")
        cmd.add_argument("--disk-format", default="same", help="same, thin, thick or eagerzeroedthick")
        cmd.add_argument("--network", action="append", default=[], metavar="OLD=NEW",
                         help="put NICs on port group OLD onto NEW on the target host (repeatable)")
        cmd.add_argument("--pool", help="target resource pool (name or moid)")
        run_options(cmd)

    check = sub.add_parser("check", help="check every prerequisite of a move; change nothing",
                           epilog="example:\n  runbook check --vm app-01 --host esx-02.lab\n\n"
                                  "exit 0 when nothing failed (warnings allowed), 2 when a check failed",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    move_options(check)

    mig = sub.add_parser("migrate", help="move a running VM to another host and/or datastore",
                         epilog="examples:\n  runbook migrate --vm app-01 --host esx-02.lab\n"
                                "  runbook migrate --vm app-01 --datastore nfs-02 --disk-format thick --dry-run\n\n"
                                + EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    move_options(mig)
    mig.add_argument("--priority", default="default", help="default, high or low")
    mig.add_argument("--dry-run", action="store_true", help="show plan, spec and checks; change nothing")
    mig.add_argument("--force-reason", help="move despite failed checks; the reason goes in the record")
    mig.add_argument("--timeout", type=float, default=3600, help="seconds before the task is cancelled")
    mig.add_argument("--ping", default="auto", help="auto (the VM's guest IP), an address, or none")
    mig.add_argument("--ping-interval", type=float, default=0.1, help="seconds between probes (>= 0.01)")
    mig.add_argument("--ping-tcp-port", type=int, help="probe this TCP port where ICMP is not permitted")
    mig.add_argument("--ping-tail", type=float, default=5.0, help="seconds to keep probing after the task")

    env = sub.add_parser("enable-vmotion", help="enable vMotion on a VMkernel adapter of hosts",
                         epilog="example:\n  runbook enable-vmotion --host esx-04.lab            # dry run\n"
                                "  runbook enable-vmotion --host esx-04.lab --apply",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    target = env.add_mutually_exclusive_group(required=True)
    target.add_argument("--cluster", help="every host of this cluster")
    target.add_argument("--host", action="append", dest="hosts", metavar="HOST", help="a host (repeatable)")
    env.add_argument("--vmk", default="", help="adapter to use (default: the management adapter)")
    env.add_argument("--disable", action="store_true", help="disable vMotion on the adapter instead")
    env.add_argument("--apply", action="store_true", help="make the change (default: dry run)")
    run_options(env)

    rep = sub.add_parser("reports", help="list the change records under reports/")
    rep.add_argument("--reports", type=Path, help="reports directory")
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
    if args.command == "inventory":
        return _run("inventory", {"datacenter": args.datacenter or "", "cluster": args.cluster or ""}, args)
    if args.command in ("check", "migrate"):
        params: dict[str, Any] = {"vm": args.vm, "target_host": args.host or "",
                                  "target_datastore": args.datastore or "", "disk_format": args.disk_format,
                                  "network_map": _network_map(args.network), "resource_pool": args.pool or ""}
        if args.command == "migrate":
            params.update(priority=args.priority, dry_run=args.dry_run, force_reason=args.force_reason or "",
                          timeout_s=float(args.timeout), ping=args.ping, ping_interval=float(args.ping_interval),
                          ping_tcp_port=int(args.ping_tcp_port or 0), ping_tail=float(args.ping_tail))
        return _run(args.command, params, args)
    if args.command == "enable-vmotion":
        return _run("enable-vmotion", {"cluster": args.cluster or "", "hosts": list(args.hosts or []),
                                       "vmk": args.vmk, "apply": args.apply, "disable": args.disable}, args)
    raise AssertionError(args.command)


def _network_map(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise errors.BadInput(f"--network {pair!r} is not OLD=NEW (port group names on both sides)")
        result[old.strip()] = new.strip()
    return result


def _run(kind: str, params: dict[str, Any], args: argparse.Namespace) -> int:
    from .pipeline import run_notebook

    result = run_notebook(kind, params, change_id=args.change_id, with_code=args.with_code,
                          reports_dir=args.reports)
    data = result.record
    if data.get("checks"):
        _print_checks(data["checks"])
    line = f"{data.get('outcome')}: {data.get('summary', '')}".rstrip(": ")
    print(line)
    print(f"report: {result.html}")
    if result.exit_code and data.get("error"):
        print(f"runbook: error: {data['error']['message']}", file=sys.stderr)
    return result.exit_code


def _print_checks(checks: list[dict[str, str]]) -> None:
    width = max(len(c["check"]) for c in checks)
    for c in checks:
        print(f"  {c['status'].upper():<5} {c['check']:<{width}}  {c['found']}")
        if c["status"] in ("fail", "warn") and c.get("remedy"):
            print(f"  {'':<5} {'':<{width}}  remedy: {c['remedy']}")


def _reports(args: argparse.Namespace) -> int:
    from .report import list_runs

    runs = list_runs(args.reports)
    if runs.empty:
        print("no runs yet")
        return 0
    print(runs.drop(columns=["report"]).to_string(index=False))
    return 0


def _lab(args: argparse.Namespace) -> int:
    from . import lab

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
