"""The move against throw-away labs, each test asserting what the lab itself reports afterwards."""
from __future__ import annotations

import pytest
from pyVmomi import vim

import runbook_lab as lab_mod
from conftest import lab_settings as settings_of
from runbook.vsphere.connection import login, logout
from runbook.errors import BadInput, ChecksFailed
from runbook.domain.migration import Migration, MoveOptions
from runbook.domain.plan import MigrationPlan


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
        "relocations": [t._moId for t in si.content.taskManager.recentTask
                        if t.info.entity is not None and t.info.entity._moId == vm._moId
                        and t.info.descriptionId == "VirtualMachine.relocate"],
    }


def run(info, si, options: MoveOptions | None = None, **plan) -> Migration:
    m = Migration(si, settings_of(info), MigrationPlan(**plan), options or MoveOptions(ping="none"))
    m.prepare()
    if m.decide() == "go":
        m.execute()
    return m


def test_host_only_move(session):
    info, si = session
    m = run(info, si, vm="web-01", target_host="esx-02.lab.local")
    assert m.outcome == "SUCCEEDED", m.summary
    after = lab_view(si, "web-01")
    assert after["host"] == "esx-02.lab.local" and "web-01" in after["host_vms"]
    assert after["disks"] == [("nfs-01", "thin")]
    assert m.task.state == "success" and m.task.duration_s > 1
    assert m.verification["ok"].all()
    kinds = {e["type"] for e in m.events}
    assert {"VmBeingHotMigratedEvent", "VmMigratedEvent"} <= kinds, kinds


@pytest.mark.parametrize("fmt, expected", [("same", "thin"), ("thin", "thin"), ("thick", "thick"),
                                           ("eagerzeroedthick", "eagerzeroedthick")])
def test_datastore_only_move_with_each_disk_format(session, fmt, expected):
    info, si = session
    m = run(info, si, vm="app-02", target_datastore="nfs-02", disk_format=fmt)
    assert m.outcome == "SUCCEEDED", m.summary
    after = lab_view(si, "app-02")
    assert after["host"] == "esx-02.lab.local"
    assert after["disks"] == [("nfs-02", expected), ("nfs-02", expected)]
    assert after["home"] == "nfs-02"


def test_host_and_datastore_together(session):
    info, si = session
    m = run(info, si, vm="db-02", target_host="esx-03.lab.local", target_datastore="local-esx-03",
            disk_format="thin")
    assert m.outcome == "SUCCEEDED", m.summary
    after = lab_view(si, "db-02")
    assert after["host"] == "esx-03.lab.local"
    assert after["disks"] == [("local-esx-03", "thin")]


def test_port_group_remap(session):
    info, si = session
    m = run(info, si, vm="web-01", target_host="esx-03.lab.local", network_map={"VM Network": "App Network"})
    assert m.outcome == "SUCCEEDED", m.summary
    assert lab_view(si, "web-01")["nics"] == ["App Network"]


def test_dry_run_leaves_the_lab_unchanged(session):
    info, si = session
    before = lab_view(si, "web-01")
    m = run(info, si, MoveOptions(dry_run=True, ping="none"), vm="web-01", target_host="esx-02.lab.local",
            target_datastore="nfs-02", disk_format="thick")
    assert m.outcome == "DRY RUN" and m.task_id is None
    assert lab_view(si, "web-01") == before


def test_injected_fault_fails_the_run_with_its_message(session):
    info, si = session
    lab_mod.LabControl(info).inject_fault("web-01", "GenericVmConfigFault", "disk lock lost on nfs-01")
    m = run(info, si, vm="web-01", target_host="esx-02.lab.local")
    assert m.outcome == "FAILED"
    assert "disk lock lost on nfs-01" in m.summary and "GenericVmConfigFault" in m.summary
    assert lab_view(si, "web-01")["host"] == "esx-01.lab.local"


def test_timeout_cancels_the_task(session):
    info, si = session
    lab_mod.LabControl(info).set_migration_seconds("web-01", 30)
    m = run(info, si, MoveOptions(timeout_s=1.5, ping="none"), vm="web-01", target_host="esx-02.lab.local")
    assert m.outcome == "TIMED OUT"
    assert "cancelled it" in m.summary
    task = vim.Task(m.task_id, si._stub)
    assert str(task.info.state) == "error" and type(task.info.error).__name__.endswith("RequestCanceled")
    assert lab_view(si, "web-01")["host"] == "esx-01.lab.local"


def test_already_there_starts_no_task(session):
    info, si = session
    before = lab_view(si, "web-01")["relocations"]
    m = run(info, si, vm="web-01", target_host="esx-01.lab.local", target_datastore="nfs-01")
    assert m.outcome == "NO CHANGE" and m.task_id is None
    assert "already there" in m.summary
    assert lab_view(si, "web-01")["relocations"] == before


def test_iso_on_another_datastore_is_not_already_there(session):
    info, si = session
    m = run(info, si, MoveOptions(dry_run=True, ping="none"), vm="iso-01", target_datastore="nfs-01")
    assert m.outcome == "DRY RUN"  # its ISO is on nfs-02: moving to nfs-01 changes something


def test_failed_check_refuses_and_force_reason_overrides(fresh_lab):
    info = fresh_lab("prereq-failures")
    si = login(settings_of(info))
    try:
        inv_host = "esx-04.lab.local"
        m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host=inv_host),
                      MoveOptions(ping="none"))
        m.prepare()
        if not m.checks["status"].eq("fail").any():
            pytest.skip(f"{inv_host} has no planted failure in this scenario")
        with pytest.raises(ChecksFailed):
            m.decide()
        assert m.outcome == "CHECKS FAILED" and m.task_id is None
        assert lab_view(si, "web-01")["host"] == "esx-01.lab.local"
    finally:
        logout(si)


def test_an_interrupted_wait_reattaches_to_the_same_task(session):
    info, si = session
    m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                  MoveOptions(ping="none"))
    m.prepare()
    assert m.decide() == "go"

    def interrupt(percent: int, state: str) -> None:
        if percent > 0:
            raise KeyboardInterrupt  # the operator pressed "interrupt kernel" while it waited

    with pytest.raises(KeyboardInterrupt):
        m.execute(on_progress=interrupt)
    first = m.task_id
    assert first is not None
    assert m.execute() == "SUCCEEDED"  # running the cell again re-attaches, it does not submit again
    assert m.task_id == first
    assert lab_view(si, "web-01")["relocations"] == [first]
    assert lab_view(si, "web-01")["host"] == "esx-02.lab.local"


def test_a_second_move_of_a_vm_being_moved_is_refused(session):
    info, si = session
    lab_mod.LabControl(info).set_migration_seconds("web-01", 5)
    first = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                      MoveOptions(ping="none"))
    first.prepare()
    first.decide()
    task = vm_obj(si, "web-01").RelocateVM_Task(spec=first.spec)  # another client's move, already running
    second = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-03.lab.local"),
                       MoveOptions(ping="none"))
    second.prepare()
    with pytest.raises((ChecksFailed, BadInput), match="already") as refused:
        second.decide() == "go" and second.execute()
    assert "\n" not in str(refused.value)
    assert second.task_id is None
    assert lab_view(si, "web-01")["relocations"] == [task._moId]


def test_the_lock_refuses_a_second_run_on_this_machine_before_asking_the_vcenter(session):
    info, si = session
    m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                  MoveOptions(ping="none"))
    m.prepare()
    m.decide()
    from runbook.domain.migration import vm_lock

    with vm_lock(m.settings.url, m.resolved.vm_moid):
        with pytest.raises(BadInput, match="another run on this machine is moving VM"):
            m.execute()
    assert m.task_id is None and lab_view(si, "web-01")["relocations"] == []
