"""What every kernel the pipeline starts does first (its ``--IPKernelApp.exec_lines``).

- jsonschema's IRI grammar is not built: about 3 s of CPU in each run's kernel, on its first record save
  (runbook/_imports.py).
- ipykernel's shutdown race does not print a traceback on the operator's terminal. A run's kernel writes
  its stderr to the terminal of ``runbook migrate``. When the front asks it to shut down, the kernel's
  control thread stops the main loop and then flushes stdout. The main thread, exiting, stops the IOPub
  thread and closes every thread's event pipe. If the control thread loses the interpreter lock between
  the IOPub thread's "alive" check and its send on that pipe, the send fails with ``ENOTSOCK``.
  Tornado then logs the error as an uncaught callback: a 20-line traceback after a run that went well. It
  is rare: CI met it once; 40 runs in a row here did not. ipykernel 7.4 catches that error for the IOPub
  socket's own send (ipykernel PR 1518) but not for the event pipe's. :func:`guard_shutdown_race` does,
  for the one case where it is harmless: the IOPub thread is stopping. The function is then called here,
  as ipykernel calls it once that thread has ended.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from runbook._imports import skip_iri_grammar

_GUARDED = "_runbook_guarded_schedule"


def prepare() -> None:
    """Run by each of the pipeline's kernels before any cell."""
    skip_iri_grammar()
    guard_shutdown_race()


def guard_shutdown_race() -> None:
    """Make ``IOPubThread.schedule`` run its function in place when the thread's event pipe was closed by a
    stop in progress, instead of raising (idempotent; a no-op without ipykernel)."""
    try:
        import zmq
        from ipykernel.iostream import IOPubThread
    except ImportError:
        return
    schedule = IOPubThread.schedule
    if getattr(schedule, _GUARDED, False):
        return

    def guarded(self: Any, f: Callable[[], Any]) -> None:
        try:
            schedule(self, f)
        except (zmq.ZMQError, AttributeError) as exc:
            closed = isinstance(exc, AttributeError) or exc.errno == zmq.ENOTSOCK
            if not (closed and getattr(self, "_stopped", False)):
                raise
            f()

    functools.update_wrapper(guarded, schedule)  # __wrapped__: ipykernel's own, for tests
    setattr(guarded, _GUARDED, True)
    IOPubThread.schedule = guarded  # type: ignore[method-assign]
