"""The one owner of a run's record: it creates the record when the run starts and finalises it once.

The engine holds a :class:`Recorder` for every run. ``start()`` makes the run directory (unless the front
made it) and writes ``record.json`` with outcome RUNNING; ``set()`` saves each step; ``finish()`` writes
the outcome, the summary and the exit code that the outcome maps to (:data:`EXIT_OF_OUTCOME`, the only
such mapping), then, for a run whose front does not render the report itself, ``report.html`` and the
reports index. A report or index that cannot be written is said in one notice beside the true outcome;
it never changes the outcome or the exit code. A second ``finish()`` is a programming error.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from runbook.records import record as rec
from runbook.records.record import EXIT_OF_OUTCOME, RunRecord

log = logging.getLogger("runbook")


class Recorder:
    def __init__(self, kind: str, parameters: dict[str, Any], context: Any, emit: Any = None):
        self.kind, self.parameters, self.context = kind, parameters, context
        self.emit = emit or (lambda event: None)
        self.record: RunRecord | None = None
        self.data: dict[str, Any] = {"kind": kind, "outcome": "RUNNING", "summary": "", "parameters": parameters}
        self.report: Path | None = None
        self.finished = False

    @property
    def run_dir(self) -> Path | None:
        return self.record.run_dir if self.record else None

    def start(self, settings: Any = None) -> "Recorder":
        """Create the record (RUNNING) in the run directory; nothing is written for a preview."""
        if not self.context.record:
            return self
        from runbook.records.rundir import make_run_dir

        change_id = self.parameters.get("change_id") or None
        run_dir = Path(self.context.run_dir) if self.context.run_dir else make_run_dir(
            self.context.resolved_reports_dir(), change_id)
        self.record = RunRecord(kind=self.kind, run_dir=run_dir, run_id=run_dir.name, change_id=change_id,
                                parameters=self.parameters, data=rec.load(run_dir) or {})
        self.record.data["via"] = self.context.via
        self.data = self.record.data
        self._saved(lambda: self.record.connected(settings) if settings is not None else self.record.save())
        return self

    def set(self, **values: Any) -> None:
        if self.record is not None:
            self._saved(lambda: self.record.set(**values))
        else:
            self.data.update(rec._plain(values))

    def _saved(self, save: Any) -> None:
        """Save through the schema's check; a record the schema refuses (a bug of ours) is still written, with
        a notice: a run must never lose its true record, nor stop half-way, over a field's shape."""
        from runbook.engine.events import Notice

        try:
            save()
        except rec.RecordInvalid as exc:
            log.warning("%s", exc)
            self.emit(Notice("warning", f"{exc}; it was written as it is"))
            rec.write_atomic(self.record.path, rec.scrub(json.dumps(self.record.data, indent=2, default=str,
                                                                     allow_nan=False) + "\n"))

    def finish(self, outcome: str, summary: str, *, error: BaseException | dict | None = None,
               ping_chart: Any = None, **values: Any) -> dict[str, Any]:
        """Finalise the record; returns its data. ``error``: what stopped the run (type and first line)."""
        from runbook.engine.events import Notice, RunFinished

        if self.finished:
            raise RuntimeError(f"the record of this {self.kind} run was already finalised")
        self.finished = True
        if isinstance(error, BaseException):
            error = {"type": type(error).__name__, "message": first_line(str(error), type(error).__name__)}
        if error is not None:
            values["error"] = error
        if self.record is not None:
            self._saved(lambda: self.record.finish(outcome, summary, **values))
        else:
            self.data.update(rec._plain(values))
            self.data.update(outcome=outcome, summary=summary, exit_code=EXIT_OF_OUTCOME[outcome])
        if self.record is not None and self.context.report:
            try:
                from runbook.records import report

                self.report = report.write_html(self.record.run_dir, self.record.data, ping_chart=ping_chart)
            except Exception as exc:
                self.emit(Notice("warning", f"the report could not be written ({type(exc).__name__}: {exc}); "
                                            f"record.json holds the outcome"))
            try:
                from runbook.records import report

                report.write_index(self.record.run_dir.parent.parent)
            except Exception as exc:
                self.emit(Notice("warning", f"the reports index could not be updated ({type(exc).__name__}: "
                                            f"{exc}); run: runbook reports"))
        self.emit(RunFinished(outcome=outcome, summary=str(summary), exit_code=self.exit_code,
                              record=str(self.record.path) if self.record else None))
        return self.data

    @property
    def exit_code(self) -> int:
        return int(self.data.get("exit_code", EXIT_OF_OUTCOME.get(str(self.data.get("outcome")), 1)))


def first_line(text: Any, default: str) -> str:
    """The first line of an error's text (``default`` when it has none): what a record and a terminal show."""
    text = str(text or "").strip()
    return text.splitlines()[0].strip() if text else default
