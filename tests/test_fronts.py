"""The fronts are views of one engine: the same parameters everywhere, papermill's strings read as meant,
events on the terminal as they happen, and an interrupted command that ends with a true record."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import papermill
import pytest

import runbook_lab as lab_mod
from conftest import GOVC_VARS, lab_env
from runbook.engine.requests import REQUESTS, build
from runbook.errors import BadInput
from runbook.fronts import cli, pipeline
from runbook.records import record

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = str(Path(sys.executable).with_name("runbook"))


def _cli_names(kind: str) -> set[str]:
    parser = cli._parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[kind]
    wave = cli.PLAN_OPTIONS if kind == "migrate" else ()  # migrate --plan FILE runs a wave (no notebook)
    return {a.dest for a in sub._actions if a.dest not in ("help", *cli.FRONT_OPTIONS, *wave)}


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_cli_notebook_and_request_take_the_same_parameters(kind):
    fields = {p.name for p in REQUESTS[kind].params()}
    notebook = set(papermill.inspect_notebook(str(pipeline.notebook_path(kind))))
    assert _cli_names(kind) == fields
    assert notebook - {pipeline.CONTEXT_PARAMETER} == fields
    for name, declared in papermill.inspect_notebook(str(pipeline.notebook_path(kind))).items():
        if name in fields:
            param = next(p for p in REQUESTS[kind].params() if p.name == name)
            assert declared["inferred_type_name"] == param.type.__name__, name
            assert declared["help"] == param.help, name


def test_the_wizard_takes_every_move_parameter_it_does_not_pick():
    from runbook.engine.requests import MoveRequest
    from runbook.fronts import widgets

    fields = {p.name for p in MoveRequest.params()}
    assert set(widgets.PICKED) < fields
    import inspect

    source = inspect.getsource(widgets.chooser)
    assert "MoveRequest.params()" in source  # the chooser forwards the notebook's values by the request's names


@pytest.mark.parametrize("text, expected", [("false", False), ("False", False), ("no", False), ("0", False),
                                            ("true", True), ("TRUE", True), ("yes", True), ("1", True)])
def test_papermill_strings_read_as_a_person_means_them(text, expected):
    assert build("migrate", {"vm": "a", "target_host": "b", "dry_run": text}).dry_run is expected
    assert build("enable-vmotion", {"hosts": ["h"], "apply": text, "disable": text}).apply is expected


@pytest.mark.parametrize("values, words", [
    ({"dry_run": "maybe"}, "dry run must be true or false"),
    ({"timeout_s": "nan"}, "timeout must be a finite number"),
    ({"timeout_s": float("inf")}, "timeout must be a finite number"),
    ({"ping_tail": "inf"}, "ping tail must be a finite number"),
    ({"ping_interval": 0}, "ping interval 0 is out of range"),
    ({"ping_tcp_port": 2.5}, "ping tcp port must be a whole number"),
    ({"vm": "a\nb"}, "control characters"),
])
def test_unusable_values_are_refused_in_one_line(values, words):
    with pytest.raises(BadInput, match=words) as refused:
        build("migrate", {"vm": "a", "target_host": "b", **values})
    assert "\n" not in str(refused.value)


def _env(info, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GOVC_VARS}
    env.update(lab_env(info), RUNBOOK_REPORTS=str(tmp / "reports"), RUNBOOK_LAB_DIR=str(tmp / "no-lab"))
    return env


def _records(tmp: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "reports").glob("*/*/record.json"))]


@pytest.mark.slow
def test_papermill_apply_false_changes_no_host_and_says_dry_run(fresh_lab, tmp_path):
    """A scheduler's papermill run with ``-p apply false -p disable false`` is a dry run, not a change."""
    info = fresh_lab()
    before = lab_mod.LabControl(info).placement("web-01")  # the lab answers; hosts' adapters read below
    out = tmp_path / "out.ipynb"
    done = subprocess.run([str(Path(sys.executable).with_name("papermill")), "notebooks/enable_vmotion.ipynb",
                           str(out), "-p", "hosts", "esx-02.lab.local", "-p", "vmk", "vmk1", "-p", "apply", "false",
                           "-p", "disable", "true"], env=_env(info, tmp_path), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = _records(tmp_path)
    assert len(records) == 1 and records[0]["outcome"] == "DRY RUN", records
    assert records[0]["parameters"]["apply"] is False and records[0]["parameters"]["disable"] is True
    assert all(not h["applied"] for h in records[0]["hosts"])
    after_adapters = records[0]["hosts"][0]["after"]
    assert "vmotion" in after_adapters, "the dry run took vMotion off the adapter"
    assert lab_mod.LabControl(info).placement("web-01") == before


@pytest.mark.slow
def test_the_first_check_is_on_the_terminal_before_the_task_starts(fresh_lab, tmp_path):
    info = fresh_lab()
    lab_mod.LabControl(info).set_migration_seconds("web-01", 4)
    # the vCenter's own verdict comes 1.5 s after the local checks: lines printed only at the end (a buffered
    # pipe, a run that prints when it is done) reach the terminal after the task started
    lab_mod.LabControl(info).set_delay("CheckRelocate_Task", 1500)
    proc = subprocess.Popen([RUNBOOK, "migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--ping", "none"],
                            env=_env(info, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_check = progress = None
    for line in proc.stdout:
        now = time.time()
        if first_check is None and line.startswith("  PASS"):
            first_check = now
        if progress is None and "% running" in line:
            progress = now
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    (data,) = _records(tmp_path)
    queued = data["task"]["queued"]
    import datetime as dt

    queued_at = dt.datetime.fromisoformat(queued.replace("Z", "+00:00")).timestamp()
    assert first_check is not None and first_check < queued_at, (first_check, queued_at)
    assert progress is not None and progress < dt.datetime.fromisoformat(
        data["task"]["completed"].replace("Z", "+00:00")).timestamp(), "no progress line while the task ran"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_move_cancels_the_task_and_the_record_agrees_with_the_lab(fresh_lab, tmp_path, sig):
    info = fresh_lab()
    control = lab_mod.LabControl(info)
    control.set_migration_seconds("web-01", 30)
    proc = subprocess.Popen([RUNBOOK, "migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--ping", "none"],
                            env=_env(info, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("task ") and "started" in line:
            break
    time.sleep(1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    (data,) = _records(tmp_path)
    record.validate(data)
    assert data["outcome"] == "CANCELLED", data["summary"]
    assert proc.returncode == data["exit_code"] == record.EXIT_OF_OUTCOME["CANCELLED"], (out, err)
    assert data["interrupted"] == sig.name and data["task"]["fault"] == "RequestCanceled"
    assert control.placement("web-01")["host"] == "esx-01.lab.local"  # the VM stayed: the lab agrees
    assert f"CANCELLED: interrupted by {sig.name}" in out
    assert "Traceback" not in out + err


@pytest.mark.slow
def test_an_unwritable_index_does_not_change_the_outcome_or_the_exit_code(fresh_lab, tmp_path):
    info = fresh_lab()
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "index.html").mkdir()  # the index cannot be written: a directory holds its name
    done = subprocess.run([RUNBOOK, "migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--ping", "none"],
                          env=_env(info, tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED: web-01" in done.stdout and "index could not be updated" in done.stdout
    (data,) = _records(tmp_path)
    assert data["outcome"] == "SUCCEEDED" and data["exit_code"] == 0
    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"


def test_an_unusable_reports_directory_is_refused_in_one_line(lab, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = _env(lab, tmp_path) | {"RUNBOOK_REPORTS": str(blocker / "reports")}
    done = subprocess.run([RUNBOOK, "check", "--vm", "web-01", "--host", "esx-02.lab.local"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "reports directory" in lines[0] and "RUNBOOK_REPORTS" in lines[0], lines


@pytest.mark.slow
def test_a_plain_install_runs_a_check_from_another_directory(lab, tmp_path):
    """``pip install .`` (not editable) into a fresh venv, then ``runbook check`` elsewhere: the notebooks
    ship with the package and nothing needs the source checkout. Dependencies come from this venv (a .pth
    file), so the test needs no network."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(str(ours) + "\n")  # a path line: ours is appended, its .pth files not read
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--target", str(site), "--upgrade", str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    script = venv / "bin" / "runbook"
    script.write_text(f"#!{py}\nimport sys\nfrom runbook.fronts.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(lab, tmp_path) | {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run([str(script), "check", "--vm", "web-01", "--host", "esx-02.lab.local"], env=env,
                          cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    where = subprocess.run([str(py), "-c", "import runbook; print(runbook.__file__)"], capture_output=True,
                           text=True, cwd=elsewhere).stdout
    assert str(site) in where and str(ROOT) not in where, where
    assert (site / "runbook" / "notebooks" / "migrate.ipynb").is_file()
    assert not (site / "runbook" / "notebooks").is_symlink()
    (data,) = _records(tmp_path)
    assert data["outcome"] == "SUCCEEDED" and data["kind"] == "check"


def test_no_run_builds_the_iri_grammar_and_records_still_validate(tmp_path):
    """jsonschema's optional IRI checker (3 s of Lark grammar at import) is left out of every runbook process."""
    code = "\n".join([
        "import sys",
        "from runbook.fronts import pipeline",
        "import papermill, nbconvert, jsonschema",
        "from runbook.records import record, report",
        "assert sys.modules.get('rfc3987_syntax') is None, 'the grammar was loaded'",
        "try:",
        "    record.validate({'schema_version': 1})",
        "except jsonschema.ValidationError:",
        "    print('refused')",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "refused", done.stderr[-2000:]


@pytest.mark.parametrize("first", ["validate", "_schema_problem"])
def test_a_record_checked_first_in_a_process_leaves_the_iri_grammar_out(first):
    """A widget, the app, a wave or a Python caller saves a record without the pipeline: the record's own
    validation is the first import of jsonschema there, and must not build the grammar either."""
    code = "\n".join([
        "import sys",
        "from runbook.records import record",
        "try:",
        f"    record.{first}({{'schema_version': 1}})",
        "except Exception as exc:",
        "    print(type(exc).__name__)",
        "assert 'jsonschema' in sys.modules",
        "print('grammar', sys.modules.get('rfc3987_syntax') is not None)",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "grammar False", done.stdout


def test_a_vcenter_that_answers_too_slowly_is_exit_4_with_the_setting_to_raise(fresh_lab, tmp_path):
    info = fresh_lab()
    lab_mod.LabControl(info).set_delay("RetrievePropertiesEx", 3000)
    env = _env(info, tmp_path) | {"RUNBOOK_TIMEOUT": "1"}
    done = subprocess.run([RUNBOOK, "check", "--vm", "web-01", "--host", "esx-02.lab.local"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "did not answer within 1 s" in lines[0] and "RUNBOOK_TIMEOUT" in lines[0], lines
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").glob("*/*"))
