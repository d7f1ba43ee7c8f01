"""A probed wave against the lab: a move's slot frees when its vCenter task ends, not after its probes' tail,
and the tail does not delay the next move's start (the next one is already prepared at the gate)."""
from __future__ import annotations

import datetime as dt
import json

import runbook
import runbook_lab as lab_mod
from runbook.engine import wave as wave_mod
from test_wave import ESX1, ON_ESX1, _wave


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_slot_frees_at_the_task_end_and_the_tail_delays_no_next_move(fresh_lab, tmp_path, monkeypatch):
    """One vMotion at a time, 3 s of probing after each task, one move prepared ahead: each next move starts
    well within the previous one's tail, and the record's slot of each move ends with its task."""
    info = fresh_lab("default")
    lab_mod.LabControl(info).set_migration_seconds(None, 0.5)
    monkeypatch.setattr(wave_mod, "PREPARE_AHEAD", 1)
    tail = 3.0
    result, _ = _wave(info, runbook.EvacuateRequest(host=ESX1, max_vmotions_per_host=1, ping="auto",
                                                    ping_interval=0.05, ping_tail=tail), tmp_path)
    assert result.outcome == "SUCCEEDED", result.summary
    moves = sorted(result.record["moves"], key=lambda m: m["slot_start"])
    assert sorted(m["vm"] for m in moves) == ON_ESX1
    probed = 0
    for m in moves:
        assert m["status"] == "moved"
        # the slot is held from the admission to the task's end, not through the tail
        assert (_t(m["slot_end"]) - _t(m["completed"])).total_seconds() < 1.0, m
        child = json.loads((result.run_dir / m["record"]).read_text())
        if (child.get("ping") or {}).get("last_sent"):  # probed: its tail ran past its task's end
            probed += 1
            assert (_t(child["ping"]["last_sent"]) - _t(m["completed"])).total_seconds() > tail - 0.5
    assert probed >= 2
    canary = result.record["wave"]["canary"]
    assert moves[0]["vm"] == canary
    for before, after in zip(moves[1:], moves[2:]):  # after the canary (it runs alone, tail included)
        gap = (_t(after["slot_start"]) - _t(before["slot_end"])).total_seconds()
        assert gap < 1.0, (before["vm"], after["vm"], gap)
        assert _t(after["started"]) < _t(before["completed"]) + dt.timedelta(seconds=tail / 2)
