"""An unknown name is refused by the command's own look-up: no kernel is started, and the command loads nothing a
run needs (papermill, the kernel's client) before it knows the names exist."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import cli_env, running_lab

PROBE = """
import json, sys
from runbook.fronts.cli import main
code = main(sys.argv[1:])
print(json.dumps({"exit": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                  ("papermill", "jupyter_client", "nbclient", "nbformat", "pandas", "runbook"))}))
"""


def _marked() -> set[int]:
    """Processes (still running) whose environment holds this test's mark: anything the command started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if MARK.encode() in (entry / "environ").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


MARK = f"RUNBOOK_TEST_MARK={uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusal")
    with running_lab(root / "lab") as info:
        env = cli_env(info, root)
        env.update([MARK.split("=", 1)])
        yield env


@pytest.mark.parametrize("args, message", [
    (["check", "--vm", "web-0l", "--host", "esx-02.lab.local"], "no VM named 'web-0l'; did you mean "),
    (["migrate", "--vm", "web-01", "--host", "esx-9.lab.local"], "no host named 'esx-9.lab.local'"),
])
def test_an_unknown_name_starts_no_kernel_and_loads_no_pipeline(env, args, message) -> None:
    done = subprocess.Popen([sys.executable, "-c", PROBE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started: set[int] = set()
    while done.poll() is None:  # anything the command starts while it runs
        started |= _marked() - {done.pid}
    out, err = done.communicate()
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["exit"] == 2 and message in err, err
    assert not started, f"the refusal started processes: {started}"
    loaded = set(probe["modules"])
    assert not loaded & {"papermill", "jupyter_client", "nbclient", "runbook.fronts.pipeline"}, sorted(loaded)
    assert "pandas" not in loaded, "a refusal loaded pandas (about 0.8 s of CPU)"
    assert not list(Path(env["RUNBOOK_REPORTS"]).glob("*/*")), "a refusal left a run directory"
