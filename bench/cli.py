"""Command-line benchmark: what an operator waits for, at 12 VMs and at 10,000 VMs, against the floor of the
design's own tools, all measured in one run on this machine.

Rows (median wall seconds of ``--repeat`` runs, after one warm-up):

- ``help``: ``runbook --help``;
- ``argument error``: ``runbook migrate --vm X --host Y --timeout nan`` (refused by the CLI alone);
- ``unknown VM``: ``runbook check --vm no-such-vm --host H`` (refused by the in-process look-up);
- ``check``: ``runbook check`` of one VM to another host;
- ``migrate --dry-run``;
- ``migrate, own part``: ``runbook migrate`` with ``--ping-tail 0`` minus the vCenter task's own duration (from
  its record), i.e. the runbook's own time around a move;
- ``floor``: papermill executing a one-cell notebook, then ``jupyter nbconvert --to html`` on it (two
  processes), the floor the issue compares ``check`` (floor + 2 s) and ``migrate`` (floor + 3 s) against.

Labs: the ``default`` scenario (12 VMs) and a ``scale`` lab (``--vms``, default 10,000 on VMs/32 hosts),
each started for the run and stopped after; each row is timed at both sizes in turns (the ratio is the median
of the paired runs, so a change of the machine's load hits both sizes alike). Usage: ``.venv/bin/python bench/cli.py [--vms 10000] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import runbook_lab as lab_mod  # noqa: E402

RUNBOOK = str(Path(sys.executable).with_name("runbook"))
GOALS = {"help": "<= 0.3 s", "argument error": "<= 0.5 s", "unknown VM": "<= 2 s", "check": "<= floor + 2 s",
         "migrate --dry-run": "", "migrate, own part": "<= floor + 3 s"}


def _env(info: lab_mod.LabInfo, reports: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVC_")}
    env.update(GOVC_URL=info.url, GOVC_USERNAME=info.username, GOVC_PASSWORD=info.password,
               RUNBOOK_REPORTS=str(reports), RUNBOOK_LAB_DIR=str(reports / "no-lab"))
    return env


def _time(argv: list[str], env: dict[str, str], expect: int | None = 0, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd, timeout=900)
    took = time.perf_counter() - start
    if expect is not None and done.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return took


def _median(fn, repeat: int) -> float:
    fn()  # warm-up: page cache, the lab's first replies
    return statistics.median(fn() for _ in range(repeat))


def _last_task_s(reports: Path) -> float:
    newest = max(reports.glob("*/*/record.json"), key=lambda p: p.stat().st_mtime)
    return float(json.loads(newest.read_text())["task"]["duration_s"])


def _floor(repeat: int, work: Path) -> float:
    nb = work / "one.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "id": "c", "metadata": {},
                                         "outputs": [], "source": ["1 + 1"]}],
                              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"}},
                              "nbformat": 4, "nbformat_minor": 5}))
    papermill = str(Path(sys.executable).with_name("papermill"))
    jupyter = str(Path(sys.executable).with_name("jupyter"))

    def once() -> float:
        a = _time([papermill, str(nb), str(work / "out.ipynb"), "--no-progress-bar"], dict(os.environ))
        b = _time([jupyter, "nbconvert", "--to", "html", str(work / "out.ipynb")], dict(os.environ))
        return a + b

    return _median(once, repeat)


def _commands(info: lab_mod.LabInfo, vm: str, target: str, work: Path) -> dict:
    """Each row's timed run against one lab: a function giving its seconds."""
    reports = work / f"reports-{info.port}"
    env = _env(info, reports)
    control = lab_mod.LabControl(info)
    control.set_migration_seconds(None, 1.0)
    hosts = [control.placement(vm)["host"], target]

    def move() -> float:
        here = control.placement(vm)["host"]
        there = hosts[1] if here == hosts[0] else hosts[0]
        took = _time([RUNBOOK, "migrate", "--vm", vm, "--host", there, "--ping", "none", "--ping-tail", "0", "-q"],
                     env)
        return took - _last_task_s(reports)

    return {
        "help": lambda: _time([RUNBOOK, "--help"], env),
        "argument error": lambda: _time([RUNBOOK, "migrate", "--vm", vm, "--host", target, "--timeout", "nan"], env,
                                        expect=2),
        "unknown VM": lambda: _time([RUNBOOK, "check", "--vm", "no-such-vm", "--host", target], env, expect=2),
        "check": lambda: _time([RUNBOOK, "check", "--vm", vm, "--host", target, "-q"], env),
        "migrate --dry-run": lambda: _time([RUNBOOK, "migrate", "--vm", vm, "--host", target, "--dry-run", "-q"],
                                           env),
        "migrate, own part": move,
    }


def _paired(small: dict, big: dict, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Each row timed at both sizes in turns (small, big, small, big...: a change of the machine's load hits
    both), after a warm-up of each: (median small, median big, median of the big / small ratios)."""
    rows = {}
    for what in small:
        small[what](), big[what]()
        pairs = [(small[what](), big[what]()) for _ in range(repeat)]
        rows[what] = (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
                      statistics.median(b / a for a, b in pairs))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=10_000, help="VMs in the scale lab (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per row, after one warm-up")
    parser.add_argument("--scale-lab", type=Path, metavar="STATE_DIR",
                        help="use the scale lab already running from this state directory (its VM count is "
                             "taken from it) instead of starting one")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="runbook-bench-cli-"))
    try:
        floor = _floor(args.repeat, work)
        with contextlib.ExitStack() as stack:
            small = stack.enter_context(_lab(work / "lab-small", "default"))
            started = time.perf_counter()
            if args.scale_lab:
                big = lab_mod.status(args.scale_lab)
                if big is None:
                    raise SystemExit(f"no lab runs from {args.scale_lab}")
                vms = len(json.loads((args.scale_lab / "scenario.json").read_text()).get("vms", [])) or args.vms
            else:
                vms = args.vms
                big = stack.enter_context(_lab(work / "lab-big", "scale", vms=vms, hosts=max(1, vms // 32)))
                print(f"scale lab of {vms} VMs started in {time.perf_counter() - started:.0f} s", flush=True)
            rows = _paired(_commands(small, "web-01", "esx-03.lab.local", work),
                           _commands(big, "vm-00001", "esx-0002.lab.local", work), args.repeat)
            floor_after = _floor(1, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nfloor (papermill one cell + nbconvert --to html): {floor:.2f} s before the rows, "
          f"{floor_after:.2f} s after\n")
    print(f"| what | 12 VMs | {vms:,} VMs | ratio (median of paired runs) | goal |")
    print("|---|---|---|---|---|")
    for what, (a, b, ratio) in rows.items():
        print(f"| {what} | {a:.2f} | {b:.2f} | {ratio:.2f}x | {GOALS.get(what, '')} |")
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


class _lab:
    def __init__(self, state: Path, scenario: str, **kwargs: int):
        self.state, self.scenario, self.kwargs = state, scenario, kwargs

    def __enter__(self) -> lab_mod.LabInfo:
        return lab_mod.start(self.scenario, state_dir=self.state, **self.kwargs)

    def __exit__(self, *exc: object) -> None:
        lab_mod.stop(self.state)


if __name__ == "__main__":
    sys.exit(main())
