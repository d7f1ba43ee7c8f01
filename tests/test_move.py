"""The engine's move against throw-away labs, each test asserting what the lab itself reports afterwards.

Every run goes through ``runbook.migrate()`` over real SOAP; the lab is then read attribute by attribute
through a session of the test's own (independent of the runbook's bulk reader), and the record the run
left on disk must say the same as the result and the lab.
"""
from __future__ import annotations

import json
import threading

import pytest
from pyVmomi import vim

import runbook
import runbook_lab as lab_mod
from conftest import lab_settings as settings_of, start_in_background
from runbook.domain.placement import vm_lock
from runbook.engine.context import RunContext
from runbook.engine.events import CheckDone, RunFinished, Step, TaskProgress
from runbook.records.record import EXIT_OF_OUTCOME
from runbook.vsphere.connection import login, logout


@pytest.fixture
def session(fresh_lab):
    """A fresh default lab and a session to it: (info, si)."""
    info = fresh_lab()
    si = login(settings_of(info))
    yield info, si
    logout(si)


def vm_obj(si, name: str) -> vim.VirtualMachine:
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(v for v in view.view if v.name == name)
    finally:
        view.DestroyView()


def lab_view(si, name: str) -> dict:
    """Where the vCenter says the VM is, read attribute by attribute (independent of the runbook's reader)."""
    vm = vm_obj(si, name)
    disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    nics = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    return {
        "host": vm.runtime.host.name,
        "disks": [(d.backing.datastore.name, "thin" if d.backing.thinProvisioned else
                   "eagerzeroedthick" if d.backing.eagerlyScrub else "thick") for d in disks],
        "home": vm.config.files.vmPathName.split("]")[0].strip("["),
        "nics": [n.backing.network.name for n in nics],
        "host_vms": sorted(v.name for v in vm.runtime.host.vm),
        "relocations": relocations(si, vm),
    }


def relocations(si, vm: vim.VirtualMachine) -> list[tuple[str, str]]:
    """Every relocation task of the VM the vCenter knows, with its state."""
    return [(t._moId, str(t.info.state)) for t in si.content.taskManager.recentTask
            if t.info.entity is not None and t.info.entity._moId == vm._moId
            and t.info.descriptionId == "VirtualMachine.relocate"]


def on_disk(res) -> dict:
    """The run's record.json, which must agree with the result it returned."""
    assert res.run_dir is not None, "the run left no record"
    saved = json.loads((res.run_dir / "record.json").read_text())
    assert saved["outcome"] == res.outcome and saved["exit_code"] == res.exit_code == EXIT_OF_OUTCOME[res.outcome]
    return saved


def run(info, tmp_path, events: list | None = None, cancel: threading.Event | None = None, **fields):
    """One engine move with ping off unless asked; its RunResult."""
    fields.setdefault("ping", "none")
    return runbook.migrate(runbook.MoveRequest(**fields), settings=settings_of(info),
                           context=RunContext(reports_dir=tmp_path / "reports"),
                           on_event=(events.append if events is not None else None), cancel=cancel)


def test_host_only_move(session, tmp_path):
    info, si = session
    events: list = []
    res = run(info, tmp_path, events, vm="web-01", target_host="esx-02.lab.local")
    assert res.outcome == "SUCCEEDED", res.summary
    assert res.exit_code == 0
    after = lab_view(si, "web-01")
    assert after["host"] == "esx-02.lab.local" and "web-01" in after["host_vms"]
    assert after["disks"] == [("nfs-01", "thin")]
    s = res.state
    assert s.task.state == "success" and s.task.duration_s > 1
    assert after["relocations"] == [(s.task_id, "success")]
    assert s.verification["ok"].all()
    kinds = {e["type"] for e in s.events}
    assert {"VmBeingHotMigratedEvent", "VmMigratedEvent"} <= kinds, kinds
    saved = on_disk(res)
    assert saved["task"]["id"] == s.task_id and saved["task"]["state"] == "success"
    assert saved["placement"]["after"]["host"] == "esx-02.lab.local"
    # the events a front shows: checks before the task, progress during it, the outcome last
    names = [type(e).__name__ for e in events]
    assert names.index("CheckDone") < next(i for i, e in enumerate(events)
                                           if isinstance(e, Step) and e.name == "task" and e.state == "started")
    assert any(isinstance(e, TaskProgress) and e.task == s.task_id for e in events)
    assert isinstance(events[-1], RunFinished) and events[-1].outcome == "SUCCEEDED"


@pytest.mark.parametrize("fmt, expected", [("same", "thin"), ("thin", "thin"), ("thick", "thick"),
                                           ("eagerzeroedthick", "eagerzeroedthick")])
def test_datastore_only_move_with_each_disk_format(session, tmp_path, fmt, expected):
    info, si = session
    res = run(info, tmp_path, vm="app-02", target_datastore="nfs-02", disk_format=fmt)
    assert res.outcome == "SUCCEEDED", res.summary
    after = lab_view(si, "app-02")
    assert after["host"] == "esx-02.lab.local"
    assert after["disks"] == [("nfs-02", expected), ("nfs-02", expected)]
    assert after["home"] == "nfs-02"
    assert on_disk(res)["placement"]["after"]["home_datastore"] == "nfs-02"


def test_host_and_datastore_together(session, tmp_path):
    info, si = session
    res = run(info, tmp_path, vm="db-02", target_host="esx-03.lab.local", target_datastore="local-esx-03",
              disk_format="thin")
    assert res.outcome == "SUCCEEDED", res.summary
    after = lab_view(si, "db-02")
    assert after["host"] == "esx-03.lab.local"
    assert after["disks"] == [("local-esx-03", "thin")]


def test_port_group_remap(session, tmp_path):
    info, si = session
    res = run(info, tmp_path, vm="web-01", target_host="esx-03.lab.local",
              network_map={"VM Network": "App Network"})
    assert res.outcome == "SUCCEEDED", res.summary
    assert lab_view(si, "web-01")["nics"] == ["App Network"]


def test_dry_run_leaves_the_lab_unchanged(session, tmp_path):
    info, si = session
    before = lab_view(si, "web-01")
    res = run(info, tmp_path, vm="web-01", target_host="esx-02.lab.local", target_datastore="nfs-02",
              disk_format="thick", dry_run=True)
    assert res.outcome == "DRY RUN" and res.exit_code == 0 and res.state.task_id is None
    assert lab_view(si, "web-01") == before
    assert on_disk(res).get("task") in (None, {})


def test_injected_fault_fails_the_run_with_its_message(session, tmp_path):
    info, si = session
    lab_mod.LabControl(info).inject_fault("web-01", "GenericVmConfigFault", "disk lock lost on nfs-01")
    res = run(info, tmp_path, vm="web-01", target_host="esx-02.lab.local")
    assert res.outcome == "FAILED" and res.exit_code == 1
    assert "disk lock lost on nfs-01" in res.summary and "GenericVmConfigFault" in res.summary
    after = lab_view(si, "web-01")
    assert after["host"] == "esx-01.lab.local"
    assert after["relocations"] == [(res.state.task_id, "error")]
    saved = on_disk(res)
    assert saved["task"]["fault"] == "GenericVmConfigFault"


def test_timeout_cancels_the_task(session, tmp_path):
    info, si = session
    lab_mod.LabControl(info).set_migration_seconds("web-01", 30)
    res = run(info, tmp_path, vm="web-01", target_host="esx-02.lab.local", timeout_s=1.5)
    assert res.outcome == "TIMED OUT" and res.exit_code == 3
    assert "cancelled it" in res.summary
    task = vim.Task(res.state.task_id, si._stub)
    assert str(task.info.state) == "error" and type(task.info.error).__name__.endswith("RequestCanceled")
    assert lab_view(si, "web-01")["host"] == "esx-01.lab.local"
    assert on_disk(res)["task"]["id"] == res.state.task_id


def test_already_there_starts_no_task(session, tmp_path):
    info, si = session
    before = lab_view(si, "web-01")["relocations"]
    res = run(info, tmp_path, vm="web-01", target_host="esx-01.lab.local", target_datastore="nfs-01")
    assert res.outcome == "NO CHANGE" and res.exit_code == 0 and res.state.task_id is None
    assert "already there" in res.summary
    assert lab_view(si, "web-01")["relocations"] == before


def test_iso_on_another_datastore_is_not_already_there(session, tmp_path):
    info, si = session
    res = run(info, tmp_path, vm="iso-01", target_datastore="nfs-01", dry_run=True)
    assert res.outcome == "DRY RUN", res.summary  # its ISO is on nfs-02: moving to nfs-01 changes something


def test_failed_check_refuses_without_raising_and_starts_no_task(fresh_lab, tmp_path):
    info = fresh_lab("prereq-failures")
    si = login(settings_of(info))
    try:
        events: list = []
        res = run(info, tmp_path, events, vm="web-01", target_host="esx-04.lab.local")  # no vMotion vmk
        assert res.outcome == "CHECKS FAILED" and res.exit_code == 2, res.summary
        assert res.state.checks["status"].eq("fail").any()
        assert any(isinstance(e, CheckDone) and e.status == "fail" for e in events)
        assert res.state.task_id is None
        after = lab_view(si, "web-01")
        assert after["host"] == "esx-01.lab.local" and after["relocations"] == []
        saved = on_disk(res)
        assert any(c["status"] == "fail" for c in saved["checks"])
    finally:
        logout(si)


def test_force_reason_overrides_a_failed_check_and_the_record_says_why(fresh_lab, tmp_path):
    info = fresh_lab("prereq-failures")
    si = login(settings_of(info))
    try:
        res = run(info, tmp_path, vm="web-01", target_host="esx-04.lab.local",
                  force_reason="CHG-9: vMotion adapter added out of band")
        s = res.state
        assert s.checks["status"].eq("fail").any()
        assert s.task_id is not None, "force_reason did not let the move start"
        after = lab_view(si, "web-01")
        # the vCenter decides: the lab refuses a host without vMotion, and the record says what it said
        assert after["relocations"] == [(s.task_id, "success" if res.outcome == "SUCCEEDED" else "error")]
        assert after["host"] == ("esx-04.lab.local" if res.outcome == "SUCCEEDED" else "esx-01.lab.local")
        saved = on_disk(res)
        assert saved["force_reason"] == "CHG-9: vMotion adapter added out of band"
        assert saved["task"]["id"] == s.task_id
    finally:
        logout(si)


def test_a_move_of_a_vm_another_client_is_moving_fails_its_checks(session, tmp_path):
    info, si = session
    lab_mod.LabControl(info).set_migration_seconds("web-01", 5)
    plan = run(info, tmp_path, vm="web-01", target_host="esx-02.lab.local", dry_run=True)
    task = vm_obj(si, "web-01").RelocateVM_Task(spec=plan.state.spec)  # another client's move, already running
    res = run(info, tmp_path, vm="web-01", target_host="esx-03.lab.local")
    assert res.outcome == "CHECKS FAILED" and res.exit_code == 2, res.summary
    assert "\n" not in res.summary
    checks = on_disk(res)["checks"]
    assert any(task._moId in c["found"] and "already running" in c["found"] for c in checks), checks
    assert any(c["status"] == "fail" and "TaskInProgress" in c["check"] for c in checks), checks
    assert res.state.task_id is None
    assert [t for t, _ in lab_view(si, "web-01")["relocations"]] == [task._moId]


def test_a_move_started_by_another_client_after_the_checks_is_refused(session, tmp_path):
    """The race the checks cannot see: another client's relocation starts between checks and submit."""
    info, si = session
    lab_mod.LabControl(info).set_migration_seconds("web-01", 5)
    plan = run(info, tmp_path, vm="web-01", target_host="esx-02.lab.local", dry_run=True)
    other: list = []

    def sink(event) -> None:
        if isinstance(event, Step) and event.name == "checks" and event.state == "ended":
            other.append(vm_obj(si, "web-01").RelocateVM_Task(spec=plan.state.spec))

    res = run(info, tmp_path, [], vm="web-01", target_host="esx-03.lab.local")  # warm-up: nothing running
    assert res.outcome == "SUCCEEDED", res.summary
    res = runbook.migrate(runbook.MoveRequest(vm="web-01", target_host="esx-01.lab.local", ping="none"),
                          settings=settings_of(info), context=RunContext(reports_dir=tmp_path / "reports"),
                          on_event=sink)
    assert other, "the other client's move was not started"
    assert res.outcome == "REFUSED" and res.exit_code == 2, res.summary
    assert "already" in res.summary and other[0]._moId in res.summary and "\n" not in res.summary
    assert res.state.task_id is None
    moves = [t for t, _ in lab_view(si, "web-01")["relocations"]]
    assert moves[-1] == other[0]._moId and res.state.task_id not in moves
    assert on_disk(res).get("task") in (None, {})


def test_the_lock_refuses_a_second_run_on_this_machine_before_asking_the_vcenter(session, tmp_path):
    info, si = session
    vm = vm_obj(si, "web-01")
    with vm_lock(settings_of(info).url, vm._moId):
        res = run(info, tmp_path, vm="web-01", target_host="esx-02.lab.local")
    assert res.outcome == "REFUSED" and res.exit_code == 2, res.summary
    assert "another run on this machine is moving VM" in res.summary
    assert res.state.task_id is None and lab_view(si, "web-01")["relocations"] == []
    on_disk(res)


def test_two_engine_runs_at_once_the_second_starts_no_task(session, tmp_path):
    """A second run while the first one's task runs: refused (the checks see the task), exit 2."""
    info, si = session
    lab_mod.LabControl(info).set_migration_seconds("web-01", 4)
    first = start_in_background(runbook.MoveRequest(vm="web-01", target_host="esx-02.lab.local", ping="none"),
                                settings_of(info), RunContext(reports_dir=tmp_path / "reports"))
    second = run(info, tmp_path, vm="web-01", target_host="esx-03.lab.local")
    done = first.join(60)
    assert second.outcome in ("CHECKS FAILED", "REFUSED") and second.exit_code == 2, second.summary
    assert second.state.task_id is None
    assert done.outcome == "SUCCEEDED", done.summary
    after = lab_view(si, "web-01")
    assert after["host"] == "esx-02.lab.local"
    assert after["relocations"] == [(done.state.task_id, "success")]
    on_disk(second), on_disk(done)
    assert second.run_dir != done.run_dir
