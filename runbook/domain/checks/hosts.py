"""Checks about the hosts: their state, vMotion adapters, CPU compatibility and concurrency limits."""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from runbook.domain.plan import ResolvedPlan
from .base import (FAIL, PASS, SKIP, WARN, CheckResult, CheckSettings, check, datastore_row, host_row, plural,
                   strings)

TARGET_HOST_STATE = "target host state"
SOURCE_HOST_CONNECTED = "source host connected"
VMOTION_NETWORK = "vMotion VMkernel adapters"
CPU_COMPATIBILITY = "CPU vendor and EVC"
CONCURRENCY = "concurrent migration limits"

ENABLE_VMOTION_COMMAND = "runbook enable-vmotion --host {host} --apply"
ENABLE_VMOTION_NOTEBOOK = "notebooks/enable_vmotion.ipynb"

#: EVC baselines from oldest to newest, per vendor (a host whose max mode is at or past a mode can run it).
EVC_ORDER = {
    "intel": ["intel-merom", "intel-penryn", "intel-nehalem", "intel-westmere", "intel-sandybridge",
              "intel-ivybridge", "intel-haswell", "intel-broadwell", "intel-skylake", "intel-cascadelake",
              "intel-icelake", "intel-sapphirerapids"],
    "amd": ["amd-rev-e", "amd-rev-f", "amd-greyhound-no3dnow", "amd-greyhound", "amd-bulldozer", "amd-piledriver",
            "amd-steamroller", "amd-zen", "amd-zen2", "amd-zen3", "amd-zen4"],
}


@check(TARGET_HOST_STATE)
def target_host_state(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """The target host must be connected, powered on and (as a new home) not in maintenance mode."""
    if r.target_host_moid is None:
        return CheckResult(TARGET_HOST_STATE, SKIP, f"no target host given: VM {r.vm} stays on {r.source_host}")
    host = host_row(inventory, r.target_host_moid)
    problems = []
    if host.get("connection_state") != "connected":
        problems.append(f"is {host.get('connection_state')}")
    if host.get("power_state") != "poweredOn":
        problems.append(f"is {host.get('power_state')}")
    if r.host_changes and bool(host.get("maintenance")):
        problems.append("is in maintenance mode")
    if not problems:
        return CheckResult(TARGET_HOST_STATE, PASS, f"host {r.target_host} is connected, powered on, not in maintenance")
    return CheckResult(TARGET_HOST_STATE, FAIL, f"host {r.target_host} {' and '.join(problems)}",
                       f"reconnect / power on host {r.target_host} and take it out of maintenance mode, "
                       f"or choose another target host")


@check(SOURCE_HOST_CONNECTED)
def source_host_connected(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """vCenter can only move a VM off a host it can talk to."""
    host = host_row(inventory, r.source_host_moid)
    if host.get("connection_state") == "connected":
        return CheckResult(SOURCE_HOST_CONNECTED, PASS, f"source host {r.source_host} is connected")
    return CheckResult(SOURCE_HOST_CONNECTED, FAIL,
                       f"source host {r.source_host} of VM {r.vm} is {host.get('connection_state')}",
                       f"reconnect host {r.source_host} in vCenter (Connection > Connect) and run again")


def _vmotion_adapters(inventory: Any, host: pd.Series) -> list[str]:
    adapters = list(strings(host.get("vmotion_vmks"))) if host.get("vmotion_enabled", True) else []
    table = getattr(inventory, "vmkernel", None)
    if isinstance(table, pd.DataFrame) and len(table):
        rows = table[(table["host_moid"] == host["moid"]) & table["vmotion"].astype(bool)]
        adapters += [str(d) for d in rows["device"]]
    return sorted(set(adapters))


@check(VMOTION_NETWORK)
def vmotion_network(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """A live host change needs a VMkernel adapter with the vMotion service on both hosts."""
    if not r.host_changes:
        return CheckResult(VMOTION_NETWORK, SKIP, "the host does not change")
    if r.power_state != "poweredOn":
        return CheckResult(VMOTION_NETWORK, SKIP, f"VM {r.vm} is {r.power_state}: a cold move needs no vMotion network")
    lacking, have = [], []
    for moid in (r.source_host_moid, r.run_host_moid):
        host = host_row(inventory, moid)
        adapters = _vmotion_adapters(inventory, host)
        (have if adapters else lacking).append((str(host["name"]), adapters))
    if not lacking:
        return CheckResult(VMOTION_NETWORK, PASS,
                           "; ".join(f"{name}: {', '.join(adapters)}" for name, adapters in have))
    names = [name for name, _ in lacking]
    commands = " and ".join(ENABLE_VMOTION_COMMAND.format(host=name) for name in names)
    return CheckResult(VMOTION_NETWORK, FAIL,
                       f"no VMkernel adapter with the vMotion service on {'host' if len(names) == 1 else 'hosts'} "
                       f"{', '.join(names)}",
                       f"{commands} (or the notebook {ENABLE_VMOTION_NOTEBOOK})")


def _evc_rank(mode: Optional[str]) -> Optional[int]:
    for order in EVC_ORDER.values():
        if mode in order:
            return order.index(mode)
    return None


def _text(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return None
    return str(value)


@check(CPU_COMPATIBILITY)
def cpu_compatibility(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """Live vMotion needs the same CPU vendor, and the target must offer the CPU features the VM runs with."""
    if not r.host_changes:
        return CheckResult(CPU_COMPATIBILITY, SKIP, "the host does not change")
    if r.power_state == "poweredOff":
        return CheckResult(CPU_COMPATIBILITY, SKIP, f"VM {r.vm} is powered off: CPU features are set at power-on")
    src, tgt = host_row(inventory, r.source_host_moid), host_row(inventory, r.run_host_moid)
    src_vendor, tgt_vendor = str(src.get("cpu_vendor")), str(tgt.get("cpu_vendor"))
    if src_vendor != tgt_vendor:
        return CheckResult(CPU_COMPATIBILITY, FAIL,
                           f"host {r.source_host} has {src_vendor} CPUs, {r.run_host} has {tgt_vendor}: "
                           f"EVC cannot bridge CPU vendors",
                           f"choose a target host with {src_vendor} CPUs, or power {r.vm} off for a cold migration")
    src_mode, tgt_mode, tgt_max = _text(src.get("evc_mode")), _text(tgt.get("evc_mode")), _text(tgt.get("max_evc_mode"))
    if src_mode and src_mode == tgt_mode:
        return CheckResult(CPU_COMPATIBILITY, PASS, f"both hosts are {src_vendor} in EVC mode {src_mode}")
    if src_mode and tgt_max and _evc_rank(src_mode) is not None and _evc_rank(tgt_max) is not None:
        if _evc_rank(tgt_max) >= _evc_rank(src_mode):  # type: ignore[operator]
            return CheckResult(CPU_COMPATIBILITY, PASS,
                               f"host {r.run_host} supports EVC mode {src_mode} of {r.source_host} (up to {tgt_max})")
        return CheckResult(CPU_COMPATIBILITY, FAIL,
                           f"host {r.run_host} supports EVC modes up to {tgt_max}, but VM {r.vm} runs with "
                           f"{src_mode} on {r.source_host}",
                           f"choose a host that supports {src_mode}, or power {r.vm} off for a cold migration")
    if not src_mode and not tgt_mode and src.get("cpu_model") == tgt.get("cpu_model"):
        return CheckResult(CPU_COMPATIBILITY, PASS, f"both hosts have {src.get('cpu_model')} CPUs")
    return CheckResult(CPU_COMPATIBILITY, WARN,
                       f"both hosts are {src_vendor}, but their EVC modes differ ({r.source_host}: {src_mode or 'none'}, "
                       f"{r.run_host}: {tgt_mode or 'none'}); the VM may use CPU features {r.run_host} lacks",
                       "read vCenter's verdict (vcenter_verdict) or put both hosts in clusters with the same EVC mode")


def _cost_over(running: int, cost: int, max_cost: int) -> bool:
    """Whether one more move of ``cost`` exceeds ``max_cost`` when ``running`` moves of that cost run."""
    return (int(running) + 1) * cost > max_cost


@check(CONCURRENCY)
def concurrency(inventory: Any, r: ResolvedPlan, settings: CheckSettings) -> CheckResult:
    """vCenter queues a move over the per-host or per-datastore cost limit; say so before it looks stuck."""
    if r.kind == "none":
        return CheckResult(CONCURRENCY, SKIP, "nothing moves")
    storage = r.datastore_changes
    host_cost = settings.host_svmotion_cost if storage else settings.host_vmotion_cost
    ds_cost = settings.datastore_svmotion_cost if storage else settings.datastore_vmotion_cost
    kind = "Storage vMotions" if storage else "vMotions"
    busy = []
    for moid in dict.fromkeys((r.source_host_moid, r.run_host_moid)):
        host = host_row(inventory, moid)
        running = int(host.get("running_migrations") or 0)
        if _cost_over(running, host_cost, settings.host_max_cost):
            busy.append(f"host {host['name']} runs {plural(running, 'migration')} "
                        f"(limit {settings.host_max_cost // host_cost} {kind})")
    names = set(r.vm_datastores) | set(r.target_datastores())
    for name in sorted(names):
        ds = datastore_row(inventory, name)
        if ds is None:
            continue
        running = int(ds.get("running_migrations") or 0)
        if _cost_over(running, ds_cost, settings.datastore_max_cost):
            busy.append(f"datastore {name} runs {plural(running, 'migration')} "
                        f"(limit {settings.datastore_max_cost // ds_cost} {kind})")
    if not busy:
        return CheckResult(CONCURRENCY, PASS, "the hosts and datastores are under vCenter's concurrent migration limits")
    return CheckResult(CONCURRENCY, WARN, "; ".join(busy) + ": vCenter will queue this move",
                       "expect a wait before the move starts, or run it when the other migrations have finished")
