"""Where a VM is, as the vCenter reports it; whether a move of it is under way; what a move achieved.

``placement()`` reads the VM and the names it refers to in two requests; ``verify()`` compares what a plan
asked for with a placement read after the move; ``vm_lock()`` keeps two runs on this machine from moving
the same VM at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from pyVmomi import vim

from runbook.domain.plan import ResolvedPlan
from runbook.errors import BadInput
from runbook.vsphere import devices
from runbook.vsphere.find import display_name
from runbook.vsphere.properties import namer, retrieve_objects

PLACEMENT_PATHS = ["name", "runtime.host", "resourcePool", "datastore", "config.hardware.device",
                   "config.files.vmPathName", "recentTask"]


def placement(si: vim.ServiceInstance, vm_moid: str) -> dict[str, Any]:
    """Where the VM is now, as the vCenter reports it (two requests: the VM, then the names it refers to)."""
    vm = vim.VirtualMachine(vm_moid, si._stub)
    found = retrieve_objects(si, [vm], {vim.VirtualMachine: PLACEMENT_PATHS})
    if vm_moid not in found:
        raise BadInput(f"VM {vm_moid} is no longer in the vCenter")
    rec = found[vm_moid]
    refs = [rec.get("runtime.host"), rec.get("resourcePool"), *(rec.get("datastore") or [])]
    for dev in rec.get("config.hardware.device") or ():
        for attr in ("datastore", "network"):
            ref = getattr(dev.backing, attr, None) if dev.backing else None
            if ref is not None:
                refs.append(ref)
    unique = {r._moId: r for r in refs if r is not None}
    names = retrieve_objects(si, list(unique.values()), {
        vim.HostSystem: ["name"], vim.ResourcePool: ["name"], vim.Datastore: ["name"], vim.Network: ["name"]})
    disks, nics, cdroms = devices.read(rec.get("config.hardware.device"), namer(names))
    path = rec.get("config.files.vmPathName") or ""
    return {
        "vm": rec.get("name"), "host": names.get(rec["runtime.host"]._moId, {}).get("name"),
        "resource_pool": names.get(rec["resourcePool"]._moId, {}).get("name") if rec.get("resourcePool") else None,
        "vm_path": path, "home_datastore": path[1:path.index("]")] if path.startswith("[") else None,
        "datastores": sorted(names.get(d._moId, {}).get("name", d._moId) for d in rec.get("datastore") or ()),
        "disks": [{k: d[k] for k in ("key", "label", "datastore", "format", "file", "capacity_bytes")} for d in disks],
        "nics": [{k: n[k] for k in ("key", "label", "port_group", "mac")} for n in nics],
        "cdroms": [{k: c[k] for k in ("key", "label", "kind", "iso")} for c in cdroms],
        "recent_tasks": [t._moId for t in rec.get("recentTask") or ()],
    }


def active_relocation(si: vim.ServiceInstance, vm_moid: str) -> str | None:
    """The id of a relocation queued or running on the VM now, or None."""
    tasks = placement_tasks(si, vm_moid)
    found = retrieve_objects(si, tasks, {vim.Task: ["info.state", "info.descriptionId"]})
    for moid, rec in found.items():
        desc = (rec.get("info.descriptionId") or "").lower()
        if str(rec.get("info.state")) in ("queued", "running") and ("relocate" in desc or "migrate" in desc):
            return moid
    return None


def relocations_since(si: vim.ServiceInstance, vm_moid: str, since: Any) -> list[str]:
    """Ids of the VM's relocation tasks queued at or after ``since`` (oldest first)."""
    tasks = placement_tasks(si, vm_moid)
    found = retrieve_objects(si, tasks, {vim.Task: ["info.descriptionId", "info.queueTime"]})
    picked = []
    for moid, rec in found.items():
        desc = (rec.get("info.descriptionId") or "").lower()
        queued = rec.get("info.queueTime")
        if ("relocate" in desc or "migrate" in desc) and queued is not None and queued >= since:
            picked.append((queued, moid))
    return [moid for _, moid in sorted(picked)]


def placement_tasks(si: vim.ServiceInstance, vm_moid: str) -> list[vim.Task]:
    vm = vim.VirtualMachine(vm_moid, si._stub)
    rec = retrieve_objects(si, [vm], {vim.VirtualMachine: ["recentTask"]}).get(vm_moid, {})
    return list(rec.get("recentTask") or [])


def verify(resolved: ResolvedPlan, after: dict[str, Any]) -> pd.DataFrame:
    """Compare what was asked with what the vCenter reports now: one row per item, ok True/False.

    Each disk is found by its device key (by its label in a placement read without keys) and named as an
    admin knows it (``Hard disk 1 (web-01.vmdk)``); names are shown as the operator wrote them."""
    rows = []
    if resolved.target_host:
        rows.append(("host", display_name(resolved.run_host), _shown(after["host"])))
    by_key = {d.get("key"): d for d in after["disks"] if d.get("key") is not None}
    by_label = {d["label"]: d for d in after["disks"]}
    for disk in resolved.disks:
        now = by_key.get(disk.key) or by_label.get(disk.label, {})
        rows.append((f"{disk.name} datastore", display_name(disk.target_datastore), _shown(now.get("datastore"))))
        rows.append((f"{disk.name} format", disk.target_format, now.get("format")))
    if resolved.home_moves and resolved.target_datastore:
        rows.append(("VM home (configuration files)", display_name(resolved.target_datastore),
                     _shown(after["home_datastore"])))
    nics = {n["label"]: n for n in after["nics"]}
    for nic in resolved.nic_changes:
        rows.append((f"{devices.display_name(nics.get(nic.label) or nic)} port group", display_name(nic.new_port_group),
                     _shown(nics.get(nic.label, {}).get("port_group"))))
    return pd.DataFrame([{"item": i, "expected": e, "actual": a, "ok": e == a} for i, e, a in rows],
                        columns=["item", "expected", "actual", "ok"])


def _shown(name: Any) -> Any:
    """A name the vCenter reported, as the operator wrote it (None stays None)."""
    return display_name(name) if isinstance(name, str) else name


@contextlib.contextmanager
def vm_lock(vcenter: str, vm_moid: str) -> Iterator[None]:
    """Refuse a second run moving the same VM from this machine at the same time."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "runbook-locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{''.join(c if c.isalnum() else '_' for c in vcenter)}-{vm_moid}.lock"
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another run on this machine is moving VM {vm_moid} right now; wait for it to "
                           f"finish (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
