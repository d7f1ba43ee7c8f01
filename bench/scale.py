"""vCenter's maximum: ``runbook inventory`` of 45,000 VMs on 2,500 hosts, end to end, and where its time goes.

    .venv/bin/python bench/scale.py                          # starts a scale lab (minutes), stops it after
    .venv/bin/python bench/scale.py --lab-dir DIR            # a scale lab already running from DIR
    .venv/bin/python bench/scale.py --vms 10000 --hosts 312

Measured, in one run:

- ``read_inventory`` in this process: wall and CPU seconds, peak RSS (sampled every 50 ms);
- ``runbook inventory`` as an operator runs it: wall seconds end to end and the peak RSS of its largest
  process (the kernel: ``ru_maxrss`` of the waited-for children), then from the executed notebook the
  seconds of each cell (papermill's timings) and what is left, split by the run's own timestamps: before the
  notebook's first cell (the CLI's imports, login, the kernel's start), papermill's run, the report's render and
  the index's rebuild (file times).

The goals (issue 15): at most 30 s end to end on this 2-core machine, client peak memory at most 2 GB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import runbook_lab as lab_mod  # noqa: E402

RUNBOOK = str(Path(sys.executable).with_name("runbook"))


def _rss_peak(stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        with open("/proc/self/statm") as f:
            peak[0] = max(peak[0], int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
        time.sleep(0.05)


def read_in_process(info: lab_mod.LabInfo) -> dict:
    from runbook.vsphere.connection import Settings, login, logout
    from runbook.vsphere.inventory import read_inventory

    si = login(Settings(host=info.host, port=info.port, scheme=info.url.split(":")[0], username=info.username,
                        password=info.password, timeout=900))
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_rss_peak, args=(stop, peak), daemon=True)
    watcher.start()
    try:
        t, c = time.perf_counter(), _client_cpu()
        inv = read_inventory(si)
        wall, cpu = time.perf_counter() - t, _client_cpu() - c
    finally:
        stop.set()
        logout(si)
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the read's child, reaped
    return {"wall": wall, "cpu": cpu, "peak_mb": peak[0] / 2**20, "child_mb": child_mb, "vms": len(inv.vms),
            "hosts": len(inv.hosts)}


def run_cli(info: lab_mod.LabInfo, work: Path) -> dict:
    reports = work / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVC_", "RUNBOOK_"))}
    env.update(GOVC_URL=info.url, GOVC_USERNAME=info.username, GOVC_PASSWORD=info.password,
               RUNBOOK_REPORTS=str(reports), RUNBOOK_LAB_DIR=str(work / "no-lab"), RUNBOOK_TIMEOUT="900")
    t, started = time.perf_counter(), time.time()
    done = subprocess.run([RUNBOOK, "inventory", "-q"], env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode:
        raise SystemExit(f"runbook inventory exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    run_dir = max(reports.glob("*/*/record.json"), key=lambda p: p.stat().st_mtime).parent
    cells = []
    ran = json.loads((run_dir / "run.ipynb").read_text())
    meta = ran["metadata"]["papermill"]
    first, last = (dt.datetime.fromisoformat(meta[k]).timestamp() for k in ("start_time", "end_time"))
    report, index = (run_dir / "report.html").stat().st_mtime, (reports / "index.html").stat().st_mtime
    phases = {"before papermill starts (CLI imports, login, kernel launched)": first - started,
              "papermill: kernel boot awaited, cells, notebook written": last - first,
              "report.html rendered": report - last, "index.html rebuilt": index - report,
              "after (exit)": started + wall - index}
    for cell in ran["cells"]:
        took = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell["cell_type"] == "code" and took:
            cells.append((float(took), "".join(cell["source"]).strip().splitlines()[-1][:70]))
    sizes = {p.name: p.stat().st_size for p in run_dir.iterdir() if p.is_file()}
    return {"wall": wall, "peak_mb": peak, "cells": cells, "sizes": sizes, "phases": phases}


def _client_cpu() -> float:
    """CPU seconds of this process and of its reaped children (the read's forked child, runbook/vsphere/forked.py)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=45_000)
    parser.add_argument("--hosts", type=int, default=2_500)
    parser.add_argument("--lab-dir", type=Path, help="a scale lab already running from this state directory")
    parser.add_argument("--cli-only", action="store_true", help="time only `runbook inventory`, not the read alone")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="runbook-bench-scale-"))
    state = args.lab_dir or work / "lab"
    try:
        if args.lab_dir:
            info = lab_mod.status(args.lab_dir)
            if info is None:
                raise SystemExit(f"no lab runs from {args.lab_dir}")
        else:
            t = time.perf_counter()
            info = lab_mod.start("scale", state_dir=state, vms=args.vms, hosts=args.hosts)
            print(f"scale lab of {args.vms:,} VMs on {args.hosts:,} hosts started in {time.perf_counter() - t:.0f} s",
                  flush=True)
        read = read_in_process(info) if not args.cli_only else None
        if read:
            print(f"read_inventory in process: {read['wall']:.1f} s wall, {read['cpu']:.1f} s CPU (its forked child's "
                  f"included), peak RSS {read['peak_mb']:.0f} MB (its child: {read['child_mb']:.0f} MB; "
                  f"{read['vms']:,} VMs, {read['hosts']:,} hosts)", flush=True)
        cli = run_cli(info, work)
    finally:
        if not args.lab_dir:
            lab_mod.stop(state)
        shutil.rmtree(work, ignore_errors=True)
    in_cells = sum(t for t, _ in cli["cells"])
    print(f"\n| what | seconds |\n|---|---|\n| `runbook inventory` end to end (goal <= 30 s) | {cli['wall']:.1f} |")
    for took, line in cli["cells"]:
        print(f"| cell `{line}` | {took:.1f} |")
    print(f"| outside the cells (start, kernel, report, index) | {cli['wall'] - in_cells:.1f} |")
    print("\n| phase (from the run's timestamps) | seconds |\n|---|---|")
    for what, took in cli["phases"].items():
        print(f"| {what} | {took:.1f} |")
    print(f"\npeak RSS of its largest process (goal <= 2048 MB): {cli['peak_mb']:.0f} MB")
    print("run directory: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(cli["sizes"].items())))
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
