"""What a run leaves: its outcome, its exit code, its record, and what the fronts show of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """How a run ended. ``exit_code`` is the outcome's (records.record.EXIT_OF_OUTCOME), never a front's own.

    ``record`` is the record's data; ``run_dir`` and ``report`` are None for a preview that wrote
    nothing. ``state`` is the kind's own findings (a move's :class:`MoveState`, the inventory's tables)
    for a front to show. ``notices`` are problems beside the outcome (a report that could not be written).
    """

    record: dict[str, Any]
    exit_code: int
    run_dir: Path | None = None
    report: Path | None = None
    notebook: Path | None = None
    state: Any = None
    inventory: Any = None
    notices: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return str(self.record.get("outcome", "UNKNOWN"))

    @property
    def summary(self) -> str:
        return str(self.record.get("summary", ""))

    @property
    def html(self) -> Path | None:  # the name the pipeline's result had
        return self.report

    @classmethod
    def of(cls, recorder: Any, **values: Any) -> "RunResult":
        return cls(record=recorder.data, exit_code=recorder.exit_code, run_dir=recorder.run_dir,
                   report=recorder.report, **values)
