"""Targeted reads (runbook/vsphere/scope.py): a check or a move reads only what it involves, in a number of
requests that does not grow with the vCenter, and sees the same rows as the full inventory."""
from __future__ import annotations

import pandas as pd
import pytest

import runbook
import runbook_lab as lab_mod
from conftest import lab_settings, running_lab
from runbook.errors import Ambiguous, NotFound
from runbook.vsphere import scope
from runbook.vsphere.inventory import read_inventory


def test_the_rows_a_move_reads_are_the_full_inventorys_rows(si):
    targeted = scope.read_for_move(si, vm="app-01", hosts=["esx-03.lab.local"], datastores=["nfs-02"])
    full = read_inventory(si)
    assert targeted.vms["name"].tolist() == ["app-01"]
    assert set(targeted.hosts["name"]) == {"esx-01.lab.local", "esx-03.lab.local"}
    assert "nfs-02" in set(targeted.datastores["name"])
    skip = {"hosts": ["vm_count"], "clusters": ["vm_count"], "networks": ["vm_count"]}  # counts of other VMs
    for name, table in targeted.tables().items():
        mine = table.drop(columns=skip.get(name, [])).set_index("moid" if "moid" in table else ["host", "device"])
        theirs = full.tables()[name].drop(columns=skip.get(name, []))
        theirs = theirs.set_index("moid" if "moid" in theirs else ["host", "device"]).loc[mine.index]
        pd.testing.assert_frame_equal(mine.astype(str), theirs.astype(str), check_like=True, obj=name)


def test_unknown_and_shared_names_are_refused_as_the_full_inventory_would(si):
    with pytest.raises(NotFound, match=r"no VM named 'web-0l'; did you mean .*'web-01'"):
        scope.find(si, vm="web-0l")
    with pytest.raises(NotFound, match="no host named 'esx-9'"):
        scope.find(si, vm="web-01", hosts=["esx-9"])
    found = scope.find(si, vm="web-01", hosts=["esx-02.lab.local"], datastores=["nfs-02"])
    assert found["vm"].startswith("vm-") and found["hosts"][0].startswith("host-")
    names = found["names"]
    assert names.find("VirtualMachine", found["vm"], "VM") == found["vm"]  # a moid is accepted too
    twice = pd.concat([names.table("VirtualMachine")] * 2)
    from runbook.vsphere.find import find_row

    with pytest.raises(Ambiguous):
        find_row(twice, "web-01", "VM")


@pytest.mark.slow
def test_a_checks_request_count_does_not_grow_with_the_vcenter(tmp_path, use_lab):
    counts = {}
    for vms in (40, 1500):
        with running_lab(tmp_path / f"lab-{vms}", "scale", vms=vms, hosts=24) as info:
            control = lab_mod.LabControl(info)
            before = control.requests_served()
            result = runbook.check(runbook.CheckRequest(vm="vm-00001", target_host="esx-0002.lab.local"),
                                   settings=lab_settings(info), context=runbook.RunContext(record=False))
            counts[vms] = control.requests_served() - before
            assert result.outcome == "SUCCEEDED", result.summary
            # what it read does not grow either: the VM, its host and the target, not the other VMs and hosts
            assert result.inventory.vms["name"].tolist() == ["vm-00001"]
            assert sorted(result.inventory.hosts["name"]) == ["esx-0001.lab.local", "esx-0002.lab.local"]
    assert counts[40] == counts[1500], counts
