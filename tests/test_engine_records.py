"""For every outcome a move can have on the lab, the record on disk follows the schema and says the same
as the result: outcome, exit code (the one mapping, EXIT_OF_OUTCOME), and the event that ended the run.

Each outcome is produced for real on a lab of its own (no mocks); the test then reads record.json back.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

import runbook
import runbook_lab as lab_mod
from conftest import lab_settings as settings_of, start_in_background
from runbook.domain.placement import vm_lock
from runbook.engine import relocation
from runbook.engine.context import RunContext
from runbook.engine.events import RunFinished
from runbook.errors import BadInput, NotFound
from runbook.records.record import EXIT_OF_OUTCOME, OUTCOMES, validate
from runbook.vsphere.connection import login, logout


def _request(**fields) -> runbook.MoveRequest:
    return runbook.MoveRequest(**{"vm": "web-01", "target_host": "esx-02.lab.local", "ping": "none", **fields})


def _migrate(info, context, events, **fields):
    return runbook.migrate(_request(**fields), settings=settings_of(info), context=context, on_event=events.append)


def _succeeded(fresh_lab, context, events, monkeypatch):
    return _migrate(fresh_lab(), context, events)


def _dry_run(fresh_lab, context, events, monkeypatch):
    return _migrate(fresh_lab(), context, events, dry_run=True)


def _no_change(fresh_lab, context, events, monkeypatch):
    return _migrate(fresh_lab(), context, events, target_host="esx-01.lab.local")


def _checks_failed(fresh_lab, context, events, monkeypatch):
    return _migrate(fresh_lab("prereq-failures"), context, events, target_host="esx-04.lab.local")


def _refused(fresh_lab, context, events, monkeypatch):
    info = fresh_lab()
    si = login(settings_of(info))
    try:
        vm = next(v for v in si.content.rootFolder.childEntity[0].vmFolder.childEntity if v.name == "web-01")
        moid = vm._moId
    finally:
        logout(si)
    with vm_lock(settings_of(info).url, moid):  # another run on this machine holds the VM
        return _migrate(info, context, events)


def _refused_by_the_ping(fresh_lab, context, events, monkeypatch):
    return _migrate(fresh_lab(), context, events, ping="no-such-host.invalid")  # RFC 6761: never resolves


def _failed(fresh_lab, context, events, monkeypatch):
    info = fresh_lab()
    lab_mod.LabControl(info).inject_fault("web-01", "GenericVmConfigFault", "disk lock lost")
    return _migrate(info, context, events)


def _timed_out(fresh_lab, context, events, monkeypatch):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 30)
    return _migrate(info, context, events, timeout_s=1.5)


def _cancelled(fresh_lab, context, events, monkeypatch):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 10)
    move = start_in_background(_request(), settings_of(info), context)
    time.sleep(0.5)
    move.cancel.set()
    result = move.join(60)
    events.extend(move.events)
    return result


def _cancelled_before_the_task(fresh_lab, context, events, monkeypatch):
    cancel = threading.Event()
    cancel.set()
    return runbook.migrate(_request(), settings=settings_of(fresh_lab()), context=context, on_event=events.append,
                           cancel=cancel)


def _unknown(fresh_lab, context, events, monkeypatch):
    monkeypatch.setattr(relocation, "RECONNECT_S", 2.0)
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 10)
    move = start_in_background(_request(), settings_of(info), context)
    time.sleep(0.5)
    assert lab_mod.stop(info.state_dir)  # the vCenter goes away mid-move
    result = move.join(60)
    events.extend(move.events)
    return result


PRODUCERS = {
    "SUCCEEDED": _succeeded, "DRY RUN": _dry_run, "NO CHANGE": _no_change, "CHECKS FAILED": _checks_failed,
    "REFUSED": _refused, "REFUSED before the ping": _refused_by_the_ping, "FAILED": _failed, "TIMED OUT": _timed_out, "CANCELLED": _cancelled,
    "CANCELLED before the task": _cancelled_before_the_task, "UNKNOWN": _unknown,
}


def test_every_final_outcome_has_a_producer_here():
    assert {name.split(" before")[0] for name in PRODUCERS} == set(OUTCOMES) - {"RUNNING"}


@pytest.mark.parametrize("case", list(PRODUCERS))
def test_record_on_disk_validates_and_agrees_with_the_result(case, fresh_lab, tmp_path, monkeypatch):
    expected = case.split(" before")[0]
    events: list = []
    res = PRODUCERS[case](fresh_lab, RunContext(reports_dir=tmp_path / "reports"), events, monkeypatch)
    assert res.outcome == expected, res.summary
    assert res.run_dir is not None and res.run_dir.parent.parent == tmp_path / "reports"
    saved = json.loads((res.run_dir / "record.json").read_text())
    validate(saved)
    assert saved["outcome"] == res.outcome == expected
    assert saved["exit_code"] == res.exit_code == EXIT_OF_OUTCOME[expected]
    assert saved["summary"] == res.summary and saved["via"] == "python"
    assert saved == json.loads(json.dumps(res.record, default=str)), "the result's record is not what is on disk"
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert [(e.outcome, e.exit_code) for e in finished] == [(expected, EXIT_OF_OUTCOME[expected])]
    assert (res.run_dir / "report.html").is_file()
    assert res.run_dir.name in (tmp_path / "reports" / "index.html").read_text()


@pytest.mark.parametrize("scenario, host, expected", [("default", "esx-02.lab.local", "SUCCEEDED"),
                                                      ("prereq-failures", "esx-04.lab.local", "CHECKS FAILED")])
def test_check_records_validate_and_agree(fresh_lab, tmp_path, scenario, host, expected):
    info = fresh_lab(scenario)
    res = runbook.check(runbook.CheckRequest(vm="web-01", target_host=host), settings=settings_of(info),
                        context=RunContext(reports_dir=tmp_path / "reports"))
    assert res.outcome == expected, res.summary
    saved = json.loads((res.run_dir / "record.json").read_text())
    validate(saved)
    assert saved["outcome"] == res.outcome and saved["exit_code"] == res.exit_code == EXIT_OF_OUTCOME[expected]
    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-01.lab.local"  # a check moves nothing


@pytest.mark.parametrize("values, error, words", [
    ({"vm": "web-0l", "target_host": "esx-02.lab.local"}, NotFound, "did you mean"),
    ({"vm": "web-01", "target_host": "esx-02.lab"}, NotFound, "no host named 'esx-02.lab'"),
    ({"vm": "web-01", "target_datastore": "nfs-9"}, NotFound, "nfs-9"),
    ({"vm": "web-01", "target_datastore": "nfs-02", "disk_format": "thinn"}, BadInput, "disk format"),
    ({"vm": "web-01", "target_host": "esx-02.lab.local", "timeout_s": "nan"}, BadInput, "timeout"),
    ({"vm": "web-01", "target_host": "esx-02.lab.local", "hosts": "x"}, BadInput, "no parameter"),
])
def test_a_refusal_before_the_record_raises_and_leaves_no_run_directory(fresh_lab, tmp_path, values, error, words):
    """A typo is not a failed move: one exception with one line, no change record, nothing asked of the lab."""
    info = fresh_lab()
    reports = tmp_path / "reports"
    with pytest.raises(error, match=words) as refused:
        runbook.migrate({**values, "ping": "none"}, settings=settings_of(info), context=RunContext(reports_dir=reports))
    assert "\n" not in str(refused.value)
    assert not reports.exists() or not list(reports.glob("*/*/record.json")), list(reports.rglob("*"))
    si = login(settings_of(info))
    try:
        assert not [t for t in si.content.taskManager.recentTask if t.info.descriptionId == "VirtualMachine.relocate"]
    finally:
        logout(si)
