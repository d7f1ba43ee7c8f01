"""Where a run's record goes and which front started it, passed explicitly (never through the environment).

A front makes a :class:`RunContext` and hands it to the engine. The papermill pipeline writes it as
``context.json`` into the run directory it made and passes that path as the notebook parameter
``run_context``; the notebook's first cell reads it back with :func:`load`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from runbook.errors import BadInput

CONTEXT_FILE = "context.json"
VIAS = ("headless", "notebook", "widgets", "app", "python")


@dataclass(frozen=True)
class RunContext:
    """How a run is recorded.

    ``reports_dir``: where run directories are made (default ``$RUNBOOK_REPORTS`` or ``reports/``).
    ``run_dir``: the run's directory when a front already made it (the pipeline); else the engine makes one.
    ``via``: the front, recorded as the record's ``via``. ``record``: False for a preview that writes
    nothing (the widgets' Check). ``report``: the engine writes ``report.html`` and updates the index
    when the run ends; False when the front renders the report itself (the pipeline, from the executed
    notebook). ``events_file``: also append every event to ``events.jsonl`` (for a front that follows
    a run in another process). ``with_code``: the pipeline's report shows the code cells.
    """

    reports_dir: Path | None = None
    run_dir: Path | None = None
    via: str = "python"
    record: bool = True
    report: bool = True
    events_file: bool = False
    with_code: bool = False

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise BadInput(f"via {self.via!r} is not one of {', '.join(VIAS)}")

    def resolved_reports_dir(self) -> Path:
        from runbook.records.record import default_reports_dir

        return Path(self.reports_dir) if self.reports_dir else default_reports_dir()

    def replace(self, **values: Any) -> "RunContext":
        return replace(self, **values)

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("reports_dir", "run_dir"):
            data[key] = str(data[key]) if data[key] is not None else None
        return json.dumps(data, indent=1)

    def save(self, path: Path) -> Path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())
        return path


def load(path: str | Path | None, *, default_via: str = "notebook") -> RunContext:
    """The context a front wrote (``run_context`` parameter); a notebook run by hand gets the default."""
    if not path:
        return RunContext(via=default_via)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"run_context {str(path)!r} cannot be read ({exc}): leave it empty when running a "
                       f"notebook by hand") from None
    for key in ("reports_dir", "run_dir"):
        if data.get(key):
            data[key] = Path(data[key])
    known = RunContext.__dataclass_fields__
    return RunContext(**{k: v for k, v in data.items() if k in known})
