"""Fixtures: real lab vCenters (the project's simulator, over real SOAP) and a temporary reports folder.

``lab`` is one default-scenario lab shared by the tests that only read it; tests that change the lab
take ``fresh_lab`` (a throw-away lab of their own, any scenario) so that they never disturb each other.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import runbook_lab as lab_mod

GOVC_VARS = ("GOVC_URL", "GOVC_USERNAME", "GOVC_PASSWORD", "GOVC_INSECURE", "GOVC_TLS_CA_CERTS",
             "RUNBOOK_PASSWORD_FILE", "RUNBOOK_LAB_DIR", "RUNBOOK_REPORTS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's vCenter settings or lab, nor writes to the project's reports/."""
    for name in GOVC_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNBOOK_LAB_DIR", str(tmp_path / "no-lab"))
    monkeypatch.setenv("RUNBOOK_REPORTS", str(tmp_path / "reports"))


def lab_env(info: lab_mod.LabInfo) -> dict[str, str]:
    """govc's variables for a lab, as a user would export them."""
    env = {"GOVC_URL": info.url, "GOVC_USERNAME": info.username, "GOVC_PASSWORD": info.password}
    if info.ca_file:
        env["GOVC_TLS_CA_CERTS"] = str(info.ca_file)
    return env


def cli_env(info: lab_mod.LabInfo, root: Path) -> dict[str, str]:
    """The environment of a `runbook` command against a lab: this process's, with the lab's govc variables
    instead of any others, records under ``root/reports``, and no embedded lab to fall back on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVC_")}
    env.update(lab_env(info), RUNBOOK_REPORTS=str(root / "reports"), RUNBOOK_LAB_DIR=str(root / "none"))
    return env


@contextlib.contextmanager
def running_lab(tmp: Path, scenario: str = "default", **kwargs) -> Iterator[lab_mod.LabInfo]:
    info = lab_mod.start(scenario, state_dir=tmp, **kwargs)
    try:
        yield info
    finally:
        lab_mod.stop(tmp)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_mod.LabInfo]:
    """A default-scenario lab for tests that do not change it."""
    with running_lab(tmp_path_factory.mktemp("lab")) as info:
        yield info


@pytest.fixture
def use_lab(monkeypatch: pytest.MonkeyPatch):
    """Point govc's variables (and so the runbook and its kernels) at a lab."""
    def use(info: lab_mod.LabInfo) -> lab_mod.LabInfo:
        for key, value in lab_env(info).items():
            monkeypatch.setenv(key, value)
        return info
    return use


@pytest.fixture
def fresh_lab(tmp_path: Path, use_lab) -> Iterator:
    """A factory of throw-away labs: ``info = fresh_lab("prereq-failures")``; all stopped after the test."""
    stack = contextlib.ExitStack()

    def make(scenario: str = "default", **kwargs) -> lab_mod.LabInfo:
        state = tmp_path / f"lab-{len(stack._exit_callbacks)}"
        return use_lab(stack.enter_context(running_lab(state, scenario, **kwargs)))

    with stack:
        yield make


@pytest.fixture
def si(lab, use_lab):
    """A logged-in session to the shared lab (logged out after the test)."""
    from runbook import connect

    use_lab(lab)
    with connect() as service_instance:
        yield service_instance


def lab_settings(info: lab_mod.LabInfo, port: int | None = None):
    """Connection settings for a lab (``port``: reach it through a proxy of the test's own)."""
    from runbook.vsphere.connection import Settings

    return Settings(host=info.host, port=port or info.port, scheme="http", username=info.username,
                    password=info.password)


class BackgroundMove:
    """A ``runbook.migrate()`` running in a thread of its own, with every event it emitted so far."""

    def __init__(self, request, settings, context, cancel=None):
        import threading

        self.events: list = []
        self.cancel = cancel or threading.Event()
        self.result = None
        self.error: BaseException | None = None
        self._task_started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(request, settings, context), daemon=True)

    def _sink(self, event) -> None:
        self.events.append(event)
        if getattr(event, "name", None) == "task" and getattr(event, "state", None) == "started":
            self._task_started.set()

    def _run(self, request, settings, context) -> None:
        import runbook

        try:
            self.result = runbook.migrate(request, settings=settings, context=context, on_event=self._sink,
                                          cancel=self.cancel)
        except BaseException as exc:  # migrate() must not raise once the record exists: the test says so
            self.error = exc
        finally:
            self._task_started.set()  # never leave a waiter hanging on a run that ended early

    @property
    def run_dir(self) -> Path | None:
        started = [e for e in self.events if type(e).__name__ == "RunStarted"]
        return Path(started[0].run_dir) if started and started[0].run_dir else None

    @property
    def task_id(self) -> str | None:
        """The vCenter task the run started, as its record on disk names it."""
        import json

        if self.run_dir is None or not (self.run_dir / "record.json").exists():
            return None
        return (json.loads((self.run_dir / "record.json").read_text()).get("task") or {}).get("id")

    def join(self, timeout: float = 60):
        """Wait for the run to end; its RunResult (the test fails if it raised or did not end)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"migrate() did not return within {timeout} s"
        assert self.error is None, f"migrate() raised after the record existed: {self.error!r}"
        return self.result


def start_in_background(request, settings, context, cancel=None, timeout: float = 30) -> BackgroundMove:
    """Start ``runbook.migrate(request)`` in a thread; return once its vCenter task exists (named in the
    run's record on disk)."""
    move = BackgroundMove(request, settings, context, cancel)
    move.thread.start()
    move._task_started.wait(timeout)
    assert move.error is None, f"migrate() raised: {move.error!r}"
    assert move.task_id, f"the move did not start a task: {move.result and move.result.summary}"
    return move


def objects_by_name(si, kind: type) -> dict:
    """Every managed object of ``kind`` in the vCenter, by name (through a ContainerView, destroyed after)."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return {o.name: o for o in view.view}
    finally:
        view.Destroy()
