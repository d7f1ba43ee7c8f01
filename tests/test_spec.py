"""Tests of runbook.spec: every plan shape builds the expected RelocateSpec, without a server."""
from __future__ import annotations

import json

import pytest
from pyVmomi import vim

from runbook.errors import BadInput
from runbook.domain.plan import MigrationPlan, resolve
from runbook.domain.spec import build_relocate_spec, move_priority, spec_to_dict, stub_morefs
from test_plan import make_inventory


def build(**kwargs):
    resolved = resolve(make_inventory(), MigrationPlan(**kwargs))
    return resolved, build_relocate_spec(resolved)


def test_host_only():
    _, spec = build(vm="web1", target_host="esx2")
    assert isinstance(spec.host, vim.HostSystem) and spec.host._moId == "host-2"
    assert spec.datastore is None and list(spec.disk) == [] and spec.pool is None and list(spec.deviceChange) == []
    assert spec_to_dict(spec) == {"host": "host-2"}


@pytest.mark.parametrize("fmt, thin, eager", [
    ("thin", True, False), ("thick", False, False), ("eagerzeroedthick", False, True),
])
def test_datastore_only_with_format(fmt, thin, eager):
    _, spec = build(vm="web1", target_datastore="local-esx1", disk_format=fmt)
    assert spec.host is None and spec.datastore._moId == "datastore-11"
    assert [d.diskId for d in spec.disk] == [2000]
    for locator in spec.disk:
        assert locator.datastore._moId == "datastore-11"
        backing = locator.diskBackingInfo
        assert isinstance(backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo)
        assert (backing.thinProvisioned, backing.eagerlyScrub, backing.diskMode) == (thin, eager, "persistent")
    assert [d["format"] for d in spec_to_dict(spec)["disk"]] == [fmt]


def test_a_disk_that_stays_gets_no_format():
    """db1 to "shared" as thin: Hard disk 1 is copied (thin), Hard disk 2 is already there and keeps its format."""
    _, spec = build(vm="db1", target_datastore="shared", disk_format="thin")
    assert [(d["diskId"], d["format"]) for d in spec_to_dict(spec)["disk"]] == [(2000, "thin"), (2001, "same")]
    assert spec.disk[1].diskBackingInfo is None


def test_a_format_only_request_builds_no_spec():
    with pytest.raises(BadInput, match="Storage vMotion to another datastore and back, or pick another datastore"):
        build(vm="web1", target_datastore="shared", disk_format="eagerzeroedthick")


def test_datastore_only_same_format_keeps_backing_unset():
    _, spec = build(vm="db1", target_datastore="shared")
    assert all(locator.diskBackingInfo is None for locator in spec.disk)
    assert spec_to_dict(spec)["disk"][0] == {"diskId": 2000, "datastore": "datastore-10", "format": "same"}


def test_both():
    _, spec = build(vm="web1", target_host="esx2", target_datastore="local-esx2", disk_format="thin")
    assert spec.host._moId == "host-2" and spec.datastore._moId == "datastore-12"
    assert spec.disk[0].diskBackingInfo.thinProvisioned is True


def test_port_group_remap():
    _, spec = build(vm="web1", target_host="esx2", network_map={"VM Network": "App"})
    (change,) = spec.deviceChange
    assert change.operation == "edit"
    assert isinstance(change.device, vim.vm.device.VirtualEthernetCard) and change.device.key == 4000
    backing = change.device.backing
    assert backing.deviceName == "App" and backing.network._moId == "network-2"
    assert isinstance(backing.network, vim.Network)
    assert spec_to_dict(spec)["deviceChange"] == [
        {"operation": "edit", "device": "VirtualVmxnet3", "key": 4000, "network": "network-2", "deviceName": "App"}]


def test_distributed_port_group_remap():
    inv = make_inventory()
    inv.networks.loc[inv.networks["name"] == "App", ["type"]] = "DistributedVirtualPortgroup"
    inv.networks["switch_uuid"] = "50 2a"
    resolved = resolve(inv, MigrationPlan(vm="web1", target_host="esx2", network_map={"VM Network": "App"}))
    (change,) = build_relocate_spec(resolved).deviceChange
    assert change.device.backing.port.portgroupKey == "network-2"
    assert change.device.backing.port.switchUuid == "50 2a"


def test_distributed_port_group_without_switch_uuid_is_bad_input():
    inv = make_inventory()
    inv.networks.loc[inv.networks["name"] == "App", ["type"]] = "DistributedVirtualPortgroup"
    resolved = resolve(inv, MigrationPlan(vm="web1", target_host="esx2", network_map={"VM Network": "App"}))
    with pytest.raises(BadInput, match="switch uuid"):
        build_relocate_spec(resolved)


def test_given_pool():
    _, spec = build(vm="web1", target_host="esx2", resource_pool="Web")
    assert isinstance(spec.pool, vim.ResourcePool) and spec.pool._moId == "resgroup-3"


def test_cross_cluster_pool_is_target_root_pool():
    _, spec = build(vm="web1", target_host="esx3")
    assert spec.pool._moId == "resgroup-2"


@pytest.mark.parametrize("priority, expected", [
    ("default", "defaultPriority"), ("high", "highPriority"), ("low", "lowPriority"),
])
def test_priority(priority, expected):
    assert move_priority(priority) == expected
    assert move_priority(priority) in vim.VirtualMachine.MovePriority.values
    resolved, spec = build(vm="web1", target_host="esx2", priority=priority)
    assert spec_to_dict(spec, resolved.priority)["priority"] == expected


def test_bad_priority():
    with pytest.raises(BadInput):
        move_priority("urgent")


def test_moref_factory_binds_the_stub():
    sentinel = object()
    resolved, _ = build(vm="web1", target_host="esx2")
    spec = build_relocate_spec(resolved, stub_morefs(sentinel))
    assert spec.host._stub is sentinel
    with pytest.raises(ValueError):
        stub_morefs()("Hostsystem", "host-1")


def test_custom_moref_for_is_used():
    calls = []

    def moref_for(kind, moid):
        calls.append((kind, moid))
        return getattr(vim, kind)(moid)

    resolved, _ = build(vm="web1", target_host="esx2", target_datastore="shared", network_map={"VM Network": "App"})
    build_relocate_spec(resolved, moref_for)
    assert ("HostSystem", "host-2") in calls and ("Datastore", "datastore-10") in calls
    assert ("Network", "network-2") in calls


def test_spec_to_dict_is_json_ready():
    resolved, spec = build(vm="db1", target_host="esx2", target_datastore="shared", disk_format="thin",
                           network_map={"VM Network": "App"})
    data = spec_to_dict(spec, resolved.priority)
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"host", "datastore", "disk", "deviceChange", "priority"}
