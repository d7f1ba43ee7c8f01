"""The simulator's datastore files live in memory (/dev/shm) while a lab runs, and go with the lab, even
when it was killed (runbook_lab._data_dir): a quarter of a big lab's start-up CPU was file system calls."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import runbook_lab as lab


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm on this machine")
def test_datastore_files_live_in_memory_and_go_with_the_lab(tmp_path: Path) -> None:
    state = tmp_path / "lab"
    lab.start("default", state_dir=state)
    link = state / "datastores"
    target = Path(os.readlink(link))
    assert target.parent == Path("/dev/shm") and any(target.rglob("*.vmx"))
    assert lab.stop(state)
    assert not target.exists() and not link.exists()

    info = lab.start("default", state_dir=state)
    target = Path(os.readlink(link))
    os.killpg(info.pid, signal.SIGKILL)  # no clean-up of its own
    deadline = time.monotonic() + 10
    while lab.status(state) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not target.exists() and not link.exists()
