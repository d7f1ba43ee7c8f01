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
    from conftest import lab_env, running_lab

    root = tmp_path_factory.mktemp("cli")
    with running_lab(root / "lab") as info:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVC_")}
        env.update(lab_env(info), RUNBOOK_REPORTS=str(root / "reports"), RUNBOOK_LAB_DIR=str(root / "none"))
        yield info, env


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
    info = fresh_lab("prereq-failures")
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
