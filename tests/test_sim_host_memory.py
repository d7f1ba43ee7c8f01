"""A host's memory in use (summary.quickStats.overallMemoryUsage) follows its VMs in the lab, as in
vCenter: the hypervisor's own use plus the memory of the powered-on VMs it runs, after a move and a
power operation (sim/hostmemory.go)."""
from __future__ import annotations

import time

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

import runbook_lab as lab_mod

HYPERVISOR_MB = 1404  # what the lab's host without VMs reports


def expected(hosts: list[vim.HostSystem]) -> dict[str, int]:
    return {h.name: HYPERVISOR_MB + sum(vm.config.hardware.memoryMB for vm in h.vm
                                        if vm.runtime.powerState == "poweredOn") for h in hosts}


def reported(hosts: list[vim.HostSystem]) -> dict[str, int]:
    return {h.name: h.summary.quickStats.overallMemoryUsage for h in hosts}


def settle(hosts: list[vim.HostSystem]) -> dict[str, int]:
    """The reported figures once they equal the expected ones (the lab refreshes within 0.25 s)."""
    deadline = time.monotonic() + 5
    while reported(hosts) != expected(hosts) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reported(hosts) == expected(hosts)
    return reported(hosts)


def test_host_memory_usage_follows_moves_and_power(fresh_lab) -> None:
    info = fresh_lab("default")
    si = SmartConnect(protocol="http", host=info.host, port=info.port, user=info.username, pwd=info.password)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        hosts = list(view.view)
        start = settle(hosts)
        assert len(set(start.values())) > 1  # not one figure copied to every host
        vm = next(v for h in hosts for v in h.vm if v.runtime.powerState == "poweredOn"
                  and any(o != h and o.runtime.connectionState == "connected" and not o.runtime.inMaintenanceMode
                          for o in h.parent.host))
        source = vm.runtime.host
        target = next(o for o in source.parent.host if o != source and o.runtime.connectionState == "connected"
                      and not o.runtime.inMaintenanceMode)
        size = vm.config.hardware.memoryMB
        lab_mod.LabControl(info).set_migration_seconds(vm.name, 0.2)
        WaitForTask(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=target, pool=source.parent.resourcePool)))
        moved = settle(hosts)
        assert moved[source.name] == start[source.name] - size
        assert moved[target.name] == start[target.name] + size
        WaitForTask(vm.PowerOffVM_Task())
        off = settle(hosts)
        assert off[target.name] == start[target.name]
        WaitForTask(vm.PowerOnVM_Task())
        assert settle(hosts)[target.name] == start[target.name] + size
    finally:
        Disconnect(si)
