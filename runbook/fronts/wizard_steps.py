"""The wizard's later steps as widgets: the network step and the "Advanced" section.

:class:`NetworkStep` shows a drop-down of the target host's port groups for each port group of the VM the
target host lacks (and nothing when none is missing). :class:`AdvancedSection` is a collapsed accordion
with the change id, the priority, the resource pool and, per disk, a datastore and a format ("Configure
per disk" in the vSphere Client). Both draw :class:`~runbook.fronts.choices.Choices` and write the picks
back into it; ``on_change`` tells the wizard to re-enable its buttons.
"""
from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as w

from runbook.fronts.choices import FORMAT_LABELS, KEEP, PRIORITY_LABELS, Choices, device_name, gib

STYLE = {"description_width": "130px"}


class NetworkStep:
    """One drop-down per port group the target host lacks, listing the target host's port groups."""

    def __init__(self, on_change: Callable[[], None]):
        self.on_change = on_change
        self.choices: Choices | None = None
        self.pickers: dict[str, w.Dropdown] = {}
        self._syncing = False
        self.view = w.VBox(layout=w.Layout(display="none"))
        self.view.add_class("rb-network")

    def sync(self, choices: Choices) -> None:
        """Rebuild for the current VM and target host; keep what was picked."""
        self.choices = choices
        missing = choices.missing_port_groups()
        if list(self.pickers) != missing or any(list(p.options) != choices.network_options()
                                                for p in self.pickers.values()):
            self.pickers = {}
            for group in missing:
                pick = w.Dropdown(options=choices.network_options(), value=None,
                                  description=group, style=STYLE, layout=w.Layout(width="640px"))
                pick.add_class("rb-network-pick")
                pick.observe(lambda change, g=group: self._picked(g, change["new"]), names="value")
                self.pickers[group] = pick
            rows: list[w.Widget] = []
            if missing:
                rows.append(w.HTML("<b>Network</b> <span style='color:#555'>the target host has no port group "
                                   "named like these; pick one of its port groups for each</span>"))
            for group, pick in self.pickers.items():
                nics = ", ".join(choices.nics_on(group))
                rows.append(w.HBox([pick, w.HTML(f"<span style='color:#555'>&nbsp;for {html.escape(nics)}</span>")]))
            self.view.children = rows
        self._syncing = True
        try:
            for group, pick in self.pickers.items():
                pick.value = choices.network.get(group)
                pick.disabled = choices.busy
        finally:
            self._syncing = False
        self.view.layout.display = None if missing else "none"

    def _picked(self, group: str, value: Any) -> None:
        if not self._syncing and self.choices is not None and self.choices.network.get(group) != value:
            self.choices.choose_network(group, value)
            self.on_change()


class AdvancedSection:
    """A collapsed "Advanced" accordion: change id, priority, resource pool, datastore and format per disk."""

    def __init__(self, on_change: Callable[[], None], change_id: str = "", priority: str = "default"):
        self.on_change = on_change
        self.choices: Choices | None = None
        self.change_id = w.Text(value=change_id, placeholder="e.g. CHG-1234 (names the run directory)",
                                description="Change id", style=STYLE, layout=w.Layout(width="520px"))
        self.change_id.add_class("rb-change-id")
        self.priority = w.Dropdown(options=[(label, p) for p, label in PRIORITY_LABELS.items()], value=priority,
                                   description="Priority", style=STYLE, layout=w.Layout(width="520px"))
        self.priority.add_class("rb-priority")
        self.pool = w.Dropdown(options=[], value=None, description="Resource pool", style=STYLE,
                               layout=w.Layout(width="520px"))
        self.pool.add_class("rb-pool")
        self.pool.observe(lambda c: self._pool(c["new"]), names="value")
        self.disk_rows = w.VBox()
        self.disk_rows.add_class("rb-disks")
        self.disk_pickers: dict[str, tuple[w.Dropdown, w.Dropdown]] = {}
        self._syncing = False
        body = w.VBox([self.change_id, self.priority, self.pool, self.disk_rows])
        self.view = w.Accordion(children=[body], titles=("Advanced: change id, priority, resource pool, "
                                                          "per-disk placement",), selected_index=None)
        self.view.add_class("rb-advanced")

    def sync(self, choices: Choices) -> None:
        self.choices = choices
        options = choices.pool_options() or [("(keep it)", KEEP)]
        self._syncing = True
        try:
            if list(self.pool.options) != options:
                self.pool.options = options
            self.pool.value = choices.resource_pool
        finally:
            self._syncing = False
        self._sync_disks(choices)
        for widget in (self.change_id, self.priority, self.pool):
            widget.disabled = choices.busy

    def _sync_disks(self, choices: Choices) -> None:
        datastores = choices.disk_datastore_options()
        disks = choices.vm_disks() if datastores else []
        labels = [str(d["label"]) for d in disks]
        if list(self.disk_pickers) != labels or any(list(ds.options) != datastores
                                                     for ds, _ in self.disk_pickers.values()):
            self.disk_pickers, rows = {}, []
            for d in disks:
                label = str(d["label"])
                ds = w.Dropdown(options=datastores, value=KEEP, description="Datastore",
                                style={"description_width": "70px"}, layout=w.Layout(width="330px"))
                fmt = w.Dropdown(options=[(text, f) for f, text in FORMAT_LABELS.items()], value="same",
                                 description="Format", style={"description_width": "50px"},
                                 layout=w.Layout(width="300px"))
                ds.add_class("rb-disk-datastore")
                fmt.add_class("rb-disk-format-pick")
                ds.observe(lambda c, lb=label: self._disk(lb), names="value")
                fmt.observe(lambda c, lb=label: self._disk(lb), names="value")
                self.disk_pickers[label] = (ds, fmt)
                now = f"now on {d['datastore']}, {d['format']}, {gib(d['capacity_bytes'])}"
                name = w.HTML(f"<span title='{html.escape(now)}'>{html.escape(device_name(d))}</span>",
                              layout=w.Layout(width="190px"))
                row = w.HBox([name, ds, fmt])
                row.add_class("rb-disk-row")
                rows.append(row)
            head = [w.HTML("<b>Per disk</b> <span style='color:#555'>(with the VM: where the target datastore "
                           "puts it)</span>")] if rows else []
            self.disk_rows.children = head + rows
        self._syncing = True
        try:
            for label, (ds, fmt) in self.disk_pickers.items():
                place, form = choices.disks.get(label, (KEEP, "same"))
                ds.value, fmt.value = place, form
                ds.disabled = choices.busy
                fmt.disabled = choices.busy or not place  # a format changes only when the disk is copied
        finally:
            self._syncing = False

    def _pool(self, value: Any) -> None:
        if not self._syncing and self.choices is not None and (value or KEEP) != self.choices.resource_pool:
            self.choices.choose_pool(value)
            self.on_change()

    def _disk(self, label: str) -> None:
        if self._syncing or self.choices is None or label not in self.disk_pickers:
            return
        ds, fmt = self.disk_pickers[label]
        if (ds.value or KEEP, fmt.value or "same") != self.choices.disks.get(label, (KEEP, "same")):
            self.choices.choose_disk(label, ds.value, fmt.value if ds.value else "same")
            self.on_change()
