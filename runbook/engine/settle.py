"""How a run whose process was cut short still ends with a true record.

:func:`task_end` asks the vCenter how a task ended (cancelling it first when asked), through a new
session if the old one broke mid-call. :func:`settle` finalises a record left RUNNING by a kernel that
died or was killed: with the task's real end when the record names a task, else as CANCELLED (an
interrupt before anything started) or FAILED. It uses the same recorder as a run that ended normally.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runbook.records import record as rec
from runbook.vsphere.task import TaskOutcome, _outcome, task_ref

log = logging.getLogger("runbook")


def task_end(si: Any, task_id: str, *, cancel: bool, wait_s: float,
             relogin: Callable[[], Any] | None = None) -> TaskOutcome | None:
    """The task's end as the vCenter reports it (None when it cannot say within ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    sessions = [si] + ([None] if relogin else [])
    asked_cancel = False
    for session in sessions:
        try:
            if session is None:
                session = relogin()
            task = task_ref(session, task_id)
            if cancel and not asked_cancel:
                with contextlib.suppress(Exception):  # InvalidState: it ended meanwhile
                    task.CancelTask()
                asked_cancel = True
            while True:
                info = task.info
                if str(info.state) in ("success", "error"):
                    return _outcome(task_id, info)
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.2)
        except Exception as exc:  # a session broken by the interrupt: try a new one
            log.warning("could not read task %s (%s: %s)", task_id, type(exc).__name__, exc)
    return None


def _without_task(kind: str, parameters: dict[str, Any], interrupted: str | None) -> tuple[str, str]:
    """The outcome and the words for a run that stopped with no vCenter task on its record, by kind: what the
    runbook knows of the vCenter's state, and nothing it does not."""
    stopped = "CANCELLED" if interrupted else "FAILED"
    if kind == "migrate":
        return stopped, "before the move started: nothing was changed"
    if kind == "enable-vmotion" and str(parameters.get("apply")).lower() in ("true", "1", "yes"):
        # Host changes are no tasks: which of them were made before the stop is not on the record.
        return "UNKNOWN", ("while applying: some hosts may have been changed; see each host's state with a dry "
                           "run of the same command (runbook enable-vmotion without --apply)")
    if kind == "enable-vmotion":
        return stopped, "during the dry run: nothing was changed"
    return stopped, f"during the {kind}: nothing was changed (a {kind} only reads)"


def settle(run_dir: Path, *, interrupted: str | None = None, failure: dict[str, Any] | None = None,
           settings: Any = None) -> dict[str, Any] | None:
    """Finalise a record that its run left RUNNING; return the record's data (None: there is none)."""
    from runbook.engine.context import RunContext
    from runbook.records.recorder import Recorder

    data = rec.load(run_dir)
    if data is None or data.get("outcome") != "RUNNING":
        return data
    recorder = Recorder(str(data.get("kind")), data.get("parameters") or {},
                        RunContext(run_dir=Path(run_dir), report=False, via=str(data.get("via") or "headless")))
    recorder.start()
    task_id = (data.get("task") or {}).get("id")
    why = f"interrupted by {interrupted}" if interrupted else \
        f"the kernel stopped ({(failure or {}).get('type', 'unknown error')}: {(failure or {}).get('message', '')})"
    error = failure or {"type": "Interrupted", "message": f"interrupted by {interrupted}" if interrupted
                        else "the run stopped"}
    if not task_id:
        outcome, words = _without_task(str(data.get("kind")), data.get("parameters") or {}, interrupted)
        return recorder.finish(outcome, f"{why} {words}", error=error, interrupted=interrupted)
    outcome_of_task: TaskOutcome | None = None
    if settings is not None:
        from runbook.vsphere.connection import login, logout

        with contextlib.suppress(Exception):
            si = login(settings)
            try:
                outcome_of_task = task_end(si, task_id, cancel=bool(interrupted), wait_s=30.0)
            finally:
                logout(si)
    if outcome_of_task is None:
        return recorder.finish("UNKNOWN", f"{why}; the vCenter did not say how task {task_id} ended: check it "
                                          f"(Monitor > Tasks) before moving the VM again",
                               error=error, task={"id": task_id, "state": "unknown"}, interrupted=interrupted)
    task = outcome_of_task.to_dict()
    if outcome_of_task.state == "success":
        return recorder.finish("SUCCEEDED", f"{why}, but task {task_id} succeeded (placement not verified by "
                                            f"the runbook)", task=task, interrupted=interrupted)
    outcome = "CANCELLED" if interrupted else "FAILED"
    return recorder.finish(outcome, f"{why}: task {task_id} ended {outcome_of_task.fault or 'in error'}",
                           error=error, task=task, interrupted=interrupted)
