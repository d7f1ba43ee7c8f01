"""One move, from plan to verified result: the steps the migration notebook, the widgets and the CLI share.

``Migration.prepare()`` reads the inventory, resolves the plan, runs the checks (and vCenter's own
verdict) and builds the spec; ``decide()`` says whether to go; ``execute()`` locks the VM, starts the
ping monitor, submits the task, follows it (re-attaching after a lost connection), stops the monitor,
verifies the VM's placement and collects the vCenter's events. Every step writes the change record.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyVmomi import vim

from runbook.domain import checks as checks_mod
from runbook.vsphere.connection import Settings, login
from runbook.errors import BadInput, ChecksFailed, OutcomeUnknown, TaskTimeout
from runbook.vsphere import devices
from runbook.vsphere.inventory import Inventory, read_inventory
from runbook.domain.plan import MigrationPlan, ResolvedPlan, resolve
from runbook.vsphere.properties import namer, retrieve_objects
from runbook.records.record import RunRecord
from runbook.domain.spec import build_relocate_spec, spec_to_dict, stub_morefs
from runbook.vsphere.task import LOST_CONNECTION, TaskOutcome, events as query_events, relogin_within, wait

log = logging.getLogger("runbook")

PLACEMENT_PATHS = ["name", "runtime.host", "resourcePool", "datastore", "config.hardware.device",
                   "config.files.vmPathName", "recentTask"]


@dataclass
class MoveOptions:
    """How to run the move. ``ping``: "auto" (the VM's guest IP), an address, or "none"."""

    timeout_s: float = 3600.0
    dry_run: bool = False
    force_reason: str = ""
    ping: str = "auto"
    ping_interval: float = 0.1
    ping_tcp_port: int = 0
    ping_tail: float = 5.0
    reconnect_s: float = 60.0
    checks: checks_mod.CheckSettings = field(default_factory=checks_mod.CheckSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise BadInput(f"timeout {self.timeout_s!r} must be a positive number of seconds")
        if not isinstance(self.ping, str) or not self.ping.strip():
            raise BadInput("ping must be 'auto', 'none' or an address")
        if self.ping_tail < 0:
            raise BadInput(f"ping tail {self.ping_tail!r} must be zero or more seconds")


def placement(si: vim.ServiceInstance, vm_moid: str) -> dict[str, Any]:
    """Where the VM is now, as the vCenter reports it (two requests: the VM, then the names it refers to)."""
    vm = vim.VirtualMachine(vm_moid, si._stub)
    found = retrieve_objects(si, [vm], {vim.VirtualMachine: PLACEMENT_PATHS})
    if vm_moid not in found:
        raise BadInput(f"VM {vm_moid} is no longer in the vCenter")
    rec = found[vm_moid]
    refs = [rec.get("runtime.host"), rec.get("resourcePool"), *(rec.get("datastore") or [])]
    for dev in rec.get("config.hardware.device") or ():
        for attr in ("datastore", "network"):
            ref = getattr(dev.backing, attr, None) if dev.backing else None
            if ref is not None:
                refs.append(ref)
    unique = {r._moId: r for r in refs if r is not None}
    names = retrieve_objects(si, list(unique.values()), {
        vim.HostSystem: ["name"], vim.ResourcePool: ["name"], vim.Datastore: ["name"], vim.Network: ["name"]})
    disks, nics, cdroms = devices.read(rec.get("config.hardware.device"), namer(names))
    path = rec.get("config.files.vmPathName") or ""
    return {
        "vm": rec.get("name"), "host": names.get(rec["runtime.host"]._moId, {}).get("name"),
        "resource_pool": names.get(rec["resourcePool"]._moId, {}).get("name") if rec.get("resourcePool") else None,
        "vm_path": path, "home_datastore": path[1:path.index("]")] if path.startswith("[") else None,
        "datastores": sorted(names.get(d._moId, {}).get("name", d._moId) for d in rec.get("datastore") or ()),
        "disks": [{k: d[k] for k in ("label", "datastore", "format", "file", "capacity_bytes")} for d in disks],
        "nics": [{k: n[k] for k in ("label", "port_group")} for n in nics],
        "cdroms": [{k: c[k] for k in ("label", "kind", "iso")} for c in cdroms],
        "recent_tasks": [t._moId for t in rec.get("recentTask") or ()],
    }


def active_relocation(si: vim.ServiceInstance, vm_moid: str) -> str | None:
    """The id of a relocation queued or running on the VM now, or None."""
    tasks = placement_tasks(si, vm_moid)
    found = retrieve_objects(si, tasks, {vim.Task: ["info.state", "info.descriptionId"]})
    for moid, rec in found.items():
        desc = (rec.get("info.descriptionId") or "").lower()
        if str(rec.get("info.state")) in ("queued", "running") and ("relocate" in desc or "migrate" in desc):
            return moid
    return None


def placement_tasks(si: vim.ServiceInstance, vm_moid: str) -> list[vim.Task]:
    vm = vim.VirtualMachine(vm_moid, si._stub)
    rec = retrieve_objects(si, [vm], {vim.VirtualMachine: ["recentTask"]}).get(vm_moid, {})
    return list(rec.get("recentTask") or [])


def verify(resolved: ResolvedPlan, after: dict[str, Any]) -> pd.DataFrame:
    """Compare what was asked with what the vCenter reports now: one row per item, ok True/False."""
    rows = []
    if resolved.target_host:
        rows.append(("host", resolved.run_host, after["host"]))
    by_label = {d["label"]: d for d in after["disks"]}
    for disk in resolved.disks:
        now = by_label.get(disk.label, {})
        rows.append((f"{disk.label} datastore", disk.target_datastore, now.get("datastore")))
        rows.append((f"{disk.label} format", disk.target_format, now.get("format")))
    if resolved.home_moves and resolved.target_datastore:
        rows.append(("VM home (configuration files)", resolved.target_datastore, after["home_datastore"]))
    nics = {n["label"]: n for n in after["nics"]}
    for nic in resolved.nic_changes:
        rows.append((f"{nic.label} port group", nic.new_port_group, nics.get(nic.label, {}).get("port_group")))
    return pd.DataFrame([{"item": i, "expected": e, "actual": a, "ok": e == a} for i, e, a in rows],
                        columns=["item", "expected", "actual", "ok"])


@contextlib.contextmanager
def vm_lock(vcenter: str, vm_moid: str) -> Iterator[None]:
    """Refuse a second run moving the same VM from this machine at the same time."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "runbook-locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{''.join(c if c.isalnum() else '_' for c in vcenter)}-{vm_moid}.lock"
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another run on this machine is moving VM {vm_moid} right now; wait for it to "
                           f"finish (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Migration:
    """One move of one VM; holds the session, the record and every intermediate result."""

    def __init__(self, si: vim.ServiceInstance, settings: Settings, plan: MigrationPlan,
                 options: MoveOptions | None = None, record: RunRecord | None = None):
        self.si, self.settings, self.plan = si, settings, plan
        self.options = options or MoveOptions()
        self.record = record
        self.inventory: Inventory | None = None
        self.resolved: ResolvedPlan | None = None
        self.checks: pd.DataFrame | None = None
        self.spec: vim.vm.RelocateSpec | None = None
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self.task_id: str | None = None
        self.task: TaskOutcome | None = None
        self.verification: pd.DataFrame | None = None
        self.events: list[dict[str, Any]] = []
        self.ping = None  # ProbeResult
        self.monitor = None  # the ProbeMonitor while execute() runs (live readouts)
        self.ping_note = ""
        self.outcome = "RUNNING"
        self.summary = ""
        self.error: BaseException | None = None

    # -- steps -------------------------------------------------------------------------------------------
    def prepare(self, inventory: Inventory | None = None) -> pd.DataFrame:
        """Read (or take) the inventory, resolve the plan, build the spec, run every check."""
        self.inventory = inventory or read_inventory(self.si)
        self.resolved = resolve(self.inventory, self.plan)
        self.spec = build_relocate_spec(self.resolved, stub_morefs(self.si._stub))
        local = checks_mod.run_checks(self.inventory, self.resolved, self.options.checks)
        verdict = checks_mod.results_frame(
            checks_mod.vcenter_verdict(self.si, self.resolved.vm_moid, self.spec, self.resolved.run_host_moid)
            if not self.resolved.already_there else [])
        self.checks = pd.concat([local, verdict], ignore_index=True)
        self.before = placement(self.si, self.resolved.vm_moid)
        self._save(plan=self.resolved.to_dict(), spec=spec_to_dict(self.spec, self.resolved.priority),
                   checks=self.checks.to_dict("records"), verdict=checks_mod.verdict(self.checks),
                   move=self.move_words(), placement={"before": self.before, "after": None},
                   force_reason=self.options.force_reason or None)
        return self.checks

    def move_words(self) -> str:
        r = self.resolved
        parts = []
        if r.target_host:
            parts.append(f"host {r.source_host} -> {r.run_host}")
        if r.target_datastore:
            parts.append(f"datastore {', '.join(r.vm_datastores)} -> {r.target_datastore}"
                         + (f" ({r.disk_format})" if r.disk_format != "same" else ""))
        for nic in r.nic_changes:
            parts.append(f"{nic.label}: {nic.old_port_group} -> {nic.new_port_group}")
        return f"{r.vm}: " + "; ".join(parts)

    def decide(self) -> str:
        """"go", "dry-run" or "already-there"; raises ChecksFailed when a check failed and no force reason."""
        failed = checks_mod.failed(self.checks)
        if self.resolved.already_there:
            self._finish("NO CHANGE", f"{self.resolved.vm} is already there: no task was started")
            return "already-there"
        if self.options.dry_run:
            self._finish("DRY RUN", f"dry run of {self.move_words()}: {checks_mod.verdict(self.checks)}; "
                                    f"nothing was changed")
            return "dry-run"
        if failed and not self.options.force_reason.strip():
            self._finish("CHECKS FAILED", f"refused: {checks_mod.verdict(self.checks)}; nothing was changed")
            raise ChecksFailed(failed)
        if failed:
            log.warning("moving despite %d failed check(s): %s", len(failed), self.options.force_reason)
        return "go"

    def execute(self, on_progress: Callable[[int, str], None] | None = None) -> str:
        """Run the move; return the outcome. Task faults and timeouts are recorded, not raised."""
        r = self.resolved
        self.error = None
        with vm_lock(self.settings.url, r.vm_moid):
            running = active_relocation(self.si, r.vm_moid)
            if running and running != self.task_id:
                raise BadInput(f"VM {r.vm} is already being moved by task {running}; wait for it to end "
                               f"(vSphere Client: Monitor > Tasks) before starting another move")
            monitor = self.monitor = self._start_ping()
            try:
                if self.task_id is None:
                    if monitor:
                        monitor.mark("task_submitted")
                    self.task_id = self._submit()
                    self._save(task={"id": self.task_id, "state": "running"})
                    log.info("submitted %s as task %s", self.move_words(), self.task_id)
                self.task, self.si = wait(self.si, self.task_id, timeout=self.options.timeout_s,
                                          on_progress=on_progress, relogin=lambda: login(self.settings),
                                          reconnect_for=self.options.reconnect_s)
            except (TaskTimeout, OutcomeUnknown) as exc:  # recorded with the outcome, not lost
                self.error = exc
            finally:
                if monitor:
                    self.ping = monitor.stop()
                    self.monitor = None
        return self._conclude()

    def _submit(self) -> str:
        """Start the relocation; if the connection breaks during the call, find out whether it started."""
        r = self.resolved
        try:
            vm = vim.VirtualMachine(r.vm_moid, self.si._stub)
            return vm.RelocateVM_Task(spec=self.spec, priority=_priority(r.priority))._moId
        except LOST_CONNECTION as exc:
            log.warning("connection lost while submitting the move (%s); looking for its task", exc)
            self.si = relogin_within(lambda: login(self.settings), "-", self.options.reconnect_s)
            running = active_relocation(self.si, r.vm_moid)
            if running:
                return running
            raise OutcomeUnknown("-", "the connection broke while the move was submitted and no running "
                                      f"relocation of {r.vm} was found: check the VM's tasks") from None

    def _start_ping(self) -> Any:
        from runbook.probes.ping import ProbeMonitor

        o, r = self.options, self.resolved
        target = o.ping.strip()
        if target.lower() == "none":
            self.ping_note = "ping not asked for (ping=none)"
            return None
        if target.lower() == "auto":
            if r.power_state != "poweredOn":
                self.ping_note = "no ping: the VM is powered off (a cold migration has no ping window)"
                return None
            row = self.inventory.vm(r.vm_moid)
            target = row["guest_ip"] or ""
            if not target:
                self.ping_note = (f"no ping: VM {r.vm} has no known guest IP (VMware Tools report none); "
                                  f"give ping=ADDRESS to measure it")
                log.warning(self.ping_note)
                return None
        monitor = ProbeMonitor(target, o.ping_interval, tcp_port=o.ping_tcp_port or None, tail=o.ping_tail)
        monitor.start()  # PingNotPermitted / BadInput here: before the move, nothing changed
        self.ping_note = f"probing {target} every {o.ping_interval * 1000:g} ms"
        return monitor

    def _conclude(self) -> str:
        r = self.resolved
        if isinstance(self.error, OutcomeUnknown):
            self._finish("UNKNOWN", str(self.error), task={"id": self.task_id, "state": "unknown"})
            return self.outcome
        try:
            self.after = placement(self.si, r.vm_moid)
        except Exception as exc:  # the record must still be written
            log.warning("could not re-read the VM after the move: %s", exc)
        task = self.task
        if task is not None and (task.queued or task.started):
            begin = (task.queued or task.started) - dt.timedelta(seconds=1)
            end = (task.completed or dt.datetime.now(dt.timezone.utc)) + dt.timedelta(seconds=1)
            with contextlib.suppress(Exception):
                self.events = query_events(self.si, vim.VirtualMachine(r.vm_moid, self.si._stub), begin, end)
        if self.after is not None:
            self.verification = verify(r, self.after)
        ping = self.ping_summary()
        values = {"placement": {"before": self.before, "after": self.after}, "events": self.events,
                  "verification": self.verification.to_dict("records") if self.verification is not None else None,
                  "task": task.to_dict() if task else {"id": self.task_id, "state": "cancelled"},
                  "ping": ping}
        if isinstance(self.error, TaskTimeout):
            self._finish("TIMED OUT", str(self.error), **values)
        elif task.state != "success":
            self._finish("FAILED", f"the vCenter task {task.id} failed: {task.fault}: {task.error}", **values)
        elif self.verification is not None and not self.verification["ok"].all():
            bad = self.verification[~self.verification["ok"]]
            self._finish("FAILED", "the task succeeded but the VM is not where asked: " + "; ".join(
                f"{row.item} is {row.actual}, expected {row.expected}" for row in bad.itertuples()), **values)
        else:
            words = f"{self.move_words()} in {task.duration_s:.1f} s"
            if ping and ping.get("description"):
                words += f"; {ping['description']}"
            self._finish("SUCCEEDED", words, **values)
        return self.outcome

    def ping_summary(self) -> dict[str, Any] | None:
        if self.ping is None:
            return {"note": self.ping_note} if self.ping_note else None
        t = self.task
        kwargs = {"task_start": t.started if t else None, "task_end": t.completed if t else None,
                  "switchover": self.switchover_time()}
        summary = self.ping.summary(**kwargs)
        summary["description"] = self.ping.describe(**kwargs)
        summary["note"] = self.ping_note
        return summary

    def switchover_time(self) -> dt.datetime | None:
        """When the VM switched hosts: the VmMigratedEvent, else the task's completion."""
        for e in self.events:
            if e["type"] in ("VmMigratedEvent", "VmRelocatedEvent"):
                return pd.Timestamp(e["time"]).to_pydatetime()
        return self.task.completed if self.task else None

    def figures(self) -> list[tuple[str, str]]:
        r, t = self.resolved, self.task
        ping = self.ping_summary() or {}
        fig = [("VM", f"{r.vm} ({r.vm_moid})"), ("From", f"{r.source_host} / {', '.join(r.vm_datastores)}"),
               ("To", f"{r.run_host} / {r.target_datastore or ', '.join(r.vm_datastores)}"
                      + (f" ({r.disk_format})" if r.disk_format != "same" else "")),
               ("Task", f"{t.id} {t.state}" if t else (self.task_id or "none started")),
               ("Duration", f"{t.duration_s:.1f} s" if t and t.duration_s is not None else "-")]
        if "probes_lost" in ping:
            fig.append(("Probes lost", f"{ping['probes_lost']} of {ping['probes_sent']}"))
            fig.append(("Longest outage", f"{ping['longest_outage_ms']:g} ms"))
        elif ping.get("note"):
            fig.append(("Ping", ping["note"]))
        if self.options.force_reason:
            fig.append(("Forced", self.options.force_reason))
        return fig

    def raise_for_outcome(self) -> None:
        """Make a headless run end with the exit code that fits the outcome."""
        from runbook.errors import TaskFailed

        if self.outcome == "TIMED OUT" and self.error:
            raise self.error
        if self.outcome == "UNKNOWN" and self.error:
            raise self.error
        if self.outcome == "FAILED":
            t = self.task
            raise TaskFailed(t.id if t else (self.task_id or "-"), t.fault if t and t.fault else "Verification",
                             t.error if t and t.error else self.summary)

    # -- record ------------------------------------------------------------------------------------------
    def _save(self, **values: Any) -> None:
        if self.record is not None:
            self.record.set(**values)

    def _finish(self, outcome: str, summary: str, **values: Any) -> None:
        self.outcome, self.summary = outcome, summary
        if self.record is not None:
            self.record.set(**values)
            self.record.finish(outcome, summary, figures=self.figures() if self.resolved else [])


def _priority(priority: str) -> str:
    from runbook.domain.spec import move_priority

    return move_priority(priority)
