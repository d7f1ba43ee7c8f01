"""Interrupts a run understands: SIGINT, SIGTERM and a cancel request from another thread.

An interrupt is not an error: the run that gets one cancels what it started and records the truth.
:class:`Interrupted` derives from BaseException so that no ``except Exception`` on the way swallows it.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Interrupted(BaseException):
    """The run was asked to stop (a signal, or the widgets' Cancel)."""


@contextlib.contextmanager
def signals_handled(handler: Callable[[int, Any], None]) -> Iterator[bool]:
    """While the block runs, ``handler`` handles SIGINT and SIGTERM; the handlers before are restored after.
    Only the main thread can set handlers: elsewhere the block runs as it is (and gets False)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield True
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def interruptible(cancel: threading.Event | None = None) -> Iterator[None]:
    """While the block runs in the main thread, SIGINT and SIGTERM raise :class:`Interrupted` (and set
    ``cancel``); the handlers in place before are restored after. In another thread (the widgets) only
    ``cancel`` stops a run."""
    def handler(signum: int, frame: Any) -> None:
        if cancel is not None:
            cancel.set()
        raise Interrupted(signal.Signals(signum).name)

    with signals_handled(handler):
        yield


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """While a run ends (cancel, last probes, the record), a second Ctrl-C or SIGTERM must not cut it short."""
    with signals_handled(signal.SIG_IGN):  # type: ignore[arg-type]
        yield
