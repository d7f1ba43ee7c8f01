"""An inventory's tables beside its record: one CSV per table (every row), which the record's page shows.

The engine calls :func:`save` before it finishes an inventory run, so that every inventory record, whatever
started it, has the same tables on its page; the notebook's paged tables (:mod:`runbook.fronts.tables`) write
the same files with the same columns.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

#: The columns of each table, in the order people read them (the inventory notebook shows the same).
COLUMNS = {
    "hosts": ["name", "cluster", "connection_state", "maintenance", "cpu_vendor", "cpu_model", "evc_mode",
              "vmotion_vmks", "vmotion_ips", "vm_count", "datastores", "port_groups"],
    "datastores": ["name", "type", "capacity_bytes", "free_bytes", "provisioned_bytes", "host_count", "hosts",
                   "accessible"],
    "vms": ["name", "power_state", "cluster", "host", "datastores", "guest_ip", "guest_os", "vcpus", "memory_mb",
            "provisioned_bytes", "committed_bytes", "networks", "disk_count", "disk_formats", "tools_status"],
    "clusters": ["name", "datacenter", "host_count", "hosts", "evc_mode", "drs_enabled", "ha_enabled", "vm_count"],
    "networks": ["name", "type", "host_count", "hosts", "vm_count"],
    "vmkernel": ["host", "device", "port_group", "ip", "services", "vmotion"],
}


def save(inventory: Any, run_dir: Path) -> list[Path]:
    """Write each table of ``inventory`` (a :class:`~runbook.vsphere.inventory.Inventory`) as
    ``run_dir/<name>.csv``, readable (names as people wrote them, lists joined, bytes in GiB); the paths."""
    from runbook.fronts.notebook import readable

    written = []
    tables = inventory.tables()
    for name, columns in COLUMNS.items():
        df = tables.get(name)
        if df is None:
            continue
        path = Path(run_dir) / f"{name}.csv"
        readable(df, [c for c in columns if c in df.columns]).to_csv(path, index=False)
        written.append(path)
    return written
