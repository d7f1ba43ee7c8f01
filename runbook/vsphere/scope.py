"""The part of the inventory one move needs, in a number of requests that does not grow with the vCenter.

A check or a move of one VM needs the VM, its host and the target host, their compute resources and
resource pools, the datastores and port groups involved, and the relocations running now (with their
VMs, for the concurrency limits). :func:`find` reads only names (one request per datacenter) to turn what
the operator typed into moids, with the same NotFound / Ambiguous messages as a full inventory; it is also
the CLI's look-up before any kernel starts. :func:`read_for_move` then reads those objects with the full
inventory's property paths and builds the same tables (:class:`~runbook.vsphere.inventory.Inventory`),
holding only those rows. The full inventory (``read_inventory``) is for the inventory runbook.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyVmomi import vim

from runbook.vsphere import inventory as inv_mod
from runbook.vsphere.find import find_row
from runbook.vsphere.properties import Records, container_view, retrieve_objects, retrieve_view

_NAMED = (vim.VirtualMachine, vim.HostSystem, vim.Datastore, vim.ComputeResource, vim.Network, vim.ResourcePool)
_PATHS: dict[type, list[str]] = {
    vim.VirtualMachine: inv_mod.VM_PATHS, vim.HostSystem: inv_mod.HOST_PATHS, vim.Datastore: inv_mod.DATASTORE_PATHS,
    vim.ClusterComputeResource: inv_mod.CLUSTER_PATHS, vim.ComputeResource: ["name", "host"],
    vim.Network: inv_mod.NETWORK_PATHS, vim.ResourcePool: inv_mod.POOL_PATHS,
}


@dataclass
class Names:
    """Every entity's name and type (and datacenter), from one names-only read per datacenter."""

    records: dict[str, dict[str, Any]]
    dc_of: dict[str, str]

    def table(self, type_name: str) -> pd.DataFrame:
        rows = [{"name": r.get("name"), "moid": m} for m, r in self.records.items() if r["_type"] == type_name]
        return pd.DataFrame(rows, columns=["name", "moid"])

    def find(self, type_name: str, key: str, kind: str) -> str:
        """The moid of the object of ``type_name`` named (or with moid) ``key``; NotFound / Ambiguous otherwise."""
        return str(find_row(self.table(type_name), key, kind)["moid"])


class _WithNames(dict):
    """Records that also answer ``get`` for objects read by name only, so that every reference has a name."""

    def __init__(self, records: Records, names: Names):
        super().__init__(records)
        self._names = names.records

    def get(self, key: Any, default: Any = None) -> Any:
        found = super().get(key)
        return found if found is not None else self._names.get(key, default)


def read_names(si: vim.ServiceInstance) -> Names:
    """Names and types of the VMs, hosts, datastores, compute resources, networks and pools."""
    with container_view(si, None, [vim.Datacenter]) as view:
        dcs = retrieve_view(si, view, {vim.Datacenter: ["name"]})
    records: dict[str, dict[str, Any]] = {}
    dc_of: dict[str, str] = {}
    for dc in dcs.values():
        with container_view(si, dc["_ref"], list(_NAMED)) as view:
            found = retrieve_view(si, view, {t: ["name"] for t in _NAMED}, fast=True)
        for moid, rec in found.items():
            dc_of[moid] = dc["name"]
            rec["_type"] = _vim_type_name(rec)
        records.update(found)
    return Names(records, dc_of)


def _vim_type_name(rec: dict[str, Any]) -> str:
    ref = rec.get("_ref")
    return type(ref).__name__.split(".")[-1] if ref is not None else str(rec.get("_type"))


def find(si: vim.ServiceInstance, *, vm: str = "", hosts: Iterable[str] = (), datastores: Iterable[str] = (),
         names: Names | None = None) -> dict[str, Any]:
    """Moids of what a request names (raises NotFound / Ambiguous): ``{"vm", "hosts", "datastores", "names"}``."""
    names = names or read_names(si)
    return {"vm": names.find("VirtualMachine", vm, "VM") if vm else None,
            "hosts": [names.find("HostSystem", h, "host") for h in hosts if h],
            "datastores": [names.find("Datastore", d, "datastore") for d in datastores if d],
            "names": names}


def read_for_move(si: vim.ServiceInstance, *, vm: str, hosts: Sequence[str] = (), datastores: Sequence[str] = ()
                  ) -> inv_mod.Inventory:
    """The inventory rows one move needs (see the module's docstring); the same columns as ``read_inventory``."""
    content = si.RetrieveContent()
    stub = si._stub
    found = find(si, vm=vm, hosts=hosts, datastores=datastores)
    names: Names = found["names"]
    tasks = inv_mod._active_tasks(si, content)
    vm_moids = [found["vm"]] + sorted({t["vm"] for t in tasks} - {found["vm"]})
    records: Records = dict(retrieve_objects(si, [vim.VirtualMachine(m, stub) for m in vm_moids],
                                             {vim.VirtualMachine: _PATHS[vim.VirtualMachine]}))
    host_moids = set(found["hosts"]) | {r["runtime.host"]._moId for r in records.values() if r.get("runtime.host")}
    records.update(retrieve_objects(si, [vim.HostSystem(m, stub) for m in sorted(host_moids)],
                                    {vim.HostSystem: _PATHS[vim.HostSystem]}))
    wanted: dict[str, Any] = {}
    for rec in records.values():
        for key in ("datastore", "network"):
            for ref in rec.get(key) or ():
                wanted[ref._moId] = ref
        if rec.get("parent") is not None and rec["_type"] == "HostSystem":
            wanted[rec["parent"]._moId] = rec["parent"]
    for moid in found["datastores"]:
        wanted[moid] = vim.Datastore(moid, stub)
    others = [ref for moid, ref in wanted.items() if moid not in records]
    records.update(retrieve_objects(si, others, {t: p for t, p in _PATHS.items()
                                                 if t not in (vim.VirtualMachine, vim.HostSystem)}))
    for moid, rec in list(records.items()):
        if rec["_type"] in ("ClusterComputeResource", "ComputeResource"):
            with container_view(si, rec["_ref"], [vim.ResourcePool]) as view:
                records.update(retrieve_view(si, view, {vim.ResourcePool: _PATHS[vim.ResourcePool]}))
    inv = inv_mod._build(_WithNames(records, names), names.dc_of, tasks)
    inv.vcenter = content.about.fullName if content.about else ""
    return inv
