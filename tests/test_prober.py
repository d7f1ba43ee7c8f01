"""Tests of runbook.probes.prober: one probe thread and one ICMP socket serving many ProbeMonitors at once,
on loopback (every 127.x address answers) and TEST-NET-2 (never answers), each monitor's result being what a
monitor of its own would have recorded: its own replies only, on its own schedule."""
from __future__ import annotations

import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runbook.probes import prober as prober_mod
from runbook.probes.ping import ProbeMonitor

SILENT = "198.51.100.7"  # TEST-NET-2: never answers


def _probe_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "runbook-prober" or t.name.startswith("probe-")]


def test_many_monitors_share_one_thread_and_get_only_their_own_replies():
    """Monitors of different targets and intervals, side by side: each gets a reply to every probe it sent
    to an answering address, none to the silent one (a prober matching replies by sequence number alone
    would hand it the others' replies), each on its own schedule, all from one thread."""
    plan = [("127.0.0.2", 0.01), ("127.0.0.3", 0.05), ("127.0.0.4", 0.02), (SILENT, 0.02), ("127.0.0.1", 0.1)]
    monitors = [ProbeMonitor(target, interval, timeout=0.5).start() for target, interval in plan]
    time.sleep(1.0)
    assert _probe_threads() == ["runbook-prober"]
    with ThreadPoolExecutor(len(monitors)) as pool:  # stopped together: each probed for the same second
        results = list(pool.map(lambda m: m.stop(tail=0), monitors))
    for (target, interval), r in zip(plan, results):
        tl = r.timeline
        assert r.error is None and r.method.startswith("icmp") and r.target == target
        expected = 1.0 / interval
        assert 0.8 * expected <= len(tl) + r.skipped_slots <= 1.2 * expected + 1, (target, len(tl), r.skipped_slots)
        span = (tl["sent"].iloc[-1] - tl["sent"].iloc[0]).total_seconds()
        assert abs(span - (len(tl) - 1 + r.skipped_slots) * interval) <= 2 * interval, target  # no drift
        assert list(tl["seq"]) == list(range(len(tl)))
        if target == SILENT:
            assert tl["lost"].all() and tl["replied"].isna().all() and r.late_replies == 0, target
            assert r.summary()["outages_count"] == 1
        else:
            assert not tl["lost"].any() and (tl["rtt_ms"] > 0).all() and tl["rtt_ms"].median() < 5, target
            assert (tl["replied"] >= tl["sent"]).all()
            assert r.summary()["outages_count"] == 0


def test_a_monitor_stopped_early_leaves_the_others_probing():
    long = ProbeMonitor("127.0.0.5", 0.02).start()
    short = ProbeMonitor("127.0.0.6", 0.02).start()
    time.sleep(0.3)
    first = short.stop(tail=0)
    time.sleep(0.4)
    second = long.stop(tail=0)
    assert len(short._sent_ns) == len(first.timeline)  # nothing more sent for it once stopped
    assert len(second.timeline) >= 0.7 * 0.7 / 0.02 and not second.timeline["lost"].any()
    assert not first.timeline["lost"].any() and len(first.timeline) >= 0.7 * 0.3 / 0.02


def test_the_thread_ends_when_idle_and_starts_again(monkeypatch):
    monkeypatch.setattr(prober_mod, "LINGER_S", 0.2)
    ProbeMonitor("127.0.0.1", 0.05).start().stop(tail=0)
    deadline = time.monotonic() + 3
    while _probe_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _probe_threads() == []
    r = ProbeMonitor("127.0.0.1", 0.05).start()
    time.sleep(0.3)
    assert _probe_threads() == ["runbook-prober"]
    assert not r.stop(tail=0).timeline["lost"].any()


def test_a_reply_from_another_address_carrying_a_monitors_token_is_not_its_reply():
    """Dispatch checks the address as well as the token: an echo of a monitor's payload that comes from
    elsewhere (here the test sends the monitor's own token and sequence numbers to 127.0.0.10, whose kernel
    echoes them back) is not a reply to the monitor probing the silent address."""
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        pytest.skip("needs a raw ICMP socket (root) to send the stranger's echo")
    mon = ProbeMonitor(SILENT, 0.05, timeout=0.5).start()
    try:
        time.sleep(0.3)
        with raw:
            for seq in range(len(mon._sent_ns)):
                payload = mon._token + struct.pack("!Q", seq)
                raw.sendto(prober_mod.echo_request(socket.AF_INET, 0x4242, seq, payload), ("127.0.0.10", 0))
        time.sleep(0.2)
    finally:
        r = mon.stop(tail=0)
    assert r.timeline["lost"].all() and r.late_replies == 0, r.timeline


def test_the_thread_failing_stops_its_monitors_with_the_error_not_a_hang():
    """An error outside any one monitor's probing (here reading the shared socket raises what no socket
    should) ends every monitor of that prober with the error in its result, at once."""
    class Garbled(socket.socket):
        def recvmsg(self, *args):
            raise ValueError("injected garbled read")

        def recvfrom(self, *args):
            raise ValueError("injected garbled read")

    def factory(family, kind, proto):
        return Garbled(family, kind, proto)

    first, second = (ProbeMonitor(target, 0.05, socket_factory=factory).start() for target in ("127.0.0.1", "127.0.0.11"))
    time.sleep(0.4)
    began = time.monotonic()
    results = [first.stop(tail=0), second.stop(tail=0)]
    assert time.monotonic() - began < 0.5
    for r in results:
        assert "injected garbled read" in r.error and "did not stop in time" not in r.error, r.error
