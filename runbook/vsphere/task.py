"""Start, follow, cancel and re-attach to vCenter tasks; read the events of a VM in a time window.

Waiting uses the PropertyCollector (``WaitForUpdatesEx``), never sleep-and-poll. A lost connection
while waiting is not the end of the move: :func:`wait` logs in again, re-attaches to the same task by
its id, and goes on; only when the vCenter stays away does it give up with :class:`OutcomeUnknown`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from runbook.errors import OutcomeUnknown, TaskFailed, TaskTimeout

log = logging.getLogger("runbook")

PC = vmodl.query.PropertyCollector
LOST_CONNECTION = _LOST = (ConnectionError, socket.timeout, TimeoutError, OSError, http.client.HTTPException,
         vim.fault.NotAuthenticated)

ProgressSink = Callable[[int, str], None]


@dataclass
class TaskOutcome:
    """How a task ended, as the vCenter reports it."""

    id: str
    state: str
    queued: dt.datetime | None = None
    started: dt.datetime | None = None
    completed: dt.datetime | None = None
    error: str | None = None
    fault: str | None = None
    result: Any = None
    reattached: int = 0
    progress: list[tuple[dt.datetime, int]] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.started and self.completed:
            return (self.completed - self.started).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        from runbook.records.record import iso

        return {"id": self.id, "state": self.state, "queued": iso(self.queued), "started": iso(self.started),
                "completed": iso(self.completed), "duration_s": self.duration_s, "error": self.error,
                "fault": self.fault, "reattached": self.reattached}


def task_ref(si: vim.ServiceInstance, task_id: str) -> vim.Task:
    """The task with this id (its moid), bound to this session: how a new session re-attaches."""
    return vim.Task(task_id, si._stub)


def _fault_name(fault: Any) -> str:
    return type(fault).__name__.split(".")[-1] if fault is not None else "Fault"


def _fault_message(fault: Any) -> str:
    if fault is None:
        return ""
    msg = getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None)
    if not msg and getattr(fault, "faultMessage", None):
        msg = "; ".join(m.message for m in fault.faultMessage if m.message)
    return msg or _fault_name(fault)


def _outcome(task_id: str, info: Any) -> TaskOutcome:
    return TaskOutcome(id=task_id, state=str(info.state), queued=info.queueTime, started=info.startTime,
                       completed=info.completeTime, error=_fault_message(info.error) if info.error else None,
                       fault=_fault_name(info.error) if info.error else None, result=info.result)


def wait(si: vim.ServiceInstance, task_id: str, *, timeout: float = 3600.0,
         on_progress: ProgressSink | None = None, relogin: Callable[[], vim.ServiceInstance] | None = None,
         reconnect_for: float = 60.0, on_tick: Callable[[], None] | None = None) -> tuple[TaskOutcome, vim.ServiceInstance]:
    """Follow the task until it ends; return its outcome and the session in use (it may be a new one).

    On timeout the task is cancelled and :class:`TaskTimeout` raised. A failed task is returned, not
    raised: the caller records it. ``relogin`` opens a new session after a lost connection. ``on_tick``
    is called about once a second while the task runs (live figures; it may raise to stop waiting).
    """
    deadline = time.monotonic() + timeout
    reattached = 0
    history: list[tuple[dt.datetime, int]] = []
    while True:
        try:
            info = _follow(si, task_id, deadline, on_progress, history, on_tick)
            break
        except _LOST as exc:
            if relogin is None:
                raise OutcomeUnknown(task_id, f"connection lost: {type(exc).__name__}") from None
            si = relogin_within(relogin, task_id, reconnect_for, on_tick=on_tick)
            reattached += 1
            log.warning("connection lost while waiting; re-attached to task %s", task_id)
    if info is None:  # deadline passed
        cancelled = cancel(si, task_id)
        raise TaskTimeout(task_id, timeout, cancelled)
    outcome = _outcome(task_id, info)
    outcome.reattached, outcome.progress = reattached, history
    return outcome, si


def relogin_within(relogin: Callable[[], vim.ServiceInstance], task_id: str,
                   window: float, on_tick: Callable[[], None] | None = None) -> vim.ServiceInstance:
    """Log in again, retrying with back-off until ``window`` seconds pass; then OutcomeUnknown. ``on_tick`` is
    called before each try (it may raise to stop trying: a cancel while the vCenter is away)."""
    until = time.monotonic() + window
    delay = 0.5
    last = ""
    while time.monotonic() < until:
        if on_tick:
            on_tick()
        try:
            return relogin()
        except Exception as exc:  # the vCenter is still away: try again until the window closes
            last = str(exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise OutcomeUnknown(task_id, f"the vCenter did not come back within {window:g} s ({last})")


def _follow(si: vim.ServiceInstance, task_id: str, deadline: float, on_progress: ProgressSink | None,
            history: list, on_tick: Callable[[], None] | None = None) -> Any:
    """Wait on one property filter; return the final TaskInfo, or None when the deadline passes."""
    task = task_ref(si, task_id)
    collector = si.content.propertyCollector.CreatePropertyCollector()
    try:
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=task)],
                             propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info"])])
        collector.CreateFilter(spec, partialUpdates=False)
        version = ""
        last_progress = -1
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait_s = 1 if on_tick else max(1, min(int(left) + 1, 5))
            if on_tick:
                on_tick()
            update = collector.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=wait_s))
            if update is None:
                continue
            version = update.version
            for fs in update.filterSet or ():
                for obj in fs.objectSet or ():
                    for change in obj.changeSet or ():
                        info = change.val
                        if info is None:
                            continue
                        state = str(info.state)
                        progress = info.progress if info.progress is not None else (
                            100 if state == "success" else last_progress)
                        if progress is not None and progress >= 0 and progress != last_progress:
                            history.append((dt.datetime.now(dt.timezone.utc), int(progress)))
                            last_progress = progress
                            if on_progress:
                                with contextlib.suppress(Exception):  # a display error never stops the wait
                                    on_progress(int(progress), state)
                        if state in ("success", "error"):
                            return info
    finally:
        with contextlib.suppress(Exception):
            collector.DestroyPropertyCollector()


def cancel(si: vim.ServiceInstance, task_id: str, wait_s: float = 30.0) -> bool:
    """Ask the vCenter to cancel the task; True once it reports the task ended."""
    task = task_ref(si, task_id)
    try:
        task.CancelTask()
    except vim.fault.InvalidState:
        pass  # it finished meanwhile
    except Exception as exc:
        log.warning("could not cancel task %s: %s", task_id, exc)
        return False
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if str(task.info.state) in ("success", "error"):
                return True
        time.sleep(0.2)
    return False


def raise_for(outcome: TaskOutcome) -> None:
    """Turn a failed task into :class:`TaskFailed` (for callers that want an exception)."""
    if outcome.state != "success":
        raise TaskFailed(outcome.id, outcome.fault or "Fault", outcome.error or "")


def events(si: vim.ServiceInstance, entity: vim.ManagedEntity, begin: dt.datetime,
           end: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The vCenter's events for ``entity`` in a window, oldest first (one query; 1000 is the most vCenter returns)."""
    from runbook.records.record import iso

    spec = vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=entity, recursion="self"),
        time=vim.event.EventFilterSpec.ByTime(beginTime=begin, endTime=end), maxCount=1000)
    found = si.content.eventManager.QueryEvents(spec) or []
    # Filter again here: a vCenter (or a simulator) that ignores the time filter must not widen the window.
    found = [e for e in found if e.createdTime >= begin and (end is None or e.createdTime <= end)]
    rows = [{"time": iso(e.createdTime), "type": type(e).__name__.split(".")[-1],
             "message": e.fullFormattedMessage or "", "key": e.key,
             "user": e.userName or ""} for e in found]
    return sorted(rows, key=lambda r: (r["time"] or "", r["key"]))
