"""What the migration wizard offers, step by step: the choices of the vSphere *Migrate* wizard as plain data.

:class:`Choices` holds one inventory read and the operator's picks (cluster, VM, move kind, target host,
target datastore, disk format), then the network step (a port group for each one the target host lacks)
and the advanced picks (change id, priority, resource pool, a datastore and format per disk). Each
``*_options()`` method lists what may be picked next as ``(label, value)`` pairs, hosts and datastores
labelled with the verdict of the checks; the only choice of a list is picked at once, and the disk format
starts as "same". :meth:`Choices.choose` records a pick and clears every pick below it (and the checks
made for the old plan); :meth:`Choices.plan` turns a complete set of picks into a
:class:`~runbook.plan.MigrationPlan`. Nothing here needs a kernel or a vCenter: ``runbook.fronts.widgets``
draws it with ipywidgets, the tests drive it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from runbook.domain import checks as checks_mod
from runbook.domain.checks.base import FAIL, WARN, plural
from runbook.domain.checks.storage import DISK_FORMAT, FREE_SPACE, SHARED_STORAGE, TARGET_DATASTORE
from runbook.domain.checks.vm import PORT_GROUPS
from runbook.errors import RunbookError
from runbook.vsphere.devices import display_name
from runbook.vsphere.inventory import Inventory
from runbook.domain.plan import MigrationPlan, resolve

#: The picks, top to bottom: changing one clears those after it.
STEPS = ("cluster", "vm", "kind", "host", "datastore", "disk_format")
KIND_LABELS = {"host": "Change host", "datastore": "Change datastore", "both": "Change both"}
FORMAT_LABELS = {"same": "Same format as source", "thin": "Thin provision",
                 "thick": "Thick provision lazy zeroed", "eagerzeroedthick": "Thick provision eager zeroed"}
NO_CLUSTER = "(hosts outside a cluster)"
_STORAGE_ONLY_CHECKS = {SHARED_STORAGE}  # a host verdict when storage moves too must not count these
_STORAGE_CHECKS = {SHARED_STORAGE, TARGET_DATASTORE, FREE_SPACE, DISK_FORMAT}  # a datastore's verdict
PRIORITY_LABELS = {"default": "Schedule with normal priority", "high": "Schedule with high priority",
                   "low": "Schedule with low priority"}
KEEP = ""  # the value of "keep as it is" in the resource pool and per-disk pickers
_HINTS = {"cluster": "choose a cluster", "vm": "choose the VM to move",
          "kind": "choose the migration type: change host, datastore or both",
          "host": "choose the target host", "datastore": "choose the target datastore",
          "disk_format": "choose the disk format",
          "network": "pick a port group of the target host for each network it lacks"}

Option = tuple[str, str]


def gib(n: Any) -> str:
    return "?" if n is None or pd.isna(n) else f"{float(n) / 2**30:,.1f} GiB"


def _names(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return [str(v) for v in value]


def verdict_mark(df: pd.DataFrame) -> str:
    """A short verdict for an option label: "✔ checks pass", "⚠ 1 warning: ...", "✖ fails: ..."."""
    fails = df[df["status"] == FAIL]["check"].tolist()
    warns = df[df["status"] == WARN]["check"].tolist()
    if fails:
        return "✖ fails: " + ", ".join(fails)
    if warns:
        return f"⚠ {len(warns)} warning{'s' if len(warns) > 1 else ''}: " + ", ".join(warns)
    return "✔ checks pass"


@dataclass
class Choices:
    """The wizard's state over one inventory read; values are moids (names for the kind, format and port groups)."""

    inventory: Inventory
    plan_options: dict[str, Any] = field(default_factory=dict)  # the notebook's priority, resource_pool, network_map
    check_settings: Optional[checks_mod.CheckSettings] = None
    cluster: Optional[str] = None
    vm: Optional[str] = None
    kind: Optional[str] = None
    host: Optional[str] = None
    datastore: Optional[str] = None
    disk_format: Optional[str] = None
    vm_filter: str = ""
    network: dict[str, str] = field(default_factory=dict)  # the network step: port group now -> on the target
    resource_pool: str = KEEP  # a pool's moid, or KEEP
    disks: dict[str, tuple[str, str]] = field(default_factory=dict)  # disk label -> (datastore moid or KEEP, format)
    checks: Optional[pd.DataFrame] = None  # the checks of the current plan (None: not checked yet)
    busy: bool = False  # a check or a move is running

    def __post_init__(self) -> None:
        self._autofill(None)

    # -- picking -----------------------------------------------------------------------------------------
    def choose(self, step: str, value: Optional[str]) -> list[str]:
        """Record ``value`` for ``step``; clear every later step that was set (and the network, pool and
        per-disk picks, which depend on them), then pick any step left with one choice. Returns the steps
        cleared."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; one of {', '.join(STEPS)}")
        value = value or None
        if getattr(self, step) == value:
            return []
        setattr(self, step, value)
        cleared = [s for s in STEPS[STEPS.index(step) + 1:] if getattr(self, s) is not None]
        for later in STEPS[STEPS.index(step) + 1:]:
            setattr(self, later, None)
        if step != "disk_format":
            self.network, self.resource_pool, self.disks = {}, KEEP, {}
        self.checks = None
        self._autofill(step)
        options = [v for _, v in self.network_options()]
        if len(options) == 1:  # the only port group there is
            self.network = {group: options[0] for group in self.missing_port_groups()}
        return cleared

    def _autofill(self, after: Optional[str]) -> None:
        """Pick the only choice of each next list (and "same" as the disk format), top down, as far as it goes."""
        for step in STEPS[0 if after is None else STEPS.index(after) + 1:]:
            if not self.needed(step) or getattr(self, step) is not None:
                continue
            values = [v for _, v in self.options(step)]
            if len(values) == 1:
                setattr(self, step, values[0])
            elif step == "disk_format" and "same" in values:
                self.disk_format = "same"
            else:
                return

    def filter_vms(self, text: str) -> list[str]:
        """Show only VMs whose name, host, IP or datastores contain ``text``; a hidden VM is un-chosen."""
        self.vm_filter = text or ""
        if self.vm and self.vm not in [v for _, v in self.vm_options()]:
            return ["vm", *self.choose("vm", None)]
        return []

    def needed(self, step: str) -> bool:
        """Whether ``step`` applies to the move kind chosen (a host-only move has no datastore or format)."""
        if step == "host":
            return self.kind in ("host", "both")
        if step in ("datastore", "disk_format"):
            return self.kind in ("datastore", "both")
        if step == "network":
            return bool(self.missing_port_groups())
        return True

    def next_step(self) -> Optional[str]:
        """The first step still to pick, or None when the plan is complete."""
        for step in STEPS:
            if self.needed(step) and getattr(self, step) is None:
                return step
        if any(pg not in self.network_map() for pg in self.missing_port_groups()):
            return "network"
        return None

    def hint(self) -> str:
        step = self.next_step()
        if step:
            return f"Next: {_HINTS[step]}."
        if self.busy:
            return "Running: its progress shows below."
        if self.checks is None:
            return "Ready: press Check."
        if self.failed_checks():
            return "Checks failed: fix them (see their remedies), or type a reason to force the move."
        return "Checked: press Migrate, or change a pick."

    # -- options -----------------------------------------------------------------------------------------
    def cluster_options(self) -> list[Option]:
        out = [(f"{r['name']} ({r['datacenter']}, {plural(int(r['host_count']), 'host')})", str(r["moid"]))
               for _, r in self.inventory.clusters.sort_values("name").iterrows()]
        if self.inventory.vms["cluster"].isna().any():
            out.append((NO_CLUSTER, NO_CLUSTER))
        return out

    def _cluster_vms(self) -> pd.DataFrame:
        vms = self.inventory.vms
        if self.cluster is None:
            return vms.iloc[0:0]
        if self.cluster == NO_CLUSTER:
            return vms[vms["cluster"].isna()]
        row = self.inventory.clusters[self.inventory.clusters["moid"] == self.cluster].iloc[0]
        return vms[(vms["cluster"] == row["name"]) & (vms["datacenter"] == row["datacenter"])]

    def vm_options(self) -> list[Option]:
        """The cluster's VMs (filtered), each labelled with where it runs and its IP and power state."""
        text = self.vm_filter.strip().lower()
        out = []
        for _, r in self._cluster_vms().sort_values("name").iterrows():
            label = vm_label(r)
            if text and text not in label.lower():
                continue
            out.append((label, str(r["moid"])))
        return out

    def kind_options(self) -> list[Option]:
        return [(label, kind) for kind, label in KIND_LABELS.items()] if self.vm else []

    def host_options(self) -> list[Option]:
        """Other hosts of the VM's datacenter, each labelled with the verdict of the local checks."""
        if not self.vm or not self.needed("host"):
            return []
        vm = self._vm_row()
        hosts = self.inventory.hosts
        hosts = hosts[(hosts["datacenter"] == vm["datacenter"]) & (hosts["moid"] != vm["host_moid"])]
        return [(f"{r['name']}  {self.host_verdict(str(r['moid']))}", str(r["moid"]))
                for _, r in hosts.sort_values("name").iterrows()]

    def host_verdict(self, host_moid: str) -> str:
        """The local checks' verdict on moving there; a missing port group is left to the network step."""
        try:
            df = checks_mod.run_checks(self.inventory, self._plan(host=host_moid, datastore=None, disk_format="same"),
                                       self.check_settings)
        except RunbookError as exc:
            return f"✖ {exc}"
        if self.kind == "both":
            df = df[~df["check"].isin(_STORAGE_ONLY_CHECKS)]
        lacks = bool(self.missing_port_groups(host_moid))
        mark = verdict_mark(df[df["check"] != PORT_GROUPS] if lacks else df)
        return mark + ("  · needs a network mapping" if lacks else "")

    def run_host_moid(self) -> Optional[str]:
        """The host that will run the VM: the target host, or its current host when only storage moves."""
        if self.kind == "datastore":
            return str(self._vm_row()["host_moid"]) if self.vm else None
        return self.host

    def _mounted(self) -> pd.DataFrame:
        """The accessible datastores the host that will run the VM mounts, by name."""
        host = self.inventory.hosts[self.inventory.hosts["moid"] == self.run_host_moid()].iloc[0]
        ds = self.inventory.datastores
        return ds[ds["name"].isin(set(_names(host["datastores"]))) & ds["accessible"].astype(bool)].sort_values("name")

    def datastore_options(self) -> list[Option]:
        """Datastores the host that will run the VM mounts (accessible ones), with their free space and the
        verdict of the storage checks (e.g. "✖ fails: free space on the target datastore")."""
        if not self.vm or not self.needed("datastore") or self.run_host_moid() is None:
            return []
        current = set(_names(self._vm_row()["datastores"]))
        return [(f"{r['name']}  ({r['type']}, {gib(r['free_bytes'])} free of {gib(r['capacity_bytes'])})"
                 + ("  · holds the VM now" if r["name"] in current else "")
                 + f"  {verdict_mark(self.datastore_checks(str(r['moid'])))}", str(r["moid"]))
                for _, r in self._mounted().iterrows()]

    def datastore_checks(self, ds_moid: str) -> pd.DataFrame:
        """The storage checks of moving the VM's files and disks to ``ds_moid`` (with the current picks)."""
        host = self.host if self.needed("host") else None
        try:
            df = checks_mod.run_checks(self.inventory, self._plan(host=host, datastore=ds_moid,
                                                                  disk_format=self.disk_format or "same"),
                                       self.check_settings)
        except RunbookError as exc:
            return checks_mod.results_frame([checks_mod.CheckResult(TARGET_DATASTORE, FAIL, str(exc))])
        return df[df["check"].isin(_STORAGE_CHECKS)]

    def datastore_problem(self) -> str:
        """Why the picked datastore fails its checks, with the remedy ("" when it passes)."""
        if not self.datastore or not self.needed("datastore"):
            return ""
        bad = self.datastore_checks(self.datastore)
        bad = bad[bad["status"] == FAIL]
        return " ".join(f"✖ {r.check}: {r.found}." + (f" Remedy: {r.remedy}." if r.remedy else "")
                        for r in bad.itertuples(index=False))

    def format_options(self) -> list[Option]:
        """The disk formats; only "same" when every disk already sits on the chosen datastore (vCenter changes
        a format only when it copies the disk)."""
        if not self.needed("disk_format") or self.datastore is None:
            return []
        target = self.inventory.datastores[self.inventory.datastores["moid"] == self.datastore]
        name = str(target.iloc[0]["name"]) if len(target) else None
        disks = [d for d in (self._vm_row().get("disks") or [])]
        if name and disks and all(d.get("datastore") == name for d in disks):
            return [(FORMAT_LABELS["same"] + " (the disks stay on this datastore)", "same")]
        return [(label, fmt) for fmt, label in FORMAT_LABELS.items()]

    def options(self, step: str) -> list[Option]:
        return getattr(self, {"disk_format": "format"}.get(step, step) + "_options")()

    # -- the network step ------------------------------------------------------------------------------
    def missing_port_groups(self, host_moid: Optional[str] = None) -> list[str]:
        """The port groups the VM's NICs use that the target host (``host_moid``: that host) lacks."""
        host_moid = host_moid or (self.host if self.needed("host") else None)
        if not self.vm or host_moid is None:
            return []
        host = self.inventory.hosts[self.inventory.hosts["moid"] == host_moid].iloc[0]
        there = set(_names(host["port_groups"]))
        return sorted({str(n["port_group"]) for n in self._vm_row()["nics"] or []
                       if n.get("port_group") and n["port_group"] not in there})  # a NIC on no network needs none

    def nics_on(self, port_group: str) -> list[str]:
        """The VM's NICs on ``port_group``, named as an admin knows them."""
        return [device_name(n) for n in self._vm_row()["nics"] or [] if n["port_group"] == port_group]

    def network_options(self) -> list[Option]:
        """The target host's port groups (what a lacking one may be mapped to)."""
        if not self.missing_port_groups():
            return []
        host = self.inventory.hosts[self.inventory.hosts["moid"] == self.host].iloc[0]
        return [(name, name) for name in sorted(_names(host["port_groups"]))]

    def choose_network(self, old: str, new: Optional[str]) -> None:
        """Map port group ``old`` to ``new`` on the target host (None: unmap)."""
        if new:
            self.network[old] = new
        else:
            self.network.pop(old, None)
        self.checks = None

    def network_map(self) -> dict[str, str]:
        """The notebook's network_map with the network step's picks over it."""
        return {**(self.plan_options.get("network_map") or {}), **self.network}

    # -- advanced: resource pool, per-disk placement -------------------------------------------------------
    def pool_options(self) -> list[Option]:
        """Keep the pool, or one of the pools of the host that will run the VM (its cluster's)."""
        if not self.vm or not self.kind or self.run_host_moid() is None:
            return []
        host = self.inventory.hosts[self.inventory.hosts["moid"] == self.run_host_moid()].iloc[0]
        pools = self.inventory.pools
        pools = pools[pools["owner_moid"] == host["compute_resource_moid"]].sort_values(["root", "name"],
                                                                                       ascending=[False, True])
        return [("(keep it)", KEEP)] + [(f"{r['name']}" + (" (root pool)" if r["root"] else ""), str(r["moid"]))
                                        for _, r in pools.iterrows()]

    def vm_disks(self) -> list[dict[str, Any]]:
        return list(self._vm_row()["disks"] or []) if self.vm else []

    def disk_datastore_options(self) -> list[Option]:
        """Per disk: with the VM's files (the target datastore, or where it is), or a datastore of its own."""
        if not self.vm or not self.needed("datastore") or self.run_host_moid() is None:
            return []
        return [("(with the VM)", KEEP)] + [(f"{r['name']}  ({gib(r['free_bytes'])} free)", str(r["moid"]))
                                            for _, r in self._mounted().iterrows()]

    def choose_disk(self, label: str, datastore: Optional[str], disk_format: Optional[str] = "same") -> None:
        """Place one disk (by its label) on ``datastore`` in ``disk_format``; KEEP: with the VM (no placement)."""
        if datastore:
            self.disks[label] = (datastore, disk_format or "same")
        else:
            self.disks.pop(label, None)
        self.checks = None

    def choose_pool(self, moid: Optional[str]) -> None:
        self.resource_pool = moid or KEEP
        self.checks = None

    # -- the result ----------------------------------------------------------------------------------------
    def _vm_row(self) -> pd.Series:
        return self.inventory.vms[self.inventory.vms["moid"] == self.vm].iloc[0]

    def vm_details(self) -> dict[str, Any]:
        """The chosen VM as the wizard shows it: host, datastores, disks, IP, power state."""
        if not self.vm:
            return {}
        r = self._vm_row()
        disks = [f"{device_name(d)}: {d['datastore']} ({d['format']}, {gib(d['capacity_bytes'])})"
                 for d in (r["disks"] or [])]
        return {"VM": f"{r['name']} ({r['moid']})", "Power": str(r["power_state"]), "Host": r["host"],
                "Datastores": ", ".join(_names(r["datastores"])), "Disks": "; ".join(disks) or "none",
                "IP": r["guest_ip"] or "none reported"}

    def _plan(self, **override: Any) -> MigrationPlan:
        picks = {"host": self.host, "datastore": self.datastore, "disk_format": self.disk_format, **override}
        options = {**self.plan_options, "network_map": self.network_map()}
        if self.resource_pool:
            options["resource_pool"] = self.resource_pool
        if self.disks and picks["datastore"]:
            options["disk_placement"] = dict(self.disks)
        return MigrationPlan(vm=self.vm, target_host=picks["host"], target_datastore=picks["datastore"],
                             disk_format=picks["disk_format"] or "same", **options)

    def complete(self) -> bool:
        return self.next_step() is None

    def plan(self) -> Optional[MigrationPlan]:
        """The plan the picks make, or None while a step is missing."""
        if not self.complete():
            return None
        keep = {"host": self.host if self.needed("host") else None,
                "datastore": self.datastore if self.needed("datastore") else None,
                "disk_format": self.disk_format if self.needed("disk_format") else "same"}
        return self._plan(**keep)

    def describe(self) -> str:
        """The plan in words, e.g. ``web-01: host esx-01 -> esx-02``, via the same resolver the move uses."""
        plan = self.plan()
        return resolve(self.inventory, plan).summary() if plan else ""

    # -- enabling ------------------------------------------------------------------------------------------
    def can_check(self) -> bool:
        return self.complete() and not self.busy

    def failed_checks(self) -> list[str]:
        return checks_mod.failed(self.checks) if self.checks is not None else []

    def can_migrate(self, force_reason: str = "") -> bool:
        """Checked for the current picks, not busy, and nothing failed (or a reason to force is typed)."""
        if self.busy or self.checks is None or not self.complete():
            return False
        return not self.failed_checks() or bool(force_reason.strip())


def device_name(device: dict[str, Any]) -> str:
    """A disk or NIC as an admin knows it: "Hard disk 1 (web-01.vmdk)", "Network adapter 1 (00:50:56:...)"."""
    return display_name(device)


def vm_label(r: pd.Series) -> str:
    """``web-01 · poweredOn · esx-01.lab.local · nfs-01 · 127.0.0.2``: what an operator picks a VM by."""
    return " · ".join([str(r["name"]), str(r["power_state"]), str(r["host"]),
                       ", ".join(_names(r["datastores"])) or "-", str(r["guest_ip"] or "no IP")])
