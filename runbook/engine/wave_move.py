"""One VM's move inside a wave: a MoveRequest through the single-move engine, in a thread, with its own record.

The moves of a wave look their VM and targets up in the inventory the wave read once (the single move's
engine reads its own slice of the vCenter when it runs alone): the plan was made from that inventory, and
vCenter's own verdict (CheckRelocate_Task, run for each move just before it is submitted) is live.

The move prepares while others run (looks the VM up, checks it, locks it, starts its probes) and then
waits at the wave's gate, at the moment it would submit its relocation: the wave admits it when it fits
the concurrency limits, or answers that the wave stopped, and the move then ends CANCELLED having changed
nothing. The gate is the engine's ``before_submit`` hook, called in the move's own thread right before the
submission.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from runbook.domain import waveplan
from runbook.domain.concurrency import move_of
from runbook.engine.context import RunContext
from runbook.engine.events import Notice, PingSample, Step, TaskProgress
from runbook.engine.interrupt import Interrupted
from runbook.engine.requests import MoveRequest
from runbook.engine.result import RunResult
from runbook.engine.wave_events import VmProgress
from runbook.records.rundir import safe_name


class VmMove:
    """One VM's move: its request, its record's directory (``moves/NNN-vm`` under the wave's), its thread,
    and where it stands against the wave's limits (``holding`` from its admission to its task's end)."""

    def __init__(self, wave: Any, row: waveplan.Row, number: int):
        self.row, self.move = row, move_of(row.to_dict())
        self.cancel = threading.Event()
        self.result: RunResult | None = None
        self.slot_start: dt.datetime | None = None
        self.slot_end: dt.datetime | None = None
        self.number = number
        self.holding = False  # counted against the limits from its admission until its task ends
        self.admitted: bool | None = None  # the wave's answer at the gate: True submit, False stop there
        self.gate = threading.Event()
        self.vm_pending = True  # until the wave has handled its end
        self.refusal: BaseException | None = None
        req = wave.request
        self.request = MoveRequest(vm=row.vm_moid or row.vm, target_host=row.target_host or "",
                                   target_datastore=row.target_datastore or "", disk_format=row.disk_format,
                                   network_map=dict(row.network_map), priority=req.priority, timeout_s=req.timeout_s,
                                   ping=req.ping, ping_interval=req.ping_interval, ping_tcp_port=req.ping_tcp_port,
                                   ping_tail=req.ping_tail, change_id=req.change_id)
        self.percent = 0
        self.probes: tuple[int | None, int | None] = (None, None)  # sent, lost so far
        self.ready_at: dt.datetime | None = None  # when it reached the gate, prepared
        self.run_dir = wave.run_dir / "moves" / f"{number:03d}-{safe_name(row.vm) or 'vm'}" if wave.run_dir else None
        self.context = RunContext(run_dir=self.run_dir, via=wave.context.via, record=wave.context.record,
                                  report=False)
        self.wave = wave
        self.thread = threading.Thread(target=self._run, name=f"runbook-wave-{number}", daemon=True)

    def _run(self) -> None:
        # the single move's engine with the wave's inventory and session: no read or login per VM
        from runbook.engine.relocation import migrate

        try:
            self.result = migrate(self.request, on_event=self._sink, context=self.context,
                                  settings=self.wave.settings, cancel=self.cancel, before_submit=self._gate,
                                  inventory=self.wave.inventory, session=self.wave.si)
        except BaseException as exc:  # a refusal before its record existed (a VM gone since the plan...)
            self.wave.inbox.put(("refused", self, exc))
        finally:
            self.wave.inbox.put(("done", self, None))

    def _gate(self) -> None:
        """Right before the submission, in the move's thread: the move prepared (looked up, checked, locked the
        VM, started its probes) while others ran, and it submits only when the wave admits it within the
        limits; a wave that stops answers with Interrupted, so the move ends CANCELLED with nothing changed."""
        self.ready_at = dt.datetime.now(dt.timezone.utc)
        self.wave.inbox.put(("ready", self, None))
        while not self.gate.wait(0.2):
            if self.cancel.is_set():
                raise Interrupted("the wave was interrupted before this move was submitted")
        if not self.admitted:
            raise Interrupted("the wave stopped before this move was submitted")

    def _sink(self, event: Any) -> None:
        """The move's events, in its thread: its task's start and end, and its warnings, for the wave; its
        progress and probes as the wave's VmProgress (live tables)."""
        if isinstance(event, Step) and event.name == "task":
            self.wave.inbox.put(("task " + event.state, self, event))
        elif isinstance(event, TaskProgress):
            self.percent = event.percent
            self.wave.emit(VmProgress(vm=self.row.vm, percent=event.percent, probes_sent=self.probes[0],
                                      probes_lost=self.probes[1]))
        elif isinstance(event, PingSample) and self.holding:
            self.probes = (event.sent, event.lost)
            self.wave.emit(VmProgress(vm=self.row.vm, percent=self.percent, probes_sent=event.sent,
                                      probes_lost=event.lost))
        elif isinstance(event, Notice) and event.level == "warning":
            self.wave.emit(Notice("warning", f"{self.row.vm}: {event.text}"))
