"""What the operator asks for (:class:`MigrationPlan`) and what it means in the inventory (:class:`ResolvedPlan`).

A plan names a VM and where it should go: a host, a datastore, or both, with a disk format, a resource
pool, a priority and a port-group mapping. :func:`resolve` looks every name up in an inventory (by name
or moid, never "first match") and works out what would actually change, so that the checks, the spec
builder and the report all work from the same plain record.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import pandas as pd

from runbook.vsphere.devices import datastore_of_path, display_name as device_name
from runbook.errors import Ambiguous, BadInput, NotFound
from runbook.domain.pools import optional_str as _optional_str, resolve_pool
from runbook.vsphere.find import display_name, find_row

DISK_FORMATS = ("same", "thin", "thick", "eagerzeroedthick")
PRIORITIES = ("default", "high", "low")
MOVE_KINDS = ("host", "datastore", "both", "none")


@dataclass(frozen=True)
class MigrationPlan:
    """The operator's request: move ``vm`` to ``target_host`` and/or ``target_datastore``.

    ``vm``, hosts, datastores and pools may be given by name or moid. ``network_map`` maps a port group
    the VM uses now to the port group it should use on the target host. Bad values raise
    :class:`BadInput` at construction, one ``;``-separated clause per bad field.
    """

    vm: str
    target_host: Optional[str] = None
    target_datastore: Optional[str] = None
    disk_format: str = "same"
    resource_pool: Optional[str] = None
    priority: str = "default"
    network_map: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: per-disk placement: a disk (label or device key) -> (datastore, format); those disks go there, not
    #: to ``target_datastore`` (the VM's home and the other disks still follow ``target_datastore``)
    disk_placement: Mapping[str, tuple[str, str]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("vm", "target_host", "target_datastore", "resource_pool"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                problems.append(f"{name} must be a name or moid (a string), not {type(value).__name__}")
            elif isinstance(value, str):
                object.__setattr__(self, name, value.strip() or None)
        if not self.vm:
            problems.append("no VM given: give the VM's name or moid")
        if self.disk_format not in DISK_FORMATS:
            problems.append(f"disk format {self.disk_format!r} is not one of {', '.join(DISK_FORMATS)}")
        if self.priority not in PRIORITIES:
            problems.append(f"priority {self.priority!r} is not one of {', '.join(PRIORITIES)}")
        placement, placement_problems = _clean_disk_placement(self.disk_placement)
        problems.extend(placement_problems)
        object.__setattr__(self, "disk_placement", placement)
        if not self.target_host and not self.target_datastore and not placement:
            problems.append("give a target host, a target datastore, or both")
        if self.disk_format != "same" and not self.target_datastore and not placement:
            problems.append(
                f"disk format {self.disk_format!r} needs a target datastore: a format only changes "
                f"when the disks are copied"
            )
        network_map, map_problems = _clean_network_map(self.network_map)
        problems.extend(map_problems)
        object.__setattr__(self, "network_map", network_map)
        if problems:
            raise BadInput("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data (for the JSON record)."""
        data = asdict(self)
        data["network_map"] = dict(self.network_map)
        data["disk_placement"] = {disk: {"datastore": ds, "format": fmt}
                                  for disk, (ds, fmt) in self.disk_placement.items()}
        return data


def _clean_disk_placement(placement: Any) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """``{disk: (datastore, format)}`` with names stripped, or the problems (the request parses the text form)."""
    if not placement:
        return {}, []
    if not isinstance(placement, Mapping):
        return {}, [f"disk_placement must map a disk to (datastore, format), not {type(placement).__name__}"]
    clean: dict[str, tuple[str, str]] = {}
    problems = []
    for disk, target in placement.items():
        ok = isinstance(target, (tuple, list)) and len(target) == 2 and all(isinstance(t, str) for t in target)
        if not ok or not str(disk).strip() or not target[0].strip() or target[1] not in DISK_FORMATS:
            problems.append(f"disk_placement entry {disk!r}: {target!r} is malformed: give (datastore, format) with "
                            f"a format of {', '.join(DISK_FORMATS)}")
            continue
        clean[str(disk).strip()] = (target[0].strip(), target[1])
    return clean, problems


def _clean_network_map(network_map: Any) -> tuple[dict[str, str], list[str]]:
    if network_map is None:
        return {}, []
    if not isinstance(network_map, Mapping):
        return {}, [f"network_map must map old port group to new port group, not {type(network_map).__name__}"]
    clean: dict[str, str] = {}
    problems = []
    for old, new in network_map.items():
        if not isinstance(old, str) or not isinstance(new, str) or not old.strip() or not new.strip():
            problems.append(f"network_map entry {old!r}: {new!r} is malformed: both port group names must be "
                            f"non-empty strings (OLD=NEW)")
            continue
        clean[old.strip()] = new.strip()
    return clean, problems


@dataclass(frozen=True)
class DiskMove:
    """One virtual disk and where it goes; ``moves`` is False when it already sits on the target datastore."""

    key: int
    label: str
    source_datastore: str
    target_datastore: str
    source_format: str
    target_format: str
    capacity_bytes: int
    committed_bytes: int
    moves: bool
    file: str = ""
    target_datastore_moid: Optional[str] = None
    placed: bool = False  # its place was given for it alone (disk_placement), not by target_datastore
    asked_format: str = "same"  # the format asked for it (it gets it only when it is copied)

    @property
    def format_stuck(self) -> bool:
        """A format was asked that the disk cannot get: it stays on its datastore in another format."""
        return not self.moves and self.asked_format not in ("same", self.source_format)

    @property
    def format_changes(self) -> bool:
        """Whether the requested format differs from the disk's current one."""
        return self.source_format != self.target_format

    @property
    def name(self) -> str:
        """The disk as an admin knows it: ``Hard disk 1 (web-01.vmdk)``."""
        return device_name(self)


@dataclass(frozen=True)
class NicChange:
    """One NIC put on another port group (from ``network_map``)."""

    key: int
    label: str
    mac: str
    old_port_group: str
    new_port_group: str
    network_moid: str
    network_type: str  # the vim type of the network object: "Network", "DistributedVirtualPortgroup", ...
    switch_uuid: Optional[str] = None  # for a distributed port group
    portgroup_key: Optional[str] = None  # for a distributed port group
    device_type: str = "VirtualVmxnet3"  # the NIC's vim device class, when the inventory gives it


@dataclass(frozen=True)
class ResolvedPlan:
    """A :class:`MigrationPlan` looked up in an inventory: moids, the move kind and what changes.

    ``run_host`` is the host that will run the VM after the move (the target host, or the source host
    when only the datastore changes). ``already_there`` is True when the move would change nothing.
    """

    plan: MigrationPlan
    vm: str
    vm_moid: str
    power_state: str
    source_host: str
    source_host_moid: str
    target_host: Optional[str]
    target_host_moid: Optional[str]
    run_host: str
    run_host_moid: str
    target_datastore: Optional[str]
    target_datastore_moid: Optional[str]
    resource_pool: Optional[str]
    resource_pool_moid: Optional[str]
    kind: str
    host_changes: bool
    datastore_changes: bool
    pool_changes: bool
    home_datastore: str
    home_moves: bool
    vm_datastores: tuple[str, ...]
    iso_datastores: tuple[str, ...]
    disks: tuple[DiskMove, ...]
    nic_changes: tuple[NicChange, ...]
    already_there: bool

    @property
    def moving_disks(self) -> tuple[DiskMove, ...]:
        """The disks copied to another datastore (the target datastore, or their own per-disk one)."""
        return tuple(d for d in self.disks if d.moves)

    @property
    def placed_disks(self) -> tuple[DiskMove, ...]:
        """The disks given a place of their own (``disk_placement``)."""
        return tuple(d for d in self.disks if d.placed)

    def target_datastores(self) -> dict[str, Optional[str]]:
        """Every datastore the move puts something on, name -> moid: the target datastore (the VM's home and
        the disks without a place of their own) and each per-disk datastore."""
        found: dict[str, Optional[str]] = {}
        if self.target_datastore:
            found[self.target_datastore] = self.target_datastore_moid
        for disk in self.placed_disks:
            found.setdefault(disk.target_datastore, disk.target_datastore_moid)
        return found

    @property
    def priority(self) -> str:
        return self.plan.priority

    @property
    def disk_format(self) -> str:
        return self.plan.disk_format

    def summary(self) -> str:
        """One line saying what the move does, e.g. ``vm1: host esx1 -> esx2, datastore ds1 -> ds2``."""
        parts = []
        if self.host_changes:
            parts.append(f"host {self.source_host} -> {self.run_host}")
        if self.datastore_changes and self.target_datastore:
            sources = sorted({d.source_datastore for d in self.disks if not d.placed} | {self.home_datastore})
            fmt = "" if self.disk_format == "same" else f" as {self.disk_format}"
            parts.append(f"datastore {', '.join(sources)} -> {self.target_datastore}{fmt}")
        for disk in self.placed_disks:
            if disk.moves or disk.format_changes:
                fmt = f" as {disk.target_format}" if disk.format_changes else ""
                parts.append(f"{disk.name} {disk.source_datastore} -> {disk.target_datastore}{fmt}")
        if self.pool_changes:
            parts.append(f"resource pool -> {self.resource_pool}")
        for nic in self.nic_changes:
            parts.append(f"{nic.label}: {nic.old_port_group} -> {nic.new_port_group}")
        # names as the operator wrote them; the only %2f / %5c / %25 here are vCenter's escapes of names
        return display_name(f"{self.vm}: " + ("; ".join(parts) if parts else "already there, nothing to do"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, int, bool, list, dict) for the JSON record."""
        data = asdict(self)
        data["plan"] = self.plan.to_dict()
        data["disks"] = [{**asdict(d), "name": d.name} for d in self.disks]
        data["disk_placement"] = {d.name: {"datastore": d.target_datastore, "format": d.target_format,
                                           "moves": d.moves} for d in self.placed_disks}
        data["nic_changes"] = [asdict(n) for n in self.nic_changes]
        data["vm_datastores"] = list(self.vm_datastores)
        data["iso_datastores"] = list(self.iso_datastores)
        return data


def resolve(inventory: Any, plan: MigrationPlan) -> ResolvedPlan:
    """Look the plan's objects up in ``inventory`` and work out what the move changes.

    Raises :class:`NotFound` / :class:`Ambiguous` for a VM, host, datastore or pool that is missing or
    shared by several objects, and :class:`BadInput` for a port-group mapping the target host cannot take.
    """
    vm = find_row(inventory.vms, plan.vm, "VM")
    source = _find_source_host(inventory.hosts, vm)
    target = find_row(inventory.hosts, plan.target_host, "host") if plan.target_host else None
    datastore = find_row(inventory.datastores, plan.target_datastore, "datastore") if plan.target_datastore else None
    run = target if target is not None else source
    host_changes = target is not None and target["moid"] != source["moid"]

    placement = _placement(inventory, vm, plan.disk_placement)
    disks = tuple(_disk_moves(vm, datastore, plan.disk_format, placement))
    _refuse_format_in_place(vm, disks)
    home = str(vm.get("home_datastore") or datastore_of_path(str(vm.get("vm_path") or "")) or "")
    isos = tuple(sorted({c["datastore"] for c in records(vm.get("cdroms")) if c.get("kind") == "iso"
                         and c.get("datastore")}))
    vm_datastores = tuple(sorted(set(strings(vm.get("datastores"))) | {d.source_datastore for d in disks}
                                 | ({home} if home else set()) | set(isos)))
    if datastore is not None:
        ds_name = datastore["name"]
        home_moves = home != ds_name
        datastore_changes = (home_moves or any(d.moves or d.format_changes for d in disks)
                             or any(i != ds_name for i in isos))
    else:  # the home stays; only disks with a place of their own may move
        home_moves = False
        datastore_changes = any(d.moves or d.format_changes for d in disks)

    pool_name, pool_moid = resolve_pool(inventory, plan.resource_pool, vm, source, run, host_changes)
    pool_changes = pool_moid is not None and pool_moid != vm.get("resource_pool_moid")
    nic_changes = tuple(_nic_changes(inventory, vm, run, plan.network_map))

    kind = {(True, True): "both", (True, False): "host", (False, True): "datastore"}.get(
        (host_changes, datastore_changes), "none")
    return ResolvedPlan(
        plan=plan, vm=str(vm["name"]), vm_moid=str(vm["moid"]), power_state=str(vm.get("power_state")),
        source_host=str(source["name"]), source_host_moid=str(source["moid"]),
        target_host=None if target is None else str(target["name"]),
        target_host_moid=None if target is None else str(target["moid"]),
        run_host=str(run["name"]), run_host_moid=str(run["moid"]),
        target_datastore=None if datastore is None else str(datastore["name"]),
        target_datastore_moid=None if datastore is None else str(datastore["moid"]),
        resource_pool=pool_name, resource_pool_moid=pool_moid,
        kind=kind, host_changes=bool(host_changes), datastore_changes=bool(datastore_changes),
        pool_changes=bool(pool_changes), home_datastore=home, home_moves=bool(home_moves),
        vm_datastores=vm_datastores, iso_datastores=isos, disks=disks, nic_changes=nic_changes,
        already_there=kind == "none" and not pool_changes and not nic_changes,
    )


def _find_source_host(hosts: pd.DataFrame, vm: pd.Series) -> pd.Series:
    key = vm.get("host_moid") or vm.get("host")
    if not key:
        raise BadInput(f"VM {vm['name']!r} has no host in the inventory (is it orphaned?); reload the inventory")
    try:
        return find_row(hosts, str(key), "host")
    except NotFound:
        raise NotFound("host", f"{vm.get('host')} (the host of VM {vm['name']})") from None


def _placement(inventory: Any, vm: pd.Series, wanted: Mapping[str, tuple[str, str]]
               ) -> dict[int, tuple[pd.Series, str]]:
    """The per-disk map resolved: disk key -> (datastore row, format). A disk is named by its label (any
    case), its device key or its display name; a name the VM has no disk for is BadInput naming its disks."""
    if not wanted:
        return {}
    disks = records(vm.get("disks"))
    resolved: dict[int, tuple[pd.Series, str]] = {}
    named: dict[int, str] = {}
    for given, (datastore, fmt) in wanted.items():
        text = given.strip().lower()
        match = [d for d in disks if text in (str(d.get("key")), str(d.get("label") or "").strip().lower(),
                                              device_name(d).lower())]
        if not match:
            theirs = ", ".join(f"{device_name(d)} key {d.get('key')}" for d in disks) or "none"
            raise BadInput(f"VM {_shown(vm['name'])} has no disk {given!r} (its disks: {theirs}); name a disk by "
                           f"its label or device key (disk_placement / --disk 'Hard disk 1=DATASTORE')")
        key = int(match[0]["key"])
        if key in named:
            raise BadInput(f"{device_name(match[0])} of VM {_shown(vm['name'])} is placed twice ({named[key]!r} "
                           f"and {given!r}): keep one")
        named[key] = given
        resolved[key] = (find_row(inventory.datastores, datastore, "datastore"), fmt)
    return resolved


def _disk_moves(vm: pd.Series, datastore: Optional[pd.Series], disk_format: str,
                placement: Mapping[int, tuple[pd.Series, str]]) -> Iterable[DiskMove]:
    for disk in records(vm.get("disks")):
        source_ds = str(disk.get("datastore") or "")
        source_format = str(disk.get("format") or "thick")
        key = int(disk["key"])
        placed = key in placement
        target, fmt = placement[key] if placed else (datastore, disk_format)
        if target is None:
            target_ds, target_moid, wanted, moves = source_ds, _optional_str(disk.get("datastore_moid")), "same", False
        else:
            target_ds, target_moid, wanted = str(target["name"]), str(target["moid"]), fmt
            moves = source_ds != target_ds
        # the one format rule: a format changes only when the disk is copied to another datastore
        target_format = wanted if moves and wanted != "same" else source_format
        yield DiskMove(
            key=key, label=str(disk.get("label") or f"disk {key}"),
            source_datastore=source_ds, target_datastore=target_ds, source_format=source_format,
            target_format=target_format, capacity_bytes=int(disk.get("capacity_bytes") or 0),
            committed_bytes=int(disk.get("committed_bytes") or 0), moves=moves, file=str(disk.get("file") or ""),
            target_datastore_moid=target_moid, placed=placed, asked_format=wanted,
        )


FORMAT_REMEDY = "Storage vMotion to another datastore and back, or pick another datastore"


def _nic_changes(inventory: Any, vm: pd.Series, run: pd.Series, network_map: Mapping[str, str]) -> Iterable[NicChange]:
    nics = records(vm.get("nics"))
    used = sorted({str(n.get("port_group")) for n in nics})
    problems = []
    for old in network_map:
        if old not in used:
            problems.append(f"VM {vm['name']} has no NIC on port group {old!r} (its port groups: "
                            f"{', '.join(used) or 'none'}); fix the mapping {old}={network_map[old]}")
    if problems:
        raise BadInput("; ".join(problems))
    host_groups = set(strings(run.get("port_groups")))
    for new in sorted(set(network_map.values())):
        if new not in host_groups:
            close = ", ".join(sorted(host_groups)) or "none"
            raise BadInput(f"port group {new!r} does not exist on host {run['name']} (it has: {close}); "
                           f"map to one of those or create it there")
    for nic in nics:
        old = str(nic.get("port_group"))
        new = network_map.get(old)
        if new is None or new == old:
            continue
        net = _find_network(inventory.networks, new, run)
        yield NicChange(
            key=int(nic["key"]), label=str(nic.get("label") or f"NIC {nic['key']}"), mac=str(nic.get("mac") or ""),
            old_port_group=old, new_port_group=new, network_moid=str(net["moid"]),
            network_type=_network_vim_type(net.get("type")),
            switch_uuid=_optional_str(net.get("switch_uuid")),
            portgroup_key=_optional_str(net.get("portgroup_key")) or str(net["moid"]),
            device_type=_optional_str(nic.get("device_type") or nic.get("type")) or "VirtualVmxnet3",
        )


def _find_network(networks: pd.DataFrame, name: str, host: pd.Series) -> pd.Series:
    rows = networks[networks["name"] == name]
    on_host = rows[rows["hosts"].apply(lambda hs: host["name"] in strings(hs))] if "hosts" in rows else rows
    if len(on_host) == 1:
        return on_host.iloc[0]
    if len(on_host) > 1:
        raise Ambiguous("port group", name, [str(m) for m in on_host["moid"]])
    return find_row(networks, name, "port group")


def _network_vim_type(kind: Any) -> str:
    text = str(kind or "").lower()
    if "distributed" in text or text in ("dvportgroup", "dvpg", "dvs"):
        return "DistributedVirtualPortgroup"
    if "opaque" in text:
        return "OpaqueNetwork"
    return "Network"


def records(value: Any) -> list[dict]:
    """A list-of-dict cell as a list of dict (None / NaN -> [])."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return [dict(v) for v in value]


def strings(value: Any) -> list[str]:
    """A list cell as a list of str (None / NaN -> [])."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _refuse_format_in_place(vm: pd.Series, disks: tuple[DiskMove, ...]) -> None:
    """Refuse a format the move cannot give: a disk that stays on its datastore keeps its format."""
    stuck = [d for d in disks if d.format_stuck]
    if not stuck:
        return
    asked = sorted({d.asked_format for d in stuck})
    found = "; ".join(f"{d.name}, {d.source_format} on {d.source_datastore}" for d in stuck)
    raise BadInput(
        f"disk format {' / '.join(map(repr, asked))} cannot be given to VM {_shown(vm['name'])}'s {found}: it stays "
        f"there, and a format changes only when a disk is copied to another datastore. {FORMAT_REMEDY}"
    )


def _shown(name: Any) -> str:
    """A vCenter name as the operator wrote it (``a%2fb`` is ``a/b``)."""
    return display_name(str(name))
