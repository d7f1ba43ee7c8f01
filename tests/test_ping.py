"""Tests of runbook.ping and runbook.pingchart: outage arithmetic on plain data, real probing on loopback,
a measured outage against a test host in a network namespace this file creates, the TCP fallback, and the
chart.

The namespace tests need root and ``ip netns``; they skip with the reason otherwise. They only ever probe
10.199.7.2, the address this file gives its own test host.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
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
HOST_ADDR, TEST_ADDR = "10.199.7.1", "10.199.7.2"
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


def _result(lost: list[bool], interval: float = 0.1, marks=()) -> ProbeResult:
    """A ProbeResult built from a lost-flag list: probe i sent at T0 + i * interval, replies after 0.5 ms."""
    sent = pd.Series([T0 + pd.Timedelta(seconds=i * interval) for i in range(len(lost))], dtype="datetime64[ns, UTC]")
    lost_s = pd.Series(lost, dtype=bool)
    timeline = pd.DataFrame({
        "seq": range(len(lost)), "sent": sent,
        "replied": (sent + pd.Timedelta(microseconds=500)).where(~lost_s),
        "rtt_ms": pd.Series([0.5] * len(lost)).where(~lost_s), "lost": lost_s,
    })
    return ProbeResult(target="vm1", address="192.0.2.5", method="icmp-raw", interval=interval, timeout=1.0,
                       timeline=timeline, marks=list(marks))


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
    assert (s["probes_sent"], s["probes_received"], s["probes_lost"]) == (100, 89, 11)
    assert s["loss_pct"] == 11.0
    assert s["outages_count"] == 4
    assert s["longest_outage_ms"] == 500.0 and s["total_outage_ms"] == 1100.0
    assert [o["phase"] for o in s["outages"]] == ["before task", "during task", "during switch-over", "after task"]
    assert [o["probes_lost"] for o in s["outages"]] == [2, 3, 5, 1]
    first = s["outages"][0]
    assert pd.Timestamp(first["start"]) == T0 + pd.Timedelta(milliseconds=500)
    assert pd.Timestamp(first["end"]) == T0 + pd.Timedelta(milliseconds=700)
    assert first["duration_ms"] == 200.0
    assert s["rtt_median_ms"] == 0.5
    text = r.describe(task_start=T0 + pd.Timedelta(seconds=2), task_end=T0 + pd.Timedelta(seconds=8))
    assert text == ("11 probes lost (1100 ms) of 100 in 4 outages, the longest 500 ms at 12:01:07.4 UTC, "
                    "during switch-over")


def test_describe_one_outage_and_switchover_time_from_marks():
    lost = [False] * 84
    lost[70:73] = [True] * 3  # 12:01:07.0
    r = _result(lost, marks=[("task_start", T0), ("switchover", T0 + pd.Timedelta(seconds=7.5)),
                             ("task_end", T0 + pd.Timedelta(seconds=8.3))])
    assert r.describe() == "3 probes lost (300 ms) of 84, one outage at 12:01:07.0 UTC, during switch-over"
    assert r.summary()["outages"][0]["phase"] == "during switch-over"
    # Without task times there is no phase, and the sentence says nothing about one.
    assert _result(lost).describe() == "3 probes lost (300 ms) of 84, one outage at 12:01:07.0 UTC"


def test_describe_no_loss_and_all_lost():
    assert _result([False] * 84).describe() == "0 probes lost of 84"
    s = _result([True] * 10).summary()
    assert (s["probes_lost"], s["outages_count"], s["loss_pct"], s["rtt_median_ms"]) == (10, 1, 100.0, None)
    json.dumps(s, allow_nan=False)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"interval": 0.005}, "out of range"),
    ({"interval": 11}, "out of range"),
    ({"method": "udp"}, "unknown"),
    ({"method": "tcp"}, "--ping-tcp-port"),
    ({"tcp_port": 70000}, "port"),
    ({"timeout": 0}, "timeout"),
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
    assert 0.85 * expected <= len(tl) <= 1.15 * expected + 1
    assert not tl["lost"].any() and tl["replied"].notna().all()
    assert (tl["rtt_ms"] > 0).all() and tl["rtt_ms"].median() < 5
    # A fixed schedule: no drift over the run, however late a single send was.
    span = (tl["sent"].iloc[-1] - tl["sent"].iloc[0]).total_seconds()
    assert abs(span - (len(tl) - 1) * interval) <= 2 * interval
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
    assert r.describe() == f"0 probes lost of {len(r.timeline)}"
    assert mon.stop() is r  # stopping again gives the same result


def test_start_twice_and_stop_unstarted():
    mon = ProbeMonitor("127.0.0.1", 0.1).start()
    with pytest.raises(BadInput, match="already started"):
        mon.start()
    assert mon.stop(0).error is None
    r = ProbeMonitor("127.0.0.1").stop(0)
    assert "never started" in r.error and len(r.timeline) == 0


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


class NetnsHost:
    """A network namespace holding 10.199.7.2 on one end of a veth pair whose other end, here, is 10.199.7.1."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.ns, self.here, self.there = f"rbping{tag}", f"rbp{tag}a", f"rbp{tag}b"

    def create(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.here, "type", "veth", "peer", "name", self.there, "netns", self.ns)
        _ip("addr", "add", f"{HOST_ADDR}/30", "dev", self.here)
        _ip("link", "set", self.here, "up")
        self.run("ip", "addr", "add", f"{TEST_ADDR}/30", "dev", self.there)
        self.run("ip", "link", "set", self.there, "up")
        # Static neighbours on both sides, like a switched network whose ARP caches are warm: while the
        # link is down frames are dropped, not held in an ARP queue and delivered late when it comes back.
        mac_here = Path(f"/sys/class/net/{self.here}/address").read_text().strip()
        mac_there = self.run("cat", f"/sys/class/net/{self.there}/address").stdout.strip()
        _ip("neigh", "replace", TEST_ADDR, "lladdr", mac_there, "dev", self.here, "nud", "permanent")
        self.run("ip", "neigh", "replace", HOST_ADDR, "lladdr", mac_here, "dev", self.there, "nud", "permanent")

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return _ip("netns", "exec", self.ns, *cmd)

    def link(self, state: str) -> tuple[float, float]:
        """Set the test host's link up or down; return the wall-clock time before and after the command."""
        before = time.time()
        self.run("ip", "link", "set", self.there, state)
        return before, time.time()

    def destroy(self) -> None:
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


@pytest.mark.parametrize("interval", [0.1, 0.02])
def test_measures_an_injected_outage(test_host, interval):
    mon = ProbeMonitor(TEST_ADDR, interval).start()
    time.sleep(1.5)
    down = test_host.link("down")
    time.sleep(1.0)
    up = test_host.link("up")
    time.sleep(1.5)
    r = mon.stop(tail=0)
    s = r.summary()
    assert r.error is None and s["outages_count"] == 1, s
    window_ms = ((up[0] + up[1]) / 2 - (down[0] + down[1]) / 2) * 1000
    assert abs(s["longest_outage_ms"] - window_ms) <= 2 * interval * 1000, (s, window_ms)
    lost_at = r.timeline.loc[r.timeline["lost"], "sent"].map(lambda t: t.timestamp())
    assert lost_at.min() >= down[0] - interval and lost_at.max() <= up[1] + interval, (lost_at, down, up)
    assert s["probes_sent"] == pytest.approx(4.0 / interval, rel=0.1)


@pytest.mark.parametrize("interval", [0.1, 0.02])
def test_no_outage_no_loss(test_host, interval):
    mon = ProbeMonitor(TEST_ADDR, interval).start()
    time.sleep(2.0)
    r = mon.stop(tail=0)
    assert r.error is None and r.summary()["probes_lost"] == 0
    assert len(r.timeline) == pytest.approx(2.0 / interval, rel=0.1)


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
            ProbeMonitor("10.199.7.1", 0.1).start().stop(0)
        except PingNotPermitted as exc:
            print(exc)
            sys.exit(3)
    """)
    done = subprocess.run([*as_nobody, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "--ping-tcp-port PORT" in done.stdout and "not permitted" in done.stdout
    # Once the range covers nobody's group, the unprivileged ICMP datagram socket is used instead.
    test_host.run("sh", "-c", "echo '65534 65534' > /proc/sys/net/ipv4/ping_group_range")
    script = textwrap.dedent("""
        import time
        from runbook.probes.ping import ProbeMonitor
        mon = ProbeMonitor("10.199.7.1", 0.02).start()
        time.sleep(0.5)
        r = mon.stop(0)
        print(r.method, len(r.timeline), int(r.timeline["lost"].sum()), r.error)
    """)
    done = subprocess.run([*as_nobody, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    method, sent, lost, error = done.stdout.split()
    assert (method, lost, error) == ("icmp-dgram", "0", "None") and int(sent) >= 20, done.stderr


# -- the chart ---------------------------------------------------------------------------------------------
def test_plot_renders_png_with_loss_span():
    import io

    from matplotlib.colors import to_rgba

    lost = [False] * 84
    lost[70:73] = [True] * 3
    r = _result(lost, marks=[("task_start", T0 + pd.Timedelta(seconds=1)),
                             ("task_end", T0 + pd.Timedelta(seconds=7.6))])
    fig = r.plot(events=[(T0 + pd.Timedelta(seconds=7.1), "RARP seen")])
    ax = fig.axes[0]
    red = [p for p in ax.patches if to_rgba(p.get_facecolor())[:3] == to_rgba("red")[:3]]
    assert len(red) == 1
    assert ax.get_xlabel() == "time (UTC)" and "ms" in ax.get_ylabel()
    assert any(t.get_text() == "RARP seen" for t in ax.texts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG") and len(buf.getvalue()) > 5000
