"""Wave benchmark: an evacuation of the lab's busy host against the ideal the limits allow, and moves one by one.

    .venv/bin/python bench/wave.py                       # evacuate esx-01 of the `evacuate` lab (44 VMs)
    .venv/bin/python bench/wave.py --ping auto --sequential 8 --seconds 1

Starts an `evacuate` lab (always stopped), sets every move to ``--seconds``, and runs
``runbook.wave(EvacuateRequest(host=esx-01))``. Reported, from the wave's record (the vCenter's task times):

* wall: first task start to last task end; ideal: the makespan the limits allow for those task times, here
  the canary's task (it moves alone, by the issue's rule) and, when probing, its ping tail (its outage is
  known only then), plus ``max(longest other task, sum of the other
  task times / vMotions allowed on the source host)`` (every move leaves the same host, so the source's
  vMotion budget binds; a lower bound: no schedule does better); the issue's goal is wall <= 1.15 x ideal;
* the time before the record: logging in and reading the inventory, then planning (every row's checks); the
  records' validator (jsonschema, built once per process at the first record's save) is shown apart;
* the runbook's own time per VM beyond the vCenter's tasks: the whole run (from the record's start to its end)
  less the ideal, divided by the VMs: goal <= 0.5 s; and its CPU time per VM;
* each VM's own elapsed run beyond its task (the VM's whole run less its task time, less the time it waited at
  the gate for room within the limits, less the ping tail when probing): its steps' latency, which overlaps
  the other moves (a VM's checks run while others move), so it is not what the VM adds to the wave;
* sequential: ``--sequential`` of the moved VMs moved back one by one with ``runbook.migrate()``, the time
  per VM, and the whole host at that pace.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runbook  # noqa: E402
import runbook_lab as lab_mod  # noqa: E402
from runbook.engine.context import RunContext  # noqa: E402
from runbook.records import record as rec_mod  # noqa: E402
from runbook.vsphere.connection import Settings  # noqa: E402

HOST = "esx-01.lab.local"


def _when(text: str):
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=0.0,
                      help="duration of every move in the lab (0: the scenario's, memory copied at 1 GiB/s)")
    args.add_argument("--ping", default="none", help="none or auto (probe every VM through its move)")
    args.add_argument("--sequential", type=int, default=6, help="VMs moved back one by one for comparison")
    opts = args.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-wave-") as tmp:
        info = lab_mod.start("evacuate", state_dir=Path(tmp) / "lab")
        try:
            if opts.seconds:
                lab_mod.LabControl(info).set_migration_seconds(None, opts.seconds)
            settings = Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                                password=info.password)
            context = RunContext(reports_dir=Path(tmp) / "reports", report=False)
            steps: dict[str, float] = {}  # when the wave's first steps started and ended (monotonic)

            def on_event(event) -> None:
                kind = type(event).__name__
                if kind == "RunStarted" or (kind == "Step" and event.name in ("resolve", "plan")):
                    steps.setdefault(kind if kind == "RunStarted" else f"{event.name} {event.state}", time.monotonic())

            # the records' validator (jsonschema), built before the clock starts and shown apart: a one-off cost
            # of the process (the first record's save builds it), not of the wave
            imported = time.process_time()
            rec_mod._validator()
            import_s = time.process_time() - imported
            began, cpu = time.monotonic(), time.process_time()
            result = runbook.wave(runbook.EvacuateRequest(host=HOST, ping=opts.ping), settings=settings,
                                  context=context, on_event=on_event)
            run_s, cpu_s = time.monotonic() - began, time.process_time() - cpu
            first = min(_when(m["started"]) for m in result.record["moves"] if m["started"])
            last = max(_when(m["completed"]) for m in result.record["moves"] if m["completed"])
            before_s = (first - _when(result.record["started"])).total_seconds()
            after_s = (_when(result.record["ended"]) - last).total_seconds()
            moves = [m for m in result.record["moves"] if m["status"] == "moved"]
            tasks = [m["task_s"] for m in moves]
            wall = (max(_when(m["completed"]) for m in moves) - min(_when(m["started"]) for m in moves)).total_seconds()
            allowed = result.record["wave"]["limits"]["vmotions_per_host"][HOST]
            canary = next(m["task_s"] for m in moves if m["vm"] == result.record["wave"]["canary"])
            rest = list(tasks)
            rest.remove(canary)
            tail = result.record["parameters"]["ping_tail"] if opts.ping != "none" else 0.0
            # the canary's outage is known once its probes' tail ends: only then may the others start
            ideal = canary + tail + max(max(rest, default=0), sum(rest) / allowed)
            own = [m["duration_s"] - m["task_s"] - (m["gate_s"] or 0) - tail for m in moves]
            seq = []
            for m in moves[:opts.sequential]:
                t = time.monotonic()
                back = runbook.migrate(runbook.MoveRequest(vm=m["vm"], target_host=HOST, ping=opts.ping),
                                       settings=settings, context=context)
                assert back.outcome == "SUCCEEDED", back.summary
                seq.append(time.monotonic() - t)
        finally:
            lab_mod.stop(Path(tmp) / "lab")
    if result.outcome != "SUCCEEDED":
        print(f"the wave did not succeed: {result.summary}")
        for m in result.record["moves"]:
            if m["status"] != "moved":
                print(f"  {m['vm']}: {m['status']} {m.get('note') or ''}")
    print(f"wave: {result.outcome}, {len(moves)} VMs moved off {HOST}, {allowed} vMotions allowed at once, "
          f"moves of {f'{opts.seconds:g} s' if opts.seconds else 'the scenario (memory at 1 GiB/s)'}, "
          f"task times {min(tasks):.1f} to {max(tasks):.1f} s ({sum(tasks):.1f} s in all), ping {opts.ping}; "
          f"load average before/after {load[0]:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  wall (first task start to last end) {wall:.1f} s; ideal for these tasks {ideal:.1f} s; "
          f"ratio {wall / ideal:.2f} (goal <= 1.15)")
    print(f"  before the record: {steps['plan started'] - began:.1f} s logging in and reading the inventory, "
          f"{steps['RunStarted'] - steps['plan started']:.1f} s planning ({len(result.record['plan_table'])} rows "
          f"checked) and starting the record; not counted: building the records' validator (jsonschema), "
          f"{import_s:.1f} s CPU once per process")
    print(f"  the whole run {run_s:.1f} s: {before_s:.1f} s from the record's start to the first task (plan, "
          f"canary's checks), {after_s:.1f} s after the last task (its verification, the record, the timeline)")
    print(f"  the runbook's own time per VM, beyond the vCenter's tasks (the whole run less the ideal, per VM): "
          f"{(run_s - ideal) / len(moves):.2f} s (goal <= 0.5 s); its CPU time {cpu_s / len(moves):.2f} s per VM")
    print(f"  each VM's own run beyond its task and its wait at the gate (elapsed, overlapping the other moves, "
          f"threads sharing the CPU): median {statistics.median(own):.2f} s, max {max(own):.2f} s")
    if seq:
        each = statistics.mean(seq)
        print(f"  sequential, one migrate() at a time: {each:.2f} s per VM, {each * len(moves):.1f} s for "
              f"{len(moves)} VMs (the wave: {run_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
