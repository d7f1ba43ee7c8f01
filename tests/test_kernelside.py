"""ipykernel's shutdown race (runbook/fronts/kernelside.py), on a real IOPubThread and real zmq sockets.

The race cannot be timed from a test; its state can be made: the IOPub thread still runs (its "alive" check
passes) while this thread's event pipe is already closed by a stop in progress. That is what the kernel's
control thread meets when the main thread's exit stops the IOPub thread between the check and the send.
"""
from __future__ import annotations

import threading
import time

import pytest
import zmq
from ipykernel.iostream import IOPubThread

from runbook.fronts import kernelside


@pytest.fixture()
def pub_thread():
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.bind("inproc://runbook-kernelside-test")
    thread = IOPubThread(socket)
    thread.start()
    # The thread runs its loop once to set up, then for good unless stopped: the race needs it running for good.
    deadline = time.monotonic() + 10
    while getattr(thread, "_event_pipe_gc_task", None) is None or not thread.io_loop.asyncio_loop.is_running():
        assert time.monotonic() < deadline, "the IOPub thread did not start its loop"
        time.sleep(0.01)
    time.sleep(0.2)
    yield thread
    thread.stop()
    thread.close()
    context.term()
    task = getattr(thread, "_event_pipe_gc_task", None)
    if task is not None and not task.done():  # stop() cancels it once the loop has ended: no warning of it at exit
        task._log_destroy_pending = False
        task.get_coro().close()


def _stopping(thread: IOPubThread) -> None:
    """The state stop() leaves for a moment: flagged, this thread's pipe closed, the thread not yet joined."""
    thread.schedule(lambda: None)  # this thread's event pipe exists
    thread._stopped = True
    thread._event_pipe.close()
    assert thread.thread.is_alive()


@pytest.fixture()
def unguarded(monkeypatch):
    """IOPubThread.schedule as ipykernel ships it, whatever a test before did; the guard installed by a test
    is undone after it."""
    monkeypatch.setattr(IOPubThread, "schedule", getattr(IOPubThread.schedule, "__wrapped__", IOPubThread.schedule))


def test_without_the_guard_the_race_raises(pub_thread, unguarded) -> None:
    _stopping(pub_thread)
    with pytest.raises(zmq.ZMQError) as raised:
        pub_thread.schedule(lambda: None)
    assert raised.value.errno == zmq.ENOTSOCK


def test_with_the_guard_a_flush_during_the_race_completes_here(pub_thread, unguarded) -> None:
    kernelside.guard_shutdown_race()
    kernelside.guard_shutdown_race()  # idempotent: one wrapper
    assert getattr(IOPubThread.schedule.__wrapped__, "_runbook_guarded_schedule", False) is False
    _stopping(pub_thread)
    done = threading.Event()
    pub_thread.schedule(done.set)
    assert done.is_set()  # OutStream.flush waits on this event: it returns at once instead of timing out


def test_the_guard_lets_other_failures_through(pub_thread, unguarded) -> None:
    """A closed pipe while the thread is not stopping is a fault of its own, not the shutdown race."""
    kernelside.guard_shutdown_race()
    pub_thread.schedule(lambda: None)
    pub_thread._event_pipe.close()
    with pytest.raises(zmq.ZMQError):
        pub_thread.schedule(lambda: None)
