"""Enable (or disable) vMotion on a VMkernel adapter of chosen hosts: the remedy of the check
"vMotion VMkernel adapters", done as the lab guide does it by hand (host > Configure > VMkernel adapters >
Edit > enabled services: vMotion), but planned, validated and recorded.

Three steps, as for a move: :func:`plan_vmotion` is a pure function over the inventory and the hosts'
network (which host, which adapter, change or already so) that validates *every* host before anything
changes; :func:`apply_vmotion` selects or deselects the adapters through each host's virtual NIC manager
(``SelectVnicForNicType`` / ``DeselectVnicForNicType``; the vMotion system's ``SelectVnic`` /
``DeselectVnic`` on hosts without one); :class:`VmotionRemediation` reads, plans, applies, re-reads and
returns before and after per host for the change record.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyVmomi import vim, vmodl

from runbook.errors import BadInput, RunbookError
from runbook.vsphere.find import find_row
from runbook.vsphere.inventory import Inventory, read_inventory
from runbook.vsphere.properties import retrieve_objects

log = logging.getLogger("runbook")

NIC_TYPE = "vmotion"
NETWORK_PATHS = ["config.network.portgroup", "config.network.vswitch", "configManager.virtualNicManager",
                 "configManager.vmotionSystem"]
ADAPTER_COLUMNS = ["host", "device", "port_group", "ip", "services", "vmotion", "uplinks"]
PLAN_COLUMNS = ["host", "adapter", "change", "services", "note"]
ENABLE, DISABLE, NONE = "enable", "disable", "none"


# ----- reading --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostNetwork:
    """What the inventory tables lack: the uplinks of each standard port group, and the managers."""

    moid: str
    uplinks: Mapping[str, tuple[str, ...]]  # port group name -> physical NICs that carry its traffic
    nic_manager: Any = None  # configManager.virtualNicManager (a moref), or None
    vmotion_system: Any = None  # configManager.vmotionSystem (a moref), or None


def read_host_network(si: vim.ServiceInstance, host_moids: Iterable[str]) -> dict[str, HostNetwork]:
    """Port groups, vSwitches and managers of the given hosts, in one bulk read."""
    refs = [vim.HostSystem(moid, si._stub) for moid in dict.fromkeys(host_moids)]
    records = retrieve_objects(si, refs, {vim.HostSystem: NETWORK_PATHS})
    return {moid: HostNetwork(moid=moid, uplinks=port_group_uplinks(rec.get("config.network.portgroup"),
                                                                     rec.get("config.network.vswitch")),
                              nic_manager=rec.get("configManager.virtualNicManager"),
                              vmotion_system=rec.get("configManager.vmotionSystem"))
            for moid, rec in records.items()}


def port_group_uplinks(portgroups: Sequence[Any] | None, vswitches: Sequence[Any] | None) -> dict[str, tuple[str, ...]]:
    """Physical NICs per standard port group: its teaming order when set, else its vSwitch's pnics."""
    pnics = {vs.name: tuple(_nic_name(p) for p in vs.pnic or ()) for vs in vswitches or ()}
    result = {}
    for pg in portgroups or ():
        order = getattr(getattr(getattr(pg, "computedPolicy", None), "nicTeaming", None), "nicOrder", None)
        if order is not None and (order.activeNic or order.standbyNic):
            result[pg.spec.name] = tuple(order.activeNic or ()) + tuple(order.standbyNic or ())
        else:
            result[pg.spec.name] = pnics.get(pg.spec.vswitchName, ())
    return result


def _nic_name(key: str) -> str:
    return key.rsplit("PhysicalNic-", 1)[-1]


def select_hosts(inventory: Any, cluster: str = "", hosts: Sequence[str] | str = ()) -> pd.DataFrame:
    """The hosts rows chosen by a cluster or by a list of host names / moids (exactly one of the two)."""
    hosts = [hosts] if isinstance(hosts, str) else [str(h) for h in hosts or () if str(h).strip()]
    if cluster and hosts:
        raise BadInput(f"give a cluster or hosts, not both (cluster {cluster!r}, hosts {', '.join(hosts)})")
    if cluster:
        row = find_row(inventory.clusters, cluster, "cluster")
        chosen = inventory.hosts[inventory.hosts["cluster"] == row["name"]]
        if chosen.empty:
            raise BadInput(f"cluster {row['name']} has no hosts; name hosts instead (--host)")
        return chosen.reset_index(drop=True)
    if not hosts:
        raise BadInput("choose the hosts: give a cluster (--cluster C) or one or more hosts (--host H)")
    rows = [find_row(inventory.hosts, key, "host") for key in hosts]
    unique = {row["moid"]: row for row in rows}
    return pd.DataFrame(list(unique.values())).reset_index(drop=True)


def adapter_table(inventory: Any, host_moids: Iterable[str],
                  network: Mapping[str, HostNetwork] | None = None) -> pd.DataFrame:
    """Each VMkernel adapter of the hosts: device, port group, IP, services, vMotion, uplinks."""
    moids = list(dict.fromkeys(host_moids))
    vmk = inventory.vmkernel
    rows = vmk[vmk["host_moid"].isin(moids)].copy()
    rows["_order"] = rows["host_moid"].map(moids.index)
    rows = rows.sort_values(["_order", "device"]).drop(columns="_order")
    rows["uplinks"] = [_uplink_words(network, m, pg) for m, pg in zip(rows["host_moid"], rows["port_group"])]
    return rows[ADAPTER_COLUMNS].reset_index(drop=True)


def _uplinks(network: Mapping[str, HostNetwork] | None, moid: str, port_group: Any) -> tuple[str, ...] | None:
    """The port group's uplinks, or None when unknown (no network read, a distributed port group)."""
    net = (network or {}).get(moid)
    if net is None or not port_group or port_group not in net.uplinks:
        return None
    return tuple(net.uplinks[port_group])


def _uplink_words(network: Mapping[str, HostNetwork] | None, moid: str, port_group: Any) -> str:
    nics = _uplinks(network, moid, port_group)
    return "unknown" if nics is None else (", ".join(nics) or "none")


# ----- planning (pure) -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdapterChange:
    """One line of the plan: on this host, this adapter, enable / disable / nothing (and why)."""

    host: str
    host_moid: str
    adapter: str | None
    action: str  # "enable" | "disable" | "none"
    services: tuple[str, ...] = ()  # the adapter's services now
    note: str = ""

    @property
    def changes(self) -> bool:
        return self.action != NONE

    def words(self, done: bool = False) -> str:
        if not self.changes:
            return f"{self.host}: {self.note}"
        verb = {ENABLE: "enabled" if done else "enable", DISABLE: "disabled" if done else "disable"}[self.action]
        return f"{verb} vMotion on {self.adapter} of {self.host}"


@dataclass(frozen=True)
class VmotionPlan:
    """What a run will do on every chosen host; built by :func:`plan_vmotion`, valid as a whole."""

    disable: bool
    vmk: str
    changes: tuple[AdapterChange, ...]

    @property
    def pending(self) -> tuple[AdapterChange, ...]:
        return tuple(c for c in self.changes if c.changes)

    @property
    def host_moids(self) -> list[str]:
        return list(dict.fromkeys(c.host_moid for c in self.changes))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([[c.host, c.adapter or "-", c.action, ", ".join(c.services), c.note]
                             for c in self.changes], columns=PLAN_COLUMNS)

    def describe(self, applied: bool = False) -> str:
        """One sentence: what would change (dry run) or what changed, and what was already so."""
        pending, same = self.pending, [c for c in self.changes if not c.changes]
        already = f"{len(same)} host{'' if len(same) == 1 else 's'} already so" if pending and same else ""
        if not pending:
            return "nothing to change: " + "; ".join(c.words() for c in same)
        done = ", ".join(c.words(done=applied) for c in pending)
        if applied:
            return done + (f"; {already}" if already else "")
        return ("would " + done + (f"; {already}" if already else "")
                + "; nothing changed (apply to make the change)")


def plan_vmotion(inventory: Any, *, cluster: str = "", hosts: Sequence[str] | str = (), vmk: str = "",
                 disable: bool = False, network: Mapping[str, HostNetwork] | None = None) -> VmotionPlan:
    """Which adapter of which host to change; raise one :class:`BadInput` naming every problem.

    Enabling without ``vmk`` leaves a host that already has a vMotion adapter alone and otherwise picks its
    management adapter; disabling without ``vmk`` deselects every vMotion adapter. Refused (nothing may
    change on any host): a host disconnected or in maintenance mode, an adapter the host does not have,
    no single management adapter to default to, enabling on a port group without uplinks, a host with
    neither a virtual NIC manager nor a vMotion system. ``network`` (from :func:`read_host_network`) adds
    the uplink and manager checks; without it they are skipped.
    """
    chosen = select_hosts(inventory, cluster, hosts)
    vmk = (vmk or "").strip()
    changes: list[AdapterChange] = []
    problems: list[str] = []
    for _, host in chosen.iterrows():
        name, moid = str(host["name"]), str(host["moid"])
        state = _state_problem(host)
        if state:
            problems.append(state)
            continue
        rows, problem = _host_changes(inventory, host, vmk, disable, network)
        if problem:
            problems.append(problem)
            continue
        net = (network or {}).get(moid)
        if net is not None and any(r.changes for r in rows) and not (net.nic_manager or net.vmotion_system):
            problems.append(f"host {name} has neither a virtual NIC manager nor a vMotion system: change its "
                            f"vMotion adapter in the vSphere Client (Configure > VMkernel adapters)")
            continue
        changes.extend(rows)
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} hosts cannot be changed: " + "; ".join(problems)
        raise BadInput(f"{head}; nothing was changed on any host")
    return VmotionPlan(disable=bool(disable), vmk=vmk, changes=tuple(changes))


def _state_problem(host: pd.Series) -> str | None:
    name, state = host["name"], str(host.get("connection_state"))
    if state != "connected":
        return (f"host {name} is {state}: reconnect it in vCenter (Connection > Connect) "
                f"or leave it out (name the other hosts with --host)")
    if bool(host.get("maintenance")):
        return (f"host {name} is in maintenance mode: exit maintenance mode "
                f"or leave it out (name the other hosts with --host)")
    return None


def _host_changes(inventory: Any, host: pd.Series, vmk: str, disable: bool,
                  network: Mapping[str, HostNetwork] | None) -> tuple[list[AdapterChange], str | None]:
    name, moid = str(host["name"]), str(host["moid"])
    table = inventory.vmkernel
    adapters = table[table["host_moid"] == moid]
    devices = [str(d) for d in adapters["device"]]
    services = {str(r["device"]): tuple(_strings(r["services"])) for _, r in adapters.iterrows()}
    vmotion = [d for d in devices if NIC_TYPE in services[d]]
    listing = f"its adapters: {', '.join(devices)}" if devices else "it has none"

    def row(device: str | None, action: str, note: str = "") -> AdapterChange:
        return AdapterChange(name, moid, device, action, services.get(device, ()) if device else (), note)

    if vmk:
        if vmk not in devices:
            return [], f"host {name} has no VMkernel adapter {vmk} ({listing}); give one of them with --vmk"
        picked = vmk
    elif disable:
        if not vmotion:
            return [row(None, NONE, "no adapter carries vMotion")], None
        return [row(d, DISABLE) for d in vmotion], None
    elif vmotion:
        return [row(d, NONE, f"vMotion already enabled on {d}") for d in vmotion], None
    else:
        management = [d for d in devices if "management" in services[d]]
        if len(management) != 1:
            why = "no management adapter" if not management else f"{len(management)} management adapters"
            return [], f"host {name} has {why} to default to ({listing}); name the adapter with --vmk"
        picked = management[0]

    if disable:
        if picked not in vmotion:
            return [row(picked, NONE, f"vMotion is not enabled on {picked}")], None
        return [row(picked, DISABLE)], None
    if picked in vmotion:
        return [row(picked, NONE, f"vMotion already enabled on {picked}")], None
    port_group = adapters[adapters["device"] == picked].iloc[0]["port_group"]
    if _uplinks(network, moid, port_group) == ():
        others = [d for d in devices if d != picked
                  and _uplinks(network, moid, adapters[adapters["device"] == d].iloc[0]["port_group"]) != ()]
        alt = (f"or name an adapter with uplinks with --vmk ({', '.join(others)})" if others
               else "or add a VMkernel adapter on a port group with uplinks")
        return [], (f"host {name}: adapter {picked} is on port group {port_group!r}, which has no uplinks (its vSwitch "
                    f"has no physical NIC), so vMotion traffic could not leave the host; add an uplink to the "
                    f"vSwitch {alt}")
    return [row(picked, ENABLE)], None


def _strings(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# ----- acting ----------------------------------------------------------------------------------------

def apply_vmotion(si: vim.ServiceInstance, plan: VmotionPlan,
                  network: Mapping[str, HostNetwork]) -> list[AdapterChange]:
    """Make the plan's pending changes, host by host; return those made.

    A vSphere fault stops the run with a :class:`RunbookError` that names what was already changed.
    """
    done: list[AdapterChange] = []
    for change in plan.pending:
        net = network.get(change.host_moid) or HostNetwork(change.host_moid, {})
        try:
            _select(si, net, change)
        except vmodl.MethodFault as exc:
            made = ", ".join(c.words(done=True) for c in done) or "nothing"
            raise RunbookError(
                f"could not {change.action} vMotion on {change.adapter} of host {change.host}: "
                f"{type(exc).__name__.split('.')[-1]}: {getattr(exc, 'msg', '') or exc}; already done: {made}"
            ) from None
        log.info("%s", change.words(done=True))
        done.append(change)
    return done


def _select(si: vim.ServiceInstance, net: HostNetwork, change: AdapterChange) -> None:
    if net.nic_manager is not None:
        manager = vim.host.VirtualNicManager(net.nic_manager._moId, si._stub)
        if change.action == ENABLE:
            manager.SelectVnicForNicType(nicType=NIC_TYPE, device=change.adapter)
        else:
            manager.DeselectVnicForNicType(nicType=NIC_TYPE, device=change.adapter)
        return
    system = vim.host.VMotionSystem(net.vmotion_system._moId, si._stub)
    if change.action == ENABLE:
        system.SelectVnic(device=change.adapter)
    else:
        system.DeselectVnic()


# ----- the whole remedy ------------------------------------------------------------------------------

class VmotionRemediation:
    """Read, plan, apply (or not), re-read: what the notebook and the CLI run, step by step.

    ``read()`` gives the before table; ``plan()`` validates every host (BadInput, nothing changed);
    ``run(apply)`` makes the changes when ``apply`` and re-reads (the after table) in any case.
    """

    def __init__(self, si: vim.ServiceInstance, *, cluster: str = "", hosts: Sequence[str] | str = (),
                 vmk: str = "", disable: bool = False):
        self.si, self.cluster, self.vmk, self.disable = si, cluster or "", vmk or "", bool(disable)
        self.hosts = [hosts] if isinstance(hosts, str) and hosts else list(hosts or [])
        self.inventory: Inventory | None = None
        self.network: dict[str, HostNetwork] = {}
        self.host_moids: list[str] = []
        self.before: pd.DataFrame | None = None
        self.after: pd.DataFrame | None = None
        self.vmotion_plan: VmotionPlan | None = None
        self.applied = False
        self.done: list[AdapterChange] = []

    def read(self) -> pd.DataFrame:
        """The chosen hosts' VMkernel adapters as they are now."""
        self.inventory = read_inventory(self.si)
        chosen = select_hosts(self.inventory, self.cluster, self.hosts)
        self.host_moids = chosen["moid"].tolist()
        self.network = read_host_network(self.si, self.host_moids)
        self.before = adapter_table(self.inventory, self.host_moids, self.network)
        return self.before

    def plan(self) -> VmotionPlan:
        if self.inventory is None:
            self.read()
        self.vmotion_plan = plan_vmotion(self.inventory, cluster=self.cluster, hosts=self.hosts, vmk=self.vmk,
                                         disable=self.disable, network=self.network)
        return self.vmotion_plan

    def run(self, apply: bool = False) -> pd.DataFrame:
        """Apply the plan when ``apply``; re-read the adapters either way and return them (after)."""
        plan = self.vmotion_plan or self.plan()
        if apply:
            self.done = apply_vmotion(self.si, plan, self.network)
            self.applied = True
        inventory = read_inventory(self.si)
        self.after = adapter_table(inventory, self.host_moids, read_host_network(self.si, self.host_moids))
        if apply:
            self._verify()
        return self.after

    def _verify(self) -> None:
        wrong = [c for c in self.done if (NIC_TYPE in self._services(self.after, c)) != (c.action == ENABLE)]
        if wrong:
            raise RunbookError("vCenter does not report the change: " + ", ".join(c.words() for c in wrong)
                               + "; look at the host's VMkernel adapters in the vSphere Client")

    @staticmethod
    def _services(table: pd.DataFrame | None, change: AdapterChange) -> list[str]:
        if table is None or change.adapter is None:
            return []
        rows = table[(table["host"] == change.host) & (table["device"] == change.adapter)]
        return _strings(rows.iloc[0]["services"]) if len(rows) else []

    @staticmethod
    def _vmotion_adapters(table: pd.DataFrame | None, host: str) -> list[str] | None:
        if table is None:
            return None
        rows = table[(table["host"] == host) & table["vmotion"].astype(bool)]
        return [str(d) for d in rows["device"]]

    # -- the record ----------------------------------------------------------------------------------
    @property
    def outcome(self) -> str:
        if not self.applied:
            return "DRY RUN"
        return "SUCCEEDED" if self.done else "NO CHANGE"

    @property
    def summary(self) -> str:
        plan = self.vmotion_plan
        return plan.describe(applied=self.applied) if plan else ""

    def host_records(self) -> list[dict[str, Any]]:
        """Per host and adapter: the change, the adapter's services before and after, the vMotion adapters."""
        plan = self.vmotion_plan
        return [{"host": c.host, "host_moid": c.host_moid, "adapter": c.adapter, "change": c.action,
                 "applied": c in self.done, "before": self._services(self.before, c),
                 "after": self._services(self.after, c) if self.after is not None else None,
                 "vmotion_adapters_before": self._vmotion_adapters(self.before, c.host),
                 "vmotion_adapters_after": self._vmotion_adapters(self.after, c.host), "note": c.note}
                for c in (plan.changes if plan else ())]

    def figures(self) -> list[tuple[str, str]]:
        plan = self.vmotion_plan
        pending = plan.pending if plan else ()
        verb = "disable" if self.disable else "enable"
        changed = self.done if self.applied else pending
        return [("Hosts", f"{len(self.host_moids)} ({len(pending)} to change)"),
                ("Adapter", self.vmk or ("the vMotion adapters" if self.disable else "the management adapter")),
                ("Service", f"vMotion: {verb}"),
                ("Changed" if self.applied else "Would change",
                 ", ".join(f"{c.host}: {c.adapter}" for c in changed) or "nothing")]
