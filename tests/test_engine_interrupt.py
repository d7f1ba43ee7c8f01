"""A move interrupted while it runs ends truthfully: the engine cancels the vCenter task, waits for its end,
and records what the lab reports: CANCELLED with the VM where it was, or SUCCEEDED when the task won the race.

The interrupts are real: a ``cancel`` event set from another thread (the widgets' Cancel), and SIGINT or
SIGTERM delivered to this process while ``runbook.migrate()`` runs in the main thread (Ctrl-C, a
scheduler's kill). Each test then asks the lab, over SOAP, how the task ended and where the VM is.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import pytest
from pyVmomi import vim

import runbook
import runbook_lab as lab_mod
from conftest import lab_settings as settings_of, start_in_background
from runbook.engine.context import RunContext
from runbook.engine.events import CheckDone, RunFinished, Step, TaskProgress
from runbook.records.record import EXIT_OF_OUTCOME, validate
from runbook.vsphere.connection import login, logout

SOURCE, TARGET = "esx-01.lab.local", "esx-02.lab.local"


@pytest.fixture
def slow_lab(fresh_lab):
    """A fresh default lab whose move of web-01 takes 10 s, and a session to it: (info, si)."""
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 10)
    si = login(settings_of(info))
    yield info, si
    logout(si)


def request(**fields) -> runbook.MoveRequest:
    return runbook.MoveRequest(**{"vm": "web-01", "target_host": TARGET, "ping": "none", **fields})


def relocations(si) -> list[tuple[str, str]]:
    return [(t._moId, str(t.info.state)) for t in si.content.taskManager.recentTask
            if t.info.descriptionId == "VirtualMachine.relocate" and t.info.entityName == "web-01"]


def assert_final_and_true(res, info, si) -> dict:
    """The record on disk is final, valid, agrees with the result, and with what the lab reports."""
    saved = json.loads((res.run_dir / "record.json").read_text())
    validate(saved)
    assert saved["outcome"] == res.outcome != "RUNNING"
    assert saved["exit_code"] == res.exit_code == EXIT_OF_OUTCOME[res.outcome]
    assert (res.run_dir / "report.html").is_file(), "no report for the interrupted run"
    index = res.run_dir.parent.parent / "index.html"
    assert index.is_file() and res.run_dir.name in index.read_text(), "the index does not list the run"
    task_id = saved["task"]["id"]
    task = vim.Task(task_id, si._stub).info
    host = lab_mod.LabControl(info).placement("web-01")["host"]
    if res.outcome == "CANCELLED":
        assert str(task.state) == "error" and type(task.error).__name__.endswith("RequestCanceled"), task
        assert host == SOURCE
        assert saved["task"]["state"] == "error" and saved["task"]["fault"] == "RequestCanceled", saved["task"]
        assert saved["placement"]["after"]["host"] == SOURCE
    else:
        assert res.outcome == "SUCCEEDED", res.summary
        assert str(task.state) == "success" and host == TARGET
        assert saved["task"]["state"] == "success" and saved["placement"]["after"]["host"] == TARGET
    assert relocations(si) == [(task_id, str(task.state))]  # one task, never a second
    return saved


@contextlib.contextmanager
def guarded(sig: signal.Signals):
    """Our own handler around the run, so that a signal arriving after migrate() returned cannot kill
    pytest; it records the stray signal instead. Yields the list of strays."""
    strays: list[int] = []
    previous = signal.signal(sig, lambda signum, frame: strays.append(signum))
    try:
        yield strays
    finally:
        signal.signal(sig, previous)


def test_cancel_from_another_thread_cancels_the_task_and_the_record_agrees(slow_lab, tmp_path):
    info, si = slow_lab
    move = start_in_background(request(), settings_of(info), RunContext(reports_dir=tmp_path / "reports"))
    time.sleep(1.0)
    assert not move.result, "the move ended before it could be cancelled"
    cancelled_at = time.monotonic()
    move.cancel.set()
    res = move.join(60)
    assert time.monotonic() - cancelled_at < 8, "the cancel was not acted on before the task would have ended"
    assert res.outcome in ("CANCELLED", "SUCCEEDED"), res.summary
    assert res.exit_code == EXIT_OF_OUTCOME[res.outcome]
    saved = assert_final_and_true(res, info, si)
    assert res.outcome == "CANCELLED", "a 10 s move cancelled after 1 s should not have won the race"
    assert saved["task"]["id"] == move.task_id
    assert res.state.task.state == "error"
    finals = [e for e in move.events if isinstance(e, RunFinished)]
    assert [(e.outcome, e.exit_code) for e in finals] == [(res.outcome, res.exit_code)]
    assert_moves_again(info, si, tmp_path)


@pytest.mark.parametrize("sig, how", [(signal.SIGINT, "pthread_kill"), (signal.SIGTERM, "pthread_kill"),
                                      (signal.SIGINT, "kill"), (signal.SIGTERM, "kill")])
def test_a_signal_to_the_main_thread_while_the_task_runs_cancels_it(slow_lab, tmp_path, sig, how):
    info, si = slow_lab
    started = threading.Event()
    sent: list[float] = []

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "task" and event.state == "started":
            started.set()

    def deliver() -> None:  # as Ctrl-C or a scheduler's kill would, while the engine waits on the task
        if started.wait(30):
            time.sleep(1.0)
            sent.append(time.monotonic())
            if how == "kill":
                os.kill(os.getpid(), sig)
            else:
                signal.pthread_kill(threading.main_thread().ident, sig)

    killer = threading.Thread(target=deliver, daemon=True)
    with guarded(sig) as strays:
        before = signal.getsignal(sig)
        killer.start()
        res = runbook.migrate(request(), settings=settings_of(info), on_event=sink,
                              context=RunContext(reports_dir=tmp_path / "reports"))
        ended = time.monotonic()
        killer.join(5)
        assert signal.getsignal(sig) is before, "the engine did not restore the signal handler it replaced"
    assert sent, "the signal was never sent (the task did not start?)"
    assert not strays, "the signal arrived after migrate() returned: it did not interrupt the run"
    assert ended - sent[0] < 8, "the run went on to the task's natural end instead of cancelling it"
    assert res.outcome in ("CANCELLED", "SUCCEEDED"), res.summary
    saved = assert_final_and_true(res, info, si)
    assert res.outcome == "CANCELLED", "a 10 s move interrupted after 1 s should not have won the race"
    assert res.exit_code == 3
    assert sig.name in res.summary or sig.name in json.dumps(saved.get("error")), (res.summary, saved.get("error"))
    assert_moves_again(info, si, tmp_path)


def assert_moves_again(info, si, tmp_path) -> None:
    """After an interrupted run, nothing of it is left holding the VM: a new run moves it."""
    again = runbook.migrate(request(), settings=settings_of(info), context=RunContext(reports_dir=tmp_path / "again"))
    assert again.outcome == "SUCCEEDED", again.summary
    assert lab_mod.LabControl(info).placement("web-01")["host"] == TARGET


def test_an_interrupt_after_the_task_succeeded_records_success(fresh_lab, tmp_path):
    """The race the task wins: SIGINT arrives as the engine learns of the task's success."""
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 2)
    si = login(settings_of(info))
    fired: list[int] = []

    def sink(event) -> None:
        if isinstance(event, TaskProgress) and event.state == "success" and not fired:
            fired.append(event.percent)
            os.kill(os.getpid(), signal.SIGINT)  # handled in this (the main) thread, inside the engine

    try:
        with guarded(signal.SIGINT) as strays:
            res = runbook.migrate(request(), settings=settings_of(info), on_event=sink,
                                  context=RunContext(reports_dir=tmp_path / "reports"))
        assert fired, "the task's success was never reported as progress"
        assert not strays
        assert res.outcome == "SUCCEEDED" and res.exit_code == 0, res.summary
        assert_final_and_true(res, info, si)
    finally:
        logout(si)


def test_sigterm_during_the_checks_ends_cancelled_before_any_task(fresh_lab, tmp_path):
    info = fresh_lab()
    si = login(settings_of(info))
    fired: list[str] = []

    def sink(event) -> None:
        if isinstance(event, CheckDone) and not fired:
            fired.append(event.check)
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        with guarded(signal.SIGTERM) as strays:
            res = runbook.migrate(request(), settings=settings_of(info), on_event=sink,
                                  context=RunContext(reports_dir=tmp_path / "reports"))
        assert fired and not strays
        assert res.outcome == "CANCELLED" and res.exit_code == 3, res.summary
        assert res.state.task_id is None
        saved = json.loads((res.run_dir / "record.json").read_text())
        validate(saved)
        assert saved["outcome"] == "CANCELLED" and not (saved.get("task") or {}).get("id")
        assert relocations(si) == []
        assert lab_mod.LabControl(info).placement("web-01")["host"] == SOURCE
    finally:
        logout(si)


def test_a_cancel_set_before_the_run_starts_no_task(fresh_lab, tmp_path):
    info = fresh_lab()
    si = login(settings_of(info))
    cancel = threading.Event()
    cancel.set()
    try:
        res = runbook.migrate(request(), settings=settings_of(info), cancel=cancel,
                              context=RunContext(reports_dir=tmp_path / "reports"))
        assert res.outcome == "CANCELLED" and res.exit_code == 3, res.summary
        assert res.state.task_id is None and relocations(si) == []
        saved = json.loads((res.run_dir / "record.json").read_text())
        validate(saved)
        assert saved["outcome"] == "CANCELLED"
    finally:
        logout(si)


def test_a_second_signal_while_the_task_is_being_cancelled_does_not_cut_the_record_short(slow_lab, tmp_path):
    """Ctrl-C pressed twice (or SIGTERM after SIGINT): the second arrives while the engine waits for the
    vCenter to cancel the task (the lab answers CancelTask slowly here); the record still ends true."""
    info, si = slow_lab
    lab_mod.LabControl(info).set_delay("CancelTask", 2000)
    started = threading.Event()
    sent: list[str] = []

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "task" and event.state == "started":
            started.set()

    def deliver() -> None:
        if started.wait(30):
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGINT)
            sent.append("SIGINT")
            time.sleep(0.8)  # inside the slow CancelTask
            os.kill(os.getpid(), signal.SIGTERM)
            sent.append("SIGTERM")

    killer = threading.Thread(target=deliver, daemon=True)
    with guarded(signal.SIGINT) as strays_int, guarded(signal.SIGTERM) as strays_term:
        killer.start()
        res = runbook.migrate(request(), settings=settings_of(info), on_event=sink,
                              context=RunContext(reports_dir=tmp_path / "reports"))
        killer.join(10)
    assert sent == ["SIGINT", "SIGTERM"]
    assert not strays_int and not strays_term, "a signal arrived after migrate() returned"
    assert res.outcome in ("CANCELLED", "SUCCEEDED"), res.summary
    assert_final_and_true(res, info, si)


def test_an_interrupt_while_the_record_is_being_finished_keeps_the_true_outcome(fresh_lab, tmp_path):
    """SIGINT in the last instant of a run, as the outcome is announced (the record is written, the report
    and index too): migrate() still returns (it never raises once the record exists) with that outcome."""
    info = fresh_lab()
    si = login(settings_of(info))
    fired: list[str] = []

    def sink(event) -> None:
        if isinstance(event, RunFinished) and not fired:
            fired.append(event.outcome)
            os.kill(os.getpid(), signal.SIGINT)

    try:
        with guarded(signal.SIGINT) as strays:
            try:
                res = runbook.migrate(request(), settings=settings_of(info), on_event=sink,
                                      context=RunContext(reports_dir=tmp_path / "reports"))
            except BaseException as exc:  # noqa: BLE001 - the point: nothing may escape
                pytest.fail(f"migrate() raised after the record was final: {exc!r}")
        assert fired == ["SUCCEEDED"] and not strays
        assert res.outcome == "SUCCEEDED", res.summary
        assert_final_and_true(res, info, si)
    finally:
        logout(si)


def test_cancel_while_the_vcenter_is_away_ends_promptly_with_the_task_id(fresh_lab, tmp_path):
    """The vCenter goes away mid-move and the operator presses Cancel: the run must not sit out the whole
    reconnect window (60 s); it ends within the brief cancel wait, UNKNOWN, naming the task to look up."""
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 10)
    move = start_in_background(request(), settings_of(info), RunContext(reports_dir=tmp_path / "reports"))
    time.sleep(0.5)
    assert lab_mod.stop(info.state_dir)
    time.sleep(1.0)  # the engine has noticed and is trying to log in again
    cancelled_at = time.monotonic()
    move.cancel.set()
    res = move.join(90)
    took = time.monotonic() - cancelled_at
    assert res.outcome == "UNKNOWN" and res.exit_code == 5, res.summary
    assert move.task_id in res.summary
    saved = json.loads((res.run_dir / "record.json").read_text())
    validate(saved)
    assert saved["outcome"] == "UNKNOWN" and saved["task"]["id"] == move.task_id
    assert took < relocation_cancel_wait() + 5, f"the cancel was honoured only after {took:.0f} s"


def relocation_cancel_wait() -> float:
    from runbook.engine.relocation import CANCEL_WAIT_S

    return CANCEL_WAIT_S


def test_an_interrupt_while_the_move_is_being_submitted_records_what_the_lab_did(fresh_lab, tmp_path):
    """SIGINT while the vCenter has not yet answered RelocateVM_Task (a loaded vCenter; the lab answers it
    2 s late): the request is on its way, so a task may exist. The record must agree with the lab."""
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 3)
    control.set_delay("RelocateVM_Task", 2000)
    submitting = threading.Event()

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "submit" and event.state == "started":
            submitting.set()

    def deliver() -> None:
        if submitting.wait(30):
            time.sleep(0.7)
            os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=deliver, daemon=True)
    with guarded(signal.SIGINT) as strays:
        killer.start()
        res = runbook.migrate(request(), settings=settings_of(info), on_event=sink,
                              context=RunContext(reports_dir=tmp_path / "reports"))
        killer.join(5)
    assert not strays, "the signal came after migrate() returned"
    si = login(settings_of(info))
    try:
        deadline = time.monotonic() + 15  # let whatever the lab started come to its end
        while any(state in ("queued", "running") for _, state in relocations(si)) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        moves = relocations(si)
        host = control.placement("web-01")["host"]
    finally:
        logout(si)
    saved = json.loads((res.run_dir / "record.json").read_text())
    validate(saved)
    assert saved["outcome"] == res.outcome != "RUNNING"
    if res.outcome == "CANCELLED":  # true only if nothing moved: no task, or the task it found was cancelled
        assert host == SOURCE, (res.summary, moves)
        assert all(state == "error" for _, state in moves), moves
    elif res.outcome == "SUCCEEDED":
        assert host == TARGET and moves == [(saved["task"]["id"], "success")]
    else:  # the end could not be learnt: the record must send the operator to the VM's tasks
        assert res.outcome == "UNKNOWN" and res.exit_code == 5, res.summary


def test_sigterm_during_the_ping_tail_ends_the_run_promptly_and_truthfully(fresh_lab, tmp_path):
    """The task has succeeded and the probes go on for their tail (30 s here) when a scheduler sends SIGTERM:
    the run must stop probing, record SUCCEEDED (the truth) and return, not ignore the signal."""
    import socket

    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 1)
    si = login(settings_of(info))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the TCP probes' target: works without ICMP permission
    tailing = threading.Event()
    sent: list[float] = []

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "ping tail":
            tailing.set()

    def deliver() -> None:
        if tailing.wait(60):
            time.sleep(0.5)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=deliver, daemon=True)
    try:
        with guarded(signal.SIGTERM) as strays:
            killer.start()
            res = runbook.migrate(request(ping="127.0.0.1", ping_tcp_port=listener.getsockname()[1], ping_tail=30),
                                  settings=settings_of(info), on_event=sink,
                                  context=RunContext(reports_dir=tmp_path / "reports"))
            ended = time.monotonic()
            killer.join(5)
        assert sent, "the probes' tail never started"
        assert not strays, "the signal came after migrate() returned"
        assert res.outcome == "SUCCEEDED", res.summary
        assert_final_and_true(res, info, si)
        assert ended - sent[0] < 15, f"the run went on {ended - sent[0]:.0f} s after SIGTERM"
    finally:
        listener.close()
        logout(si)
