"""Probing a VM during a migration: ping it on a fixed schedule and record when each reply came.

:class:`ProbeMonitor` sends an ICMP echo (or, where ICMP is not allowed, a TCP connect) every
``interval`` seconds from a daemon thread, on a schedule fixed to the monotonic clock, and matches
replies as they come without ever waiting for one before the next send. :meth:`ProbeMonitor.stop`
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

import errno
import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from runbook.errors import BadInput, PingNotPermitted
from runbook.probes.pingchart import (
    LATE_INTERVALS, LATE_RTT_FACTOR, SWITCHOVER, TASK_END, TASK_START, OutageRun, ProbeResult, _utc, outage_runs,
    plot_probes
)

__all__ = ["ProbeMonitor", "ProbeResult", "OutageRun", "outage_runs", "plot_probes", "MIN_INTERVAL",
           "MAX_INTERVAL", "TASK_START", "TASK_END", "SWITCHOVER", "LATE_INTERVALS", "LATE_RTT_FACTOR"]

log = logging.getLogger("runbook")

MIN_INTERVAL = 0.01  # seconds; finer than this the probe thread's own jitter dominates
MAX_INTERVAL = 10.0

SocketFactory = Callable[[int, int, int], socket.socket]
_MAGIC = b"rbpm"
# Linux's SO_TIMESTAMPNS (asm-generic; the cmsg type is the same number): receive times from the kernel.
_SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_CMSG_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
_TRANSIENT = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNREFUSED,
              errno.ENOBUFS, errno.EAGAIN, errno.EPERM, errno.EACCES, errno.EMSGSIZE}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (or ICMPv6) echo request; the kernel fills the ICMPv6 checksum itself."""
    kind = 8 if family == socket.AF_INET else 128
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq & 0xFFFF)
    if family == socket.AF_INET:
        header = struct.pack("!BBHHH", kind, 0, _checksum(header + payload), ident, seq & 0xFFFF)
    return header + payload


class ProbeMonitor:
    """Pings ``target`` every ``interval`` seconds in a daemon thread until :meth:`stop`.

    ``method``: "auto" (ICMP echo if this process may send it, else a TCP connect to ``tcp_port``),
    "icmp" or "tcp". ICMP uses a raw socket when privileged, else an unprivileged ICMP datagram socket
    (Linux, when ``net.ipv4.ping_group_range`` covers the process's group). ``timeout`` is how long the
    monitor listens at least for a probe's reply (default ``max(1 s, 2 intervals)``); with no reply by
    the time probing ends the probe is lost. ``late_after`` (seconds) fixes when a reply counts as late
    (part of an outage); by default it is ``max(LATE_INTERVALS intervals, LATE_RTT_FACTOR x the usual
    round trip)``, see :mod:`runbook.probes.pingchart`. ``tail`` is how long :meth:`stop` (and leaving a
    ``with`` block) keeps probing before it stops. ``socket_factory`` replaces :func:`socket.socket`
    (for tests and unusual platforms).

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
        self._marks: list[tuple[str, pd.Timestamp]] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._error: str | None = None
        self._late = self._send_errors = self._skipped = 0
        self._stamped = False  # ICMP replies carry the kernel's receive time
        # Per-probe records, by seq: monotonic send and reply times in ns (-1: no reply).
        self._sent_ns, self._reply_ns = array("q"), array("q")
        self._used = ""

    # -- public API ------------------------------------------------------------------------------------
    def start(self) -> ProbeMonitor:
        """Resolve the target, open the probe socket and start probing; raises PingNotPermitted when ICMP
        is not allowed and no TCP port was given, BadInput when the target cannot be resolved."""
        if self._thread is not None:
            raise BadInput("this ProbeMonitor was already started; make a new one for another run")
        self._family, self._address = self._resolve()
        self._sock: socket.socket | None = None
        if self.method in ("auto", "icmp"):
            try:
                self._sock, self._used = self._open_icmp()
            except OSError as exc:
                if self.method == "icmp" or self.tcp_port is None:
                    raise PingNotPermitted(
                        f"ICMP echo to {self.target} is not permitted for this process ({exc.strerror or exc}); "
                        f"give a TCP port the VM answers on: --ping-tcp-port PORT (parameter ping_tcp_port)"
                    ) from exc
        if self._sock is None:
            self._used = "tcp"
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._token = _MAGIC + os.urandom(4)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wall0_ns, self._mono0_ns = time.time_ns(), time.monotonic_ns()
        self._thread = threading.Thread(target=self._run, name=f"probe-{self.target}", daemon=True)
        self._thread.start()
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
        if self._thread is None:
            self.result = self._build_result("the monitor was never started")
            return self.result
        try:
            self._stopping.wait(self.tail if tail is None else max(0.0, float(tail)))
        except KeyboardInterrupt:  # Ctrl-C during the tail cuts it short; what was measured is kept
            pass
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(self.timeout + 2.0)
        note = None if not self._thread.is_alive() else "the probe thread did not stop in time"
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

    def _open_icmp(self) -> tuple[socket.socket, str]:
        proto = socket.IPPROTO_ICMP if self._family == socket.AF_INET else socket.IPPROTO_ICMPV6
        try:
            sock, kind = self._factory(self._family, socket.SOCK_RAW, proto), "icmp-raw"
        except OSError:
            sock, kind = self._factory(self._family, socket.SOCK_DGRAM, proto), "icmp-dgram"
        sock.setblocking(False)
        self._stamped = False
        if _SO_TIMESTAMPNS is not None and _CMSG_SPACE:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self._stamped = True
            except OSError:  # no kernel timestamps: the reply's time is when the thread reads it
                pass
        return sock, kind

    # -- probe thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        tcp: dict[int, socket.socket] = {}  # seq -> connecting socket
        pending: dict[int, int] = {}  # seq -> expiry (monotonic ns), in send order
        try:
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            if self._sock is not None:
                sel.register(self._sock, selectors.EVENT_READ, "icmp")
            step, wait_ns = round(self.interval * 1e9), round(self.timeout * 1e9)
            t0, slot = time.monotonic_ns(), 0
            while True:
                now = time.monotonic_ns()
                sending = not self._stopping.is_set()
                if sending and now >= t0 + slot * step:
                    behind = (now - t0) // step
                    if behind > slot:  # more than a slot late (thread starved): skip, never burst
                        self._skipped += behind - slot
                        slot = behind
                    self._send(len(self._sent_ns), sel, tcp, pending, wait_ns)
                    slot += 1
                    now = time.monotonic_ns()
                for seq in [s for s, expiry in pending.items() if expiry <= now]:
                    del pending[seq]
                    self._close_tcp(seq, sel, tcp)
                if not sending and not pending:
                    break
                deadlines = [next(iter(pending.values()))] if pending else []  # oldest expires first
                if sending:
                    deadlines.append(t0 + slot * step)
                delay = max(0, min(deadlines) - now) / 1e9 if deadlines else 0.1
                for key, _ in sel.select(delay):
                    if key.data == "icmp":
                        self._read_icmp(pending)
                    elif key.data == "wake":
                        self._wake_r.recv(64)
                    else:
                        self._tcp_done(key.data, sel, tcp, pending)
        except Exception as exc:  # recorded, never raised into the migration
            self._error = f"{type(exc).__name__}: {exc}"
            log.warning("probing %s stopped: %s", self.target, self._error)
        finally:
            for seq in list(tcp):
                self._close_tcp(seq, sel, tcp)
            for sock in (self._sock, self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            sel.close()

    def _send(self, seq: int, sel: selectors.BaseSelector, tcp: dict[int, socket.socket],
              pending: dict[int, int], wait_ns: int) -> None:
        sent = time.monotonic_ns()
        self._sent_ns.append(sent)
        self._reply_ns.append(-1)
        try:
            if self._sock is not None:
                packet = _echo_request(self._family, self._ident, seq, self._token + struct.pack("!Q", seq))
                # The send time is taken right before the send: nothing between them for the thread to be
                # preempted in (with the kernel's receive time, the round trip is the network's alone).
                sent = self._sent_ns[seq] = time.monotonic_ns()
                self._sock.sendto(packet, (self._address, 0))
            else:
                sock = self._factory(self._family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.setblocking(False)
                # Linger 0: close with RST, so thousands of probes leave no TIME_WAIT ports behind.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                tcp[seq] = sock
                code = sock.connect_ex((self._address, self.tcp_port))
                if code in (0, errno.ECONNREFUSED):
                    self._reply_ns[seq] = time.monotonic_ns()
                    self._close_tcp(seq, sel, tcp)
                    return
                if code != errno.EINPROGRESS:
                    raise OSError(code, os.strerror(code))
                sel.register(sock, selectors.EVENT_WRITE, seq)
            pending[seq] = sent + wait_ns
        except OSError as exc:  # this probe is lost (no route, link down, no buffers ...); go on
            self._close_tcp(seq, sel, tcp)
            if exc.errno not in _TRANSIENT and exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self._send_errors += 1

    def _read_icmp(self, pending: dict[int, int]) -> None:
        reply_type = 0 if self._family == socket.AF_INET else 129
        while True:
            try:
                if self._stamped:
                    data, ancillary, _, _ = self._sock.recvmsg(2048, _CMSG_SPACE)
                else:
                    data, ancillary = self._sock.recv(2048), []
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket (unreachable ...)
                if exc.errno in _TRANSIENT:
                    continue
                raise
            now = time.monotonic_ns()
            if self._used == "icmp-raw" and self._family == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4:]  # skip the IPv4 header
            if len(data) < 24 or data[0] != reply_type or data[8:16] != self._token:
                continue
            seq = struct.unpack("!Q", data[16:24])[0]
            if seq >= len(self._reply_ns) or self._reply_ns[seq] >= 0:
                continue  # not ours, or a duplicate
            arrived = self._arrival(ancillary, now, self._sent_ns[seq])
            if pending.pop(seq, None) is None:
                self._late += 1  # after its timeout: counted apart, and still an answer
            self._reply_ns[seq] = arrived

    @staticmethod
    def _arrival(ancillary: list, now: int, sent: int) -> int:
        """The reply's arrival on the monotonic clock: the kernel's receive timestamp (wall clock) moved
        to the monotonic clock, kept between the send and now; ``now`` without a timestamp."""
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
                secs, nanos = struct.unpack("qq", payload[:16])
                stamp = secs * 1_000_000_000 + nanos - (time.time_ns() - time.monotonic_ns())
                return min(now, max(sent, stamp))
        return now

    def _tcp_done(self, seq: int, sel: selectors.BaseSelector, tcp: dict[int, socket.socket],
                  pending: dict[int, int]) -> None:
        now = time.monotonic_ns()
        code = tcp[seq].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if pending.pop(seq, None) is not None and code in (0, errno.ECONNREFUSED):
            self._reply_ns[seq] = now  # connected, or refused by an RST: either way the host answered
        self._close_tcp(seq, sel, tcp)

    @staticmethod
    def _close_tcp(seq: int, sel: selectors.BaseSelector, tcp: dict[int, socket.socket]) -> None:
        sock = tcp.pop(seq, None)
        if sock is not None:
            try:
                sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()

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
