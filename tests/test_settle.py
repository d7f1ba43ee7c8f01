"""A run whose kernel died with no vCenter task on its record is settled with words true for its kind."""
from __future__ import annotations

import pytest

from runbook.engine.context import RunContext
from runbook.engine.settle import settle
from runbook.records.recorder import Recorder


def _running(tmp_path, kind, parameters):
    recorder = Recorder(kind, parameters, RunContext(reports_dir=tmp_path, report=False, via="headless")).start()
    return recorder.run_dir


@pytest.mark.parametrize("kind, parameters, interrupted, outcome, words", [
    ("migrate", {"vm": "web-01"}, "SIGTERM", "CANCELLED", "before the move started: nothing was changed"),
    ("migrate", {"vm": "web-01"}, None, "FAILED", "before the move started: nothing was changed"),
    ("check", {"vm": "web-01"}, "SIGINT", "CANCELLED", "during the check: nothing was changed"),
    ("inventory", {}, None, "FAILED", "during the inventory: nothing was changed"),
    ("enable-vmotion", {"apply": False}, "SIGTERM", "CANCELLED", "during the dry run: nothing was changed"),
    # Host changes are no tasks: a stop while applying them leaves the runbook not knowing which were made.
    ("enable-vmotion", {"apply": True}, "SIGTERM", "UNKNOWN", "some hosts may have been changed"),
])
def test_a_dead_kernel_without_a_task_is_settled_in_words_true_for_its_kind(tmp_path, kind, parameters,
                                                                             interrupted, outcome, words):
    run_dir = _running(tmp_path, kind, parameters)
    data = settle(run_dir, interrupted=interrupted,
                  failure=None if interrupted else {"type": "DeadKernel", "message": "kernel died"})
    assert data["outcome"] == outcome
    assert words in data["summary"]
    if kind != "migrate":
        assert "move" not in data["summary"]


def test_a_fresh_reader_of_an_events_file_knows_the_waves_events():
    """The CLI's follower and the notebooks read events files without importing the wave engine first."""
    import subprocess
    import sys

    code = ("from runbook.engine.events import from_dict; "
            "e = from_dict({'event': 'vm-progress', 'vm': 'web-01', 'percent': 40}); "
            "print(type(e).__name__, e.percent)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["VmProgress", "40"]
