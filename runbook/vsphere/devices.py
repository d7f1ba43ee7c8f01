"""A VM's disks, NICs and CD-ROMs as the VM table shows them, from its ``config.hardware.device``.

One set of rules reads devices either as pyvmomi objects (or fast-reader ``Data``) or as the fast
reader's raw XML (:class:`~runbook.vsphere.values.Raw`): the table needs a few fields of each device, and
leaving the devices as XML spares converting the rest (at 10,000 VMs that was a third of the VM
table's client time). The two are asked the same questions through :mod:`runbook.vsphere.values`'
``Objects`` / ``Elements``, and tests compare the tables both readers give.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyVmomi import vim

from runbook.vsphere.values import OBJECTS, Raw

Disk, Nic, Cdrom = vim.vm.device.VirtualDisk, vim.vm.device.VirtualEthernetCard, vim.vm.device.VirtualCdrom
#: The only device classes the VM table reads (the fast reader skips the others unparsed).
CLASSES = (Disk, Nic, Cdrom)

_NET_BACKING = Nic.NetworkBackingInfo
_DVPORT_BACKING = Nic.DistributedVirtualPortBackingInfo
_ISO_BACKING = Cdrom.IsoBackingInfo
_CLIENT_BACKINGS = (Cdrom.RemotePassthroughBackingInfo, Cdrom.RemoteAtapiBackingInfo)
_HOST_BACKINGS = (Cdrom.AtapiBackingInfo, Cdrom.PassthroughBackingInfo)
#: {class: the class of CLASSES it is a kind of, or None}, filled as classes are met
_FAMILY: dict[type | None, type | None] = {None: None}


def _family(kind: type | None) -> type | None:
    found = _FAMILY.get(kind, CLASSES)
    if found is CLASSES:
        found = _FAMILY[kind] = next((c for c in CLASSES if issubclass(kind, c)), None)
    return found


def _is(kind: type | None, classes: type | tuple[type, ...]) -> bool:
    return kind is not None and issubclass(kind, classes)


def disk_format(thin: bool, eager: bool) -> str:
    """thin, thick (lazy zeroed) or eagerzeroedthick, from a disk backing's two flags."""
    return "thin" if thin else "eagerzeroedthick" if eager else "thick"


def datastore_of_path(path: str | None) -> str | None:
    """``nfs-01`` of ``[nfs-01] web-01/web-01.vmx``."""
    if path and path.startswith("[") and "]" in path:
        return path[1:path.index("]")]
    return None


_DISK, _NIC, _CDROM = 0, 1, 2


def facts(value: Any) -> tuple[tuple, ...]:
    """What the VM table needs of one VM's ``config.hardware.device`` value, as plain tuples (cheap to pickle:
    a bulk read may digest devices in a child process).

    Each device is a tuple led by its family; a datastore or network is its moid (or port group key),
    named by :func:`named`. A value already read (a tuple: arrays of devices come as lists) is returned as is.
    """
    if isinstance(value, tuple):
        return value
    a = value.access if isinstance(value, Raw) else OBJECTS
    items = value.elem if isinstance(value, Raw) else value or ()
    kind_of, get, text, number, flag, moid = a.kind, a.get, a.text, a.int, a.flag, a.moid
    out = []
    for dev in items:
        kind = kind_of(dev)
        family = _family(kind)
        if family is None:
            continue
        key = number(dev, "key")
        info = get(dev, "deviceInfo")
        label = text(info, "label") if info is not None else str(key)
        backing = get(dev, "backing")
        backing_kind = kind_of(backing)
        if family is Disk:
            capacity = number(dev, "capacityInBytes") or (number(dev, "capacityInKB") or 0) * 1024
            out.append((_DISK, key, label, text(backing, "fileName"), moid(backing, "datastore"), capacity,
                        disk_format(flag(backing, "thinProvisioned"), flag(backing, "eagerlyScrub"))))
        elif family is Nic:
            # the port group: the name of `look` (a network's moid, a port group's key), else `fallback`
            if _is(backing_kind, _NET_BACKING):
                look, fallback = moid(backing, "network"), text(backing, "deviceName")
            elif _is(backing_kind, _DVPORT_BACKING):
                look, fallback = text(get(backing, "port"), "portgroupKey"), None
            else:
                look, fallback = None, text(backing, "deviceName")
            out.append((_NIC, key, label, look, fallback, text(dev, "macAddress"), kind.__name__.split(".")[-1]))
        else:
            connected = flag(get(dev, "connectable"), "connected")
            iso = ds = None
            if _is(backing_kind, _ISO_BACKING):
                how, iso, ds = "iso", text(backing, "fileName"), moid(backing, "datastore")
            elif _is(backing_kind, _CLIENT_BACKINGS):
                how = "client-device"
            elif _is(backing_kind, _HOST_BACKINGS):
                how, iso = "host-device", text(backing, "deviceName")
            else:
                how = "empty"
            out.append((_CDROM, key, label, how, iso, ds, connected))
    return tuple(out)


def read(value: Any, name_of: Callable[[str | None], str | None]) -> tuple[list, list, list]:
    """(disks, nics, cdroms) rows of one VM's ``config.hardware.device`` value (or its :func:`facts`).

    ``name_of(moid)`` names a datastore or network (None for None).
    """
    return named(facts(value), name_of)


def named(devices: tuple[tuple, ...], name_of: Callable[[str | None], str | None]) -> tuple[list, list, list]:
    """(disks, nics, cdroms) rows of one VM's :func:`facts`, its datastores and networks named by ``name_of``."""
    disks, nics, cdroms = [], [], []
    for dev in devices:
        if dev[0] == _DISK:
            _, key, label, file, ds, capacity, fmt = dev
            disks.append({"key": key, "label": label, "file": file,
                          "datastore": name_of(ds) or datastore_of_path(file), "datastore_moid": ds,
                          "capacity_bytes": capacity, "format": fmt})
        elif dev[0] == _NIC:
            _, key, label, look, fallback, mac, device_type = dev
            nics.append({"key": key, "label": label, "port_group": name_of(look) or fallback, "mac": mac,
                         "device_type": device_type})
        else:
            _, key, label, how, iso, ds, connected = dev
            if how == "iso":
                ds = name_of(ds) or datastore_of_path(iso)
            cdroms.append({"key": key, "label": label, "kind": how, "iso": iso, "datastore": ds,
                           "connected": connected})
    return disks, nics, cdroms


def display_name(device: Any) -> str:
    """A device as an admin knows it: the server's label with what tells it apart, e.g.
    ``Hard disk 1 (web-01.vmdk)``, ``CD/DVD drive 1 (ubuntu.iso)``, ``Network adapter 1 (00:50:56:00:00:01)``.

    ``device`` is a row of :func:`read` (a dict) or an object with the same attributes (a plan's disk).
    The label is kept as the server gives it; the detail is the disk's or ISO's file name, a NIC's MAC
    address, else the device key. A device without a label is named by its key.
    """
    def get(name: str) -> Any:
        value = device.get(name) if isinstance(device, dict) else getattr(device, name, None)
        return None if value is None or value == "" or (isinstance(value, float) and value != value) else value

    key, label = get("key"), get("label")
    file = get("file") or get("iso")
    if file:
        detail = str(file).rsplit("]", 1)[-1].strip().rsplit("/", 1)[-1]
    elif get("mac"):
        detail = str(get("mac"))
    elif get("kind") in ("host-device", "client-device"):
        detail = str(get("kind")).replace("-", " ")
    else:
        detail = f"key {key}" if key is not None else ""
    if not label:
        return f"device {key}" if key is not None else "a device"
    return f"{label} ({detail})" if detail and detail != str(label) else str(label)
