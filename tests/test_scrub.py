"""Secrets never reach a record, and scrubbing never edits ordinary text (runbook/records/record.py: scrub).

The guarantee is by construction: with the scrub switched off, runs against a lab whose password is a unique
sentinel still write no file holding it. What scrubbing remains (cookies, URL credentials, a strong password
as a whole token) never touches ordinary words: with the password ``pass``, ``vsphere`` or ``admin`` the records
are byte for byte those of a lab with a long random password (volatile values such as times set aside).
"""
from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

import runbook
from conftest import lab_settings, running_lab
from runbook.records import record, report

WEAK = ["pass", "vsphere", "admin", "password", "PASS", "local"]
ORDINARY = json.dumps({
    "checks": [{"check": "power state", "status": "pass", "found": "PASS: on", "remedy": ""},
               {"check": "vMotion", "status": "pass", "found": "passed; admin rights; password policy", "remedy": ""}],
    "operator": {"os_user": "admin", "vcenter_user": "administrator@vsphere.local", "machine": "ws.local"},
    "summary": "VM compass-01 passes every check; the vsphere admin's local pass",
    "parameters": {"password": "<redacted>"},
}, indent=2)


# -- unit level ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("password", WEAK)
def test_a_word_like_password_leaves_ordinary_text_alone(password: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVC_PASSWORD", password)
    assert password in record.secrets_in_use() and record.wordlike(password)
    assert record.scrub(ORDINARY) == ORDINARY


def test_a_strong_password_is_scrubbed_as_a_whole_token_in_every_form(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = 'Sent1nel-"q\\$' + secrets.token_hex(4)
    monkeypatch.setenv("GOVC_PASSWORD", secret)
    from urllib.parse import quote

    leaks = [secret, json.dumps(secret)[1:-1], quote(secret, safe="")]
    text = json.dumps({"a": secret, "b": f"said {secret}.", "c": f"url {leaks[2]} end"}) + leaks[1]
    clean = record.scrub(text)
    assert not any(leak in clean for leak in leaks) and clean.count("<redacted>") == 4, clean
    assert json.loads(record.scrub(json.dumps({"a": secret})))["a"] == "<redacted>"
    # never a part of another word: the same letters inside a longer token stay
    word = "Tokenized" + secrets.token_hex(4)
    monkeypatch.setenv("GOVC_PASSWORD", word)
    assert record.scrub(f"{word}s x{word} {word}") == f"{word}s x{word} <redacted>"


def test_cookies_and_url_credentials_are_scrubbed_whatever_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVC_PASSWORD", "pass")
    text = 'GOVC_URL=https://administrator%40vsphere.local:hunter2@vc.example.com/sdk vmware_soap_session="52ab"'
    clean = record.scrub(text)
    assert "hunter2" not in clean and "52ab" not in clean
    assert "https://administrator%40vsphere.local:<redacted>@vc.example.com/sdk" in clean


def test_secrets_in_use_reads_the_decoded_password_of_govc_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVC_URL", "https://u%40x:Str0ng%24Secret-99@vc.example.com/sdk")
    assert {"Str0ng$Secret-99", "Str0ng%24Secret-99"} <= set(record.secrets_in_use())
    assert "Str0ng" not in record.scrub('{"m": "login Str0ng$Secret-99 refused"}')


# -- through the lab: the engine's own records ---------------------------------------------------------------
def _runs(info, reports: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A check that passes, a check that fails, a dry run and an inventory, each with its record and report."""
    monkeypatch.setenv("GOVC_URL", info.url)
    monkeypatch.setenv("GOVC_USERNAME", info.username)
    monkeypatch.setenv("GOVC_PASSWORD", info.password)
    settings = lab_settings(info)
    context = runbook.RunContext(reports_dir=reports, via="python")
    dirs = {
        "check": runbook.check(runbook.CheckRequest(vm="web-01", target_host="esx-02.lab.local", change_id="C1"),
                               settings=settings, context=context).run_dir,
        "check-fail": runbook.check(runbook.CheckRequest(vm="db-02", target_host="esx-01.lab.local",
                                                         change_id="C2"), settings=settings, context=context).run_dir,
        "dry": runbook.migrate(runbook.MoveRequest(vm="app-01", target_host="esx-03.lab.local", dry_run=True,
                                                   ping="none", change_id="C3"),
                               settings=settings, context=context).run_dir,
        "inventory": runbook.inventory(runbook.InventoryRequest(change_id="C4"), settings=settings,
                                       context=context).run_dir,
    }
    return dirs


_VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?Z?"), "TIME"),  # times
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}|C\d-\d{6}Z(?:-\d+)?"), "RUNID"),  # run ids and directories
    (re.compile(r"\d{4}-\d\d-\d\d"), "DATE"),
    (re.compile(r"127\.0\.0\.1:\d+"), "LAB"),  # each lab listens on its own port
    (re.compile(r'("duration_s": )[0-9.e-]+'), r"\1N"),
    (re.compile(r"\b\d+(?:\.\d+)? (?:s|ms)\b"), "N s"),
    (re.compile(r"T_[0-9a-f]{5}"), "T_ID"),  # pandas Styler's random table id
    (re.compile(r"cell-id=[0-9a-f-]+"), "cell-id=ID"),  # nbformat's random cell ids
    (re.compile(r'("src": "data:image/png;base64,|src="data:image/png;base64,)[^"]+'), r"\1PNG"),
    (re.compile(r'"image/png": "[^"]+"'), '"image/png": "PNG"'),
    (re.compile(r"task-\d+|session\[[^\]]*\][0-9a-f]*"), "TASK"),
]


def _normal(text: str) -> str:
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


def _files(dirs: dict[str, Path]) -> dict[str, str]:
    return {f"{kind}/{p.name}": _normal(p.read_text()) for kind, d in dirs.items() for p in sorted(d.iterdir())
            if p.name in ("record.json", "report.html")}


@pytest.fixture(scope="module")
def strong_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("strong")
    with pytest.MonkeyPatch.context() as mp, running_lab(root / "lab", password=secrets.token_urlsafe(24)) as info:
        return _files(_runs(info, root / "reports", mp))


@pytest.mark.parametrize("password", ["pass", "vsphere", "admin"])
def test_short_passwords_corrupt_nothing(password: str, strong_records: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with running_lab(tmp_path / "lab", password=password) as info:
        dirs = _runs(info, tmp_path / "reports", monkeypatch)
    weak = _files(dirs)
    assert weak.keys() == strong_records.keys()
    for name, text in weak.items():
        assert text == strong_records[name], f"{name} differs with the password {password!r}"
        assert "<redacted>" not in text.replace('"password": "<redacted>"', ""), name
    passed = record.load(dirs["check"])
    assert {c["status"] for c in passed["checks"]} >= {"pass"}
    assert passed["operator"]["vcenter_user"] == "administrator@vsphere.local"


def test_no_record_holds_the_password_even_without_scrubbing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By construction: with scrub() switched off, no file of any run holds the sentinel password."""
    sentinel = f"Sentinel-{secrets.token_hex(8)}"
    monkeypatch.setattr(record, "scrub", lambda text: text)
    monkeypatch.setattr(report, "scrub", lambda text: text)
    with running_lab(tmp_path / "lab", password=sentinel) as info:
        dirs = _runs(info, tmp_path / "reports", monkeypatch)
        moved = runbook.migrate(runbook.MoveRequest(vm="web-02", target_host="esx-01.lab.local", ping="none"),
                                settings=lab_settings(info), context=runbook.RunContext(reports_dir=tmp_path / "reports"))
    assert moved.outcome == "SUCCEEDED", moved.summary
    written = [p for p in (tmp_path / "reports").rglob("*") if p.is_file()]
    assert len(written) >= 2 * (len(dirs) + 1)
    for path in written:
        assert sentinel not in path.read_text(errors="replace"), path
