"""A wave's record values: each VM's entry (outcome, task times, outage, before and after, its own record),
the key figures, the concurrency the moves reached against the limits, and the timeline chart.

Plain functions over the finished moves; the engine (:mod:`runbook.engine.wave`) calls them and the
recorder writes what they return.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runbook.domain.concurrency import Limits, Move, peaks
from runbook.records.record import iso

#: A VM's status in the wave, from its move's outcome.
STATUS_OF_OUTCOME = {"SUCCEEDED": "moved", "NO CHANGE": "moved", "CANCELLED": "cancelled", "FAILED": "failed",
                     "CHECKS FAILED": "failed", "REFUSED": "failed", "TIMED OUT": "failed", "UNKNOWN": "unknown"}
STATUSES = ("moved", "failed", "cancelled", "unknown", "skipped", "not started")


def entry(row: Any, *, status: str, result: Any = None, run_dir: Path | None = None, wave_dir: Path | None = None,
          slot: tuple[dt.datetime | None, dt.datetime | None] = (None, None), ready: dt.datetime | None = None,
          note: str = "") -> dict[str, Any]:
    """One VM's line of the wave's ``moves``: what happened to it, when, and where its own record is.

    ``ready``: when the move was prepared (checked, locked, probing) and reached the wave's gate; ``slot``:
    from its admission within the limits to its task's end. ``gate_s``: how long it waited at the gate."""
    data: dict[str, Any] = {"vm": row.vm, "vm_moid": row.vm_moid, "status": status,
                            "target_host": row.target_host, "target_datastore": row.target_datastore,
                            "outcome": None, "summary": note, "record": None, "task": None, "task_state": None,
                            "queued": None, "started": None, "completed": None, "task_s": None,
                            "duration_s": None, "outage_ms": None, "probes_lost": None, "probes_sent": None,
                            "before": None, "after": None, "slot_start": iso(slot[0]), "slot_end": iso(slot[1]),
                            "ready": iso(ready), "gate_s": round((slot[0] - ready).total_seconds(), 3)
                            if slot[0] and ready else None}
    if result is None:
        return data
    record = result.record
    task = record.get("task") or {}
    ping = record.get("ping") or {}
    placement = record.get("placement") or {}
    data.update(outcome=result.outcome, summary=result.summary, task=task.get("id"), task_state=task.get("state"),
                queued=task.get("queued"), started=task.get("started"), completed=task.get("completed"),
                task_s=task.get("duration_s"), duration_s=record.get("duration_s"),
                outage_ms=ping.get("longest_outage_ms"), probes_lost=ping.get("probes_lost"),
                probes_sent=ping.get("probes_sent"), before=placement.get("before"), after=placement.get("after"))
    if run_dir is not None and wave_dir is not None:
        data["record"] = (Path(run_dir) / "record.json").relative_to(wave_dir).as_posix()
    return data


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def intervals(moves: Sequence[dict[str, Any]], rows: dict[str, Move]) -> list[tuple[dt.datetime, dt.datetime, Move]]:
    """Each move's vCenter task from start to end (the times the vCenter reports), with what it occupied."""
    found = []
    for m in moves:
        start, end = _when(m.get("started")) or _when(m.get("queued")), _when(m.get("completed"))
        if start and end and m["vm"] in rows:
            found.append((start, end, rows[m["vm"]]))
    return found


def concurrency(moves: Sequence[dict[str, Any]], rows: dict[str, Move], limits: Limits) -> list[dict[str, Any]]:
    """The most each host and datastore carried at once (from the vCenter's task times), with its limit."""
    return peaks(intervals(moves, rows), limits)


def figures(words: str, moves: Sequence[dict[str, Any]], wall_s: float | None) -> list[tuple[str, str]]:
    count = {s: sum(1 for m in moves if m["status"] == s) for s in STATUSES}
    outages = [m["outage_ms"] for m in moves if m.get("outage_ms") is not None]
    tasks = [m["task_s"] for m in moves if m.get("task_s") is not None]
    fig = [("Wave", words), ("VMs", str(len(moves))),
           ("Outcome per VM", ", ".join(f"{n} {s}" for s, n in count.items() if n) or "none")]
    if tasks:
        fig.append(("Task time", f"{sum(tasks):.1f} s in all, longest {max(tasks):.1f} s"))
    if wall_s is not None:
        fig.append(("Wall time", f"{wall_s:.1f} s"))
    if outages:
        worst = max(moves, key=lambda m: m.get("outage_ms") or -1)
        fig.append(("Longest outage", f"{worst['outage_ms']:g} ms ({worst['vm']})"))
    return fig


def timeline_chart(moves: Sequence[dict[str, Any]], rows: dict[str, Move], limits: Limits, path: Path) -> Path | None:
    """A Gantt of the moves (one bar per VM, its vCenter task) beside each VM's longest outage, above the
    moves at once per host against its vMotion limit; written as PNG to ``path``. None when no task ran."""
    fig = timeline_figure(moves, rows, limits)
    if fig is None:
        return None
    fig.savefig(path, dpi=90)
    return path


def prepare_chart() -> None:
    """Import what :func:`timeline_chart` draws with (about 1 s of CPU), so that a wave can do it while its
    last moves run their tails rather than after them."""
    import importlib

    for module in ("matplotlib.figure", "matplotlib.ticker", "matplotlib.backends.backend_agg"):
        importlib.import_module(module)


def timeline_figure(moves: Sequence[dict[str, Any]], rows: dict[str, Move], limits: Limits) -> Any:
    """The figure of :func:`timeline_chart` (a matplotlib Figure, no pyplot), or None when no task ran.

    The outage panel draws a bar per VM on an axis from 0 ms when some VM had an outage; when none had,
    it says so in words (every probed VM answered in time, or no VM was probed) instead of an axis of zeros."""
    spans = [(m, _when(m.get("started")) or _when(m.get("queued")), _when(m.get("completed"))) for m in moves]
    spans = [(m, s, e) for m, s, e in spans if s and e]
    if not spans:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    colours = {"moved": "#2e7d32", "failed": "#c62828", "cancelled": "#ef6c00", "unknown": "#6a1b9a"}
    t0 = min(s for _, s, _ in spans)
    height = min(2 + 0.18 * len(spans), 14)
    fig = Figure(figsize=(11, height + 2.5))
    grid = fig.add_gridspec(2, 2, width_ratios=[4, 1], height_ratios=[height, 2.5])
    gantt = fig.add_subplot(grid[0, 0])
    outage = fig.add_subplot(grid[0, 1], sharey=gantt)
    load = fig.add_subplot(grid[1, 0], sharex=gantt)
    for i, (m, s, e) in enumerate(spans):
        gantt.barh(i, (e - s).total_seconds(), left=(s - t0).total_seconds(), height=0.7,
                   color=colours.get(m["status"], "#757575"))
    gantt.set_yticks(range(len(spans)), [m["vm"] for m, _, _ in spans], fontsize=7)
    gantt.invert_yaxis()
    gantt.set_title("Moves of the wave (vCenter task start to end)")
    _outage_panel(outage, [m.get("outage_ms") for m, _, _ in spans], MaxNLocator)
    points = sorted({(s - t0).total_seconds() for _, s, _ in spans} | {(e - t0).total_seconds() for _, _, e in spans})
    hosts = sorted({h for m, _, _ in spans if m["vm"] in rows for h in rows[m["vm"]].hosts})
    for i, host in enumerate(hosts):
        counts = [sum(1 for m, s, e in spans if m["vm"] in rows and host in rows[m["vm"]].hosts
                      and (s - t0).total_seconds() <= t < (e - t0).total_seconds()) for t in points]
        # hosts often carry the same count at once: each later line thinner and dashed, so none hides another
        load.step(points, counts, where="post", label=host, linewidth=max(1.0, 3.2 - 0.8 * i),
                  linestyle=("-", "--", ":", "-.")[i % 4])
    limit = max((limits.vmotions_on(h) for h in hosts), default=0)
    if limit:
        load.axhline(limit, color="#c62828", linestyle="--", label=f"vMotion limit per host ({limit})")
    load.set_ylabel("moves at once")
    load.set_xlabel("seconds since the first task started")
    load.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def _outage_panel(ax: Any, outages: list[Any], locator: Any) -> None:
    """Each VM's longest outage (ms) as a bar from 0; with no outage at all, a sentence saying why."""
    measured = [o for o in outages if isinstance(o, (int, float))]
    top = max(measured, default=0)
    ax.tick_params(axis="y", labelleft=False)
    if top > 0:
        ax.barh(range(len(outages)), [o if isinstance(o, (int, float)) else 0 for o in outages], height=0.7,
                color="#1565c0")
        ax.set_xlim(0, top * 1.15)
        ax.xaxis.set_major_locator(locator(nbins=3, integer=True))
        ax.set_title("Longest outage (ms)")
        return
    ax.set_title("Longest outage")
    ax.set_xticks([])
    count = f"all {len(measured)} probed VMs" if len(measured) != 1 else "the probed VM"
    words = (f"no outage:\n{count}\nanswered every probe\nin time" if measured
             else "no outage measured:\nno VM was probed")
    ax.text(0.5, 0.5, words, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="#2e7d32"
            if measured else "#555555")
