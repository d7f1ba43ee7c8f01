"""The engine's wave: many moves as one change, one run, one record (issue 18).

``wave(request)`` reads the inventory in bulk, plans (:mod:`runbook.domain.waveplan`: evacuate, drain,
a plan file, an undo), emits and records the plan table, and refuses to start while a row fails (unless
``skip_failing``); a dry run stops there. Then one VM moves alone (the canary) and the rest follow, as
many at once as vCenter's concurrent migration limits allow (:mod:`runbook.domain.concurrency`: a move
starts only when it fits beside the running ones, so the queue stays full without ever going over).
Each VM's move is a :func:`runbook.engine.relocation.migrate` in a thread of its own, with its own
record under the wave's run directory (``moves/NNN-vm/record.json``), linked from the wave's record.

Stop rules: the first move that does not succeed, an outage longer than ``max_outage``, SIGINT or SIGTERM,
or ``cancel``: running moves finish, nothing new starts, and the record says which rule fired. A second
signal cancels the running tasks too. An evacuation with ``maintenance`` puts the emptied host in
maintenance mode at the end.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim

from runbook.domain import planfile, waveplan
from runbook.domain.checks import FAIL
from runbook.domain.concurrency import Limits, move_of
from runbook.engine import wave_record
from runbook.engine.context import RunContext
from runbook.engine.interrupt import signals_handled
from runbook.engine.events import Emitter, Notice, RunStarted, Sink, Step
from runbook.engine.requests import (
    DrainRequest, EvacuateRequest, PlanRequest, UndoRequest, WaveRequest,
)
from runbook.engine.result import RunResult
from runbook.engine.wave_inputs import SharedSession, find_record, host_refs, read
from runbook.engine.wave_move import VmMove
from runbook.engine.wave_events import PlanRow, VmState, WaveStopped
from runbook.errors import BadInput
from runbook.records import record as rec
from runbook.records.recorder import Recorder
from runbook.vsphere.connection import Settings, login, logout, settings_from_env
from runbook.vsphere.inventory import Inventory
from runbook.vsphere.properties import retrieve_objects

log = logging.getLogger("runbook")

MAINTENANCE_TIMEOUT_S = 600.0
#: How often the record is saved with the progress of the moves while they run.
SAVE_EVERY_S = 5.0
#: Moves prepared ahead (looked up, checked, probes started) beyond those running, waiting at the gate: at
#: least this many, and as many as the busiest host's vMotion limit.
PREPARE_AHEAD = 4


def wave(request: WaveRequest, *, on_event: Sink | None = None, context: RunContext | None = None,
         settings: Settings | None = None, cancel: threading.Event | None = None) -> RunResult:
    """Run a wave; never raises once its record exists (the outcome says how it ended).

    Raises BadInput, NotFound, Ambiguous or ConnectionFailed before any record exists when the request
    cannot be used (a host that is not there, an unreadable plan file, an unknown run to undo)."""
    return _Wave(request, on_event, context, settings, cancel).run()


class _Wave:
    def __init__(self, request: WaveRequest, on_event: Sink | None, context: RunContext | None,
                 settings: Settings | None, cancel: threading.Event | None):
        self.request, self.context, self.settings = request, context or RunContext(), settings
        self.cancel = cancel or threading.Event()
        self.emit = Emitter(on_event)
        self.inbox: queue.Queue = queue.Queue()
        self.run_dir: Path | None = None
        self.rows: list[waveplan.Row] = []
        self.children: dict[str, VmMove] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.stop: dict[str, Any] | None = None
        self.signals: list[str] = []
        self.undoes: str | None = None
        self.limits = Limits()
        self.saved_at = 0.0  # time.monotonic() of the last progress save
        self.inventory: Inventory | None = None  # read once; every move of the wave looks its objects up in it
        self.si: Any = None  # the wave's session, shared by its moves

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.settings = self.settings or settings_from_env()
        si = login(self.settings)
        try:
            self.si = SharedSession(si)  # shared by the wave's moves (pyVmomi's stub pools its connections)
            self.emit(Step("resolve", "started", f"reading the inventory of {self.settings.url}"))
            inventory = self.inventory = read(self.si)
            self.rows = self._plan(inventory)  # refusals raise from here, before any record exists
            self.limits = Limits(self.request.max_vmotions_per_host, self.request.max_svmotions_per_host,
                                 self.request.max_svmotions_per_datastore,
                                 dict(zip(inventory.hosts["name"], inventory.hosts["link_mbps"])))
            recorder = Recorder("wave", self.request.to_params(), self.context, self.emit).start(self.settings)
            self.run_dir = recorder.run_dir
            self.emit(RunStarted(run="wave", what=self._words(), vcenter=self.settings.url,
                                 run_dir=str(self.run_dir) if self.run_dir else None))
            with self._signals():
                try:
                    self._steps(self.si, recorder)
                except Exception as exc:  # a bug or a broken connection: the record still ends true
                    log.exception("the wave stopped on an unexpected error")
                    self._drain_children()
                    if not recorder.finished:
                        self._finish(recorder, "UNKNOWN" if self._started() else "FAILED",
                                     f"{type(exc).__name__}: {exc}", error=exc)
            return RunResult.of(recorder, state=self, inventory=inventory)
        finally:
            with contextlib.suppress(Exception):
                logout(si)

    def _plan(self, inventory: Inventory) -> list[waveplan.Row]:
        req = self.request
        self.emit(Step("plan", "started", f"planning: {req.words()}"))
        if isinstance(req, EvacuateRequest):
            return waveplan.evacuate(inventory, req.host, req.to)
        if isinstance(req, DrainRequest):
            return waveplan.drain(inventory, req.datastore, req.to, req.disk_format, req.min_free)
        if isinstance(req, PlanRequest):
            try:
                text = Path(req.plan).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInput(f"plan file {req.plan} cannot be read: {exc}") from None
            return waveplan.given(inventory, planfile.parse(text, req.plan))
        if isinstance(req, UndoRequest):
            undone = find_record(self.context.resolved_reports_dir(), req.run_id)
            self.undoes = req.run_id
            entries = planfile.moves_back(undone)
            if not entries:
                raise BadInput(f"run {req.run_id} moved no VM: there is nothing to undo")
            return waveplan.given(inventory, entries)
        raise BadInput(f"unknown kind of wave {req.kind!r}")

    def _words(self) -> str:
        return f"{self.request.words()}: {waveplan.words(self.rows)}"

    def _steps(self, si: Any, recorder: Recorder) -> None:
        req, rows = self.request, self.rows
        for row in rows:
            self.emit(PlanRow(vm=row.vm, target=row.target_host or row.target_datastore or "-", status=row.status,
                              verdict=row.verdict, reason=row.reason, remedy=row.remedy))
        failing = waveplan.failing(rows)
        hosts = {h for r in rows for h in (r.source_host, r.target_host) if h}
        recorder.set(move=self._words(), plan_table=[r.to_dict() for r in rows],
                     wave={"kind": req.kind, "undoes": self.undoes, "plan_file": getattr(req, "plan", None),
                           "limits": self.limits.to_dict(hosts), "canary": None, "stop": None, "maintenance": None})
        verdict = (f"{len(failing)} of {len(rows)} rows fail: " + ", ".join(r.vm for r in failing)) if failing \
            else f"all {len(rows)} rows pass their checks"
        self.emit(Step("plan", "ended", verdict))
        runnable = [r for r in rows if r.status != FAIL and r.move_kind != "none"]
        for r in rows:
            if r.status == FAIL:
                self.entries[r.vm] = wave_record.entry(r, status="skipped" if req.skip_failing else "not started",
                                                       note=f"checks fail: {r.verdict}")
            elif r.move_kind == "none":
                self.entries[r.vm] = wave_record.entry(r, status="skipped", note="already there")
        if failing and (not req.skip_failing or not runnable):
            self._finish(recorder, "CHECKS FAILED", f"refused: {verdict}; nothing was changed"
                         + ("" if req.skip_failing else " (--skip-failing runs the rest)"))
            return
        if req.dry_run:
            self._finish(recorder, "DRY RUN", f"dry run: {len(runnable)} moves planned, {verdict}; nothing was "
                                              f"changed")
            return
        started = time.monotonic()
        self._execute(runnable, recorder)
        maintenance = self._maintenance(si) if isinstance(req, EvacuateRequest) and req.maintenance else None
        if maintenance:
            recorder.set(wave={**recorder.data["wave"], "maintenance": maintenance})
        self._conclude(recorder, maintenance, time.monotonic() - started)

    # -- the moves ----------------------------------------------------------------------------------
    def _execute(self, runnable: list[waveplan.Row], recorder: Recorder) -> None:
        """Start moves (the canary alone first), admit those ready at the gate while they fit the limits,
        and follow them to their end; after a stop, admit none and start none."""
        pending, ready = list(runnable), []
        canary: VmMove | None = None
        charting = False
        hosts = {h for r in runnable for h in (r.source_host, r.target_host) if h}
        ahead = max([PREPARE_AHEAD, *(self.limits.vmotions_on(h) for h in hosts)])
        while True:
            self._check_stop()
            if self.stop is not None:
                for child in ready:
                    child.admitted = False
                    child.gate.set()
                ready = []
            else:
                holding = [c.move for c in self.children.values() if c.holding]
                canary_done = canary is not None and not canary.vm_pending
                for child in sorted(ready, key=lambda c: c.number):
                    if (child is canary or canary_done) and self.limits.fits(child.move, holding):
                        ready.remove(child)
                        holding.append(child.move)
                        child.holding, child.admitted = True, True
                        child.slot_start = dt.datetime.now(dt.timezone.utc)
                        child.gate.set()
                if canary is None and pending:
                    canary = self._start(pending.pop(0))
                    recorder.set(wave={**recorder.data["wave"], "canary": canary.row.vm})
                    self.emit(Notice("info", f"canary: {canary.row.vm} moves first, alone"))
                # once the canary's task is submitted, the next moves prepare (while it runs) and wait at the
                # gate: as many as can run at once, so that a slot that frees is taken at once (a move past its
                # task, in its probes' tail or writing its record, holds no slot and does not count)
                live = sum(1 for c in self.children.values() if c.vm_pending and (c.admitted is None or c.holding))
                while canary is not None and canary.admitted is not None and pending and live < len(holding) + ahead:
                    self._start(pending.pop(0))
                    live += 1
            if not any(c.vm_pending for c in self.children.values()) and (self.stop is not None or not pending):
                break
            if not charting and self.run_dir and not pending and all(c.admitted is not None
                                                                     for c in self.children.values()):
                charting = True  # every move admitted: import the chart's modules while the last ones run
                wave_record.prepare_chart()
            try:
                kind, child, payload = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "ready":
                ready.append(child)
            else:
                self._handle(kind, child, payload, recorder)
        for row in pending:
            self.entries[row.vm] = wave_record.entry(row, status="not started",
                                                     note=f"not started: {self.stop['reason']}" if self.stop else "")
            self.emit(VmState(vm=row.vm, state="not started"))
        self._save(recorder, now=True)

    def _start(self, row: waveplan.Row) -> VmMove:
        child = VmMove(self, row, len(self.children) + 1)
        self.children[row.vm] = child
        self.emit(VmState(vm=row.vm, state="queued"))
        child.thread.start()
        return child

    def _handle(self, kind: str, child: VmMove, payload: Any, recorder: Recorder) -> None:
        row = child.row
        if kind == "task started":
            self.emit(VmState(vm=row.vm, state="running", text=payload.text, task=None))
        elif kind == "task ended":
            if not payload.text.endswith(": success"):  # "task task-N: error": stop before its slot frees
                self._stop_for("failed move", f"the move of {row.vm} failed ({payload.text})")
            self._release(child)
        elif kind == "refused":
            child.refusal = payload
        elif kind == "done":
            self._release(child)
            child.vm_pending = False
            self._done(child, recorder)

    def _release(self, child: VmMove) -> None:
        if child.holding:
            child.holding = False
            child.slot_end = dt.datetime.now(dt.timezone.utc)

    def _done(self, child: VmMove, recorder: Recorder) -> None:
        row, result = child.row, child.result
        if result is None:
            why = child.refusal
            self.entries[row.vm] = wave_record.entry(row, status="failed", slot=(child.slot_start, child.slot_end),
                                                     note=f"refused: {why}")
            self.emit(VmState(vm=row.vm, state="failed", text=f"refused: {why}"))
            self._stop_for("failed move", f"the move of {row.vm} was refused: {why}")
            self._save(recorder)
            return
        status = wave_record.STATUS_OF_OUTCOME.get(result.outcome, "failed")
        if child.admitted is False or (status == "cancelled" and not result.record.get("task")):
            status = "not started"  # stopped at the gate: prepared, never submitted
        entry = wave_record.entry(row, status=status, result=result, run_dir=child.run_dir, wave_dir=self.run_dir,
                                  slot=(child.slot_start, child.slot_end), ready=child.ready_at)
        self.entries[row.vm] = entry
        self.emit(VmState(vm=row.vm, state=status, text=result.summary, task=entry["task"],
                          outage_ms=entry["outage_ms"]))
        if status == "cancelled" and self.stop is not None:
            pass  # cancelled by the wave's own second signal: already said
        elif status not in ("moved", "not started"):
            self._stop_for("failed move", f"the move of {row.vm} ended {result.outcome}: {result.summary}")
        limit_ms = self.request.max_outage * 1000
        if limit_ms and (entry["outage_ms"] or 0) > limit_ms:
            self._stop_for("outage", f"{row.vm} was unreachable for {entry['outage_ms']:g} ms, over max_outage "
                                     f"{self.request.max_outage:g} s")
        self._save(recorder)

    def _stop_for(self, rule: str, reason: str) -> None:
        if self.stop is not None:
            return
        self.stop = {"rule": rule, "reason": reason, "at": rec.iso(rec.utcnow())}
        self.emit(WaveStopped(rule=rule, reason=reason))

    def _check_stop(self) -> None:
        if self.signals and self.stop is None:
            self._stop_for("signal", f"interrupted by {self.signals[0]}")
        if self.cancel.is_set() and self.stop is None:
            self._stop_for("cancel", "cancel requested")
        if len(self.signals) > 1:
            for child in self.children.values():
                child.cancel.set()

    @contextlib.contextmanager
    def _signals(self) -> Any:
        """SIGINT and SIGTERM stop the wave (nothing new starts); a second one cancels the running tasks."""
        def handler(signum: int, frame: Any) -> None:
            self.signals.append(signal.Signals(signum).name)
            if len(self.signals) == 2:
                for child in list(self.children.values()):
                    child.cancel.set()

        with signals_handled(handler):
            yield

    def _drain_children(self) -> None:
        """After an unexpected error: no move waiting at the gate is admitted; the running ones end."""
        for child in self.children.values():
            if child.admitted is None:
                child.admitted = False
                child.gate.set()
        for child in self.children.values():
            child.thread.join(timeout=60)

    def _started(self) -> bool:
        return bool(self.children)

    # -- the end ------------------------------------------------------------------------------------
    def _maintenance(self, si: Any) -> dict[str, Any]:
        """Enter maintenance mode when the evacuated host holds no VM any more; say why not otherwise."""
        inv_host = self.request.host
        names = retrieve_objects(si, host_refs(si), {vim.HostSystem: ["name", "vm", "runtime.inMaintenanceMode"]})
        found = [r for m, r in names.items() if inv_host in (m, r.get("name"))]
        if len(found) != 1:
            return {"requested": True, "entered": False, "reason": f"host {inv_host} not found again"}
        host = found[0]
        if self.stop is not None or any(e["status"] not in ("moved", "skipped") for e in self.entries.values()):
            return {"requested": True, "entered": False, "reason": "the wave did not move every VM"}
        left = len(host.get("vm") or ())
        if left:
            return {"requested": True, "entered": False, "reason": f"{left} VM{'' if left == 1 else 's'} still on the host"}
        from runbook.vsphere.task import wait

        self.emit(Step("maintenance", "started", f"entering maintenance mode on {host['name']}"))
        task_id = host["_ref"].EnterMaintenanceMode_Task(timeout=0)._moId
        outcome, _ = wait(si, task_id, timeout=MAINTENANCE_TIMEOUT_S)
        again = retrieve_objects(si, [host["_ref"]], {vim.HostSystem: ["runtime.inMaintenanceMode"]})
        entered = bool(again.get(host["_ref"]._moId, {}).get("runtime.inMaintenanceMode"))
        self.emit(Step("maintenance", "ended", f"{host['name']} in maintenance mode: {entered}"))
        return {"requested": True, "entered": entered, "task": task_id, "task_state": outcome.state,
                "reason": None if entered else f"task {task_id}: {outcome.fault or outcome.state}"}

    def _conclude(self, recorder: Recorder, maintenance: dict[str, Any] | None, wall_s: float) -> None:
        moves = [self.entries[r.vm] for r in self.rows if r.vm in self.entries]
        count = {s: sum(1 for m in moves if m["status"] == s) for s in wave_record.STATUSES}
        tally = ", ".join(f"{n} {s}" for s, n in count.items() if n)
        stop = self.stop
        if count["unknown"]:
            outcome = "UNKNOWN"
        elif stop and stop["rule"] in ("signal", "cancel"):
            outcome = "CANCELLED"
        elif stop or count["failed"] or count["cancelled"]:
            outcome = "FAILED"
        elif maintenance and not maintenance.get("entered"):
            outcome = "FAILED"
        elif not count["moved"] and not maintenance:
            outcome = "NO CHANGE"
        else:
            outcome = "SUCCEEDED"
        summary = f"{self.request.words()}: {tally}"
        if stop:
            summary += f"; stopped ({stop['rule']}): {stop['reason']}"
        if maintenance:
            summary += "; maintenance mode entered" if maintenance.get("entered") else \
                f"; maintenance mode not entered: {maintenance.get('reason')}"
        error = None
        if outcome in ("FAILED", "CANCELLED", "UNKNOWN"):
            why = stop["reason"] if stop else (maintenance or {}).get("reason") or tally
            error = {"type": "WaveStopped" if stop else "WaveFailed", "message": str(why)}
        self._finish(recorder, outcome, summary, wall_s=wall_s, error=error)

    def _save(self, recorder: Recorder, *, now: bool = False) -> None:
        """Write the record's progress (each VM's outcome so far): at most every SAVE_EVERY_S seconds while
        moves run (each save validates the whole record: CPU the moves' threads need), at once with ``now``."""
        if not now and self.stop is None and time.monotonic() - self.saved_at < SAVE_EVERY_S:
            return
        self.saved_at = time.monotonic()
        moves = [self.entries.get(r.vm) or wave_record.entry(r, status="not started") for r in self.rows]
        recorder.set(moves=moves, wave={**recorder.data["wave"], "stop": self.stop})

    def _finish(self, recorder: Recorder, outcome: str, summary: str, *, wall_s: float | None = None,
                **values: Any) -> None:
        moves = [self.entries.get(r.vm) or wave_record.entry(r, status="not started") for r in self.rows]
        moving = {r.vm: move_of(r.to_dict()) for r in self.rows}
        chart = None
        if self.run_dir is not None:
            with contextlib.suppress(Exception):
                chart = wave_record.timeline_chart(moves, moving, self.limits, self.run_dir / "timeline.png")
        wave_data = {**(recorder.data.get("wave") or {}), "stop": self.stop,
                     "wall_s": round(wall_s, 3) if wall_s is not None else None}  # the moves and maintenance, start to end
        recorder.finish(outcome, summary, moves=moves, wave=wave_data,
                        concurrency=wave_record.concurrency(moves, moving, self.limits),
                        timeline_chart=chart.name if chart else None,
                        figures=wave_record.figures(self._words(), moves, wall_s), **values)
