"""The migration notebook's widgets in a real browser: JupyterLab started here, Chromium driven by Playwright.

Opens notebooks/migrate.ipynb, runs it, picks a VM, a target host, a target datastore and a disk format
in the chooser, presses Check then Migrate, and checks the page (outcome and ping figures), the lab's own
view of the VM and the change record. A screenshot of the final page is kept in test-artifacts/.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import lab_env

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "migrate.ipynb"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LONG = int(os.environ.get("BROWSER_TEST_TIMEOUT_MS", "180000"))  # ms: a kernel start, an inventory read or a move in a loaded CI box
# JupyterLab settings for the test user: no autosave (the repo's notebook must stay without outputs),
# no news or update toasts over the page, every cell rendered (no windowing).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                   "autoStartDefaultKernel": True},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer at {url} in {timeout:g} s:\n{log.read_text()[-3000:]}")


def start_jupyterlab(info, home: Path, reports: Path, stop_at_end) -> dict:
    """JupyterLab on a free port whose kernels talk to the lab ``info`` and write reports to ``reports``;
    ``stop_at_end(fn)`` registers its stop (which also fails the test if the notebooks got outputs)."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    token, port = secrets.token_hex(16), _free_port()
    settings_dir = home / "settings"
    for name, values in LAB_SETTINGS.items():
        plugin, _, file = name.rpartition("/")
        (settings_dir / plugin).mkdir(parents=True, exist_ok=True)
        (settings_dir / plugin / file).write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVC_", "RUNBOOK_", "JUPYTER"))}
    env.update(lab_env(info), RUNBOOK_REPORTS=str(reports), JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               IPYTHONDIR=str(home / "ipython"), MPLBACKEND="Agg")
    log = home / "jupyterlab.log"
    notebooks = {p: p.read_bytes() for p in (NOTEBOOK, NOTEBOOK.with_name("check.ipynb"))}  # the ones opened
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}", "--ServerApp.port_retries=0",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        changed = [p.name for p, before in notebooks.items() if p.read_bytes() != before]
        for p in notebooks:  # never leave outputs in the committed notebooks
            if p.read_bytes() != notebooks[p]:
                p.write_bytes(notebooks[p])
        if changed:
            pytest.fail(f"the test run changed {', '.join(changed)} (restored)")

    stop_at_end(stop)
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/api/status?token={token}", proc, log)
    return {"base": base, "token": token, "info": info, "reports": reports, "log": log}


@pytest.fixture
def jupyterlab(fresh_lab, tmp_path: Path, request: pytest.FixtureRequest):
    """A lab, and JupyterLab on a free port whose kernels talk to it and write reports to a tmp dir."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    info = fresh_lab("default")
    return start_jupyterlab(info, tmp_path / "jupyter", tmp_path / "reports", request.addfinalizer)


def launch_page(profile: Path, stop_at_end, viewport: dict | None = None):
    """Debian's Chromium driven by Playwright, with a fresh profile; its first page."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    stop_at_end(pw.stop)
    context = pw.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport=viewport or {"width": 1400, "height": 1600})
    stop_at_end(context.close)
    context.set_default_timeout(LONG)
    return context.pages[0] if context.pages else context.new_page()


@pytest.fixture
def page(tmp_path: Path, request: pytest.FixtureRequest):
    page = launch_page(tmp_path / "chromium-profile", request.addfinalizer)
    screenshot_on_failure(request, page, "browser-migrate-failed.png")
    return page


def screenshot_on_failure(request: pytest.FixtureRequest, page, name: str) -> None:
    """Keep what the page showed when a step of the test failed, as test-artifacts/NAME (the finalizer runs
    before the browser's, registered earlier, closes the page)."""
    failed_before = request.session.testsfailed

    def on_failure() -> None:
        if request.session.testsfailed > failed_before:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / name), full_page=True)

    request.addfinalizer(on_failure)


def _wait_kernel_ready(lab: dict, timeout: float = 120) -> None:
    """Until the notebook's kernel is up, idle and connected to the page (a Run All sent earlier can be lost)."""
    deadline = time.monotonic() + timeout
    kernels: list = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{lab['base']}/api/kernels?token={lab['token']}", timeout=10) as r:
                kernels = json.loads(r.read())
        except OSError:  # HTTPError too: the server may answer 500 while a kernel is starting
            kernels = []
        if any(k["execution_state"] == "idle" and k.get("connections", 0) >= 1 for k in kernels):
            return
        time.sleep(0.5)
    raise AssertionError(f"no idle kernel connected to the page in {timeout:g} s: {kernels}")


def open_and_run_all(page, lab: dict, notebook: str, wait_css: str):
    """Open ``notebooks/<notebook>`` in JupyterLab, Run All, and wait for ``wait_css`` to show."""
    page.goto(f"{lab['base']}/lab/tree/notebooks/{notebook}?token={lab['token']}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook .jp-Cell").nth(3).wait_for()
    _wait_kernel_ready(lab)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(state="attached")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    select_kernel = page.locator(".jp-Dialog button.jp-mod-accept", has_text="Select")
    target = page.locator(wait_css).first
    target.or_(select_kernel).first.wait_for()
    if select_kernel.is_visible():  # in case the setting that starts the default kernel is not honoured
        select_kernel.click()
    target.wait_for(state="visible")
    return page.locator(wait_css)


def _option(page, css: str, starts: str) -> str:
    """The value of the first option of the <select> at ``css`` whose label starts with ``starts`` (waits for it).

    ipywidgets shows labels with non-breaking spaces; the value attribute keeps the label as given.
    """
    option = page.locator(f"{css} select option[value^='{starts}']").first
    option.wait_for(state="attached")
    return option.get_attribute("value")


def check_then_migrate(page):
    """Check, wait for the checks to pass, Migrate, wait for SUCCEEDED: the outcome's locator."""
    page.locator("button.rb-check:not([disabled])").click()
    page.locator(".rb-checks").get_by_text("checks passed").wait_for()
    page.locator("button.rb-migrate:not([disabled])").click()
    outcome = page.locator(".rb-result .rb-outcome")
    outcome.wait_for()
    page.locator(".rb-state", has_text="SUCCEEDED").wait_for()
    return outcome


def test_choose_check_and_migrate_in_jupyterlab(jupyterlab, page) -> None:
    from playwright.sync_api import expect

    from runbook import connect, settings_from_env
    from runbook_lab import LabControl
    from runbook.domain.placement import placement

    lab = jupyterlab
    wizard = open_and_run_all(page, lab, "migrate.ipynb", ".rb-wizard")
    page.get_by_text("Pick a VM and a target above, then press Check.").first.wait_for()
    # Run All stopped under the chooser quietly: one line, no error box, no traceback
    expect(page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")).to_have_count(0)
    expect(page.locator(".jp-OutputArea-output", has_text="Traceback")).to_have_count(0)
    expect(page.get_by_text("BadInput")).to_have_count(0)

    page.locator(".rb-cluster select").select_option(value=_option(page, ".rb-cluster", "Cluster-A"))
    page.locator(".rb-vm-filter input").fill("web-01")
    # ipywidgets syncs a Select by index: pick only once the kernel's filtered list is on the page
    expect(page.locator(".rb-vm select option:not([value^='web-01 '])")).to_have_count(0, timeout=LONG)
    vm_label = _option(page, ".rb-vm", "web-01 ·")
    source_host = vm_label.split(" · ")[2]
    page.locator(".rb-vm select").select_option(value=vm_label)
    page.locator(".rb-vm-details", has_text="web-01").wait_for()
    page.locator(".rb-kind button", has_text="Change both").click()
    target = "esx-03.lab.local" if source_host != "esx-03.lab.local" else "esx-02.lab.local"
    page.locator(".rb-host select").select_option(value=_option(page, ".rb-host", target))
    page.locator(".rb-datastore select").select_option(value=_option(page, ".rb-datastore", "nfs-02"))
    page.locator(".rb-disk-format select").select_option(value="Thin provision")

    outcome = check_then_migrate(page)
    page.locator(".rb-result", has_text="Change record").wait_for()
    outcome.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-migrate.png"))
    wizard.screenshot(path=str(ARTIFACTS / "browser-migrate-wizard.png"))
    text = outcome.inner_text()
    assert "SUCCEEDED" in text, text
    assert "Probes lost" in text and " of " in text, text
    assert "probes" in page.locator(".rb-ping").inner_text()

    where = LabControl(lab["info"]).placement("web-01")
    assert where["host"] == target
    assert len(where["datastores"]) == 1, where  # the lab names datastores by moid (datastore-NN): names below
    with connect(settings_from_env()) as si:
        now = placement(si, where["vm"])
    assert {d["datastore"] for d in now["disks"]} == {"nfs-02"}
    assert {d["format"] for d in now["disks"]} == {"thin"}

    records = list(lab["reports"].glob("*/*/record.json"))
    assert len(records) == 1, records
    data = json.loads(records[0].read_text())
    assert data["outcome"] == "SUCCEEDED" and data["parameters"]["vm"] == "web-01"
    assert data["parameters"]["target_host"] == target and data["parameters"]["disk_format"] == "thin"
    assert (records[0].parent / "report.html").read_text().count("SUCCEEDED") >= 1
    shutil.copy(records[0].parent / "report.html", ARTIFACTS / "browser-migrate-report.html")

    # A second VM chosen after the move shows nothing of the first one's run: no banner, no progress.
    page.locator(".rb-vm-filter input").fill("web-02")
    expect(page.locator(".rb-vm select option:not([value^='web-02 '])")).to_have_count(0, timeout=LONG)
    page.locator(".rb-vm select").select_option(value=_option(page, ".rb-vm", "web-02 ·"))
    page.locator(".rb-vm-details", has_text="web-02").wait_for()
    expect(page.locator(".rb-result .rb-outcome")).to_have_count(0)
    expect(page.locator(".rb-state")).to_be_hidden()
    expect(page.locator(".rb-checks", has_text="SUCCEEDED")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "browser-second-vm.png"))
