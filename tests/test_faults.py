"""Faults during a move: each test asserts what the lab reports afterwards, not only the runbook's words."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from pyVmomi import vim

import runbook
import runbook_lab as lab_mod
from runbook.domain.placement import active_relocation
from runbook.engine import relocation
from runbook.engine.context import RunContext
from runbook.engine.events import RunFinished, Step, TaskProgress
from runbook.records.record import EXIT_OF_OUTCOME
from runbook.vsphere.connection import login, logout
from conftest import lab_settings as settings_of, start_in_background as start_move
from tcpproxy import TcpProxy as _TcpProxy

RUNBOOK = str(Path(sys.executable).with_name("runbook"))


class TcpProxy(_TcpProxy):
    """tcpproxy's forwarder with no idle timeout on its upstream sockets: the shared one gives them 5 s, so
    on a loaded machine it drops a keep-alive connection between two requests of the checks by itself
    (BrokenPipeError, FAILED) before the test cuts anything."""

    @staticmethod
    def _pipe(src, dst) -> None:
        src.settimeout(None)
        _TcpProxy._pipe(src, dst)


def relocations(si, vm_name: str) -> list[tuple[str, str]]:
    return [(t._moId, str(t.info.state)) for t in si.content.taskManager.recentTask
            if t.info.descriptionId == "VirtualMachine.relocate" and t.info.entityName == vm_name]


def on_disk(res) -> dict:
    """The run's record.json, which must agree with the result it returned."""
    saved = json.loads((res.run_dir / "record.json").read_text())
    assert saved["outcome"] == res.outcome and saved["exit_code"] == res.exit_code == EXIT_OF_OUTCOME[res.outcome]
    return saved


def move_request(**fields) -> runbook.MoveRequest:
    return runbook.MoveRequest(**{"vm": "web-01", "target_host": "esx-02.lab.local", "ping": "none", **fields})


def test_connection_drop_while_moving_reattaches_and_records_the_real_outcome(fresh_lab, tmp_path):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 3)
    proxy = TcpProxy(info.port)
    try:
        move = start_move(move_request(), settings_of(info, proxy.port), RunContext(reports_dir=tmp_path / "r"))
        time.sleep(0.7)
        proxy.cut(refuse_for=1.0)  # every connection reset, new ones refused for a second
        res = move.join(30)
    finally:
        proxy.close()
    assert res.outcome == "SUCCEEDED", res.summary
    assert res.state.task.reattached >= 1
    saved = on_disk(res)
    assert saved["outcome"] == "SUCCEEDED" and saved["task"]["id"] == res.state.task_id == move.task_id
    assert saved["task"]["reattached"] >= 1
    direct = login(settings_of(info))
    try:
        assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"
        assert relocations(direct, "web-01") == [(res.state.task_id, "success")]  # one task, never a second
    finally:
        logout(direct)


def _move_whose_submit_answer_is_lost(fresh_lab, tmp_path):
    """A move whose connection breaks while RelocateVM_Task is in flight (the lab answers it 1 s late, the
    move itself takes 3 s); returns the result, its record, the lab's relocations of the VM once they
    ended, and where the lab says the VM is."""
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 3)
    control.set_delay("RelocateVM_Task", 1000)
    proxy = TcpProxy(info.port)

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "submit" and event.state == "started":
            threading.Timer(0.4, proxy.cut, kwargs={"refuse_for": 1.5}).start()

    try:
        res = runbook.migrate(move_request(), settings=settings_of(info, proxy.port), on_event=sink,
                              context=RunContext(reports_dir=tmp_path / "r"))
    finally:
        proxy.close()
    saved = on_disk(res)
    si = login(settings_of(info))
    try:
        deadline = time.monotonic() + 15
        while any(st in ("queued", "running") for _, st in relocations(si, "web-01")) and time.monotonic() < deadline:
            time.sleep(0.2)
        moves = relocations(si, "web-01")
    finally:
        logout(si)
    return res, saved, moves, control.placement("web-01")["host"]


def test_connection_drop_while_the_move_is_submitted_finds_the_task_instead_of_guessing(fresh_lab, tmp_path):
    """The engine logs in again and looks for the relocation; the record names the one task the lab ran,
    or says UNKNOWN; it never submits a second time. (Whether the lab still makes the task when the
    connection that asked for it is gone varies from run to run: both cases must end true.)"""
    res, saved, moves, host = _move_whose_submit_answer_is_lost(fresh_lab, tmp_path)
    assert len(moves) <= 1, moves  # never a second submission
    if res.outcome == "SUCCEEDED":
        assert moves == [(saved["task"]["id"], "success")] and host == "esx-02.lab.local"
    else:
        assert res.outcome == "UNKNOWN" and res.exit_code == 5, res.summary
        assert "task" in res.summary
        if not moves:
            assert host == "esx-01.lab.local"


def test_lab_stopped_mid_move_gives_unknown_outcome_with_the_task_id(fresh_lab, tmp_path, monkeypatch):
    monkeypatch.setattr(relocation, "RECONNECT_S", 2.0)  # how long the engine waits for the vCenter to return
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 5)
    move = start_move(move_request(), settings_of(info), RunContext(reports_dir=tmp_path / "r"))
    time.sleep(0.5)
    assert lab_mod.stop(info.state_dir)
    res = move.join(60)
    assert res.outcome == "UNKNOWN" and res.exit_code == 5, res.summary
    assert move.task_id in res.summary and "Monitor > Tasks" in res.summary
    saved = on_disk(res)
    assert saved["outcome"] == "UNKNOWN" and saved["task"]["id"] == move.task_id
    assert lab_mod.status(info.state_dir) is None  # the lab really is gone


def test_target_host_disconnecting_during_the_move_fails_it_and_the_vm_stays(fresh_lab, tmp_path):
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 3)
    si = login(settings_of(info))
    try:
        move = start_move(move_request(), settings_of(info), RunContext(reports_dir=tmp_path / "r"))
        time.sleep(0.8)
        control.disconnect_host("esx-02.lab.local")
        res = move.join(30)
        assert res.outcome == "FAILED" and res.exit_code == 1, res.summary
        assert "HostNotConnected" in res.summary and "esx-02.lab.local" in res.summary
        assert control.placement("web-01")["host"] == "esx-01.lab.local"
        assert relocations(si, "web-01") == [(move.task_id, "error")]
        assert on_disk(res)["task"]["fault"] == "HostNotConnected"
    finally:
        logout(si)


def test_a_slow_vcenter_keeps_progress_moving_and_the_timeout_cancels(fresh_lab, tmp_path):
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 8)
    si = login(settings_of(info))
    marks: dict[str, float] = {}
    seen: list[int] = []

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "submit":  # slow answers from here on, not in the checks
            control.set_delay("WaitForUpdatesEx", 300)
            control.set_delay("RetrievePropertiesEx", 300)
        elif isinstance(event, Step) and event.name == "task" and event.state == "started":
            marks["task"] = time.monotonic()
        elif isinstance(event, TaskProgress):
            seen.append(event.percent)
        elif isinstance(event, RunFinished):
            marks["end"] = time.monotonic()

    try:
        res = runbook.migrate(move_request(timeout_s=3.5), settings=settings_of(info), on_event=sink,
                              context=RunContext(reports_dir=tmp_path / "r"))
        control.set_delay("WaitForUpdatesEx", 0)
        control.set_delay("RetrievePropertiesEx", 0)
        assert res.outcome == "TIMED OUT" and res.exit_code == 3, res.summary
        assert len(set(seen)) >= 3, seen  # progress kept coming: 0, 10, 20, 30 ...
        elapsed = marks["end"] - marks["task"]
        assert elapsed < 3.5 + 6, elapsed  # the timeout held (plus cancel and the final reads)
        task = vim.Task(res.state.task_id, si._stub)
        assert type(task.info.error).__name__.endswith("RequestCanceled")
        assert control.placement("web-01")["host"] == "esx-01.lab.local"
        assert on_disk(res)["task"]["id"] == res.state.task_id
    finally:
        logout(si)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([RUNBOOK, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_moving_the_same_vm_at_once_the_second_refuses(fresh_lab, tmp_path):
    info = fresh_lab()
    # long enough that the second run's checks happen while the first task runs, even on a loaded machine
    # (each CLI run spends seconds starting its kernel and reading the inventory before it checks)
    lab_mod.LabControl(info).set_migration_seconds("web-01", 45)
    env = {**os.environ, "RUNBOOK_REPORTS": str(tmp_path / "reports")}
    si = login(settings_of(info))
    try:
        vm = [v for v in si.content.rootFolder.childEntity[0].vmFolder.childEntity if v.name == "web-01"][0]
        first = _cli(["migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--ping", "none"], env)
        deadline = time.monotonic() + 60
        while active_relocation(si, vm._moId) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert active_relocation(si, vm._moId), "the first run never started its move"
        second = _cli(["migrate", "--vm", "web-01", "--host", "esx-03.lab.local", "--ping", "none"], env)
        out2, err2 = second.communicate(timeout=120)
        out1, err1 = first.communicate(timeout=120)
        assert second.returncode == 2, (out2, err2)
        assert "already" in out2 + err2 and "Traceback" not in out2 + err2, (out2, err2)
        assert first.returncode == 0, (out1, err1)
        assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"
        assert len(relocations(si, "web-01")) == 1
        records = [json.loads(p.read_text()) for p in sorted((tmp_path / "reports").glob("*/*/record.json"))]
        by_target = {r["parameters"]["target_host"]: r for r in records}
        assert by_target["esx-02.lab.local"]["outcome"] == "SUCCEEDED"
        refused = by_target["esx-03.lab.local"]
        assert refused["outcome"] in ("CHECKS FAILED", "REFUSED") and refused["exit_code"] == 2
        assert not (refused.get("task") or {}).get("id")
    finally:
        logout(si)


def test_a_fault_injected_by_the_lab_gives_a_failed_record_with_vcenters_message(fresh_lab, tmp_path):
    from runbook.fronts.pipeline import run_notebook

    info = fresh_lab()
    lab_mod.LabControl(info).inject_fault("web-01", "GenericVmConfigFault", "Failed to lock the file web-01.vmdk")
    result = run_notebook(move_request(), context=RunContext(reports_dir=tmp_path / "reports"))
    assert result.exit_code == 1
    data = json.loads((result.run_dir / "record.json").read_text())
    assert data["outcome"] == "FAILED"
    assert "Failed to lock the file web-01.vmdk" in data["summary"]
    assert data["task"]["state"] == "error" and data["task"]["fault"] == "GenericVmConfigFault"
    assert "Failed to lock the file web-01.vmdk" in result.html.read_text()
    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-01.lab.local"


def test_a_timeout_whose_cancel_gets_no_answer_records_what_the_lab_reports(fresh_lab, tmp_path):
    """The timeout passes and the runbook asks the vCenter to cancel, but CancelTask is not answered within
    the client's timeout: the runbook did not cancel anything, and the task goes on to succeed."""
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 6)
    control.set_delay("CancelTask", 6000)  # longer than the client waits for an answer (3 s below)
    settings = dataclasses.replace(settings_of(info), timeout=3.0)
    res = runbook.migrate(move_request(timeout_s=1.5), settings=settings, context=RunContext(reports_dir=tmp_path / "r"))
    saved = on_disk(res)
    task_id = saved["task"]["id"]
    si = login(settings_of(info))
    try:
        deadline = time.monotonic() + 30
        while str(vim.Task(task_id, si._stub).info.state) not in ("success", "error") and time.monotonic() < deadline:
            time.sleep(0.2)
        info_ = vim.Task(task_id, si._stub).info
        lab_host = control.placement("web-01")["host"]
    finally:
        logout(si)
    cancelled = str(info_.state) == "error" and type(info_.error).__name__.endswith("RequestCanceled")
    assert str(info_.state) == "success" and lab_host == "esx-02.lab.local", "the lab did not play its part"
    # the record may say the task's end (SUCCEEDED) or that it is unknown (UNKNOWN, exit 5), never that
    # the runbook cancelled it
    assert saved["task"]["state"] != "cancelled" or cancelled, saved["task"]
    assert res.outcome in ("SUCCEEDED", "UNKNOWN"), res.summary
    if res.outcome == "SUCCEEDED":
        assert saved["placement"]["after"]["host"] == lab_host
