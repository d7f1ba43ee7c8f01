"""vCenter's own verdict on a move: ``CheckRelocate_Task`` of the VM provisioning checker, as check rows.

This is the one check that needs a live session. Each fault vCenter reports becomes a row named
``vCenter: <FaultType>`` (``error[]`` -> fail, ``warning[]`` -> warn); :data:`FAULT_TO_CHECK` names
the local check that looks for the same cause, so an operator can read both side by side.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from pyVmomi import vim, vmodl

from .base import FAIL, PASS, SKIP, WARN, CheckResult
from .hosts import CONCURRENCY, CPU_COMPATIBILITY, SOURCE_HOST_CONNECTED, TARGET_HOST_STATE, VMOTION_NETWORK
from .storage import FREE_SPACE, SHARED_STORAGE, TARGET_DATASTORE
from .vm import DEVICES, NO_RUNNING_MIGRATION, PORT_GROUPS, POWER_STATE

VCENTER_CHECK = "vCenter's verdict"

#: The test types asked of CheckRelocate_Task (all of them).
TEST_TYPES = ("sourceTests", "hostTests", "resourcePoolTests", "datastoreTests", "networkTests")

#: vCenter fault type (wsdl name) -> the local check that looks for the same cause. A fault not listed
#: is looked up by its base types (e.g. CpuIncompatible1ECX -> CpuIncompatible).
FAULT_TO_CHECK: dict[str, str] = {
    "HostNotConnected": TARGET_HOST_STATE,
    "InvalidHostConnectionState": TARGET_HOST_STATE,
    "InvalidHostState": TARGET_HOST_STATE,
    "HostNotReachable": SOURCE_HOST_CONNECTED,
    "VMotionNotConfigured": VMOTION_NETWORK,
    "VMotionInterfaceIssue": VMOTION_NETWORK,
    "VMotionNotLicensed": VMOTION_NETWORK,
    "InaccessibleDatastore": TARGET_DATASTORE,
    "DatastoreNotWritableOnHost": TARGET_DATASTORE,
    "InvalidDatastore": TARGET_DATASTORE,
    "CannotAccessVmDevice": SHARED_STORAGE,
    "CannotAccessVmDisk": SHARED_STORAGE,
    "NoDiskSpace": FREE_SPACE,
    "CpuIncompatible": CPU_COMPATIBILITY,
    "FeatureRequirementsNotMet": CPU_COMPATIBILITY,
    "DisallowedMigrationDeviceAttached": DEVICES,
    "RemoteDeviceNotSupported": DEVICES,
    "DeviceNotSupported": DEVICES,
    "NetworkInaccessible": PORT_GROUPS,
    "InvalidDeviceBacking": PORT_GROUPS,
    "DeviceBackingNotSupported": PORT_GROUPS,
    "CannotAccessNetwork": PORT_GROUPS,
    "TaskInProgress": NO_RUNNING_MIGRATION,
    "InvalidPowerState": POWER_STATE,
    "TooManyConcurrentNativeClones": CONCURRENCY,
    "MigrationFault": POWER_STATE,  # base type; the lab raises it bare as its cold-migration warning
}

#: Faults about a datastore the VM keeps (no datastore change): the shared-storage check's cause.
_STORAGE_FAULTS = {"InaccessibleDatastore", "DatastoreNotWritableOnHost", "InvalidDatastore"}


def fault_name(fault: Any) -> str:
    """The vSphere type name of a fault object (``NoDiskSpace``), falling back to the Python class name."""
    return str(getattr(fault, "_wsdlName", None) or type(fault).__name__).rsplit(".", 1)[-1]


def fault_check_name(fault: Any, datastore_changes: bool = True) -> Optional[str]:
    """The local check that looks for the cause of ``fault``, walking its base types; None if none does."""
    for cls in type(fault).__mro__:
        name = getattr(cls, "_wsdlName", None) or cls.__name__.rsplit(".", 1)[-1]
        if name in FAULT_TO_CHECK:
            if name in _STORAGE_FAULTS and not datastore_changes:
                return SHARED_STORAGE
            return FAULT_TO_CHECK[name]
    return None


def fault_message(fault: Any) -> str:
    """vCenter's text for a fault: its localized message, ``msg``, or its first fault message."""
    for attribute in ("localizedMessage", "msg"):
        text = getattr(fault, attribute, None)
        if text:
            return str(text)
    for message in getattr(fault, "faultMessage", None) or []:
        if getattr(message, "message", None):
            return str(message.message)
    return f"vCenter reported {fault_name(fault)} without a message"


def fault_row(fault: Any, status: str, datastore_changes: bool = True, where: str = "") -> CheckResult:
    """One check row for a fault vCenter reported."""
    local = fault_check_name(fault, datastore_changes)
    remedy = (f"the same cause as the local check {local!r}: follow its remedy" if local
              else "read vCenter's message; fix the cause in the vSphere Client and run the checks again")
    return CheckResult(f"vCenter: {fault_name(fault)}", status, fault_message(fault) + where, remedy)


def _skip(reason: str) -> list[CheckResult]:
    return [CheckResult(VCENTER_CHECK, SKIP, reason)]


def _with_host(spec: vim.vm.RelocateSpec, host: Any) -> vim.vm.RelocateSpec:
    """A copy of ``spec`` with ``host`` set, so the caller's spec is never changed."""
    copy = vim.vm.RelocateSpec()
    for prop in spec._GetPropertyList():
        setattr(copy, prop.name, getattr(spec, prop.name))
    copy.host = host
    return copy


def vcenter_verdict(si: Any, vm_moid: str, spec: Optional[vim.vm.RelocateSpec], host_moid: Optional[str] = None,
                    *, test_types: tuple[str, ...] = TEST_TYPES,
                    wait: Optional[Callable[[Any], Any]] = None) -> list[CheckResult]:
    """Ask vCenter whether it would accept ``spec`` for the VM ``vm_moid``, as check rows.

    ``host_moid`` (the host that will run the VM) is put in the spec when the spec leaves the host
    unset, so vCenter's host tests look at it. ``wait`` waits for the check task (default:
    ``pyVim.task.WaitForTask``). Returns "skip" when the spec could not be built, the vCenter has no
    provisioning checker or does not implement CheckRelocate; a "fail" row when the check task itself
    fails; otherwise one row per error (fail) and warning (warn), or one "pass" row.
    """
    if spec is None:
        return _skip("the relocate spec could not be built, so vCenter was not asked")
    stub = getattr(si, "_stub", None)
    checker = getattr(si.RetrieveContent(), "vmProvisioningChecker", None)
    if checker is None:
        return _skip("this vCenter has no VM provisioning checker (content.vmProvisioningChecker is unset)")
    if host_moid and spec.host is None:
        spec = _with_host(spec, vim.HostSystem(host_moid, stub))
    if wait is None:
        from pyVim.task import WaitForTask

        def wait(task: Any) -> Any:
            return WaitForTask(task, si=si)

    datastore_changes = spec.datastore is not None or bool(spec.disk)  # a disk placed alone moves storage too
    try:
        task = checker.CheckRelocate_Task(vm=vim.VirtualMachine(vm_moid, stub), spec=spec, testType=list(test_types))
        wait(task)
    except (vmodl.fault.MethodNotFound, vmodl.fault.NotImplemented) as exc:
        return _skip(f"this vCenter does not implement CheckRelocate_Task ({fault_name(exc)})")
    except vmodl.MethodFault as exc:
        return [fault_row(exc, FAIL, datastore_changes, " (the check task itself failed)")]
    rows: list[CheckResult] = []
    for result in getattr(task.info, "result", None) or []:
        host = getattr(result, "host", None)
        where = f" (host {host._moId})" if host is not None and len(getattr(task.info, "result", [])) > 1 else ""
        rows += [fault_row(f, FAIL, datastore_changes, where) for f in (getattr(result, "error", None) or [])]
        rows += [fault_row(f, WARN, datastore_changes, where) for f in (getattr(result, "warning", None) or [])]
    if not rows:
        rows.append(CheckResult(VCENTER_CHECK, PASS, f"vCenter's CheckRelocate found no error or warning for {vm_moid}"))
    return rows
