"""One probe thread for every VM being probed: one selector, one ICMP socket per address family.

A wave probes up to 16 VMs at once (8 moving, 8 prepared). With a thread and a raw socket per VM, every
raw socket received a copy of every VM's replies (the kernel hands each ICMP packet to every raw socket),
so each thread read and dropped the others' replies, and 16 threads woke 20 times a second each to fight
the moves for the interpreter lock. Here a :class:`Prober` holds one thread and one socket per family for
all the :class:`~runbook.probes.ping.ProbeMonitor` objects made with the same socket factory: it sends each
monitor's probes on that monitor's own schedule and hands each reply to the monitor whose token (8 random
bytes in the payload) and address it carries. What a monitor records is what its own thread recorded
before: send times taken right before each send, arrivals from the kernel's receive timestamps, a slot
more than one interval late skipped and counted, replies after the timeout counted late, TCP connects
(and refusals) as replies. The thread ends when no monitor has been probing for ``LINGER_S``.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("runbook")

SocketFactory = Callable[[int, int, int], socket.socket]
MAGIC = b"rbpm"
LINGER_S = 2.0  # the thread and its sockets stay this long after the last monitor ends
# Linux's SO_TIMESTAMPNS (asm-generic; the cmsg type is the same number): receive times from the kernel.
_SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_CMSG_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
TRANSIENT = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNREFUSED,
             errno.ENOBUFS, errno.EAGAIN, errno.EPERM, errno.EACCES, errno.EMSGSIZE}

_probers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probers_lock = threading.Lock()


def prober_for(factory: SocketFactory) -> Prober:
    """The one prober of this process for sockets made by ``factory`` (``socket.socket`` normally)."""
    with _probers_lock:
        prober = _probers.get(factory)
        if prober is None:
            prober = _probers[factory] = Prober(factory)
        return prober


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (or ICMPv6) echo request; the kernel fills the ICMPv6 checksum itself."""
    kind = 8 if family == socket.AF_INET else 128
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq & 0xFFFF)
    if family == socket.AF_INET:
        header = struct.pack("!BBHHH", kind, 0, _checksum(header + payload), ident, seq & 0xFFFF)
    return header + payload


def arrival(ancillary: list, now: int, sent: int) -> int:
    """A reply's arrival on the monotonic clock: the kernel's receive timestamp (wall clock) moved to the
    monotonic clock, kept between the send and now; ``now`` without a timestamp."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
            secs, nanos = struct.unpack("qq", payload[:16])
            stamp = secs * 1_000_000_000 + nanos - (time.time_ns() - time.monotonic_ns())
            return min(now, max(sent, stamp))
    return now


def _same_address(a: str, b: str) -> bool:
    """Whether two textual IP addresses are the same (a zone suffix ignored); True if either is unparsable."""
    a, b = a.split("%")[0], b.split("%")[0]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, a) == socket.inet_pton(family, b)
        except OSError:
            continue
    return True


class _Icmp:
    """An ICMP socket shared by every monitor of one address family."""

    def __init__(self, sock: socket.socket, kind: str, stamped: bool):
        self.sock, self.kind, self.stamped = sock, kind, stamped


class Prober:
    """The probe thread and sockets shared by the monitors made with one socket factory."""

    def __init__(self, factory: SocketFactory = socket.socket):
        self._factory = factory
        self._lock = threading.Lock()
        self._active: list[Any] = []  # monitors probing (or waiting for their last replies)
        self._tokens: dict[bytes, Any] = {}  # payload token -> monitor, for the ICMP replies
        self._icmp: dict[int, _Icmp] = {}  # address family -> socket
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = None

    # -- used by ProbeMonitor -------------------------------------------------------------------------
    def icmp(self, family: int) -> tuple[str, bool]:
        """Open (once) the ICMP socket of ``family``: raw when privileged, else an unprivileged datagram
        socket; returns its kind and whether replies carry the kernel's receive time. Raises OSError when
        ICMP is not permitted."""
        with self._lock:
            held = self._open(family)
            return held.kind, held.stamped

    def _open(self, family: int) -> _Icmp:
        """With the lock held: the ICMP socket of ``family``, opened if it is not."""
        held = self._icmp.get(family)
        if held is None:
            proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
            try:
                sock, kind = self._factory(family, socket.SOCK_RAW, proto), "icmp-raw"
            except OSError:
                sock, kind = self._factory(family, socket.SOCK_DGRAM, proto), "icmp-dgram"
            sock.setblocking(False)
            stamped = False
            if _SO_TIMESTAMPNS is not None and _CMSG_SPACE:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                    stamped = True
                except OSError:  # no kernel timestamps: the reply's time is when the thread reads it
                    pass
            held = self._icmp[family] = _Icmp(sock, kind, stamped)
            if self._sel is not None:
                self._sel.register(sock, selectors.EVENT_READ, family)
        return held

    def add(self, monitor: Any) -> None:
        """Start probing for ``monitor``, its probes carrying a token unique among the active monitors."""
        with self._lock:
            token = MAGIC + os.urandom(4)
            while token in self._tokens:
                token = MAGIC + os.urandom(4)
            if monitor._icmp_family is not None:  # open again if the thread closed it since icmp()
                self._open(monitor._icmp_family)
            monitor._token = token
            self._tokens[token] = monitor
            self._active.append(monitor)
            if self._thread is None:
                self._sel = selectors.DefaultSelector()
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
                for family, held in self._icmp.items():
                    self._sel.register(held.sock, selectors.EVENT_READ, family)
                self._thread = threading.Thread(target=self._run, name="runbook-prober", daemon=True)
                self._thread.start()
            else:
                self.wake()

    def wake(self) -> None:
        """Make the thread look at its monitors again (one stopped, one added)."""
        try:
            self._wake_w.send(b"x")
        except (OSError, AttributeError):
            pass

    # -- the thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug or the selector failing: every monitor stops with the error
            error = f"{type(exc).__name__}: {exc}"
            log.warning("the probe thread stopped: %s", error)
            with self._lock:
                monitors = list(self._active)
            for m in monitors:
                m._error = m._error or error
                with contextlib.suppress(Exception):
                    self._end(m)
            with self._lock:
                for m in list(self._active):  # added since: they stop too
                    m._error = m._error or error
                    m._done.set()
                self._active.clear()
                self._tokens.clear()
                self._close()

    def _loop(self) -> None:
        idle_since: float | None = None
        while True:
            now = time.monotonic_ns()
            with self._lock:
                monitors = list(self._active)
                if not monitors:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= LINGER_S:
                        self._close()
                        return
                else:
                    idle_since = None
            deadlines = []
            for m in monitors:
                try:
                    due = self._step(m, now)
                except Exception as exc:  # recorded on that monitor, never raised into the migration
                    m._error = f"{type(exc).__name__}: {exc}"
                    log.warning("probing %s stopped: %s", m.target, m._error)
                    due = None
                if due is None:
                    self._end(m)
                else:
                    deadlines.append(due)
            now = time.monotonic_ns()
            delay = max(0, min(deadlines) - now) / 1e9 if deadlines else LINGER_S / 4
            for key, _ in self._sel.select(delay):
                if key.data == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                elif isinstance(key.data, int):
                    self._read_icmp(key.data)
                else:
                    monitor, seq = key.data
                    self._tcp_done(monitor, seq)

    def _close(self) -> None:
        """With the lock held: the thread ends; its sockets close (the next monitor opens them again)."""
        for held in self._icmp.values():
            held.sock.close()
        self._icmp.clear()
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._sel.close()
        self._thread = self._sel = self._wake_r = self._wake_w = None

    def _end(self, m: Any) -> None:
        for seq in list(m._tcp):
            self._close_tcp(m, seq)
        with self._lock:
            if m in self._active:
                self._active.remove(m)
            self._tokens.pop(m._token, None)
        m._done.set()

    def _step(self, m: Any, now: int) -> int | None:
        """Send ``m``'s probe if its slot has come, expire its probes past their timeout; returns when
        ``m`` next needs the thread (monotonic ns), or None once it stopped and nothing is pending."""
        sending = not m._stopping.is_set()
        due = m._t0 + m._slot * m._step
        if sending and now >= due:
            behind = (now - m._t0) // m._step
            if behind > m._slot:  # more than a slot late (thread starved): skip, never burst
                m._skipped += behind - m._slot
                m._slot = behind
            self._send(m, len(m._sent_ns))
            m._slot += 1
            now = time.monotonic_ns()
        pending = m._pending
        if pending:
            for seq in [s for s, expiry in pending.items() if expiry <= now]:
                del pending[seq]
                self._close_tcp(m, seq)
        if not sending and not pending:
            return None
        deadlines = [next(iter(pending.values()))] if pending else []  # the oldest expires first
        if sending:
            deadlines.append(m._t0 + m._slot * m._step)
        return min(deadlines) if deadlines else now + 100_000_000

    def _send(self, m: Any, seq: int) -> None:
        sent = time.monotonic_ns()
        m._sent_ns.append(sent)
        m._reply_ns.append(-1)
        try:
            if m._icmp_family is not None:
                held = self._icmp.get(m._icmp_family)
                if held is None:
                    raise OSError(errno.EBADF, "the shared ICMP socket was closed after an error")
                packet = echo_request(m._family, m._ident, seq, m._token + struct.pack("!Q", seq))
                # The send time is taken right before the send: nothing between them for the thread to be
                # preempted in (with the kernel's receive time, the round trip is the network's alone).
                sent = m._sent_ns[seq] = time.monotonic_ns()
                held.sock.sendto(packet, (m._address, 0))
            else:
                sock = self._factory(m._family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.setblocking(False)
                # Linger 0: close with RST, so thousands of probes leave no TIME_WAIT ports behind.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                m._tcp[seq] = sock
                code = sock.connect_ex((m._address, m.tcp_port))
                if code in (0, errno.ECONNREFUSED):
                    m._reply_ns[seq] = time.monotonic_ns()
                    self._close_tcp(m, seq)
                    return
                if code != errno.EINPROGRESS:
                    raise OSError(code, os.strerror(code))
                self._sel.register(sock, selectors.EVENT_WRITE, (m, seq))
            m._pending[seq] = sent + m._wait_ns
        except OSError as exc:  # this probe is lost (no route, link down, no buffers ...); go on
            self._close_tcp(m, seq)
            if exc.errno not in TRANSIENT and exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            m._send_errors += 1

    def _read_icmp(self, family: int) -> None:
        held = self._icmp.get(family)
        if held is None:
            return
        reply_type = 0 if family == socket.AF_INET else 129
        while True:
            try:
                if held.stamped:
                    data, ancillary, _, source = held.sock.recvmsg(2048, _CMSG_SPACE)
                else:
                    (data, source), ancillary = held.sock.recvfrom(2048), []
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket (unreachable ...)
                if exc.errno in TRANSIENT:
                    continue
                self._broken(family, held, exc)
                return
            now = time.monotonic_ns()
            if held.kind == "icmp-raw" and family == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4:]  # skip the IPv4 header
            if len(data) < 24 or data[0] != reply_type:
                continue
            m = self._tokens.get(bytes(data[8:16]))
            if m is None or (source and not _same_address(source[0], m._address)):
                continue  # another process's, another monitor's token from the wrong host, or stale
            seq = struct.unpack("!Q", data[16:24])[0]
            if seq >= len(m._reply_ns) or m._reply_ns[seq] >= 0:
                continue  # not one it sent, or a duplicate
            arrived = arrival(ancillary, now, m._sent_ns[seq])
            if m._pending.pop(seq, None) is None:
                m._late += 1  # after its timeout: counted apart, and still an answer
            m._reply_ns[seq] = arrived

    def _broken(self, family: int, held: _Icmp, exc: OSError) -> None:
        """The shared socket failed: its monitors stop with the error; the next monitor opens a new one."""
        error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            users = [m for m in self._active if m._icmp_family == family]
            self._icmp.pop(family, None)
        for m in users:
            m._error = error
            log.warning("probing %s stopped: %s", m.target, error)
            self._end(m)
        try:
            self._sel.unregister(held.sock)
        except (KeyError, ValueError):
            pass
        held.sock.close()

    def _tcp_done(self, m: Any, seq: int) -> None:
        now = time.monotonic_ns()
        sock = m._tcp.get(seq)
        if sock is None:
            return
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if m._pending.pop(seq, None) is not None and code in (0, errno.ECONNREFUSED):
            m._reply_ns[seq] = now  # connected, or refused by an RST: either way the host answered
        self._close_tcp(m, seq)

    def _close_tcp(self, m: Any, seq: int) -> None:
        sock = m._tcp.pop(seq, None)
        if sock is not None:
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
