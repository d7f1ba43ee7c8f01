"""Faults during a move: each test asserts what the lab reports afterwards, not only the runbook's words."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pyVmomi import vim

import runbook_lab as lab_mod
from runbook.vsphere.connection import login, logout
from runbook.domain.migration import Migration, MoveOptions, active_relocation
from runbook.domain.plan import MigrationPlan
from runbook.records.record import RunRecord
from conftest import lab_settings as settings_of, start_in_background as start_move
from tcpproxy import TcpProxy

RUNBOOK = str(Path(sys.executable).with_name("runbook"))


def relocations(si, vm_name: str) -> list[tuple[str, str]]:
    return [(t._moId, str(t.info.state)) for t in si.content.taskManager.recentTask
            if t.info.descriptionId == "VirtualMachine.relocate" and t.info.entityName == vm_name]


def test_connection_drop_while_moving_reattaches_and_records_the_real_outcome(fresh_lab, tmp_path):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 3)
    proxy = TcpProxy(info.port)
    si = login(settings_of(info, proxy.port))
    record = RunRecord(kind="migrate", run_dir=tmp_path)
    m = Migration(si, settings_of(info, proxy.port), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                  MoveOptions(ping="none", reconnect_s=20), record=record)
    try:
        thread = start_move(m)
        time.sleep(0.7)
        proxy.cut(refuse_for=1.0)  # every connection reset, new ones refused for a second
        thread.join(30)
    finally:
        proxy.close()
    assert m.outcome == "SUCCEEDED", m.summary
    assert m.task.reattached >= 1
    saved = json.loads((tmp_path / "record.json").read_text())
    assert saved["outcome"] == "SUCCEEDED" and saved["task"]["id"] == m.task_id
    assert saved["task"]["reattached"] >= 1
    direct = login(settings_of(info))
    try:
        assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"
        assert relocations(direct, "web-01") == [(m.task_id, "success")]  # one task, never a second
    finally:
        logout(direct)


def test_lab_stopped_mid_move_gives_unknown_outcome_with_the_task_id(fresh_lab, tmp_path):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 5)
    si = login(settings_of(info))
    record = RunRecord(kind="migrate", run_dir=tmp_path)
    m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                  MoveOptions(ping="none", reconnect_s=2), record=record)
    thread = start_move(m)
    time.sleep(0.5)
    assert lab_mod.stop(info.state_dir)
    thread.join(30)
    assert m.outcome == "UNKNOWN"
    assert m.task_id in m.summary and "Monitor > Tasks" in m.summary
    saved = json.loads((tmp_path / "record.json").read_text())
    assert saved["outcome"] == "UNKNOWN" and saved["task"]["id"] == m.task_id
    assert lab_mod.status(info.state_dir) is None  # the lab really is gone


def test_target_host_disconnecting_during_the_move_fails_it_and_the_vm_stays(fresh_lab):
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 3)
    si = login(settings_of(info))
    try:
        m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                      MoveOptions(ping="none"))
        thread = start_move(m)
        time.sleep(0.8)
        control.disconnect_host("esx-02.lab.local")
        thread.join(30)
        assert m.outcome == "FAILED"
        assert "HostNotConnected" in m.summary and "esx-02.lab.local" in m.summary
        assert control.placement("web-01")["host"] == "esx-01.lab.local"
        assert relocations(si, "web-01") == [(m.task_id, "error")]
    finally:
        logout(si)


def test_a_slow_vcenter_keeps_progress_moving_and_the_timeout_cancels(fresh_lab):
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 8)
    si = login(settings_of(info))
    try:
        m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                      MoveOptions(ping="none", timeout_s=3.5))
        m.prepare()
        m.decide()
        control.set_delay("WaitForUpdatesEx", 300)
        control.set_delay("RetrievePropertiesEx", 300)
        seen: list[int] = []
        started = time.monotonic()
        outcome = m.execute(on_progress=lambda pct, state: seen.append(pct))
        elapsed = time.monotonic() - started
        control.set_delay("WaitForUpdatesEx", 0)
        control.set_delay("RetrievePropertiesEx", 0)
        assert outcome == "TIMED OUT", m.summary
        assert len(set(seen)) >= 3, seen  # progress kept coming: 0, 10, 20, 30 ...
        assert elapsed < 3.5 + 6, elapsed  # the timeout held (plus cancel and the final reads)
        task = vim.Task(m.error.task_id, si._stub)
        assert type(task.info.error).__name__.endswith("RequestCanceled")
        assert control.placement("web-01")["host"] == "esx-01.lab.local"
    finally:
        logout(si)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([RUNBOOK, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_moving_the_same_vm_at_once_the_second_refuses(fresh_lab, tmp_path):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 20)
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
        errors = [line for line in err2.splitlines() if line.startswith("runbook:")]
        assert len(errors) == 1 and "already" in errors[0], err2
        assert "Traceback" not in out2 + err2
        assert first.returncode == 0, (out1, err1)
        assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"
        assert len(relocations(si, "web-01")) == 1
    finally:
        logout(si)


def test_a_fault_injected_by_the_lab_gives_a_failed_record_with_vcenters_message(fresh_lab, tmp_path):
    from runbook.fronts.pipeline import run_notebook

    info = fresh_lab()
    lab_mod.LabControl(info).inject_fault("web-01", "GenericVmConfigFault", "Failed to lock the file web-01.vmdk")
    result = run_notebook("migrate", {"vm": "web-01", "target_host": "esx-02.lab.local", "ping": "none"},
                          reports_dir=tmp_path / "reports")
    assert result.exit_code == 1
    data = json.loads((result.run_dir / "record.json").read_text())
    assert data["outcome"] == "FAILED"
    assert "Failed to lock the file web-01.vmdk" in data["summary"]
    assert data["task"]["state"] == "error" and data["task"]["fault"] == "GenericVmConfigFault"
    assert "Failed to lock the file web-01.vmdk" in result.html.read_text()
    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-01.lab.local"
