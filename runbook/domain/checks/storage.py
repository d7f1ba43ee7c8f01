"""Checks about storage: shared datastores for a host move, the target datastores, free space, disk formats.

A move may put things on several datastores: the target datastore (the VM's home and the disks without a
place of their own) and each disk's own datastore (per-disk placement); each is checked.
"""
from __future__ import annotations

from typing import Any

from runbook.domain.plan import FORMAT_REMEDY, DiskMove, ResolvedPlan
from runbook.vsphere.devices import display_name as device_name
from .base import (FAIL, PASS, SKIP, WARN, CheckResult, CheckSettings, check, datastore_row, host_row,
                   mounted_datastores, plural, records, size, strings, vm_row)

SHARED_STORAGE = "shared storage"
TARGET_DATASTORE = "target datastore usable"
FREE_SPACE = "free space on the target datastore"
DISK_FORMAT = "disk format change possible"

MIB = 1024 * 1024


_NOT_ONLY_THIN = "thick", "eagerzeroedthick"
RANK = {SKIP: 0, PASS: 1, WARN: 2, FAIL: 3}


def _staying(inventory: Any, r: ResolvedPlan) -> dict[str, list[str]]:
    """Datastore name -> what of the VM stays on it through the move ("VM files", disks, CD-ROM ISOs).

    What goes to a target datastore is left out: the target-datastore check looks at those."""
    targets = r.target_datastores()
    stays: dict[str, list[str]] = {}
    if r.home_datastore and not r.target_datastore:
        stays.setdefault(r.home_datastore, []).append("VM files")
    for disk in r.disks:
        if not disk.moves:
            stays.setdefault(disk.source_datastore, []).append(disk.name)
    for cd in records(vm_row(inventory, r.vm_moid).get("cdroms")):
        if cd.get("kind") == "iso" and cd.get("datastore"):
            stays.setdefault(str(cd["datastore"]), []).append(f"the ISO of {device_name(cd)}")
    if not r.target_datastore:
        for name in r.vm_datastores:
            stays.setdefault(name, ["VM files"])
    return {name: what for name, what in stays.items() if name not in targets or any("ISO" in w for w in what)}


@check(SHARED_STORAGE)
def shared_storage(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A host move needs the target host to mount every datastore holding what stays where it is: the VM's
    files and disks that do not move, and the CD-ROMs' ISOs. What moves goes to a target datastore,
    which the target-datastore check looks at."""
    if not r.host_changes:
        return CheckResult(SHARED_STORAGE, SKIP, "the host does not change")
    mounted = mounted_datastores(inventory, host_row(inventory, r.run_host_moid))
    stays = _staying(inventory, r)
    missing = [name for name in sorted(stays) if name not in mounted]
    if not stays:
        where = ", ".join(r.target_datastores()) or "its target datastores"
        return CheckResult(SHARED_STORAGE, PASS, f"all files of VM {r.vm} move to {where}")
    if not missing:
        return CheckResult(SHARED_STORAGE, PASS, f"host {r.run_host} mounts {', '.join(sorted(stays))}")
    found = "; ".join(f"{name} (holds {', '.join(stays[name])})" for name in missing)
    remedies = [f"mount {', '.join(missing)} on host {r.run_host}"]
    held = [w for name in missing for w in stays[name]]
    if any(not w.startswith("the ISO of") for w in held):
        remedies.append(f"give a target datastore host {r.run_host} mounts (--datastore: host and storage move "
                        f"together), or a datastore per disk (--disk 'DISK=DATASTORE')")
    isos = [w.removeprefix("the ISO of ") for w in held if w.startswith("the ISO of")]
    if isos:
        remedies.append(f"point {', '.join(isos)} at an ISO on a datastore {r.run_host} mounts, or disconnect it")
    return CheckResult(SHARED_STORAGE, FAIL, f"host {r.run_host} does not mount {found}", ", or ".join(remedies))


def _datastore_problems(inventory: Any, r: ResolvedPlan, name: str, mounted: set[str]) -> list[str]:
    ds = datastore_row(inventory, name)
    problems = []
    if name not in mounted:
        problems.append(f"is not mounted on host {r.run_host}")
    if ds is not None and not bool(ds.get("accessible", True)):
        problems.append("is not accessible")
    if ds is not None and r.run_host in strings(ds.get("read_only_hosts")):
        problems.append(f"is read-only on host {r.run_host}")
    mode = None if ds is None else ds.get("maintenance_mode")
    if mode and mode != "normal":
        problems.append(f"is in maintenance mode ({mode})")
    return problems


@check(TARGET_DATASTORE)
def target_datastore(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """Every datastore the move puts something on must be mounted on the host that will run the VM,
    accessible and writable (the target datastore and each per-disk one)."""
    targets = list(r.target_datastores())
    if not targets:
        return CheckResult(TARGET_DATASTORE, SKIP, "no target datastore given")
    mounted = mounted_datastores(inventory, host_row(inventory, r.run_host_moid))
    bad = {name: problems for name in targets if (problems := _datastore_problems(inventory, r, name, mounted))}
    if not bad:
        return CheckResult(TARGET_DATASTORE, PASS, f"datastore {', '.join(targets)} "
                                                   f"{'is' if len(targets) == 1 else 'are'} mounted read-write on "
                                                   f"{r.run_host} and accessible")
    names = ", ".join(bad)
    return CheckResult(TARGET_DATASTORE, FAIL,
                       "; ".join(f"datastore {name} {' and '.join(problems)}" for name, problems in bad.items()),
                       f"choose a datastore host {r.run_host} mounts read-write, or fix {names} "
                       f"(mount it on {r.run_host}, bring it back online, leave maintenance mode)")


def _needed(inventory: Any, r: ResolvedPlan) -> dict[str, list[tuple[int, str, DiskMove | None]]]:
    """Datastore -> what the move copies there: (bytes, words, the disk or None for the swap file).
    A disk going thin needs its committed bytes, a thick one its capacity."""
    needs: dict[str, list[tuple[int, str, DiskMove | None]]] = {}
    for disk in r.moving_disks:
        thin = disk.target_format == "thin"
        needs.setdefault(disk.target_datastore, []).append(
            (disk.committed_bytes if thin else disk.capacity_bytes, f"{disk.name} as {disk.target_format}", disk))
    memory = int(vm_row(inventory, r.vm_moid).get("memory_mb") or 0) * MIB
    if r.home_moves and r.target_datastore and r.power_state == "poweredOn" and memory:
        needs.setdefault(r.target_datastore, []).append((memory, f"swap file up to {size(memory)}", None))
    return needs


def _space_on(inventory: Any, name: str, items: list, settings: CheckSettings) -> tuple[str, str, str]:
    """(status, found, remedy) of one target datastore."""
    ds = datastore_row(inventory, name)
    needed = sum(n for n, _, _ in items)
    detail = ", ".join(words for _, words, _ in items)
    if ds is None:
        return SKIP, f"datastore {name} has no capacity figures", ""
    free, capacity = int(ds.get("free_bytes") or 0), int(ds.get("capacity_bytes") or 0)
    left = free - needed
    found = f"needs {size(needed)} ({detail}) of {size(free)} free on {name}"
    # thin helps only a disk that is copied thick and has less committed than its capacity
    thickened = [d for _, _, d in items if d is not None and d.target_format != "thin"
                 and d.committed_bytes < d.capacity_bytes]
    thin = (f", copy {', '.join(d.name for d in thickened)} as thin (disk format thin)" if thickened else "")
    if left < 0:
        return FAIL, f"{found}: {size(-left)} short", (f"free space on {name}{thin}, or pick a datastore with at "
                                                       f"least {size(needed)} free")
    left_pct = 100.0 * left / capacity if capacity else 0.0
    if left < capacity * settings.free_space_margin_pct / 100.0:
        return WARN, (f"{found}: leaves {size(left)} ({left_pct:.1f}% of {size(capacity)}), under the "
                      f"{settings.free_space_margin_pct:g}% margin"), f"free space on {name}{thin}, or pick a " \
                                                                      f"datastore with more room"
    return PASS, f"{found}: leaves {size(left)} ({left_pct:.1f}%)", ""


@check(FREE_SPACE)
def free_space(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """What the move copies to each target datastore (its disks, and a powered-on VM's swap file when its
    home moves) must fit there, with a margin; one row, the worst datastore's status."""
    if not r.target_datastores():
        return CheckResult(FREE_SPACE, SKIP, "no target datastore given")
    needs = _needed(inventory, r)
    if not needs:
        return CheckResult(FREE_SPACE, SKIP, f"no disk of VM {r.vm} moves to {', '.join(r.target_datastores())}")
    results = [_space_on(inventory, name, items, settings) for name, items in needs.items()]
    worst = max((status for status, _, _ in results), key=RANK.__getitem__)
    return CheckResult(FREE_SPACE, worst, "; ".join(found for _, found, _ in results),
                       "; ".join(remedy for status, _, remedy in results if remedy and status in (WARN, FAIL)))


def _asked(r: ResolvedPlan, disk: DiskMove) -> str:
    """The format asked for a disk: its own (per-disk placement) or the plan's."""
    return disk.asked_format if disk.placed else r.disk_format


@check(DISK_FORMAT)
def disk_format(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A format change happens only for a disk copied to another datastore (the plan's one rule): a disk
    that stays in another format fails, with the remedy the plan gives. A thick format onto an NFS
    datastore warns: NFS takes thick disks only with hardware acceleration (the VAAI-NAS plugin)."""
    asked = [d for d in r.disks if _asked(r, d) != "same"]
    if not asked:
        return CheckResult(DISK_FORMAT, SKIP, "no disk format change asked")
    stuck = [d for d in asked if not d.moves and d.source_format != _asked(r, d)]
    if stuck:
        found = "; ".join(f"{d.name} is {d.source_format} and stays on {d.source_datastore}" for d in stuck)
        return CheckResult(DISK_FORMAT, FAIL, f"{found}: a format changes only when a disk is copied to another "
                                              f"datastore", FORMAT_REMEDY)
    copied = [d for d in asked if d.moves]
    nfs = [d for d in copied if _asked(r, d) in _NOT_ONLY_THIN and _is_nfs(inventory, d.target_datastore)]
    words = "; ".join(f"{d.name} copied as {_asked(r, d)}" + ("" if d.format_changes else " (its format already)")
                      for d in copied) or "no disk is copied"
    if nfs:
        return CheckResult(DISK_FORMAT, WARN,
                           f"{words}; {', '.join(sorted({d.target_datastore for d in nfs}))} is NFS: thick formats "
                           f"need hardware acceleration (VAAI-NAS) there, else the disks stay thin",
                           "keep the thin format on NFS, or check the datastore's Hardware Acceleration in the "
                           "vSphere Client")
    return CheckResult(DISK_FORMAT, PASS, f"{plural(len(copied), 'disk')} copied: {words}")


def _is_nfs(inventory: Any, name: str) -> bool:
    ds = datastore_row(inventory, name)
    return ds is not None and str(ds.get("type") or "").upper().startswith("NFS")
