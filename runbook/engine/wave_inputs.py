"""What a wave reads: the inventory with what balancing needs, the record of a run to undo, the hosts again, and
the session its moves share."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pyVmomi import vim

from runbook.errors import BadInput
from runbook.records import record as rec
from runbook.vsphere.inventory import Inventory, read_inventory
from runbook.vsphere.properties import retrieve_objects


class SharedSession:
    """A logged-in ServiceInstance whose ServiceContent is read once, for the moves of a wave to share.

    pyVmomi's ``si.content`` is a SOAP request each time it is read (the references of the property collector,
    the view and event managers...): 7 of a move's 35 requests, each deserialising the whole content. Those
    references do not change during a session. Everything else is the session's own (``_stub``, methods)."""

    def __init__(self, si: vim.ServiceInstance):
        self.session = si
        self.content = si.RetrieveContent()

    def RetrieveContent(self) -> Any:  # noqa: N802 (pyVmomi's name)
        return self.content

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def read(si: vim.ServiceInstance) -> Inventory:
    """The full inventory plus what balancing needs of each host: its memory and its fastest NIC's speed
    (one more bulk read of every host)."""
    inv = read_inventory(si)
    refs = [vim.HostSystem(m, si._stub) for m in inv.hosts["moid"]]
    extra = retrieve_objects(si, refs, {vim.HostSystem: ["summary.hardware.memorySize", "config.network.pnic"]})
    inv.hosts["memory_bytes"] = [int(extra.get(m, {}).get("summary.hardware.memorySize") or 0)
                                 for m in inv.hosts["moid"]]
    inv.hosts["link_mbps"] = [max((p.linkSpeed.speedMb for p in extra.get(m, {}).get("config.network.pnic") or ()
                                   if getattr(p, "linkSpeed", None)), default=None) for m in inv.hosts["moid"]]
    for table in inv.tables().values():  # one block per dtype: the checks' row look-ups run about twice as fast
        table._consolidate_inplace()
    return inv


def host_refs(si: vim.ServiceInstance) -> list[Any]:
    """Every host of the vCenter (a wave reads them again to enter maintenance mode)."""
    from runbook.vsphere.properties import container_view, retrieve_view

    with container_view(si, None, [vim.HostSystem]) as view:
        return [r["_ref"] for r in retrieve_view(si, view, {vim.HostSystem: ["name"]}).values()]


def find_record(reports_dir: Path, run_id: str) -> dict[str, Any]:
    """The record of run ``run_id`` under ``reports_dir`` (BadInput when there is none)."""
    found = sorted(Path(reports_dir).glob(f"*/{run_id}/record.json")) if "/" not in run_id else []
    data = rec.load(found[0].parent) if found else None
    if data is None:
        raise BadInput(f"no run {run_id!r} under {reports_dir}: give a run id as `runbook reports` lists them "
                       f"(the run directory's name)")
    return data
