"""What a wave says as it goes, beside the single move's events: its plan rows, each VM's state, a stop.

They join :data:`runbook.engine.events.EVENT_TYPES` so that an events file of a wave reads back too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runbook.engine.events import EVENT_TYPES, Event


@dataclass(frozen=True)
class PlanRow(Event):
    """One row of the plan table: VM -> target, the verdict of its checks, the reason for the choice."""

    kind: ClassVar[str] = "plan-row"
    vm: str
    target: str
    status: str  # pass, warn, fail
    verdict: str
    reason: str
    remedy: str = ""

    def line(self) -> str:
        text = f"  {self.status.upper():<5} {self.vm} -> {self.target}: {self.reason}"
        if self.status == "fail":
            text += f"\n        {self.verdict}" + (f"\n        remedy: {self.remedy}" if self.remedy else "")
        return text


@dataclass(frozen=True)
class VmState(Event):
    """A VM of the wave changed state: queued, running (its task was submitted), moved, failed, skipped,
    not started, cancelled."""

    kind: ClassVar[str] = "vm"
    vm: str
    state: str
    text: str = ""
    task: str | None = None
    outage_ms: float | None = None

    def line(self) -> str | None:
        if self.state == "queued":
            return None
        return f"  [{self.state}] {self.vm}" + (f": {self.text}" if self.text else "")


@dataclass(frozen=True)
class VmProgress(Event):
    """A running move's task progress and its probes so far (for live tables; printers show nothing)."""

    kind: ClassVar[str] = "vm-progress"
    vm: str
    percent: int
    probes_sent: int | None = None
    probes_lost: int | None = None

    def line(self) -> str | None:
        return None


@dataclass(frozen=True)
class WaveStopped(Event):
    """A stop rule fired: running moves finish, nothing new starts."""

    kind: ClassVar[str] = "wave-stopped"
    rule: str  # failed move, outage, signal, cancel
    reason: str

    def line(self) -> str:
        return f"stopping the wave ({self.rule}): {self.reason}; running moves finish, nothing new starts"


EVENT_TYPES.update({c.kind: c for c in (PlanRow, VmState, VmProgress, WaveStopped)})
