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
    """A prereq-failures lab that is thrown away after every relocation that changed it."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0
        self.info = self.si = self.inv = None
        self.restart()

    def restart(self) -> None:
        self.close()
        self.n += 1
        self.info = lab_mod.start("prereq-failures", state_dir=self.root / f"lab{self.n}")
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
def test_checks_agree_with_the_vcenter(tmp_path):
    lab = Lab(tmp_path)
    disagreements, counts = [], {"success": 0, "fault": 0, "refused-input": 0, "already-there": 0}
    try:
        vms = list(lab.inv.vms["name"])
        hosts = [None, *lab.inv.hosts["name"]]
        datastores = [None, *lab.inv.datastores["name"]]
        for vm, host, ds in itertools.product(vms, hosts, datastores):
            if host is None and ds is None:
                continue
            try:
                resolved = resolve(lab.inv, MigrationPlan(vm=vm, target_host=host, target_datastore=ds))
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
            where = f"{vm} -> host {host}, datastore {ds}"
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
