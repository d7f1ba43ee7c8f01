"""Tests of runbook.plan on a hand-built inventory (no server).

``make_inventory()`` is the shared plain-data inventory of the plan, spec and checks tests: 3 hosts in
one cluster (esx1 and esx2 share datastore "shared"; each has a local one; esx3 is AMD in another
cluster), a few VMs.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from runbook.errors import Ambiguous, BadInput, NotFound
from runbook.vsphere.inventory import Inventory
from runbook.domain.plan import MigrationPlan, resolve

GIB = 1024**3


FakeInventory = Inventory  # the real container, filled with plain data


def host(name: str, moid: str, cluster: str = "C1", **extra: Any) -> dict:
    row = dict(
        name=name, moid=moid, datacenter="DC", cluster=cluster, connection_state="connected",
        power_state="poweredOn", maintenance=False, cpu_vendor="intel", cpu_model="Xeon Gold 6130",
        evc_mode="intel-skylake", max_evc_mode="intel-skylake", vmotion_vmks=["vmk1"], vmotion_ips=["10.0.1.1"],
        vmotion_enabled=True, datastores=["shared", f"local-{name}"], port_groups=["VM Network", "App"],
        vm_count=1, running_migrations=0,
    )
    row.update(extra)
    return row


def datastore(name: str, moid: str, hosts: list[str], **extra: Any) -> dict:
    row = dict(
        name=name, moid=moid, datacenter="DC", type="VMFS", capacity_bytes=1000 * GIB, free_bytes=500 * GIB,
        provisioned_bytes=600 * GIB, hosts=hosts, host_count=len(hosts), accessible=True, read_only_hosts=[],
        maintenance_mode="normal", running_migrations=0,
    )
    row.update(extra)
    return row


def disk(key: int, ds: str, fmt: str = "thin", capacity_gib: int = 40, committed_gib: int = 10) -> dict:
    return dict(key=key, label=f"Hard disk {key - 1999}", datastore=ds, datastore_moid=f"moid-{ds}",
                file=f"[{ds}] vm/vm_{key}.vmdk", capacity_bytes=capacity_gib * GIB,
                committed_bytes=committed_gib * GIB, format=fmt)


def vm(name: str, moid: str, host_name: str = "esx1", host_moid: str = "host-1", home: str = "shared",
       disks: list[dict] | None = None, cdroms: list[dict] | None = None, nics: list[dict] | None = None,
       **extra: Any) -> dict:
    disks = [disk(2000, home)] if disks is None else disks
    cdroms = cdroms or []
    nics = [dict(key=4000, label="Network adapter 1", port_group="VM Network", mac="00:50:56:00:00:01")] \
        if nics is None else nics
    datastores = sorted({home} | {d["datastore"] for d in disks} | {c["datastore"] for c in cdroms if c.get("datastore")})
    row = dict(
        name=name, moid=moid, power_state="poweredOn", datacenter="DC", cluster="C1", host=host_name,
        host_moid=host_moid, resource_pool="Resources", resource_pool_moid="resgroup-1", home_datastore=home,
        vm_path=f"[{home}] {name}/{name}.vmx", datastores=datastores, guest_ips=["10.0.0.5"], guest_ip="10.0.0.5",
        guest_os="ubuntu64Guest", vcpus=2, memory_mb=4096,
        provisioned_bytes=sum(d["capacity_bytes"] for d in disks), committed_bytes=sum(d["committed_bytes"] for d in disks),
        networks=sorted({n["port_group"] for n in nics}), nics=nics, disk_count=len(disks), disks=disks,
        disk_formats=[d["format"] for d in disks], cdroms=cdroms, tools_status="toolsOk", active_task=None,
    )
    row.update(extra)
    return row


def make_inventory(vms: list[dict] | None = None, hosts: list[dict] | None = None,
                   datastores: list[dict] | None = None) -> FakeInventory:
    """A small consistent inventory; pass replacement rows to vary it."""
    hosts = hosts or [
        host("esx1", "host-1"),
        host("esx2", "host-2"),
        host("esx3", "host-3", cluster="C2", cpu_vendor="amd", cpu_model="EPYC 7302", evc_mode=None,
             max_evc_mode="amd-zen2", datastores=["shared", "local-esx3"]),
    ]
    datastores = datastores or [
        datastore("shared", "datastore-10", ["esx1", "esx2", "esx3"]),
        datastore("local-esx1", "datastore-11", ["esx1"]),
        datastore("local-esx2", "datastore-12", ["esx2"]),
        datastore("local-esx3", "datastore-13", ["esx3"]),
        datastore("iso", "datastore-14", ["esx1"], type="NFS"),
    ]
    vms = vms or [
        vm("web1", "vm-1"),
        vm("db1", "vm-2", home="local-esx1", disks=[disk(2000, "local-esx1", "thick", 100, 100),
                                                    disk(2001, "shared", "thin", 50, 5)]),
        vm("app1", "vm-3", cdroms=[dict(key=3000, label="CD/DVD drive 1", kind="iso", iso="[iso] ubuntu.iso",
                                        datastore="iso", connected=True)]),
        vm("dup", "vm-4"),
        vm("dup", "vm-5"),
        vm("amdvm", "vm-6", host_name="esx3", host_moid="host-3", cluster="C2",
           resource_pool_moid="resgroup-2"),
    ]
    clusters = pd.DataFrame([
        dict(name="C1", moid="domain-c1", datacenter="DC", hosts=["esx1", "esx2"], host_count=2,
             evc_mode="intel-skylake", drs_enabled=True, ha_enabled=True, vm_count=5, root_pool_moid="resgroup-1"),
        dict(name="C2", moid="domain-c2", datacenter="DC", hosts=["esx3"], host_count=1, evc_mode=None,
             drs_enabled=False, ha_enabled=False, vm_count=1, root_pool_moid="resgroup-2"),
    ])
    pools = pd.DataFrame([
        dict(name="Resources", moid="resgroup-1", datacenter="DC", cluster="C1", owner_moid="domain-c1", root=True),
        dict(name="Resources", moid="resgroup-2", datacenter="DC", cluster="C2", owner_moid="domain-c2", root=True),
        dict(name="Web", moid="resgroup-3", datacenter="DC", cluster="C1", owner_moid="domain-c1", root=False),
    ])
    networks = pd.DataFrame([
        dict(name="VM Network", moid="network-1", datacenter="DC", type="Network", hosts=["esx1", "esx2", "esx3"], host_count=3, vm_count=5),
        dict(name="App", moid="network-2", datacenter="DC", type="Network", hosts=["esx1", "esx2", "esx3"], host_count=3, vm_count=0),
        dict(name="Only1", moid="network-3", datacenter="DC", type="Network", hosts=["esx1"], host_count=1, vm_count=0),
    ])
    vmkernel_rows = []
    for h in hosts:
        vmkernel_rows.append(dict(host=h["name"], host_moid=h["moid"], device="vmk0", port_group="Management Network",
                                  ip="10.0.0.1", services=["management"], vmotion=False))
        for vmk in h["vmotion_vmks"]:
            vmkernel_rows.append(dict(host=h["name"], host_moid=h["moid"], device=vmk, port_group="vMotion",
                                      ip="10.0.1.1", services=["vmotion"], vmotion=True))
    return FakeInventory(
        vms=pd.DataFrame(vms), hosts=pd.DataFrame(hosts), datastores=pd.DataFrame(datastores), clusters=clusters,
        networks=networks, pools=pools, vmkernel=pd.DataFrame(vmkernel_rows,
                                                 columns=["host", "host_moid", "device", "port_group", "ip",
                                                          "services", "vmotion"]),
    )


# --- MigrationPlan validation ---------------------------------------------------------------------

def test_plan_defaults():
    plan = MigrationPlan(vm="web1", target_host="esx2")
    assert plan.disk_format == "same" and plan.priority == "default" and plan.network_map == {}


@pytest.mark.parametrize("kwargs, words", [
    (dict(vm="web1", target_host="esx2", disk_format="sparse"), ["sparse", "thin", "eagerzeroedthick"]),
    (dict(vm="web1", target_host="esx2", priority="urgent"), ["urgent", "default", "high", "low"]),
    (dict(vm="web1"), ["target host", "target datastore"]),
    (dict(vm="web1", target_host="  ", target_datastore=""), ["target host"]),
    (dict(vm="", target_host="esx2"), ["no VM"]),
    (dict(vm="web1", target_host="esx2", network_map={"VM Network": ""}), ["malformed"]),
    (dict(vm="web1", target_host="esx2", network_map=["a=b"]), ["network_map"]),
    (dict(vm="web1", target_host="esx2", disk_format="thin"), ["needs a target datastore"]),
])
def test_plan_rejects_bad_input(kwargs, words):
    with pytest.raises(BadInput) as info:
        MigrationPlan(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_plan_reports_every_bad_field_at_once():
    with pytest.raises(BadInput) as info:
        MigrationPlan(vm="web1", target_host="esx2", disk_format="x", priority="y")
    assert "disk format 'x'" in str(info.value) and "priority 'y'" in str(info.value)


def test_plan_strips_names_and_is_hashable_enough_to_compare():
    plan = MigrationPlan(vm=" web1 ", target_host="esx2 ", network_map={" VM Network ": " App "})
    assert plan.vm == "web1" and plan.target_host == "esx2" and plan.network_map == {"VM Network": "App"}
    assert plan == MigrationPlan(vm="web1", target_host="esx2", network_map={"VM Network": "App"})


def test_resolve_host_only():
    inv = make_inventory()
    r = resolve(inv, MigrationPlan(vm="web1", target_host="esx2"))
    assert (r.kind, r.source_host, r.run_host, r.run_host_moid) == ("host", "esx1", "esx2", "host-2")
    assert r.host_changes and not r.datastore_changes and not r.already_there
    assert r.moving_disks == () and r.resource_pool_moid is None


def test_resolve_by_moid():
    r = resolve(make_inventory(), MigrationPlan(vm="vm-4", target_host="host-2"))
    assert r.vm == "dup" and r.vm_moid == "vm-4" and r.target_host == "esx2"


def test_resolve_datastore_only_moves_disks():
    r = resolve(make_inventory(), MigrationPlan(vm="db1", target_datastore="shared", disk_format="thin"))
    assert r.kind == "datastore" and r.run_host == "esx1" and r.home_moves
    moving = r.moving_disks
    assert [d.key for d in moving] == [2000] and moving[0].target_format == "thin"
    assert [d.target_format for d in r.disks] == ["thin", "thin"]


def test_resolve_both():
    r = resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx2", target_datastore="local-esx2"))
    assert r.kind == "both" and r.target_datastore_moid == "datastore-12"


def test_resolve_already_there():
    inv = make_inventory()
    r = resolve(inv, MigrationPlan(vm="web1", target_host="esx1", target_datastore="shared"))
    assert r.kind == "none" and r.already_there
    assert "already there" in r.summary()


def test_iso_on_another_datastore_is_not_already_there():
    r = resolve(make_inventory(), MigrationPlan(vm="app1", target_host="esx1", target_datastore="shared"))
    assert r.iso_datastores == ("iso",)
    assert r.kind == "datastore" and not r.already_there


FORMAT_REMEDY = "Storage vMotion to another datastore and back, or pick another datastore"


def test_format_only_request_on_the_same_datastore_is_refused_with_the_remedy():
    # web1's one disk is thin on "shared": a format changes only when a disk is copied elsewhere
    with pytest.raises(BadInput, match=r"VM web1's Hard disk 1 \(vm_2000.vmdk\), thin on shared: it stays there") as e:
        resolve(make_inventory(), MigrationPlan(vm="web1", target_datastore="shared", disk_format="thick"))
    assert str(e.value).endswith(FORMAT_REMEDY)
    # db1 would copy Hard disk 1 but leave Hard disk 2 (thin, on shared) in its format: refused too
    with pytest.raises(BadInput, match=r"VM db1.s Hard disk 2 \(vm_2001.vmdk\), thin on shared.*" + FORMAT_REMEDY):
        resolve(make_inventory(), MigrationPlan(vm="db1", target_datastore="shared", disk_format="eagerzeroedthick"))


def test_a_disk_that_stays_keeps_its_format_and_one_copied_takes_the_new_one():
    r = resolve(make_inventory(), MigrationPlan(vm="db1", target_datastore="shared", disk_format="thin"))
    assert [(d.key, d.moves, d.source_format, d.target_format) for d in r.disks] == [
        (2000, True, "thick", "thin"), (2001, False, "thin", "thin")]
    assert [d.format_changes for d in r.disks] == [True, False]
    # the format the disk already has, on the datastore it is already on: nothing to do
    assert resolve(make_inventory(), MigrationPlan(vm="web1", target_datastore="shared",
                                                   disk_format="thin")).already_there


def test_same_host_pool_change_is_a_change():
    inv = make_inventory()
    r = resolve(inv, MigrationPlan(vm="web1", target_host="esx1", resource_pool="Web"))
    assert r.kind == "none" and r.pool_changes and not r.already_there and r.resource_pool_moid == "resgroup-3"


def test_pool_of_another_cluster_is_bad_input():
    with pytest.raises(BadInput, match="belongs to cluster C2, but host esx2 is in cluster C1"):
        resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx2", resource_pool="resgroup-2"))


def test_pool_name_shared_by_clusters_is_ambiguous():
    with pytest.raises(Ambiguous):
        resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx2", resource_pool="Resources"))


def test_pools_derived_from_vms_without_a_pools_table():
    inv = make_inventory()
    inv.pools = pd.DataFrame()
    inv.clusters = inv.clusters.drop(columns=["root_pool_moid"])
    r = resolve(inv, MigrationPlan(vm="web1", target_host="esx3"))
    assert r.resource_pool_moid == "resgroup-2"


def test_cross_cluster_move_uses_target_root_pool():
    r = resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx3"))
    assert r.resource_pool_moid == "resgroup-2" and r.resource_pool == "Resources"


def test_cross_cluster_without_known_root_pool_asks_for_a_pool():
    inv = make_inventory()
    inv.pools = pd.DataFrame()
    inv.clusters = inv.clusters.drop(columns=["root_pool_moid"])
    inv.vms = inv.vms[inv.vms["cluster"] != "C2"]
    with pytest.raises(BadInput, match="give the resource pool"):
        resolve(inv, MigrationPlan(vm="web1", target_host="esx3"))


@pytest.mark.parametrize("kwargs, error", [
    (dict(vm="nope", target_host="esx2"), NotFound),
    (dict(vm="dup", target_host="esx2"), Ambiguous),
    (dict(vm="web1", target_host="esx9"), NotFound),
    (dict(vm="web1", target_datastore="nods"), NotFound),
    (dict(vm="web1", target_host="esx2", resource_pool="nopool"), NotFound),
])
def test_resolve_lookup_errors(kwargs, error):
    with pytest.raises(error):
        resolve(make_inventory(), MigrationPlan(**kwargs))


def test_network_map_resolves_port_group_on_target():
    r = resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx2", network_map={"VM Network": "App"}))
    (nic,) = r.nic_changes
    assert (nic.key, nic.old_port_group, nic.new_port_group, nic.network_moid) == (4000, "VM Network", "App", "network-2")


def test_network_map_to_port_group_missing_on_target_is_bad_input():
    with pytest.raises(BadInput, match="'Only1' does not exist on host esx2"):
        resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx2", network_map={"VM Network": "Only1"}))


def test_network_map_of_unused_port_group_is_bad_input():
    with pytest.raises(BadInput, match="no NIC on port group 'Nope'"):
        resolve(make_inventory(), MigrationPlan(vm="web1", target_host="esx2", network_map={"Nope": "App"}))


def test_to_dict_is_json_ready():
    r = resolve(make_inventory(), MigrationPlan(vm="db1", target_host="esx2", target_datastore="shared",
                                                network_map={"VM Network": "App"}))
    data = json.loads(json.dumps(r.to_dict()))
    assert data["kind"] == "both" and data["plan"]["network_map"] == {"VM Network": "App"}
    assert data["disks"][0]["key"] == 2000 and data["nic_changes"][0]["new_port_group"] == "App"


# --- standalone hosts: each its own ComputeResource with its own root pool --------------------------------------

def standalone_inventory() -> FakeInventory:
    """make_inventory plus two standalone hosts (esx-s1, esx-s2) sharing "shared", each with its root pool;
    hosts carry the moid of their compute resource, as the inventory reads it."""
    hosts = [host("esx1", "host-1", compute_resource_moid="domain-c1"),
             host("esx2", "host-2", compute_resource_moid="domain-c1"),
             host("esx3", "host-3", cluster="C2", compute_resource_moid="domain-c2", cpu_vendor="amd",
                  datastores=["shared", "local-esx3"]),
             host("esx-s1", "host-11", cluster=None, compute_resource_moid="domain-s11", evc_mode=None),
             host("esx-s2", "host-12", cluster=None, compute_resource_moid="domain-s12", evc_mode=None)]
    inv = make_inventory(hosts=hosts, vms=[
        vm("web1", "vm-1"),
        vm("edge1", "vm-11", host_name="esx-s1", host_moid="host-11", cluster=None,
           resource_pool_moid="resgroup-11"),
    ])
    inv.pools = pd.concat([inv.pools, pd.DataFrame([
        dict(name="Resources", moid="resgroup-11", datacenter="DC", cluster=None, owner_moid="domain-s11", root=True),
        dict(name="Resources", moid="resgroup-12", datacenter="DC", cluster=None, owner_moid="domain-s12", root=True),
    ])], ignore_index=True)
    return inv


def test_standalone_to_standalone_takes_the_target_hosts_root_pool():
    r = resolve(standalone_inventory(), MigrationPlan(vm="edge1", target_host="esx-s2"))
    assert r.kind == "host" and (r.resource_pool, r.resource_pool_moid) == ("Resources", "resgroup-12")
    assert r.pool_changes


def test_between_standalone_host_and_cluster_both_ways():
    inv = standalone_inventory()
    into = resolve(inv, MigrationPlan(vm="edge1", target_host="esx2"))
    assert into.resource_pool_moid == "resgroup-1"
    out = resolve(inv, MigrationPlan(vm="web1", target_host="esx-s1"))
    assert out.resource_pool_moid == "resgroup-11"
    # within one cluster the pool stays unset (the VM keeps its pool)
    assert resolve(inv, MigrationPlan(vm="web1", target_host="esx2")).resource_pool_moid is None


def test_root_pool_name_means_the_target_compute_resources_pool():
    inv = standalone_inventory()
    r = resolve(inv, MigrationPlan(vm="edge1", target_host="esx-s2", resource_pool="Resources"))
    assert r.resource_pool_moid == "resgroup-12"
    with pytest.raises(BadInput, match="belongs to compute resource domain-s11, but host esx-s2 is in its own"):
        resolve(inv, MigrationPlan(vm="edge1", target_host="esx-s2", resource_pool="resgroup-11"))
