"""The engine's inventory and enable-vMotion runs: one call each, events as they go, one record.

``inventory(request)`` reads the vCenter's tables in bulk and records their counts;
``enable_vmotion(request)`` reads the chosen hosts' VMkernel adapters, validates every host before any
is changed, applies the change only when ``apply`` is true, re-reads, and records before and after.
"""
from __future__ import annotations

import contextlib
import logging

from runbook._imports import skip_iri_grammar
from runbook.domain.checks.base import plural
from runbook.engine.context import RunContext
from runbook.engine.events import Emitter, RunStarted, Sink, Step
from runbook.engine.interrupt import Interrupted, interruptible
from runbook.engine.requests import EnableVmotionRequest, InventoryRequest, build
from runbook.engine.result import RunResult
from runbook.errors import BadInput, RunbookError
from runbook.records.recorder import Recorder
from runbook.vsphere.connection import Settings, login, logout, settings_from_env
from runbook.vsphere.timeouts import answering

log = logging.getLogger("runbook")
skip_iri_grammar()  # the record's first save imports jsonschema: not its IRI grammar (3 s), in any front's process


def inventory(request: InventoryRequest | dict | None = None, *, on_event: Sink | None = None,
              context: RunContext | None = None, settings: Settings | None = None) -> RunResult:
    """Read the inventory (all of it, or one datacenter or cluster) and record what it holds.

    The result's ``inventory`` is the :class:`~runbook.vsphere.inventory.Inventory` (tables to show).
    """
    from runbook.vsphere.inventory import read_inventory

    request = build(InventoryRequest, request or {}) if not isinstance(request, InventoryRequest) else request
    context = context or RunContext()
    emit = Emitter.for_run(on_event, context)
    settings = settings or settings_from_env()
    si = login(settings)
    try:
        scope = request.cluster or request.datacenter or "everything"
        emit(Step("read", "started", f"reading the inventory ({scope}) of {settings.url}"))
        with answering(settings):
            inv = read_inventory(si, datacenter=request.datacenter or None, cluster=request.cluster or None)
    finally:
        with contextlib.suppress(Exception):
            logout(si)
    recorder = Recorder(request.kind, request.to_params(), context, emit).start(settings)
    emit(RunStarted(run=request.kind, what=f"inventory of {scope}", vcenter=settings.url,
                    run_dir=str(recorder.run_dir) if recorder.run_dir else None))
    counts = {name: len(df) for name, df in inv.tables().items()}
    no_vmotion = inv.hosts.loc[~inv.hosts["vmotion_enabled"].astype(bool), "name"].tolist() if len(inv.hosts) else []
    summary = (f"{plural(counts['vms'], 'VM')} on {plural(counts['hosts'], 'host')}, "
               f"{plural(counts['datastores'], 'datastore')}"
               + (f"; no vMotion adapter on: {', '.join(no_vmotion)}" if no_vmotion
                  else "; vMotion enabled on every host"))
    recorder.set(inventory=counts)
    if recorder.run_dir is not None:  # the same tables on the record's page, whatever front started the run
        from runbook.records import inventory_tables

        inventory_tables.save(inv, recorder.run_dir)
    recorder.finish("SUCCEEDED", summary, figures=[
        ("vCenter", settings.url), ("VMs", counts["vms"]), ("Hosts", counts["hosts"]),
        ("Datastores", counts["datastores"]), ("Clusters", counts["clusters"])])
    return RunResult.of(recorder, inventory=inv)


def enable_vmotion(request: EnableVmotionRequest | dict, *, on_event: Sink | None = None,
                   context: RunContext | None = None, settings: Settings | None = None) -> RunResult:
    """Plan (and with ``apply``, make) the vMotion change on the hosts' VMkernel adapters.

    A host that cannot be changed refuses the whole run before any host changes (BadInput, no record).
    The result's ``state`` is the :class:`~runbook.domain.vmotion.VmotionRemediation` (before/after tables).
    """
    from runbook.domain.vmotion import VmotionRemediation

    request = build(EnableVmotionRequest, request) if isinstance(request, dict) else request
    context = context or RunContext()
    emit = Emitter.for_run(on_event, context)
    settings = settings or settings_from_env()
    si = login(settings)
    try:
        fix = VmotionRemediation(si, cluster=request.cluster, hosts=request.hosts, vmk=request.vmk,
                                 disable=request.disable)
        emit(Step("read", "started", f"reading the VMkernel adapters on {settings.url}"))
        with answering(settings):
            fix.read()
            plan = fix.plan()  # BadInput for any host that cannot be changed: nothing changed, no record
        recorder = Recorder(request.kind, request.to_params(), context, emit).start(settings)
        emit(RunStarted(run=request.kind, what=plan.describe(applied=False), vcenter=settings.url,
                        run_dir=str(recorder.run_dir) if recorder.run_dir else None))
        recorder.set(hosts=fix.host_records())
        with interruptible():
            try:
                if request.apply:
                    emit(Step("apply", "started", f"applying {plural(len(plan.pending), 'change')}"))
                fix.run(apply=request.apply)
                recorder.finish(fix.outcome, fix.summary, hosts=fix.host_records(),
                                figures=[("vCenter", settings.url)] + fix.figures())
            except (Interrupted, KeyboardInterrupt) as exc:
                with contextlib.suppress(Exception):
                    fix.after = None
                why = str(exc) or "SIGINT"
                recorder.finish("CANCELLED", f"interrupted by {why}; changes made before it: "
                                             f"{', '.join(c.words(done=True) for c in fix.done) or 'none'}",
                                error={"type": "Interrupted", "message": f"interrupted by {why}"},
                                hosts=fix.host_records(), interrupted=why)
            except BadInput as exc:
                recorder.finish("REFUSED", f"refused: {exc}; nothing was changed", error=exc)
            except RunbookError as exc:
                recorder.finish("FAILED", str(exc), error=exc, hosts=fix.host_records())
        return RunResult.of(recorder, state=fix)
    finally:
        with contextlib.suppress(Exception):
            logout(si)

