"""Tests of runbook.probes.ping and runbook.probes.pingchart: outage arithmetic on plain data (lost, late
and silent), real probing on loopback, outages injected into a test host in a network namespace this file
creates (packets dropped, held, delayed), the TCP fallback, and the chart.

The namespace tests need root and ``ip netns``; they skip with the reason otherwise. They only ever probe
TEST_ADDR, the address this file gives its own test host (in 10.199.0.0/16, one /30 per test process).
``tc netem`` is not used: kernels may be built without sch_netem (the one these tests were written on has
neither it nor loadable modules, and no nft or iptables), so the three failures are made with iproute2
alone and a small responder (see :class:`NetnsHost`).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from runbook.errors import BadInput, PingNotPermitted  # noqa: E402
from runbook.probes.ping import ProbeMonitor, ProbeResult, outage_runs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# A /30 of 10.199.0.0/16 of this process's own, so that two test runs on one machine never share one.
_NET = os.getpid() % 16384 * 4
HOST_ADDR, TEST_ADDR = (f"10.199.{_NET // 256}.{_NET % 256 + n}" for n in (1, 2))
T0 = pd.Timestamp("2026-01-02 12:01:00", tz="UTC")


# -- pure outage logic ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("lost", "runs"), [
    ([], []),
    ([False] * 5, []),
    ([True] * 4, [(0, 4)]),
    ([True, False, False, True, True, False, True], [(0, 1), (3, 2), (6, 1)]),
    ([False, True, True, True, False], [(1, 3)]),
])
def test_outage_runs(lost, runs):
    assert [tuple(r) for r in outage_runs(lost)] == runs


def _timeline(rtts: list, interval: float = 0.1) -> pd.DataFrame:
    """Probe i sent at T0 + i * interval and answered after rtts[i] ms (None: never answered)."""
    sent = pd.Series([T0 + pd.Timedelta(seconds=i * interval) for i in range(len(rtts))],
                     dtype="datetime64[ns, UTC]")
    rtt = pd.Series([float("nan") if r is None else float(r) for r in rtts], dtype="float64")
    lost = rtt.isna()
    return pd.DataFrame({"seq": range(len(rtts)), "sent": sent,
                         "replied": (sent + pd.to_timedelta(rtt.fillna(0), unit="ms")).where(~lost),
                         "rtt_ms": rtt, "lost": lost})


def _result(lost: list[bool], interval: float = 0.1, marks=(), rtts: list | None = None, **kwargs) -> ProbeResult:
    """A ProbeResult from a lost-flag list (replies after 0.5 ms), or from ``rtts`` (ms, None: lost)."""
    rtts = rtts if rtts is not None else [None if flag else 0.5 for flag in lost]
    return ProbeResult(target="vm1", address="192.0.2.5", method="icmp-raw", interval=interval, timeout=1.0,
                       timeline=_timeline(rtts, interval), marks=list(marks), **kwargs)


def test_summary_counts_outages_and_phases():
    # 100 probes at 100 ms (10 s from 12:01:00); task 12:01:02 .. 12:01:08.
    lost = [False] * 100
    for i in (5, 6):  # 12:01:00.5, before the task
        lost[i] = True
    for i in range(30, 33):  # 12:01:03.0, in the middle of the task
        lost[i] = True
    for i in range(74, 79):  # 12:01:07.4 .. 12:01:07.9: the second before task end
        lost[i] = True
    lost[95] = True  # 12:01:09.5, after the task
    r = _result(lost)
    s = r.summary(task_start=T0 + pd.Timedelta(seconds=2), task_end=T0 + pd.Timedelta(seconds=8))
    json.dumps(s, allow_nan=False)  # strictly JSON-serialisable
    assert (s["probes_sent"], s["probes_received"], s["probes_lost"], s["probes_late"]) == (100, 89, 11, 0)
    assert s["loss_pct"] == 11.0
    assert s["outages_count"] == 4
    assert s["longest_outage_ms"] == 500.0 and s["total_outage_ms"] == 1100.0
    assert s["longest_outage_kind"] == "lost"
    assert [o["phase"] for o in s["outages"]] == ["before task", "during task", "during switch-over", "after task"]
    assert [o["probes_lost"] for o in s["outages"]] == [2, 3, 5, 1]
    first = s["outages"][0]
    assert pd.Timestamp(first["start"]) == T0 + pd.Timedelta(milliseconds=500)
    assert pd.Timestamp(first["end"]) == T0 + pd.Timedelta(milliseconds=700)
    assert first["duration_ms"] == 200.0 and first["silence_ms"] == 300.0 and first["kind"] == "lost"
    assert s["rtt_median_ms"] == 0.5 and s["rtt_baseline_ms"] == 0.5
    assert s["late_after_ms"] == 200.0  # 2 intervals: the round trip is far shorter
    assert s["longest_silence_ms"] == 600.0  # replies 12:01:07.3 .. 12:01:07.9
    assert [p["seq"] for p in s["lost_probes"]] == [5, 6, 30, 31, 32, 74, 75, 76, 77, 78, 95]
    assert s["late_probes"] == []
    text = r.describe(task_start=T0 + pd.Timedelta(seconds=2), task_end=T0 + pd.Timedelta(seconds=8))
    assert text == ("500 ms without replies: 5 probes lost, at 12:01:07.4 UTC, during switch-over; "
                    "4 outages, 1.1 s in all (100 probes: 0 late, 11 lost)")


def test_held_probes_are_an_outage_not_a_high_round_trip():
    """The case of issue 20: a 1 s link-down at 50 ms probes; the kernel held the echo requests and
    delivered them when the link came back. Probe 20 never came back; 21..39 were answered at 12:01:02.0005."""
    back = 2.0005  # seconds after T0
    rtts = [0.5] * 142
    rtts[20] = None
    for i in range(21, 40):
        rtts[i] = round((back - i * 0.05) * 1000, 3)
    r = _result([], interval=0.05, rtts=rtts, marks=[("task_start", T0 + pd.Timedelta(seconds=0.5)),
                                                       ("task_end", T0 + pd.Timedelta(seconds=5))])
    s = r.summary()
    assert s["late_after_ms"] == 100.0  # 2 intervals (the usual round trip is 0.5 ms)
    # Probes 21..38 came back more than 100 ms after their send; 39 (50.5 ms) was in time.
    assert (s["probes_lost"], s["probes_late"], s["probes_received"]) == (1, 18, 141)
    assert [p["seq"] for p in s["late_probes"]] == list(range(21, 39))
    assert s["late_probes"][0]["rtt_ms"] == 950.5 and s["late_probes"][-1]["rtt_ms"] == 100.5
    # The silence: from the reply to probe 19 (0.9505 s) to the burst at 2.0005 s, less one interval.
    assert s["longest_silence_ms"] == 1050.0
    assert s["outages_count"] == 1 and s["longest_outage_ms"] == 1000.0
    outage = s["outages"][0]
    assert (outage["kind"], outage["probes_lost"], outage["probes_late"], outage["first_seq"],
            outage["last_seq"]) == ("lost and late", 1, 18, 20, 38)
    assert outage["rtt_max_ms"] == 950.5 and outage["phase"] == "during task"
    assert s["longest_outage_kind"] == "lost and late" and s["total_outage_ms"] == 1000.0
    assert r.describe() == ("1.00 s without replies: 18 probes answered late, 1 lost, at 12:01:01.00 UTC, "
                            "during task (142 probes)")
    # The old view is still there: one probe never answered, the round trips of the others.
    assert s["probes_lost"] == 1 and s["rtt_max_ms"] == 950.5 and s["loss_pct"] == pytest.approx(0.704)


def test_delayed_probes_are_an_outage():
    """Replies to the probes sent in a 1 s window came 1 s late (netem-like delay), none lost."""
    rtts = [0.4] * 60
    for i in range(20, 30):  # 12:01:02.0 .. 12:01:02.9 at 100 ms
        rtts[i] = 1000.0
    s = _result([], rtts=rtts).summary()
    assert (s["probes_lost"], s["probes_late"], s["outages_count"]) == (0, 10, 1)
    # Replies: 19's at 1.9004 s, then 20's at 3.0 s (sent at 2.0 s, 1 s late): 1099.6 ms of silence.
    assert s["longest_silence_ms"] == 1099.6
    assert s["longest_outage_ms"] == 1000.0 and s["longest_outage_kind"] == "late"
    assert _result([], rtts=rtts).describe().startswith("1.0 s without replies: 10 probes answered late, at ")


def test_silence_without_a_failed_probe_is_no_outage():
    """A gap in the sends (a starved probe thread) or a slow-but-in-time reply is no outage."""
    tl = _timeline([0.5] * 40)
    tl = tl.drop(index=range(10, 15)).reset_index(drop=True)  # no probe sent for 0.6 s
    tl.loc[25, ["rtt_ms", "replied"]] = [150.0, tl.loc[25, "sent"] + pd.Timedelta(milliseconds=150)]
    r = ProbeResult(target="vm1", address="192.0.2.5", method="icmp-raw", interval=0.1, timeout=1.0,
                    timeline=tl, marks=[])
    s = r.summary()
    assert s["outages_count"] == 0 and s["longest_outage_ms"] == 0.0 and s["longest_outage_kind"] is None
    assert s["longest_silence_ms"] == pytest.approx(600.0)
    assert r.describe() == "no outage: all 35 probes answered within 200 ms"


def test_late_threshold_follows_the_usual_round_trip_outside_the_task():
    # A far target: 80 ms round trips at 20 ms probes, so a reply is late after 160 ms, not 40 ms.
    rtts = [80.0] * 100
    rtts[50] = 120.0  # slow but not late
    for i in range(60, 65):
        rtts[i] = 400.0  # late
    marks = [("task_start", T0 + pd.Timedelta(seconds=0.5)), ("task_end", T0 + pd.Timedelta(seconds=1.5))]
    r = _result([], interval=0.02, rtts=rtts, marks=marks)
    s = r.summary()
    assert s["rtt_baseline_ms"] == 80.0 and s["late_after_ms"] == 160.0
    assert s["late_rule"] == "max(2 x interval, 2 x baseline RTT)"
    assert s["probes_late"] == 5 and s["outages_count"] == 1 and s["outages"][0]["first_seq"] == 60
    # Inside the task the round trips were 400 ms for a while; outside they were 80 ms: the baseline is
    # taken outside, so a long slow spell in the task cannot raise the bar it is measured against.
    slow = [80.0] * 40 + [400.0] * 60
    s = _result([], interval=0.02, rtts=slow, marks=[("task_start", T0 + pd.Timedelta(seconds=0.79))]).summary()
    assert s["rtt_baseline_ms"] == 80.0 and s["probes_late"] == 60
    # A threshold given by the caller wins.
    s = _result([], interval=0.02, rtts=rtts, marks=marks, late_after=0.1).summary()
    assert s["late_after_ms"] == 100.0 and s["probes_late"] == 6 and s["late_rule"] == "given: 100 ms"


def test_describe_one_outage_and_switchover_time_from_marks():
    lost = [False] * 84
    lost[70:73] = [True] * 3  # 12:01:07.0
    r = _result(lost, marks=[("task_start", T0), ("switchover", T0 + pd.Timedelta(seconds=7.5)),
                             ("task_end", T0 + pd.Timedelta(seconds=8.3))])
    assert r.describe() == "300 ms without replies: 3 probes lost, at 12:01:07.0 UTC, during switch-over (84 probes)"
    assert r.summary()["outages"][0]["phase"] == "during switch-over"
    # Without task times there is no phase, and the sentence says nothing about one.
    assert _result(lost).describe() == "300 ms without replies: 3 probes lost, at 12:01:07.0 UTC (84 probes)"


def test_describe_no_loss_and_all_lost():
    assert _result([False] * 84).describe() == "no outage: all 84 probes answered within 200 ms"
    s = _result([True] * 10).summary()
    assert (s["probes_lost"], s["outages_count"], s["loss_pct"], s["rtt_median_ms"]) == (10, 1, 100.0, None)
    assert s["longest_outage_ms"] == 1000.0 and s["rtt_baseline_ms"] is None and s["late_after_ms"] == 200.0
    json.dumps(s, allow_nan=False)
    empty = ProbeResult(target="vm1", address="", method="none", interval=0.1, timeout=1.0,
                        timeline=_timeline([]), marks=[])
    assert empty.describe() == "no probe was sent" and empty.summary()["longest_silence_ms"] == 0.0


def test_the_record_schema_reads_new_and_old_ping_summaries():
    """The summary follows the ``ping`` part of record.schema.json; a summary written before late probes
    were counted (no probes_late, outages of lost probes only) still does."""
    import jsonschema

    from runbook.records.record import schema

    check = jsonschema.validators.validator_for(schema())(schema()["properties"]["ping"]).validate
    rtts = [0.5] * 60
    rtts[20], rtts[21:30] = None, [900.0] * 9
    new = _result([], interval=0.05, rtts=rtts).summary()
    check({**new, "description": "...", "note": "probing vm1 every 50 ms"})
    old = {"note": "probing 10.1.2.3 every 100 ms", "description": "1 probe lost (100 ms) of 72, one outage at "
           "10:15:09.8 UTC, during switch-over", "probes_sent": 72, "probes_received": 71, "probes_lost": 1,
           "loss_pct": 1.389, "outages_count": 1, "longest_outage_ms": 100.0, "total_outage_ms": 100.0,
           "late_replies": 0, "outages": [{"start": "2026-03-14T10:15:09.800+00:00", "end":
           "2026-03-14T10:15:09.900+00:00", "duration_ms": 100.0, "probes_lost": 1, "first_seq": 23,
           "phase": "switch-over"}]}
    check(old)
    with pytest.raises(jsonschema.ValidationError):
        check({**new, "description": "...", "outages": [{**new["outages"][0], "kind": "dropped"}]})


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"interval": 0.005}, "out of range"),
    ({"interval": 11}, "out of range"),
    ({"method": "udp"}, "unknown"),
    ({"method": "tcp"}, "--ping-tcp-port"),
    ({"tcp_port": 70000}, "port"),
    ({"timeout": 0}, "timeout"),
    ({"late_after": 0}, "late_after"),
])
def test_bad_input(kwargs, words):
    with pytest.raises(BadInput, match=words):
        ProbeMonitor("127.0.0.1", **kwargs)


def test_unresolvable_target_is_bad_input():
    with pytest.raises(BadInput, match="cannot be resolved"):
        ProbeMonitor("no-such-host.invalid").start()


# -- real probing on loopback ------------------------------------------------------------------------------
@pytest.mark.parametrize("interval", [0.01, 0.1])
def test_loopback_icmp_no_loss_on_schedule(interval):
    mon = ProbeMonitor("127.0.0.1", interval).start()
    time.sleep(1.0)
    r = mon.stop(tail=0)
    assert r.error is None and r.method.startswith("icmp")
    tl = r.timeline
    expected = 1.0 / interval
    assert 0.85 * expected <= len(tl) + r.skipped_slots <= 1.15 * expected + 1
    assert not tl["lost"].any() and tl["replied"].notna().all()
    assert (tl["rtt_ms"] > 0).all() and tl["rtt_ms"].median() < 5
    # A fixed schedule: no drift over the run, however late a single send was.
    # A slot the thread was too late for (a busy machine) is skipped and counted, never sent in a burst.
    span = (tl["sent"].iloc[-1] - tl["sent"].iloc[0]).total_seconds()
    assert abs(span - (len(tl) - 1 + r.skipped_slots) * interval) <= 2 * interval
    assert str(tl["sent"].dtype) == "datetime64[ns, UTC]" and list(tl.columns) == [
        "seq", "sent", "replied", "rtt_ms", "lost"]


def test_context_manager_tail_and_marks():
    with ProbeMonitor("127.0.0.1", 0.05, tail=0.3) as mon:
        mon.mark("task_start")
        time.sleep(0.3)
        mon.mark("task_end")
        leaving = time.monotonic()
    assert time.monotonic() - leaving >= 0.3  # the tail was waited
    r = mon.result
    assert r is not None and [n for n, _ in r.marks] == ["task_start", "task_end"]
    assert r.timeline["sent"].iloc[-1] > r.mark_time("task_end") + pd.Timedelta(seconds=0.2)
    assert r.describe() == f"no outage: all {len(r.timeline)} probes answered within 100 ms"
    assert mon.stop() is r  # stopping again gives the same result


def test_start_twice_and_stop_unstarted():
    mon = ProbeMonitor("127.0.0.1", 0.1).start()
    with pytest.raises(BadInput, match="already started"):
        mon.start()
    assert mon.stop(0).error is None
    r = ProbeMonitor("127.0.0.1").stop(0)
    assert "never started" in r.error and len(r.timeline) == 0


def test_reply_time_is_the_kernels_receive_stamp():
    """A reply read late by a busy probe thread keeps the time the kernel received it (SO_TIMESTAMPNS)."""
    now = time.monotonic_ns()
    sent = now - 50_000_000

    def stamp(wall_ns: int) -> list:
        return [(socket.SOL_SOCKET, 35, struct.pack("qq", wall_ns // 10**9, wall_ns % 10**9))]

    got = ProbeMonitor._arrival(stamp(time.time_ns() - 30_000_000), now, sent)  # received 30 ms ago
    assert abs(now - got - 30_000_000) < 5_000_000
    assert ProbeMonitor._arrival([], now, sent) == now  # no stamp: when it was read
    assert ProbeMonitor._arrival(stamp(time.time_ns() - 10**10), now, sent) == sent  # a clock step: clamped


# -- ICMP not permitted, TCP probes ------------------------------------------------------------------------
def _no_icmp(family: int, kind: int, proto: int) -> socket.socket:
    """A socket factory for a process that may not send ICMP (as an unprivileged user with the group
    outside net.ipv4.ping_group_range)."""
    if proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
        raise PermissionError(errno.EACCES, "Permission denied")
    return socket.socket(family, kind, proto)


@pytest.fixture
def tcp_listener():
    """A loopback TCP server that accepts and closes every connection; yields its port."""
    server = socket.create_server(("127.0.0.1", 0), backlog=512)
    server.settimeout(0.2)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join(2)
    server.close()


def test_icmp_not_permitted_names_the_fix():
    with pytest.raises(PingNotPermitted, match="--ping-tcp-port PORT") as caught:
        ProbeMonitor("127.0.0.1", 0.1, socket_factory=_no_icmp).start()
    assert "\n" not in str(caught.value) and "ping_tcp_port" in str(caught.value)
    with pytest.raises(PingNotPermitted):
        ProbeMonitor("127.0.0.1", 0.1, method="icmp", tcp_port=22, socket_factory=_no_icmp).start()


def test_auto_falls_back_to_tcp(tcp_listener):
    mon = ProbeMonitor("127.0.0.1", 0.02, tcp_port=tcp_listener, socket_factory=_no_icmp).start()
    time.sleep(0.6)
    r = mon.stop(0)
    assert r.error is None and r.method == "tcp"
    assert len(r.timeline) >= 25 and not r.timeline["lost"].any()


def test_tcp_closed_port_counts_as_reply():
    with socket.socket() as probe:  # a port nobody listens on: the kernel answers SYN with RST
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mon = ProbeMonitor("127.0.0.1", 0.02, tcp_port=port, method="tcp").start()
    time.sleep(0.5)
    r = mon.stop(0)
    assert r.error is None and r.method == "tcp"
    assert len(r.timeline) >= 20 and not r.timeline["lost"].any()


def test_error_inside_probe_thread_is_recorded_not_raised():
    class Broken(socket.socket):
        def sendto(self, *args):
            raise OSError(errno.EINVAL, "injected failure")

    def factory(family, kind, proto):
        return Broken(family, kind, proto)

    mon = ProbeMonitor("127.0.0.1", 0.05, socket_factory=factory).start()
    time.sleep(0.2)
    r = mon.stop(0)
    assert "injected failure" in r.error and "injected failure" in r.describe()


# -- a test host in a network namespace --------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


# Answers ICMP echo requests in the test host's namespace (the kernel's own answering is switched off
# there), each reply leaving ``delay`` seconds after its request came: what `tc netem delay` does on the
# host's egress. A line "delay SECONDS" on stdin sets the delay for the requests that come from then on
# (replies already waiting keep theirs, later ones may overtake them, as with netem); it answers "ok".
RESPONDER = r"""
import heapq, os, select, socket, struct, sys, time

def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data[:len(data) // 2 * 2]))
    if len(data) % 2:
        total += data[-1] << 8
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

os.nice(-10)  # answer at once even when the machine is busy: a reply late by scheduling is no test of ours
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
delay, waiting, count, pending = 0.0, [], 0, b""
print("ready", flush=True)
while True:
    wait = max(0.0, waiting[0][0] - time.monotonic()) if waiting else None
    readable = select.select([sock, 0], [], [], wait)[0]
    if sock in readable:
        data, (source, _) = sock.recvfrom(4096)
        icmp = data[(data[0] & 15) * 4:]
        if icmp[:1] == b"\x08":
            reply = b"\0\0\0\0" + icmp[4:]
            reply = reply[:2] + struct.pack("!H", checksum(reply)) + reply[4:]
            heapq.heappush(waiting, (time.monotonic() + delay, count, reply, source))
            count += 1
    if 0 in readable:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            delay = float(line.split()[1])
            print("ok", flush=True)
    while waiting and waiting[0][0] <= time.monotonic():
        _, _, reply, source = heapq.heappop(waiting)
        sock.sendto(reply, (source, 0))
"""


@dataclasses.dataclass(frozen=True)
class Window:
    """When an injected failure began and ended: wall-clock times before and after each command."""

    began: tuple[float, float]
    ended: tuple[float, float]

    @property
    def shortest(self) -> float:
        return self.ended[0] - self.began[1]

    @property
    def longest(self) -> float:
        return self.ended[1] - self.began[0]


FAULTS = ("dropped", "held", "delayed")


class NetnsHost:
    """A network namespace holding TEST_ADDR on one end of a veth pair whose other end, here, is HOST_ADDR.

    It fails in the three ways a network fails a ping (:meth:`inject`):

    * ``dropped``: a blackhole route for HOST_ADDR in the namespace; the test host's replies are thrown
      away (what `tc netem loss 100%` or a drop rule does);
    * ``held``: its link set down, then up. The neighbour entries are not static: while the link is down
      our probes wait in this side's ARP queue and leave when it comes back, as in a real switch-over.
      This side re-sends ARP every 10 ms (and keeps trying for 10 s) so that they leave within 10 ms of
      the link's return; with Linux's default of 1 s the network itself would add up to a second to the
      outage (true, and measured as such, but not the window the test injects);
    * ``delayed``: the replies leave ``seconds`` after their request came, for ``seconds``: RESPONDER
      answers instead of the kernel (`tc netem delay` is not in every kernel).
    """

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.ns, self.here, self.there = f"rbping{tag}", f"rbp{tag}a", f"rbp{tag}b"
        self.responder: subprocess.Popen | None = None

    def create(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.here, "type", "veth", "peer", "name", self.there, "netns", self.ns)
        _ip("addr", "add", f"{HOST_ADDR}/30", "dev", self.here)
        self.run("ip", "addr", "add", f"{TEST_ADDR}/30", "dev", self.there)
        neigh = Path("/proc/sys/net/ipv4/neigh", self.here)
        (neigh / "retrans_time_ms").write_text("10")
        (neigh / "mcast_solicit").write_text("1000")
        _ip("link", "set", self.here, "up")
        self.run("ip", "link", "set", self.there, "up")

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return _ip("netns", "exec", self.ns, *cmd)

    def _timed(self, *cmd: str) -> tuple[float, float]:
        before = time.time()
        self.run(*cmd)
        return before, time.time()

    def link(self, state: str) -> tuple[float, float]:
        """Set the test host's link up or down; return the wall-clock time before and after the command."""
        return self._timed("ip", "link", "set", self.there, state)

    def drop(self, on: bool) -> tuple[float, float]:
        """Throw the test host's replies away (or stop doing so); the times before and after."""
        return self._timed("ip", "route", "add" if on else "del", "blackhole", f"{HOST_ADDR}/32")

    def start_responder(self) -> None:
        """Let RESPONDER answer pings instead of the test host's kernel (for ``delayed``)."""
        self.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/icmp_echo_ignore_all")
        self.responder = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", RESPONDER],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.responder.stdout.readline().strip() == "ready"

    def delay(self, seconds: float) -> tuple[float, float]:
        """Delay the replies to the requests that come from now on; the times before and after."""
        before = time.time()
        self.responder.stdin.write(f"delay {seconds}\n")
        self.responder.stdin.flush()
        assert self.responder.stdout.readline().strip() == "ok"
        return before, time.time()

    def prepare(self, kind: str) -> None:
        """What a failure needs before probing starts."""
        if kind == "delayed":
            self.start_responder()

    def inject(self, kind: str, seconds: float) -> Window:
        """Fail for ``seconds`` in the way ``kind`` says (one of FAULTS); return when it began and ended."""
        start, end = {"dropped": (lambda: self.drop(True), lambda: self.drop(False)),
                      "held": (lambda: self.link("down"), lambda: self.link("up")),
                      "delayed": (lambda: self.delay(seconds), lambda: self.delay(0))}[kind]
        began = start()
        time.sleep(max(0.0, seconds - (time.time() - began[1])))
        return Window(began, end())

    def destroy(self) -> None:
        if self.responder is not None:
            self.responder.stdin.close()
            try:
                self.responder.wait(5)
            except subprocess.TimeoutExpired:
                self.responder.kill()
                self.responder.wait(5)
        _ip("netns", "del", self.ns, check=False)  # takes the veth pair with it
        _ip("link", "del", self.here, check=False)


@pytest.fixture
def test_host():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    host = NetnsHost()
    try:
        host.create()
    except (subprocess.CalledProcessError, OSError) as exc:
        host.destroy()
        reason = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        pytest.skip(f"cannot create a network namespace with a veth pair here: {reason}")
    yield host
    host.destroy()


def assert_measured(r: ProbeResult, window: Window, interval: float, kind: str, **times) -> dict:
    """The record says one outage, within 2 intervals of the injected window (its length and where it
    lies), of the kind injected, and nothing failed outside it. Returns the summary."""
    s = r.summary(**times)
    tol = 2 * interval
    assert r.error is None, r.error
    found = [(o["start"], o["duration_ms"], o["kind"], o["probes_lost"], o["probes_late"]) for o in s["outages"]]
    assert s["outages_count"] == 1, (found, window)
    outage, measured = s["outages"][0], s["longest_outage_ms"] / 1000
    assert window.shortest - tol <= measured <= window.longest + tol, (measured, window, found)
    start, end = pd.Timestamp(outage["start"]).timestamp(), pd.Timestamp(outage["end"]).timestamp()
    assert window.began[0] - tol <= start and end <= window.ended[1] + tol, (start, end, window)
    probes = r.probes(times.get("task_start"), times.get("task_end"))
    sent = probes["sent"].map(lambda t: t.timestamp())
    failed = sent[probes["state"] != "ok"]
    assert failed.min() >= window.began[0] - tol and failed.max() <= window.ended[1] + tol, (failed, window)
    # Every probe sent well inside the window failed, the way the failure injected makes it fail (counted
    # from the timeline: a busy machine may skip a slot, which is no reason to fail the test).
    inside = probes.loc[(sent >= window.began[1]) & (sent <= window.ended[0] - tol), "state"].value_counts()
    expected = {"dropped": {"lost"}, "held": {"late", "lost"}, "delayed": {"late"}}[kind]
    assert set(inside.index) <= expected and inside.sum() >= (window.shortest - tol) / interval / 2, (inside, found)
    kinds = {"dropped": {"lost"}, "held": {"late", "lost and late"}, "delayed": {"late"}}[kind]
    assert outage["kind"] in kinds and (kind != "held" or outage["probes_lost"] <= 2), found
    assert "without replies" in r.describe(**times)
    return s


@pytest.mark.parametrize("interval", [0.1, 0.02])
@pytest.mark.parametrize("kind", FAULTS)
def test_measures_an_injected_outage(test_host, kind, interval):
    test_host.prepare(kind)
    mon = ProbeMonitor(TEST_ADDR, interval).start()
    time.sleep(1.0)
    window = test_host.inject(kind, 1.0)
    time.sleep(1.5)
    r = mon.stop(tail=0)
    assert_measured(r, window, interval, kind)
    assert len(r.timeline) + r.skipped_slots == pytest.approx(3.5 / interval, rel=0.1)


def test_a_reply_after_its_timeout_is_late_not_lost(test_host):
    mon = ProbeMonitor(TEST_ADDR, 0.1, timeout=0.3).start()
    time.sleep(0.5)
    window = test_host.inject("held", 1.0)
    time.sleep(1.0)
    r = mon.stop(tail=0)
    s = assert_measured(r, window, 0.1, "held")
    assert s["late_replies"] >= 5 and s["probes_lost"] <= 2, s  # held past the 300 ms timeout, yet answered
    assert s["timeout_ms"] == 300.0 and s["late_after_ms"] == 200.0


@pytest.mark.parametrize("interval", [0.1, 0.02])
def test_no_outage_no_loss(test_host, interval):
    mon = ProbeMonitor(TEST_ADDR, interval).start()
    time.sleep(2.0)
    r = mon.stop(tail=0)
    s = r.summary()
    assert r.error is None and (s["probes_lost"], s["probes_late"], s["outages_count"]) == (0, 0, 0), s
    assert len(r.timeline) + r.skipped_slots == pytest.approx(2.0 / interval, rel=0.1)


def test_unreachable_target_all_lost(test_host):
    test_host.link("down")
    mon = ProbeMonitor(TEST_ADDR, 0.1, timeout=0.3).start()
    time.sleep(1.0)
    started = time.monotonic()
    r = mon.stop(tail=0)
    assert time.monotonic() - started < 0.3 + 2.0  # waits out the last probes' timeout, no longer
    s = r.summary()
    assert r.error is None and s["probes_sent"] >= 9
    assert s["probes_lost"] == s["probes_sent"] and s["outages_count"] == 1
    assert r.timeline["replied"].isna().all() and r.timeline["rtt_ms"].isna().all()


def test_unprivileged_user_gets_ping_not_permitted(test_host):
    """As `nobody`, in a namespace whose net.ipv4.ping_group_range excludes every group (the host's own
    sysctl is left alone), ICMP is refused and the message names the fix."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    test_host.run("sh", "-c", "echo '1 0' > /proc/sys/net/ipv4/ping_group_range")
    as_nobody = ["ip", "netns", "exec", test_host.ns, "setpriv", "--reuid=65534", "--regid=65534",
                 "--clear-groups", sys.executable]
    readable = subprocess.run([*as_nobody, "-c", "import runbook.probes.ping"], cwd=REPO, capture_output=True, text=True)
    if readable.returncode != 0:
        pytest.skip(f"user nobody cannot import the checkout: {readable.stderr.strip().splitlines()[-1:]}")
    script = textwrap.dedent("""
        import sys
        from runbook.errors import PingNotPermitted
        from runbook.probes.ping import ProbeMonitor
        try:
            ProbeMonitor(sys.argv[1], 0.1).start().stop(0)
        except PingNotPermitted as exc:
            print(exc)
            sys.exit(3)
    """)
    done = subprocess.run([*as_nobody, "-c", script, HOST_ADDR], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3, done.stderr
    assert "--ping-tcp-port PORT" in done.stdout and "not permitted" in done.stdout
    # Once the range covers nobody's group, the unprivileged ICMP datagram socket is used instead.
    test_host.run("sh", "-c", "echo '65534 65534' > /proc/sys/net/ipv4/ping_group_range")
    script = textwrap.dedent("""
        import sys, time
        from runbook.probes.ping import ProbeMonitor
        mon = ProbeMonitor(sys.argv[1], 0.02).start()
        time.sleep(0.5)
        r = mon.stop(0)
        print(r.method, len(r.timeline), int(r.timeline["lost"].sum()), r.error)
    """)
    done = subprocess.run([*as_nobody, "-c", script, HOST_ADDR], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    method, sent, lost, error = done.stdout.split()
    assert (method, lost, error) == ("icmp-dgram", "0", "None") and int(sent) >= 20, done.stderr


# -- the chart ---------------------------------------------------------------------------------------------
def _outage_spans(ax) -> list[tuple[float, float]]:
    """The red spans the chart draws over the outages, as (left, right) in data coordinates."""
    (spans,) = [c for c in ax.collections if c.get_label() == "outage (no reply in time)"] or [None]
    if spans is None:
        return []
    return [(float(p.vertices[:, 0].min()), float(p.vertices[:, 0].max())) for p in spans.get_paths()]


def test_plot_renders_png_with_loss_span():
    import io

    lost = [False] * 84
    lost[70:73] = [True] * 3
    r = _result(lost, marks=[("task_start", T0 + pd.Timedelta(seconds=1)),
                             ("task_end", T0 + pd.Timedelta(seconds=7.6))])
    fig = r.plot(events=[(T0 + pd.Timedelta(seconds=7.1), "RARP seen")])
    ax = fig.axes[0]
    assert len(_outage_spans(ax)) == 1
    assert ax.get_xlabel() == "time (UTC)" and "ms" in ax.get_ylabel()
    assert any(t.get_text() == "RARP seen" for t in ax.texts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG") and len(buf.getvalue()) > 5000


def test_plot_marks_late_replies_and_spans_the_outage_over_lost_and_late_probes():
    import matplotlib.dates as mdates

    rtts = [0.5] * 142  # the held probes of issue 20 (see test_held_probes_are_an_outage_not_a_high_round_trip)
    rtts[20] = None
    for i in range(21, 40):
        rtts[i] = round((2.0005 - i * 0.05) * 1000, 3)
    r = _result([], interval=0.05, rtts=rtts)
    ax = r.plot().axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    late, lost = lines["answered late (RTT ms)"], lines["lost (no reply)"]
    assert list(late.get_ydata()) == rtts[21:39] and len(lost.get_xdata()) == 1
    in_time = pd.Series(lines["answered in time (RTT ms)"].get_ydata())
    assert in_time[20:39].isna().all() and in_time[39] == 50.5  # the line breaks over the outage
    assert "late after 100 ms" in lines
    ((x0, x1),) = _outage_spans(ax)
    first, last = (mdates.date2num((T0 + pd.Timedelta(seconds=i * 0.05)).tz_convert(None)) for i in (20, 38))
    assert x0 == pytest.approx(first, abs=1e-9) and x1 > last  # over the lost probe and every late one
    assert ax.get_title(loc="left").endswith(
        "1.00 s without replies: 18 probes answered late, 1 lost, at 12:01:01.00 UTC (142 probes)")
