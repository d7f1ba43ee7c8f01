"""Probing a VM during a migration: ping it on a fixed schedule and record when each reply came.

:class:`ProbeMonitor` sends an ICMP echo (or, where ICMP is not allowed, a TCP connect) every
``interval`` seconds on a schedule fixed to the monotonic clock, and matches replies as they come without
ever waiting for one before the next send. The sending and reading is done by the process's one probe
thread (:mod:`runbook.probes.prober`), which serves every monitor at once, as a wave's many are. :meth:`ProbeMonitor.stop`
returns a :class:`ProbeResult`: the per-probe timeline, a JSON-ready summary of the outages and a
sentence for the operator. Nothing here raises into the migration once probing has started: errors
inside the probe thread end up in ``ProbeResult.error``.

What is recorded per probe: its send time and, if one came, its reply's arrival time (for ICMP the
kernel's receive timestamp, so a busy machine waking the probe thread late does not make a reply late).
A reply counts whenever it comes while the monitor listens; the monitor listens at least ``timeout``
after each send (default ``max(1 s, 2 intervals)``), so a probe is **lost** only when nothing came back
at all. For TCP, a completed connect *or* a refused one (RST) is a reply: the host answered.

Whether a reply was late, and what counts as an outage (probes lost *or* answered late, and the silence
between replies), is defined in :mod:`runbook.probes.pingchart`, where the summary and chart are made.
"""
from __future__ import annotations

from typing import Any

import logging
import os
import socket
import threading
import time
from array import array
from datetime import datetime

import numpy as np
import pandas as pd

from runbook.errors import BadInput, PingNotPermitted
from runbook.probes.pingchart import (
    LATE_INTERVALS, LATE_RTT_FACTOR, SWITCHOVER, TASK_END, TASK_START, OutageRun, ProbeResult, _utc, outage_runs,
    plot_probes
)
from runbook.probes.prober import SocketFactory, arrival, prober_for

__all__ = ["ProbeMonitor", "ProbeResult", "OutageRun", "outage_runs", "plot_probes", "MIN_INTERVAL",
           "MAX_INTERVAL", "TASK_START", "TASK_END", "SWITCHOVER", "LATE_INTERVALS", "LATE_RTT_FACTOR"]

log = logging.getLogger("runbook")

MIN_INTERVAL = 0.01  # seconds; finer than this the probe thread's own jitter dominates
MAX_INTERVAL = 10.0


class ProbeMonitor:
    """Pings ``target`` every ``interval`` seconds (from the process's one probe thread) until :meth:`stop`.

    ``method``: "auto" (ICMP echo if this process may send it, else a TCP connect to ``tcp_port``),
    "icmp" or "tcp". ICMP uses a raw socket when privileged, else an unprivileged ICMP datagram socket
    (Linux, when ``net.ipv4.ping_group_range`` covers the process's group). ``timeout`` is how long the
    monitor listens at least for a probe's reply (default ``max(1 s, 2 intervals)``); with no reply by
    the time probing ends the probe is lost. ``late_after`` (seconds) fixes when a reply counts as late
    (part of an outage); by default it is ``max(LATE_INTERVALS intervals, LATE_RTT_FACTOR x the usual
    round trip)``, see :mod:`runbook.probes.pingchart`. ``tail`` is how long :meth:`stop` (and leaving a
    ``with`` block) keeps probing before it stops. ``socket_factory`` replaces :func:`socket.socket`
    (for tests and unusual platforms); the monitors made with one factory share one probe thread and one
    ICMP socket per address family (:mod:`runbook.probes.prober`), each still on its own schedule.

    Use it around the task::

        with ProbeMonitor("10.0.0.5", 0.05) as mon:
            mon.mark("task_start"); task = submit(...); wait(task); mon.mark("task_end")
        print(mon.result.describe())
    """

    def __init__(self, target: str, interval: float = 0.1, *, tcp_port: int | None = None,
                 method: str = "auto", timeout: float | None = None, tail: float = 5.0,
                 late_after: float | None = None, socket_factory: SocketFactory = socket.socket):
        if not isinstance(target, str) or not target.strip():
            raise BadInput("the ping target must be a host name or IP address")
        if not MIN_INTERVAL <= float(interval) <= MAX_INTERVAL:
            raise BadInput(f"ping interval {interval!r} s is out of range: give {MIN_INTERVAL:g} to "
                           f"{MAX_INTERVAL:g} seconds")
        if method not in ("auto", "icmp", "tcp"):
            raise BadInput(f"ping method {method!r} is unknown: give 'auto', 'icmp' or 'tcp'")
        if tcp_port is not None and not (isinstance(tcp_port, int) and 0 < tcp_port < 65536):
            raise BadInput(f"ping TCP port {tcp_port!r} is not a port number (1 to 65535)")
        if method == "tcp" and tcp_port is None:
            raise BadInput("ping method 'tcp' needs a port: give --ping-tcp-port PORT (parameter ping_tcp_port)")
        if timeout is not None and not 0.001 <= float(timeout) <= 60:
            raise BadInput(f"ping timeout {timeout!r} s is out of range: give 0.001 to 60 seconds")
        if tail < 0:
            raise BadInput(f"ping tail {tail!r} s is negative")
        if late_after is not None and not 0.001 <= float(late_after) <= 60:
            raise BadInput(f"ping late_after {late_after!r} s is out of range: give 0.001 to 60 seconds")
        self.target, self.interval, self.tcp_port, self.method = target.strip(), float(interval), tcp_port, method
        self.timeout = float(timeout) if timeout is not None else max(1.0, 2 * self.interval)
        self.tail = float(tail)
        self.late_after = float(late_after) if late_after is not None else None
        self.result: ProbeResult | None = None
        self._factory = socket_factory
        self._prober = None  # the process's probe thread for this socket factory, once started
        self._marks: list[tuple[str, pd.Timestamp]] = []
        self._stopping = threading.Event()
        self._done = threading.Event()  # the probe thread is done with this monitor
        self._lock = threading.Lock()
        self._error: str | None = None
        self._late = self._send_errors = self._skipped = 0
        self._stamped = False  # ICMP replies carry the kernel's receive time
        # Per-probe records, by seq: monotonic send and reply times in ns (-1: no reply).
        self._sent_ns, self._reply_ns = array("q"), array("q")
        self._used = ""
        # The probe thread's bookkeeping: seq -> expiry (monotonic ns) of the probes awaiting a reply, in
        # send order; seq -> connecting socket (TCP); the schedule.
        self._pending: dict[int, int] = {}
        self._tcp: dict[int, socket.socket] = {}
        self._icmp_family: int | None = None
        self._token = b""

    # -- public API ------------------------------------------------------------------------------------
    def start(self) -> ProbeMonitor:
        """Resolve the target, open the probe socket and start probing; raises PingNotPermitted when ICMP
        is not allowed and no TCP port was given, BadInput when the target cannot be resolved."""
        if self._prober is not None:
            raise BadInput("this ProbeMonitor was already started; make a new one for another run")
        self._family, self._address = self._resolve()
        prober = prober_for(self._factory)
        if self.method in ("auto", "icmp"):
            try:
                self._used, self._stamped = prober.icmp(self._family)
                self._icmp_family = self._family
            except OSError as exc:
                if self.method == "icmp" or self.tcp_port is None:
                    raise PingNotPermitted(
                        f"ICMP echo to {self.target} is not permitted for this process ({exc.strerror or exc}); "
                        f"give a TCP port the VM answers on: --ping-tcp-port PORT (parameter ping_tcp_port)"
                    ) from exc
        if self._icmp_family is None:
            self._used = "tcp"
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._step, self._wait_ns = round(self.interval * 1e9), round(self.timeout * 1e9)
        self._wall0_ns, self._mono0_ns = time.time_ns(), time.monotonic_ns()
        self._t0, self._slot = time.monotonic_ns(), 0
        self._prober = prober
        prober.add(self)
        log.debug("probing %s (%s) every %g s by %s", self.target, self._address, self.interval, self._used)
        return self

    def mark(self, name: str, when: datetime | None = None) -> None:
        """Record a named moment (``task_start``, ``task_end``, ``switchover`` or any event); now by default."""
        stamp = _utc(when) if when is not None else pd.Timestamp.now(tz="UTC")
        with self._lock:
            self._marks.append((name, stamp))

    def live(self) -> dict[str, Any]:
        """A snapshot while probing, for live readouts: probes sent, lost so far (no reply within the
        timeout) and the last round-trip time in ms (None before the first reply)."""
        sent_ns, reply_ns = self._sent_ns, self._reply_ns
        count = min(len(sent_ns), len(reply_ns))
        overdue = time.monotonic_ns() - int(self.timeout * 1e9)
        lost, last_rtt = 0, None
        for seq in range(count):
            if reply_ns[seq] >= 0:
                last_rtt = (reply_ns[seq] - sent_ns[seq]) / 1e6
            elif sent_ns[seq] < overdue:
                lost += 1
        return {"sent": count, "lost": lost, "last_rtt_ms": last_rtt}

    def stop(self, tail: float | None = None) -> ProbeResult:
        """Keep probing ``tail`` seconds (default: the constructor's), stop, and return the result.

        Never raises: whatever went wrong in the probe thread is in ``result.error``.
        """
        if self.result is not None:
            return self.result
        if self._prober is None:
            self.result = self._build_result("the monitor was never started")
            return self.result
        try:
            self._stopping.wait(self.tail if tail is None else max(0.0, float(tail)))
        except KeyboardInterrupt:  # Ctrl-C during the tail cuts it short; what was measured is kept
            pass
        self._stopping.set()
        self._prober.wake()
        # the probe thread listens for the last probes' replies up to their timeout, then lets go
        note = None if self._done.wait(self.timeout + 2.0) else "the probe thread did not stop in time"
        self.result = self._build_result(note)
        return self.result

    def __enter__(self) -> ProbeMonitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- sockets ---------------------------------------------------------------------------------------
    def _resolve(self) -> tuple[int, str]:
        try:
            infos = socket.getaddrinfo(self.target, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise BadInput(f"ping target {self.target!r} cannot be resolved: {exc}") from exc
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first
        return infos[0][0], infos[0][4][0]

    # The kernel's receive time of a reply on the monotonic clock (kept here for callers and tests).
    _arrival = staticmethod(arrival)

    # -- result ----------------------------------------------------------------------------------------
    def _build_result(self, note: str | None) -> ProbeResult:
        count = min(len(self._sent_ns), len(self._reply_ns))
        sent_ns = np.frombuffer(self._sent_ns, dtype=np.int64)[:count].copy()
        reply_ns = np.frombuffer(self._reply_ns, dtype=np.int64)[:count].copy()
        # Monotonic clock to UTC by one anchor taken at start: a wall-clock step mid-run cannot bend the timeline.
        offset = getattr(self, "_wall0_ns", 0) - getattr(self, "_mono0_ns", 0)
        lost = reply_ns < 0
        sent = pd.Series(pd.to_datetime(sent_ns + offset, unit="ns", utc=True))
        replied = pd.Series(pd.to_datetime(reply_ns + offset, unit="ns", utc=True)).where(~lost)
        rtt = pd.Series((reply_ns - sent_ns) / 1e6, dtype="float64").where(~lost)
        timeline = pd.DataFrame({"seq": np.arange(count, dtype=np.int64), "sent": sent, "replied": replied,
                                 "rtt_ms": rtt, "lost": lost})
        error = "; ".join(e for e in (self._error, note) if e) or None
        with self._lock:
            marks = sorted(self._marks, key=lambda m: m[1])
        return ProbeResult(target=self.target, address=getattr(self, "_address", ""), method=self._used or "none",
                           interval=self.interval, timeout=self.timeout, timeline=timeline, marks=marks,
                           error=error, late_replies=self._late, send_errors=self._send_errors,
                           skipped_slots=self._skipped, late_after=self.late_after)
