"""Ping loss measured through real lab migrations, against a test host in a network namespace."""
from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

import runbook_lab as lab_mod
from runbook.vsphere.connection import login, logout
from runbook.domain.migration import Migration, MoveOptions
from runbook.domain.plan import MigrationPlan
from conftest import lab_settings as settings_of, start_in_background
from test_ping import TEST_ADDR, test_host  # noqa: F401  (the namespace fixture)


@pytest.fixture
def moving(fresh_lab):
    """web-01 in a fresh lab, its guest IP pointing at the test host, its next move lasting 3 s."""
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_guest_ip("web-01", TEST_ADDR)
    control.set_migration_seconds("web-01", 3.0)
    si = login(settings_of(info))
    yield info, si
    logout(si)


def start_move(info, si, **options) -> tuple[Migration, threading.Thread]:
    m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                  MoveOptions(**{"ping": "auto", "ping_interval": 0.1, "ping_tail": 1.0, **options}))
    return m, start_in_background(m)


def test_an_injected_outage_is_measured_inside_the_task_window(moving, test_host):  # noqa: F811
    info, si = moving
    m, thread = start_move(info, si)
    time.sleep(0.8)
    down = test_host.link("down")
    time.sleep(1.0)
    up = test_host.link("up")
    thread.join(30)
    assert m.outcome == "SUCCEEDED", m.summary
    interval = 0.1
    s = m.ping_summary()
    window_ms = ((up[0] + up[1]) / 2 - (down[0] + down[1]) / 2) * 1000
    assert s["outages_count"] == 1, s
    assert abs(s["longest_outage_ms"] - window_ms) <= 2 * interval * 1000, (s["longest_outage_ms"], window_ms)
    lost = m.ping.timeline.loc[m.ping.timeline["lost"], "sent"].map(lambda t: t.timestamp())
    assert lost.min() >= down[0] - interval and lost.max() <= up[1] + interval
    outage = s["outages"][0]
    start, end = pd.Timestamp(outage["start"]), pd.Timestamp(outage["end"])
    assert pd.Timestamp(m.task.started) <= start and end <= pd.Timestamp(m.task.completed)
    assert outage["phase"] in ("during task", "during switch-over")
    assert "1 outage" in s["description"] or "one outage" in s["description"]
    assert "probes lost" in m.summary


def test_no_injected_outage_loses_nothing(moving, test_host):  # noqa: F811
    info, si = moving
    m, thread = start_move(info, si)
    thread.join(30)
    assert m.outcome == "SUCCEEDED"
    s = m.ping_summary()
    assert s["probes_lost"] == 0 and s["probes_sent"] >= 35, s  # 3 s task + 1 s tail at 100 ms


def test_an_unreachable_probe_target_never_fails_the_move(moving, test_host):  # noqa: F811
    info, si = moving
    test_host.link("down")
    m, thread = start_move(info, si, ping_tail=0.5)
    thread.join(30)
    assert m.outcome == "SUCCEEDED", m.summary
    s = m.ping_summary()
    assert s["probes_lost"] == s["probes_sent"] > 0
    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"


def test_a_vm_without_a_known_ip_moves_without_ping_and_says_so(fresh_lab):
    info = fresh_lab()
    si = login(settings_of(info))
    try:
        m = Migration(si, settings_of(info), MigrationPlan(vm="build-01", target_host="esx-01.lab.local"),
                      MoveOptions(ping="auto"))
        m.prepare()
        assert m.decide() == "go"
        assert m.execute() == "SUCCEEDED"
        assert "no ping" in m.ping_summary()["note"]
    finally:
        logout(si)


def test_a_running_vm_without_an_ip_is_moved_without_ping_only_when_auto_says_so(fresh_lab):
    info = fresh_lab()
    lab_mod.LabControl(info).set_guest_ip("web-01", "")
    si = login(settings_of(info))
    try:
        m = Migration(si, settings_of(info), MigrationPlan(vm="web-01", target_host="esx-02.lab.local"),
                      MoveOptions(ping="auto"))
        m.prepare()
        m.decide()
        assert m.execute() == "SUCCEEDED"
        assert "no known guest IP" in m.ping_summary()["note"]
        assert ("Ping", m.ping_summary()["note"]) in m.figures()
    finally:
        logout(si)
