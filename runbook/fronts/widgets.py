"""The interactive front of the migration notebook: choose, check and migrate with ipywidgets.

The picks (cluster, VM, migration type, target host, target datastore, disk format, the network step and
the advanced ones), their options, resets and the enabling of the buttons live in
:class:`runbook.fronts.choices.Choices` (plain Python, tested without a kernel); :class:`Wizard` only
draws them (the later steps in :mod:`runbook.fronts.wizard_steps`) and shows the engine's events.
**Check** runs the engine's check as a preview (no record); **Migrate** runs the engine's move in a
background thread (the kernel handles no widget events while a cell runs), its progress, phase and live
probes beside the button (:mod:`runbook.fronts.wizard_run`), the checks collapsed meanwhile. **Cancel**
asks the engine to stop: it cancels the vCenter task and records what the vCenter then reports. The
record and report.html are the engine's, the same as a headless run's, linked from the result; a new
pick clears the previous run's result.
"""
from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Iterator
from typing import Any, Optional

import ipywidgets as w
from IPython.display import HTML, display

from runbook.engine.context import RunContext
from runbook.engine.events import CheckDone, Event, Notice, Step
from runbook.engine.requests import MoveRequest, build
from runbook.errors import BadInput
from runbook.fronts import notebook as nbh
from runbook.fronts.choices import STEPS, Choices
from runbook.fronts.wizard_run import GOOD_OUTCOMES, RunPanel, error_html, html_table, outcome_html, report_link
from runbook.fronts.wizard_steps import AdvancedSection, NetworkStep
from runbook.vsphere.connection import Settings, connect, settings_from_env
from runbook.vsphere.inventory import Inventory, read_inventory

__all__ = ["INSTRUCTION", "LAST", "Wizard", "chooser", "error_html", "outcome_html"]

log = logging.getLogger("runbook")

STEP_LABELS = {"cluster": "Cluster", "vm": "VM", "kind": "Migration type", "host": "Target host",
               "datastore": "Target datastore", "disk_format": "Disk format"}
PICKED = ("vm", "target_host", "target_datastore", "disk_format")  # what the pickers choose
ADVANCED = ("change_id", "priority", "resource_pool", "network_map", "disk_placement")  # what the wizard asks too
INSTRUCTION = "Pick a VM and a target above, then press Check."


def chooser(namespace: dict[str, Any]) -> Optional["Wizard"]:
    """The migration notebook's chooser cell; ``namespace`` is the notebook's ``globals()``.

    With ``vm`` given, or in a headless run (``run_context`` set), it shows nothing and returns None: the
    cells below do the run (and refuse an empty ``vm``). With ``vm`` empty in JupyterLab it reads the
    inventory, displays the wizard, and stops *Run All* here quietly, with one line of instruction.
    """
    global LAST
    vm = str(namespace.get("vm") or "").strip()
    if vm or namespace.get("run_context"):
        return None
    nbh.setup()
    params = {p.name: namespace[p.name] for p in MoveRequest.params() if p.name in namespace and p.name not in PICKED}
    settings = settings_from_env()
    with connect(settings) as si:
        inventory = read_inventory(si)
    LAST = Wizard(settings, inventory, **params)
    display(LAST.view)
    raise nbh.StopHere(INSTRUCTION)


LAST: Optional["Wizard"] = None  #: the wizard the chooser cell showed last (for a look from another cell)


class Wizard:
    """The chooser: pickers over :class:`Choices`, Check and Migrate buttons, progress and results."""

    def __init__(self, settings: Settings, inventory: Inventory, context: Optional[RunContext] = None,
                 **params: Any):
        """``params``: the notebook's other parameters (priority, ping, timeout, change id...), as raw
        values; they are validated with the picks into a :class:`MoveRequest` by the engine's rules.
        ``context``: where the records go and which front is recorded (default: the widgets')."""
        unknown = set(params) - {p.name for p in MoveRequest.params()} | (set(params) & set(PICKED))
        if unknown:
            raise BadInput(f"unknown wizard parameter{'' if len(unknown) == 1 else 's'}: {', '.join(sorted(unknown))}")
        self.settings, self.params = settings, params
        self.context = (context or RunContext(via="widgets")).replace(run_dir=None)
        plan_options = {"resource_pool": params.get("resource_pool") or None,
                        "network_map": params.get("network_map") or {}}
        self.choices = Choices(inventory, plan_options=plan_options)
        self.result: Any = None  # the engine's RunResult of the last Migrate
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.cancel_event = threading.Event()
        self._syncing = False
        self._build()
        self._sync()

    # -- view -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        wide = lambda: w.Layout(width="640px")  # noqa: E731 (one Layout per widget: hiding one hides all sharing it)
        style = {"description_width": "130px"}
        self.pickers: dict[str, w.Widget] = {}
        for step in STEPS:
            if step == "vm":
                pick = w.Select(options=[], value=None, rows=7, description="VM", style=style, layout=wide())
            elif step == "kind":
                pick = w.ToggleButtons(options=[], value=None, description="Migration type", style=style)
            else:
                pick = w.Dropdown(options=[], value=None, description=STEP_LABELS[step], style=style,
                                  layout=wide())
            pick.add_class(f"rb-{step.replace('_', '-')}")
            pick.observe(lambda change, s=step: self._on_pick(s, change["new"]), names="value")
            self.pickers[step] = pick
        self.vm_filter = w.Text(placeholder="type part of a name, host, datastore or IP", description="Filter VMs",
                                style=style, layout=wide(), continuous_update=True)
        self.vm_filter.add_class("rb-vm-filter")
        self.vm_filter.observe(lambda c: self._on_filter(c["new"]), names="value")
        self.details = w.HTML(layout=w.Layout(margin="0 0 0 136px"))
        self.details.add_class("rb-vm-details")
        self.network = NetworkStep(self._on_later_pick)
        self.advanced = AdvancedSection(self._on_later_pick, change_id=str(self.params.get("change_id") or ""),
                                        priority=str(self.params.get("priority") or "default"))
        self.hint = w.HTML()
        self.hint.add_class("rb-hint")
        self.check_button = w.Button(description="Check", icon="check", button_style="info")
        self.check_button.add_class("rb-check")
        self.force = w.Text(placeholder="reason to move despite failed checks", description="Force reason",
                            style={"description_width": "90px"}, layout=w.Layout(width="420px"))
        self.force.add_class("rb-force")
        self.force.observe(lambda c: self._sync_buttons(), names="value")
        dry = bool(self.params.get("dry_run"))
        self.migrate_button = w.Button(description="Dry run" if dry else "Migrate", icon="play",
                                       button_style="warning" if dry else "success")
        self.migrate_button.add_class("rb-migrate")
        self.check_button.on_click(lambda _: self.check())
        self.migrate_button.on_click(lambda _: self.migrate())
        self.run = RunPanel(on_cancel=self.cancel)
        self.checks_out = w.Output()
        self.checks_out.add_class("rb-checks")
        self.checks_box = w.Accordion(children=[self.checks_out], titles=("Checks",), selected_index=None)
        self.checks_box.add_class("rb-checks-box")
        self.checks_box.layout.display = "none"
        self.result_out = w.Output()
        self.result_out.add_class("rb-result")
        title = w.HTML("<h3 style='margin:4px 0'>Migrate a VM</h3><span style='color:#555'>Pick from the top "
                       "down; changing a choice clears those below it. Check, then Migrate.</span>")
        actions = w.HBox([self.check_button, self.migrate_button, self.run.cancel_button, self.run.progress,
                          self.run.state], layout=w.Layout(align_items="center"))
        actions.add_class("rb-actions")
        self.view = w.VBox([title, self.pickers["cluster"], self.vm_filter, self.pickers["vm"], self.details,
                            self.pickers["kind"], self.pickers["host"], self.pickers["datastore"],
                            self.pickers["disk_format"], self.network.view, self.advanced.view, self.hint,
                            self.force, actions, self.run.live, self.result_out, self.checks_box])
        self.view.add_class("rb-wizard")

    # Kept for a look from another cell and for tests: the run panel's parts under their old names.
    progress = property(lambda self: self.run.progress)
    state = property(lambda self: self.run.state)
    ping_label = property(lambda self: self.run.ping_label)
    cancel_button = property(lambda self: self.run.cancel_button)

    def _ipython_display_(self) -> None:
        display(self.view)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _sync(self, after: Optional[str] = None) -> None:
        """Put the model into the widgets: options of the steps below ``after`` (all when None), values, enabling."""
        c = self.choices
        first = 0 if after is None else STEPS.index(after) + 1
        with self._quiet():
            for step in STEPS[first:]:
                pick = self.pickers[step]
                options = c.options(step)
                if list(pick.options) != options:
                    pick.options = options
                pick.value = getattr(c, step)  # None: nothing chosen, never the first option
            for step in STEPS:
                pick = self.pickers[step]
                pick.disabled = c.busy or not pick.options or not c.needed(step)
                pick.layout.display = None if c.needed(step) else "none"
            self.vm_filter.disabled = c.busy or c.cluster is None
        self.network.sync(c)
        self.advanced.sync(c)
        details = c.vm_details()
        self.details.value = html_table(list(details.items())) if details else ""
        self._sync_hint()
        self._sync_buttons()

    def _sync_hint(self) -> None:
        c = self.choices
        problem = c.datastore_problem()
        self.hint.value = ((f"<b>{html.escape(c.describe())}</b>" if c.complete() else "")
                           + (f"<div class='rb-datastore-problem' style='color:#b3261e'>{html.escape(problem)}</div>"
                              if problem else "")
                           + f"<div style='color:#555'>{html.escape(c.hint())}</div>")

    def _sync_buttons(self) -> None:
        c = self.choices
        self.check_button.disabled = not c.can_check()
        self.migrate_button.disabled = not c.can_migrate(self.force.value)
        self.force.disabled = c.busy
        self.force.layout.display = None if c.failed_checks() or self.force.value else "none"

    # -- events ---------------------------------------------------------------------------------------
    def _on_pick(self, step: str, value: Optional[str]) -> None:
        if self._syncing:
            return
        self.choices.choose(step, value)
        self._clear()
        self._sync(after=step)

    def _on_later_pick(self) -> None:
        """A pick in the network step or the advanced section: the old checks and result go."""
        self._clear()
        self.network.sync(self.choices)
        self.advanced.sync(self.choices)
        self._sync_hint()
        self._sync_buttons()

    def _clear(self) -> None:
        """A new pick: the previous checks and the previous run's banner and progress go."""
        self.checks_out.outputs = ()
        self.checks_box.layout.display = "none"
        if self.thread is None or not self.thread.is_alive():
            self.result_out.outputs = ()
            self.run.reset()

    def _on_filter(self, text: str) -> None:
        self.choices.filter_vms(text)
        self._sync(after="cluster")

    def pick(self, **values: Optional[str]) -> "Wizard":
        """Set pickers as a click would, top to bottom (``pick(cluster=..., vm=..., kind="host", ...)``)."""
        for step in STEPS:
            if step in values:
                self.pickers[step].value = values[step]
        return self

    def _show_error(self, out: w.Output, exc: BaseException) -> None:
        self.error = exc
        log.error("%s: %s", type(exc).__name__, exc)
        out.append_display_data(HTML(error_html(exc)))

    def request(self) -> MoveRequest:
        """The picks and the notebook's parameters as the engine's request (its validation, its messages)."""
        c = self.choices
        plan = c.plan()
        if plan is None:
            raise BadInput("pick a VM, a migration type and its targets first")
        inv = c.inventory
        values = {**self.params, "vm": _key(inv.vms, c.vm), "target_host": _key(inv.hosts, plan.target_host),
                  "target_datastore": _key(inv.datastores, plan.target_datastore), "disk_format": plan.disk_format,
                  "force_reason": self.force.value.strip() or self.params.get("force_reason") or "",
                  "change_id": self.advanced.change_id.value.strip(), "priority": self.advanced.priority.value,
                  "network_map": c.network_map()}
        if c.resource_pool:
            values["resource_pool"] = _key(inv.pools, c.resource_pool)
        if c.disks:
            values["disk_placement"] = {label: f"{_key(inv.datastores, ds)}:{fmt}" for label, (ds, fmt) in c.disks.items()}
        return build(MoveRequest, values)

    # -- Check ----------------------------------------------------------------------------------------
    def check(self) -> None:
        """Run every check (and the vCenter's verdict) for the current picks as a preview; show the table."""
        from runbook.engine import check
        from runbook.engine.requests import CheckRequest

        c = self.choices
        if c.plan() is None or c.busy:
            return
        self._clear()
        c.busy = True
        self.check_button.description = "Checking…"
        self._sync()
        self.checks_box.layout.display = None
        self.checks_box.selected_index = 0
        try:
            request = self.request()
            names = {p.name for p in CheckRequest.params()}
            result = check(build(CheckRequest, {k: v for k, v in request.to_params().items() if k in names}),
                           settings=self.settings, context=self.context.replace(record=False, report=False))
            c.checks = result.state.checks
            verdict = str(result.record.get("verdict", ""))
            self.checks_box.set_title(0, f"Checks: {verdict}")
            self.checks_out.append_display_data(HTML(f"<b>{html.escape(verdict)}</b>"))
            self.checks_out.append_display_data(nbh.styled_checks(result.state.checks))
        except Exception as exc:
            self.checks_box.set_title(0, "Checks: could not run")
            self._show_error(self.checks_out, exc)
        finally:
            c.busy = False
            self.check_button.description = "Check"
            self._sync()

    # -- Migrate --------------------------------------------------------------------------------------
    def migrate(self, wait: bool = False) -> Optional[threading.Thread]:
        """Start the move in a background thread (``wait=True``: and wait for it, for tests)."""
        c = self.choices
        if not c.can_migrate(self.force.value):
            return None
        try:
            request = self.request()
        except BadInput as exc:
            self._show_error(self.result_out, exc)
            return None
        c.busy = True
        self._sync()
        self.result_out.outputs = ()
        self.checks_out.outputs = ()
        self.checks_box.set_title(0, "Checks: running")
        self.checks_box.selected_index = None  # collapsed: the progress and the probes are what matter now
        self.cancel_event = threading.Event()
        self.run.start(tail_s=request.ping_tail if request.ping.strip().lower() != "none" else 0.0)
        self.thread = threading.Thread(target=self._run, args=(request,), name="runbook-migrate", daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()
        return self.thread

    def cancel(self) -> None:
        """Ask the running move to stop: the engine cancels the vCenter task and records the outcome."""
        self.cancel_event.set()
        self.run.cancel_button.disabled = True
        self.run.state.value = "cancelling…"

    def on_event(self, event: Event) -> None:
        """Render one of the engine's events: the run panel's, and the checks' rows that need a look."""
        if isinstance(event, CheckDone) and event.status in ("fail", "warn"):
            self.checks_out.append_display_data(HTML(
                f"<div class='rb-check-{event.status}'>{html.escape(event.status.upper())} "
                f"{html.escape(event.check)}: {html.escape(event.found)}"
                + (f"<br><i>remedy: {html.escape(event.remedy)}</i>" if event.remedy else "") + "</div>"))
        elif isinstance(event, Step) and event.name == "checks" and event.state == "ended":
            self.checks_box.set_title(0, f"Checks: {event.text}")
        elif isinstance(event, Notice):
            self.checks_out.append_display_data(HTML(f"<div style='color:#9a6700'>{html.escape(event.text)}</div>"))
        self.run.on_event(event)

    def _run(self, request: MoveRequest) -> None:
        from runbook.engine import migrate

        result = None
        try:
            result = self.result = migrate(request, on_event=self.on_event, settings=self.settings,
                                           cancel=self.cancel_event, context=self.context)
            self.result_out.append_display_data(HTML(outcome_html(result.record)))
            self._show_results(result)
        except Exception as exc:
            self._show_error(self.result_out, exc)
        finally:
            self._after_run(result)

    def _ping_text(self, result: Any) -> str:
        m = result.state if result is not None else None
        if m is None:
            return ""
        ping = m.ping_summary() or {}
        if m.ping is not None:
            return f"Ping {m.ping.target}: {ping.get('description', '')}"
        return f"Ping: {ping['note']}" if ping.get("note") else ""

    def _show_results(self, result: Any) -> None:
        m = result.state
        if result.report is not None:
            self.result_out.append_display_data(HTML(report_link(result.report)))
        if m is not None and m.after:
            self.result_out.append_display_data(HTML("<b>Where the vCenter says the VM is now</b>"))
            self.result_out.append_display_data(nbh.placement_table(m.before, m.after))
            self.result_out.append_display_data(m.verification)

    def _after_run(self, result: Any) -> None:
        outcome = str(result.outcome) if result is not None else "FAILED"
        self.run.finish(outcome, self._ping_text(result))
        if outcome not in GOOD_OUTCOMES:
            self.checks_box.selected_index = 0  # why it failed may be there
        c = self.choices
        c.busy = False
        try:  # re-read so that the pickers show where the VMs are now; keep the cluster and VM picked
            with connect(self.settings) as si:
                inventory = read_inventory(si)
            cluster, vm = c.cluster, c.vm
            self.choices = Choices(inventory, plan_options=c.plan_options, vm_filter=c.vm_filter)
            self.choices.choose("cluster", cluster)
            if vm in set(inventory.vms["moid"]):
                self.choices.choose("vm", vm)
        except Exception as exc:
            self._show_error(self.result_out, exc)
            c.checks = None
        self.force.value = ""
        self._sync()


def _key(table: Any, moid: Optional[str]) -> str:
    """How the record names a picked object: its name when no other object has it, else its moid."""
    if not moid:
        return ""
    rows = table[table["moid"] == moid]
    if len(rows) != 1:
        return moid
    name = str(rows.iloc[0]["name"])
    return name if int((table["name"] == name).sum()) == 1 else moid
