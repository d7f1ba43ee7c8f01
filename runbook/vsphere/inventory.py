"""The vCenter inventory as pandas tables: VMs, hosts, clusters, datastores, networks, VMkernel adapters.

Everything is read in bulk: one ContainerView per datacenter with explicit property paths for every type
(names of referenced objects come from the same reply), plus one read of the running tasks. The number
of SOAP requests does not grow with the number of VMs.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyVmomi import vim

from runbook.vsphere import devices, forked, rows
from runbook.vsphere.devices import datastore_of_path
from runbook.errors import NotFound
from runbook.vsphere.find import find_row
from runbook.vsphere.fastsoap import no_gc
from runbook.vsphere.values import OBJECTS, Raw, moids
from runbook.vsphere.properties import Records, container_view, name_in, namer, retrieve_objects, retrieve_view

VM_PATHS = [
    "name", "runtime.powerState", "runtime.host", "resourcePool", "datastore", "network",
    "guest.ipAddress", "guest.net", "guest.toolsRunningStatus", "config.guestFullName",
    "config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device",
    "config.files.vmPathName", "summary.storage.committed", "summary.storage.uncommitted",
]
HOST_PATHS = [
    "name", "parent", "runtime.connectionState", "runtime.powerState", "runtime.inMaintenanceMode",
    "hardware.cpuPkg", "summary.hardware.cpuModel", "summary.currentEVCModeKey", "summary.maxEVCModeKey",
    "summary.config.vmotionEnabled", "config.network.vnic", "config.virtualNicManagerInfo.netConfig",
    "config.vmotion.netConfig.selectedVnic", "datastore", "network",
]
DATASTORE_PATHS = ["name", "summary", "host"]
CLUSTER_PATHS = ["name", "host", "summary.currentEVCModeKey", "configurationEx"]
NETWORK_PATHS = ["name", "host"]
POOL_PATHS = ["name", "owner", "parent"]
TASK_PATHS = ["info.state", "info.entity", "info.descriptionId", "info.key"]

#: What the VM table needs of the objects VMs refer to (their names, and the cluster of each host).
_VM_NAME_PATHS = {vim.HostSystem: ["name", "parent"], vim.ClusterComputeResource: ["name"],
                  vim.Datastore: ["name"], vim.Network: ["name"], vim.ResourcePool: ["name"]}

#: Left as XML by the fast reader: the VM table reads only a few fields of each device (see devices) and
#: only the addresses of each guest NIC. (A VM's datastores and networks left as XML too saved no CPU and
#: held 80 MB more at 45,000 VMs: they stay references.)
_RAW_PATHS = ("config.hardware.device", "guest.net")
#: The same for the whole inventory: also the datastores' mount lists (2,500 hosts each at vCenter's
#: maximum), the hosts' adapters, NIC services and CPU packages, the clusters' configuration, the hosts
#: of clusters and networks (see runbook.vsphere.rows: the tables read a few fields of each).
_RAW_ALL = _RAW_PATHS + ("host", "summary", "configurationEx", "config.network.vnic",
                         "config.virtualNicManagerInfo.netConfig", "hardware.cpuPkg")
#: Asked for in a second request at the same time as the rest: the devices are 70% of the VM reply's bytes,
#: and that request is read on the other core (see properties.retrieve_view); the guests' NICs even out the
#: two requests' parsing.
_ALONGSIDE = {vim.VirtualMachine: ["config.hardware.device", "guest.net"]}
#: What is kept of those paths' values, where they are read: plain tuples, cheap to pickle, which the VM table
#: reads as it reads the values themselves.
_DIGEST = {"config.hardware.device": devices.facts, "guest.net": lambda value: tuple(_guest_ips(value))}
#: Hosts from which the other tables are built by a child process beside the VM table's (a fork costs more
#: than building a few hundred hosts' rows).
_FORK_OTHERS_FROM = 1000
#: Objects per page (``maxObjects``): the server builds a page while the client parses the one before,
#: and the client never holds more than a few pages' bytes (a 45,000-VM reply is 360 MB unpaged).
PAGE_OBJECTS = 1000

_ACTIVE_TASK_STATES = {"queued", "running"}
_MOVE_TASKS = ("VirtualMachine.relocate", "VirtualMachine.migrate", "Drm.ExecuteVMotionLRO")


@dataclass
class Inventory:
    """One read of the vCenter: the tables the checks, widgets and reports work from."""

    vms: pd.DataFrame
    hosts: pd.DataFrame
    datastores: pd.DataFrame
    clusters: pd.DataFrame
    networks: pd.DataFrame
    vmkernel: pd.DataFrame
    pools: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=POOL_COLUMNS))
    vcenter: str = ""
    taken: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def vm(self, key: str) -> pd.Series:
        """The VM named (or with moid) ``key``; NotFound / Ambiguous otherwise."""
        return find_row(self.vms, key, "VM")

    def host(self, key: str) -> pd.Series:
        return find_row(self.hosts, key, "host")

    def datastore(self, key: str) -> pd.Series:
        return find_row(self.datastores, key, "datastore")

    def cluster(self, key: str) -> pd.Series:
        return find_row(self.clusters, key, "cluster")

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"vms": self.vms, "hosts": self.hosts, "datastores": self.datastores,
                "clusters": self.clusters, "networks": self.networks, "vmkernel": self.vmkernel,
                "pools": self.pools}


def read_inventory(si: vim.ServiceInstance, *, datacenter: str | None = None,
                   cluster: str | None = None) -> Inventory:
    """Read the whole inventory (or one datacenter / cluster of it) in bulk.

    Replies are read with the fast reader (:mod:`runbook.fastsoap`) unless ``RUNBOOK_FAST_SOAP=0``;
    both readers give the same tables.
    """
    content = si.RetrieveContent()
    types = {vim.VirtualMachine: VM_PATHS, vim.HostSystem: HOST_PATHS, vim.Datastore: DATASTORE_PATHS,
             vim.ClusterComputeResource: CLUSTER_PATHS, vim.Network: NETWORK_PATHS,
             vim.ResourcePool: POOL_PATHS}
    with no_gc():
        records, dc_of = _read(si, datacenter, types, _RAW_ALL)
        tasks = _active_tasks(si, content)
        inv = _build(records, dc_of, tasks)
        del records  # freed while the collector is paused: it would otherwise traverse them all once
    inv.vcenter = content.about.fullName if content.about else ""
    if cluster:
        inv = _only_cluster(inv, cluster)
    return inv


def read_vm_table(si: vim.ServiceInstance, *, datacenter: str | None = None) -> pd.DataFrame:
    """Only the VM table (the same frame as ``read_inventory(si).vms``), reading only what it needs."""
    content = si.RetrieveContent()
    with no_gc():
        records, dc_of = _read(si, datacenter, {vim.VirtualMachine: VM_PATHS, **_VM_NAME_PATHS}, _RAW_PATHS)
        tasks = _active_tasks(si, content)
        by_type = _by_type(records)
        vms = _vm_table(records, dc_of, tasks, by_type, _cluster_of_host(records, by_type))[1]
        del records  # freed while the collector is paused (see read_inventory)
    return vms


def _read(si: vim.ServiceInstance, datacenter: str | None,
          types: dict[type, list[str]], raw: tuple[str, ...]) -> tuple[Records, dict[str, str]]:
    """Records of ``types`` in every datacenter (or the one named), and the datacenter of each object."""
    with container_view(si, None, [vim.Datacenter]) as view:
        dcs = retrieve_view(si, view, {vim.Datacenter: ["name"]})
    if datacenter:
        dcs = {m: r for m, r in dcs.items() if datacenter in (m, r.get("name"))}
        if not dcs:
            raise NotFound("datacenter", datacenter, [])
    records: Records = {}
    dc_of: dict[str, str] = {}
    for dc_moid, dc in dcs.items():
        with container_view(si, dc["_ref"], list(types)) as view:
            found = retrieve_view(si, view, types, fast=True, keep_devices=devices.CLASSES,
                                  raw=raw, alongside=_ALONGSIDE, digest=_DIGEST, max_objects=PAGE_OBJECTS)
        for moid in found:
            dc_of[moid] = dc["name"]
        records.update(found)
    return records, dc_of


def _active_tasks(si: vim.ServiceInstance, content: Any) -> list[dict[str, Any]]:
    """Relocations queued or running now (one bulk read of the task manager's recent tasks)."""
    recent = list(content.taskManager.recentTask or []) if content.taskManager else []
    found = retrieve_objects(si, recent, {vim.Task: TASK_PATHS})
    active = []
    for moid, rec in found.items():
        state, desc = str(rec.get("info.state")), rec.get("info.descriptionId") or ""
        entity = rec.get("info.entity")
        if state in _ACTIVE_TASK_STATES and entity is not None and (
                desc in _MOVE_TASKS or "relocate" in desc.lower() or "migrate" in desc.lower()):
            active.append({"task": moid, "vm": entity._moId})
    return active


def _by_type(records: Records) -> dict[str, dict[str, dict[str, Any]]]:
    """``{type name: {moid: record}}``, in one pass over the records."""
    grouped: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for moid, rec in records.items():
        grouped[rec["_type"]][moid] = rec
    return grouped


def _moid(ref: Any) -> str | None:
    return ref._moId if ref is not None else None


def _name(records: Records, ref: Any) -> str | None:
    return name_in(records, ref._moId if ref is not None else None)


def _cluster_of_host(records: Records, by_type: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str | None]:
    clusters_r = by_type["ClusterComputeResource"]
    return {h: _name(records, r.get("parent")) if _moid(r.get("parent")) in clusters_r else None
            for h, r in by_type["HostSystem"].items()}


def _vm_table(records: Records, dc_of: dict[str, str], tasks: list[dict[str, Any]],
              by_type: dict[str, dict[str, dict[str, Any]]],
              cluster_of_host: dict[str, str | None]) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The VM rows and the VM table, from VM records plus the names of what they refer to."""
    vms_r = by_type["VirtualMachine"]
    task_of_vm = {t["vm"]: t["task"] for t in tasks}
    names = {m: r.get("name") for m, r in records.items()}

    def name_of(moid: str | None) -> str | None:  # properties.name_in, from one dict where it can
        return names[moid] if moid in names else name_in(records, moid)

    vm_rows = []
    for moid, r in vms_r.items():
        disks, nics, cdroms = devices.read(r.get("config.hardware.device"), name_of)
        host_moid = _moid(r.get("runtime.host"))
        pool_moid = _moid(r.get("resourcePool"))
        ips = _guest_ips(r.get("guest.net"))
        primary = r.get("guest.ipAddress")
        if primary and primary not in ips:
            ips.insert(0, primary)
        committed = int(r.get("summary.storage.committed") or 0)
        uncommitted = int(r.get("summary.storage.uncommitted") or 0)
        vm_path = r.get("config.files.vmPathName")
        vm_rows.append({
            "name": r.get("name"), "moid": moid, "power_state": str(r.get("runtime.powerState")),
            "datacenter": dc_of.get(moid), "cluster": cluster_of_host.get(host_moid),
            "host": name_of(host_moid), "host_moid": host_moid,
            "resource_pool": name_of(pool_moid), "resource_pool_moid": pool_moid,
            "home_datastore": datastore_of_path(vm_path), "vm_path": vm_path,
            "datastores": sorted({name_of(d) for d in moids(r.get("datastore"))}
                                 | {d["datastore"] for d in disks if d["datastore"]}
                                 | {c["datastore"] for c in cdroms if c["datastore"]}
                                 | ({datastore_of_path(vm_path)} if vm_path else set())),
            "guest_ips": ips, "guest_ip": primary or (ips[0] if ips else None),
            "guest_os": r.get("config.guestFullName"), "vcpus": r.get("config.hardware.numCPU"),
            "memory_mb": r.get("config.hardware.memoryMB"),
            "provisioned_bytes": committed + uncommitted, "committed_bytes": committed,
            "networks": sorted({name_of(n) for n in moids(r.get("network"))}),
            "nics": nics, "disk_count": len(disks), "disks": disks,
            "disk_formats": sorted({d["format"] for d in disks}), "cdroms": cdroms,
            "tools_status": r.get("guest.toolsRunningStatus"), "active_task": task_of_vm.get(moid),
        })
    vms = _frame(vm_rows, VM_COLUMNS)
    _add_disk_committed(vms)
    return vm_rows, vms


def _guest_ips(value: Any) -> list[str]:
    """The addresses of a VM's ``guest.net`` (read as XML or as objects, or already as a tuple of addresses), each
    once, in order."""
    if isinstance(value, tuple):
        return list(value)
    access = value.access if isinstance(value, Raw) else OBJECTS
    ips: list[str] = []
    for nic in (value.elem if isinstance(value, Raw) else value or ()):
        ips.extend(ip for ip in access.texts(nic, "ipAddress") if ip not in ips)
    return ips


def _build(records: Records, dc_of: dict[str, str], tasks: list[dict[str, Any]]) -> Inventory:
    by_type = _by_type(records)
    cluster_of_host = _cluster_of_host(records, by_type)
    others = functools.partial(_other_rows, records, by_type, dc_of, cluster_of_host)
    # a large inventory's other tables are built by a child on the other core while this builds the VM table
    (vm_rows, vms), built = forked.beside(
        others, functools.partial(_vm_table, records, dc_of, tasks, by_type, cluster_of_host),
        fork=len(by_type["HostSystem"]) >= _FORK_OTHERS_FROM)

    vm_count, moving_hosts, moving_ds = defaultdict(int), defaultdict(int), defaultdict(int)
    vm_per_cluster, vms_per_net = defaultdict(int), defaultdict(int)
    for row in vm_rows:
        vm_count[row["host_moid"]] += 1
        vm_per_cluster[row["cluster"]] += 1
        for n in row["networks"]:
            vms_per_net[n] += 1
        if row["active_task"]:
            moving_hosts[row["host"]] += 1
            for ds in row["datastores"]:
                moving_ds[ds] += 1
    for row in built["hosts"]:
        row["vm_count"], row["running_migrations"] = vm_count.get(row["moid"], 0), moving_hosts.get(row["name"], 0)
    for row in built["datastores"]:
        row["running_migrations"] = moving_ds.get(row["name"], 0)
    for row in built["clusters"]:
        row["vm_count"] = vm_per_cluster.get(row["name"], 0)
    for row in built["networks"]:
        row["vm_count"] = vms_per_net.get(row["name"], 0)
    return Inventory(vms=vms, hosts=_frame(built["hosts"], HOST_COLUMNS),
                     datastores=_frame(built["datastores"], DATASTORE_COLUMNS),
                     clusters=_frame(built["clusters"], CLUSTER_COLUMNS),
                     networks=_frame(built["networks"], NETWORK_COLUMNS),
                     vmkernel=_frame(built["vmkernel"], VMK_COLUMNS), pools=_frame(built["pools"], POOL_COLUMNS))


def _other_rows(records: Records, by_type: dict[str, dict[str, dict[str, Any]]], dc_of: dict[str, str],
                cluster_of_host: dict[str, str | None]) -> dict[str, list[dict[str, Any]]]:
    """The rows of every table but the VMs', without their VM counts (plain values: they may be pickled)."""
    name_of = namer(records)
    nets_r = {m: r for m, r in records.items()  # in the reply's order, the kinds mixed
              if r["_type"] in ("Network", "DistributedVirtualPortgroup", "OpaqueNetwork")}
    hosts, vmkernel = rows.host_rows(by_type["HostSystem"], name_of, dc_of, cluster_of_host)
    pools, root_pool = rows.pool_rows(by_type["ResourcePool"], by_type["ClusterComputeResource"], name_of, dc_of)
    return {"hosts": hosts, "vmkernel": vmkernel, "pools": pools,
            "datastores": rows.datastore_rows(by_type["Datastore"], name_of, dc_of),
            "clusters": rows.cluster_rows(by_type["ClusterComputeResource"], name_of, dc_of, root_pool),
            "networks": rows.network_rows(nets_r, name_of, dc_of)}


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A table whose missing texts stay None (pandas would make them NaN, which is truthy)."""
    df = pd.DataFrame(rows, columns=columns)
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def _add_disk_committed(vms: pd.DataFrame) -> None:
    """Split each VM's committed bytes over its disks in proportion to their capacity.

    vCenter reports committed space per VM (``summary.storage``), not per disk; a thick disk commits
    its capacity, so the thin disks share what is left.
    """
    for disks, committed in zip(vms["disks"], vms["committed_bytes"]):
        thick = sum(d["capacity_bytes"] for d in disks if d["format"] != "thin")
        thin = [d for d in disks if d["format"] == "thin"]
        left = max(int(committed) - thick, 0)
        thin_cap = sum(d["capacity_bytes"] for d in thin) or 1
        for d in disks:
            if d["format"] == "thin":
                d["committed_bytes"] = min(d["capacity_bytes"], left * d["capacity_bytes"] // thin_cap)
            else:
                d["committed_bytes"] = d["capacity_bytes"]


def _only_cluster(inv: Inventory, cluster: str) -> Inventory:
    row = find_row(inv.clusters, cluster, "cluster")
    hosts = inv.hosts[inv.hosts["cluster"] == row["name"]]
    names = set(hosts["name"])
    keep_ds = inv.datastores["hosts"].map(lambda hs: bool(names & set(hs)))
    keep_net = inv.networks["hosts"].map(lambda hs: bool(names & set(hs)))
    return Inventory(vms=inv.vms[inv.vms["cluster"] == row["name"]].reset_index(drop=True),
                     hosts=hosts.reset_index(drop=True),
                     datastores=inv.datastores[keep_ds].reset_index(drop=True),
                     clusters=inv.clusters[inv.clusters["name"] == row["name"]].reset_index(drop=True),
                     networks=inv.networks[keep_net].reset_index(drop=True),
                     vmkernel=inv.vmkernel[inv.vmkernel["host"].isin(names)].reset_index(drop=True),
                     pools=inv.pools[inv.pools["cluster"] == row["name"]].reset_index(drop=True),
                     vcenter=inv.vcenter, taken=inv.taken)


VM_COLUMNS = ["name", "moid", "power_state", "datacenter", "cluster", "host", "host_moid", "resource_pool",
              "resource_pool_moid", "home_datastore", "vm_path", "datastores", "guest_ips", "guest_ip",
              "guest_os", "vcpus", "memory_mb", "provisioned_bytes", "committed_bytes", "networks", "nics",
              "disk_count", "disks", "disk_formats", "cdroms", "tools_status", "active_task"]
HOST_COLUMNS = ["name", "moid", "datacenter", "cluster", "compute_resource_moid", "connection_state", "power_state", "maintenance",
                "cpu_vendor", "cpu_model", "evc_mode", "max_evc_mode", "vmotion_vmks", "vmotion_ips",
                "vmotion_enabled", "datastores", "port_groups", "vm_count", "running_migrations"]
DATASTORE_COLUMNS = ["name", "moid", "datacenter", "type", "capacity_bytes", "free_bytes",
                     "provisioned_bytes", "hosts", "host_count", "accessible", "read_only_hosts",
                     "maintenance_mode", "running_migrations"]
CLUSTER_COLUMNS = ["name", "moid", "datacenter", "hosts", "host_count", "evc_mode", "drs_enabled",
                   "ha_enabled", "vm_count", "root_pool_moid"]
POOL_COLUMNS = ["name", "moid", "datacenter", "cluster", "owner_moid", "root"]
NETWORK_COLUMNS = ["name", "moid", "datacenter", "type", "hosts", "host_count", "vm_count"]
VMK_COLUMNS = ["host", "host_moid", "device", "port_group", "ip", "services", "vmotion"]
