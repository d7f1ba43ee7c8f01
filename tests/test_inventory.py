"""The inventory tables, asserted against what the lab's scenario declares, and its request count."""
from __future__ import annotations

import pandas as pd
import pytest

import runbook_lab as lab_mod
from runbook.errors import Ambiguous, NotFound
from runbook.vsphere.inventory import read_inventory


@pytest.fixture(scope="module")
def declared():
    return lab_mod._scenario_json("default", None, None)


@pytest.fixture(scope="module")
def inv(lab):
    from runbook import connect
    from runbook.vsphere.connection import Settings

    with connect(Settings(host=lab.host, port=lab.port, scheme="http", username=lab.username,
                          password=lab.password)) as si:
        return read_inventory(si)


def test_every_declared_object_is_listed(inv, declared):
    assert sorted(inv.vms["name"]) == sorted(v["name"] for v in declared["vms"])
    assert sorted(inv.hosts["name"]) == sorted(h["name"] for h in declared["hosts"])
    assert sorted(inv.datastores["name"]) == sorted(d["name"] for d in declared["datastores"])
    assert sorted(inv.clusters["name"]) == sorted(c["name"] for c in declared["clusters"])


def test_mount_lists_match_the_scenario(inv, declared):
    for ds in declared["datastores"]:
        row = inv.datastore(ds["name"])
        assert sorted(row["hosts"]) == sorted(ds["hosts"]), ds["name"]
        assert row["host_count"] == len(ds["hosts"])
        assert row["type"] == ds["type"]
    for host in declared["hosts"]:
        mounted = {d["name"] for d in declared["datastores"] if host["name"] in d["hosts"]}
        assert set(inv.host(host["name"])["datastores"]) == mounted


def test_vmotion_adapters_match_the_scenario(inv, declared):
    for host in declared["hosts"]:
        want = [v["device"] for v in host.get("vmks", []) if "vmotion" in v.get("services", [])]
        row = inv.host(host["name"])
        assert row["vmotion_vmks"] == want
        assert row["vmotion_enabled"] == bool(want)
        assert row["vmotion_ips"] == [v["ip"] for v in host["vmks"] if v["device"] in want]
    vmk = inv.vmkernel.set_index(["host", "device"])
    for host in declared["hosts"]:
        for v in host.get("vmks", []):
            assert vmk.loc[(host["name"], v["device"]), "ip"] == v["ip"]
            assert vmk.loc[(host["name"], v["device"]), "port_group"] == v["port_group"]


def test_vm_placement_disks_formats_and_ips_match_the_scenario(inv, declared):
    for vm in declared["vms"]:
        row = inv.vm(vm["name"])
        assert row["host"] == vm["host"]
        on = vm.get("power_state", "poweredOn") == "poweredOn"
        assert row["power_state"] == vm.get("power_state", "poweredOn")
        # VMware Tools report the guest IP of a running VM only
        assert row["guest_ip"] == (vm.get("guest_ip") if on else None)
        disks = vm["disks"]
        assert row["disk_count"] == len(disks)
        for got, want in zip(row["disks"], disks):
            assert got["format"] == want["format"], vm["name"]
            assert got["datastore"] == want.get("datastore", vm["datastore"]), vm["name"]
            assert got["capacity_bytes"] == int(want["size_gb"] * 2**30)
        assert row["home_datastore"] == vm["datastore"]
        assert row["networks"] == sorted({n["port_group"] for n in vm["nics"]})
        if vm.get("cdrom"):
            assert row["cdroms"][0]["kind"] == "iso"
            assert row["cdroms"][0]["datastore"] == vm["cdrom"]["datastore"]
            assert vm["cdrom"]["datastore"] in row["datastores"]


def test_storage_sizes_are_real(inv, declared):
    for vm in declared["vms"]:
        row = inv.vm(vm["name"])
        committed = sum(int(d["committed_gb"] * 2**30) for d in vm["disks"])
        assert row["committed_bytes"] >= committed  # plus the VM's own files
        assert row["provisioned_bytes"] >= sum(int(d["size_gb"] * 2**30) for d in vm["disks"])


def test_lookups_never_take_the_first_match(inv):
    with pytest.raises(NotFound, match="no VM named 'web-0l'; did you mean .*'web-01'"):
        inv.vm("web-0l")
    doubled = inv.vms.assign(name="same")
    from runbook.vsphere.find import find_row

    with pytest.raises(Ambiguous, match="12 VMs are named 'same'"):
        find_row(doubled, "same", "VM")
    assert inv.vm(inv.vms["moid"].iloc[0])["name"] == inv.vms["name"].iloc[0]


def test_cluster_filter(inv, lab):
    from runbook import connect
    from runbook.vsphere.connection import Settings

    with connect(Settings(host=lab.host, port=lab.port, scheme="http", username=lab.username,
                          password=lab.password)) as si:
        only = read_inventory(si, cluster="Cluster-A")
        assert len(only.vms) == len(inv.vms)
        with pytest.raises(NotFound):
            read_inventory(si, cluster="no-such-cluster")


@pytest.mark.slow
def test_request_count_grows_only_by_the_pages(tmp_path):
    from conftest import running_lab
    from runbook import connect
    from runbook.vsphere.connection import Settings

    counts = {}
    for vms in (50, 1000):
        with running_lab(tmp_path / str(vms), "scale", vms=vms, hosts=8) as info:
            control = lab_mod.LabControl(info)
            with connect(Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                                  password=info.password)) as si:
                before = control.requests_served()
                inv = read_inventory(si)
                counts[vms] = control.requests_served() - before
                assert len(inv.vms) == vms
    # only the pages grow: one request per PAGE_OBJECTS objects, in each of the two streams read at once
    from runbook.vsphere.inventory import PAGE_OBJECTS

    assert counts[50] < counts[1000] <= counts[50] + 2 * -(-1000 // PAGE_OBJECTS), counts
    assert counts[1000] < 20, counts


def test_standalone_hosts_and_their_root_pools(tmp_path):
    """A host outside any cluster: no cluster, its own compute resource, whose root pool the pools table lists."""
    from conftest import running_lab
    from runbook import connect
    from runbook.vsphere.connection import Settings

    declared = lab_mod._scenario_json("standalone", None, None)
    alone = sorted(h["name"] for h in declared["hosts"] if not h.get("cluster"))
    with running_lab(tmp_path / "lab", "standalone") as info:
        with connect(Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                              password=info.password)) as si:
            inv = read_inventory(si)
    hosts = inv.hosts.set_index("name")
    assert sorted(hosts.index[hosts["cluster"].isna()]) == alone == ["esx-11.lab.local", "esx-12.lab.local"]
    cluster_moid = inv.cluster("Cluster-A")["moid"]
    assert set(hosts.loc[hosts["cluster"] == "Cluster-A", "compute_resource_moid"]) == {cluster_moid}
    owners = [hosts.loc[h, "compute_resource_moid"] for h in alone]
    assert len(set(owners)) == 2 and cluster_moid not in owners
    for owner in owners:
        roots = inv.pools[(inv.pools["owner_moid"] == owner) & inv.pools["root"]]
        assert list(roots["name"]) == ["Resources"] and roots["cluster"].isna().all()
    edge = inv.vm("edge-01")
    assert edge["cluster"] is None and edge["resource_pool_moid"] == inv.pools[
        inv.pools["owner_moid"] == hosts.loc["esx-11.lab.local", "compute_resource_moid"]].iloc[0]["moid"]


def test_vcenter_device_labels_and_datastore_moids_reach_the_tables(inv):
    app = inv.vm("app-01")
    assert [d["label"] for d in app["disks"]] == ["Hard disk 1", "Hard disk 2"]
    assert [d["datastore"] for d in app["disks"]] == ["nfs-02", "nfs-01"]
    assert [n["label"] for n in inv.vm("app-03")["nics"]] == ["Network adapter 1", "Network adapter 2"]
    assert [c["label"] for c in inv.vm("iso-01")["cdroms"]] == ["CD/DVD drive 1"]
    assert all(m.startswith("datastore-") and m[len("datastore-"):].isdigit() for m in inv.datastores["moid"])


def test_a_running_relocation_is_counted_on_its_vm_host_and_datastores(tmp_path, monkeypatch):
    """The VM counts the host, datastore, cluster and network tables carry come from the VM rows, moving ones too;
    the large-inventory path (those tables built by a child process) gives the same counts."""
    from pyVmomi import vim

    from conftest import running_lab
    from runbook import connect
    from runbook.vsphere import inventory
    from runbook.vsphere.connection import Settings

    with running_lab(tmp_path / "lab") as info:
        lab_mod.LabControl(info).set_migration_seconds("web-02", 60)
        with connect(Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                              password=info.password)) as si:
            before = read_inventory(si)
            vm, target = before.vm("web-02"), before.host("esx-03.lab.local")
            task = vim.VirtualMachine(vm["moid"], si._stub).RelocateVM_Task(
                spec=vim.vm.RelocateSpec(host=vim.HostSystem(target["moid"], si._stub)))
            try:
                tables = []
                for fork_from in (10**9, 1):
                    monkeypatch.setattr(inventory, "_FORK_OTHERS_FROM", fork_from)
                    tables.append(read_inventory(si))
            finally:
                task.CancelTask()
    for inv in tables:
        assert inv.vm("web-02")["active_task"] == task._moId
        hosts = inv.hosts.set_index("name")
        assert hosts.loc[vm["host"], "running_migrations"] == 1
        assert (hosts["running_migrations"].sum(), hosts["vm_count"].sum()) == (1, len(inv.vms))
        moving = inv.datastores.set_index("name").loc[vm["datastores"], "running_migrations"]
        assert list(moving) == [1] * len(vm["datastores"]) and inv.datastores["running_migrations"].sum() == len(moving)
        clusters, networks = inv.clusters.set_index("name"), inv.networks.set_index("name")
        assert clusters.loc[vm["cluster"], "vm_count"] == (inv.vms["cluster"] == vm["cluster"]).sum() > 0
        for net in vm["networks"]:
            assert networks.loc[net, "vm_count"] == inv.vms["networks"].map(lambda ns: net in ns).sum() > 0
    for name, table in tables[0].tables().items():
        pd.testing.assert_frame_equal(tables[1].tables()[name], table, check_exact=True, obj=name)
