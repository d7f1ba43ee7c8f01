"""Which resource pool a move puts the VM in: the one asked for (of the target's compute resource), or the
target compute resource's root pool when the move leaves the VM's own; the VM's pool otherwise."""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from runbook.errors import Ambiguous, BadInput
from runbook.vsphere.find import find_row

ROOT_POOL_NAME = "Resources"  # the name vCenter gives every cluster's or host's root resource pool


def resolve_pool(inventory: Any, key: Optional[str], vm: pd.Series, source: pd.Series, run: pd.Series,
                  host_changes: bool) -> tuple[Optional[str], Optional[str]]:
    """The pool to put in the spec: the given one, or the target compute resource's root pool when the
    move leaves the VM's compute resource (a cluster, or a standalone host's own ComputeResource).

    ``(None, None)`` means "keep the VM's current pool" (vCenter's default when the spec leaves it unset).
    A pool name shared by several compute resources (every root pool is "Resources") means the one of
    the target's compute resource.
    """
    pools = _pool_table(inventory)
    target = _compute_of(run)
    if key:
        try:
            row = find_row(pools, key, "resource pool")
        except Ambiguous:
            if target is None or "owner_moid" not in pools.columns:
                raise
            row = find_row(pools[pools["owner_moid"] == target], key, "resource pool")
        owner, cluster = optional_str(row.get("owner_moid")), optional_str(row.get("cluster"))
        run_cluster = optional_str(run.get("cluster"))
        if target and owner:
            elsewhere = owner != target
        else:  # an inventory without compute resource moids: compare clusters
            elsewhere = bool(cluster and run_cluster and cluster != run_cluster)
        if elsewhere:
            where = f"cluster {run_cluster}" if run_cluster else "its own compute resource (standalone)"
            theirs = f"cluster {cluster}" if cluster else f"compute resource {owner}"
            raise BadInput(f"resource pool {row['name']} ({row['moid']}) belongs to {theirs}, but host "
                           f"{run['name']} is in {where}: give a pool of the target host's compute resource")
        return str(row["name"]), str(row["moid"])
    if not host_changes or _same_compute(source, run):
        return None, None
    root = _root_pool(inventory, pools, run)
    if root is not None:
        return root
    run_cluster = optional_str(run.get("cluster"))
    where = f"cluster {run_cluster}" if run_cluster else f"host {run['name']}"
    raise BadInput(
        f"the move from host {source['name']} to {run['name']} leaves the VM's compute resource, and the "
        f"root resource pool of {where} is not in the inventory: give the resource pool (name or moid)"
    )


def _compute_of(host: pd.Series) -> Optional[str]:
    """The moid of the host's compute resource (its cluster, or a standalone host's ComputeResource)."""
    return optional_str(host.get("compute_resource_moid"))


def _root_pool(inventory: Any, pools: pd.DataFrame, run: pd.Series) -> Optional[tuple[str, str]]:
    """The root pool of the compute resource of host ``run``, whatever its kind, when the inventory has it."""
    target = _compute_of(run)
    if target and {"owner_moid", "root"} <= set(pools.columns):
        roots = pools[(pools["owner_moid"] == target) & pools["root"].astype(bool)]
        if len(roots) == 1:
            return str(roots.iloc[0]["name"]), str(roots.iloc[0]["moid"])
    table = inventory.clusters
    run_cluster = optional_str(run.get("cluster"))
    if "root_pool_moid" in table.columns and run_cluster:
        match = table[table["name"] == run_cluster]
        if len(match) == 1 and optional_str(match.iloc[0]["root_pool_moid"]):
            return ROOT_POOL_NAME, str(match.iloc[0]["root_pool_moid"])
    if run_cluster:
        roots = pools[(pools["name"] == ROOT_POOL_NAME) & (pools["cluster"] == run_cluster)]
        if len(roots) == 1:
            return ROOT_POOL_NAME, str(roots.iloc[0]["moid"])
    return None


def _same_compute(source: pd.Series, run: pd.Series) -> bool:
    if _compute_of(source) and _compute_of(run):
        return _compute_of(source) == _compute_of(run)
    if optional_str(source.get("cluster")) and optional_str(run.get("cluster")):
        return source["cluster"] == run["cluster"] and source.get("datacenter") == run.get("datacenter")
    return source["moid"] == run["moid"]


def _pool_table(inventory: Any) -> pd.DataFrame:
    """Resource pools by name and moid: the inventory's ``pools`` table if it has one, else those VMs use."""
    for attribute in ("pools", "resource_pools"):
        table = getattr(inventory, attribute, None)
        if isinstance(table, pd.DataFrame) and len(table) and {"name", "moid"} <= set(table.columns):
            if "cluster" not in table.columns:
                table = table.assign(cluster=None)
            return table
    vms = inventory.vms
    rows = vms[["resource_pool", "resource_pool_moid", "cluster", "datacenter"]].dropna(subset=["resource_pool_moid"])
    rows = rows.rename(columns={"resource_pool": "name", "resource_pool_moid": "moid"})
    return rows.drop_duplicates(subset=["moid"]).reset_index(drop=True)


def optional_str(value: Any) -> Optional[str]:
    """A table's cell as text; None for a missing one (None, NaN, "")."""
    return None if value is None or (isinstance(value, float) and pd.isna(value)) or value == "" else str(value)
