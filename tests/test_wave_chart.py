"""The wave's timeline chart (runbook.engine.wave_record): its outage panel draws bars on an axis from 0 ms
when some VM had an outage, and says in words why there are none otherwise, never an axis of zeros."""
from __future__ import annotations

import datetime as dt

import pytest

from runbook.domain.concurrency import Limits, move_of
from runbook.engine.wave_record import timeline_chart, timeline_figure

T0 = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.timezone.utc)


def _moves(outages: list) -> tuple[list[dict], dict]:
    moves, rows = [], {}
    for i, outage in enumerate(outages):
        vm = f"vm-{i:02d}"
        start = T0 + dt.timedelta(seconds=i)
        moves.append({"vm": vm, "status": "moved", "started": start.isoformat(),
                      "completed": (start + dt.timedelta(seconds=2)).isoformat(), "outage_ms": outage})
        rows[vm] = move_of({"vm": vm, "source_host": "esx-01", "target_host": "esx-02", "move_kind": "vmotion"})
    return moves, rows


def _outage_axis(outages: list):
    moves, rows = _moves(outages)
    fig = timeline_figure(moves, rows, Limits(vmotions_per_host=8))
    return fig.axes[1]


def _words(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts).replace("\n", " ")


@pytest.mark.parametrize(("outages", "words"), [
    ([0.0, 0.0, 0.0], "no outage: all 3 probed VMs answered every probe in time"),
    ([0.0], "no outage: the probed VM answered every probe in time"),
    ([None, None], "no outage measured: no VM was probed"),
    ([None, 0.0], "no outage: the probed VM answered every probe in time"),
])
def test_no_outage_is_said_in_words_not_an_axis_of_zeros(outages, words):
    ax = _outage_axis(outages)
    assert _words(ax) == words
    assert list(ax.get_xticks()) == [] and not ax.patches  # no bars, no ticks of 0.00


def test_outages_are_bars_on_an_axis_from_zero():
    ax = _outage_axis([120.0, 0.0, None, 850.0])
    left, right = ax.get_xlim()
    assert left == 0 and right > 850
    assert [round(p.get_width()) for p in ax.patches] == [120, 0, 0, 850]
    ticks = [t for t in ax.get_xticks() if left <= t <= right]
    assert len(ticks) >= 2 and max(ticks) >= 400 and all(float(t).is_integer() for t in ticks)
    assert ax.get_title() == "Longest outage (ms)" and not ax.texts


def test_the_chart_is_written_as_png(tmp_path):
    moves, rows = _moves([0.0, 300.0])
    path = timeline_chart(moves, rows, Limits(), tmp_path / "timeline.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert timeline_chart([], {}, Limits(), tmp_path / "none.png") is None


def test_hosts_carrying_the_same_count_stay_visible_one_under_another():
    """Both hosts of every move carry it at once (the source and the target): their lines coincide, so each
    is drawn in its own width or dash, never two alike (the demo's chart hid esx-02 under esx-03)."""
    moves, rows = _moves([0.0, 0.0, 0.0])
    rows["vm-02"] = move_of({"vm": "vm-02", "source_host": "esx-01", "target_host": "esx-03", "move_kind": "vmotion"})
    load = timeline_figure(moves, rows, Limits(vmotions_per_host=8)).axes[2]
    hosts = [line for line in load.get_lines() if line.get_label().startswith("esx-")]
    assert sorted(line.get_label() for line in hosts) == ["esx-01", "esx-02", "esx-03"]
    looks = {(line.get_linewidth(), line.get_linestyle()) for line in hosts}
    assert len(looks) == len(hosts), looks
