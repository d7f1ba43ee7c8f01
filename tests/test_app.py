"""`runbook app`: refusals before anything starts, the page's parts against a lab, and one move driven through the
served page in Chromium (Voila started by the command itself, as an operator would), checked through real SOAP
and in the record. Screenshots are kept in test-artifacts/.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import running_lab
from test_browser import check_then_migrate, screenshot_on_failure

REPO = Path(__file__).resolve().parent.parent
RUNBOOK = str(Path(sys.executable).with_name("runbook"))
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LONG = int(os.environ.get("BROWSER_TEST_TIMEOUT_MS", "180000"))


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVC_", "RUNBOOK_"))}
    env.update(values)
    return env


def test_no_vcenter_is_refused_in_one_line_as_every_command(tmp_path):
    env = _env(RUNBOOK_LAB_DIR=str(tmp_path / "no-lab"), RUNBOOK_REPORTS=str(tmp_path / "reports"))
    result = subprocess.run([RUNBOOK, "app", "--no-browser"], env=env, capture_output=True, text=True, timeout=120)
    inventory = subprocess.run([RUNBOOK, "inventory"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == inventory.returncode == 4, result.stderr
    assert result.stderr.strip() == inventory.stderr.strip()
    assert result.stderr.strip().startswith("runbook: error: no vCenter configured and no lab running")
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout
    assert not (tmp_path / "reports").exists()  # nothing started, nothing written


def test_a_port_in_use_is_refused_before_the_server_starts(lab, use_lab, tmp_path):
    use_lab(lab)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([RUNBOOK, "app", "--no-browser", "--port", str(port), "--reports", str(tmp_path)],
                                env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 cannot be used" in result.stderr and "--port" in result.stderr
    assert not list(tmp_path.glob("*.ipynb"))


def test_the_page_notebook_gets_the_context_as_a_parameter(tmp_path):
    import papermill

    from runbook.engine.context import RunContext, load
    from runbook.fronts.app import NOTEBOOK, write_page_notebook

    assert set(papermill.inspect_notebook(str(NOTEBOOK))) == {"run_context"}
    context = RunContext(reports_dir=tmp_path / "r", via="app").save(tmp_path / "context.json")
    nb = json.loads(write_page_notebook(tmp_path / "page.ipynb", context).read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and str(context) in "".join(injected[0]["source"])
    assert load(context).via == "app" and load(context).reports_dir == tmp_path / "r"
    assert not any(c.get("outputs") for c in nb["cells"])


def test_a_page_left_by_a_killed_app_is_removed_and_a_running_ones_kept(tmp_path):
    from runbook.fronts.app import _remove_stale_pages

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"runbook-app-{dead.pid}.ipynb").write_text("{}")
    (tmp_path / f"runbook-app-{os.getpid()}.ipynb").write_text("{}")
    _remove_stale_pages(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"runbook-app-{os.getpid()}.ipynb"]


def test_the_inventory_pages_and_filters(si):
    from runbook.fronts.app import InventoryPager
    from runbook.vsphere.inventory import read_inventory

    inventory = read_inventory(si)
    pager = InventoryPager(inventory, read=lambda: inventory, rows=5)
    assert pager.where.value == "rows 1–5 of 12" and pager.prev.disabled and not pager.next.disabled
    pager.next.click()
    assert pager.where.value == "rows 6–10 of 12" and not pager.prev.disabled
    pager.next.click()
    assert pager.where.value == "rows 11–12 of 12" and pager.next.disabled
    assert pager.out.value.count("<tr") == 1 + 2  # the header and the last two VMs
    pager.prev.click()
    assert pager.where.value == "rows 6–10 of 12"
    halves = InventoryPager(inventory, read=lambda: inventory, rows=6)  # the last page ends at the last row
    halves.next.click()
    assert halves.where.value == "rows 7–12 of 12" and halves.next.disabled
    pager.filter.value = "web-0"
    assert pager.where.value == "rows 1–3 of 3" and pager.prev.disabled and pager.next.disabled
    assert all(f">{vm}<" in pager.out.value for vm in ("web-01", "web-02", "web-03"))
    pager.filter.value = ""
    pager.table.value = "Hosts"
    assert pager.where.value == "rows 1–3 of 3" and ">esx-01.lab.local<" in pager.out.value
    pager.table.value = "Datastores"
    assert "2,048.0" in pager.out.value  # nfs-01's capacity in GiB, thousands separated


def test_the_page_tables_escape_names_and_show_no_index():
    import pandas as pd

    from runbook.fronts.app import _table_html

    page = _table_html(pd.DataFrame({"name": ["<img src=x onerror=alert(1)>"], "memory_mb": [16384]}))
    assert "<img" not in page and "&lt;img src=x" in page and "16,384" in page
    assert ">0<" not in page  # no 0..n index column


def test_the_header_names_the_vcenter_without_secrets_and_marks_the_lab():
    from runbook.fronts.app import header_html
    from runbook.vsphere.connection import Settings

    lab = Settings(host="127.0.0.1", port=8989, scheme="http", username="administrator@vsphere.local",
                   password="S3cret-Lab-Pw-1", source="the lab vCenter (scenario default; no GOVC_URL set)")
    prod = Settings(host="vc.example.com", port=443, username="svc", password="S3cret-Prod-Pw-2")
    shown = header_html(lab, "index.html")
    assert "http://127.0.0.1:8989/sdk" in shown and "rb-lab-badge" in shown and "S3cret" not in shown
    shown = header_html(prod, "index.html")
    assert "https://vc.example.com/sdk" in shown and "rb-lab-badge" not in shown and "S3cret" not in shown


# -- the app in a browser -----------------------------------------------------------------------------
def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Voila's kernels run in sessions of their own, but are still its children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def app(tmp_path: Path, request: pytest.FixtureRequest):
    """A lab (the embedded default: no GOVC_URL, as on an operator's machine) and `runbook app` serving it."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    state = tmp_path / "lab"
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    info = stack.enter_context(running_lab(state))
    reports = tmp_path / "reports"
    env = _env(RUNBOOK_LAB_DIR=str(state), MPLBACKEND="Agg", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    started = time.monotonic()
    proc = subprocess.Popen([RUNBOOK, "app", "--no-browser", "--reports", str(reports)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop() -> None:  # after a failed step too: the app's own stop, so that no server or kernel is left
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)

    request.addfinalizer(stop)
    line = proc.stdout.readline()
    assert "serving at http://127.0.0.1:" in line, (line, proc.poll(), proc.stderr.read() if proc.poll() else "")
    return {"proc": proc, "url": line.split("serving at ")[1].split()[0], "line": line, "info": info,
            "reports": reports, "start_s": time.monotonic() - started}


@pytest.fixture
def page(tmp_path: Path, request: pytest.FixtureRequest):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    request.addfinalizer(pw.stop)
    context = pw.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1400})
    request.addfinalizer(context.close)
    context.set_default_timeout(LONG)
    page = context.pages[0] if context.pages else context.new_page()
    screenshot_on_failure(request, page, "app-failed.png")
    return page


def _option(page, css: str, starts: str) -> str:
    option = page.locator(f"{css} select option[value^='{starts}']").first
    option.wait_for(state="attached")
    return option.get_attribute("value")


@pytest.mark.browser
def test_one_move_through_the_app(app, page) -> None:
    from playwright.sync_api import expect

    from runbook import connect
    from runbook.domain.placement import placement
    from runbook_lab import LabControl
    from conftest import lab_settings

    page.goto(app["url"])
    page.locator(".rb-app").wait_for()
    header = page.locator(".rb-app-header")
    assert app["info"].url in header.inner_text() and page.locator(".rb-lab-badge").is_visible()
    assert app["info"].password not in page.content()
    # a web app, not a notebook: no code cell, no input area, no source on the page
    expect(page.locator(".jp-InputArea, .jp-Cell-inputWrapper, .jp-InputPrompt, .cm-editor, .CodeMirror")
           ).to_have_count(0)
    assert "app.page(" not in page.content() and "import" not in page.locator("body").inner_text()

    # Move: VM and host in the wizard, Check, Migrate
    cluster = page.locator(".rb-cluster select")
    if not cluster.input_value():
        cluster.select_option(value=_option(page, ".rb-cluster", "Cluster-A"))
    page.locator(".rb-vm-filter input").fill("web-01")
    expect(page.locator(".rb-vm select option:not([value^='web-01 '])")).to_have_count(0, timeout=LONG)
    page.locator(".rb-vm select").select_option(value=_option(page, ".rb-vm", "web-01 ·"))
    page.locator(".rb-vm-details", has_text="web-01").wait_for()
    page.locator(".rb-kind button", has_text="Change host").click()
    page.locator(".rb-host select").select_option(value=_option(page, ".rb-host", "esx-03.lab.local"))
    outcome = check_then_migrate(page)
    assert "SUCCEEDED" in outcome.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-move.png"), full_page=True)

    # the vCenter says the VM runs on the new host (real SOAP, the runbook's own reader and the lab's)
    with connect(lab_settings(app["info"])) as si:
        vm = LabControl(app["info"]).placement("web-01")["vm"]
        assert placement(si, vm)["host"] == "esx-03.lab.local"
    # the record: one, via the app, in the reports directory the command was given
    records = list(app["reports"].glob("*/*/record.json"))
    assert len(records) == 1, records
    data = json.loads(records[0].read_text())
    assert data["via"] == "app" and data["outcome"] == "SUCCEEDED" and data["parameters"]["vm"] == "web-01"
    # the record's link and the index link open, served by the app itself
    for link, expected in ((".rb-report-link", "SUCCEEDED"), (".rb-reports-link", records[0].parent.name)):
        href = page.locator(link).get_attribute("href")
        answer = page.request.get(urllib.parse.urljoin(app["url"], href))  # the browser's session
        assert answer.ok and answer.headers["content-type"].startswith("text/html"), (href, answer.status)
        assert expected in answer.text(), href

    # Inventory: the tables, paged; the move shows once read again
    page.get_by_role("tab", name="Inventory").click()
    page.locator(".rb-inv-where", has_text="of 12").wait_for()
    page.locator(".rb-inv-filter input").fill("web-01")
    page.locator(".rb-inv-where", has_text="rows 1–1 of 1").wait_for()
    expect(page.locator(".rb-inv-rows", has_text="esx-03.lab.local")).to_have_count(0)  # read before the move
    page.locator(".rb-inv-refresh").click()
    page.locator(".rb-inv-rows", has_text="esx-03.lab.local").wait_for()
    page.screenshot(path=str(ARTIFACTS / "app-inventory.png"), full_page=True)

    # SIGTERM stops the server and its kernels; the page's notebook is gone from the reports directory
    proc = app["proc"]
    below = _descendants(proc.pid)
    assert below, "no Voila process under runbook app"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in below if _alive(pid)], "a Voila or kernel process outlived runbook app"
    assert not list(app["reports"].glob("*.ipynb"))


@pytest.mark.browser
def test_sigterm_during_a_move_cancels_it_and_finishes_its_record(app, page) -> None:
    """Stopping the app while a move runs is the Cancel button's: the task is cancelled, the record says so."""
    from playwright.sync_api import expect
    from runbook_lab import LabControl

    control = LabControl(app["info"])
    control.set_migration_seconds("web-02", 60)
    page.goto(app["url"])
    page.locator(".rb-app").wait_for()
    page.locator(".rb-vm-filter input").fill("web-02")
    expect(page.locator(".rb-vm select option:not([value^='web-02 '])")).to_have_count(0, timeout=LONG)
    page.locator(".rb-vm select").select_option(value=_option(page, ".rb-vm", "web-02 ·"))
    page.locator(".rb-kind button", has_text="Change host").click()
    page.locator(".rb-host select").select_option(value=_option(page, ".rb-host", "esx-03.lab.local"))
    page.locator("button.rb-check:not([disabled])").click()
    page.locator(".rb-checks").get_by_text("checks passed").wait_for()
    page.locator("button.rb-migrate:not([disabled])").click()
    page.locator(".rb-state", has_text="task").wait_for()
    proc = app["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read()
    records = [json.loads(p.read_text()) for p in app["reports"].glob("*/*/record.json")]
    assert [(r["outcome"], r["via"]) for r in records] == [("CANCELLED", "app")], records
    assert records[0]["task"]["id"] and "cancel" in records[0]["summary"]
    assert control.placement("web-02")["host"] == "esx-02.lab.local"  # the VM stayed where it was
