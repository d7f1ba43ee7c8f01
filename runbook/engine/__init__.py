"""The engine: one typed request per kind of run, one call per kind that does every step and emits events.

``run(request, on_event=..., context=...)`` dispatches on the request's kind; the fronts (CLI, papermill
pipeline, notebooks, widgets, app) only build requests and show events.
"""
from __future__ import annotations

from typing import Any

from runbook.engine.context import RunContext
from runbook.engine.requests import (
    REQUESTS, CheckRequest, EnableVmotionRequest, InventoryRequest, MoveRequest, Request, build,
)
from runbook.engine.result import RunResult

__all__ = ["REQUESTS", "CheckRequest", "EnableVmotionRequest", "InventoryRequest", "MoveRequest", "Request",
           "RunContext", "RunResult", "build", "check", "enable_vmotion", "inventory", "migrate", "run"]


def check(request: Any, **kwargs: Any) -> RunResult:
    from runbook.engine.relocation import check as _check

    return _check(request, **kwargs)


def migrate(request: Any, **kwargs: Any) -> RunResult:
    from runbook.engine.relocation import migrate as _migrate

    return _migrate(request, **kwargs)


def inventory(request: Any = None, **kwargs: Any) -> RunResult:
    from runbook.engine.runs import inventory as _inventory

    return _inventory(request, **kwargs)


def enable_vmotion(request: Any, **kwargs: Any) -> RunResult:
    from runbook.engine.runs import enable_vmotion as _enable

    return _enable(request, **kwargs)


_CALLS = {"inventory": inventory, "check": check, "migrate": migrate, "enable-vmotion": enable_vmotion}


def run(request: Request, **kwargs: Any) -> RunResult:
    """The engine call for the request's kind."""
    return _CALLS[request.kind](request, **kwargs)
