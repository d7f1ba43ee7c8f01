"""The outcome of a ping run: per-probe timeline, outages, a summary dict, a sentence and a chart.

:class:`ProbeResult` is what :meth:`runbook.ping.ProbeMonitor.stop` returns; it holds plain data only,
so it can also be rebuilt from a saved timeline. The outage arithmetic is the pure :func:`outage_runs`.

Definitions:

* A probe is **lost** when no reply came within the monitor's ``timeout`` of its send.
* An **outage** is a run of consecutive lost probes. Its duration is ``probes_lost * interval`` (the
  resolution is one interval); it starts at the send time of its first lost probe and ends one interval
  after the send of its last one.
* An outage's **phase** is "during switch-over" when it overlaps the second either side of the
  ``switchover`` time (or, without one, the last second before ``task_end``); else "before task",
  "during task" or "after task" by its midpoint; None when no task time is known.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd

__all__ = ["ProbeResult", "OutageRun", "outage_runs", "plot_probes"]

SWITCHOVER_WINDOW = 1.0  # seconds either side of the switch-over (or before task_end) counted as "during switch-over"
# Conventional mark names; summary() reads them when no times are passed.
TASK_START, TASK_END, SWITCHOVER = "task_start", "task_end", "switchover"


class OutageRun(NamedTuple):
    """A run of consecutive lost probes: index of its first probe and how many were lost."""

    first: int
    count: int


def outage_runs(lost: Sequence[bool]) -> list[OutageRun]:
    """Return the runs of consecutive ``True`` values in ``lost`` (the outages), in order."""
    runs: list[OutageRun] = []
    first = None
    for i, flag in enumerate(lost):
        if flag and first is None:
            first = i
        elif not flag and first is not None:
            runs.append(OutageRun(first, i - first))
            first = None
    if first is not None:
        runs.append(OutageRun(first, len(lost) - first))
    return runs


def _utc(when: Any) -> pd.Timestamp | None:
    """A datetime, Timestamp or ISO string as a UTC Timestamp (naive values are taken as UTC)."""
    if when is None:
        return None
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")



class ProbeResult:
    """What a :class:`ProbeMonitor` saw: the per-probe ``timeline`` and the marks, with summaries.

    ``timeline`` columns: ``seq`` (int), ``sent`` (UTC Timestamp), ``replied`` (UTC or NaT),
    ``rtt_ms`` (float, NaN when lost), ``lost`` (bool).
    """

    def __init__(self, *, target: str, address: str, method: str, interval: float, timeout: float,
                 timeline: pd.DataFrame, marks: list[tuple[str, pd.Timestamp]], error: str | None = None,
                 late_replies: int = 0, send_errors: int = 0, skipped_slots: int = 0):
        self.target, self.address, self.method = target, address, method
        self.interval, self.timeout = interval, timeout
        self.timeline, self.marks, self.error = timeline, marks, error
        self.late_replies, self.send_errors, self.skipped_slots = late_replies, send_errors, skipped_slots

    def __repr__(self) -> str:
        return f"<ProbeResult {self.method} {self.target}: {self.describe()}>"

    def mark_time(self, name: str) -> pd.Timestamp | None:
        """The time of the last mark called ``name``, or None."""
        times = [t for n, t in self.marks if n == name]
        return times[-1] if times else None

    def _task_times(self, task_start: Any, task_end: Any, switchover: Any) -> tuple[Any, Any, Any]:
        """Times given here win; missing ones come from the marks of the conventional names."""
        given = {TASK_START: task_start, TASK_END: task_end, SWITCHOVER: switchover}
        return tuple(self.mark_time(name) if when is None else _utc(when) for name, when in given.items())

    def _phase(self, start: pd.Timestamp, end: pd.Timestamp, task_start: Any, task_end: Any,
               switchover: Any) -> str | None:
        """Which part of the migration an outage falls in; None when no task time is known."""
        window = pd.Timedelta(seconds=SWITCHOVER_WINDOW)
        if switchover is not None:
            if start <= switchover + window and end >= switchover - window:
                return "during switch-over"
        elif task_end is not None and start <= task_end and end >= task_end - window:
            return "during switch-over"
        if task_start is None and task_end is None:
            return None
        middle = start + (end - start) / 2
        if task_start is not None and middle < task_start:
            return "before task"
        if task_end is not None and middle > task_end:
            return "after task"
        return "during task"

    def outages(self, task_start: Any = None, task_end: Any = None, switchover: Any = None) -> list[dict]:
        """The outages as JSON-ready dicts: start, end (ISO UTC), duration_ms, probes_lost, phase."""
        task_start, task_end, switchover = self._task_times(task_start, task_end, switchover)
        sent, step = self.timeline["sent"], pd.Timedelta(seconds=self.interval)
        found = []
        for run in outage_runs(self.timeline["lost"].tolist()):
            start, end = sent.iloc[run.first], sent.iloc[run.first + run.count - 1] + step
            found.append({
                "start": start.isoformat(), "end": end.isoformat(),
                "duration_ms": round(run.count * self.interval * 1000, 3), "probes_lost": run.count,
                "first_seq": int(self.timeline["seq"].iloc[run.first]),
                "phase": self._phase(start, end, task_start, task_end, switchover),
            })
        return found

    def summary(self, task_start: Any = None, task_end: Any = None, switchover: Any = None) -> dict:
        """Counts, loss and outages as a JSON-serialisable dict (no NaN: missing values are None).

        Task times default to the marks named ``task_start``, ``task_end`` and ``switchover``.
        """
        outages = self.outages(task_start, task_end, switchover)
        sent, lost = len(self.timeline), int(self.timeline["lost"].sum())
        rtt = self.timeline["rtt_ms"].dropna()
        durations = [o["duration_ms"] for o in outages]

        def ms(value: float) -> float | None:
            return None if pd.isna(value) else round(float(value), 3)

        return {
            "target": self.target, "address": self.address, "method": self.method,
            "interval_ms": round(self.interval * 1000, 3), "timeout_ms": round(self.timeout * 1000, 3),
            "first_sent": self.timeline["sent"].iloc[0].isoformat() if sent else None,
            "last_sent": self.timeline["sent"].iloc[-1].isoformat() if sent else None,
            "probes_sent": sent, "probes_received": sent - lost, "probes_lost": lost,
            "loss_pct": round(100.0 * lost / sent, 3) if sent else 0.0,
            "outages_count": len(outages), "longest_outage_ms": max(durations, default=0.0),
            "total_outage_ms": round(sum(durations), 3),
            "rtt_min_ms": ms(rtt.min()), "rtt_median_ms": ms(rtt.median()),
            "rtt_p95_ms": ms(rtt.quantile(0.95)) if len(rtt) else None, "rtt_max_ms": ms(rtt.max()),
            "late_replies": self.late_replies, "send_errors": self.send_errors,
            "skipped_slots": self.skipped_slots, "error": self.error,
            "marks": [{"name": n, "time": t.isoformat()} for n, t in self.marks],
            "outages": outages,
        }

    def describe(self, task_start: Any = None, task_end: Any = None, switchover: Any = None) -> str:
        """One sentence for the operator, e.g. "3 probes lost (300 ms) of 84, one outage at 12:01:07.4 UTC,
        during switch-over"."""
        s = self.summary(task_start, task_end, switchover)
        digits = 1 if self.interval >= 0.1 else 2
        text = f"{s['probes_lost']} probe{'s' if s['probes_lost'] != 1 else ''} lost"
        if s["probes_lost"]:
            text += f" ({s['total_outage_ms']:g} ms)"
        text += f" of {s['probes_sent']}"
        if s["outages"]:
            longest = max(s["outages"], key=lambda o: o["duration_ms"])
            at = pd.Timestamp(longest["start"]).strftime("%H:%M:%S.%f")[:9 + digits]
            if len(s["outages"]) == 1:
                text += f", one outage at {at} UTC"
            else:
                text += f" in {len(s['outages'])} outages, the longest {longest['duration_ms']:g} ms at {at} UTC"
            if longest["phase"]:
                text += f", {longest['phase']}"
        if self.error:
            text += f" (probing stopped early: {self.error})"
        return text

    def plot(self, ax: Any = None, task_start: Any = None, task_end: Any = None, switchover: Any = None,
             events: Sequence[tuple[Any, str]] | None = None) -> Any:
        """RTT over time with losses shaded red and the task window marked; returns the matplotlib Figure.

        See :func:`plot_probes`.
        """
        return plot_probes(self, ax=ax, task_start=task_start, task_end=task_end, switchover=switchover,
                           events=events)


def plot_probes(result: ProbeResult, ax: Any = None, task_start: Any = None, task_end: Any = None,
                switchover: Any = None, events: Sequence[tuple[Any, str]] | None = None) -> Any:
    """Draw RTT (ms) over UTC time, each outage as a red span, the task window shaded and events as
    labelled vertical lines; return the Figure.

    Uses the object API (no pyplot state, no ``show``), so it works under Agg, in notebooks and in
    reports. ``events`` defaults to the result's marks; task times default to the marks too.
    """
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    task_start, task_end, switchover = result._task_times(task_start, task_end, switchover)
    tl = result.timeline
    to_x = lambda t: mdates.date2num(_utc(t).tz_convert(None).to_datetime64())  # noqa: E731
    # Lost probes are NaN, so the line breaks across each outage instead of bridging it.
    ax.plot([to_x(t) for t in tl["sent"]], tl["rtt_ms"], ".-", color="tab:blue", lw=0.8, ms=2.5,
            label="round trip (ms)")
    for n, outage in enumerate(result.outages(task_start, task_end, switchover)):
        ax.axvspan(to_x(outage["start"]), to_x(outage["end"]), color="red", alpha=0.35, lw=0,
                   label="probes lost" if n == 0 else None)
    if task_start is not None and task_end is not None:
        ax.axvspan(to_x(task_start), to_x(task_end), color="tab:gray", alpha=0.12, lw=0, label="vCenter task")
    marks = [(when, name) for name, when in result.marks] if events is None else list(events)
    for extra, name in ((task_start, "task start"), (task_end, "task end"), (switchover, "switch-over")):
        if extra is not None and not any(_utc(w) == extra for w, _ in marks):
            marks.append((extra, name))
    for when, label in marks:
        x = to_x(when)
        ax.axvline(x, color="tab:green", lw=1, ls="--")
        ax.annotate(str(label), (x, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                    textcoords="offset points", rotation=90, va="top", ha="left", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz="UTC"))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("round trip (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result.method} probes to {result.target} every {result.interval * 1000:g} ms: "
                 f"{result.describe(task_start, task_end, switchover)}", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    return fig
