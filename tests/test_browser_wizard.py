"""The migration wizard's later steps in a real browser: JupyterLab and Chromium, one of each for the module.

On a lab with one of each failing prerequisite (``prereq-failures``): a datastore refused by its verdict,
a move that needs a network mapping, a per-disk placement, progress in the viewport while a slowed task
runs, and Run All of the check notebook ending quietly. Each move is asserted through the vCenter's own
answer over SOAP. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import re
import secrets
import shutil
import time
import urllib.parse

import pytest

from conftest import running_lab
from test_browser import (ARTIFACTS, CHROMIUM, LONG, REPO, _option, check_then_migrate, launch_page, open_and_run_all,
                          start_jupyterlab)

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1400, "height": 1000}
INSTRUCTION = "Pick a VM and a target above, then press Check."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with running_lab(tmp_path_factory.mktemp("lab"), "prereq-failures") as info:
        yield info


@pytest.fixture(scope="module")
def jupyterlab(lab, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """JupyterLab over the lab, its records under the project's reports/ (inside the server's root, as by
    default, so that the record's link opens in JupyterLab); that folder is removed afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    reports = REPO / "reports" / f"test-browser-wizard-{secrets.token_hex(4)}"
    request.addfinalizer(lambda: shutil.rmtree(reports, ignore_errors=True))
    return start_jupyterlab(lab, tmp_path_factory.mktemp("jupyter"), reports, request.addfinalizer)


@pytest.fixture(scope="module")
def page(jupyterlab, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """One page with migrate.ipynb run (Run All), shared by the tests in order."""
    page = launch_page(tmp_path_factory.mktemp("chromium") / "profile", request.addfinalizer, VIEWPORT)
    open_and_run_all(page, jupyterlab, "migrate.ipynb", ".rb-wizard")
    return page


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest, page):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"wizard-{request.node.name}-failed.png"), full_page=True)


def _vm_placement(lab, name: str) -> dict:
    """Where the vCenter says the VM is (host, disks with datastore and format, NICs with port group), over SOAP."""
    from conftest import lab_settings
    from pyVmomi import vim

    from runbook import connect
    from runbook.domain.placement import placement
    from conftest import objects_by_name

    with connect(lab_settings(lab)) as si:
        return placement(si, objects_by_name(si, vim.VirtualMachine)[name]._moId)


def _choose_vm(page, name: str, kind: str) -> None:
    from playwright.sync_api import expect

    page.locator(".rb-cluster select").select_option(value=_option(page, ".rb-cluster", "Cluster-A"))
    page.locator(".rb-vm-filter input").fill(name)
    # ipywidgets syncs a Select by index: pick only once the kernel's filtered list is on the page
    expect(page.locator(f".rb-vm select option:not([value^='{name} '])")).to_have_count(0, timeout=LONG)
    page.locator(".rb-vm select").select_option(value=_option(page, ".rb-vm", f"{name} ·"))
    page.locator(".rb-vm-details", has_text=name).wait_for()
    page.locator(".rb-kind button", has_text=kind).click()


def test_run_all_ends_quietly_and_a_datastore_failing_its_checks_is_refused(page, lab) -> None:
    from playwright.sync_api import expect

    page.get_by_text(INSTRUCTION).first.wait_for()
    expect(page.locator(".jp-OutputArea-output", has_text="Traceback")).to_have_count(0)
    expect(page.get_by_text("BadInput")).to_have_count(0)
    _choose_vm(page, "web-01", "Change datastore")
    full = _option(page, ".rb-datastore", "nfs-full")
    assert "✖ fails: free space on the target datastore" in full, full
    assert "0.5 GiB free" in full
    page.locator(".rb-datastore select").select_option(value=full)
    problem = page.locator(".rb-datastore-problem")
    expect(problem).to_contain_text("Remedy:")
    expect(problem).to_contain_text("short")
    assert page.locator(".rb-disk-format select").input_value() == "Same format as source"  # the default
    page.locator("button.rb-check:not([disabled])").click()  # Check runs, shows the failure and its remedy
    page.locator(".rb-checks", has_text="free space on the target datastore").wait_for()
    expect(page.locator(".rb-checks")).to_contain_text("failed")
    expect(page.locator("button.rb-migrate")).to_be_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".rb-wizard").screenshot(path=str(ARTIFACTS / "wizard-datastore-refused.png"))
    assert "nfs-full" not in {d["datastore"] for d in _vm_placement(lab, "web-01")["disks"]}


def test_a_move_that_needs_a_network_mapping(page, lab, jupyterlab) -> None:
    from playwright.sync_api import expect

    _choose_vm(page, "dmz-01", "Change host")
    target = _option(page, ".rb-host", "esx-03.lab.local")
    assert "needs a network mapping" in target, target
    page.locator(".rb-host select").select_option(value=target)
    network = page.locator(".rb-network")
    expect(network).to_be_visible()
    expect(network).to_contain_text("Network adapter 1")
    expect(page.locator("button.rb-check")).to_be_disabled()  # not before the mapping
    network.locator("select").select_option(value="VM Network")
    check_then_migrate(page)
    page.locator(".rb-wizard").screenshot(path=str(ARTIFACTS / "wizard-network-mapping.png"))
    now = _vm_placement(lab, "dmz-01")
    assert now["host"] == "esx-03.lab.local"
    assert [n["port_group"] for n in now["nics"]] == ["VM Network"], now["nics"]

    # The record as a link that opens it: JupyterLab resolves it against the notebook to its /files/ URL.
    link = page.locator(".rb-result a.rb-report-link")
    href = link.get_attribute("href")
    found = re.search(r"/files/([^?]+/report\.html)", href)
    assert found, href
    record = REPO / urllib.parse.unquote(found[1])
    assert record.is_file() and record.is_relative_to(jupyterlab["reports"]), record
    pages = len(page.context.pages)
    link.click()
    deadline = time.monotonic() + 30
    while len(page.context.pages) == pages and not page.locator(".jp-HTMLViewer").count():
        assert time.monotonic() < deadline, "clicking the record's link opened nothing"
        time.sleep(0.2)
    opened = page.context.pages[-1] if len(page.context.pages) > pages else page
    if opened is not page:
        opened.wait_for_load_state()
        assert "report.html" in opened.url
        opened.get_by_text("SUCCEEDED").first.wait_for()
        opened.screenshot(path=str(ARTIFACTS / "wizard-record-opened.png"))
        opened.close()
    else:
        page.screenshot(path=str(ARTIFACTS / "wizard-record-opened.png"))
        page.get_by_role("tab", name="migrate.ipynb").click()


def test_a_per_disk_placement(page, lab) -> None:
    from playwright.sync_api import expect

    before = {d["label"]: d for d in _vm_placement(lab, "app-01")["disks"]}
    assert before["Hard disk 2"]["datastore"] == "nfs-01" and before["Hard disk 1"]["datastore"] == "nfs-02"
    _choose_vm(page, "app-01", "Change datastore")
    page.locator(".rb-datastore select").select_option(value=_option(page, ".rb-datastore", "nfs-02"))
    page.get_by_text("Advanced: change id").click()
    page.locator(".rb-change-id input").fill("CHG-4711")
    row = page.locator(".rb-disk-row", has_text="Hard disk 2")
    expect(row).to_be_visible()
    row.locator(".rb-disk-datastore select").select_option(value=_option(row, ".rb-disk-datastore", "local-esx-01"))
    row.locator(".rb-disk-format-pick select:not([disabled])").select_option(value="Thin provision")
    page.locator(".rb-hint", has_text="Hard disk 2").wait_for()
    check_then_migrate(page)
    page.locator(".rb-wizard").screenshot(path=str(ARTIFACTS / "wizard-per-disk.png"))
    after = {d["label"]: d for d in _vm_placement(lab, "app-01")["disks"]}
    assert (after["Hard disk 2"]["datastore"], after["Hard disk 2"]["format"]) == ("local-esx-01", "thin"), after
    assert after["Hard disk 1"]["datastore"] == "nfs-02"


def test_progress_is_in_the_viewport_while_the_task_runs(page, lab) -> None:
    from playwright.sync_api import expect

    from runbook_lab import LabControl

    LabControl(lab).set_migration_seconds("web-02", 8)
    _choose_vm(page, "web-02", "Change host")
    page.locator(".rb-host select").select_option(value=_option(page, ".rb-host", "esx-03.lab.local"))
    page.locator("button.rb-check:not([disabled])").click()
    page.locator(".rb-checks").get_by_text("checks passed").wait_for()
    page.locator(".rb-checks tr").last.scroll_into_view_if_needed()  # the operator read the checks
    page.locator("button.rb-migrate:not([disabled])").click()
    state = page.locator(".rb-state")
    expect(state).to_contain_text("task", timeout=LONG)
    page.locator(".rb-probe-chart svg polyline").wait_for()
    seen = set()
    for _ in range(3):  # the task runs 8 s: look a few times while it does
        progress = page.locator(".rb-progress").bounding_box()
        assert progress is not None
        assert 0 <= progress["y"] and progress["y"] + progress["height"] <= VIEWPORT["height"], progress
        ping = page.locator(".rb-ping").bounding_box()
        assert ping is not None and ping["y"] + ping["height"] <= VIEWPORT["height"], ping
        seen.add(state.inner_text())
        time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "wizard-progress-in-viewport.png"))
    assert any(s.startswith("task ") and "%" in s for s in seen), seen
    expect(state).to_contain_text("ping tail", timeout=LONG)  # the wait after 100 % is named
    expect(state).to_have_text("SUCCEEDED", timeout=LONG)
    assert _vm_placement(lab, "web-02")["host"] == "esx-03.lab.local"


def test_run_all_of_the_check_notebook_ends_quietly(page, jupyterlab) -> None:
    from playwright.sync_api import expect

    open_and_run_all(page, jupyterlab, "check.ipynb", "text=Set vm and a target host or datastore")
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-OutputArea-output", has_text="Traceback")).to_have_count(0)
    expect(notebook.get_by_text("BadInput")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "wizard-check-notebook-run-all.png"))
