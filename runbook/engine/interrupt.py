"""Interrupts a run understands: SIGINT, SIGTERM and a cancel request from another thread.

An interrupt is not an error: the run that gets one cancels what it started and records the truth.
:class:`Interrupted` derives from BaseException so that no ``except Exception`` on the way swallows it.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Interrupted(BaseException):
    """The run was asked to stop (a signal, or the widgets' Cancel)."""


@contextlib.contextmanager
def interruptible(cancel: threading.Event | None = None) -> Iterator[None]:
    """While the block runs in the main thread, SIGINT and SIGTERM raise :class:`Interrupted` (and set
    ``cancel``); the handlers in place before are restored after. In another thread (the widgets) only
    ``cancel`` stops a run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel is not None:
            cancel.set()
        raise Interrupted(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
