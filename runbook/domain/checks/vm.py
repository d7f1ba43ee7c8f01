"""Checks about the VM itself: does the move change anything, its power state, running tasks, devices, NICs."""
from __future__ import annotations

from typing import Any

from runbook.domain.plan import ResolvedPlan
from runbook.vsphere.devices import display_name as device_name
from .base import FAIL, PASS, SKIP, WARN, CheckResult, CheckSettings, check, host_row, records, strings, vm_row

MOVE_CHANGES = "move changes something"
POWER_STATE = "power state"
NO_RUNNING_MIGRATION = "no migration running on the VM"
DEVICES = "no devices bound to the host or a client"
PORT_GROUPS = "port groups on the target host"


@check(MOVE_CHANGES)
def move_changes_something(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """Warn when the VM is already where the plan puts it (the run would be a no-op)."""
    if r.already_there:
        where = f"host {r.run_host}" + (f", datastore {r.target_datastore}" if r.target_datastore else "")
        return CheckResult(MOVE_CHANGES, WARN, f"already there: nothing to do (VM {r.vm} is on {where})",
                           "none needed; give another host or datastore to move it")
    return CheckResult(MOVE_CHANGES, PASS, r.summary())


@check(POWER_STATE)
def power_state(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A powered-off or suspended VM moves cold: no live move and no ping window to measure."""
    if r.power_state == "poweredOn":
        return CheckResult(POWER_STATE, PASS, f"VM {r.vm} is powered on: live migration")
    state = {"poweredOff": "powered off", "suspended": "suspended"}.get(r.power_state, r.power_state)
    return CheckResult(POWER_STATE, WARN,
                       f"VM {r.vm} is {state}: cold migration (no live move, no ping window)",
                       f"none needed; power {r.vm} on first if you want a live move and a downtime measurement")


@check(NO_RUNNING_MIGRATION)
def no_running_migration(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """Another relocation already running on the VM: vCenter queues or refuses this one."""
    task = vm_row(inventory, r.vm_moid).get("active_task")
    if task is None or (isinstance(task, float) and task != task) or task == "":
        return CheckResult(NO_RUNNING_MIGRATION, PASS, f"no relocation task is running on VM {r.vm}")
    return CheckResult(NO_RUNNING_MIGRATION, WARN,
                       f"relocation task {task} is already running on VM {r.vm}; vCenter will queue or refuse this move",
                       f"wait for {task} to finish (vSphere Client: Monitor > Tasks, or govc task.ls) and run again")


@check(DEVICES)
def devices(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A connected CD-ROM backed by the source host's drive or a client blocks a live move."""
    bound = [c for c in records(vm_row(inventory, r.vm_moid).get("cdroms"))
             if c.get("kind") in ("host-device", "client-device") and c.get("connected")]
    if not r.host_changes:
        return CheckResult(DEVICES, SKIP, f"VM {r.vm} stays on host {r.source_host}: its devices stay valid")
    if not bound:
        return CheckResult(DEVICES, PASS, f"VM {r.vm} has no device bound to host {r.source_host} or a client")
    found = ", ".join(device_name(c) for c in bound)
    it = "it" if len(bound) == 1 else "them"
    return CheckResult(DEVICES, FAIL, f"VM {r.vm} has connected devices bound to host {r.source_host} or a "
                                      f"client: {found}",
                       f"disconnect {found} or point {it} at an ISO on shared storage (a datastore host "
                       f"{r.run_host} mounts)")


@check(PORT_GROUPS)
def port_groups(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """Every NIC's port group (after the plan's mapping) must exist on the host that will run the VM."""
    nics = records(vm_row(inventory, r.vm_moid).get("nics"))
    if not nics:
        return CheckResult(PORT_GROUPS, PASS, f"VM {r.vm} has no NIC")
    available = set(strings(host_row(inventory, r.run_host_moid).get("port_groups")))
    missing = []
    for nic in nics:
        group = r.plan.network_map.get(str(nic.get("port_group")), str(nic.get("port_group")))
        if group not in available:
            missing.append((device_name(nic), group))
    if not missing:
        groups = sorted({r.plan.network_map.get(str(n.get("port_group")), str(n.get("port_group"))) for n in nics})
        words = "port group" if len(groups) == 1 else "port groups"
        return CheckResult(PORT_GROUPS, PASS, f"host {r.run_host} has the {words} {', '.join(groups)}")
    found = ", ".join(f"{group!r} (for {label})" for label, group in missing)
    first = missing[0][1]
    return CheckResult(PORT_GROUPS, FAIL, f"host {r.run_host} has no port group {found}",
                       f"map it to a port group host {r.run_host} has (network_map / --network '{first}=NEW'; "
                       f"it has: {', '.join(sorted(available)) or 'none'}), or create {first!r} on {r.run_host}")
