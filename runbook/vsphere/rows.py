"""Rows of the hosts, VMkernel adapters, datastores, clusters, pools and networks tables, from their records.

A record's values come as pyvmomi objects, as the fast reader's ``Data``, or left as XML
(:class:`~runbook.vsphere.values.Raw`, for the paths the inventory asks for raw: the datastores'
mount lists of up to 2,500 hosts each, the hosts' adapters and NIC services, the clusters'
configuration). One set of rules reads all three through :mod:`runbook.vsphere.values`'
``access`` (the same few questions asked of objects or of elements). At vCenter's maximum (2,500
hosts, four datastores mounted on all of them) building a data object per mount, adapter and NIC
service cost about 1.5 s more client CPU than reading the few fields the tables show from the XML.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from runbook.vsphere.values import access, moids

#: ``{moid: {"_type": class name, "_ref": moref, path: value, ...}}`` (see runbook.vsphere.properties)
Records = Mapping[str, dict[str, Any]]
Name = Callable[[str | None], str | None]


def _moid(ref: Any) -> str | None:
    return ref._moId if ref is not None else None


def _each(node: Any) -> Any:
    """The items of an array value (an element's children, or a list); none for None (never an element's
    truth value: that is its number of children)."""
    return () if node is None else node


def host_services(r: dict[str, Any]) -> dict[str, set[str]]:
    """{VMkernel device: the services (nic types) selected on it} of one host record."""
    services: dict[str, set[str]] = defaultdict(set)
    a, node = access(r.get("config.virtualNicManagerInfo.netConfig"))
    for cfg in _each(node):
        nic_type = a.text(cfg, "nicType")
        selected = set(a.texts(cfg, "selectedVnic"))
        for cand in a.items(cfg, "candidateVnic"):
            key = a.text(cand, "key")
            if key in selected or f"{nic_type}.{key}" in selected:
                services[a.text(cand, "device")].add(nic_type)
    return services


def host_rows(hosts_r: Records, name_of: Name, dc_of: Mapping[str, str],
              cluster_of_host: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """(host rows, VMkernel adapter rows); the VM counts are the inventory's to add."""
    host_rows, vmk_rows = [], []
    for moid, r in hosts_r.items():
        services = host_services(r)
        legacy = r.get("config.vmotion.netConfig.selectedVnic")
        a, node = access(r.get("config.network.vnic"))
        vnics = list(_each(node))
        fields = [(a.text(v, "device"), a.text(v, "key"), a.text(v, "portgroup"),
                   a.text(a.get(a.get(v, "spec"), "ip"), "ipAddress")) for v in vnics]
        if legacy:
            for device, key, _, _ in fields:
                if legacy in (key, device):
                    services[device].add("vmotion")
        name = r.get("name")
        vmotion_vmks, vmotion_ips = [], []
        for device, _, port_group, ip in fields:
            svc = sorted(services.get(device, ()))
            vmk_rows.append({"host": name, "host_moid": moid, "device": device, "port_group": port_group,
                             "ip": ip, "services": svc, "vmotion": "vmotion" in svc})
            if "vmotion" in svc:
                vmotion_vmks.append(device)
                if ip:
                    vmotion_ips.append(ip)
        a, node = access(r.get("hardware.cpuPkg"))
        first = next(iter(_each(node)), None)
        vendor = a.text(first, "vendor") or None
        host_rows.append({
            "name": name, "moid": moid, "datacenter": dc_of.get(moid), "cluster": cluster_of_host.get(moid),
            "compute_resource_moid": _moid(r.get("parent")),
            "connection_state": str(r.get("runtime.connectionState")),
            "power_state": str(r.get("runtime.powerState")),
            "maintenance": bool(r.get("runtime.inMaintenanceMode")),
            "cpu_vendor": vendor.lower() if vendor else None, "cpu_model": r.get("summary.hardware.cpuModel"),
            "evc_mode": r.get("summary.currentEVCModeKey") or None,
            "max_evc_mode": r.get("summary.maxEVCModeKey") or None,
            "vmotion_vmks": vmotion_vmks, "vmotion_ips": vmotion_ips,
            "vmotion_enabled": bool(vmotion_vmks),
            "datastores": sorted(name_of(m) for m in moids(r.get("datastore"))),
            "port_groups": sorted(name_of(m) for m in moids(r.get("network"))),
        })
    return host_rows, vmk_rows


def datastore_rows(ds_r: Records, name_of: Name, dc_of: Mapping[str, str]) -> list[dict]:
    rows = []
    for moid, r in ds_r.items():
        s, summary = access(r.get("summary"))
        names, read_only = [], []
        a, mounts = access(r.get("host"))
        for m in _each(mounts):
            info = a.get(m, "mountInfo")
            if info is not None and a.maybe(info, "mounted") is False:
                continue
            host = name_of(a.moid(m, "key"))
            names.append(host)
            if info is not None and a.text(info, "accessMode") == "readOnly":
                read_only.append(host)
        names.sort()
        read_only.sort()
        capacity, free = s.int(summary, "capacity") or 0, s.int(summary, "freeSpace") or 0
        rows.append({
            "name": r.get("name"), "moid": moid, "datacenter": dc_of.get(moid), "type": s.text(summary, "type"),
            "capacity_bytes": capacity, "free_bytes": free,
            "provisioned_bytes": capacity - free + (s.int(summary, "uncommitted") or 0),
            "hosts": names, "host_count": len(names), "accessible": s.flag(summary, "accessible"),
            "read_only_hosts": read_only, "maintenance_mode": s.text(summary, "maintenanceMode") or "normal",
        })
    return rows


def pool_rows(pools_r: Records, clusters_r: Records, name_of: Name,
              dc_of: Mapping[str, str]) -> tuple[list[dict], dict[str, str]]:
    """(pool rows, {owner moid: its root pool's moid})."""
    rows, root_pool = [], {}
    for moid, r in pools_r.items():
        owner = _moid(r.get("owner"))
        is_root = _moid(r.get("parent")) not in pools_r
        if is_root and owner:
            root_pool[owner] = moid
        rows.append({"name": r.get("name"), "moid": moid, "datacenter": dc_of.get(moid),
                     "cluster": name_of(owner) if owner in clusters_r else None,
                     "owner_moid": owner, "root": is_root})
    return rows, root_pool


def cluster_rows(clusters_r: Records, name_of: Name, dc_of: Mapping[str, str],
                 root_pool: Mapping[str, str]) -> list[dict]:
    rows = []
    for moid, r in clusters_r.items():
        a, cfg = access(r.get("configurationEx"))
        hosts_in = sorted(name_of(h) for h in moids(r.get("host")))
        rows.append({
            "name": r.get("name"), "moid": moid, "datacenter": dc_of.get(moid), "hosts": hosts_in,
            "host_count": len(hosts_in), "evc_mode": r.get("summary.currentEVCModeKey") or None,
            "drs_enabled": a.flag(a.get(cfg, "drsConfig"), "enabled"),
            "ha_enabled": a.flag(a.get(cfg, "dasConfig"), "enabled"), "root_pool_moid": root_pool.get(moid),
        })
    return rows


def network_rows(nets_r: Records, name_of: Name, dc_of: Mapping[str, str]) -> list[dict]:
    rows = []
    for moid, r in nets_r.items():
        on = sorted(name_of(h) for h in moids(r.get("host")))
        rows.append({"name": r.get("name"), "moid": moid, "datacenter": dc_of.get(moid),
                     "type": r["_type"], "hosts": on, "host_count": len(on)})
    return rows
