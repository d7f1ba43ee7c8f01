"""The headless pipeline (runbook/fronts/pipeline.py) end to end: the ``runbook`` command in a subprocess against
a lab whose password is a unique sentinel, then what it left under reports/: one directory per run (none for a
refused run), records that validate, reports that open offline in Chromium, an index listing every run, and the
sentinel nowhere.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import GOVC_VARS, lab_env, running_lab
from runbook.engine.context import RunContext
from runbook.engine.requests import MoveRequest
from runbook.errors import BadInput
from runbook.fronts import pipeline
from runbook.records import record, report

SENTINEL = f"Sentinel-{secrets.token_hex(8)}"
COOKIE = "vmware_soap_session"
RUNBOOK = [sys.executable, "-m", "runbook.fronts.cli"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG = re.compile(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"')


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNBOOK, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def headless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Inventory, check, a move under change CHG-42, then CHG-42 again naming a VM that does not exist (refused,
    no record): four runs of the command line against one lab, as an operator would type them."""
    tmp = tmp_path_factory.mktemp("headless")
    reports = tmp / "reports"
    with running_lab(tmp / "lab", password=SENTINEL) as info:
        env = {k: v for k, v in os.environ.items() if k not in GOVC_VARS}
        env.update(lab_env(info), RUNBOOK_REPORTS=str(reports), RUNBOOK_LAB_DIR=str(tmp / "no-lab"))
        runs = {
            "inventory": _cli(["inventory"], env),
            "check": _cli(["check", "--vm", "web-01", "--host", "esx-02.lab.local"], env),
            "migrate": _cli(["migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--change-id", "CHG-42",
                             "--ping-tail", "0.5", "--ping-tcp-port", "9"], env),
            "unknown-vm": _cli(["migrate", "--vm", "no-such-vm", "--host", "esx-02.lab.local",
                                "--change-id", "CHG-42"], env),
        }
        listing = _cli(["reports"], env)
    yield {"reports": reports, "runs": runs, "listing": listing}


def _records(reports: Path) -> dict[str, dict]:
    """The records by kind: inventory, check, migrate (the CHG-42 that succeeded)."""
    found = {}
    for path in reports.glob("*/*/record.json"):
        data = json.loads(path.read_text())
        assert data["kind"] not in found, "two records of one kind"
        found[data["kind"]] = data | {"_dir": path.parent}
    return found


def test_exit_codes_and_terminal_output(headless: dict) -> None:
    runs = headless["runs"]
    assert {k: r.returncode for k, r in runs.items()} == {"inventory": 0, "check": 0, "migrate": 0,
                                                          "unknown-vm": 2}, {k: r.stderr for k, r in runs.items()}
    assert runs["migrate"].stdout.splitlines()[-2].startswith("SUCCEEDED: web-01: host esx-01.lab.local -> esx-02")
    refusal = [line for line in runs["unknown-vm"].stderr.splitlines() if line.strip()]
    assert len(refusal) == 1 and refusal[0].startswith("runbook: error: no VM named 'no-such-vm'"), refusal
    for name, run in runs.items():
        # The kernel's "running over TCP without encryption" warning and nbconvert's alt-text warning are gone:
        # a successful run says nothing on stderr.
        assert "IPKernelApp" not in run.stderr and "Alternative text" not in run.stderr, name
        if run.returncode == 0:
            assert run.stderr == "", (name, run.stderr)


def test_every_run_has_its_own_directory_with_notebook_report_and_record(headless: dict) -> None:
    dirs = sorted(p for p in headless["reports"].glob("*/*") if p.is_dir())
    assert len(dirs) == 3  # the refused run (an unknown VM) left none
    for run_dir in dirs:
        assert {"run.ipynb", "report.html", "record.json", "events.jsonl"} <= {p.name for p in run_dir.iterdir()}
        assert not list(run_dir.glob(".*.tmp")), "an atomic write left its temporary file"
        for name in ("run.ipynb", "record.json", "events.jsonl", "context.json"):
            assert (run_dir / name).stat().st_mode & 0o077 == 0, (run_dir / name)
    chg = [d for d in dirs if d.name.startswith("CHG-42-")]
    assert len(chg) == 1 and json.loads((chg[0] / "record.json").read_text())["outcome"] == "SUCCEEDED"


def test_records_validate_and_say_who_what_when(headless: dict, lab_url_re=r"^http://127\.0\.0\.1:\d+/sdk$") -> None:
    records = _records(headless["reports"])
    assert set(records) == {"inventory", "check", "migrate"}
    for name, data in records.items():
        data = {k: v for k, v in data.items() if k != "_dir"}
        record.validate(data)
        assert data["schema_version"] == record.SCHEMA_VERSION and data["runbook_version"]
        assert data["via"] == "headless"
        assert data["operator"]["os_user"] and data["operator"]["vcenter_user"] == "administrator@vsphere.local"
        assert re.match(lab_url_re, data["vcenter"]), data["vcenter"]
        assert data["started"].endswith("Z") and data["ended"].endswith("Z") and data["started"] < data["ended"]
    move = records["migrate"]
    assert move["change_id"] == "CHG-42" and move["exit_code"] == 0
    assert move["plan"]["vm"] == "web-01" and move["plan"]["run_host"] == "esx-02.lab.local"
    assert move["placement"]["before"]["host"] == "esx-01.lab.local"
    assert move["placement"]["after"]["host"] == "esx-02.lab.local"
    assert move["task"]["state"] == "success" and move["task"]["duration_s"] > 0
    assert any(e["type"] == "VmMigratedEvent" for e in move["events"])
    assert move["ping"]["probes_sent"] > 0 and move["ping"]["probes_lost"] >= 0
    assert {"loss_pct", "longest_outage_ms", "total_outage_ms", "outages_count", "description"} <= set(move["ping"])
    assert all(c["status"] in ("pass", "skip") for c in move["checks"])


def test_index_and_reports_command_list_every_run(headless: dict) -> None:
    index = (headless["reports"] / "index.html").read_text()
    assert index.count("<tr><td>") == 3 and index.count("<td>CHG-42</td>") == 1
    runs = report.list_runs(headless["reports"])
    assert len(runs) == 3 and list(runs["started"]) == sorted(runs["started"], reverse=True)
    move = runs[(runs["outcome"] == "SUCCEEDED") & (runs["kind"] == "migrate")].iloc[0]
    assert move["vm"] == "web-01" and move["probes_lost"] >= 0 and move["duration_s"] > 0
    for link in runs["report"]:
        assert (headless["reports"] / link).is_file() and f'href="./{link}"' in index  # relative, never a scheme
    listing = headless["listing"]
    assert listing.returncode == 0
    assert len([line for line in listing.stdout.splitlines() if "CHG-42" in line]) == 1, listing.stdout
    assert "web-01" in listing.stdout and "SUCCEEDED" in listing.stdout


def test_reports_open_offline_with_nothing_missing(headless: dict) -> None:
    for page in headless["reports"].rglob("*.html"):
        html = page.read_text()
        assert report.external_references(html) == [], page
        # the index sorts and filters with its own inline script; a report has none; nothing is fetched
        assert "@import" not in html and not re.search(r"<script[^>]*\bsrc\s*=", html, re.I), page
        if page.name == "report.html":
            assert "<script" not in html.lower(), page
        assert "widget-view" not in html and "widget-state" not in html, page
        assert "No description has been provided" not in html, page
    records = _records(headless["reports"])
    inventory = (records["inventory"]["_dir"] / "report.html").read_text()
    assert len(PNG.findall(inventory)) == 2 and 'alt="Chart: Hosts"' in inventory


def test_no_secret_anywhere(headless: dict) -> None:
    for path in headless["reports"].rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            assert SENTINEL not in text, path
            assert COOKIE not in text, path
    for name, run in {**headless["runs"], "reports": headless["listing"]}.items():
        for stream in (run.stdout, run.stderr):
            assert SENTINEL not in stream and COOKIE not in stream, name
    for path in headless["reports"].glob("*/*/run.ipynb"):
        meta = json.loads(path.read_text())["metadata"]["papermill"]
        assert not any("pass" in k.lower() for k in meta["parameters"])
        assert meta["environment_variables"] == {}


def test_a_refused_request_leaves_no_record(tmp_path: Path) -> None:
    """Refused before the run starts (no kernel, no run directory): the one line says why."""
    from runbook.engine.requests import build

    with pytest.raises(BadInput, match="vm must be text"):
        build("check", {"vm": [5], "target_host": "esx-02"})
    assert not (tmp_path / "reports").exists()


def test_in_process_dry_run_leaks_nothing(fresh_lab, caplog, capfd, tmp_path) -> None:
    """The library call the CLI makes, in this process: nothing secret in pytest's captured logs or output."""
    caplog.set_level("DEBUG")
    info = fresh_lab(password=SENTINEL)
    request = MoveRequest(vm="web-02", target_datastore="nfs-02", dry_run=True, ping="none", change_id="CHG-8")
    events = []
    result = pipeline.run_notebook(request, context=RunContext(reports_dir=tmp_path / "r"), on_event=events.append)
    assert result.outcome == "DRY RUN" and result.exit_code == 0, result.record.get("error")
    record.validate(result.record)
    assert result.record["spec"]["datastore"]
    assert any(e.kind == "check" for e in events), "the checks were not streamed"
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for text in (out, err, logged):
        assert info.password not in text and COOKIE not in text
    assert "IPKernelApp" not in err
    for path in result.run_dir.iterdir():
        assert SENTINEL not in path.read_text(errors="replace"), path


def _dump_dom(page: Path, tmp: Path) -> str:
    """The page as Chromium renders it with every network path cut (a dead proxy for everything, even
    loopback), so a report that needed the internet would show it."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'chromium-profile'}", "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=3000", "--dump-dom", page.as_uri()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_reports_render_offline_in_chromium(headless: dict, tmp_path: Path) -> None:
    records = _records(headless["reports"])
    inventory = _dump_dom(records["inventory"]["_dir"] / "report.html", tmp_path)
    assert 'id="outcome-banner"' in inventory and len(PNG.findall(inventory)) == 2
    index = _dump_dom(headless["reports"] / "index.html", tmp_path)
    assert index.count(">CHG-42<") == 1  # the refused CHG-42 run left no record
    move = _dump_dom(records["migrate"]["_dir"] / "report.html", tmp_path)
    assert 'id="outcome-banner"' in move and "SUCCEEDED" in move and 'id="key-figures"' in move
    for figure in ("VM", "From", "To", "Duration", "Probes lost", "Longest outage"):
        assert f"<th>{figure}</th>" in move, figure
    assert move.count("<table") >= 4  # key figures, checks, before/after, task, events
    nb = json.loads((records["migrate"]["_dir"] / "run.ipynb").read_text())
    chart_cell = next(c for c in nb["cells"] if "ping_chart(" in "".join(c["source"]))
    assert any("image/png" in o.get("data", {}) for o in chart_cell["outputs"]), "no ping chart in the notebook"
    assert PNG.search(move) and 'alt="Chart: Ping through the move"' in move


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_kernel_started_ahead_runs_the_notebook_and_is_shut_down_after(lab, use_lab, tmp_path) -> None:
    """prestart(): the run uses that kernel (no second one is started) and it ends with the run."""
    from runbook.engine.requests import CheckRequest

    use_lab(lab)
    kernel = pipeline.prestart()
    assert kernel is not None
    pid = pipeline._kernel_pid(kernel.managers)
    assert pid and _running(pid)
    result = pipeline.run_notebook(CheckRequest(vm="web-01", target_host="esx-03.lab.local"),
                                   context=RunContext(reports_dir=tmp_path / "r"), kernel=kernel)
    assert result.outcome == "SUCCEEDED", result.record.get("error")
    assert len(kernel.managers) == 1, "the run started a kernel of its own"
    assert not _running(pid) and not kernel.sockets.exists()


def test_a_kernel_started_ahead_is_shut_down_when_its_run_never_starts(tmp_path) -> None:
    kernel = pipeline.prestart()
    assert kernel is not None
    pid = pipeline._kernel_pid(kernel.managers)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(BadInput, match="cannot hold a run"):
        pipeline.run_notebook(MoveRequest(vm="web-01", target_host="esx-02", ping="none"),
                              context=RunContext(reports_dir=blocked / "reports"), kernel=kernel)
    assert not _running(pid) and not kernel.sockets.exists()
