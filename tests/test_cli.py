"""The runbook command: each bad input gives one clear line, the documented exit code, and an unchanged lab."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runbook_lab as lab_mod
from runbook.fronts.cli import EXIT_CODES

RUNBOOK = str(Path(sys.executable).with_name("runbook"))


def runbook(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([RUNBOOK, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One lab for the refusals (none of them may change it: each test checks that)."""
    from conftest import cli_env, running_lab

    root = tmp_path_factory.mktemp("cli")
    with running_lab(root / "lab") as info:
        yield info, cli_env(info, root)


def placement(info) -> dict:
    control = lab_mod.LabControl(info)
    return {vm: control.placement(vm) for vm in ("web-01", "app-02")}


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("runbook:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


BAD_INPUT = [
    (["check", "--vm", "web-0l", "--host", "esx-02.lab.local"], r"no VM named 'web-0l'; did you mean .*web-01"),
    (["check", "--vm", "web-01", "--host", "esx-9.lab.local"], r"no host named 'esx-9.lab.local'"),
    (["check", "--vm", "web-01", "--datastore", "nfs-9"], r"no datastore named 'nfs-9'"),
    (["check", "--vm", "", "--host", "esx-02.lab.local"], r"no VM given"),
    (["check", "--vm", "web-01"], r"give a target host, a target datastore, or both"),
    (["migrate", "--vm", "web-01", "--datastore", "nfs-02", "--disk-format", "thinn"],
     r"disk format 'thinn' is not one of same, thin, thick, eagerzeroedthick"),
    (["migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--priority", "urgent"],
     r"priority 'urgent' is not one of default, high, low"),
    (["check", "--vm", "web-01", "--host", "esx-02.lab.local", "--network", "VM Network=No Such PG"],
     r"No Such PG"),
    (["check", "--vm", "web-01", "--host", "esx-02.lab.local", "--network", "garbage"], r"is not OLD=NEW"),
    (["migrate", "--vm", "web-01", "--host", "esx-02.lab.local", "--ping-interval", "0.001"],
     r"ping interval .* out of range"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(shared, args, message):
    import re

    info, env = shared
    before = placement(info)
    result = runbook(args, env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert re.search(message, one_error_line(result)), result.stderr
    assert placement(info) == before
    # A refusal is not a failed move: no run directory, no record, no index entry.
    assert not list(Path(env["RUNBOOK_REPORTS"]).glob("*/*")), "a refused run left a record"


def test_target_equal_to_the_source_is_already_there(shared):
    info, env = shared
    before = placement(info)
    result = runbook(["migrate", "--vm", "web-01", "--host", "esx-01.lab.local"], env)
    assert result.returncode == 0, result.stderr
    assert "NO CHANGE" in result.stdout and "already there" in result.stdout
    assert placement(info) == before


def test_a_failed_check_exits_2_and_prints_the_table(fresh_lab, tmp_path):
    fresh_lab("prereq-failures")
    env = {**os.environ, "RUNBOOK_REPORTS": str(tmp_path)}
    result = runbook(["check", "--vm", "web-01", "--host", "esx-05.lab.local"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAIL  target host state" in result.stdout and "maintenance" in result.stdout
    assert "report: " in result.stdout


CONNECTION = [
    ({}, "no vCenter configured and no lab running"),
    ({"GOVC_URL": "http://127.0.0.1:9/sdk", "GOVC_USERNAME": "u", "GOVC_PASSWORD": "p"}, "cannot reach vCenter"),
    ("wrong-password", "refused the login"),
]


@pytest.mark.parametrize("env_change, message", CONNECTION, ids=["none", "unreachable", "password"])
def test_connection_errors_exit_4_with_one_line(shared, tmp_path, env_change, message):
    info, env = shared
    env = {k: v for k, v in env.items() if not k.startswith("GOVC_")}
    if env_change == "wrong-password":
        env.update(GOVC_URL=info.url, GOVC_USERNAME=info.username, GOVC_PASSWORD="Not-The-Password-1")
    else:
        env.update(env_change)
    result = runbook(["inventory"], env)
    assert result.returncode == 4, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert message in line
    assert "Not-The-Password-1" not in result.stdout + result.stderr


def test_untrusted_certificate_exits_4_and_names_the_fix(fresh_lab, tmp_path):
    info = fresh_lab(tls=True)
    env = {k: v for k, v in os.environ.items() if k != "GOVC_TLS_CA_CERTS"}
    env["RUNBOOK_REPORTS"] = str(tmp_path)
    result = runbook(["inventory"], env)
    assert result.returncode == 4
    assert "GOVC_TLS_CA_CERTS" in one_error_line(result)
    env["GOVC_TLS_CA_CERTS"] = str(info.ca_file)
    assert runbook(["inventory"], env).returncode == 0


def test_inventory_report_lists_every_vm(lab, use_lab, tmp_path):
    use_lab(lab)
    env = {**os.environ, "RUNBOOK_REPORTS": str(tmp_path)}
    result = runbook(["inventory"], env)
    assert result.returncode == 0, result.stderr
    report = Path(result.stdout.split("report: ")[1].strip())
    html = report.read_text()
    for vm in ("web-01", "web-02", "web-03", "app-01", "app-02", "app-03", "db-01", "db-02", "util-01",
               "iso-01", "build-01", "mon-01"):
        assert f">{vm}<" in html, vm
    assert "<script src=" not in html and "data:image/png;base64" in html


def test_help_documents_every_command_and_the_exit_codes():
    result = subprocess.run([RUNBOOK, "--help"], capture_output=True, text=True)
    for command in ("lab", "inventory", "check", "migrate", "enable-vmotion", "reports"):
        assert command in result.stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for command in ("runbook lab start", "runbook inventory", "runbook check", "runbook migrate",
                    "runbook enable-vmotion", "runbook reports"):
        assert command in readme, f"README does not document {command}"
    for line in EXIT_CODES.splitlines()[1:]:
        code = line.split()[0]
        assert f"| {code} |" in readme, f"README does not document exit code {code}"


def test_lab_start_prints_exports_and_stop_leaves_nothing(tmp_path):
    env = {**os.environ, "RUNBOOK_LAB_DIR": str(tmp_path / "lab")}
    started = runbook(["lab", "start"], env)
    assert started.returncode == 0, started.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                   if line.startswith("export "))
    assert exports["GOVC_URL"].startswith("http://127.0.0.1:") and exports["GOVC_USERNAME"]
    status = runbook(["lab", "status"], env)
    assert status.returncode == 0 and "running at" in status.stdout
    pid = lab_mod.status(tmp_path / "lab").pid
    assert runbook(["lab", "stop"], env).returncode == 0
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z"  # gone, or a zombie of init's
    assert not (tmp_path / "lab" / "tmp").exists()
    assert runbook(["lab", "status"], env).returncode == 1


def test_unknown_parameter_is_refused_before_anything_runs(shared, tmp_path):
    from runbook.engine.requests import build
    from runbook.errors import BadInput

    with pytest.raises(BadInput, match="migrate has no parameter 'tiemout_s'; it takes: vm, "):
        build("migrate", {"vm": "web-01", "target_host": "esx-02.lab.local", "tiemout_s": 5})


def test_plain_papermill_with_a_wrong_type_stops_with_one_clear_error(shared, tmp_path):
    info, env = shared
    before = placement(info)
    papermill = str(Path(sys.executable).with_name("papermill"))
    out = tmp_path / "out.ipynb"
    result = subprocess.run([papermill, "notebooks/migrate.ipynb", str(out), "-p", "vm", "web-01",
                             "-p", "target_host", "esx-02.lab.local", "-p", "timeout_s", "soon",
                             "-k", "python3"],
                            env={**env, "RUNBOOK_REPORTS": str(tmp_path / "reports")}, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=180)
    assert result.returncode != 0
    import json

    errors = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "BadInput"
    assert "timeout must be a number, not 'soon'" in errors[0]["evalue"]
    assert len(errors[0]["traceback"]) == 1  # one line, not a traceback
    assert placement(info) == before
    assert not (tmp_path / "reports").exists(), "a refused run left a record"


def _examples() -> list[tuple[str, list[str]]]:
    """Every example of the CLI's help (EXAMPLES), as (command, argv): comments dropped, `eval "$(...)"` opened."""
    import shlex

    from runbook.fronts.cli import EXAMPLES

    found = []
    for command, text in EXAMPLES.items():
        for line in text.splitlines():
            line = line.strip()
            if line.startswith('eval "$('):
                line = line.removeprefix('eval "$(').removesuffix(')"')
            if line.startswith("runbook "):
                found.append((command, shlex.split(line, comments=True)[1:]))
    return found


#: What a command of the examples may change: run with --dry-run added (enable-vmotion has none: --apply is
#: run for real, in this test's own lab).
CHANGES = ("migrate", "evacuate", "drain", "undo")


def _app_example(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    """`runbook app ...` serves until stopped: it must print its URL line, answer there, and exit 0 on SIGTERM."""
    import signal
    import socket
    import urllib.request

    if "--port" in argv:  # the example's port may be taken on this machine: the same option, a free port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            argv[argv.index("--port") + 1] = str(s.getsockname()[1])
    if "--reports" in argv:  # and this test's reports, not the example's directory
        argv[argv.index("--reports") + 1] = str(cwd / "app-reports")
    argv = argv if "--no-browser" in argv else [*argv, "--no-browser"]  # no browser to open in a test
    proc = subprocess.Popen([RUNBOOK, *argv], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert "serving at http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split("serving at ")[1].split()[0]
        with urllib.request.urlopen(url.split("?")[0] + "voila/files/index.html", timeout=30) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()


@pytest.mark.slow
def test_every_example_of_the_help_works_in_the_lab(fresh_lab, tmp_path):
    """Each example in `runbook COMMAND --help` runs against a default lab and exits as documented (0; a check
    exits 0 when nothing failed), --dry-run added where it would change something. The examples' inputs are
    made first: a plan file moves.csv, and a run that moved a VM (for undo's run id)."""
    import json

    import runbook
    from runbook.engine.context import RunContext
    from runbook.records.record import EXIT_OF_OUTCOME

    info = fresh_lab("default")
    env = {**os.environ, "RUNBOOK_REPORTS": str(tmp_path / "reports"), "RUNBOOK_LAB_DIR": str(tmp_path / "own-lab")}
    (tmp_path / "moves.csv").write_text("vm,host\nweb-01,esx-02.lab.local\napp-02,esx-03.lab.local\n")
    moved = runbook.migrate(runbook.MoveRequest(vm="db-01", target_host="esx-03.lab.local", ping="none"),
                            context=RunContext(reports_dir=tmp_path / "reports"))
    assert moved.outcome == "SUCCEEDED", moved.summary
    examples = _examples()
    assert {command for command, _ in examples} >= {"inventory", "check", "migrate", "enable-vmotion", "evacuate",
                                                    "drain", "undo", "app", "lab"}
    for command, argv in examples:
        if command == "undo" and argv[0] == "undo":
            argv[1] = moved.run_dir.name  # the example's run id stands for one of `runbook reports`
        if argv[0] in CHANGES and "--dry-run" not in argv:
            argv.append("--dry-run")
        if argv[0] == "app":
            _app_example(argv, env, tmp_path)
            continue
        if argv[:2] == ["lab", "start"]:  # a lab of the example's own, stopped after
            result = subprocess.run([RUNBOOK, *argv], env=env, cwd=tmp_path, capture_output=True, text=True,
                                    timeout=180)
            assert result.returncode == 0 and "export GOVC_URL=" in result.stdout, result.stderr
            assert runbook_cli(["lab", "stop"], env, tmp_path).returncode == 0
            continue
        result = runbook_cli(argv, env, tmp_path)
        assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-2000:])
    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-01.lab.local"  # the dry runs moved nothing
    records = [json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*/*/record.json")]
    assert all(EXIT_OF_OUTCOME[r["outcome"]] == 0 for r in records), [(r["kind"], r["outcome"]) for r in records]


def runbook_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([RUNBOOK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_last_line_says_the_outcome_as_its_kind_does(shared, tmp_path):
    """A check that passed reads PASSED (a move would read SUCCEEDED); its exit code is still 0."""
    info, env = shared
    env = {**env, "RUNBOOK_REPORTS": str(tmp_path / "reports")}
    result = runbook(["check", "--vm", "web-01", "--host", "esx-02.lab.local", "-q"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("PASSED: "), result.stdout
    listing = runbook(["reports", "--reports", str(tmp_path / "reports")], env)
    run_id = next((tmp_path / "reports").glob("*/*/record.json")).parent.name
    assert run_id in listing.stdout and "PASSED" in listing.stdout, listing.stdout
