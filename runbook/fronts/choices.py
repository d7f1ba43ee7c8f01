"""What the migration wizard offers, step by step: the choices of the vSphere *Migrate* wizard as plain data.

:class:`Choices` holds one inventory read and the operator's picks (cluster, VM, move kind, target host,
target datastore, disk format). Each ``*_options()`` method lists what may be picked next as
``(label, value)`` pairs; :meth:`Choices.choose` records a pick and clears every pick below it (and the
checks made for the old plan); :meth:`Choices.plan` turns a complete set of picks into a
:class:`~runbook.plan.MigrationPlan`. Nothing here needs a kernel or a vCenter: ``runbook.widgets``
draws it with ipywidgets, the tests drive it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from runbook.domain import checks as checks_mod
from runbook.domain.checks.base import FAIL, WARN
from runbook.errors import RunbookError
from runbook.vsphere.inventory import Inventory
from runbook.domain.plan import MigrationPlan, resolve

#: The picks, top to bottom: changing one clears those after it.
STEPS = ("cluster", "vm", "kind", "host", "datastore", "disk_format")
KIND_LABELS = {"host": "Change host", "datastore": "Change datastore", "both": "Change both"}
FORMAT_LABELS = {"same": "Same format as source", "thin": "Thin provision",
                 "thick": "Thick provision lazy zeroed", "eagerzeroedthick": "Thick provision eager zeroed"}
NO_CLUSTER = "(hosts outside a cluster)"
_STORAGE_ONLY_CHECKS = {"shared storage"}  # a host verdict when storage moves too must not count these
_HINTS = {"cluster": "choose a cluster", "vm": "choose the VM to move",
          "kind": "choose the migration type: change host, datastore or both",
          "host": "choose the target host", "datastore": "choose the target datastore",
          "disk_format": "choose the disk format"}

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
    """The wizard's state over one inventory read; values are moids (names for the kind and format)."""

    inventory: Inventory
    plan_options: dict[str, Any] = field(default_factory=dict)  # priority, resource_pool, network_map
    check_settings: Optional[checks_mod.CheckSettings] = None
    cluster: Optional[str] = None
    vm: Optional[str] = None
    kind: Optional[str] = None
    host: Optional[str] = None
    datastore: Optional[str] = None
    disk_format: Optional[str] = None
    vm_filter: str = ""
    checks: Optional[pd.DataFrame] = None  # the checks of the current plan (None: not checked yet)
    busy: bool = False  # a check or a move is running

    # -- picking -----------------------------------------------------------------------------------------
    def choose(self, step: str, value: Optional[str]) -> list[str]:
        """Record ``value`` for ``step``; clear every later step that was set. Returns the steps cleared."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; one of {', '.join(STEPS)}")
        value = value or None
        if getattr(self, step) == value:
            return []
        setattr(self, step, value)
        cleared = [s for s in STEPS[STEPS.index(step) + 1:] if getattr(self, s) is not None]
        for later in STEPS[STEPS.index(step) + 1:]:
            setattr(self, later, None)
        self.checks = None
        return cleared

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
        return True

    def next_step(self) -> Optional[str]:
        """The first step still to pick, or None when the plan is complete."""
        for step in STEPS:
            if self.needed(step) and getattr(self, step) is None:
                return step
        return None

    def hint(self) -> str:
        step = self.next_step()
        return f"Next: {_HINTS[step]}." if step else "Ready: press Check."

    # -- options -----------------------------------------------------------------------------------------
    def cluster_options(self) -> list[Option]:
        out = [(f"{r['name']} ({r['datacenter']}, {int(r['host_count'])} hosts)", str(r["moid"]))
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
        try:
            df = checks_mod.run_checks(self.inventory, self._plan(host=host_moid, datastore=None, disk_format="same"),
                                       self.check_settings)
        except RunbookError as exc:
            return f"✖ {exc}"
        if self.kind == "both":
            df = df[~df["check"].isin(_STORAGE_ONLY_CHECKS)]
        return verdict_mark(df)

    def run_host_moid(self) -> Optional[str]:
        """The host that will run the VM: the target host, or its current host when only storage moves."""
        if self.kind == "datastore":
            return str(self._vm_row()["host_moid"]) if self.vm else None
        return self.host

    def datastore_options(self) -> list[Option]:
        """Datastores the host that will run the VM mounts (accessible ones), with their free space."""
        host_moid = self.run_host_moid()
        if not self.vm or not self.needed("datastore") or host_moid is None:
            return []
        host = self.inventory.hosts[self.inventory.hosts["moid"] == host_moid].iloc[0]
        mounted = set(_names(host["datastores"]))
        current = set(_names(self._vm_row()["datastores"]))
        ds = self.inventory.datastores
        ds = ds[ds["name"].isin(mounted) & ds["accessible"].astype(bool)]
        out = []
        for _, r in ds.sort_values("name").iterrows():
            label = (f"{r['name']}  ({r['type']}, {gib(r['free_bytes'])} free of {gib(r['capacity_bytes'])})"
                     + ("  · holds the VM now" if r["name"] in current else ""))
            out.append((label, str(r["moid"])))
        return out

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

    # -- the result ----------------------------------------------------------------------------------------
    def _vm_row(self) -> pd.Series:
        return self.inventory.vms[self.inventory.vms["moid"] == self.vm].iloc[0]

    def vm_details(self) -> dict[str, Any]:
        """The chosen VM as the wizard shows it: host, datastores, disks, IP, power state."""
        if not self.vm:
            return {}
        r = self._vm_row()
        disks = [f"{d['label']}: {d['datastore']} ({d['format']}, {gib(d['capacity_bytes'])})"
                 for d in (r["disks"] or [])]
        return {"VM": f"{r['name']} ({r['moid']})", "Power": str(r["power_state"]), "Host": r["host"],
                "Datastores": ", ".join(_names(r["datastores"])), "Disks": "; ".join(disks) or "none",
                "IP": r["guest_ip"] or "none reported"}

    def _plan(self, **override: Any) -> MigrationPlan:
        picks = {"host": self.host, "datastore": self.datastore, "disk_format": self.disk_format, **override}
        return MigrationPlan(vm=self.vm, target_host=picks["host"], target_datastore=picks["datastore"],
                             disk_format=picks["disk_format"] or "same", **self.plan_options)

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


def vm_label(r: pd.Series) -> str:
    """``web-01 · poweredOn · esx-01.lab.local · nfs-01 · 127.0.0.2``: what an operator picks a VM by."""
    return " · ".join([str(r["name"]), str(r["power_state"]), str(r["host"]),
                       ", ".join(_names(r["datastores"])) or "-", str(r["guest_ip"] or "no IP")])
