"""The wave notebook's widgets: choose evacuate, drain or a plan file, preview and edit the plan, run, stop.

**Preview** runs the engine's wave as a dry run that writes no record (the plan, each row's checks and the
reason for its target, exactly as a run would plan it) and shows the plan table: each row can be left out
or given another target. **Run** runs the wave in a background thread (the kernel handles no widget events
while a cell runs): the request as it was previewed, or, when the operator edited the table, the edited moves
as a plan file (YAML, kept under the reports directory beside the records and named in the wave's record).
A live table shows each VM's state, its task's progress and its probes, then its outage, from the wave's
events. **Stop** asks the wave to stop as its stop rules do: running moves finish, nothing new starts.
The record and report.html are the engine's, the same as a headless run's.
"""
from __future__ import annotations

import datetime as dt
import html
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import ipywidgets as w
from IPython.display import display

from runbook.domain import planfile
from runbook.engine.context import RunContext
from runbook.engine.events import Event, Notice, RunFinished
from runbook.engine.requests import DISK_FORMATS, DrainRequest, EvacuateRequest, PlanRequest, WaveRequest, build
from runbook.engine.wave_events import VmProgress, VmState, WaveStopped
from runbook.errors import BadInput, RunbookError
from runbook.fronts import notebook as nbh
from runbook.vsphere.connection import Settings, settings_from_env

__all__ = ["INSTRUCTION", "KINDS", "LAST", "WavePanel", "panel", "request_of"]

KINDS: dict[str, type[WaveRequest]] = {"evacuate": EvacuateRequest, "drain": DrainRequest, "plan": PlanRequest}
#: What the panel asks for each kind (the rest of the request comes from the notebook's parameters).
PICKED = {"evacuate": ("host", "to", "maintenance"), "drain": ("datastore", "to", "disk_format", "min_free"),
          "plan": ("plan",)}
INSTRUCTION = "Choose a wave above and press Preview; then Run."
LAST: Optional["WavePanel"] = None  #: the panel the widgets cell showed last (for a look from another cell)


def panel(namespace: dict[str, Any]) -> Optional["WavePanel"]:
    """The wave notebook's widgets cell; ``namespace`` is the notebook's ``globals()``.

    With ``kind`` given (papermill, or set by hand) it shows nothing and returns None: the cells below run
    the wave from the parameters. Otherwise it shows the panel, filled from the parameters, and stops
    *Run All* here quietly, with one line of instruction."""
    global LAST
    if str(namespace.get("kind") or "").strip():
        return None
    nbh.setup()
    fields = {p.name for cls in KINDS.values() for p in cls.params()}
    LAST = WavePanel(settings_from_env(), **{k: v for k, v in namespace.items() if k in fields})
    display(LAST.view)
    raise nbh.StopHere(INSTRUCTION)


def request_of(namespace: dict[str, Any]) -> WaveRequest:
    """The wave request of the notebook's parameters: ``kind`` (evacuate, drain or plan) and its fields by
    name (papermill's strings read as the command line reads them); BadInput in one line otherwise."""
    kind = str(namespace.get("kind") or "").strip().lower()
    if kind not in KINDS:
        raise BadInput(f"kind {kind!r} is not one of {', '.join(KINDS)}: set kind, or leave it empty and use the "
                       f"widgets")
    cls = KINDS[kind]
    return build(cls, {p.name: namespace[p.name] for p in cls.params() if p.name in namespace})


@dataclass
class RowEdit:
    """One plan row as shown: whether it runs and its target, as planned and as the operator left them."""

    row: dict[str, Any]
    include: w.Checkbox
    target: w.Dropdown
    field: str  # "host" or "datastore": what the target names

    def planned(self) -> str:
        return str(self.row.get(f"target_{self.field}") or "")

    def runnable(self) -> bool:
        return self.row.get("status") != "fail" and self.row.get("move_kind") != "none"

    def edited(self) -> bool:
        return self.include.value != self.runnable() or (self.include.value and self.target.value != self.planned())

    def entry(self) -> dict[str, Any]:
        """The row as a plan-file move, with the operator's target."""
        host, ds = self.row.get("target_host"), self.row.get("target_datastore")
        if self.field == "host":
            host = self.target.value
        else:
            ds = self.target.value
        return {"vm": self.row.get("vm_moid") or self.row["vm"], "host": host, "datastore": ds,
                "disk_format": self.row.get("disk_format") or "same", "network": self.row.get("network_map") or {}}


class WavePanel:
    """The kind, its inputs, Preview / Run / Stop, the editable plan table and the live table of the moves."""

    def __init__(self, settings: Settings | None = None, context: RunContext | None = None, **params: Any):
        """``params``: the notebook's parameters by the wave requests' names (raw values; the engine's rules
        validate them). ``context``: where the records go (default: the widgets')."""
        self.settings = settings
        self.context = (context or RunContext(via="widgets")).replace(run_dir=None)
        self.params = dict(params)
        self.result: Any = None  # the engine's RunResult of the last Run
        self.thread: threading.Thread | None = None
        self.cancel = threading.Event()
        self.previewed: WaveRequest | None = None
        self.rows: list[RowEdit] = []
        self.live: dict[str, dict[str, Any]] = {}
        self._drawn = 0.0
        self._lock = threading.Lock()
        self.kind = w.ToggleButtons(options=[("Evacuate a host", "evacuate"), ("Drain a datastore", "drain"),
                                             ("Plan file", "plan")], value="evacuate", description="Wave")
        text = {"layout": w.Layout(width="420px"), "style": {"description_width": "130px"}}
        self.inputs: dict[str, w.Widget] = {
            "host": w.Text(description="Host to empty", value=str(params.get("host") or ""), **text),
            "datastore": w.Text(description="Datastore to empty", value=str(params.get("datastore") or ""), **text),
            "plan": w.Text(description="Plan file", value=str(params.get("plan") or ""),
                           placeholder="moves.csv or moves.yaml", **text),
            "to": w.Text(description="Targets", value=",".join(params.get("to") or []),
                         placeholder="empty: every eligible one", **text),
            "maintenance": w.Checkbox(description="Maintenance mode when empty", value=bool(params.get("maintenance")),
                                      layout=w.Layout(width="420px"), style={"description_width": "initial"}),
            "disk_format": w.Dropdown(description="Disk format", options=list(DISK_FORMATS),
                                      value=params.get("disk_format") or "same", **text),
            "min_free": w.FloatText(description="Min free %", value=float(params.get("min_free") or 10.0), **text),
        }
        self.preview_button = w.Button(description="Preview", button_style="info", icon="list")
        self.run_button = w.Button(description="Run", button_style="success", icon="play", disabled=True)
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.message = w.HTML()
        self.plan_box = w.VBox()
        self.table = w.HTML()
        self.fields_box = w.VBox()
        self.kind.observe(lambda _: self._show_fields(), names="value")
        self.preview_button.on_click(lambda _: self.preview())
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        for widget in self.inputs.values():
            widget.observe(lambda _: self._stale(), names="value")
        self._show_fields()
        for name, widget in [*self.inputs.items(), ("preview", self.preview_button), ("run", self.run_button),
                             ("stop", self.stop_button), ("kind", self.kind), ("message", self.message),
                             ("rows", self.plan_box), ("live", self.table)]:
            widget.add_class(f"runbook-wave-{name}")  # for a browser test to find them
        buttons = w.HBox([self.preview_button, self.run_button, self.stop_button])
        self.view = w.VBox([self.kind, self.fields_box, buttons, self.message, self.plan_box, self.table])
        self.view.add_class("runbook-wave")

    # -- choosing -----------------------------------------------------------------------------------
    def _show_fields(self) -> None:
        self.fields_box.children = [self.inputs[name] for name in PICKED[self.kind.value]]
        self._stale()

    def _stale(self) -> None:
        """A changed choice makes the preview stale: preview again before running."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.previewed, self.rows = None, []
        self.plan_box.children = []
        self.run_button.disabled = True

    def request(self, **overrides: Any) -> WaveRequest:
        """The request of the panel's choices and the notebook's other parameters (BadInput when unusable)."""
        cls = KINDS[self.kind.value]
        names = {p.name for p in cls.params()}
        values = {k: v for k, v in self.params.items() if k in names}
        values.update({name: self.inputs[name].value for name in PICKED[self.kind.value]})
        return build(cls, {**values, **overrides})

    # -- Preview ------------------------------------------------------------------------------------
    def preview(self) -> None:
        """The wave's plan through the engine (a dry run that writes no record), as an editable table."""
        from runbook.engine.wave import wave

        self.message.value = "<i>planning: reading the inventory and checking every row…</i>"
        try:
            request = self.request(dry_run=True)
            result = wave(request, settings=self.settings, context=self.context.replace(record=False, report=False))
        except RunbookError as exc:
            self.message.value = _error(str(exc))
            return
        self.rows = [self._row(r, result.inventory) for r in result.record.get("plan_table") or []]
        failing = [r for r in self.rows if r.row.get("status") == "fail"]
        # the table leaves failing rows out: running it runs the rest, as skip_failing says
        self.previewed = self.request(dry_run=False, skip_failing=bool(failing) or request.skip_failing)
        self.plan_box.children = [w.HTML(_HEADER), *[self._row_view(r) for r in self.rows]]
        self.message.value = (f"<b>{len(self.rows)} rows</b>, {len(failing)} failing (left out; their remedy is "
                              f"shown). Untick a row to leave it out, or pick another target; then Run.")
        self.run_button.disabled = not any(r.include.value for r in self.rows)

    def _row(self, row: dict[str, Any], inventory: Any) -> RowEdit:
        field = "host" if row.get("target_host") or self.kind.value == "evacuate" else "datastore"
        planned = str(row.get(f"target_{field}") or "")
        if field == "host":
            hosts = inventory.hosts
            ok = hosts[(hosts["connection_state"] == "connected") & ~hosts["maintenance"].astype(bool)]
            options = [n for n in ok["name"] if n != row.get("source_host")]
        else:
            options = [n for n in inventory.datastores["name"] if n not in (row.get("source_datastores") or ())]
        options = list(dict.fromkeys([planned, *sorted(map(str, options))] if planned else sorted(map(str, options))))
        runnable = row.get("status") != "fail" and row.get("move_kind") != "none"
        target = w.Dropdown(options=options or [""], value=planned if planned in options else None,
                            layout=w.Layout(width="220px"), disabled=not options)
        include = w.Checkbox(value=runnable, indent=False, layout=w.Layout(width="30px"),
                             disabled=row.get("status") == "fail")
        return RowEdit(row, include, target, field)

    def _row_view(self, r: RowEdit) -> w.HBox:
        row = r.row
        status = str(row.get("status") or "")
        words = row.get("reason") if status != "fail" else f"{row.get('verdict')} — remedy: {row.get('remedy')}"
        label = w.HTML(f"<span class='runbook-wave-vm' style='display:inline-block;width:160px'>"
                       f"{_esc(row.get('vm'))}</span>")
        verdict = w.HTML(f"<span class='runbook-wave-status' style='color:{_COLOURS.get(status, '#333')}'>"
                         f"{_esc(status.upper())}</span> {_esc(words)}")
        box = w.HBox([r.include, label, r.target, verdict])
        box.add_class("runbook-wave-row")
        return box

    # -- Run and Stop -------------------------------------------------------------------------------
    def run(self) -> None:
        """Run the previewed wave (or the edited moves as a plan file) in the background."""
        if self.previewed is None or (self.thread is not None and self.thread.is_alive()):
            return
        try:
            request = self._edited_request() if any(r.edited() for r in self.rows) else self.previewed
        except (OSError, RunbookError) as exc:
            self.message.value = _error(str(exc))
            return
        self.cancel = threading.Event()
        self.live = {str(r.row["vm"]): {"state": "planned" if r.include.value else "left out", "percent": None,
                                        "probes": "", "outage_ms": None, "text": ""} for r in self.rows}
        self.run_button.disabled = self.preview_button.disabled = True
        self.stop_button.disabled = False
        for r in self.rows:
            r.include.disabled = r.target.disabled = True
        self.message.value = f"<i>running: {_esc(request.words())}</i>"
        self._draw(force=True)
        self.thread = threading.Thread(target=self._run, args=(request,), name="runbook-wave-widgets", daemon=True)
        self.thread.start()

    def _edited_request(self) -> WaveRequest:
        """The operator's table as a plan file under the reports directory, and the plan request running it."""
        chosen = [r.entry() for r in self.rows if r.include.value]
        if not chosen:
            raise RunbookError("every row is left out: tick at least one row to run")
        folder = self.context.resolved_reports_dir() / "plans"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"wave-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-edited.yaml"
        path.write_text(planfile.to_yaml(chosen), encoding="utf-8")
        common = {p.name: getattr(self.previewed, p.name) for p in WaveRequest.params()
                  if hasattr(self.previewed, p.name)}
        return build(PlanRequest, {**common, "plan": str(path), "dry_run": False})

    def _run(self, request: WaveRequest) -> None:
        from runbook.engine.wave import wave

        try:
            self.result = wave(request, on_event=self.on_event, settings=self.settings, context=self.context,
                               cancel=self.cancel)
            link = f" — <a href='{_esc(self.result.report.as_uri())}' target='_blank'>change record</a>" \
                if self.result.report else ""
            self.message.value = (f"<b class='runbook-wave-outcome'>{_esc(self.result.outcome)}</b>: "
                                  f"{_esc(self.result.summary)}{link}"
                                  + (f"<br>record: <code>{_esc(self.result.run_dir / 'record.json')}</code>"
                                     if self.result.run_dir else ""))
        except Exception as exc:  # a refusal before its record existed, or a bug: said, never raised in a thread
            self.message.value = _error(f"{type(exc).__name__}: {exc}")
        finally:
            self.stop_button.disabled = True
            self.preview_button.disabled = False
            self._draw(force=True)

    def stop(self) -> None:
        """Stop the wave: running moves finish, nothing new starts (the record says 'cancel')."""
        self.cancel.set()
        self.stop_button.disabled = True
        self.message.value += " <i>stopping: running moves finish, nothing new starts…</i>"

    # -- the live table -----------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """The wave's events (from its threads): each VM's state, progress, probes and outage."""
        with self._lock:
            if isinstance(event, VmState):
                line = self.live.setdefault(event.vm, {"percent": None, "probes": "", "outage_ms": None})
                line.update(state=event.state, text=event.text)
                if event.state == "moved":
                    line["percent"] = 100
                if event.outage_ms is not None:
                    line["outage_ms"] = event.outage_ms
            elif isinstance(event, VmProgress):
                line = self.live.setdefault(event.vm, {"state": "running", "outage_ms": None, "text": ""})
                line["percent"] = event.percent
                if event.probes_sent is not None:
                    line["probes"] = f"{event.probes_sent} sent, {event.probes_lost or 0} lost"
            elif isinstance(event, (WaveStopped, Notice)) and event.line():
                self.message.value += f"<br>{_esc(event.line())}"
                return
            elif not isinstance(event, RunFinished):
                return
        self._draw(force=not isinstance(event, VmProgress))

    def _draw(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._drawn < 0.3:
            return
        self._drawn = time.monotonic()
        with self._lock:
            lines = list(self.live.items())
        body = "".join(
            f"<tr data-vm='{_esc(vm)}'><td>{_esc(vm)}</td><td class='state'>{_esc(v.get('state'))}</td>"
            f"<td>{_percent(v.get('percent'))}</td><td>{_esc(v.get('probes') or '')}</td>"
            f"<td class='outage'>{_outage(v.get('outage_ms'))}</td></tr>" for vm, v in lines)
        self.table.value = ("<style>.runbook-wave-live td, .runbook-wave-live th {padding: 2px 12px; text-align: left}"
                            "</style><table class='runbook-wave-live'><tr><th>VM</th><th>state</th><th>progress</th>"
                            f"<th>probes</th><th>outage</th></tr>{body}</table>")


_COLOURS = {"pass": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828"}
_HEADER = ("<div style='font-weight:bold'><span style='display:inline-block;width:30px'>run</span>"
           "<span style='display:inline-block;width:160px'>VM</span>"
           "<span style='display:inline-block;width:220px'>target</span> verdict and reason</div>")


def _esc(value: Any) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)


def _error(text: str) -> str:
    return f"<span class='runbook-wave-error' style='color:#c62828'>{_esc(text)}</span>"


def _percent(value: Any) -> str:
    return "" if value is None else f"{int(value)} %"


def _outage(value: Any) -> str:
    return "" if value is None else f"{float(value):g} ms"
