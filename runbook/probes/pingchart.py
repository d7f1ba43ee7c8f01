"""The outcome of a ping run: per-probe timeline, outages, a summary dict, a sentence and a chart.

:class:`ProbeResult` is what :meth:`runbook.probes.ping.ProbeMonitor.stop` returns; it holds plain data
only, so it can also be rebuilt from a saved timeline. An outage is the time the VM did not answer,
whether the network dropped the probes or held them (an ARP queue, a switch buffer, a guest stunned during
the last copy answers late, not never). Definitions (docs/record.md, section ``ping``, says the same for
readers of the record):

* A probe is **lost** when no reply came while the monitor listened (at least its ``timeout``), **late**
  when its reply came more than ``late_after`` after its send (its RTT is kept), else **answered in time**.
* ``late_after`` is ``max(LATE_INTERVALS * interval, LATE_RTT_FACTOR * baseline RTT)`` unless given. The
  baseline is the median RTT of the replies to probes sent outside the vCenter task (before it started,
  after it ended) when there are at least ``BASELINE_MIN`` of them, else of all replies. It is not the
  socket timeout: a probe held 900 ms in an ARP queue is part of an outage.
* A **silence** is the time between two consecutive replies received (by arrival time, late ones
  included), from the first probe's send to one interval after the last one's. With nothing wrong it
  is about one interval.
* An **outage** is a run of consecutive probes lost or late. It starts at the send of its first probe
  and lasts ``max(probes * interval, silence - interval)``, where the silence is the longest one
  overlapping the run (from its first probe's send to one interval after its last one's). Sampling adds
  one interval to a silence on average (the VM may stop answering just after one probe and come back
  just before another), hence the subtraction; a silence with no probe lost or late in it (a starved
  probe thread, jitter) is no outage.
* An outage's **phase** is "during switch-over" when it overlaps the second either side of the
  ``switchover`` time (or, without one, the last second before ``task_end``); else "before task",
  "during task" or "after task" by its midpoint; None when no task time is known.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["ProbeResult", "OutageRun", "outage_runs", "plot_probes", "LATE_INTERVALS", "LATE_RTT_FACTOR",
           "BASELINE_MIN"]

SWITCHOVER_WINDOW = 1.0  # seconds either side of the switch-over (or before task_end) counted as "during switch-over"
LATE_INTERVALS = 2.0  # a reply later than this many intervals is late ...
LATE_RTT_FACTOR = 2.0  # ... or, if larger, this many times the baseline (median) round trip
BASELINE_MIN = 5  # replies outside the task needed for their median to be the baseline
LISTED_PROBES = 1000  # lost and late probes listed one by one in the summary (the first ones)
# Conventional mark names; summary() reads them when no times are passed.
TASK_START, TASK_END, SWITCHOVER = "task_start", "task_end", "switchover"


class OutageRun(NamedTuple):
    """A run of consecutive probes that failed: index of its first probe and how many."""

    first: int
    count: int


def outage_runs(failed: Sequence[bool]) -> list[OutageRun]:
    """Return the runs of consecutive ``True`` values in ``failed`` (the outages), in order."""
    flags = np.asarray(failed, dtype=bool)
    if not flags.size:
        return []
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [OutageRun(int(a), int(b - a)) for a, b in zip(starts, ends)]


def _utc(when: Any) -> pd.Timestamp | None:
    """A datetime, Timestamp or ISO string as a UTC Timestamp (naive values are taken as UTC)."""
    if when is None:
        return None
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _ns(series: pd.Series) -> np.ndarray:
    """UTC times as int64 nanoseconds since the epoch (NaT as the minimum int64)."""
    return pd.DatetimeIndex(series).as_unit("ns").asi8


def _ms(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 3)


def _duration_words(ms: float, interval: float) -> str:
    """``300 ms`` below a second, else seconds to the resolution of the interval (``1.0 s``, ``1.05 s``)."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.{1 if interval >= 0.1 else 2}f} s"


class ProbeResult:
    """What a :class:`ProbeMonitor` saw: the per-probe ``timeline`` and the marks, with summaries.

    ``timeline`` columns: ``seq`` (int), ``sent`` (UTC Timestamp), ``replied`` (UTC or NaT),
    ``rtt_ms`` (float, NaN when lost), ``lost`` (bool: no reply at all). Whether a reply was late depends
    on ``late_after`` (see the module): :meth:`probes` adds it. ``late_after`` (seconds) fixes the
    threshold instead of the rule; ``late_replies`` counts replies that came after ``timeout``.
    """

    def __init__(self, *, target: str, address: str, method: str, interval: float, timeout: float,
                 timeline: pd.DataFrame, marks: list[tuple[str, pd.Timestamp]], error: str | None = None,
                 late_replies: int = 0, send_errors: int = 0, skipped_slots: int = 0,
                 late_after: float | None = None):
        self.target, self.address, self.method = target, address, method
        self.interval, self.timeout, self.late_after = interval, timeout, late_after
        self.timeline, self.marks, self.error = timeline, marks, error
        self.late_replies, self.send_errors, self.skipped_slots = late_replies, send_errors, skipped_slots
        self._summaries: dict[tuple, dict] = {}  # summary() by its inputs: a move's record asks several times

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

    # -- classification --------------------------------------------------------------------------------
    def rtt_baseline_ms(self, task_start: Any = None, task_end: Any = None) -> float | None:
        """The usual round trip: the median RTT of replies to probes sent outside the task (at least
        ``BASELINE_MIN`` of them), else of all replies; None without replies."""
        task_start, task_end, _ = self._task_times(task_start, task_end, None)
        tl = self.timeline
        rtt = tl["rtt_ms"].to_numpy(dtype=float)
        answered = ~np.isnan(rtt)
        if task_start is not None or task_end is not None:
            sent = _ns(tl["sent"])
            outside = np.zeros(len(rtt), dtype=bool)
            if task_start is not None:
                outside |= sent < pd.Timestamp(task_start).as_unit("ns").value
            if task_end is not None:
                outside |= sent > pd.Timestamp(task_end).as_unit("ns").value
            if int((outside & answered).sum()) >= BASELINE_MIN:
                answered &= outside
        return float(np.median(rtt[answered])) if answered.any() else None

    def late_after_s(self, task_start: Any = None, task_end: Any = None) -> float:
        """Seconds after its send a reply is late: ``late_after`` if given, else the module's rule."""
        if self.late_after is not None:
            return float(self.late_after)
        baseline = self.rtt_baseline_ms(task_start, task_end)
        return max(LATE_INTERVALS * self.interval, LATE_RTT_FACTOR * (baseline or 0.0) / 1000)

    def probes(self, task_start: Any = None, task_end: Any = None) -> pd.DataFrame:
        """The timeline with ``late`` (answered after ``late_after``) and ``state`` (ok, late, lost)."""
        limit_ms = self.late_after_s(task_start, task_end) * 1000
        tl = self.timeline.copy()
        tl["late"] = (tl["rtt_ms"] > limit_ms).fillna(False).astype(bool)
        tl["state"] = np.where(tl["lost"], "lost", np.where(tl["late"], "late", "ok"))
        return tl

    def _silences(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (ns) of every silence: between consecutive replies received, bounded by the first
        send and one interval after the last send (or the last reply, if later)."""
        tl = self.timeline
        if not len(tl):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        sent = _ns(tl["sent"])
        replies = np.sort(_ns(tl.loc[~tl["lost"] & tl["replied"].notna(), "replied"]))
        end = max(int(sent[-1]) + round(self.interval * 1e9), int(replies[-1]) if len(replies) else 0)
        points = np.concatenate(([sent[0]], replies, [end]))
        return points[:-1], points[1:]

    # -- outages ---------------------------------------------------------------------------------------
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
        """The outages as JSON-ready dicts: ``start``, ``end`` (ISO UTC), ``duration_ms``, ``probes_lost``,
        ``probes_late``, ``kind`` (lost, late, lost and late), ``silence_ms``, ``rtt_max_ms`` (of its late
        probes), ``first_seq``, ``last_seq``, ``phase``."""
        task_start, task_end, switchover = self._task_times(task_start, task_end, switchover)
        tl = self.probes(task_start, task_end)
        sent, step = _ns(tl["sent"]), round(self.interval * 1e9)
        gap_start, gap_end = self._silences()
        gaps = gap_end - gap_start
        lost_f, late_f = tl["lost"].to_numpy(bool), tl["late"].to_numpy(bool)
        rtt, seq = tl["rtt_ms"].to_numpy(float), tl["seq"].to_numpy()
        found = []
        for run in outage_runs(lost_f | late_f):
            span = slice(run.first, run.first + run.count)
            first, last = int(sent[run.first]), int(sent[run.first + run.count - 1]) + step
            # The silences overlapping [first, last): both ends are sorted, so they are one slice.
            lo, hi = np.searchsorted(gap_end, first, "right"), np.searchsorted(gap_start, last, "left")
            silence = int(gaps[lo:hi].max()) if hi > lo else 0
            duration_ns = max(run.count * step, silence - step)
            start = pd.Timestamp(first, unit="ns", tz="UTC")
            end = start + pd.Timedelta(duration_ns, unit="ns")
            lost, late = int(lost_f[span].sum()), int(late_f[span].sum())
            found.append({
                "start": start.isoformat(), "end": end.isoformat(), "duration_ms": round(duration_ns / 1e6, 3),
                "probes_lost": lost, "probes_late": late,
                "kind": "lost and late" if lost and late else "lost" if lost else "late",
                "silence_ms": round(silence / 1e6, 3),
                "rtt_max_ms": _ms(rtt[span][late_f[span]].max()) if late else None,
                "first_seq": int(seq[span][0]), "last_seq": int(seq[span][-1]),
                "phase": self._phase(start, end, task_start, task_end, switchover),
            })
        return found

    def summary(self, task_start: Any = None, task_end: Any = None, switchover: Any = None) -> dict:
        """Counts, outages and round trips as a JSON-serialisable dict (no NaN: missing values are None).

        Task times default to the marks named ``task_start``, ``task_end`` and ``switchover``. Made once
        per set of inputs (a move's record, figures and sentence all ask for it); each call gets its own copy.
        """
        task_start, task_end, switchover = self._task_times(task_start, task_end, switchover)
        key = (task_start, task_end, switchover, self.late_after, self.error, id(self.timeline),
               len(self.timeline), tuple(self.marks))
        cache = self.__dict__.setdefault("_summaries", {})
        if key not in cache:
            cache[key] = self._summary(task_start, task_end, switchover)
        return copy.deepcopy(cache[key])

    def _summary(self, task_start: Any, task_end: Any, switchover: Any) -> dict:
        outages = self.outages(task_start, task_end, switchover)
        tl = self.probes(task_start, task_end)
        sent, lost, late = len(tl), int(tl["lost"].sum()), int(tl["late"].sum())
        rtt = tl["rtt_ms"].dropna()
        longest = max(outages, key=lambda o: o["duration_ms"], default=None)
        gap_start, gap_end = self._silences()
        late_rows, lost_rows = tl[tl["late"]].head(LISTED_PROBES), tl[tl["lost"]].head(LISTED_PROBES)
        return {
            "target": self.target, "address": self.address, "method": self.method,
            "interval_ms": round(self.interval * 1000, 3), "timeout_ms": round(self.timeout * 1000, 3),
            "late_after_ms": round(self.late_after_s(task_start, task_end) * 1000, 3),
            "late_rule": (f"given: {self.late_after * 1000:g} ms" if self.late_after is not None else
                          f"max({LATE_INTERVALS:g} x interval, {LATE_RTT_FACTOR:g} x baseline RTT)"),
            "rtt_baseline_ms": _ms(self.rtt_baseline_ms(task_start, task_end)),
            "first_sent": tl["sent"].iloc[0].isoformat() if sent else None,
            "last_sent": tl["sent"].iloc[-1].isoformat() if sent else None,
            "probes_sent": sent, "probes_received": sent - lost, "probes_lost": lost, "probes_late": late,
            "loss_pct": round(100.0 * lost / sent, 3) if sent else 0.0,
            "outages_count": len(outages), "longest_outage_ms": longest["duration_ms"] if longest else 0.0,
            "longest_outage_kind": longest["kind"] if longest else None,
            "total_outage_ms": round(float(sum(o["duration_ms"] for o in outages)), 3),
            "longest_silence_ms": round(float((gap_end - gap_start).max()) / 1e6, 3) if sent else 0.0,
            "rtt_min_ms": _ms(rtt.min()), "rtt_median_ms": _ms(rtt.median()),
            "rtt_p95_ms": _ms(rtt.quantile(0.95)) if len(rtt) else None, "rtt_max_ms": _ms(rtt.max()),
            "late_replies": self.late_replies, "send_errors": self.send_errors,
            "skipped_slots": self.skipped_slots, "error": self.error,
            "marks": [{"name": n, "time": t.isoformat()} for n, t in self.marks],
            "outages": outages,
            "late_probes": [{"seq": int(r.seq), "sent": r.sent.isoformat(), "rtt_ms": _ms(r.rtt_ms)}
                            for r in late_rows.itertuples()],
            "lost_probes": [{"seq": int(r.seq), "sent": r.sent.isoformat()} for r in lost_rows.itertuples()],
        }

    def describe(self, task_start: Any = None, task_end: Any = None, switchover: Any = None) -> str:
        """One sentence for the operator, e.g. "1.0 s without replies: 19 probes answered late, 1 lost,
        at 12:01:07.4 UTC, during switch-over (142 probes)"."""
        s = self.summary(task_start, task_end, switchover)
        sent = s["probes_sent"]
        if not sent:
            text = "no probe was sent"
        elif not s["outages"]:
            text = f"no outage: all {sent} probes answered within {s['late_after_ms']:g} ms"
        else:
            longest = max(s["outages"], key=lambda o: o["duration_ms"])
            digits = 1 if self.interval >= 0.1 else 2
            at = pd.Timestamp(longest["start"]).strftime("%H:%M:%S.%f")[:9 + digits]
            text = (f"{_duration_words(longest['duration_ms'], self.interval)} without replies: "
                    f"{self._counts(longest['probes_late'], longest['probes_lost'])}, at {at} UTC")
            if longest["phase"]:
                text += f", {longest['phase']}"
            if len(s["outages"]) == 1:
                text += f" ({sent} probes)"
            else:
                text += (f"; {len(s['outages'])} outages, {_duration_words(s['total_outage_ms'], self.interval)}"
                         f" in all ({sent} probes: {s['probes_late']} late, {s['probes_lost']} lost)")
        if self.error:
            text += f" (probing stopped early: {self.error})"
        return text

    @staticmethod
    def _counts(late: int, lost: int) -> str:
        """``19 probes answered late, 1 lost``, ``3 probes lost``, ``1 probe answered late``."""
        first, rest = (late, "answered late") if late else (lost, "lost")
        text = f"{first} probe{'s' if first != 1 else ''} {rest}"
        return text + f", {lost} lost" if late and lost else text

    def plot(self, ax: Any = None, task_start: Any = None, task_end: Any = None, switchover: Any = None,
             events: Sequence[tuple[Any, str]] | None = None) -> Any:
        """RTT over time, late replies and lost probes marked, outages shaded red, the task window marked;
        returns the matplotlib Figure. See :func:`plot_probes`."""
        return plot_probes(self, ax=ax, task_start=task_start, task_end=task_end, switchover=switchover,
                           events=events)


def plot_probes(result: ProbeResult, ax: Any = None, task_start: Any = None, task_end: Any = None,
                switchover: Any = None, events: Sequence[tuple[Any, str]] | None = None) -> Any:
    """Draw RTT (ms) over UTC send time: replies in time as a line, late replies as orange triangles at
    their RTT, lost probes as red crosses on the axis, each outage as a red span over its lost and late
    probes, the late threshold dotted, the task window shaded and events as labelled vertical lines;
    return the Figure.

    Uses the object API (no pyplot state, no ``show``), so it works under Agg, in notebooks and in
    reports. ``events`` defaults to the result's marks; task times default to the marks too.
    """
    import matplotlib.dates as mdates
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    task_start, task_end, switchover = result._task_times(task_start, task_end, switchover)
    tl = result.probes(task_start, task_end)
    to_x = lambda t: mdates.date2num(_utc(t).tz_convert(None).to_datetime64())  # noqa: E731
    x = mdates.date2num(tl["sent"].dt.tz_convert(None).to_numpy()) if len(tl) else np.empty(0)
    # Late and lost probes are NaN on the line, so it breaks across an outage instead of bridging it.
    ax.plot(x, tl["rtt_ms"].where(~tl["late"]), ".-", color="tab:blue", lw=0.8, ms=2.5,
            label="answered in time (RTT ms)")
    late, lost = tl["late"].to_numpy(), tl["lost"].to_numpy()
    if late.any():
        ax.plot(x[late], tl["rtt_ms"][late], "v", color="tab:orange", ms=4, ls="none",
                label="answered late (RTT ms)")
    if lost.any():
        ax.plot(x[lost], np.zeros(int(lost.sum())), "x", color="red", ms=4, ls="none", clip_on=False,
                label="lost (no reply)")
    limit = result.late_after_s(task_start, task_end) * 1000
    ax.axhline(limit, color="tab:orange", lw=0.8, ls=":", label=f"late after {limit:g} ms")
    # The outages as one collection of full-height spans (an hour at 10 ms may hold thousands).
    spans = [(to_x(o["start"]), to_x(o["end"])) for o in result.outages(task_start, task_end, switchover)]
    if spans:
        ax.add_collection(PolyCollection([[(a, 0), (a, 1), (b, 1), (b, 0)] for a, b in spans],
                                         transform=ax.get_xaxis_transform(), facecolor="red", alpha=0.25, lw=0,
                                         label="outage (no reply in time)"), autolim=False)
    if task_start is not None and task_end is not None:
        ax.axvspan(to_x(task_start), to_x(task_end), color="tab:gray", alpha=0.12, lw=0, label="vCenter task")
    marks = [(when, name) for name, when in result.marks] if events is None else list(events)
    for extra, name in ((task_start, "task start"), (task_end, "task end"), (switchover, "switch-over")):
        if extra is not None and not any(_utc(w) == extra for w, _ in marks):
            marks.append((extra, name))
    labels = []
    for when, label in sorted(marks, key=lambda m: to_x(m[0])):
        at = to_x(when)
        ax.axvline(at, color="tab:green", lw=1, ls="--")
        labels.append(ax.annotate(str(label), (at, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                                  textcoords="offset points", rotation=90, va="top", ha="left", fontsize=8,
                                  arrowprops={"arrowstyle": "-", "color": "tab:green", "lw": 0.5,
                                              "shrinkA": 0, "shrinkB": 0}))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz="UTC"))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("round trip (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result.method} probes to {result.target} every {result.interval * 1000:g} ms: "
                 f"{result.describe(task_start, task_end, switchover)}", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    spread_labels(ax, labels)
    return fig


LABEL_GAP_PT = 1.5  # points between two event labels side by side


def spread_labels(ax: Any, labels: Sequence[Any]) -> None:
    """Move the event labels (rotated annotations at the top of ``ax``, sorted by x) sideways so that no two
    overlap: each starts where the one before it ends, a thin line leading back to its event; a run of labels
    that would leave the axes on the right is pushed back left. Labels do not take part in the layout, so
    placing them never moves the axes they were measured against."""
    if not labels:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    fig = ax.figure
    for label in labels:
        label.set_in_layout(False)
    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    canvas.draw()  # the layout engine places the axes; the labels are measured where they will be drawn
    renderer = canvas.get_renderer()
    to_pt = 72.0 / fig.dpi
    gap = LABEL_GAP_PT / to_pt
    anchors = [ax.transData.transform((label.xy[0], 0))[0] for label in labels]
    widths = [Text.get_window_extent(label, renderer).width for label in labels]  # the text, not its leader
    lefts, edge = [], -float("inf")
    for at, width in zip(anchors, widths):
        left = max(at + 2 / to_pt, edge + gap)
        lefts.append(left)
        edge = left + width
    right = ax.get_window_extent(renderer).x1
    for i in range(len(lefts) - 1, -1, -1):
        limit = right - widths[i] if i == len(lefts) - 1 else lefts[i + 1] - gap - widths[i]
        lefts[i] = min(lefts[i], limit)
    for label, at, left in zip(labels, anchors, lefts):
        label.xyann = ((left - at) * to_pt, -2)
