"""Build the ``vim.vm.RelocateSpec`` for a resolved plan: a pure function, no server calls.

References to managed objects come from a ``moref_for(kind, moid)`` callable, so the same code builds
unbound references for tests and dry runs (:func:`stub_morefs()`) and bound ones for a live session
(``stub_morefs(si._stub)``). Submitting the spec and waiting for the task live elsewhere.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from pyVmomi import vim

from runbook.errors import BadInput
from runbook.domain.plan import NicChange, ResolvedPlan

MorefFor = Callable[[str, str], Any]

#: The managed-object kinds the spec refers to (vim type names).
MOREF_KINDS = ("HostSystem", "ResourcePool", "Datastore", "Network", "DistributedVirtualPortgroup",
               "VirtualMachine")

#: Plan priority -> the ``priority`` argument of ``RelocateVM_Task``.
PRIORITY_TO_VIM = {
    "default": vim.VirtualMachine.MovePriority.defaultPriority,
    "high": vim.VirtualMachine.MovePriority.highPriority,
    "low": vim.VirtualMachine.MovePriority.lowPriority,
}

#: Disk format -> (thinProvisioned, eagerlyScrub) of a FlatVer2 backing.
_FORMAT_FLAGS = {"thin": (True, False), "thick": (False, False), "eagerzeroedthick": (False, True)}


def stub_morefs(stub: Any = None) -> MorefFor:
    """A ``moref_for`` that makes references like ``vim.HostSystem("host-12", stub)``.

    With ``stub=None`` the references are unbound (fine for building, printing and tests); pass
    ``si._stub`` to get references a live session can use.
    """

    def moref_for(kind: str, moid: str) -> Any:
        if kind not in MOREF_KINDS:
            raise ValueError(f"unknown managed-object kind {kind!r}; expected one of {', '.join(MOREF_KINDS)}")
        return getattr(vim, kind)(moid, stub)

    return moref_for


def move_priority(priority: str) -> str:
    """The ``vim.VirtualMachine.MovePriority`` value for a plan priority ("default", "high", "low")."""
    try:
        return PRIORITY_TO_VIM[priority]
    except KeyError:
        raise BadInput(f"priority {priority!r} is not one of {', '.join(PRIORITY_TO_VIM)}") from None


def build_relocate_spec(resolved: ResolvedPlan, moref_for: Optional[MorefFor] = None) -> vim.vm.RelocateSpec:
    """The RelocateSpec that carries out ``resolved``: host, pool, datastore, disk locators, NIC edits.

    Sets ``host`` only when the host changes, ``pool`` when the plan resolved one (given, or the target
    cluster's root pool on a cross-cluster move), ``datastore`` (the VM's home) when a target datastore is
    given, and one ``DiskLocator`` per disk going somewhere: every disk with a target datastore (each to
    its own datastore when it has a per-disk place), else only the disks placed one by one. A locator
    carries a FlatVer2 backing only when a format is asked for and the disk is copied to another
    datastore ("same", or a disk that stays, keeps its format).
    Raises BadInput for a port-group mapping it cannot express.
    """
    moref = moref_for or stub_morefs()
    spec = vim.vm.RelocateSpec()
    if resolved.host_changes and resolved.target_host_moid:
        spec.host = moref("HostSystem", resolved.target_host_moid)
    if resolved.resource_pool_moid:
        spec.pool = moref("ResourcePool", resolved.resource_pool_moid)
    if resolved.target_datastore_moid:  # the home and every disk without a place of its own go there
        spec.datastore = moref("Datastore", resolved.target_datastore_moid)
    # one locator per disk: its own datastore (per-disk placement) or the target; without a target datastore
    # only the placed disks get one (the home and the other disks stay where they are)
    spec.disk = [
        vim.vm.RelocateSpec.DiskLocator(
            diskId=disk.key, datastore=moref("Datastore", disk.target_datastore_moid),
            # a format only for a disk that is copied (one that stays keeps its format)
            diskBackingInfo=_backing(disk.asked_format if disk.moves else "same"),
        )
        for disk in resolved.disks
        if disk.target_datastore_moid and (resolved.target_datastore_moid or disk.placed)
    ]
    spec.deviceChange = [_nic_edit(nic, moref) for nic in resolved.nic_changes]
    return spec


def _backing(disk_format: str) -> Optional[vim.vm.device.VirtualDisk.FlatVer2BackingInfo]:
    if disk_format == "same":
        return None
    thin, eager = _FORMAT_FLAGS[disk_format]
    return vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        thinProvisioned=thin, eagerlyScrub=eager, diskMode="persistent", fileName="",
    )


def _nic_edit(nic: NicChange, moref: MorefFor) -> vim.vm.device.VirtualDeviceSpec:
    """An "edit" of the NIC with that key, onto the new port group (vCenter matches the device by key)."""
    device_class = getattr(vim.vm.device, nic.device_type, None)
    if device_class is None or not issubclass(device_class, vim.vm.device.VirtualEthernetCard):
        device_class = vim.vm.device.VirtualVmxnet3
    device = device_class(key=nic.key)
    if nic.network_type == "DistributedVirtualPortgroup":
        if not nic.switch_uuid:
            raise BadInput(
                f"cannot map {nic.label} to distributed port group {nic.new_port_group!r}: the inventory lacks "
                f"its switch uuid; move the NIC in the vSphere Client or map to a standard port group"
            )
        device.backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(portgroupKey=nic.portgroup_key, switchUuid=nic.switch_uuid),
        )
    elif nic.network_type == "Network":
        device.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
            deviceName=nic.new_port_group, network=moref("Network", nic.network_moid),
        )
    else:
        raise BadInput(f"cannot map {nic.label} to {nic.new_port_group!r}: {nic.network_type} port groups are "
                       f"not supported; map to a standard or distributed port group")
    return vim.vm.device.VirtualDeviceSpec(operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=device)


def spec_to_dict(spec: vim.vm.RelocateSpec, priority: Optional[str] = None) -> dict[str, Any]:
    """A readable plain dict of the spec (moids for references) for display and the JSON record."""
    data: dict[str, Any] = {}
    for name in ("host", "pool", "datastore", "folder"):
        ref = getattr(spec, name, None)
        if ref is not None:
            data[name] = _moid(ref)
    if spec.disk:
        data["disk"] = [_disk_to_dict(locator) for locator in spec.disk]
    if spec.deviceChange:
        data["deviceChange"] = [_device_change_to_dict(change) for change in spec.deviceChange]
    if spec.diskMoveType:
        data["diskMoveType"] = spec.diskMoveType
    if priority is not None:
        data["priority"] = str(move_priority(priority))
    return data


def _moid(ref: Any) -> str:
    return str(getattr(ref, "_moId", ref))


def _format_of(backing: Any) -> str:
    if backing is None:
        return "same"
    if getattr(backing, "thinProvisioned", None):
        return "thin"
    return "eagerzeroedthick" if getattr(backing, "eagerlyScrub", None) else "thick"


def _disk_to_dict(locator: vim.vm.RelocateSpec.DiskLocator) -> dict[str, Any]:
    return {"diskId": locator.diskId, "datastore": _moid(locator.datastore),
            "format": _format_of(locator.diskBackingInfo)}


def _device_change_to_dict(change: vim.vm.device.VirtualDeviceSpec) -> dict[str, Any]:
    device = change.device
    entry: dict[str, Any] = {"operation": str(change.operation), "device": device._wsdlName, "key": device.key}
    backing = device.backing
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        entry.update(network=_moid(backing.network), deviceName=backing.deviceName)
    elif isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        entry.update(portgroupKey=backing.port.portgroupKey, switchUuid=backing.port.switchUuid)
    return entry
