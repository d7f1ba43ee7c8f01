"""The part of the inventory one move needs, in a number of requests that does not grow with the vCenter.

A check or a move of one VM needs the VM, its host and the target host, their compute resources and
resource pools, the datastores and port groups involved, and the relocations running now (with their
VMs, for the concurrency limits). :func:`find` turns what the operator typed into moids, with the same
NotFound / Ambiguous messages as a full inventory; it is also the CLI's look-up before any kernel
starts. It never reads every VM's name (the one list that grows to 45,000 in a vCenter):

* a VM moid (``vm-42``) is read directly (one request);
* a VM name is asked of vCenter's own index: ``SearchIndex.FindChild`` in each folder that holds VMs
  and in each vApp (a handful of requests; vCenter keeps names unique within a folder, so a name
  found in two places is two VMs and is refused as ambiguous, naming both moids). The name is asked
  as written and as ``ManagedEntity.name`` returns it (``a/b`` is kept as ``a%2fb``);
* only an unknown name reads the VMs' names, for the "did you mean" of its refusal;
* hosts, datastores, clusters and networks come from one names-only read per datacenter (their
  number is bounded by vCenter's maximums, 2,500 hosts, not by the VMs).

:func:`read_for_move` then reads those objects with the full inventory's property paths and builds
the same tables (:class:`~runbook.vsphere.inventory.Inventory`), holding only those rows. The full
inventory (``read_inventory``) is for the inventory runbook.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyVmomi import vim, vmodl

from runbook.errors import Ambiguous, BadInput, NotFound
from runbook.vsphere.find import display_name, vcenter_name
from runbook.vsphere.properties import Records, container_view, retrieve_objects, retrieve_view

if TYPE_CHECKING:
    import pandas as pd

    from runbook.vsphere import inventory as inv_mod

#: Read by name in one request per datacenter: none of them grows with the number of VMs.
_NAMED = (vim.HostSystem, vim.Datastore, vim.ComputeResource, vim.Network, vim.Folder, vim.VirtualApp)
_VM_MOID = re.compile(r"vm-\d+")
#: Above this many VM folders and vApps, one names read costs less than a FindChild in each.
MAX_VM_CONTAINERS = 48
#: Names per page: the server builds a page while the client reads the one before.
_NAMES_PAGE = 5000


@dataclass
class Names:
    """Names and types (and datacenter) of the entities read by name: everything but VMs and pools."""

    records: dict[str, dict[str, Any]]
    dc_of: dict[str, str]

    def table(self, type_name: str) -> pd.DataFrame:
        import pandas as pd

        rows = [{"name": r.get("name"), "moid": m} for m, r in self.records.items() if r["_type"] == type_name]
        return pd.DataFrame(rows, columns=["name", "moid"])

    def find(self, type_name: str, key: str, kind: str) -> str:
        """The moid of the object of ``type_name`` named (or with moid) ``key``; NotFound / Ambiguous otherwise
        (as :func:`~runbook.vsphere.find.find_row` over :meth:`table`, without building the table)."""
        return match_name({m: str(r.get("name")) for m, r in self.records.items() if r["_type"] == type_name},
                          key, kind)

    def vm_containers(self) -> list[tuple[str, Any]]:
        """(moid, reference) of the folders that hold VMs and of the vApps: where a VM has its name."""
        return [(m, r["_ref"]) for m, r in self.records.items()
                if r["_type"] == "VirtualApp" or (r["_type"] == "Folder" and "VirtualMachine" in (r.get("childType") or ()))]


def match_name(names: dict[str, str], key: str, kind: str) -> str:
    """The moid among ``names`` (moid: name as vCenter returns it) that is ``key`` or is named ``key`` (either
    form, see :mod:`runbook.vsphere.find`); BadInput when empty, Ambiguous (the moids) or NotFound (the closest
    names) otherwise: the messages of :func:`~runbook.vsphere.find.find_row`, without pandas."""
    if key is None or not str(key).strip():
        raise BadInput(f"the {kind} name is empty; give a {kind} name or moid")
    key = str(key).strip()
    if key in names:
        return key
    hits = [m for m, n in names.items() if n == key]
    if not hits:
        wanted = display_name(vcenter_name(key))
        hits = [m for m, n in names.items() if display_name(n) == wanted]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise Ambiguous(kind, key, hits)
    raise NotFound(kind, key, closest(key, names.values()))


def closest(key: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` names like ``key`` (difflib's ratio at least 0.6), else those equal to it but for case."""
    unique = list(dict.fromkeys(names))
    close = difflib.get_close_matches(key, unique, n=n, cutoff=0.6)
    return close or [name for name in unique if name.lower() == key.lower()][:n]


class _WithNames(dict):
    """Records that also answer ``get`` for objects read by name only, so that every reference has a name."""

    def __init__(self, records: Records, names: Names):
        super().__init__(records)
        self._names = names.records

    def get(self, key: Any, default: Any = None) -> Any:
        found = super().get(key)
        return found if found is not None else self._names.get(key, default)


def read_names(si: vim.ServiceInstance, types: Sequence[type] = _NAMED) -> Names:
    """Names and types of ``types`` (by default everything but VMs and resource pools), per datacenter."""
    with container_view(si, None, [vim.Datacenter]) as view:
        dcs = retrieve_view(si, view, {vim.Datacenter: ["name"]})
    records: dict[str, dict[str, Any]] = {}
    dc_of: dict[str, str] = {}
    paths = {t: ["name", "childType"] if t is vim.Folder else ["name"] for t in types}
    for dc in dcs.values():
        with container_view(si, dc["_ref"], list(types)) as view:
            found = retrieve_view(si, view, paths, fast=True, max_objects=_NAMES_PAGE)
        for moid, rec in found.items():
            dc_of[moid] = dc["name"]
            rec["_type"] = _vim_type_name(rec)
        records.update(found)
    return Names(records, dc_of)


def _vim_type_name(rec: dict[str, Any]) -> str:
    ref = rec.get("_ref")
    return type(ref).__name__.split(".")[-1] if ref is not None else str(rec.get("_type"))


def find_vm(si: vim.ServiceInstance, key: str, names: Names) -> str:
    """The moid of the VM with moid or name ``key`` (see the module's docstring); adds it to ``names``.

    Raises BadInput for an empty key, NotFound (with the closest names) or Ambiguous (every moid).
    """
    if key is None or not str(key).strip():
        raise BadInput("the VM name is empty; give a VM name or moid")
    key = str(key).strip()
    if _VM_MOID.fullmatch(key):  # a moid comes first, as in a table look-up
        try:
            found = retrieve_objects(si, [vim.VirtualMachine(key, si._stub)], {vim.VirtualMachine: ["name"]})
        except vmodl.fault.ManagedObjectNotFound:
            found = {}
        if key in found:
            names.records[key] = {**found[key], "_type": "VirtualMachine"}
            return key
    containers = names.vm_containers()
    if len(containers) > MAX_VM_CONTAINERS:
        return _find_vm_by_names(si, key, names)
    index = si.RetrieveContent().searchIndex
    hits: dict[str, tuple[Any, str, str]] = {}
    for container_moid, container in containers:
        for form in dict.fromkeys((key, vcenter_name(key))):
            ref = index.FindChild(entity=container, name=form)
            if isinstance(ref, vim.VirtualMachine):
                hits[ref._moId] = (ref, names.dc_of.get(container_moid, ""), form)
    if len(hits) > 1:
        raise Ambiguous("VM", key, [f"{m} (in {dc})" if dc else m for m, (_, dc, _) in sorted(hits.items())])
    if not hits:
        return _find_vm_by_names(si, key, names)  # NotFound with suggestions (or a VM outside any folder)
    moid, (ref, dc, name) = next(iter(hits.items()))
    names.records[moid] = {"_type": "VirtualMachine", "_ref": ref, "name": name}
    names.dc_of[moid] = dc
    return moid


def _find_vm_by_names(si: vim.ServiceInstance, key: str, names: Names) -> str:
    """The look-up over every VM's name: for the refusal's suggestions, or with very many VM folders."""
    vms = read_names(si, [vim.VirtualMachine])
    moid = vms.find("VirtualMachine", key, "VM")
    names.records[moid], names.dc_of[moid] = vms.records[moid], vms.dc_of[moid]
    return moid


def find(si: vim.ServiceInstance, *, vm: str = "", hosts: Iterable[str] = (), datastores: Iterable[str] = (),
         names: Names | None = None) -> dict[str, Any]:
    """Moids of what a request names (raises NotFound / Ambiguous): ``{"vm", "hosts", "datastores", "names"}``."""
    names = names or read_names(si)
    return {"vm": find_vm(si, vm, names) if vm else None,
            "hosts": [names.find("HostSystem", h, "host") for h in hosts if h],
            "datastores": [names.find("Datastore", d, "datastore") for d in datastores if d],
            "names": names}


def _paths(inv_mod: Any) -> dict[type, list[str]]:
    return {vim.VirtualMachine: inv_mod.VM_PATHS, vim.HostSystem: inv_mod.HOST_PATHS,
            vim.Datastore: inv_mod.DATASTORE_PATHS, vim.ClusterComputeResource: inv_mod.CLUSTER_PATHS,
            vim.ComputeResource: ["name", "host"], vim.Network: inv_mod.NETWORK_PATHS,
            vim.ResourcePool: inv_mod.POOL_PATHS}


def read_for_move(si: vim.ServiceInstance, *, vm: str, hosts: Sequence[str] = (), datastores: Sequence[str] = ()
                  ) -> inv_mod.Inventory:
    """The inventory rows one move needs (see the module's docstring); the same columns as ``read_inventory``."""
    from runbook.vsphere import inventory as inv_mod  # pandas: a move needs it, a refusal does not

    _PATHS = _paths(inv_mod)
    content = si.RetrieveContent()
    stub = si._stub
    found = find(si, vm=vm, hosts=hosts, datastores=datastores)
    names: Names = found["names"]
    tasks = inv_mod._active_tasks(si, content)
    vm_moids = [found["vm"]] + sorted({t["vm"] for t in tasks} - {found["vm"]})
    records: Records = dict(retrieve_objects(si, [vim.VirtualMachine(m, stub) for m in vm_moids],
                                             {vim.VirtualMachine: _PATHS[vim.VirtualMachine]}, fast=True))
    host_moids = set(found["hosts"]) | {r["runtime.host"]._moId for r in records.values() if r.get("runtime.host")}
    records.update(retrieve_objects(si, [vim.HostSystem(m, stub) for m in sorted(host_moids)],
                                    {vim.HostSystem: _PATHS[vim.HostSystem]}, fast=True))
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
                                                 if t not in (vim.VirtualMachine, vim.HostSystem)}, fast=True))
    for moid, rec in list(records.items()):
        if rec["_type"] in ("ClusterComputeResource", "ComputeResource"):
            with container_view(si, rec["_ref"], [vim.ResourcePool]) as view:
                records.update(retrieve_view(si, view, {vim.ResourcePool: _PATHS[vim.ResourcePool]}, fast=True))
    dc_of = dict(names.dc_of)
    for moid, rec in records.items():  # VMs of other moves and pools were not read by name: their host's / owner's
        ref = rec.get("runtime.host") if rec["_type"] == "VirtualMachine" else rec.get("owner")
        if moid not in dc_of and ref is not None and ref._moId in dc_of:
            dc_of[moid] = dc_of[ref._moId]
    inv = inv_mod._build(_WithNames(records, names), dc_of, tasks)
    inv.vcenter = content.about.fullName if content.about else ""
    return inv
