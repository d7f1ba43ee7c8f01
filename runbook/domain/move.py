"""What one move has found and done so far: plain data the engine fills and every front reads.

:class:`MoveState` holds the resolved plan, the checks, the spec, the placement before and after, the
task, the probes and the vCenter's events, and derives the words and figures a person reads (the move
in one line, the ping summary, the key figures of the record). It does no I/O: the engine
(:mod:`runbook.engine.relocation`) does the steps.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from runbook.domain.plan import ResolvedPlan
from runbook.vsphere.find import display_name as _n


@dataclass
class MoveState:
    resolved: ResolvedPlan
    spec: Any = None
    checks: pd.DataFrame | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    task_id: str | None = None
    task: Any = None  # vsphere.task.TaskOutcome
    verification: pd.DataFrame | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    ping: Any = None  # probes.ping.ProbeResult
    ping_note: str = ""
    force_reason: str = ""
    outcome: str = "RUNNING"
    summary: str = ""

    def move_words(self) -> str:
        """``app-01: host esx-01 -> esx-02; datastore ds1 -> ds2 (thin); Hard disk 2 (app-01_1.vmdk) nfs-01 ->
        nfs-02 (thin)``, with names as the operator wrote them (vCenter's ``a%2fb`` is ``a/b``)."""
        r = self.resolved
        parts = []
        if r.target_host:
            parts.append(f"host {_n(r.source_host)} -> {_n(r.run_host)}")
        if r.target_datastore:
            parts.append(f"datastore {', '.join(map(_n, r.vm_datastores))} -> {_n(r.target_datastore)}"
                         + (f" ({r.disk_format})" if r.disk_format != "same" else ""))
        for disk in r.placed_disks:
            parts.append(f"{disk.name} {_n(disk.source_datastore)} -> {_n(disk.target_datastore)}"
                         + (f" ({disk.target_format})" if disk.format_changes else ""))
        for nic in r.nic_changes:
            parts.append(f"{nic.label}: {_n(nic.old_port_group)} -> {_n(nic.new_port_group)}")
        return f"{_n(r.vm)}: " + "; ".join(parts)

    def switchover_time(self) -> dt.datetime | None:
        """When the VM switched hosts: the VmMigratedEvent, else the task's completion."""
        for e in self.events:
            if e["type"] in ("VmMigratedEvent", "VmRelocatedEvent"):
                return pd.Timestamp(e["time"]).to_pydatetime()
        return self.task.completed if self.task else None

    def ping_window(self) -> dict[str, Any]:
        t = self.task
        return {"task_start": t.started if t else None, "task_end": t.completed if t else None,
                "switchover": self.switchover_time()}

    def ping_summary(self) -> dict[str, Any] | None:
        if self.ping is None:
            return {"note": self.ping_note} if self.ping_note else None
        window = self.ping_window()
        summary = self.ping.summary(**window)
        summary["description"] = self.ping.describe(**window)
        summary["note"] = self.ping_note
        return summary

    def ping_chart(self) -> Any:
        """The probes through the move as a matplotlib Figure (None without probes)."""
        if self.ping is None:
            return None
        t = self.task
        return self.ping.plot(task_start=t.started if t else None, task_end=t.completed if t else None,
                              switchover=self.switchover_time(), events=[(e["time"], e["type"]) for e in self.events])

    def figures(self) -> list[tuple[str, str]]:
        """The key figures under the record's banner."""
        r, t = self.resolved, self.task
        ping = self.ping_summary() or {}
        stores = sorted({d.target_datastore for d in r.disks} | {r.target_datastore or r.home_datastore} - {""})
        fig = [("VM", f"{_n(r.vm)} ({r.vm_moid})"),
               ("From", f"{_n(r.source_host)} / {', '.join(map(_n, r.vm_datastores))}"),
               ("To", f"{_n(r.run_host)} / {', '.join(map(_n, stores)) or ', '.join(map(_n, r.vm_datastores))}"
                      + (f" ({r.disk_format})" if r.disk_format != "same" else "")),
               ("Task", f"{t.id} {t.state}" if t else (self.task_id or "none started")),
               ("Duration", f"{t.duration_s:.1f} s" if t and t.duration_s is not None else "-")]
        if "probes_lost" in ping:
            fig.append(("Probes lost", f"{ping['probes_lost']} of {ping['probes_sent']}"))
            if ping.get("probes_late") is not None:
                fig.append(("Probes late", f"{ping['probes_late']} (after {ping.get('late_after_ms', 0):.0f} ms)"))
            fig.append(("Longest outage", f"{ping['longest_outage_ms']:.0f} ms"))
        elif ping.get("note"):
            fig.append(("Ping", ping["note"]))
        if self.force_reason:
            fig.append(("Forced", self.force_reason))
        return fig
