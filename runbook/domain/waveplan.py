"""A wave's plan: which VM goes where, why there, and what its checks say. Pure functions over inventory tables.

* :func:`evacuate`: every VM on a host gets the target host with the most free memory (then the fewest
  VMs) among the targets whose checks pass; each choice is counted before the next, so the VMs spread.
* :func:`drain`: every VM with a file on a datastore gets the target datastore with the most free space
  left after the move, never one that would drop below ``min_free`` percent of its capacity.
* :func:`given`: the moves a plan file (or an undo) lists, each checked.

Each row says its verdict (pass, warn, fail, with the failing checks' remedies) and the reason for its
target. The inventory's host table needs ``memory_bytes`` for the balance by memory (the engine adds it).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from runbook.domain import checks as checks_mod
from runbook.domain.checks import FAIL, PASS, WARN
from runbook.domain.plan import MigrationPlan, resolve
from runbook.errors import BadInput, RunbookError
from runbook.vsphere.find import find_row

GB = 1 << 30
COLUMNS = ["vm", "vm_moid", "power_state", "source_host", "source_datastores", "target_host", "target_datastore",
           "disk_format", "network_map", "move_kind", "status", "verdict", "remedy", "reason"]


@dataclass
class Row:
    """One move of the wave as planned and checked."""

    vm: str
    vm_moid: str | None = None
    power_state: str | None = None
    source_host: str | None = None
    source_datastores: list[str] = field(default_factory=list)
    target_host: str | None = None
    target_datastore: str | None = None
    disk_format: str = "same"
    network_map: dict[str, str] = field(default_factory=dict)
    move_kind: str = "none"
    status: str = FAIL
    verdict: str = ""
    remedy: str = ""
    reason: str = ""

    def plan(self) -> MigrationPlan:
        return MigrationPlan(vm=self.vm_moid or self.vm, target_host=self.target_host,
                             target_datastore=self.target_datastore, disk_format=self.disk_format,
                             network_map=dict(self.network_map))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame(rows: Sequence[Row]) -> pd.DataFrame:
    return pd.DataFrame([r.to_dict() for r in rows], columns=COLUMNS)


def failing(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.status == FAIL]


def check(inventory: Any, row: Row) -> Row:
    """Resolve and check ``row`` in place (a name that resolves to nothing is a failing row, not an error)."""
    try:
        resolved = resolve(inventory, row.plan())
    except RunbookError as exc:
        row.status, row.verdict = FAIL, str(exc)
        row.remedy = "fix the name in the plan (a VM, host or datastore the vCenter has), or leave the row out"
        return row
    row.vm, row.vm_moid, row.power_state = resolved.vm, resolved.vm_moid, resolved.power_state
    row.source_host, row.source_datastores = resolved.source_host, list(resolved.vm_datastores)
    row.move_kind = resolved.kind
    if resolved.already_there:
        row.status, row.verdict, row.remedy = PASS, "already there: nothing to move", ""
        return row
    results = checks_mod.run_checks(inventory, resolved)
    row.verdict = checks_mod.verdict(results)
    bad = results[results["status"] == FAIL]
    row.status = FAIL if len(bad) else (WARN if (results["status"] == WARN).any() else PASS)
    row.remedy = "; ".join(f"{r.check}: {r.remedy}" for r in bad.itertuples() if r.remedy)
    return row


def given(inventory: Any, entries: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The rows of a plan file's (or an undo's) entries, each checked."""
    rows = []
    for entry in entries:
        try:
            row = Row(vm=str(entry["vm"]), target_host=entry.get("host") or None,
                      target_datastore=entry.get("datastore") or None,
                      disk_format=entry.get("disk_format") or "same", network_map=dict(entry.get("network") or {}),
                      reason=str(entry.get("reason") or "given"))
            rows.append(check(inventory, row))
        except BadInput as exc:  # a malformed row (a format without a datastore...): failing, with its reason
            rows.append(Row(vm=str(entry.get("vm")), status=FAIL, verdict=str(exc), reason=str(entry.get("reason")),
                            remedy="fix the row in the plan"))
    return rows


# -- evacuate ---------------------------------------------------------------------------------------
def evacuate(inventory: Any, host: str, to: Sequence[str] = ()) -> list[Row]:
    """Every VM on ``host`` to another host (``to``, else every other connected host of its cluster that is
    not in maintenance mode), largest memory first, each to the passing target with the most free memory."""
    source = find_row(inventory.hosts, host, "host")
    targets = _target_hosts(inventory, source, to)
    free = {t["name"]: _free_memory(inventory, t) for t in targets}
    count = {t["name"]: int(t.get("vm_count") or 0) for t in targets}
    vms = inventory.vms[inventory.vms["host_moid"] == source["moid"]]
    vms = vms.sort_values(["memory_mb", "name"], ascending=[False, True], key=_memory_key)
    rows = []
    for vm in vms.itertuples():
        memory = int(vm.memory_mb or 0) << 20 if vm.power_state == "poweredOn" else 0
        order = sorted(free, key=lambda name: (-free[name], count[name], name))
        tried, chosen = [], None
        for name in order:
            row = check(inventory, Row(vm=vm.moid, target_host=name))
            if row.status != FAIL:
                chosen = row
                break
            tried.append(f"{name} fails ({row.verdict})")
        if chosen is None:
            chosen = check(inventory, Row(vm=vm.moid, target_host=order[0])) if order else \
                Row(vm=vm.name, vm_moid=vm.moid, verdict="no target host", remedy="give target hosts (--to)")
            chosen.reason = "no target host passes the checks" + (f": {'; '.join(tried)}" if tried else "")
            rows.append(chosen)
            continue
        name = chosen.target_host
        chosen.reason = (f"most free memory of the passing targets ({free[name] / GB:.1f} GiB free, "
                         f"{count[name]} VMs)" + (f"; {'; '.join(tried)}" if tried else ""))
        free[name] -= memory
        count[name] += 1
        rows.append(chosen)
    return rows


def _memory_key(col: pd.Series) -> pd.Series:
    return col.fillna(0) if col.name == "memory_mb" else col


def _target_hosts(inventory: Any, source: pd.Series, to: Sequence[str]) -> list[pd.Series]:
    if to:
        return [find_row(inventory.hosts, name, "host") for name in to]
    hosts = inventory.hosts
    if source["cluster"]:
        same = hosts[(hosts["cluster"] == source["cluster"]) & (hosts["datacenter"] == source["datacenter"])]
    else:
        raise BadInput(f"host {source['name']} is in no cluster: give the target hosts (--to)")
    found = [h for _, h in same.iterrows() if h["moid"] != source["moid"]
             and h["connection_state"] == "connected" and not h["maintenance"]]
    if not found:
        raise BadInput(f"host {source['name']} has no other connected host in cluster {source['cluster']} "
                       f"outside maintenance mode: give the target hosts (--to)")
    return found


def _free_memory(inventory: Any, host: pd.Series) -> int:
    """The host's memory less the memory of its powered-on VMs (what vMotion needs on the target)."""
    vms = inventory.vms
    on = vms[(vms["host_moid"] == host["moid"]) & (vms["power_state"] == "poweredOn")]
    return int(host.get("memory_bytes") or 0) - int(on["memory_mb"].fillna(0).sum()) * (1 << 20)


# -- drain ------------------------------------------------------------------------------------------
def drain(inventory: Any, datastore: str, to: Sequence[str] = (), disk_format: str = "same",
          min_free_pct: float = 10.0) -> list[Row]:
    """Every VM with a file on ``datastore`` to another datastore (``to``, else every other one its host
    mounts), largest first, each to the passing target with the most free space after the move that
    keeps ``min_free_pct`` of its capacity free. Shared datastores come before a host's local ones, so
    that a drained VM can still be vMotioned."""
    source = find_row(inventory.datastores, datastore, "datastore")
    named = [find_row(inventory.datastores, name, "datastore") for name in to]
    free = {d["name"]: int(d["free_bytes"]) for _, d in inventory.datastores.iterrows()}
    capacity = {d["name"]: int(d["capacity_bytes"]) for _, d in inventory.datastores.iterrows()}
    shared = {d["name"]: int(d["host_count"] or 0) > 1 for _, d in inventory.datastores.iterrows()}
    vms = inventory.vms[inventory.vms["datastores"].map(lambda names: source["name"] in (names or ()))]
    need_of = {vm.moid: vm for vm in vms.itertuples()}
    order = sorted(need_of, key=lambda m: (-_bytes_needed(need_of[m], None, disk_format), need_of[m].name))
    rows = []
    for moid in order:
        vm = need_of[moid]
        isos = [c.get("label") or "CD/DVD drive" for c in vm.cdroms or () if c.get("datastore") == source["name"]]
        files = vm.home_datastore == source["name"] or any(d.get("datastore") == source["name"] for d in vm.disks or ())
        if isos and not files:
            rows.append(Row(vm=vm.name, vm_moid=moid, power_state=vm.power_state, source_host=vm.host,
                            source_datastores=list(vm.datastores or ()), status=FAIL,
                            verdict=f"only the ISO image of {', '.join(isos)} is on {source['name']}: a Storage vMotion "
                                    f"moves disks and home, never an ISO image",
                            remedy=f"disconnect {', '.join(isos)} or point it at an ISO on another datastore",
                            reason="nothing a move can take off the datastore"))
            continue
        candidates = [d["name"] for d in named] if named else _mounted_by(inventory, vm, source["name"])
        scored = []
        for name in candidates:
            after = free.get(name, 0) - _bytes_needed(vm, name, disk_format)
            scored.append((after, name))
        scored.sort(key=lambda s: (not shared.get(s[1], False), -s[0], s[1]))
        tried, chosen = [], None
        for after, name in scored:
            floor = capacity.get(name, 0) * min_free_pct / 100
            if after < floor:
                tried.append(f"{name} would keep {_pct(after, capacity.get(name))} free (< {min_free_pct:g}%)")
                continue
            row = check(inventory, Row(vm=moid, target_datastore=name, disk_format=disk_format))
            if row.status != FAIL:
                chosen = row
                chosen.reason = (f"most free space after the move of the {'shared' if shared.get(name) else 'local'}"
                                 f" datastores ({after / GB:.1f} GiB, {_pct(after, capacity.get(name))} free)")
                break
            tried.append(f"{name} fails ({row.verdict})")
        if chosen is None:
            first = scored[0][1] if scored else None
            chosen = check(inventory, Row(vm=moid, target_datastore=first, disk_format=disk_format)) if first else \
                Row(vm=vm.name, vm_moid=moid)
            chosen.status = FAIL
            if not first:
                chosen.verdict = f"no other datastore is mounted on {vm.host}"
            elif not chosen.verdict or chosen.status != FAIL or not chosen.remedy:
                chosen.verdict = f"no datastore keeps {min_free_pct:g}% free after this move"
            chosen.remedy = chosen.remedy or "free space on a datastore, give targets (--to) or lower --min-free"
            chosen.reason = "no target datastore fits" + (f": {'; '.join(tried)}" if tried else "")
        else:
            if tried:
                chosen.reason += "; " + "; ".join(tried)
            if isos:
                chosen.reason += f"; the ISO image of {', '.join(isos)} stays on {source['name']}"
            free[chosen.target_datastore] -= _bytes_needed(vm, chosen.target_datastore, disk_format)
        rows.append(chosen)
    return rows


def _mounted_by(inventory: Any, vm: Any, leaving: str) -> list[str]:
    hosts = inventory.hosts[inventory.hosts["moid"] == vm.host_moid]
    mounted = list(hosts.iloc[0]["datastores"]) if len(hosts) else []
    ds = inventory.datastores.set_index("name")
    return [n for n in mounted if n != leaving and n in ds.index and bool(ds.loc[n, "accessible"])
            and ds.loc[n, "maintenance_mode"] == "normal"]


def _bytes_needed(vm: Any, target: str | None, disk_format: str) -> int:
    """Space the move takes on ``target``: each disk not already there (thin: what it holds, else its
    size) and, when the home moves, a swap file the size of the VM's memory."""
    need = 0
    for disk in vm.disks or ():
        if target is not None and disk.get("datastore") == target:
            continue
        fmt = disk.get("format") if disk_format == "same" else disk_format
        need += int(disk.get("committed_bytes") or 0) if fmt == "thin" else int(disk.get("capacity_bytes") or 0)
    if vm.home_datastore != target:
        need += (int(vm.memory_mb or 0) << 20) + (1 << 20)
    return need


def _pct(value: float, total: int | None) -> str:
    return f"{100 * value / total:.0f}%" if total else "?"


def words(rows: Sequence[Row]) -> str:
    """``42 VMs to esx-02 (21), esx-03 (21)``."""
    targets = by_target(rows)
    return f"{len(rows)} VM{'s' if len(rows) != 1 else ''}" + (
        " to " + ", ".join(f"{t} ({n})" for t, n in targets.items()) if targets else "")


def by_target(rows: Iterable[Row]) -> dict[str, int]:
    """How many rows go to each target (host or datastore): the balance in one line."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.target_host or r.target_datastore or "-"] += 1
    return dict(sorted(counts.items()))
