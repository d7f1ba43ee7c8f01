"""The forked child of a bulk read: its result comes back, its failures never leak, it never outlives the call."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from runbook.vsphere import forked


def _state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie nobody reaped), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _gone(pid: int) -> bool:
    """Reaped: not even a zombie is left."""
    return _state(pid) is None


@pytest.fixture(autouse=True)
def _forking(monkeypatch):
    monkeypatch.setenv("RUNBOOK_READ_FORK", "1")
    if not forked.enabled():
        pytest.skip("this machine does not fork reads (one CPU)")


def test_the_result_of_the_child_comes_back_and_the_child_is_reaped():
    parent = os.getpid()
    big = "x" * (3 << 20)  # more than a pipe holds: the child waits for the parent to read
    child = forked.start(lambda: (os.getpid(), os.getppid(), big, {"a": (1, None, 2.5)}))
    pid = child.pid
    got_pid, got_parent, got_big, rest = child.result()
    assert got_pid == pid != parent and got_parent == parent
    assert got_big == big and rest == {"a": (1, None, 2.5)}
    assert _gone(pid)


def test_a_failing_child_says_only_its_class_and_is_reaped():
    def fail():
        raise ValueError("password=hunter2 in a reply")

    child = forked.start(fail)
    pid = child.pid
    with pytest.raises(forked.ChildFailed) as err:
        child.result()
    assert "ValueError" in str(err.value) and "hunter2" not in str(err.value)
    assert _gone(pid)


def test_a_killed_child_is_a_failure_not_a_result():
    child = forked.start(lambda: time.sleep(60))
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(forked.ChildFailed, match="without a result"):
        child.result()


def test_leaving_the_block_kills_and_reaps_a_child_still_working():
    with forked.start(lambda: time.sleep(60)) as child:
        pid = child.pid
    assert _gone(pid)
    child.stop()  # again: nothing left to do


def test_the_child_writes_nothing_to_the_parents_outputs(capfd, tmp_path):
    """Not through Python's streams, not through a log handler the parent set up (a kernel's, a CLI's), not
    through the descriptors themselves (what C code and a fatal error write to)."""
    log_file = tmp_path / "parent.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger("runbook").addHandler(handler)

    def noisy():
        print("from the child")
        print("to stderr", file=sys.stderr)
        import warnings
        warnings.warn("a warning")
        logging.getLogger("runbook").error("logged by the child")
        os.write(1, b"fd 1 of the child")
        os.write(2, b"fd 2 of the child")
        return 1

    try:
        assert forked.start(noisy).result() == 1
    finally:
        logging.getLogger("runbook").removeHandler(handler)
        handler.close()
    out, err = capfd.readouterr()
    assert "child" not in out + err and "warning" not in out + err
    assert "child" not in log_file.read_text()


def test_switched_off_it_does_not_fork(monkeypatch):
    monkeypatch.setenv("RUNBOOK_READ_FORK", "0")
    assert forked.start(lambda: 1) is None


def test_the_child_dies_with_a_parent_killed_outright(tmp_path):
    pid_file = tmp_path / "child"
    script = textwrap.dedent(f"""
        import os, time
        from runbook.vsphere import forked
        child = forked.start(lambda: time.sleep(60))
        with open({str(pid_file)!r}, "w") as f:
            f.write(str(child.pid))
        time.sleep(60)
    """)
    env = dict(os.environ, RUNBOOK_READ_FORK="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        child = int(pid_file.read_text())
        time.sleep(0.2)  # the child asks to die with its parent first thing
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while _state(child) not in (None, "Z"):  # dead (reaping it is its new parent's business)
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        proc.kill()


def test_a_child_that_does_not_finish_in_time_is_killed_and_is_a_failure():
    child = forked.start(lambda: time.sleep(60))
    pid = child.pid
    started = time.monotonic()
    with pytest.raises(forked.ChildFailed, match="within 0.5 s"):
        child.result(timeout=0.5)
    assert time.monotonic() - started < 5 and _gone(pid)
