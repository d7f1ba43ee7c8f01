"""The engine's move and check: every step of one run, from the request to the final record.

``check(request)`` resolves, runs every prerequisite check and the vCenter's own verdict, and records
them; ``migrate(request)`` does the same, then decides, locks the VM, starts the probes, submits the
relocation, follows the task (re-attaching after a lost connection), stops the probes, verifies where
the vCenter says the VM is and reads its events. Each step emits events; the recorder finalises the
record exactly once, whatever happens: a refused input raises before any record exists, an interrupt
(SIGINT, SIGTERM, the widgets' Cancel) cancels the vCenter task and records what the vCenter then reports.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from pyVmomi import vim

from runbook.domain import checks as checks_mod
from runbook.domain.move import MoveState
from runbook.domain.placement import active_relocation, placement, relocations_since, verify, vm_lock
from runbook.domain.plan import resolve
from runbook.domain.spec import build_relocate_spec, move_priority, spec_to_dict, stub_morefs
from runbook.engine.context import RunContext
from runbook.engine.events import CheckDone, Emitter, Notice, PingSample, RunStarted, Sink, Step, TaskProgress
from runbook.engine.interrupt import Interrupted, interruptible, shielded
from runbook.engine.probing import start_probes, stop_probes
from runbook.engine.requests import CheckRequest, MoveRequest, build
from runbook.engine.result import RunResult
from runbook.errors import BadInput, OutcomeUnknown, RunbookError, TaskTimeout
from runbook.records.recorder import Recorder
from runbook.vsphere.connection import Settings, login, logout, settings_from_env
from runbook.vsphere.find import display_name as _n
from runbook.vsphere.inventory import Inventory
from runbook.vsphere.scope import read_for_move
from runbook.vsphere.timeouts import answering
from runbook.vsphere.task import LOST_CONNECTION, events as query_events, relogin_within, wait

log = logging.getLogger("runbook")

CANCEL_WAIT_S = 30.0  # how long an interrupted run waits for the vCenter to end the cancelled task
RECONNECT_S = 60.0


def check(request: CheckRequest | dict, *, on_event: Sink | None = None, context: RunContext | None = None,
          settings: Settings | None = None, inventory: Inventory | None = None) -> RunResult:
    """Check every prerequisite of a move and record the verdict; change nothing.

    Raises :class:`BadInput` (or NotFound, Ambiguous, ConnectionFailed) before any record exists when
    the request cannot be used. Returns the result with outcome SUCCEEDED or CHECKS FAILED.
    """
    if isinstance(request, dict):
        request = build(CheckRequest, request)
    return _Run(request, on_event, context, settings, inventory).run()


def migrate(request: MoveRequest | dict, *, on_event: Sink | None = None, context: RunContext | None = None,
            settings: Settings | None = None, cancel: threading.Event | None = None,
            before_submit: Callable[[], None] | None = None, inventory: Inventory | None = None,
            session: Any = None) -> RunResult:
    """Move one VM as the request says; never raises once the record exists (the outcome says how it
    ended). ``cancel``: set it to stop the run (the task is cancelled), like SIGINT or SIGTERM.
    ``before_submit``: called once the move is checked, locked and probed, right before the relocation is
    submitted (a wave's admission within its limits); raising :class:`Interrupted` there ends the run
    CANCELLED with nothing changed. ``inventory`` and ``session`` (a logged-in ServiceInstance, left logged
    in) let many moves share one read and one login, as a wave's do."""
    if isinstance(request, dict):
        request = build(MoveRequest, request)
    run = _Run(request, on_event, context, settings, inventory, cancel)
    run.before_submit, run.shared = before_submit, session
    return run.run()


class _Run:
    """The steps of one check or move; holds the session, the recorder and the state."""

    def __init__(self, request: CheckRequest, on_event: Sink | None, context: RunContext | None,
                 settings: Settings | None, inventory: Inventory | None, cancel: threading.Event | None = None):
        self.request = request
        self.moving = isinstance(request, MoveRequest)
        self.context = context or RunContext()
        self.settings = settings
        self.inventory = inventory
        self.cancel = cancel or threading.Event()
        self.emit = Emitter.for_run(on_event, self.context)
        self.state: MoveState | None = None
        self.monitor: Any = None
        self.si: Any = None
        self.shared: Any = None  # a session the caller owns: used, never logged out
        self.submitted_at: dt.datetime | None = None  # when RelocateVM_Task was sent (its answer may not have come)
        self.before_submit: Callable[[], None] | None = None
        self.interrupted: str | None = None

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.settings = self.settings or settings_from_env()
        self.si = self.shared or login(self.settings)
        try:
            with interruptible(self.cancel):
                try:
                    with answering(self.settings):
                        recorder = self._prepare()  # refusals raise from here, before any record exists
                except Interrupted as exc:  # nothing started: the caller's interrupt, as Python raises it
                    raise KeyboardInterrupt(str(exc)) from None
                try:
                    self._checks(recorder)
                    if self.moving and not recorder.finished:
                        self._move(recorder)
                except (Interrupted, KeyboardInterrupt) as exc:  # KeyboardInterrupt: a kernel's own SIGINT handler
                    if not recorder.finished:  # after the record is final an interrupt changes nothing
                        self._interrupted(recorder, exc if isinstance(exc, Interrupted) else Interrupted("SIGINT"))
                except RunbookError as exc:
                    self._refused_or_failed(recorder, exc)
                except Exception as exc:  # a bug or a broken connection: the record still ends true
                    log.exception("the run stopped on an unexpected error")
                    self._unexpected(recorder, exc)
            return RunResult.of(recorder, state=self.state, inventory=self.inventory)
        finally:
            if self.si is not self.shared:  # ours, or a new one after the shared session was lost
                with contextlib.suppress(Exception):
                    logout(self.si)

    def _prepare(self) -> Recorder:
        self.emit(Step("resolve", "started", f"looking up {self.request.vm} on {self.settings.url}"))
        plan = self.request.plan()
        if self.inventory is None:  # only what this move involves: the cost does not grow with the vCenter
            req = self.request
            placed = [datastore for datastore, _ in plan.disk_placement.values()]
            self.inventory = read_for_move(self.si, vm=req.vm, hosts=[req.target_host],
                                           datastores=[req.target_datastore, *placed])
        resolved = resolve(self.inventory, plan)
        spec = build_relocate_spec(resolved, stub_morefs(self.si._stub))
        self.state = MoveState(resolved=resolved, spec=spec,
                               force_reason=getattr(self.request, "force_reason", "") or "")
        recorder = Recorder(self.request.kind, self.request.to_params(), self.context, self.emit).start(self.settings)
        self.emit(RunStarted(run=self.request.kind, what=self.state.move_words(), vcenter=self.settings.url,
                             run_dir=str(recorder.run_dir) if recorder.run_dir else None))
        return recorder

    def _checks(self, recorder: Recorder) -> None:
        s, r = self.state, self.state.resolved
        self.emit(Step("checks", "started", "checks:"))
        local = checks_mod.run_checks(self.inventory, r)
        for row in local.itertuples():
            self.emit(CheckDone(status=row.status, check=row.check, found=row.found, remedy=row.remedy or ""))
        verdict_rows = checks_mod.vcenter_verdict(self.si, r.vm_moid, s.spec, r.run_host_moid) \
            if not r.already_there else []
        for row in verdict_rows:
            self.emit(CheckDone(status=row.status, check=row.check, found=row.found, remedy=row.remedy or ""))
        import pandas as pd

        s.checks = pd.concat([local, checks_mod.results_frame(verdict_rows)], ignore_index=True)
        s.before = placement(self.si, r.vm_moid)
        verdict = checks_mod.verdict(s.checks)
        self.emit(Step("checks", "ended", verdict))
        recorder.set(plan=r.to_dict(), spec=spec_to_dict(s.spec, r.priority), checks=s.checks.to_dict("records"),
                     verdict=verdict, move=s.move_words(), placement={"before": s.before, "after": None},
                     force_reason=s.force_reason or None)
        failed = checks_mod.failed(s.checks)
        if not self.moving:
            figures = s.figures()[:3] + [("Verdict", verdict)]
            self._finish(recorder, "CHECKS FAILED" if failed else "SUCCEEDED", verdict, figures=figures)
        elif r.already_there:
            self._finish(recorder, "NO CHANGE", f"{_n(r.vm)} is already there: no task was started")
        elif self.request.dry_run:
            self._finish(recorder, "DRY RUN", f"dry run of {s.move_words()}: {verdict}; nothing was changed")
        elif failed and not s.force_reason.strip():
            self._finish(recorder, "CHECKS FAILED", f"refused: {verdict}; nothing was changed")
        elif failed:
            self.emit(Notice("warning", f"moving despite {checks_mod.plural(len(failed), 'failed check')}: {s.force_reason}"))

    def _move(self, recorder: Recorder) -> None:
        s, r, req = self.state, self.state.resolved, self.request
        with vm_lock(self.settings.url, r.vm_moid):
            running = active_relocation(self.si, r.vm_moid)
            if running:
                raise BadInput(f"VM {_n(r.vm)} is already being moved by task {running}; wait for it to end "
                               f"(vSphere Client: Monitor > Tasks) before starting another move")
            self.monitor = self._start_ping()
            error: RunbookError | None = None
            try:
                if self.cancel.is_set():
                    raise Interrupted("cancelled before the move was submitted")
                if self.before_submit is not None:
                    self.before_submit()
                if self.monitor:
                    self.monitor.mark("task_submitted")
                self.emit(Step("submit", "started", f"submitting the relocation of {_n(r.vm)}"))
                self.submitted_at = dt.datetime.now(dt.timezone.utc)
                s.task_id = self._submit()
                recorder.set(task={"id": s.task_id, "state": "running"})
                self.emit(Step("task", "started", f"task {s.task_id} started"))
                s.task, self.si = wait(self.si, s.task_id, timeout=req.timeout_s, on_progress=self._progress,
                                       relogin=lambda: login(self.settings), reconnect_for=RECONNECT_S,
                                       on_tick=self._tick)
                self.emit(Step("task", "ended", f"task {s.task_id}: {s.task.state}"))
            except (TaskTimeout, OutcomeUnknown) as exc:  # recorded with the outcome
                error = exc
            except BaseException:  # an interrupt or an error: no tail of probes before it is handled
                self._stop_ping(tail=0.0)
                raise
            self._stop_ping()
        self._conclude(recorder, error)

    # -- steps of the move --------------------------------------------------------------------------
    def _submit(self) -> str:
        """Start the relocation; if the connection breaks during the call, find out whether it started."""
        r = self.state.resolved
        try:
            vm = vim.VirtualMachine(r.vm_moid, self.si._stub)
            return vm.RelocateVM_Task(spec=self.state.spec, priority=move_priority(r.priority))._moId
        except LOST_CONNECTION as exc:
            log.warning("connection lost while submitting the move (%s); looking for its task", exc)
            self.si = relogin_within(lambda: login(self.settings), "-", RECONNECT_S)
            since = (self.submitted_at or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(seconds=2)
            made = relocations_since(self.si, r.vm_moid, since)  # running, or already ended
            if made:
                return made[-1]
            raise OutcomeUnknown("-", "the connection broke while the move was submitted and no running "
                                      f"relocation of {_n(r.vm)} was found: check the VM's tasks") from None

    def _progress(self, percent: int, state: str) -> None:
        self.emit(TaskProgress(task=self.state.task_id or "-", percent=int(percent), state=state))

    def _tick(self) -> None:
        """Called about once a second while the task runs: live probes, and the cancel request."""
        if self.monitor is not None:
            snap = self.monitor.live()
            self.emit(PingSample(target=self.monitor.target, sent=snap["sent"], lost=snap["lost"],
                                 last_rtt_ms=snap["last_rtt_ms"]))
        if self.cancel.is_set():
            raise Interrupted("cancel requested")

    def _start_ping(self) -> Any:
        return start_probes(self.request, self.state, self.inventory, self.emit)

    def _stop_ping(self, tail: float | None = None) -> None:
        if self.monitor is not None:
            monitor, self.monitor = self.monitor, None
            self.interrupted = stop_probes(monitor, self.state, self.emit, tail) or self.interrupted

    def _conclude(self, recorder: Recorder, error: RunbookError | None) -> None:
        s = self.state
        if isinstance(error, OutcomeUnknown):
            self._finish(recorder, "UNKNOWN", str(error), task={"id": s.task_id, "state": "unknown"},
                         ping=s.ping_summary(), error=error)
            return
        late = ""
        if isinstance(error, TaskTimeout):  # the cancel may not have been answered: ask how the task ended
            from runbook.engine.settle import task_end

            with shielded():
                s.task = task_end(self.si, s.task_id, cancel=False, wait_s=CANCEL_WAIT_S,
                                  relogin=lambda: login(self.settings))
            if s.task is None:
                self._finish(recorder, "UNKNOWN", f"{error}; the vCenter did not say how task {s.task_id} ended: "
                                                  f"check it (Monitor > Tasks) before moving {_n(s.resolved.vm)} again",
                             task={"id": s.task_id, "state": "unknown"}, ping=s.ping_summary(), error=error)
                return
            if s.task.state == "success":  # the cancel came too late: the move is done, verify it
                late = f" (it went past the {self.request.timeout_s:g} s timeout; the cancel came too late)"
                error = None
        self.emit(Step("verify", "started", "verifying where the vCenter says the VM is"))
        with shielded():  # the task has ended: reading where the VM is takes a moment, then the record
            self._read_after()
        values = self._values()
        if self.interrupted:
            values["interrupted"] = self.interrupted
        if isinstance(error, TaskTimeout):
            self._finish(recorder, "TIMED OUT", str(error), error=error, **values)
        elif s.task.state != "success":
            self._finish(recorder, "FAILED", f"the vCenter task {s.task.id} failed: {s.task.fault}: {s.task.error}",
                         error={"type": s.task.fault or "TaskFailed", "message": s.task.error or ""}, **values)
        elif s.verification is not None and not s.verification["ok"].all():
            bad = s.verification[~s.verification["ok"]]
            self._finish(recorder, "FAILED", "the task succeeded but the VM is not where asked: " + "; ".join(
                f"{row.item} is {row.actual}, expected {row.expected}" for row in bad.itertuples()), **values)
        else:
            words = f"{s.move_words()} in {s.task.duration_s:.1f} s{late}"
            ping = values.get("ping") or {}
            if ping.get("description"):
                words += f"; {ping['description']}"
            self._finish(recorder, "SUCCEEDED", words, **values)

    def _read_after(self) -> None:
        s, r = self.state, self.state.resolved
        try:
            s.after = placement(self.si, r.vm_moid)
        except Exception as exc:  # the record must still be written
            log.warning("could not re-read the VM after the move: %s", exc)
        task = s.task
        if task is not None and (task.queued or task.started):
            begin = (task.queued or task.started) - dt.timedelta(seconds=1)
            end = (task.completed or dt.datetime.now(dt.timezone.utc)) + dt.timedelta(seconds=1)
            with contextlib.suppress(Exception):
                s.events = query_events(self.si, vim.VirtualMachine(r.vm_moid, self.si._stub), begin, end)
        if s.after is not None:
            s.verification = verify(r, s.after)

    def _values(self) -> dict[str, Any]:
        s = self.state
        return {"placement": {"before": s.before, "after": s.after}, "events": s.events,
                "verification": s.verification.to_dict("records") if s.verification is not None else None,
                "task": s.task.to_dict() if s.task else {"id": s.task_id, "state": "unknown"},
                "ping": s.ping_summary()}

    # -- how a run ends -----------------------------------------------------------------------------
    def _finish(self, recorder: Recorder, outcome: str, summary: str, **values: Any) -> None:
        s = self.state
        s.outcome, s.summary = outcome, summary
        chart = None
        if recorder.context.report and s.ping is not None:
            with contextlib.suppress(Exception):
                chart = s.ping_chart()
        values.setdefault("figures", s.figures())
        with shielded():  # the record, report and index are written whole, once
            recorder.finish(outcome, summary, ping_chart=chart, **values)

    def _interrupted(self, recorder: Recorder, exc: Interrupted) -> None:
        """Cancel the task if one runs, wait briefly for its end, and record what the vCenter reports."""
        s, why = self.state, str(exc) or "SIGINT"
        error = {"type": "Interrupted", "message": f"interrupted by {why}"}
        with shielded():
            self._stop_ping()
            if s.task_id is None and self.submitted_at is not None:
                s.task_id = self._submitted_task()
            if s.task_id is None and self.submitted_at is not None:
                self._finish(recorder, "UNKNOWN", f"interrupted by {why} while the move of {_n(s.resolved.vm)} was being "
                                                  f"submitted, and the vCenter shows no task for it yet: look at the "
                                                  f"VM's tasks (Monitor > Tasks) before moving it again",
                             error=error, interrupted=why, task={"id": "-", "state": "unknown"})
                return
            if s.task_id is None:
                self._finish(recorder, "CANCELLED", f"interrupted by {why} before the move started: nothing was "
                                                    f"changed", error=error, interrupted=why)
                return
            self.emit(Notice("warning", f"interrupted by {why}: cancelling task {s.task_id}"))
            from runbook.engine.settle import task_end

            s.task = task_end(self.si, s.task_id, cancel=True, wait_s=CANCEL_WAIT_S, relogin=lambda: login(self.settings))
            if s.task is None:
                self._finish(recorder, "UNKNOWN", f"interrupted by {why}; the vCenter did not say how task "
                                                  f"{s.task_id} ended: check it (Monitor > Tasks) before moving "
                                                  f"{_n(s.resolved.vm)} again",
                             task={"id": s.task_id, "state": "unknown"}, ping=s.ping_summary(), error=error,
                             interrupted=why)
                return
            self._read_after()
            values = self._values()
            if s.task.state == "success":
                words = f"{s.move_words()} in {s.task.duration_s:.1f} s (interrupted by {why}, but the task finished first)"
                self._finish(recorder, "SUCCEEDED", words, interrupted=why, **values)
            else:
                self._finish(recorder, "CANCELLED", f"interrupted by {why}: task {s.task_id} was cancelled "
                                                    f"({s.task.fault or s.task.state}); the VM stays where it was",
                             error=error, interrupted=why, **values)

    def _submitted_task(self, wait_s: float = 5.0) -> str | None:
        """The relocation the vCenter made for a RelocateVM_Task whose answer an interrupt cut off (through a
        new session: the old one may hold half an answer), waiting briefly for it to show."""
        import time

        since = self.submitted_at - dt.timedelta(seconds=2)
        deadline = time.monotonic() + wait_s
        with contextlib.suppress(Exception):
            si = login(self.settings)
            try:
                while True:
                    found = relocations_since(si, self.state.resolved.vm_moid, since)
                    if found or time.monotonic() > deadline:
                        self.si = si if found else self.si
                        return found[-1] if found else None
                    time.sleep(0.25)
            finally:
                if self.si is not si:
                    with contextlib.suppress(Exception):
                        logout(si)
        return None

    def _refused_or_failed(self, recorder: Recorder, exc: RunbookError) -> None:
        """A runbook error after the record started: a refusal when no task was started."""
        self._stop_ping()
        if self.state.task_id is None and isinstance(exc, BadInput):
            self._finish(recorder, "REFUSED", f"refused: {exc}; nothing was changed", error=exc)
        elif self.state.task_id is None:
            self._finish(recorder, "FAILED", f"{type(exc).__name__}: {exc}; no task was started", error=exc)
        else:
            self._finish(recorder, "UNKNOWN", f"{type(exc).__name__}: {exc}; task {self.state.task_id} was "
                                              f"started: check how it ended", error=exc,
                         task={"id": self.state.task_id, "state": "unknown"})

    def _unexpected(self, recorder: Recorder, exc: Exception) -> None:
        if not recorder.finished:
            self._refused_or_failed(recorder, RunbookError(f"{type(exc).__name__}: {exc}"))
