"""vMotion runbook: inventory, prerequisite checks, the move, ping loss and change records for vSphere.

The public API, loaded on first use so that ``runbook --help`` and a refused command stay instant::

    import runbook
    result = runbook.migrate(runbook.MoveRequest(vm="app-01", target_host="esx-02"), on_event=print)

Layout: ``runbook.vsphere`` (session, look-ups, bulk reads, tasks), ``runbook.domain`` (plan, checks,
spec), ``runbook.engine`` (requests, events, the one call per kind of run), ``runbook.probes`` (ping),
``runbook.records`` (record, report, index), ``runbook.fronts`` (CLI, pipeline, notebooks, widgets).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Settings": "runbook.vsphere.connection", "connect": "runbook.vsphere.connection",
    "login": "runbook.vsphere.connection", "logout": "runbook.vsphere.connection",
    "settings_from_env": "runbook.vsphere.connection",
    "Inventory": "runbook.vsphere.inventory", "read_inventory": "runbook.vsphere.inventory",
    "run_notebook": "runbook.fronts.pipeline",
    "RunRecord": "runbook.records.record",
    "wave": "runbook.engine.wave", "WaveRequest": "runbook.engine.requests",
    "EvacuateRequest": "runbook.engine.requests", "DrainRequest": "runbook.engine.requests",
    "PlanRequest": "runbook.engine.requests", "UndoRequest": "runbook.engine.requests",
}
_ENGINE = ("run", "check", "migrate", "inventory", "enable_vmotion", "RunContext", "RunResult", "Request",
           "InventoryRequest", "CheckRequest", "MoveRequest", "EnableVmotionRequest", "build")
_ERRORS = ("Ambiguous", "BadInput", "ChecksFailed", "ConnectionFailed", "LabError", "NotFound", "OutcomeUnknown",
           "RunbookError", "TaskFailed", "TaskTimeout")
_LAZY.update({name: "runbook.errors" for name in _ERRORS})
_LAZY.update({name: "runbook.engine" for name in _ENGINE})

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
