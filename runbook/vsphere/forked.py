"""A piece of a bulk read (or of building its tables) done by a forked copy of this process, on the other core.

Parsing a large reply is CPU work that holds Python's interpreter lock: a second thread reading one
part of the inventory while the first reads another overlaps only the waiting, not the parsing. A
forked child parses on its own core. It shares nothing with the parent after the fork but what it
inherited (the session, the stub's settings, the code), opens its own connection to the server, and
sends back its result pickled through a pipe. At 10,000 VMs that takes the devices' 2 s of parsing off
the parent's critical path.

The child is an implementation detail of one call, never a service: it is reaped before the call
returns, killed if the parent stops waiting (an interrupt, an error), and dies with the parent
(``PR_SET_PDEATHSIG``). It writes nothing to the parent's outputs and runs none of its exit handlers.
A child that fails for any reason makes :meth:`Child.result` raise :class:`ChildFailed` with its
exception's class name only (an exception's text may quote a reply); the caller then does the work
itself, so a failure costs time, never a different result. ``RUNBOOK_READ_FORK=0`` switches forking
off (then :func:`start` returns None), as does a machine with one CPU or without ``fork``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import pickle
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

Mine = TypeVar("Mine")
Theirs = TypeVar("Theirs")

_CHUNK = 1 << 20
_PR_SET_PDEATHSIG = 1
#: Seconds a child may take at least, whatever the parent's own part took (see :func:`beside`).
_GRACE = 30.0

log = logging.getLogger("runbook")


class ChildFailed(RuntimeError):
    """The child ended without a result (it raised, was killed, or its result could not be read)."""


def enabled() -> bool:
    """Whether :func:`start` forks here: Linux-like ``fork``, more than one CPU, not switched off."""
    if os.environ.get("RUNBOOK_READ_FORK", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return hasattr(os, "fork") and sys.platform.startswith("linux") and cpus > 1


class Child:
    """A forked child computing one value; :meth:`result` waits for it, :meth:`stop` ends it."""

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd

    def result(self, timeout: float | None = None) -> Any:
        """The child's return value; :class:`ChildFailed` if it has none, or has not sent it all within
        ``timeout`` seconds (then it is killed: a child stuck on something inherited must not hang its
        parent). The child is reaped either way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            data = bytearray()
            poll = select.poll()  # not select(): a kernel may hold more than 1,024 descriptors
            poll.register(self.fd, select.POLLIN)
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                if not poll.poll(None if left is None else left * 1000):
                    raise ChildFailed(f"the read's child process did not finish within {timeout:g} s")
                chunk = os.read(self.fd, _CHUNK)
                if not chunk:
                    break
                data += chunk
        finally:
            self.stop()
        try:
            ok, value = pickle.loads(data)
        except Exception as exc:  # killed mid-write, or nothing written
            raise ChildFailed(f"the read's child process ended without a result ({type(exc).__name__})") from None
        if not ok:
            raise ChildFailed(f"the read's child process failed ({value})")
        return value

    def stop(self) -> None:
        """Kill the child if it still runs, reap it and close the pipe (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def beside(theirs: Callable[[], Theirs], mine: Callable[[], Mine], *, in_child: Callable[[], Any] | None = None,
           fork: bool = True, thread: bool = False) -> tuple[Mine, Theirs]:
    """``(mine(), theirs())``, ``theirs`` run by a forked child (after ``in_child()`` there) while ``mine`` runs here.

    The two parts are alike in size: a child that has not answered within three times what ``mine`` took (at
    least 30 s) is stuck, and is killed. When the child fails, or ``fork`` is false or forking is off,
    ``theirs`` runs in this process: on a thread beside ``mine`` if ``thread`` (worth it when ``theirs`` mostly
    waits for a server), else after it.
    """
    def there() -> Theirs:
        if in_child is not None:
            in_child()
        return theirs()

    child = start(there) if fork else None
    if child is not None:
        with child:
            started = time.monotonic()
            here = mine()
            try:
                return here, child.result(timeout=max(_GRACE, 3 * (time.monotonic() - started)))
            except ChildFailed as exc:
                log.info("%s; doing its part in this process", exc)
        return here, theirs()
    if thread:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="runbook-beside") as pool:
            pending = pool.submit(theirs)
            here = mine()
            return here, pending.result()
    here = mine()
    return here, theirs()


def start(fn: Callable[[], Any]) -> Child | None:
    """Run ``fn()`` in a forked child; None when forking is off or fails (then run it yourself)."""
    if not enabled():
        return None
    parent = os.getpid()
    r, w = os.pipe()
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns of forking a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: never returns
        os.close(r)
        _run_child(fn, w, parent)
    os.close(w)
    return Child(pid, r)


def _run_child(fn: Callable[[], Any], fd: int, parent: int) -> None:
    code = 1
    try:
        _die_with_parent(parent)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        # The parent's outputs (a kernel's streams, a CLI's terminal, their log handlers) are not this process's
        # to use: not through Python's streams, not through a handler, not through the descriptors C code uses.
        devnull = open(os.devnull, "w")
        for stream in (1, 2):
            with contextlib.suppress(OSError):
                os.dup2(devnull.fileno(), stream)
        sys.stdout = sys.stderr = devnull
        logging.disable(logging.CRITICAL)
        warnings.simplefilter("ignore")
        try:
            data = pickle.dumps((True, fn()), protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent by class only
            data = pickle.dumps((False, type(exc).__name__))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this child when the parent dies (a parent killed by SIGKILL reaps nothing)."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
