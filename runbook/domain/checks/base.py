"""The pieces every check shares: the result row, the settings, the registry and inventory helpers.

A check is a function ``(inventory, resolved, settings) -> CheckResult`` decorated with
``@check("name")``; the decorator adds it to :data:`CHECKS`, which :func:`runbook.checks.run_checks`
walks in order. Adding a check is writing one such function.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from runbook.domain.plan import ResolvedPlan, records, strings  # noqa: F401  (re-exported for the checks)

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class CheckResult:
    """One row of the check table: which check, its status, what it found and how to fix it."""

    check: str
    status: str  # "pass" | "warn" | "fail" | "skip"
    found: str
    remedy: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r} is not one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the checks; defaults follow VMware's documented limits (see reference/vmotion.md).

    ``free_space_margin_pct``: free space (as % of the datastore's capacity) the move should leave on the
    target datastore; less gives a warning. The cost limits are vCenter's: over them it queues the move.
    """

    free_space_margin_pct: float = 10.0
    host_max_cost: int = 8
    host_vmotion_cost: int = 1
    host_svmotion_cost: int = 4
    datastore_max_cost: int = 128
    datastore_vmotion_cost: int = 1
    datastore_svmotion_cost: int = 16


CheckFunction = Callable[[Any, ResolvedPlan, CheckSettings], CheckResult]

#: Every registered check, in display order.
CHECKS: list[CheckFunction] = []


def check(name: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as the check called ``name``."""

    def register(function: CheckFunction) -> CheckFunction:
        function.check_name = name  # type: ignore[attr-defined]
        CHECKS.append(function)
        return function

    return register


def host_row(inventory: Any, moid: str) -> pd.Series:
    """The hosts row with that moid (resolution already proved it exists)."""
    rows = inventory.hosts[inventory.hosts["moid"] == moid]
    return rows.iloc[0]


def datastore_row(inventory: Any, name: str) -> Optional[pd.Series]:
    """The datastores row named ``name``, or None when the inventory does not list it."""
    rows = inventory.datastores[inventory.datastores["name"] == name]
    return rows.iloc[0] if len(rows) else None


def vm_row(inventory: Any, moid: str) -> pd.Series:
    rows = inventory.vms[inventory.vms["moid"] == moid]
    return rows.iloc[0]


def size(n: float) -> str:
    """Bytes as a short human string: ``40.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def mounted_datastores(inventory: Any, host: pd.Series) -> set[str]:
    """Datastores the host mounts: its own list plus any datastore listing the host."""
    names = set(strings(host.get("datastores")))
    for _, ds in inventory.datastores.iterrows():
        if host["name"] in strings(ds.get("hosts")):
            names.add(str(ds["name"]))
    return names


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")
