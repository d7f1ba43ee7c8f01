"""The look-up a front makes before it starts anything heavy: log in, read names, refuse unknown ones.

``preflight(request)`` raises what the engine itself would raise for the request's names (NotFound,
Ambiguous with the candidates, ConnectionFailed), in a few requests whatever the size of the vCenter, so
that a typo is refused in about a second and no kernel is ever started for it.
"""
from __future__ import annotations

import contextlib
from typing import Any

from runbook.engine.requests import CheckRequest, EnableVmotionRequest, InventoryRequest, Request
from runbook.vsphere.connection import Settings, login, logout, settings_from_env
from runbook.vsphere.timeouts import answering


def preflight(request: Request, settings: Settings | None = None) -> Settings:
    """Refuse the request's unknown names; return the settings it will run with."""
    settings = settings or settings_from_env()
    si = login(settings)
    try:
        with answering(settings):
            _look_up(si, request)
        return settings
    finally:
        with contextlib.suppress(Exception):
            logout(si)


def _look_up(si: Any, request: Request) -> None:
    from runbook.vsphere import scope

    if isinstance(request, CheckRequest):
        scope.find(si, vm=request.vm, hosts=[request.target_host], datastores=[request.target_datastore])
    elif isinstance(request, EnableVmotionRequest):
        names = scope.read_names(si)
        for host in request.hosts:
            names.find("HostSystem", host, "host")
        if request.cluster:
            names.find("ClusterComputeResource", request.cluster, "cluster")
    elif isinstance(request, InventoryRequest) and request.cluster:
        scope.read_names(si).find("ClusterComputeResource", request.cluster, "cluster")

