"""The wave notebook's widgets in a real browser: JupyterLab started here, Chromium driven by Playwright.

Opens notebooks/wave.ipynb, runs it, chooses "Evacuate a host" for esx-01 of the default lab, previews the plan
table (one row per VM with its verdict), gives one row another target, runs the wave and watches the live
table until every VM is moved; then asks the lab through real SOAP (pyvmomi) that the host is empty and the
edited row went where the operator said. Screenshots are kept in test-artifacts/.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_browser import ARTIFACTS, LONG, REPO, launch_page, open_and_run_all, screenshot_on_failure, start_jupyterlab

pytestmark = pytest.mark.browser

NOTEBOOK = REPO / "notebooks" / "wave.ipynb"
HOST = "esx-01.lab.local"
ON_HOST = {"app-01", "db-01", "iso-01", "web-01"}  # the default lab


@pytest.fixture
def jupyterlab(fresh_lab, tmp_path: Path, request: pytest.FixtureRequest):
    info = fresh_lab("default")
    before = NOTEBOOK.read_bytes()

    def unchanged() -> None:  # the committed notebook never gets outputs
        if NOTEBOOK.read_bytes() != before:
            NOTEBOOK.write_bytes(before)
            pytest.fail("the test run changed notebooks/wave.ipynb (restored)")

    request.addfinalizer(unchanged)
    return start_jupyterlab(info, tmp_path / "jupyter", tmp_path / "reports", request.addfinalizer)


@pytest.fixture
def page(tmp_path: Path, request: pytest.FixtureRequest):
    page = launch_page(tmp_path / "chromium-profile", request.addfinalizer)
    screenshot_on_failure(request, page, "browser-wave-failed.png")
    return page


def _vms_on(host: str) -> dict[str, str]:
    """Every VM's host as the vCenter reports it, through pyvmomi; only those on ``host``."""
    from pyVmomi import vim

    from runbook import connect, settings_from_env

    with connect(settings_from_env()) as si:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        try:
            where = {vm.name: vm.runtime.host.name for vm in view.view}
        finally:
            view.DestroyView()
    return {vm: h for vm, h in where.items() if h == host} if host else where


def test_preview_edit_and_run_an_evacuation_in_jupyterlab(jupyterlab, page) -> None:
    from playwright.sync_api import expect

    lab = jupyterlab
    assert set(_vms_on(HOST)) == ON_HOST
    panel = open_and_run_all(page, lab, "wave.ipynb", ".runbook-wave")
    page.get_by_text("Choose a wave above and press Preview; then Run.").first.wait_for()
    expect(page.locator(".jp-OutputArea-output", has_text="Traceback")).to_have_count(0)

    page.locator(".runbook-wave-host input").fill(HOST)
    page.locator("button.runbook-wave-preview").click()
    rows = page.locator(".runbook-wave-row")
    expect(rows).to_have_count(len(ON_HOST), timeout=LONG)
    for vm in ON_HOST:
        expect(rows.filter(has_text=vm)).to_have_count(1)
    expect(rows.filter(has_text="PASS")).to_have_count(len(ON_HOST))  # the verdict of each row's checks
    # the operator sends web-01 elsewhere than planned
    web = rows.filter(has_text="web-01")
    planned = web.locator("select").input_value()
    other = "esx-03.lab.local" if planned == "esx-02.lab.local" else "esx-02.lab.local"
    web.locator("select").select_option(value=other)
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "browser-wave-preview.png"))

    page.locator("button.runbook-wave-run:not([disabled])").click()
    outcome = page.locator(".runbook-wave-outcome")
    outcome.wait_for(timeout=LONG)
    assert outcome.inner_text() == "SUCCEEDED", page.locator(".runbook-wave-message").inner_text()
    live = page.locator(".runbook-wave-live tr[data-vm]")
    expect(live).to_have_count(len(ON_HOST))
    for vm in ON_HOST:  # the live table: moved, its progress at 100 %, its outage measured
        line = page.locator(f".runbook-wave-live tr[data-vm='{vm}']")
        expect(line.locator(".state")).to_have_text("moved")
        expect(line).to_contain_text("100 %")
        expect(line.locator(".outage")).to_contain_text("ms")
    panel.screenshot(path=str(ARTIFACTS / "browser-wave.png"))

    assert _vms_on(HOST) == {}  # the host is empty, as the vCenter says
    assert _vms_on("")["web-01"] == other  # the edited row went where the operator said
    records = [p for p in lab["reports"].glob("*/*/record.json")]
    assert len(records) == 1, records  # the preview wrote no record; the run one (its moves' own under it)
    data = json.loads(records[0].read_text())
    assert (data["kind"], data["outcome"], data["wave"]["kind"]) == ("wave", "SUCCEEDED", "plan")
    assert data["wave"]["plan_file"].endswith("-edited.yaml") and Path(data["wave"]["plan_file"]).is_file()
    assert {m["vm"]: m["status"] for m in data["moves"]} == {vm: "moved" for vm in ON_HOST}
