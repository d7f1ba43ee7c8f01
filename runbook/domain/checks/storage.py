"""Checks about storage: shared datastores for a host move, the target datastore, free space, disk formats."""
from __future__ import annotations

from typing import Any

from runbook.domain.plan import FORMAT_REMEDY, ResolvedPlan
from .base import (FAIL, PASS, SKIP, WARN, CheckResult, CheckSettings, check, datastore_row, host_row,
                   mounted_datastores, plural, records, size, strings, vm_row)

SHARED_STORAGE = "shared storage"
TARGET_DATASTORE = "target datastore usable"
FREE_SPACE = "free space on the target datastore"
DISK_FORMAT = "disk format change possible"

MIB = 1024 * 1024


def _contents(inventory: Any, r: ResolvedPlan) -> dict[str, list[str]]:
    """Datastore name -> what of the VM lives there ("VM files", disk labels, CD-ROM ISOs)."""
    contents: dict[str, list[str]] = {}
    if r.home_datastore:
        contents.setdefault(r.home_datastore, []).append("VM files")
    for disk in r.disks:
        contents.setdefault(disk.source_datastore, []).append(disk.label)
    for cd in records(vm_row(inventory, r.vm_moid).get("cdroms")):
        if cd.get("kind") == "iso" and cd.get("datastore"):
            contents.setdefault(str(cd["datastore"]), []).append(f"ISO of {cd.get('label')}")
    for name in r.vm_datastores:
        contents.setdefault(name, ["VM files"])
    return contents


@check(SHARED_STORAGE)
def shared_storage(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A host-only move needs the target host to mount every datastore holding the VM's files, disks and ISO.

    When the datastore changes too, only the CD-ROM ISOs stay where they are, so only their datastores
    must be visible to the target host.
    """
    if not r.host_changes:
        return CheckResult(SHARED_STORAGE, SKIP, "the host does not change")
    mounted = mounted_datastores(inventory, host_row(inventory, r.run_host_moid))
    contents = _contents(inventory, r)
    needed = sorted(r.iso_datastores) if r.target_datastore else sorted(contents)
    missing = [name for name in needed if name not in mounted]
    if not needed:
        return CheckResult(SHARED_STORAGE, PASS, f"all files of VM {r.vm} move to {r.target_datastore}")
    if not missing:
        return CheckResult(SHARED_STORAGE, PASS, f"host {r.run_host} mounts {', '.join(needed)}")
    found = "; ".join(f"{name} (holds {', '.join(contents.get(name, ['VM files']))})" for name in missing)
    remedy = (f"mount {', '.join(missing)} on host {r.run_host}, or point the CD-ROM at an ISO on a datastore "
              f"{r.run_host} mounts, or disconnect it")
    if not r.target_datastore:
        remedy = f"give a target datastore that host {r.run_host} mounts (host and storage move together), or " + remedy
    return CheckResult(SHARED_STORAGE, FAIL, f"host {r.run_host} does not mount {found}", remedy)


@check(TARGET_DATASTORE)
def target_datastore(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """The target datastore must be mounted on the host that will run the VM, accessible and writable."""
    if not r.target_datastore:
        return CheckResult(TARGET_DATASTORE, SKIP, "no target datastore given")
    ds = datastore_row(inventory, r.target_datastore)
    host = host_row(inventory, r.run_host_moid)
    problems = []
    if r.target_datastore not in mounted_datastores(inventory, host):
        problems.append(f"is not mounted on host {r.run_host}")
    if ds is not None and not bool(ds.get("accessible", True)):
        problems.append("is not accessible")
    if ds is not None and r.run_host in strings(ds.get("read_only_hosts")):
        problems.append(f"is read-only on host {r.run_host}")
    mode = None if ds is None else ds.get("maintenance_mode")
    if mode and mode != "normal":
        problems.append(f"is in maintenance mode ({mode})")
    if not problems:
        return CheckResult(TARGET_DATASTORE, PASS,
                           f"datastore {r.target_datastore} is mounted read-write on {r.run_host} and accessible")
    return CheckResult(TARGET_DATASTORE, FAIL, f"datastore {r.target_datastore} {' and '.join(problems)}",
                       f"choose a datastore host {r.run_host} mounts read-write, or fix {r.target_datastore} "
                       f"(mount it on {r.run_host}, bring it back online, leave maintenance mode)")


def _needed_bytes(r: ResolvedPlan) -> tuple[int, str]:
    """Bytes the moving disks need on the target (thin: committed; thick: capacity) and how it was counted."""
    total, parts = 0, []
    for disk in r.moving_disks:
        thin = disk.target_format == "thin"
        total += disk.committed_bytes if thin else disk.capacity_bytes
        parts.append(f"{disk.label} {disk.target_format}")
    return total, ", ".join(parts)


@check(FREE_SPACE)
def free_space(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """The moving disks (and a powered-on VM's swap file, when its home moves) must fit, with a margin."""
    if not r.target_datastore:
        return CheckResult(FREE_SPACE, SKIP, "no target datastore given")
    if not r.moving_disks and not r.home_moves:
        return CheckResult(FREE_SPACE, SKIP, f"no disk of VM {r.vm} moves to {r.target_datastore}")
    ds = datastore_row(inventory, r.target_datastore)
    if ds is None:
        return CheckResult(FREE_SPACE, SKIP, f"datastore {r.target_datastore} has no capacity figures")
    needed, detail = _needed_bytes(r)
    memory = int(vm_row(inventory, r.vm_moid).get("memory_mb") or 0) * MIB
    if r.home_moves and r.power_state == "poweredOn" and memory:
        needed += memory
        detail = (detail + ", " if detail else "") + f"swap file up to {size(memory)}"
    free, capacity = int(ds.get("free_bytes") or 0), int(ds.get("capacity_bytes") or 0)
    left = free - needed
    margin = capacity * settings.free_space_margin_pct / 100.0
    found = f"needs {size(needed)} ({detail}) of {size(free)} free on {r.target_datastore}"
    if left < 0:
        return CheckResult(FREE_SPACE, FAIL, f"{found}: {size(-left)} short",
                           f"free space on {r.target_datastore}, choose the thin format, or pick a datastore "
                           f"with at least {size(needed)} free")
    left_pct = 100.0 * left / capacity if capacity else 0.0
    if left < margin:
        return CheckResult(FREE_SPACE, WARN,
                           f"{found}: leaves {size(left)} ({left_pct:.1f}% of {size(capacity)}), under the "
                           f"{settings.free_space_margin_pct:g}% margin",
                           f"free space on {r.target_datastore} or pick a datastore with more room")
    return CheckResult(FREE_SPACE, PASS, f"{found}: leaves {size(left)} ({left_pct:.1f}%)")


@check(DISK_FORMAT)
def disk_format(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A format change happens only for a disk copied to another datastore (the plan's one rule): a disk
    already on the target datastore in another format fails, with the remedy the plan gives."""
    if not r.target_datastore or r.disk_format == "same":
        return CheckResult(DISK_FORMAT, SKIP, "no disk format change asked")
    stuck = [d for d in r.disks if not d.moves and d.source_format != r.disk_format]
    if not stuck:
        return CheckResult(DISK_FORMAT, PASS,
                           f"{plural(len(r.moving_disks), 'disk')} will be copied as {r.disk_format}")
    found = ", ".join(f"{d.label} ({d.source_format})" for d in stuck)
    return CheckResult(DISK_FORMAT, FAIL,
                       f"{found} already on {r.target_datastore}: a format changes only when a disk is copied "
                       f"to another datastore", FORMAT_REMEDY)
