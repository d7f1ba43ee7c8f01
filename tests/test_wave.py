"""Waves against the lab through real SOAP: evacuate (with and without maintenance mode), drain, a plan file,
a failing row refused, stop rules, SIGTERM in the middle, undo, and the concurrency limits never exceeded,
each asserted on what the lab reports afterwards (issue 18)."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runbook
import runbook_lab as lab_mod
from conftest import lab_env, lab_settings
from runbook.engine.context import RunContext
from runbook.records import record as rec

RUNBOOK = str(Path(sys.executable).with_name("runbook"))
ESX1, ESX2, ESX3 = "esx-01.lab.local", "esx-02.lab.local", "esx-03.lab.local"
ON_ESX1 = ["app-01", "db-01", "iso-01", "web-01"]  # the default lab


def _wave(info, request, tmp_path: Path, **kwargs):
    events: list = []
    result = runbook.wave(request, settings=lab_settings(info), on_event=events.append,
                          context=RunContext(reports_dir=tmp_path / "reports"), **kwargs)
    rec.validate(json.loads((result.run_dir / "record.json").read_text()))
    return result, events


def _lab_concurrency(info) -> dict:
    """The most relocations the lab ran at once per host and per datastore (sim/concurrency.go)."""
    return lab_mod.LabControl(info).concurrency()


def _host_of(info, vm: str) -> str:
    return lab_mod.LabControl(info).placement(vm)["host"]


def _datastores_of(info, vm: str) -> list[str]:
    """The names of the datastores holding the VM's files, as the vCenter reports them (pyvmomi)."""
    from pyVmomi import vim

    from runbook.vsphere.connection import login, logout

    si = login(lab_settings(info))
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        found = [v for v in view.view if v.name == vm]
        view.DestroyView()
        disks = [d.backing.datastore.name for d in found[0].config.hardware.device
                 if isinstance(d, vim.vm.device.VirtualDisk)]
        return sorted({ds.name for ds in found[0].datastore} | set(disks))
    finally:
        logout(si)


def _maintenance(info, host: str) -> bool:
    from pyVmomi import vim

    from runbook.vsphere.connection import login, logout

    si = login(lab_settings(info))
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        found = [h for h in view.view if h.name == host]
        view.DestroyView()
        return bool(found[0].runtime.inMaintenanceMode)
    finally:
        logout(si)


def _run_cli(info, tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **lab_env(info), "RUNBOOK_REPORTS": str(tmp_path / "reports")}
    return subprocess.run([RUNBOOK, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _record_of(output: str) -> dict:
    path = next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("record: "))
    data = json.loads(Path(path).read_text())
    rec.validate(data)
    return data


def test_evacuate_moves_every_vm_off_the_host_with_a_record_per_vm(fresh_lab, tmp_path):
    info = fresh_lab("default")
    result, events = _wave(info, runbook.EvacuateRequest(host=ESX1), tmp_path)
    assert (result.outcome, result.exit_code) == ("SUCCEEDED", 0), result.summary
    moves = {m["vm"]: m for m in result.record["moves"]}
    assert sorted(moves) == ON_ESX1
    for vm, move in moves.items():
        assert move["status"] == "moved"
        assert _host_of(info, vm) == move["target_host"] != ESX1  # the lab agrees with the record
        child = json.loads((result.run_dir / move["record"]).read_text())
        rec.validate(child)
        assert (child["kind"], child["outcome"]) == ("migrate", "SUCCEEDED")
        assert child["task"]["id"] == move["task"] and move["outage_ms"] is not None
    assert {m["target_host"] for m in moves.values()} == {ESX2, ESX3}  # balanced over both
    assert result.record["wave"]["canary"] == result.record["plan_table"][0]["vm"]
    assert not _maintenance(info, ESX1)
    assert (result.run_dir / "timeline.png").is_file()
    canary_end = moves[result.record["wave"]["canary"]]["completed"]
    assert all(m["started"] >= canary_end for vm, m in moves.items() if vm != result.record["wave"]["canary"])
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("PlanRow") == 4 and kinds[-1] == "RunFinished"


def test_evacuate_maintenance_from_the_command_line(fresh_lab, tmp_path):
    info = fresh_lab("default")
    done = _run_cli(info, tmp_path, "evacuate", "--host", ESX1, "--to", f"{ESX2},{ESX3}", "--maintenance",
                    "--ping", "none", "--change-id", "CHG-18")
    assert done.returncode == 0, done.stdout + done.stderr
    data = _record_of(done.stdout)
    assert (data["kind"], data["outcome"], data["change_id"]) == ("wave", "SUCCEEDED", "CHG-18")
    assert data["wave"]["maintenance"]["entered"] is True
    assert _maintenance(info, ESX1)
    assert all(_host_of(info, vm) in (ESX2, ESX3) for vm in ON_ESX1)
    assert "[moved] web-01" in done.stdout and "maintenance mode entered" in done.stdout


def test_drain_empties_the_datastore_onto_shared_storage(fresh_lab, tmp_path):
    info = fresh_lab("default")
    result, _ = _wave(info, runbook.DrainRequest(datastore="nfs-02", ping="none", skip_failing=True), tmp_path)
    assert result.outcome == "SUCCEEDED", result.summary
    status = {m["vm"]: m["status"] for m in result.record["moves"]}
    # iso-01's only file there is its CD's ISO image, which no Storage vMotion moves: a failing row, skipped
    assert status == {"app-01": "moved", "app-03": "moved", "iso-01": "skipped", "mon-01": "moved"}
    iso_row = next(r for r in result.record["plan_table"] if r["vm"] == "iso-01")
    assert iso_row["status"] == "fail" and "CD/DVD drive 1" in iso_row["remedy"]
    for move in result.record["moves"]:
        if move["vm"] == "iso-01":
            continue
        assert move["target_datastore"] == "nfs-01"  # shared and roomiest; never a local datastore
        assert _datastores_of(info, move["vm"]) == ["nfs-01"], move["vm"]
    counted = _lab_concurrency(info)  # Storage vMotions: 2 per host, 8 per datastore, as the lab counted them
    assert counted["relocations"] == 3
    assert all(c["storage_peak"] <= 2 for c in counted["hosts"].values()), counted
    assert all(c["storage_peak"] <= 8 for c in counted["datastores"].values()), counted


def test_dry_run_and_a_failing_row_change_nothing_skip_failing_runs_the_rest(fresh_lab, tmp_path):
    info = fresh_lab("default")
    plan = tmp_path / "moves.csv"
    # db-02's disks are on esx-02's local datastore: a host-only move to esx-01 fails "shared storage"
    plan.write_text("vm,host,datastore,disk_format\nweb-01,esx-02.lab.local,,\ndb-02,esx-01.lab.local,,\n")
    dry = _run_cli(info, tmp_path, "migrate", "--plan", str(plan), "--dry-run", "--skip-failing")
    assert dry.returncode == 0 and _record_of(dry.stdout)["outcome"] == "DRY RUN"
    refused = _run_cli(info, tmp_path, "migrate", "--plan", str(plan))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    data = _record_of(refused.stdout)
    assert data["outcome"] == "CHECKS FAILED"
    rows = {r["vm"]: r for r in data["plan_table"]}
    assert rows["db-02"]["status"] == "fail" and rows["db-02"]["remedy"]
    assert "FAIL  db-02" in refused.stdout
    assert (_host_of(info, "web-01"), _host_of(info, "db-02")) == (ESX1, ESX2)  # nothing moved
    ran = _run_cli(info, tmp_path, "migrate", "--plan", str(plan), "--skip-failing", "--ping", "none")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    statuses = {m["vm"]: m["status"] for m in _record_of(ran.stdout)["moves"]}
    assert statuses == {"web-01": "moved", "db-02": "skipped"}
    assert (_host_of(info, "web-01"), _host_of(info, "db-02")) == (ESX2, ESX2)


def test_a_yaml_plan_then_its_undo_puts_every_vm_back(fresh_lab, tmp_path):
    info = fresh_lab("default")
    before = {vm: (_host_of(info, vm), _datastores_of(info, vm)) for vm in ("web-01", "util-01", "app-02")}
    plan = tmp_path / "moves.yaml"
    plan.write_text("- {vm: web-01, host: esx-03.lab.local}\n"
                    "- {vm: util-01, datastore: nfs-02, disk_format: thin}\n"
                    "- {vm: app-02, host: esx-01.lab.local, datastore: nfs-02}\n")
    done = _run_cli(info, tmp_path, "migrate", "--plan", str(plan), "--ping", "none")
    assert done.returncode == 0, done.stdout + done.stderr
    wave = _record_of(done.stdout)
    assert _host_of(info, "web-01") == ESX3 and _datastores_of(info, "util-01") == ["nfs-02"]
    assert (_host_of(info, "app-02"), _datastores_of(info, "app-02")) == (ESX1, ["nfs-02"])
    undo = _run_cli(info, tmp_path, "undo", wave["run_id"], "--ping", "none")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    data = _record_of(undo.stdout)
    assert data["wave"]["kind"] == "undo" and data["wave"]["undoes"] == wave["run_id"]
    for vm, where in before.items():
        assert (_host_of(info, vm), _datastores_of(info, vm)) == where, vm


def test_a_failed_move_stops_the_wave_and_nothing_new_starts(fresh_lab, tmp_path):
    info = fresh_lab("default")
    lab_mod.LabControl(info).inject_fault("app-01", "GenericVmConfigFault", "injected by the wave test")
    result, events = _wave(info, runbook.EvacuateRequest(host=ESX1, max_vmotions_per_host=1, ping="none"), tmp_path)
    assert (result.outcome, result.exit_code) == ("FAILED", 1), result.summary
    stop = result.record["wave"]["stop"]
    assert stop["rule"] == "failed move" and "app-01" in stop["reason"]
    moves = {m["vm"]: m for m in result.record["moves"]}
    assert moves["db-01"]["status"] == "moved" and moves["app-01"]["status"] == "failed"  # db-01: the canary
    failed_at = moves["app-01"]["completed"]
    assert any(m["status"] == "not started" for m in moves.values())
    for vm, m in moves.items():  # one at a time: nothing started after the failure; the lab agrees
        assert m["status"] in ("moved", "failed", "not started")
        if m["status"] == "moved":
            assert m["started"] < failed_at and _host_of(info, vm) == m["target_host"]
        else:
            assert _host_of(info, vm) == ESX1
    assert any(type(e).__name__ == "WaveStopped" for e in events)


def test_an_outage_over_max_outage_stops_the_wave_after_the_canary(fresh_lab, tmp_path):
    info = fresh_lab("default")
    lab_mod.LabControl(info).set_guest_ip("db-01", "198.51.100.1")  # TEST-NET-2: never answers
    result, _ = _wave(info, runbook.EvacuateRequest(host=ESX1, max_outage=0.5, ping_tail=0.5), tmp_path)
    assert result.outcome == "FAILED", result.summary
    assert result.record["wave"]["stop"]["rule"] == "outage"
    status = {m["vm"]: m["status"] for m in result.record["moves"]}
    assert status == {"db-01": "moved", "app-01": "not started", "iso-01": "not started", "web-01": "not started"}
    assert result.record["moves"][0]["outage_ms"] > 500
    assert [_host_of(info, vm) for vm in ("app-01", "iso-01", "web-01")] == [ESX1, ESX1, ESX1]


def _vcenter_tasks(info, task_ids: list[str]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Start and end of each task as the vCenter reports them (not as the runbook recorded them)."""
    from pyVmomi import vim

    from runbook.vsphere.connection import login, logout

    si = login(lab_settings(info))
    try:
        spans = []
        for tid in task_ids:
            task_info = vim.Task(tid, si._stub).info
            spans.append((task_info.startTime or task_info.queueTime, task_info.completeTime))
        return spans
    finally:
        logout(si)


def _most_at_once(spans) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
    now = most = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def test_sigterm_mid_wave_lets_running_moves_finish_and_the_limits_hold(fresh_lab, tmp_path):
    """44 VMs on esx-01, at most 3 vMotions at once; SIGTERM after the first moves: the running ones end,
    nothing new starts, and the vCenter's own task times never show more than 3 at once."""
    info = fresh_lab("evacuate")
    env = {**os.environ, **lab_env(info), "RUNBOOK_REPORTS": str(tmp_path / "reports")}
    proc = subprocess.Popen([RUNBOOK, "evacuate", "--host", ESX1, "--max-vmotions-per-host", "3", "--ping", "none"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if sum("[moved]" in x for x in lines) >= 8:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    output = "".join(lines) + out
    assert proc.returncode == 3, output + err
    data = _record_of(output)
    assert data["outcome"] == "CANCELLED" and data["wave"]["stop"]["rule"] == "signal"
    moves = data["moves"]
    moved = [m for m in moves if m["status"] == "moved"]
    assert len(moved) >= 8 and any(m["status"] == "not started" for m in moves)
    assert {m["status"] for m in moves} <= {"moved", "not started"}  # running moves finished, none cancelled
    for m in moves:  # the lab agrees with the record, VM by VM
        assert _host_of(info, m["vm"]) == (m["target_host"] if m["status"] == "moved" else ESX1), m["vm"]
    spans = _vcenter_tasks(info, [m["task"] for m in moved])
    assert 2 <= _most_at_once(spans) <= 3  # the queue was kept full, never over the limit
    counted = _lab_concurrency(info)  # as the lab itself counted them, per host and datastore
    assert counted["relocations"] == len(moved)
    assert 2 <= counted["hosts"][ESX1]["peak"] <= 3, counted
    assert all(c["peak"] <= 3 for c in counted["hosts"].values()), counted
    peak = {(c["kind"], c["name"]): c for c in data["concurrency"]}[("net", ESX1)]
    assert peak["peak"] <= peak["limit"] == 3


def test_undo_of_a_single_move_and_of_a_run_that_is_not_there(fresh_lab, tmp_path):
    info = fresh_lab("default")
    moved = runbook.migrate(runbook.MoveRequest(vm="web-01", target_host=ESX2, ping="none"),
                            settings=lab_settings(info), context=RunContext(reports_dir=tmp_path / "reports"))
    assert moved.outcome == "SUCCEEDED" and _host_of(info, "web-01") == ESX2
    result, _ = _wave(info, runbook.UndoRequest(run_id=moved.run_dir.name, ping="none"), tmp_path)
    assert result.outcome == "SUCCEEDED", result.summary
    assert result.record["plan_table"][0]["reason"] == f"back to where run {moved.run_dir.name} found it"
    assert _host_of(info, "web-01") == ESX1
    with pytest.raises(runbook.BadInput, match="no run 'run-nowhere'"):
        runbook.wave(runbook.UndoRequest(run_id="run-nowhere"), settings=lab_settings(info),
                     context=RunContext(reports_dir=tmp_path / "reports"))


def test_the_widgets_preview_writes_no_record_and_stop_lets_running_moves_finish(fresh_lab, tmp_path):
    """The wave notebook's panel without a browser: Preview (a dry run, no record), Run in its thread, Stop
    after the first moves: the running ones finish, nothing new starts, the record says 'cancel', the lab agrees."""
    from runbook.fronts import wave_widgets

    info = fresh_lab("evacuate")
    panel = wave_widgets.WavePanel(lab_settings(info), RunContext(via="widgets", reports_dir=tmp_path / "reports"),
                                   ping="none", max_vmotions_per_host=2)
    panel.inputs["host"].value = ESX1
    panel.preview()
    assert len(panel.rows) == 44 and not list((tmp_path / "reports").glob("*/*/record.json"))
    panel.run()
    deadline = time.monotonic() + 120
    while sum(v["state"] == "moved" for v in panel.live.values()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    panel.stop()
    panel.thread.join(timeout=120)
    data = panel.result.record
    assert (data["outcome"], data["wave"]["stop"]["rule"]) == ("CANCELLED", "cancel"), data["summary"]
    status = {m["vm"]: m["status"] for m in data["moves"]}
    assert set(status.values()) == {"moved", "not started"} and 3 <= list(status.values()).count("moved") <= 6
    for vm, s in status.items():
        assert _host_of(info, vm) == (ESX1 if s == "not started" else next(
            m["target_host"] for m in data["moves"] if m["vm"] == vm)), vm
        assert panel.live[vm]["state"] == s
    counted = lab_mod.LabControl(info).concurrency()
    assert counted["hosts"][ESX1]["peak"] <= 2 and counted["queued"] == 0, counted


def test_the_moves_of_a_wave_look_up_in_the_waves_inventory_not_the_vcenter_again(fresh_lab, tmp_path):
    """The wave reads the inventory once and logs in once; each move looks its VM and targets up in it and
    uses the wave's session, whose ServiceContent it read once. Measured: about 28 SOAP requests per VM beyond
    the plan's (vCenter's verdict, submit, the task's updates, verification, events); reading the content
    (``si.content``) again at every use made it about 36, a login per move about 41, reading each move's
    slice of the vCenter again about 68."""
    info = fresh_lab("default")
    control = lab_mod.LabControl(info)
    before = control.requests_served()
    _wave(info, runbook.EvacuateRequest(host=ESX1, ping="none", dry_run=True), tmp_path)
    planned = control.requests_served()
    result, _ = _wave(info, runbook.EvacuateRequest(host=ESX1, ping="none"), tmp_path)
    assert result.outcome == "SUCCEEDED", result.summary
    per_vm = (control.requests_served() - planned - (planned - before)) / len(ON_ESX1)
    assert per_vm <= 32, per_vm
