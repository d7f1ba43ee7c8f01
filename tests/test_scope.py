"""Targeted reads (runbook/vsphere/scope.py): a check or a move reads only what it involves, in a number of
requests that does not grow with the vCenter, and sees the same rows as the full inventory."""
from __future__ import annotations

import pandas as pd
import pytest

import runbook
import runbook_lab as lab_mod
from pyVim.task import WaitForTask
from pyVmomi import vim

from conftest import lab_settings, running_lab
from runbook.errors import Ambiguous, NotFound
from runbook.vsphere import scope
from runbook.vsphere.find import vcenter_name
from runbook.vsphere.inventory import read_inventory


def _served(control: lab_mod.LabControl) -> tuple[int, int]:
    """SOAP requests the lab has answered so far, and the bytes of their replies."""
    return control.requests_served(), control.reply_bytes()


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


def test_a_vm_is_found_by_vcenters_index_not_by_reading_every_name(si, lab):
    control = lab_mod.LabControl(lab)
    names = scope.read_names(si)
    assert "VirtualMachine" not in {r["_type"] for r in names.records.values()}  # the list that grows
    before = _served(control)
    moid = scope.find_vm(si, "web-01", names)
    requests, replied = (a - b for a, b in zip(_served(control), before))
    assert moid.startswith("vm-") and names.dc_of[moid] == si.content.rootFolder.childEntity[0].name
    assert requests == 2 and replied < 8000, (requests, replied)  # RetrieveContent and one FindChild
    assert scope.find_vm(si, moid, names) == moid  # a moid needs no look-up by name
    with pytest.raises(NotFound, match="did you mean .*'web-01'"):  # only a refusal reads every name
        scope.find_vm(si, "web-0l", names)


def test_two_vms_of_one_name_in_two_folders_are_refused_naming_both(fresh_lab):
    from runbook import connect

    fresh_lab("default")
    with connect() as si:
        names = scope.read_names(si)
        web, app = (scope.find_vm(si, n, names) for n in ("web-01", "app-01"))
        dc = si.content.rootFolder.childEntity[0]
        other = dc.vmFolder.CreateFolder("other")
        WaitForTask(other.MoveIntoFolder_Task([vim.VirtualMachine(app, si._stub)]))
        WaitForTask(vim.VirtualMachine(app, si._stub).Rename_Task("web-01"))
        with pytest.raises(Ambiguous, match="2 VMs are named 'web-01'") as refused:
            scope.find(si, vm="web-01")
        assert sorted(c.split()[0] for c in refused.value.candidates) == sorted([web, app])
        assert all(c.endswith(f"(in {dc.name})") for c in refused.value.candidates)
        assert scope.find(si, vm=app)["vm"] == app  # the moid settles it


def test_hostile_names_are_found_as_written_and_as_vcenter_returns_them(fresh_lab):
    from runbook import connect

    fresh_lab("hostile-names")
    with connect() as si:
        inv = read_inventory(si)
        names = scope.read_names(si)
        for row in inv.vms.itertuples():
            from runbook.vsphere.find import display_name

            assert scope.find_vm(si, row.name, names) == row.moid
            assert scope.find_vm(si, display_name(row.name), names) == row.moid, row.name
        assert vcenter_name("100% <i>busy</i> C:\\vms\\x") in set(inv.vms["name"])


@pytest.mark.slow
def test_a_checks_request_count_does_not_grow_with_the_vcenter(tmp_path, use_lab):
    counts, replied = {}, {}
    for vms in (300, 1500):  # both past the 200 recent tasks vCenter lists (the lab's build made them)
        with running_lab(tmp_path / f"lab-{vms}", "scale", vms=vms, hosts=24) as info:
            control = lab_mod.LabControl(info)
            before = _served(control)
            result = runbook.check(runbook.CheckRequest(vm="vm-00001", target_host="esx-0002.lab.local"),
                                   settings=lab_settings(info), context=runbook.RunContext(record=False))
            counts[vms], replied[vms] = (a - b for a, b in zip(_served(control), before))
            assert result.outcome == "SUCCEEDED", result.summary
            # what it read does not grow either: the VM, its host and the target, not the other VMs and hosts
            assert result.inventory.vms["name"].tolist() == ["vm-00001"]
            assert sorted(result.inventory.hosts["name"]) == ["esx-0001.lab.local", "esx-0002.lab.local"]
    assert counts[300] == counts[1500], counts
    # nor do the bytes it reads: no reply lists every VM (a names read of 1,200 more VMs alone is 160 KB)
    assert abs(replied[1500] - replied[300]) < 0.02 * replied[300], replied


def test_names_are_matched_as_a_table_look_up_would_without_pandas() -> None:
    from runbook.errors import BadInput

    names = scope.Names({"host-1": {"_type": "HostSystem", "name": "esx-a"},
                         "host-2": {"_type": "HostSystem", "name": "esx-a"},
                         "host-3": {"_type": "HostSystem", "name": "rack%2fesx-b"},
                         "ds-1": {"_type": "Datastore", "name": "esx-c"}}, {})
    with pytest.raises(Ambiguous, match=r"2 hosts are named 'esx-a': host-1, host-2; give the moid"):
        names.find("HostSystem", "esx-a", "host")
    assert names.find("HostSystem", "host-2", "host") == "host-2"  # the moid settles it
    assert names.find("HostSystem", "rack/esx-b", "host") == names.find("HostSystem", "rack%2fesx-b", "host")
    with pytest.raises(NotFound, match=r"no host named 'esx-c'; did you mean 'esx-a'\?"):  # not the datastore
        names.find("HostSystem", "esx-c", "host")
    with pytest.raises(NotFound, match=r"no host named 'ESX-A'; did you mean 'esx-a'\?"):  # once, not twice
        names.find("HostSystem", "ESX-A", "host")
    with pytest.raises(BadInput, match="the host name is empty"):
        names.find("HostSystem", " ", "host")
