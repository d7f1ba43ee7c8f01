"""The record's charts read at a glance: event labels of the ping chart never overlap, counts get whole-number
ticks, and the capacity chart's legend covers no label. Checked on what matplotlib lays out (the boxes of the
drawn texts), not on how the code means to place them."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation, Text

from runbook.probes.pingchart import ProbeResult
from runbook.records import charts


def _probes(events_at: list[float]) -> tuple[ProbeResult, list]:
    """Ten seconds of probes every 100 ms, a 600 ms outage, and events at the given seconds."""
    t0 = pd.Timestamp("2026-12-01T12:00:00Z")
    n = 100
    sent = pd.Series([t0 + pd.Timedelta(milliseconds=100 * i) for i in range(n)])
    lost = np.zeros(n, bool)
    lost[50:56] = True
    rtt = np.where(lost, np.nan, 0.4)
    replied = pd.Series([s + pd.Timedelta(milliseconds=0.4) if not x else pd.NaT for s, x in zip(sent, lost)])
    timeline = pd.DataFrame({"seq": np.arange(n), "sent": sent, "replied": replied, "rtt_ms": rtt, "lost": lost})
    marks = [("task_start", t0 + pd.Timedelta(seconds=2)), ("task_end", t0 + pd.Timedelta(seconds=5.7))]
    result = ProbeResult(target="web-01", address="10.0.0.1", method="icmp", interval=0.1, timeout=1.0,
                         timeline=timeline, marks=marks)
    names = ["VmBeingHotMigratedEvent", "VmEmigratingEvent", "VmMigratedEvent", "DrsVmMigratedEvent",
             "TaskEvent", "VmResourceReallocatedEvent"]
    return result, [(t0 + pd.Timedelta(seconds=s), names[i % len(names)]) for i, s in enumerate(events_at)]


def _text_boxes(fig, kind=Annotation) -> list:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for ax in fig.axes for t in ax.texts
            if isinstance(t, kind) and t.get_visible()]


@pytest.mark.parametrize("events_at", [[5.6, 5.62, 5.65, 5.7, 5.71], [0.0, 0.01, 9.98, 9.99], [3.0, 7.0]])
def test_ping_chart_event_labels_never_overlap(events_at) -> None:
    result, events = _probes(events_at)
    fig = result.plot(events=events)
    boxes = _text_boxes(fig)
    assert [t for t, _ in boxes].count("task start") == 1 and len(boxes) >= len(events) + 1  # every event labelled
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"labels {a!r} and {b!r} overlap: {box_a} {box_b}"
    axes = fig.axes[0].get_window_extent()
    assert all(box.x0 >= axes.x0 - 1 and box.x1 <= axes.x1 + 1 for _, box in boxes), "a label left the chart"


def test_vms_per_host_has_whole_number_ticks() -> None:
    hosts = pd.DataFrame({"name": ["esx-01", "esx-02", "esx-03"], "vm_count": [1, 2, 0],
                          "connection_state": ["connected"] * 3, "maintenance": [False, False, True]})
    fig = charts.vms_per_host(hosts)
    FigureCanvasAgg(fig).draw()
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_capacity_chart_legend_covers_no_label() -> None:
    stores = pd.DataFrame({"name": [f"ds-{i}" for i in range(5)], "capacity_bytes": [2**40, 2**39, 2**41, 2**38, 2**40],
                           "free_bytes": [2**39, 2**30, 2**40, 2**37, 2**35], "host_count": [3, 1, 3, 2, 1]})
    fig = charts.datastore_capacity(stores)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t.get_window_extent(renderer) for t in ax.texts] + \
             [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    bars = [p.get_window_extent(renderer) for p in ax.patches]
    assert labels and all(not legend.overlaps(box) for box in labels + bars)
    figure = fig.bbox
    assert all(figure.x0 <= b.x0 and b.x1 <= figure.x1 for b in labels + [legend]), "a label is cut off"
