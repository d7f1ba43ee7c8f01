"""Change records (runbook/records/: record, recorder, rundir, report): the JSON for machines, the HTML for people.

Real records of each outcome come from the engine (the path every front takes) against labs whose password is
a unique sentinel; the outcomes a lab cannot
produce on demand (UNKNOWN, RUNNING) are built at unit level. Every one validates against the documented
schema, and no file, log line or captured output holds the sentinel or a session cookie.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

import runbook
from conftest import running_lab
import runbook_lab as lab_mod
from runbook.records import record, report, rundir
from runbook.records.recorder import Recorder

SENTINEL = f"Sentinel-{secrets.token_hex(8)}"
COOKIE = "vmware_soap_session"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "record.md"


# -- unit level -------------------------------------------------------------------------------------------
def test_run_directories_are_never_reused(tmp_path: Path) -> None:
    made = [rundir.make_run_dir(tmp_path, "CHG 1/../x") for _ in range(3)] + [rundir.make_run_dir(tmp_path)]
    assert len({p for p in made}) == 4 and all(p.is_dir() and p.parent.parent == tmp_path for p in made)
    assert all(p.name.startswith("CHG-1-") and "/" not in p.name for p in made[:3])
    assert made[3].name.startswith("run-")


def test_record_lifecycle_atomic_and_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVC_PASSWORD", SENTINEL)
    recorder = Recorder("check", {"vm": "web-01", "password": SENTINEL, "api_token": "t0k3n-abc",
                                  "change_id": "CHG-1"},
                        runbook.RunContext(reports_dir=tmp_path, via="widgets", report=False)).start()
    run = recorder.record
    assert run.data["outcome"] == "RUNNING" and run.data["ended"] is None and run.data["via"] == "widgets"
    record.validate(record.load(run.run_dir))  # valid while running, too
    assert run.data["parameters"] == {"vm": "web-01", "password": "<redacted>", "api_token": "<redacted>",
                                      "change_id": "CHG-1"}
    run.set(summary=f"oops {SENTINEL} and Cookie: {COOKIE}=\"52ab-cd\"; Path=/", figures=[("VMs", 12)])
    text = run.path.read_text()
    assert SENTINEL not in text and "52ab-cd" not in text and "<redacted>" in text
    assert json.loads(text)["figures"] == [["VMs", "12"]]
    recorder.finish("UNKNOWN", "the task could not be followed", error={"type": "OutcomeUnknown", "message": "x"})
    with pytest.raises(RuntimeError, match="already finalised"):  # one owner, one end
        recorder.finish("SUCCEEDED", "a second ending")
    data = record.load(run.run_dir)
    record.validate(data)
    assert data["exit_code"] == 5 and data["ended"] >= data["started"] and data["duration_s"] >= 0
    assert [p.name for p in run.run_dir.iterdir()] == ["record.json"]  # no temporary file left behind
    with pytest.raises(ValueError):
        run.finish("ALMOST")


def test_schema_rejects_what_a_change_record_must_not_be(tmp_path: Path) -> None:
    run = record.RunRecord(kind="migrate", run_dir=tmp_path / "r").finish("FAILED", "task failed",
                                                                         task={"id": "task-1", "state": "error"})
    good = record.load(run.run_dir)
    record.validate(good)
    for bad in ({"vcenter": "https://administrator:secret@vc.example.com/sdk"},  # credentials in the address
                {"outcome": "DONE"}, {"exit_code": None}, {"started": "2024-01-01T00:00:00+02:00"},
                {"ping": {"probes_sent": 10, "lost": 1}},  # the old key names, not what move.py writes
                {"task": None, "error": None}):  # a failure that explains nothing
        with pytest.raises(jsonschema.ValidationError):
            record.validate({**good, **bad})


def test_scrub_removes_secrets_in_use_and_session_cookies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-a-file-123\n")
    monkeypatch.setenv("GOVC_PASSWORD", 'quo"te\\pw')
    monkeypatch.setenv("RUNBOOK_PASSWORD_FILE", str(pw_file))
    monkeypatch.setenv("GOVC_URL", "https://u:in-the-url-9@vc.example.com/sdk")
    text = json.dumps({"a": 'quo"te\\pw', "b": "from-a-file-123 in-the-url-9",
                       "c": "(vmware_soap_session='5212-ab'; Path=/) vmware_soap_session=\"5213\""})
    clean = record.scrub(text)
    for leak in ("quo", "from-a-file", "in-the-url", "5212", "5213"):
        assert leak not in clean, leak
    assert json.loads(clean)


def _record(tmp_path: Path, outcome: str, **values) -> dict:
    recorder = Recorder("migrate", {"vm": "web-01", "change_id": "CHG-U"},
                        runbook.RunContext(reports_dir=tmp_path, report=False)).start()
    recorder.set(plan={"vm": "web-01", "source_host": "esx-01", "run_host": "esx-02", "vm_datastores": ["nfs-01"]},
                 move="web-01: host esx-01 -> esx-02", **values)
    return recorder.finish(outcome, f"{outcome.lower()} at unit level")


def test_record_only_report_has_banner_figures_sections_and_nothing_external(tmp_path: Path) -> None:
    """What the widgets (or a run whose kernel never started) get: the report built from record.json alone."""
    from matplotlib.figure import Figure

    ping = {"note": "", "description": "3 probes lost (300 ms) of 50", "probes_sent": 50, "probes_received": 47,
            "probes_lost": 3, "loss_pct": 6.0, "outages_count": 1, "longest_outage_ms": 300.0,
            "total_outage_ms": 300.0, "outages": []}
    data = _record(tmp_path, "UNKNOWN", ping=ping, task={"id": "task-9", "state": "unknown", "duration_s": None},
                   error={"type": "OutcomeUnknown", "message": "the connection dropped"},
                   checks=[{"check": "power state", "status": "pass", "found": "on", "remedy": ""}],
                   placement={"before": {"host": "esx-01", "home_datastore": "nfs-01", "nics": [],
                                         "disks": [{"label": "disk-1", "datastore": "nfs-01", "format": "thin"}]},
                              "after": None})
    record.validate(data)
    fig = Figure(figsize=(4, 2))
    fig.add_subplot().plot([1, 2, 3])
    run_dir = tmp_path.joinpath(*Path(report.list_runs(tmp_path)["report"][0]).parts[:-1])
    page = report.write_html(run_dir, ping_chart=fig).read_text()
    assert 'id="outcome-banner"' in page and "UNKNOWN" in page and "rb-warn" in page
    for label in ("VM", "From", "To", "Duration", "Probes lost", "Longest outage", "Operator"):
        assert f"<th>{label}</th>" in page, label
    assert "3 of 50" in page and "300 ms" in page
    # The error: one line in the banner, its details in one section (not a figure too).
    assert re.findall(r'<p class="rb-error">(.*?)</p>', page) == ["Error: OutcomeUnknown: the connection dropped"]
    assert "<th>Error</th>" not in page.split('id="What-went-wrong"')[0]
    for title in ("What went wrong", "Plan", "Checks", "Before and after", "Task and vCenter events",
                  "Ping through the move"):
        assert title in page, title
    assert re.search(r'<img [^>]*src="data:image/png;base64,', page)
    assert 'alt="Chart: Ping through the move"' in page and (run_dir / "ping.png").is_file()  # kept beside it
    assert report.external_references(page) == [] and "<script" not in page
    assert "/*" not in "".join(re.findall(r"<style[^>]*>(.*?)</style>", page, re.S))


def test_external_references_finds_what_a_browser_would_fetch() -> None:
    page = ('<a href="#x"></a><img src="data:image/png;base64,AAAA"><a href="2024-01-01/r/report.html">'
            '<script src="https://cdn.example/x.js"></script><style>@import "//fonts.example/a.css";'
            ' p { background: url(http://img.example/b.png) }</style>')
    assert report.external_references(page) == ["https://cdn.example/x.js", "//fonts.example/a.css",
                                                 "http://img.example/b.png"]


def test_list_runs_reads_the_ping_keys_move_writes(tmp_path: Path) -> None:
    _record(tmp_path, "SUCCEEDED", ping={"probes_sent": 40, "probes_received": 38, "probes_lost": 2,
                                         "loss_pct": 5.0, "outages_count": 1, "longest_outage_ms": 200.0,
                                         "total_outage_ms": 200.0, "outages": [], "description": "2 lost"},
            task={"id": "task-1", "state": "success", "duration_s": 2.04})
    _record(tmp_path, "DRY RUN")
    (tmp_path / "2000-01-01" / "broken").mkdir(parents=True)
    (tmp_path / "2000-01-01" / "broken" / "record.json").write_text("{not json")
    runs = report.list_runs(tmp_path)
    assert list(runs["outcome"]) == ["DRY RUN", "SUCCEEDED"]
    assert runs["probes_lost"].iloc[1] == 2 and runs["duration_s"].iloc[1] == 2.0
    index = report.write_index(tmp_path).read_text()
    assert index.count("<tr><td>") == 2 and "web-01: host esx-01 -&gt; esx-02" in index
    assert report.external_references(index) == []


def test_schema_is_documented_field_by_field() -> None:
    """docs/record.md names every field of the schema, and its example is a valid record."""
    doc = DOCS.read_text()
    schema = record.schema()
    for name in schema["properties"]:
        assert f"`{name}`" in doc, f"docs/record.md does not document {name}"
    for name in schema["properties"]["ping"]["properties"]:
        assert f"`{name}`" in doc, f"docs/record.md does not document ping.{name}"
    for outcome in schema["properties"]["outcome"]["enum"]:
        assert f"`{outcome}`" in doc, outcome
    example = re.search(r"```json\n(.*?)```", doc, re.S)
    assert example, "docs/record.md has no ```json example"
    record.validate(json.loads(example.group(1)))


# -- real records through the lab: the engine's path, as the widgets take it ---------------------------------------
@pytest.fixture(scope="module")
def sentinel_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_mod.LabInfo]:
    with running_lab(tmp_path_factory.mktemp("records-lab"), password=SENTINEL) as info:
        yield info


@pytest.fixture(scope="module")
def prereq_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_mod.LabInfo]:
    with running_lab(tmp_path_factory.mktemp("records-prereq"), "prereq-failures", password=SENTINEL) as info:
        yield info


def _widget_run(vm: str, *, host: str = "", datastore: str = "", change_id: str | None = None,
                **options) -> tuple[dict, Path]:
    """What the widgets do: the engine's move with the widgets' context (record, report and index by the engine)."""
    request = runbook.MoveRequest(vm=vm, target_host=host, target_datastore=datastore, change_id=change_id or "",
                                  **{"ping_tcp_port": 9, "ping_tail": 0.3, **options})
    result = runbook.migrate(request, context=runbook.RunContext(via="widgets"))
    assert result.report is not None and result.record == record.load(result.run_dir)
    return record.load(result.run_dir), result.report


def _assert_no_secret(reports: Path, *texts: str) -> None:
    for path in reports.rglob("*"):
        if path.is_file():
            content = path.read_bytes().decode("utf-8", "replace")
            assert SENTINEL not in content and COOKIE not in content, path
    for text in texts:
        assert SENTINEL not in text and COOKIE not in text


def test_widget_path_records_success_dry_run_no_change_fault_and_timeout(sentinel_lab, use_lab, caplog, capfd) -> None:
    caplog.set_level("DEBUG")
    use_lab(sentinel_lab)
    control = lab_mod.LabControl(sentinel_lab)
    reports = Path(os.environ["RUNBOOK_REPORTS"])
    got = {}
    got["SUCCEEDED"] = _widget_run("web-01", host="esx-02.lab.local", change_id="CHG-100")
    got["DRY RUN"] = _widget_run("web-02", datastore="nfs-02", dry_run=True)
    got["NO CHANGE"] = _widget_run("web-03", host="esx-03.lab.local")
    control.inject_fault("app-02", "GenericVmConfigFault", "disk lock")
    got["FAILED"] = _widget_run("app-02", host="esx-01.lab.local")
    control.set_migration_seconds("util-01", 60)
    got["TIMED OUT"] = _widget_run("util-01", host="esx-01.lab.local", timeout_s=1.0)
    again = _widget_run("mon-01", host="esx-01.lab.local", change_id="CHG-100")

    for outcome, (data, page) in got.items():
        assert data["outcome"] == outcome, (outcome, data["summary"])
        record.validate(data)
        assert data["via"] == "widgets" and data["vcenter"] == sentinel_lab.url
        assert data["exit_code"] == record.EXIT_OF_OUTCOME[outcome]
        html = page.read_text()
        assert 'id="outcome-banner"' in html and f"<h1>{outcome}</h1>" in html
        assert report.external_references(html) == []
    success = got["SUCCEEDED"][0]
    assert success["placement"]["after"]["host"] == "esx-02.lab.local" and success["ping"]["probes_sent"] > 0
    assert success["task"]["state"] == "success"
    assert re.search(r'<img [^>]*src="data:image/png;base64,', got["SUCCEEDED"][1].read_text())
    assert "disk lock" in got["FAILED"][0]["summary"] and got["FAILED"][0]["task"]["state"] == "error"
    assert got["FAILED"][0]["placement"]["after"]["host"] == "esx-02.lab.local"  # it stayed where it was
    assert got["TIMED OUT"][0]["task"]["id"] and "did not finish within 1 s" in got["TIMED OUT"][0]["summary"]
    assert got["NO CHANGE"][0].get("task") is None and got["DRY RUN"][0].get("task") is None
    # The same change id twice: both records kept, both in the index.
    runs = report.list_runs(reports)
    assert list(runs["change_id"]).count("CHG-100") == 2 and again[0]["outcome"] == "SUCCEEDED"
    assert (reports / "index.html").read_text().count("<td>CHG-100</td>") == 2
    out, err = capfd.readouterr()
    _assert_no_secret(reports, out, err, caplog.text, "\n".join(r.getMessage() for r in caplog.records))


def test_widget_path_records_checks_failed(prereq_lab, use_lab, caplog, capfd) -> None:
    caplog.set_level("DEBUG")
    use_lab(prereq_lab)
    data, page = _widget_run("web-01", host="esx-05.lab.local")  # esx-05 is in maintenance mode
    assert data["outcome"] == "CHECKS FAILED" and data["exit_code"] == 2
    record.validate(data)
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert failed and any("maintenance" in c["found"] for c in failed) and all(c["remedy"] for c in failed)
    html = page.read_text()
    assert "CHECKS FAILED" in html and "maintenance" in html and "rb-fail" in html
    out, err = capfd.readouterr()
    _assert_no_secret(Path(os.environ["RUNBOOK_REPORTS"]), out, err, caplog.text)


def test_a_run_of_a_notebook_shows_its_chart_links_the_notebook_and_no_papermill_text(tmp_path: Path) -> None:
    """The executed notebook is an attachment: its ping chart is kept (ping.png), its error cells and parameters
    cell never reach the page, and --with-code adds its code cells, nothing else, as an appendix."""
    import base64

    import nbformat
    from matplotlib.figure import Figure

    from runbook.records.blocks import png_bytes

    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([1, 3, 2])
    chart = png_bytes(fig)
    new = nbformat.v4
    nb = new.new_notebook(cells=[
        new.new_markdown_cell("An Exception was encountered at 'In [8]'", metadata={"tags": ["papermill-error-cell-tag"]}),
        new.new_code_cell("# Parameters: papermill overrides these\nvm = ''", metadata={"tags": ["parameters"]}),
        new.new_markdown_cell("## Ping through the move"),
        new.new_code_cell("display(move.ping_chart())", outputs=[new.new_output(
            "display_data", data={"image/png": base64.b64encode(chart).decode(), "text/plain": "<Figure>"})])])
    data = _record(tmp_path, "SUCCEEDED", ping={"probes_sent": 10, "probes_lost": 0, "longest_outage_ms": 0.0,
                                                "description": "no outage"})
    run_dir = tmp_path / Path(report.list_runs(tmp_path)["report"][0]).parent
    nbformat.write(nb, run_dir / "run.ipynb")
    for with_code in (False, True):
        page = report.write_html(run_dir, data, with_code=with_code).read_text()
        assert "papermill" not in page.lower() and "Exception was encountered" not in page
        assert (run_dir / "ping.png").read_bytes() == chart and 'alt="Chart: Ping through the move"' in page
        assert '<a href="./run.ipynb">run.ipynb</a>: the notebook that ran' in page
        assert ("display(move.ping_chart())" in page) is with_code


# -- hostile values, bad files, validation at every save (issue 16) ----------------------------------------------
HOSTILE = ['<img src=x onerror=alert(1)>', '<script>alert("x")</script>', 'q"uote\'s & <b>bold<%2fb>',
           "[x](javascript:alert(3)) `c` *b* {{7*7}}", "\u202egnp.exe \u200frtl"]
ACTIVE_MARKUP = re.compile(r"<(?:script|img|svg|b)\b[^>]*(?:alert|onerror|onload|>bold)"
                           r"|(?:href|src)\s*=\s*[\"']?\s*javascript:", re.I)


def test_record_only_report_shows_every_value_as_text(tmp_path: Path) -> None:
    """The widgets' report (built from record.json alone) never passes a value through as HTML."""
    name = " ".join(HOSTILE)
    data = _record(tmp_path, "FAILED", summary=name, verdict=name,
                   error={"type": "TaskFailed", "message": name}, task={"id": "task-1", "state": "error"},
                   checks=[{"check": name, "status": "fail", "found": name, "remedy": name}],
                   events=[{"time": None, "type": "VmFailedMigrateEvent", "message": name, "user": name}],
                   ping={"note": name, "description": name})
    data["plan"]["vm"] = name
    data["move"] = f"{name}: host a -> b"
    page = report.write_html(tmp_path / "r", data).read_text()
    assert not ACTIVE_MARKUP.findall(page), ACTIVE_MARKUP.findall(page)[:3]
    for title in ("Plan", "Checks", "What went wrong", "Task and vCenter events", "Ping through the move"):
        assert title in page, title
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 8  # shown as text, in every section
    assert "\u202e" not in page and "[U+202E]gnp.exe" in page  # a bidi override reorders nothing: it is shown
    plan_table = page[page.index('id="Plan"'):page.index('id="Checks"')]
    assert "bold&lt;/b&gt;" in plan_table and "bold&lt;%2fb&gt;" not in plan_table.split("</p>", 1)[1]  # names as written


def test_checks_table_escapes_every_cell() -> None:
    import pandas as pd

    from runbook.fronts.notebook import styled_checks

    df = pd.DataFrame([{"status": "fail", "check": h, "found": h, "remedy": h} for h in HOSTILE])
    html = styled_checks(df).to_html()
    assert not ACTIVE_MARKUP.findall(html) and html.count("&lt;img src=x onerror=alert(1)&gt;") == 3


def test_readers_skip_unreadable_records_and_name_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import pandas as pd

    from runbook.fronts import cli

    _record(tmp_path, "SUCCEEDED", task={"id": "task-1", "state": "success", "duration_s": 2.0})
    bad = {"not-json": "{not json", "a-list": "[1, 2]", "no-kind": '{"outcome": "SUCCEEDED", "started": "x"}',
           "odd-types": '{"kind": "check", "outcome": "DRY RUN", "started": "2000-01-01T00:00:00Z", "ping": [1], '
                        '"plan": "x", "task": {"duration_s": 1e999}, "change_id": 5, "parameters": null}',
           "binary": b"\xff\xfe\x00"}
    for name, content in bad.items():
        path = tmp_path / "2000-01-01" / name / "record.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    runs = report.list_runs(tmp_path)
    assert sorted(p.parent.name for p, _ in runs.attrs["skipped"]) == ["a-list", "binary", "no-kind", "not-json"]
    assert list(runs["outcome"]) == ["SUCCEEDED", "DRY RUN"] and pd.isna(runs["duration_s"].iloc[1])
    index = report.write_index(tmp_path).read_text()
    assert index.count("<tr><td>") == 2 and "4 record(s) could not be read" in index and "not-json" in index
    capsys.readouterr()
    assert cli.main(["reports", "--reports", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 4 and all(line.startswith("runbook: skipped ") for line in err.splitlines())
    assert "Traceback" not in out + err and "SUCCEEDED" in out


def test_every_save_is_validated_and_an_invalid_record_is_never_written(tmp_path: Path) -> None:
    run = record.RunRecord(kind="check", run_dir=tmp_path / "r")
    run.save()  # RUNNING: valid too
    record.validate(record.load(run.run_dir))
    before = run.path.read_bytes()
    for bad in ({"checks": [{"check": "x", "status": "ok", "found": "", "remedy": ""}]}, {"outcome": "DONE"},
                {"vcenter": "https://u:pw@vc/sdk"}, {"started": None}):
        saved = dict(run.data)
        run.data.update(bad)
        with pytest.raises(record.RecordInvalid, match="does not follow record.schema.json"):
            run.save()
        run.data = saved
        assert run.path.read_bytes() == before  # the last valid version stays
    with pytest.raises(record.RecordInvalid):
        record.RunRecord(kind="check", run_dir=tmp_path / "s").finish("FAILED", "no task, no error")


# -- property-based: any text, any number -> a clean refusal or a valid record ----------------------------------
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

from runbook.engine.requests import MoveRequest, build  # noqa: E402
from runbook.errors import BadInput  # noqa: E402

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120) | st.sampled_from(HOSTILE)
_NUMBER = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30) | \
    st.sampled_from(["inf", "nan", "-1", "1e999", "0.05", " 3 ", "x"])


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vm=_TEXT, change_id=_TEXT, timeout=st.floats(1, 86400) | _NUMBER, interval=st.floats(0.01, 10) | _NUMBER,
       reason=_TEXT)
def test_any_name_change_id_or_number_is_refused_cleanly_or_recorded_validly(tmp_path: Path, vm, change_id,
                                                                            timeout, interval, reason) -> None:
    values = {"vm": vm, "target_host": "esx-02", "change_id": change_id, "timeout_s": timeout,
              "ping_interval": interval, "force_reason": reason}
    try:
        request = build(MoveRequest, values)
    except BadInput as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    recorder = Recorder("migrate", request.to_params(), runbook.RunContext(reports_dir=tmp_path, report=False))
    recorder.start()
    recorder.set(plan={"vm": request.vm, "vm_moid": "vm-1", "source_host": "esx-01", "run_host": "esx-02",
                       "vm_datastores": [request.vm]}, move=f"{request.vm}: host esx-01 -> esx-02",
                 force_reason=request.force_reason or None, summary=request.vm,
                 figures=[("VM", request.vm), ("Timeout", request.timeout_s)])
    data = recorder.finish("CHECKS FAILED", f"{request.vm}: refused")
    text = (recorder.run_dir / "record.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text)
    record.validate(loaded)
    assert loaded["plan"]["vm"] == request.vm and loaded["change_id"] == (request.change_id or None)
    assert data["exit_code"] == 2


@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_TEXT)
def test_any_name_in_a_record_only_report_is_text(tmp_path: Path, name: str) -> None:
    run = record.RunRecord(kind="check", run_dir=tmp_path / "r", change_id=name or None)
    run.data.update(plan={"vm": name, "vm_datastores": [name]}, move=name, verdict=name,
                    checks=[{"check": name, "status": "fail", "found": name, "remedy": name}])
    run.finish("CHECKS FAILED", name)
    page = report.write_html(run.run_dir).read_text()
    assert not ACTIVE_MARKUP.findall(page)


def test_a_record_the_schema_refuses_is_still_written_and_finished_with_a_notice(tmp_path: Path) -> None:
    """A field of the wrong shape is our bug; the run must not stop half-way nor lose its true outcome."""
    events: list = []
    recorder = Recorder("migrate", {"vm": "web-01"}, runbook.RunContext(reports_dir=tmp_path, report=False),
                        events.append).start()
    recorder.set(checks="not a list")
    data = recorder.finish("SUCCEEDED", "moved")
    saved = json.loads(recorder.record.path.read_text())
    assert saved["outcome"] == data["outcome"] == "SUCCEEDED" and saved["exit_code"] == 0
    notices = [e.text for e in events if e.kind == "notice"]
    assert notices and all("does not follow record.schema.json" in n for n in notices)


def test_outcome_words_per_kind_in_the_banner_and_the_index(tmp_path: Path) -> None:
    """A check PASSED or FAILED (its record still says SUCCEEDED or CHECKS FAILED, exit codes unchanged)."""
    words = {("check", "SUCCEEDED"): "PASSED", ("check", "CHECKS FAILED"): "FAILED", ("check", "REFUSED"): "REFUSED",
             ("migrate", "SUCCEEDED"): "SUCCEEDED", ("migrate", "TIMED OUT"): "TIMED OUT",
             ("wave", "CANCELLED"): "CANCELLED"}
    for (kind, outcome), word in words.items():
        assert record.outcome_word(kind, outcome) == word
    for outcome, word in (("SUCCEEDED", "PASSED"), ("CHECKS FAILED", "FAILED")):
        run = record.RunRecord(kind="check", run_dir=tmp_path / "2026-01-01" / outcome.replace(" ", "-"))
        run.finish(outcome, f"the check {word.lower()}")
        assert run.data["outcome"] == outcome and run.data["exit_code"] == record.EXIT_OF_OUTCOME[outcome]
        page = report.write_html(run.run_dir).read_text()
        assert f"<h1>{word}</h1>" in page and f"<h1>{outcome}</h1>" not in page.replace("<h1>FAILED</h1>", "")
    index = report.write_index(tmp_path).read_text()
    assert sorted(re.findall(r'data-outcome="([A-Z ]+)"', index)) == ["FAILED", "PASSED"]
