"""The checks agree with the vCenter: every VM x host x datastore of the prereq-failures lab.

Whenever the local checks pass, the lab's RelocateVM_Task succeeds; whenever the relocation faults, a
local check had failed naming the same cause (the fault's check in FAULT_TO_CHECK).
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from pyVmomi import vim

import runbook_lab as lab_mod
from runbook.domain.checks import fault_check_name, run_checks
from runbook.vsphere.connection import Settings, login, logout
from runbook.errors import BadInput
from runbook.vsphere.inventory import read_inventory
from runbook.domain.plan import MigrationPlan, resolve
from runbook.domain.spec import build_relocate_spec, stub_morefs


class Lab:
    """A lab (prereq-failures unless told) that is thrown away after every relocation that changed it."""

    def __init__(self, root: Path, scenario: str = "prereq-failures"):
        self.root, self.n, self.scenario = root, 0, scenario
        self.info = self.si = self.inv = None
        self.restart()

    def restart(self) -> None:
        self.close()
        self.n += 1
        self.info = lab_mod.start(self.scenario, state_dir=self.root / f"lab{self.n}")
        lab_mod.LabControl(self.info).set_migration_seconds(None, 0)
        self.si = login(Settings(host=self.info.host, port=self.info.port, scheme="http",
                                 username=self.info.username, password=self.info.password))
        self.inv = read_inventory(self.si)

    def close(self) -> None:
        if self.si is not None:
            logout(self.si)
        if self.info is not None:
            lab_mod.stop(self.info.state_dir)
        self.si = self.info = None


@pytest.mark.slow
@pytest.mark.parametrize("scenario, formats", [
    ("prereq-failures", ("same",)),
    # standalone hosts and the cluster, each disk format (a format-only request is refused as input)
    ("standalone", ("same", "thick")),
])
def test_checks_agree_with_the_vcenter(tmp_path, scenario, formats):
    lab = Lab(tmp_path, scenario)
    disagreements, counts = [], {"success": 0, "fault": 0, "refused-input": 0, "already-there": 0}
    try:
        vms = list(lab.inv.vms["name"])
        hosts = [None, *lab.inv.hosts["name"]]
        datastores = [None, *lab.inv.datastores["name"]]
        for vm, host, ds, fmt in itertools.product(vms, hosts, datastores, formats):
            if host is None and ds is None or fmt != "same" and ds is None:
                continue
            try:
                resolved = resolve(lab.inv, MigrationPlan(vm=vm, target_host=host, target_datastore=ds,
                                                          disk_format=fmt))
            except BadInput:
                counts["refused-input"] += 1
                continue
            if resolved.already_there:
                counts["already-there"] += 1
                continue
            checks = run_checks(lab.inv, resolved)
            failed = set(checks.loc[checks["status"] == "fail", "check"])
            spec = build_relocate_spec(resolved, stub_morefs(lab.si._stub))
            task = vim.VirtualMachine(resolved.vm_moid, lab.si._stub).RelocateVM_Task(spec=spec)
            fault = finished(task)
            where = f"{vm} -> host {host}, datastore {ds} as {fmt}"
            if fault is None:
                counts["success"] += 1
                if failed:
                    disagreements.append(f"{where}: relocation succeeded but checks failed {sorted(failed)}")
                lab.restart()
            else:
                counts["fault"] += 1
                cause = fault_check_name(fault, resolved.target_datastore is not None)
                if not failed:
                    disagreements.append(f"{where}: checks passed but the lab raised {type(fault).__name__}: "
                                         f"{getattr(fault, 'msg', '')}")
                elif cause not in failed:
                    disagreements.append(f"{where}: the lab raised {type(fault).__name__} ({cause}) but the "
                                         f"failed checks were {sorted(failed)}")
    finally:
        lab.close()
    assert counts["success"] > 10 and counts["fault"] > 10, counts
    assert not disagreements, "\n".join(disagreements[:40]) + f"\n({len(disagreements)} in all; {counts})"


def finished(task: vim.Task):
    """Wait for the task (tight polling: the lab's tasks take milliseconds here); its fault or None."""
    while True:
        info = task.info
        if str(info.state) in ("success", "error"):
            return info.error
        time.sleep(0.005)


# ----- the runbook end to end on the shapes issue 17 found: split disks, standalone hosts, formats -----

def _move(info, tmp_path, **fields):
    """One engine move (no ping) against a lab; its RunResult."""
    import runbook
    from conftest import lab_settings
    from runbook.engine.context import RunContext

    fields.setdefault("ping", "none")
    return runbook.migrate(runbook.MoveRequest(**fields), settings=lab_settings(info),
                           context=RunContext(reports_dir=tmp_path / "reports"))


def _where(info, vm_name: str) -> dict:
    return lab_mod.LabControl(info).placement(vm_name)


def test_host_only_move_of_a_split_disk_vm_succeeds_and_verifies(fresh_lab, tmp_path):
    """app-01 (disks on nfs-02 and nfs-01) to esx-02: nothing but the host changes, verification agrees."""
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds(None, 0.3)
    res = _move(info, tmp_path, vm="app-01", target_host="esx-02.lab.local")
    assert res.outcome == "SUCCEEDED", res.summary
    assert res.exit_code == 0 and res.state.verification["ok"].all()
    after = _where(info, "app-01")
    assert after["host"] == "esx-02.lab.local" and after["vm_path_name"].startswith("[nfs-02]")


def test_move_between_standalone_hosts_needs_no_pool(fresh_lab, tmp_path):
    info = fresh_lab("standalone")
    lab_mod.LabControl(info).set_migration_seconds(None, 0.3)
    before = _where(info, "edge-01")
    res = _move(info, tmp_path, vm="edge-01", target_host="esx-12.lab.local")
    assert res.outcome == "SUCCEEDED", res.summary
    assert res.state.verification["ok"].all()
    after = _where(info, "edge-01")
    assert after["host"] == "esx-12.lab.local" and after["pool"] != before["pool"]
    # and from a standalone host into the cluster, and back out, still without a pool
    assert _move(info, tmp_path, vm="edge-01", target_host="esx-01.lab.local").outcome == "SUCCEEDED"
    assert _move(info, tmp_path, vm="web-01", target_host="esx-11.lab.local").outcome == "SUCCEEDED"
    assert _where(info, "web-01")["host"] == "esx-11.lab.local"


def test_plan_spec_and_lab_agree_on_standalone_root_pools(fresh_lab):
    """The pool the plan resolves is the one the lab puts the VM in, for every host of the standalone lab."""
    info = fresh_lab("standalone")
    lab_mod.LabControl(info).set_migration_seconds(None, 0)
    si = login(Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                        password=info.password))
    try:
        inv = read_inventory(si)
        standalone = inv.hosts[inv.hosts["cluster"].isna()]
        assert sorted(standalone["name"]) == ["esx-11.lab.local", "esx-12.lab.local"]
        for _, h in standalone.iterrows():
            roots = inv.pools[(inv.pools["owner_moid"] == h["compute_resource_moid"]) & inv.pools["root"]]
            assert len(roots) == 1 and roots.iloc[0]["cluster"] is None
        resolved = resolve(inv, MigrationPlan(vm="edge-01", target_host="esx-12.lab.local"))
        spec = build_relocate_spec(resolved, stub_morefs(si._stub))
        assert spec.pool is not None and spec.pool._moId == resolved.resource_pool_moid
        vm = next(v for v in si.content.viewManager.CreateContainerView(
            si.content.rootFolder, [vim.VirtualMachine], True).view if v.name == "edge-01")
        assert finished(vm.RelocateVM_Task(spec=spec)) is None
        assert vm.resourcePool._moId == resolved.resource_pool_moid
        assert vm.runtime.host.parent.resourcePool == vm.resourcePool
    finally:
        logout(si)


def test_format_only_request_on_the_same_datastore_is_refused_with_exit_2(fresh_lab, tmp_path):
    import subprocess
    import sys

    info = fresh_lab()  # its GOVC_* settings are in the environment
    before = _where(info, "web-01")
    runbook_cmd = str(Path(sys.executable).parent / "runbook")
    proc = subprocess.run([runbook_cmd, "migrate", "--vm", "web-01", "--datastore", "nfs-01",
                           "--disk-format", "thick", "--ping", "none"], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Storage vMotion to another datastore and back, or pick another datastore" in out
    assert _where(info, "web-01") == before
