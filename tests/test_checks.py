"""Tests of runbook.checks on hand-built inventories: every check passes and fails on plain data."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pandas as pd
import pytest
from pyVmomi import vim, vmodl

from runbook.domain.checks import (CHECKS, FAULT_TO_CHECK, OBJECTS_EXIST, CheckResult, CheckSettings, check_names, failed,
                            fault_check_name, run_checks, vcenter_verdict, verdict)
from runbook.domain.checks.hosts import (CONCURRENCY, CPU_COMPATIBILITY, SOURCE_HOST_CONNECTED, TARGET_HOST_STATE,
                                  VMOTION_NETWORK)
from runbook.domain.checks.storage import DISK_FORMAT, FREE_SPACE, SHARED_STORAGE, TARGET_DATASTORE
from runbook.domain.checks.vm import DEVICES, MOVE_CHANGES, NO_RUNNING_MIGRATION, PORT_GROUPS, POWER_STATE
from runbook.errors import Ambiguous, BadInput, NotFound
from runbook.domain.plan import MigrationPlan, resolve
from runbook.domain.spec import build_relocate_spec
from test_plan import GIB, host, make_inventory

def run(inv=None, settings=None, **plan):
    return run_checks(inv or make_inventory(), MigrationPlan(**plan), settings)


def row(df: pd.DataFrame, name: str) -> pd.Series:
    rows = df[df["check"] == name]
    assert len(rows) == 1, f"no single row {name!r} in {df['check'].tolist()}"
    return rows.iloc[0]


def status(df, name):
    return row(df, name)["status"]


def set_host(inv, name, **values):
    for column, value in values.items():
        idx = inv.hosts.index[inv.hosts["name"] == name][0]
        inv.hosts.at[idx, column] = value
    return inv


def set_ds(inv, name, **values):
    for column, value in values.items():
        idx = inv.datastores.index[inv.datastores["name"] == name][0]
        inv.datastores.at[idx, column] = value
    return inv


def set_vm(inv, name, **values):
    for column, value in values.items():
        idx = inv.vms.index[inv.vms["name"] == name][0]
        inv.vms.at[idx, column] = value
    return inv


# --- the table, the verdict, the registry ------------------------------------------------------------

def test_clean_host_move_passes_everything():
    df = run(vm="web1", target_host="esx2")
    assert list(df.columns) == ["check", "status", "found", "remedy"]
    assert df["check"].tolist() == check_names()
    assert set(df["status"]) <= {"pass", "skip"}, df[df["status"] != "pass"].to_dict("records")
    assert verdict(df).startswith("All ") and "checks passed" in verdict(df)
    assert failed(df) == []


def test_objects_exist_row_names_what_was_found():
    df = run(vm="web1", target_host="esx2", target_datastore="shared")
    found = row(df, OBJECTS_EXIST)["found"]
    assert status(df, OBJECTS_EXIST) == "pass" and "vm-1" in found and "host-2" in found and "datastore-10" in found


@pytest.mark.parametrize("plan, error", [
    (dict(vm="missing", target_host="esx2"), NotFound),
    (dict(vm="dup", target_host="esx2"), Ambiguous),
    (dict(vm="web1", target_datastore="nope"), NotFound),
])
def test_resolution_errors_are_raised_before_checks(plan, error):
    with pytest.raises(error) as info:
        run(**plan)
    assert isinstance(info.value, BadInput) and info.value.exit_code == 2


def test_verdict_lines():
    rows = lambda *statuses: pd.DataFrame([  # noqa: E731
        dict(check=f"c{i}", status=s, found="", remedy="") for i, s in enumerate(statuses)])
    assert verdict(rows("pass", "pass", "skip")) == "All 2 checks passed (1 skipped)"
    assert verdict(rows("pass", "warn")) == "passed with 1 warning: c1"
    assert verdict(rows("fail", "fail", "warn")) == "2 checks failed: c0, c1 (and 1 warning)"
    assert failed(rows("pass", "fail")) == ["c1: "]


def test_a_crashing_check_fails_closed(monkeypatch):
    def broken(inventory, resolved, settings):
        raise KeyError("cpu_vendor")

    broken.check_name = "broken"
    monkeypatch.setattr("runbook.domain.checks.CHECKS", CHECKS + [broken])
    df = run(vm="web1", target_host="esx2")
    assert status(df, "broken") == "fail" and "KeyError" in row(df, "broken")["found"]


def test_check_result_rejects_unknown_status():
    with pytest.raises(ValueError):
        CheckResult("x", "ok", "")


# --- move changes something ----------------------------------------------------------------------------

def test_move_changes_something():
    assert status(run(vm="web1", target_host="esx2"), MOVE_CHANGES) == "pass"
    df = run(vm="web1", target_host="esx1", target_datastore="shared")
    assert status(df, MOVE_CHANGES) == "warn"
    assert row(df, MOVE_CHANGES)["found"].startswith("already there: nothing to do")


def test_iso_elsewhere_is_not_already_there():
    df = run(vm="app1", target_host="esx1", target_datastore="shared")
    assert status(df, MOVE_CHANGES) == "pass"


# --- hosts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, words", [
    (dict(connection_state="disconnected"), "disconnected"),
    (dict(power_state="standBy"), "standBy"),
    (dict(maintenance=True), "maintenance mode"),
])
def test_target_host_state_fails(values, words):
    df = run(set_host(make_inventory(), "esx2", **values), vm="web1", target_host="esx2")
    assert status(df, TARGET_HOST_STATE) == "fail" and words in row(df, TARGET_HOST_STATE)["found"]
    assert "esx2" in row(df, TARGET_HOST_STATE)["remedy"]


def test_target_host_state_pass_and_skip():
    assert status(run(vm="web1", target_host="esx2"), TARGET_HOST_STATE) == "pass"
    assert status(run(vm="web1", target_datastore="local-esx1"), TARGET_HOST_STATE) == "skip"


def test_source_host_connected():
    assert status(run(vm="web1", target_host="esx2"), SOURCE_HOST_CONNECTED) == "pass"
    df = run(set_host(make_inventory(), "esx1", connection_state="notResponding"), vm="web1", target_host="esx2")
    assert status(df, SOURCE_HOST_CONNECTED) == "fail" and "notResponding" in row(df, SOURCE_HOST_CONNECTED)["found"]


def test_vmotion_adapter_missing_names_the_remediation_command():
    inv = make_inventory(hosts=[host("esx1", "host-1"), host("esx2", "host-2", vmotion_vmks=[], vmotion_enabled=False),
                                host("esx3", "host-3", cluster="C2")])
    df = run(inv, vm="web1", target_host="esx2")
    assert status(df, VMOTION_NETWORK) == "fail"
    assert "esx2" in row(df, VMOTION_NETWORK)["found"]
    remedy = row(df, VMOTION_NETWORK)["remedy"]
    assert "runbook enable-vmotion --host esx2 --apply" in remedy and "notebooks/enable_vmotion.ipynb" in remedy


def test_vmotion_adapter_pass_and_skips():
    assert status(run(vm="web1", target_host="esx2"), VMOTION_NETWORK) == "pass"
    assert status(run(vm="web1", target_datastore="local-esx1"), VMOTION_NETWORK) == "skip"
    inv = set_vm(make_inventory(hosts=[host("esx1", "host-1", vmotion_vmks=[]), host("esx2", "host-2"),
                                       host("esx3", "host-3", cluster="C2")]), "web1", power_state="poweredOff")
    assert status(run(inv, vm="web1", target_host="esx2"), VMOTION_NETWORK) == "skip"


def test_cpu_vendor_differs_fails():
    df = run(vm="web1", target_host="esx3")
    assert status(df, CPU_COMPATIBILITY) == "fail" and "intel" in row(df, CPU_COMPATIBILITY)["found"]


def test_cpu_same_evc_passes_and_cold_move_skips():
    assert status(run(vm="web1", target_host="esx2"), CPU_COMPATIBILITY) == "pass"
    inv = set_vm(make_inventory(), "web1", power_state="poweredOff")
    assert status(run(inv, vm="web1", target_host="esx3"), CPU_COMPATIBILITY) == "skip"


def test_cpu_evc_modes():
    inv = set_host(make_inventory(), "esx2", evc_mode=None, max_evc_mode="intel-icelake")
    assert status(run(inv, vm="web1", target_host="esx2"), CPU_COMPATIBILITY) == "pass"
    inv = set_host(make_inventory(), "esx2", evc_mode=None, max_evc_mode="intel-haswell")
    assert status(run(inv, vm="web1", target_host="esx2"), CPU_COMPATIBILITY) == "fail"
    inv = set_host(make_inventory(), "esx1", evc_mode=None, cpu_model="Xeon E5")
    inv = set_host(inv, "esx2", evc_mode=None)
    df = run(inv, vm="web1", target_host="esx2")
    assert status(df, CPU_COMPATIBILITY) == "warn" and "EVC" in row(df, CPU_COMPATIBILITY)["found"]


def test_concurrency_limits():
    assert status(run(vm="web1", target_host="esx2"), CONCURRENCY) == "pass"
    inv = set_host(make_inventory(), "esx2", running_migrations=8)
    df = run(inv, vm="web1", target_host="esx2")
    assert status(df, CONCURRENCY) == "warn" and "queue" in row(df, CONCURRENCY)["found"]
    inv = set_host(make_inventory(), "esx1", running_migrations=2)
    assert status(run(inv, vm="web1", target_host="esx2"), CONCURRENCY) == "pass"  # 3 vMotions fit
    assert status(run(inv, vm="web1", target_datastore="local-esx1"), CONCURRENCY) == "warn"  # 3 svMotions don't
    inv = set_ds(make_inventory(), "local-esx1", running_migrations=8)
    assert status(run(inv, vm="web1", target_datastore="local-esx1"), CONCURRENCY) == "warn"


# --- storage ---------------------------------------------------------------------------------------------------

def test_shared_storage_pass_and_skip():
    assert status(run(vm="web1", target_host="esx2"), SHARED_STORAGE) == "pass"
    assert status(run(vm="web1", target_datastore="local-esx1"), SHARED_STORAGE) == "skip"


def test_shared_storage_local_disk_fails_naming_it():
    df = run(vm="db1", target_host="esx2")
    assert status(df, SHARED_STORAGE) == "fail"
    found = row(df, SHARED_STORAGE)["found"]
    assert "local-esx1" in found and "Hard disk 1" in found and "VM files" in found
    assert "target datastore" in row(df, SHARED_STORAGE)["remedy"]


def test_shared_storage_iso_elsewhere_fails_even_when_moving_storage():
    df = run(vm="app1", target_host="esx2")
    assert status(df, SHARED_STORAGE) == "fail" and "ISO of CD/DVD drive 1" in row(df, SHARED_STORAGE)["found"]
    df = run(vm="app1", target_host="esx2", target_datastore="local-esx2")
    assert status(df, SHARED_STORAGE) == "fail" and "iso" in row(df, SHARED_STORAGE)["found"]
    assert status(run(vm="db1", target_host="esx2", target_datastore="local-esx2"), SHARED_STORAGE) == "pass"


def test_target_datastore_usable():
    assert status(run(vm="web1", target_datastore="local-esx1"), TARGET_DATASTORE) == "pass"
    assert status(run(vm="web1", target_host="esx2"), TARGET_DATASTORE) == "skip"
    df = run(vm="web1", target_datastore="local-esx2")
    assert status(df, TARGET_DATASTORE) == "fail" and "not mounted on host esx1" in row(df, TARGET_DATASTORE)["found"]
    inv = set_ds(make_inventory(), "local-esx1", read_only_hosts=["esx1"])
    df = run(inv, vm="web1", target_datastore="local-esx1")
    assert status(df, TARGET_DATASTORE) == "fail" and "read-only" in row(df, TARGET_DATASTORE)["found"]
    inv = set_ds(make_inventory(), "local-esx1", accessible=False)
    assert "not accessible" in row(run(inv, vm="web1", target_datastore="local-esx1"), TARGET_DATASTORE)["found"]
    inv = set_ds(make_inventory(), "local-esx1", maintenance_mode="inMaintenance")
    assert status(run(inv, vm="web1", target_datastore="local-esx1"), TARGET_DATASTORE) == "fail"


def _space_inventory(free_gib: int, capacity_gib: int = 1000):
    inv = make_inventory()
    set_ds(inv, "local-esx1", free_bytes=free_gib * GIB, capacity_bytes=capacity_gib * GIB)
    return set_vm(inv, "web1", power_state="poweredOff")  # no swap file: disk sizes only


@pytest.mark.parametrize("fmt, free_gib, expected", [
    ("thin", 9, "fail"),        # committed 10 GiB does not fit
    ("thin", 200, "pass"),
    ("thin", 105, "warn"),      # fits, leaves 95 GiB < 10% of 1000 GiB
    ("thick", 39, "fail"),      # capacity 40 GiB
    ("eagerzeroedthick", 500, "pass"),
    ("same", 11, "warn"),       # web1's disk is thin: committed size counts
])
def test_free_space(fmt, free_gib, expected):
    df = run(_space_inventory(free_gib), vm="web1", target_datastore="local-esx1", disk_format=fmt)
    assert status(df, FREE_SPACE) == expected, row(df, FREE_SPACE)["found"]
    assert "local-esx1" in row(df, FREE_SPACE)["found"]


def test_free_space_margin_is_a_setting():
    df = run(_space_inventory(105), CheckSettings(free_space_margin_pct=5), vm="web1", target_datastore="local-esx1")
    assert status(df, FREE_SPACE) == "pass"


def test_free_space_counts_only_moving_disks_and_same_per_disk_format():
    no_margin = CheckSettings(free_space_margin_pct=0)
    inv = set_ds(make_inventory(), "shared", free_bytes=104 * GIB)
    inv = set_vm(inv, "db1", power_state="poweredOff")
    # db1: disk 2000 thick 100 GiB on local-esx1 moves; disk 2001 already on shared does not.
    assert status(run(inv, no_margin, vm="db1", target_datastore="shared"), FREE_SPACE) == "pass"
    inv = set_ds(inv, "shared", free_bytes=99 * GIB)
    assert status(run(inv, no_margin, vm="db1", target_datastore="shared"), FREE_SPACE) == "fail"
    assert "Hard disk 1 (vm_2000.vmdk) as thick" in row(run(inv, no_margin, vm="db1", target_datastore="shared"), FREE_SPACE)["found"]


def test_free_space_counts_swap_of_powered_on_vm():
    inv = set_ds(make_inventory(), "local-esx1", free_bytes=12 * GIB, capacity_bytes=20 * GIB)
    df = run(inv, vm="web1", target_datastore="local-esx1")  # 10 GiB disk + 4 GiB swap
    assert status(df, FREE_SPACE) == "fail" and "swap" in row(df, FREE_SPACE)["found"]


def test_free_space_skips():
    assert status(run(vm="web1", target_host="esx2"), FREE_SPACE) == "skip"


def test_disk_format_in_place_fails_with_the_plans_remedy():
    """One rule for plan and check: a format changes only when a disk is copied to another datastore."""
    remedy = "Storage vMotion to another datastore and back, or pick another datastore"
    inv = make_inventory()
    ok = resolve(inv, MigrationPlan(vm="db1", target_datastore="shared", disk_format="thin"))
    assert status(run_checks(inv, ok), DISK_FORMAT) == "pass"  # Hard disk 2 is thin already
    # the plan refuses a format it cannot give; handed such a plan anyway, the check fails it the same way
    with pytest.raises(BadInput, match=remedy):
        run(vm="db1", target_datastore="shared", disk_format="thick")
    asked = dataclasses.replace(ok, plan=MigrationPlan(vm="db1", target_datastore="shared", disk_format="thick"))
    df = run_checks(inv, asked)
    assert status(df, DISK_FORMAT) == "fail" and "Hard disk 2 (vm_2001.vmdk) is thin and stays on shared" in row(
        df, DISK_FORMAT)["found"]
    assert row(df, DISK_FORMAT)["remedy"] == remedy
    assert status(run(vm="web1", target_datastore="local-esx1", disk_format="thick"), DISK_FORMAT) == "pass"
    assert status(run(vm="web1", target_datastore="local-esx1"), DISK_FORMAT) == "skip"


# --- VM --------------------------------------------------------------------------------------------------------

def test_port_groups():
    assert status(run(vm="web1", target_host="esx2"), PORT_GROUPS) == "pass"
    inv = set_host(make_inventory(), "esx2", port_groups=["App"])
    df = run(inv, vm="web1", target_host="esx2")
    assert status(df, PORT_GROUPS) == "fail"
    assert "'VM Network'" in row(df, PORT_GROUPS)["found"] and "Network adapter 1" in row(df, PORT_GROUPS)["found"]
    assert "VM Network=" in row(df, PORT_GROUPS)["remedy"]
    df = run(inv, vm="web1", target_host="esx2", network_map={"VM Network": "App"})
    assert status(df, PORT_GROUPS) == "pass"


@pytest.mark.parametrize("kind", ["host-device", "client-device"])
def test_devices_bound_to_host_or_client_fail(kind):
    inv = set_vm(make_inventory(), "web1", cdroms=[dict(key=3000, label="CD/DVD drive 1", kind=kind, iso=None,
                                                        datastore=None, connected=True)])
    df = run(inv, vm="web1", target_host="esx2")
    assert status(df, DEVICES) == "fail" and f"CD/DVD drive 1 ({kind.replace('-', ' ')})" in row(df, DEVICES)["found"]
    assert "disconnect CD/DVD drive 1" in row(df, DEVICES)["remedy"] and "ISO" in row(df, DEVICES)["remedy"]


def test_devices_pass_when_disconnected_or_iso():
    inv = set_vm(make_inventory(), "web1", cdroms=[dict(key=3000, label="CD/DVD drive 1", kind="host-device",
                                                        iso=None, datastore=None, connected=False)])
    assert status(run(inv, vm="web1", target_host="esx2"), DEVICES) == "pass"
    assert status(run(vm="app1", target_host="esx2"), DEVICES) == "pass"
    assert status(run(vm="web1", target_datastore="local-esx1"), DEVICES) == "skip"


@pytest.mark.parametrize("state, expected", [("poweredOn", "pass"), ("poweredOff", "warn"), ("suspended", "warn")])
def test_power_state(state, expected):
    df = run(set_vm(make_inventory(), "web1", power_state=state), vm="web1", target_host="esx2")
    assert status(df, POWER_STATE) == expected
    if expected == "warn":
        assert "cold migration" in row(df, POWER_STATE)["found"]


def test_running_migration_on_vm_warns():
    assert status(run(vm="web1", target_host="esx2"), NO_RUNNING_MIGRATION) == "pass"
    df = run(set_vm(make_inventory(), "web1", active_task="task-42"), vm="web1", target_host="esx2")
    assert status(df, NO_RUNNING_MIGRATION) == "warn" and "task-42" in row(df, NO_RUNNING_MIGRATION)["found"]


def test_failed_lists_blocking_checks_for_checks_failed():
    df = run(vm="db1", target_host="esx3")
    lines = failed(df)
    assert any(line.startswith(SHARED_STORAGE + ":") for line in lines)
    assert any(line.startswith(CPU_COMPATIBILITY + ":") for line in lines)
    assert verdict(df).startswith(f"{len(lines)} checks failed:")


def test_a_resolved_plan_can_be_passed():
    inv = make_inventory()
    df = run_checks(inv, resolve(inv, MigrationPlan(vm="web1", target_host="esx2")))
    assert status(df, OBJECTS_EXIST) == "pass"


# --- vCenter's verdict (fakes; the lab run is an integration test) ----------------------------------------------

class FakeChecker:
    def __init__(self, results=None, raises=None):
        self.results, self.raises, self.calls = results or [], raises, []

    def CheckRelocate_Task(self, vm, spec, testType):
        self.calls.append((vm, spec, testType))
        if self.raises:
            raise self.raises
        return SimpleNamespace(info=SimpleNamespace(result=self.results))


def fake_si(checker):
    return SimpleNamespace(_stub=None, RetrieveContent=lambda: SimpleNamespace(vmProvisioningChecker=checker))


def a_spec():
    inv = make_inventory()
    return build_relocate_spec(resolve(inv, MigrationPlan(vm="web1", target_host="esx2")))


def test_vcenter_verdict_merges_errors_and_warnings():
    error = vim.fault.NoDiskSpace(datastore="ds1", msg="not enough space on ds1")
    warning = vim.fault.CpuIncompatible1ECX(msg="CPU feature mismatch")
    checker = FakeChecker([vim.vm.check.Result(host=vim.HostSystem("host-2"), error=[error], warning=[warning])])
    rows = vcenter_verdict(fake_si(checker), "vm-1", a_spec(), "host-2", wait=lambda task: None)
    assert [(r.check, r.status) for r in rows] == [("vCenter: NoDiskSpace", "fail"),
                                                   ("vCenter: CpuIncompatible1ECX", "warn")]
    assert rows[0].found == "not enough space on ds1" and FREE_SPACE in rows[0].remedy
    assert CPU_COMPATIBILITY in rows[1].remedy
    vm_ref, spec, tests = checker.calls[0]
    assert vm_ref._moId == "vm-1" and spec.host._moId == "host-2" and "hostTests" in tests


def test_vcenter_verdict_pass_and_host_filled_in_without_changing_callers_spec():
    spec = vim.vm.RelocateSpec(datastore=vim.Datastore("datastore-11"))
    checker = FakeChecker([vim.vm.check.Result(error=[], warning=[])])
    rows = vcenter_verdict(fake_si(checker), "vm-1", spec, "host-1", wait=lambda task: None)
    assert [r.status for r in rows] == ["pass"]
    assert checker.calls[0][1].host._moId == "host-1" and spec.host is None


@pytest.mark.parametrize("si, spec, words", [
    (fake_si(None), a_spec(), "no VM provisioning checker"),
    (fake_si(FakeChecker(raises=vmodl.fault.MethodNotFound())), a_spec(), "does not implement"),
    (fake_si(FakeChecker()), None, "could not be built"),
])
def test_vcenter_verdict_skips(si, spec, words):
    (result,) = vcenter_verdict(si, "vm-1", spec, "host-2", wait=lambda task: None)
    assert result.status == "skip" and words in result.found


def test_vcenter_verdict_failed_task_is_a_fail_row():
    def wait(task):
        raise vmodl.fault.InvalidArgument(invalidProperty="spec.host", msg="bad host")

    (result,) = vcenter_verdict(fake_si(FakeChecker()), "vm-1", a_spec(), "host-2", wait=wait)
    assert (result.check, result.status) == ("vCenter: InvalidArgument", "fail") and "bad host" in result.found


def test_fault_to_check_names_real_checks():
    assert set(FAULT_TO_CHECK.values()) <= set(check_names())
    assert fault_check_name(vim.fault.VMotionNotConfigured()) == VMOTION_NETWORK
    assert fault_check_name(vim.fault.InvalidHostConnectionState()) == TARGET_HOST_STATE
    assert fault_check_name(vim.fault.DeviceBackingNotSupported()) == PORT_GROUPS
    assert fault_check_name(vim.fault.RemoteDeviceNotSupported()) == DEVICES
    assert fault_check_name(vim.fault.DatastoreNotWritableOnHost()) == TARGET_DATASTORE
    assert fault_check_name(vim.fault.DatastoreNotWritableOnHost(), datastore_changes=False) == SHARED_STORAGE
    assert fault_check_name(vmodl.fault.InvalidArgument()) is None
