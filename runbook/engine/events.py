"""What a run says as it goes: typed events, one sink interface, and the events file a front can follow.

The engine emits events and never prints. The CLI streams them as lines, the notebook prints them as
they come, the widgets render them. A run executed in a kernel (papermill) also appends each event as
one JSON line to ``events.jsonl`` in its run directory, which is how the CLI shows a headless run live.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

log = logging.getLogger("runbook")

EVENTS_FILE = "events.jsonl"


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}

    def line(self) -> str | None:
        """The event as one line for a person (None: nothing worth a line)."""
        return None


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "started"
    run: str  # kind of run
    what: str  # "app-01: host esx-01 -> esx-02"
    vcenter: str
    run_dir: str | None = None

    def line(self) -> str:
        return f"{self.run}: {self.what} on {self.vcenter}"


@dataclass(frozen=True)
class Step(Event):
    kind: ClassVar[str] = "step"
    name: str  # "resolve", "checks", "submit", "task", "ping tail", "verify", "record"
    state: str  # "started" or "ended"
    text: str = ""

    def line(self) -> str | None:
        return self.text or None


@dataclass(frozen=True)
class CheckDone(Event):
    kind: ClassVar[str] = "check"
    status: str  # pass, warn, fail, skip
    check: str
    found: str
    remedy: str = ""

    def line(self) -> str:
        text = f"  {self.status.upper():<5} {self.check}: {self.found}"
        if self.status in ("fail", "warn") and self.remedy:
            text += f"\n        remedy: {self.remedy}"
        return text


@dataclass(frozen=True)
class TaskProgress(Event):
    kind: ClassVar[str] = "progress"
    task: str
    percent: int
    state: str

    def line(self) -> str:
        return f"  task {self.task}: {self.percent}% {self.state}"


@dataclass(frozen=True)
class PingSample(Event):
    kind: ClassVar[str] = "ping"
    target: str
    sent: int
    lost: int
    last_rtt_ms: float | None = None

    def line(self) -> str:
        rtt = f", last {self.last_rtt_ms:.1f} ms" if self.last_rtt_ms is not None else ""
        return f"  ping {self.target}: {self.sent} sent, {self.lost} lost{rtt}"


@dataclass(frozen=True)
class Notice(Event):
    kind: ClassVar[str] = "notice"
    level: str  # "info", "warning"
    text: str

    def line(self) -> str:
        return ("warning: " if self.level == "warning" else "") + self.text


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "finished"
    outcome: str
    summary: str
    exit_code: int
    record: str | None = None

    def line(self) -> str:
        return f"{self.outcome}: {self.summary}".rstrip(": ")


EVENT_TYPES: dict[str, type[Event]] = {c.kind: c for c in (RunStarted, Step, CheckDone, TaskProgress, PingSample,
                                                            Notice, RunFinished)}
Sink = Callable[[Event], None]


def from_dict(data: dict[str, Any]) -> Event | None:
    """An event read back from its JSON form (None for an unknown kind: a newer runbook wrote it)."""
    cls = EVENT_TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class Emitter:
    """Delivers each event to the front's sink and to the events file; a failing sink never stops a run."""

    def __init__(self, sink: Sink | None = None, path: Path | None = None):
        self.sink, self.path = sink, path
        self._lock = threading.Lock()

    @classmethod
    def for_run(cls, sink: Sink | None, context: Any) -> "Emitter":
        """The emitter of a run: the front's sink, and the events file when the context asks for one."""
        follow = getattr(context, "events_file", False) and getattr(context, "run_dir", None)
        return cls(sink, Path(context.run_dir) / EVENTS_FILE if follow else None)

    def __call__(self, event: Event) -> None:
        if self.path is not None:
            with self._lock, contextlib.suppress(OSError):
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as fh:
                    fh.write(json.dumps(event.to_dict(), default=str) + "\n")
        if self.sink is not None:
            try:
                self.sink(event)
            except Exception as exc:  # the display is not the run: log and go on
                log.warning("could not show an event (%s): %s", type(exc).__name__, exc)


@contextlib.contextmanager
def follow(path: Path, sink: Sink, interval: float = 0.05) -> Iterator[None]:
    """Deliver the events another process appends to ``path`` while the block runs (and the rest after)."""
    stop = threading.Event()
    offset = 0

    def drain() -> None:
        nonlocal offset
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # only whole lines
        offset += end
        for raw in chunk[:end].splitlines():
            try:
                event = from_dict(json.loads(raw))
            except ValueError:
                continue
            if event is not None:
                with contextlib.suppress(Exception):
                    sink(event)

    def loop() -> None:
        while not stop.wait(interval):
            drain()

    thread = threading.Thread(target=loop, name="runbook-events", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        drain()


def printer(write: Callable[[str], Any] = print, *, quiet: bool = False,
            every_s: float = 5.0) -> Sink:
    """A sink that prints events as lines (the CLI and the notebook). Progress and ping lines are
    paced: a task's percent when it changes by 10 or more, ping figures every ``every_s`` seconds.
    ``quiet``: only the outcome."""
    state = {"percent": -100, "ping": 0.0}

    def show(event: Event) -> None:
        if quiet and not isinstance(event, RunFinished):
            return
        if isinstance(event, TaskProgress):
            if event.percent < 100 and event.percent - state["percent"] < 10:
                return
            state["percent"] = event.percent
        if isinstance(event, PingSample):
            now = time.monotonic()
            if now - state["ping"] < every_s:
                return
            state["ping"] = now
        text = event.line()
        if text:
            write(text)

    return show


# The wave's events register themselves in EVENT_TYPES; importing them here makes every reader of an events
# file (the CLI's follower, the notebooks) know them without importing the wave engine first.
from runbook.engine import wave_events as _wave_events  # noqa: E402,F401  (defined above: no cycle)
