"""The wizard's run panel: what a running move shows where the operator looks, from the engine's events.

Beside the Migrate button: the task's progress bar and the phase it is in, named for every wait (checks,
submitting, task N %, ping tail, verifying), and Cancel; right under it, the live ping readout and a small
chart of the probes (:mod:`runbook.fronts.wizard_probes`). Also the HTML pieces of the result: the outcome
banner, one-line errors, and the change record as a link that opens it.
"""
from __future__ import annotations

import html
import os
import threading
import time
import traceback
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from runbook.engine.events import Event, PingSample, RunFinished, Step, TaskProgress
from runbook.errors import RunbookError
from runbook.fronts.wizard_probes import ProbeChart

_BANNER = {"SUCCEEDED": ("#1e7b34", "#e6f4ea"), "NO CHANGE": ("#1e7b34", "#e6f4ea"),
           "DRY RUN": ("#2f5d8a", "#e8f0fa")}
_FAIL_COLOURS = ("#b3261e", "#fce8e6")
GOOD_OUTCOMES = ("SUCCEEDED", "NO CHANGE", "DRY RUN")
#: How each step of the engine is named while it runs.
PHASES = {"resolve": "looking up", "checks": "checks", "ping": "probes", "submit": "submitting", "task": "task",
          "ping tail": "ping tail", "verify": "verifying", "record": "writing the record"}


def html_table(rows: list[tuple[str, str]]) -> str:
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
            f'<div>{html.escape(str(data.get("summary") or ""))}</div>{html_table(figures)}</div>')


def error_html(exc: BaseException) -> str:
    """One red line for the runbook's own errors (they explain themselves), the traceback for a bug."""
    if isinstance(exc, RunbookError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (f'<pre class="rb-error" style="color:#b3261e;background:#fce8e6;padding:6px 10px;'
            f'white-space:pre-wrap">{html.escape(text)}</pre>')


def report_link(report: Path | str, start: Path | str | None = None) -> str:
    """The change record as a link that opens it: relative to the kernel's directory (the notebook's), which
    JupyterLab resolves against the notebook and opens when the record is under its root (``reports/`` of
    the project is); the full path is shown beside it for a record elsewhere."""
    report = Path(report).resolve()
    rel = os.path.relpath(report, Path(start or os.getcwd()).resolve())
    href = urllib.parse.quote(Path(rel).as_posix())
    return (f'<div class="rb-report" style="color:#555">Change record: <a class="rb-report-link" href="{href}" '
            f'target="_blank" rel="noopener">{html.escape(report.parent.name)}/{html.escape(report.name)}</a> '
            f'<span style="font-size:0.9em">({html.escape(str(report))}, and record.json beside it)</span></div>')


class RunPanel:
    """Progress, phase, Cancel, the live ping readout and chart of one run, fed by the engine's events."""

    def __init__(self, on_cancel: Callable[[], None]):
        self.progress = w.IntProgress(value=0, min=0, max=100, description="Task",
                                      style={"description_width": "40px"}, layout=w.Layout(width="260px"))
        self.progress.add_class("rb-progress")
        self.state = w.Label()  # the phase: "task 45% running", "ping tail: ...", "verifying: ...", the outcome
        self.state.add_class("rb-state")
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="danger",
                                      layout=w.Layout(width="100px"))
        self.cancel_button.add_class("rb-cancel")
        self.cancel_button.on_click(lambda _: on_cancel())
        self.ping_label = w.Label()
        self.ping_label.add_class("rb-ping")
        self.tail_s = 0.0
        self._ticking: object | None = None
        self.chart = ProbeChart()
        self.live = w.VBox([self.ping_label, self.chart.widget], layout=w.Layout(margin="0 0 0 8px"))
        self.live.add_class("rb-live")
        for widget in (self.progress, self.state, self.cancel_button, self.live):
            widget.layout.display = "none"

    def show(self, visible: bool) -> None:
        for widget in (self.progress, self.state, self.cancel_button, self.live):
            widget.layout.display = None if visible else "none"

    def reset(self) -> None:
        """Nothing of a previous run: hidden, empty."""
        self.show(False)
        self.progress.value, self.state.value, self.ping_label.value = 0, "", ""
        self.chart.reset()

    def start(self, tail_s: float = 0.0) -> None:
        """A run begins; ``tail_s``: how long the probes go on after the task (counted down meanwhile)."""
        self.tail_s = tail_s
        self.reset()
        self.progress.bar_style = "info"
        self.state.value = "starting"
        self.cancel_button.disabled = False
        self.show(True)

    def on_event(self, event: Event) -> None:
        """Render one of the engine's events (called from the run's thread)."""
        self._ticking = None  # any event ends the countdown of the ping tail
        if isinstance(event, TaskProgress):
            self.progress.value = max(0, min(100, event.percent))
            self.state.value = f"task {event.percent}% {event.state}"
        elif isinstance(event, PingSample):
            self.ping_label.value = "Ping " + (event.line() or "").strip().removeprefix("ping ")
            self.chart.add(event)
        elif isinstance(event, Step):
            self._step(event)
        elif isinstance(event, RunFinished):
            self.state.value = event.outcome

    def _step(self, event: Step) -> None:
        phase = PHASES.get(event.name, event.name)
        if event.name == "task" and event.state == "started":
            self.state.value = "task 0%"
        elif event.name == "checks":
            self.state.value = f"checks: {event.text}" if event.state == "ended" else "checks"
        elif event.name == "ping tail":
            self.chart.draw()
            self.state.value = f"ping tail: {event.text}"
            if self.tail_s > 1:
                self._count_down(self.tail_s)
        elif event.text and event.name != "ping":
            self.state.value = f"{phase}: {event.text}" if not event.text.startswith(phase) else event.text

    def _count_down(self, seconds: float) -> None:
        """Say every half second how long the ping tail still lasts, until the next event."""
        token = self._ticking = object()
        end = time.monotonic() + seconds

        def tick() -> None:
            while self._ticking is token and (left := end - time.monotonic()) > 0:
                self.state.value = f"ping tail: {left:.0f} s left, probing after the task"
                time.sleep(0.5)

        threading.Thread(target=tick, name="runbook-ping-tail", daemon=True).start()

    def finish(self, outcome: str, ping_text: str) -> None:
        self._ticking = None
        self.chart.draw()
        self.progress.bar_style = "success" if outcome in GOOD_OUTCOMES else "danger"
        if outcome == "SUCCEEDED":
            self.progress.value = 100
        self.state.value = outcome
        if ping_text:
            self.ping_label.value = ping_text
        self.cancel_button.disabled = True
