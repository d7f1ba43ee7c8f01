"""The interactive front end of the migration notebook: choose, check and migrate with ipywidgets.

The picks (cluster, VM, migration type, target host, target datastore, disk format), their options,
resets and the enabling of the buttons live in :class:`runbook.choices.Choices` (plain Python, tested
without a kernel); :class:`Wizard` only draws them and reacts to clicks. The work is the headless
path's: **Check** runs :meth:`Migration.prepare` (without a record) and shows the checks table;
**Migrate** runs, in a background thread (the kernel handles no widget events while a cell runs),
exactly what the notebook's cells run headless: ``start_run`` → ``Migration.prepare`` → ``decide`` →
``execute`` → ``raise_for_outcome``, with a progress bar and a ping readout refreshed every 0.5 s.

The change record is the headless one: ``record.json`` is written by the Migration's RunRecord, then
completed by :func:`runbook.pipeline.finish_record` (the pipeline's own last step, so outcome and exit
code are decided in one place), and ``report.html`` is made by :func:`runbook.report.write_html` from a
``run.ipynb`` that :func:`report_notebook` builds in memory from the finished Migration: the same
sections and helpers (``styled_checks``, ``placement_table``, the ping chart) as the headless notebook,
as plain outputs. Re-running the headless pipeline for the HTML was rejected: it would move the VM a
second time, or need a second "report only" notebook mode, and the live progress would be lost.
"""
from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import ipywidgets as w
import nbformat
from IPython.display import HTML, display

from . import notebook as nbh
from .choices import STEPS, Choices
from .connection import Settings, connect, login, logout
from .errors import BadInput, RunbookError
from .inventory import Inventory, read_inventory
from .move import Migration, MoveOptions
from .pipeline import finish_record
from .record import start_run

log = logging.getLogger("runbook")

STEP_LABELS = {"cluster": "Cluster", "vm": "VM", "kind": "Migration type", "host": "Target host",
               "datastore": "Target datastore", "disk_format": "Disk format"}
_BANNER = {"SUCCEEDED": ("#1e7b34", "#e6f4ea"), "NO CHANGE": ("#1e7b34", "#e6f4ea"),
           "DRY RUN": ("#2f5d8a", "#e8f0fa")}
_FAIL_COLOURS = ("#b3261e", "#fce8e6")
MOVE_OPTION_KEYS = ("timeout_s", "ping", "ping_interval", "ping_tcp_port", "ping_tail", "dry_run")
PLAN_OPTION_KEYS = ("priority", "resource_pool", "network_map")


def chooser(settings: Settings, vm: str = "", *, change_id: str = "", **params: Any) -> Optional["Wizard"]:
    """The migration notebook's chooser cell.

    With ``vm`` given (papermill, ``runbook migrate``) it shows nothing and returns None: the cells below
    do the move. With ``vm`` empty it reads the inventory, displays the wizard, and raises BadInput so
    that *Run All* stops here instead of running the parameter-driven cells with no VM (headless, that
    is the same error the plan cell would give).
    """
    global LAST
    if vm.strip():
        print(f"vm={vm!r} is given: the chooser is not shown; the cells below move it.")
        return None
    with connect(settings) as si:
        inventory = read_inventory(si)
    LAST = Wizard(settings, inventory, change_id=change_id, **params)
    display(LAST.view)
    raise BadInput("no VM given: pick one in the chooser above, then Check and Migrate (this stops Run All "
                   "here); a headless run (papermill, runbook migrate) needs vm and a target")


LAST: Optional["Wizard"] = None  #: the wizard the chooser cell showed last (for a look from another cell)


def _html_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f'<tr><th style="text-align:left;padding:2px 12px 2px 0;color:#555">{html.escape(k)}</th>'
                    f'<td style="text-align:left;padding:2px 0">{html.escape(str(v))}</td></tr>' for k, v in rows)
    return f'<table style="border-collapse:collapse;margin:4px 0">{cells}</table>'


def outcome_html(data: dict[str, Any]) -> str:
    """The outcome banner and key figures of a finished record (what the top of report.html shows)."""
    outcome = str(data.get("outcome"))
    fg, bg = _BANNER.get(outcome, _FAIL_COLOURS)
    figures = [(str(a), str(b)) for a, b in data.get("figures") or []]
    if data.get("error"):
        figures.append(("Error", f"{data['error'].get('type')}: {data['error'].get('message')}"))
    return (f'<div class="rb-outcome" style="border-left:6px solid {fg};background:{bg};padding:8px 12px;'
            f'margin:6px 0"><div style="color:{fg};font-weight:700;font-size:1.15em">{html.escape(outcome)}</div>'
            f'<div>{html.escape(str(data.get("summary") or ""))}</div>{_html_table(figures)}</div>')


def error_html(exc: BaseException) -> str:
    """One red line for the runbook's own errors (they explain themselves), the traceback for a bug."""
    if isinstance(exc, RunbookError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (f'<pre class="rb-error" style="color:#b3261e;background:#fce8e6;padding:6px 10px;'
            f'white-space:pre-wrap">{html.escape(text)}</pre>')


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def report_notebook(migration: Optional[Migration], data: dict[str, Any]) -> nbformat.NotebookNode:
    """The interactive run as a notebook of plain outputs, in the headless notebook's sections."""
    v4 = nbformat.v4
    cells = [v4.new_markdown_cell("# Migration chosen and run from the widgets of `notebooks/migrate.ipynb`")]

    def section(title: str, *outputs: dict[str, Any]) -> None:
        cells.append(v4.new_markdown_cell(f"## {title}"))
        cells.append(v4.new_code_cell("", outputs=[v4.new_output("display_data", data=o) for o in outputs]))

    def text(s: str) -> dict[str, Any]:
        return {"text/plain": s}

    def table(df: Any) -> dict[str, Any]:
        return {"text/html": df.to_html(), "text/plain": df.to_string()}

    m = migration
    if m is None or m.resolved is None:
        section("What happened", text(str(data.get("summary") or "the plan could not be resolved")))
        return v4.new_notebook(cells=cells)
    section("Plan", text(m.move_words()), text(json.dumps(data.get("parameters") or {}, indent=1)))
    if m.checks is not None:
        section("Checks", text(str(data.get("verdict") or "")),
                {"text/html": nbh.styled_checks(m.checks).to_html(), "text/plain": m.checks.to_string()})
    if data.get("spec"):
        section("The relocation spec", text(json.dumps(data["spec"], indent=1)))
    section("The move", text(f"{m.outcome}: {m.summary}"))
    if m.after:
        section("Verification: where the vCenter says the VM is now",
                table(nbh.placement_table(m.before, m.after)), table(m.verification))
    ping = m.ping_summary() or {}
    if m.ping is not None:
        t = m.task
        fig = m.ping.plot(task_start=t.started if t else None, task_end=t.completed if t else None,
                          switchover=m.switchover_time(), events=[(e["time"], e["type"]) for e in m.events])
        section("Ping through the move", text(str(ping.get("description", ""))),
                {"image/png": _png(fig), "text/plain": "ping chart"})
    else:
        section("Ping through the move", text(str(ping.get("note", "no ping"))))
    if m.events:
        import pandas as pd

        section("Task and vCenter events", table(pd.DataFrame(m.events, columns=["time", "type", "message", "user"])))
    return v4.new_notebook(cells=cells)


def write_report(run_dir: Path, data: dict[str, Any], migration: Optional[Migration]) -> Path:
    """``run.ipynb`` from :func:`report_notebook`, then report.html and the index, as the pipeline does."""
    from .report import write_html, write_index

    nbformat.write(report_notebook(migration, data), str(Path(run_dir) / "run.ipynb"))
    target = write_html(run_dir, data)
    write_index(Path(run_dir).parent.parent)
    return target


def live_ping(monitor: Any) -> str:
    """``127.0.0.2: 42 sent, 0 lost, last 0.2 ms`` from a running ProbeMonitor."""
    if monitor is None:
        return ""
    snap = monitor.live()
    sent, lost, rtt = snap["sent"], snap["lost"], snap["last_rtt_ms"]
    last = f", last {rtt:.1f} ms" if rtt is not None else ""
    return f"{monitor.target}: {sent} sent, {lost} lost{last}"


class Wizard:
    """The chooser: pickers over :class:`Choices`, Check and Migrate buttons, progress and results."""

    def __init__(self, settings: Settings, inventory: Inventory, *, change_id: str = "", **params: Any):
        unknown = set(params) - set(MOVE_OPTION_KEYS) - set(PLAN_OPTION_KEYS)
        if unknown:
            raise BadInput(f"unknown wizard parameter(s): {', '.join(sorted(unknown))}")
        self.settings, self.change_id, self.params = settings, change_id, params
        plan_options = {k: (params[k] or None) if k == "resource_pool" else params[k]
                        for k in PLAN_OPTION_KEYS if k in params}
        self.choices = Choices(inventory, plan_options=plan_options)
        self.migration: Optional[Migration] = None
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.record: Optional[dict[str, Any]] = None
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
        self.checks_out = w.Output()
        self.checks_out.add_class("rb-checks")
        self.progress = w.IntProgress(value=0, min=0, max=100, description="Task", style=style, layout=wide())
        self.state = w.Label()
        self.state.add_class("rb-state")
        self.ping_label = w.Label()
        self.ping_label.add_class("rb-ping")
        self.result = w.Output()
        self.result.add_class("rb-result")
        self.run_box = w.VBox([w.HBox([self.progress, self.state]), self.ping_label])
        self.run_box.layout.display = "none"
        title = w.HTML("<h3 style='margin:4px 0'>Migrate a VM</h3><span style='color:#555'>Pick from the top "
                       "down; changing a choice clears those below it. Check, then Migrate.</span>")
        self.view = w.VBox([title, self.pickers["cluster"], self.vm_filter, self.pickers["vm"], self.details,
                            self.pickers["kind"], self.pickers["host"], self.pickers["datastore"],
                            self.pickers["disk_format"], self.hint,
                            w.HBox([self.check_button, self.force, self.migrate_button]),
                            self.checks_out, self.run_box, self.result])
        self.view.add_class("rb-wizard")

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
        details = c.vm_details()
        self.details.value = _html_table(list(details.items())) if details else ""
        self.hint.value = (f"<b>{html.escape(c.describe())}</b>" if c.complete() else "") + \
            f"<div style='color:#555'>{html.escape(c.hint())}</div>"
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        c = self.choices
        self.check_button.disabled = not c.can_check()
        self.migrate_button.disabled = not c.can_migrate(self.force.value)
        self.force.disabled = c.busy

    # -- events ---------------------------------------------------------------------------------------
    def _on_pick(self, step: str, value: Optional[str]) -> None:
        if self._syncing:
            return
        self.choices.choose(step, value)
        self.checks_out.outputs = ()
        self._sync(after=step)

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

    def _options(self) -> MoveOptions:
        p = self.params
        return MoveOptions(force_reason=self.force.value.strip(),
                           **{k: p[k] for k in MOVE_OPTION_KEYS if k in p})

    # -- Check ----------------------------------------------------------------------------------------
    def check(self) -> None:
        """Run every check (and the vCenter's verdict) for the current picks; show the table."""
        c = self.choices
        plan = c.plan()
        if plan is None or c.busy:
            return
        self.checks_out.outputs = ()
        c.busy = True
        self.check_button.description = "Checking…"
        self._sync()
        try:
            with connect(self.settings) as si:
                migration = Migration(si, self.settings, plan, self._options(), record=None)
                checks = migration.prepare()
            from .checks import verdict

            c.checks = checks
            self.checks_out.append_display_data(HTML(f"<b>{html.escape(verdict(checks))}</b>"))
            self.checks_out.append_display_data(nbh.styled_checks(checks))
        except Exception as exc:
            self._show_error(self.checks_out, exc)
        finally:
            c.busy = False
            self.check_button.description = "Check"
            self._sync()

    # -- Migrate --------------------------------------------------------------------------------------
    def params_for_record(self) -> dict[str, Any]:
        """The notebook's parameters as this run chose them (names, as an operator would type them)."""
        c, inv = self.choices, self.choices.inventory
        plan = c.plan()
        name = lambda table, moid: str(table[table["moid"] == moid].iloc[0]["name"]) if moid else ""  # noqa: E731
        values = {"vm": name(inv.vms, c.vm), "target_host": name(inv.hosts, plan.target_host),
                  "target_datastore": name(inv.datastores, plan.target_datastore), "disk_format": plan.disk_format,
                  "priority": plan.priority, "resource_pool": plan.resource_pool or "",
                  "network_map": dict(plan.network_map), "force_reason": self.force.value.strip()}
        values.update({k: self.params[k] for k in MOVE_OPTION_KEYS if k in self.params})
        return values

    def migrate(self, wait: bool = False) -> Optional[threading.Thread]:
        """Start the move in a background thread (``wait=True``: and wait for it, for tests)."""
        c = self.choices
        if not c.can_migrate(self.force.value):
            return None
        plan, options, params = c.plan(), self._options(), self.params_for_record()
        c.busy = True
        self._sync()
        self.result.outputs = ()
        self.progress.value, self.progress.bar_style = 0, "info"
        self.state.value, self.ping_label.value = "starting", ""
        self.run_box.layout.display = None
        self.thread = threading.Thread(target=self._run, args=(plan, options, params), name="runbook-migrate",
                                       daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()
        return self.thread

    def _progress(self, percent: int, state: str) -> None:
        self.progress.value = max(0, min(100, int(percent or 0)))
        self.state.value = f"{self.progress.value}% {state}"

    def _watch_ping(self, done: threading.Event) -> None:
        while not done.wait(0.5):
            monitor = getattr(self.migration, "monitor", None)
            text = live_ping(monitor)
            if text:
                self.ping_label.value = "Ping " + text

    def _run(self, plan: Any, options: MoveOptions, params: dict[str, Any]) -> None:
        record, migration, failure = None, None, None
        done = threading.Event()
        try:
            record = start_run("migrate", params, change_id=self.change_id or None, via="widgets")
            si = login(self.settings)
            try:
                record.connected(self.settings)
                migration = self.migration = Migration(si, self.settings, plan, options, record=record)
                threading.Thread(target=self._watch_ping, args=(done,), daemon=True).start()
                self.state.value = "checking again before the move"
                migration.prepare()
                if migration.decide() == "go":
                    migration.execute(on_progress=self._progress)
                migration.raise_for_outcome()
            finally:
                logout(migration.si if migration is not None else si)
        except Exception as exc:
            failure = (type(exc).__name__, str(exc))
            self._show_error(self.result, exc)
        finally:
            done.set()
        try:
            if record is not None:
                self.record = finish_record("migrate", record.run_dir, {**params, "change_id": self.change_id}
                                            if self.change_id else params, self.change_id or None, failure)
                path = write_report(record.run_dir, self.record, migration)
                self.result.append_display_data(HTML(outcome_html(self.record)))
                self._show_results(migration)
                self.result.append_display_data(HTML(
                    f'<div class="rb-report" style="color:#555">Change record: {html.escape(str(path))} '
                    f'(and record.json beside it)</div>'))
        except Exception as exc:
            self._show_error(self.result, exc)
        finally:
            self._after_run(migration)

    def _show_results(self, m: Optional[Migration]) -> None:
        if m is None:
            return
        ping = m.ping_summary() or {}
        if m.ping is not None:
            self.ping_label.value = f"Ping {m.ping.target}: {ping.get('description', '')}"
        elif ping.get("note"):
            self.ping_label.value = f"Ping: {ping['note']}"
        if m.after:
            self.result.append_display_data(HTML("<b>Where the vCenter says the VM is now</b>"))
            self.result.append_display_data(nbh.placement_table(m.before, m.after))
            self.result.append_display_data(m.verification)

    def _after_run(self, m: Optional[Migration]) -> None:
        outcome = self.record.get("outcome") if self.record else "FAILED"
        self.progress.bar_style = "success" if outcome in ("SUCCEEDED", "NO CHANGE", "DRY RUN") else "danger"
        if outcome == "SUCCEEDED":
            self.progress.value = 100
        self.state.value = str(outcome)
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
            self._show_error(self.result, exc)
            c.checks = None
        self.checks_out.outputs = ()
        self.force.value = ""
        self._sync()
