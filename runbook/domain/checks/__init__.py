"""Prerequisite checks of a move: small functions over plain inventory data and the resolved plan.

Each check returns a :class:`CheckResult` row (check, status, found, remedy); :func:`run_checks` runs
them all into a DataFrame, :func:`verdict` sums it up in one line and :func:`failed` lists what blocks
the move. vCenter's own verdict (:func:`vcenter_verdict`) needs a session and is run separately.
To add a check, write a function decorated with ``@check("name")`` in the module of its topic.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import pandas as pd

from runbook.domain.plan import MigrationPlan, ResolvedPlan, resolve
from runbook.vsphere.find import display_name
from runbook.domain.checks import (  # noqa: F401  (registration order: VM, hosts, storage)
    vm as _vm, hosts as _hosts, storage as _storage
)
from .base import CHECKS, FAIL, PASS, SKIP, WARN, CheckResult, CheckSettings, check, plural
from .vcenter import FAULT_TO_CHECK, VCENTER_CHECK, fault_check_name, vcenter_verdict

OBJECTS_EXIST = "objects exist and are unique"
COLUMNS = ["check", "status", "found", "remedy"]

__all__ = [
    "CHECKS", "COLUMNS", "CheckResult", "CheckSettings", "FAULT_TO_CHECK", "OBJECTS_EXIST", "VCENTER_CHECK",
    "check", "check_names", "failed", "fault_check_name", "results_frame", "run_checks", "vcenter_verdict",
    "verdict",
]


def check_names() -> list[str]:
    """The names of all local checks, in the order they run."""
    return [OBJECTS_EXIST] + [f.check_name for f in CHECKS]  # type: ignore[attr-defined]


def results_frame(results: list[CheckResult]) -> pd.DataFrame:
    """Check rows as a DataFrame with columns check, status, found, remedy."""
    return pd.DataFrame([[r.check, r.status, r.found, r.remedy] for r in results], columns=COLUMNS)


def run_checks(inventory: Any, plan: Union[MigrationPlan, ResolvedPlan],
               settings: Optional[CheckSettings] = None) -> pd.DataFrame:
    """Run every registered check of ``plan`` over ``inventory``; one row per check.

    A :class:`MigrationPlan` is resolved first, so a missing or ambiguous VM, host, datastore or pool
    raises BadInput before any check runs. A check that crashes gives a "fail" row (never a silent pass).
    """
    settings = settings or CheckSettings()
    resolved = plan if isinstance(plan, ResolvedPlan) else resolve(inventory, plan)
    named = [f"VM {resolved.vm} ({resolved.vm_moid})"]
    if resolved.target_host:
        named.append(f"host {resolved.target_host} ({resolved.target_host_moid})")
    if resolved.target_datastore:
        named.append(f"datastore {resolved.target_datastore} ({resolved.target_datastore_moid})")
    if resolved.resource_pool:
        named.append(f"resource pool {resolved.resource_pool} ({resolved.resource_pool_moid})")
    results = [CheckResult(OBJECTS_EXIST, PASS, "found " + ", ".join(named))]
    for function in CHECKS:
        name = function.check_name  # type: ignore[attr-defined]
        try:
            results.append(function(inventory, resolved, settings))
        except Exception as exc:  # a bug or odd data must block the move, not pass it
            results.append(CheckResult(name, FAIL, f"the check could not run: {type(exc).__name__}: {exc}",
                                       "report this as a runbook bug with the inventory snapshot; fix the data "
                                       "or give force_reason"))
    return results_frame([_as_written(r) for r in results])


def _as_written(result: CheckResult) -> CheckResult:
    """A row's texts with the names as the operator wrote them: the checks compare names in vCenter's form
    (``a%2fb``), and the only ``%2f`` / ``%5c`` / ``%25`` in their texts are those names' escapes."""
    return CheckResult(result.check, result.status, display_name(result.found), display_name(result.remedy))


def verdict(df: pd.DataFrame) -> str:
    """One line: "All 14 checks passed", "passed with 1 warning: ...", or "2 checks failed: a, b"."""
    fails = df[df["status"] == FAIL]["check"].tolist()
    warns = df[df["status"] == WARN]["check"].tolist()
    skipped = int((df["status"] == SKIP).sum())
    if fails:
        tail = f" (and {plural(len(warns), 'warning')})" if warns else ""
        return f"{plural(len(fails), 'check')} failed: {', '.join(fails)}{tail}"
    if warns:
        return f"passed with {plural(len(warns), 'warning')}: {', '.join(warns)}"
    ran = len(df) - skipped
    note = f" ({skipped} skipped)" if skipped else ""
    return f"All {ran} checks passed{note}" if ran != 1 else f"The 1 check passed{note}"


def failed(df: pd.DataFrame) -> list[str]:
    """The failed checks as ``"check: found"`` lines (for :class:`ChecksFailed`)."""
    rows = df[df["status"] == FAIL]
    return [f"{row.check}: {row.found}" for row in rows.itertuples(index=False)]
