"""Every kind of change record, as people read it: one layout, no papermill text, no empty heading, the outcome
word of its kind, and an index that sorts and filters offline (issue 19).

The records come from real runs on one lab (module-scoped): through the engine, as Python and the widgets run
it (a move that succeeded, a passed check, failed checks, a failed task, a cancelled move, enable-vmotion, a
wave), and through the headless pipeline, as the command line runs it (an inventory and a refused move).
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import runbook
import runbook_lab as lab_mod
from conftest import lab_env, lab_settings, running_lab, start_in_background
from runbook.domain.placement import vm_lock
from runbook.engine.context import RunContext
from runbook.records import record, report

ESX1, ESX2, ESX3 = "esx-01.lab.local", "esx-02.lab.local", "esx-03.lab.local"
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One run of each kind and outcome on one lab; the run directories by case name."""
    tmp = tmp_path_factory.mktemp("pages")
    reports = tmp / "reports"
    context = RunContext(reports_dir=reports)
    found: dict[str, Path] = {}
    with running_lab(tmp / "lab") as info, pytest.MonkeyPatch.context() as mp:
        for key, value in {**lab_env(info), "RUNBOOK_LAB_DIR": str(tmp / "lab"),  # the lab is known: records say so
                           "RUNBOOK_REPORTS": str(reports)}.items():
            mp.setenv(key, value)
        settings, control = lab_settings(info), lab_mod.LabControl(info)

        def move(**fields) -> runbook.MoveRequest:
            return runbook.MoveRequest(**{"ping_tcp_port": 9, "ping_tail": 0.3, **fields})

        found["move succeeded"] = runbook.migrate(move(vm="web-01", target_host=ESX2, change_id="CHG-19"),
                                                  settings=settings, context=context).run_dir
        found["check passed"] = runbook.check(runbook.CheckRequest(vm="web-02", target_host=ESX3),
                                              settings=settings, context=context).run_dir
        # db-02's disks are on esx-02's local datastore: a host-only move to esx-01 fails "shared storage"
        found["checks failed"] = runbook.check(runbook.CheckRequest(vm="db-02", target_host=ESX1),
                                               settings=settings, context=context).run_dir
        control.inject_fault("app-02", "GenericVmConfigFault", "disk lock lost")
        found["task failed"] = runbook.migrate(move(vm="app-02", target_host=ESX1, ping="none"),
                                               settings=settings, context=context).run_dir
        control.set_migration_seconds("util-01", 10)
        background = start_in_background(move(vm="util-01", target_host=ESX1, ping="none"), settings, context)
        time.sleep(0.5)
        background.cancel.set()
        found["cancelled"] = background.join(60).run_dir
        found["enable-vmotion"] = runbook.enable_vmotion(runbook.EnableVmotionRequest(hosts=[ESX3]),
                                                         settings=settings, context=context).run_dir
        found["wave"] = runbook.wave(runbook.EvacuateRequest(host=ESX1, ping_tcp_port=9, ping_tail=0.3),
                                     settings=settings, context=context).run_dir
        inventory = runbook.inventory(runbook.InventoryRequest(), settings=settings, context=context)
        from runbook.records import inventory_tables

        inventory_tables.save(inventory.inventory, inventory.run_dir)  # what the engine is to do before finishing
        report.write_html(inventory.run_dir)
        python_inventory = inventory.run_dir
        from runbook.fronts import pipeline

        found["inventory"] = pipeline.run_notebook(runbook.InventoryRequest(), context=context).run_dir
        vm = control.placement("web-03")
        with vm_lock(settings.url, vm.get("moid") or _moid(settings, "web-03")):
            refused = pipeline.run_notebook(move(vm="web-03", target_host=ESX1), context=context)
        found["refused"] = refused.run_dir
    yield {"reports": reports, "dirs": found, "python inventory": python_inventory}


def _moid(settings, name: str) -> str:
    from runbook.vsphere.connection import login, logout

    si = login(settings)
    try:
        return next(v._moId for v in si.content.rootFolder.childEntity[0].vmFolder.childEntity if v.name == name)
    finally:
        logout(si)


EXPECTED = {"move succeeded": ("SUCCEEDED", "SUCCEEDED"), "check passed": ("SUCCEEDED", "PASSED"),
            "checks failed": ("CHECKS FAILED", "FAILED"), "task failed": ("FAILED", "FAILED"),
            "cancelled": ("CANCELLED", "CANCELLED"), "enable-vmotion": ("DRY RUN", "DRY RUN"),
            "wave": ("SUCCEEDED", "SUCCEEDED"), "inventory": ("SUCCEEDED", "SUCCEEDED"),
            "refused": ("REFUSED", "REFUSED")}


def _empty_headings(page: str) -> list[str]:
    """Headings with nothing after them before the next heading of the same or a higher level, or the end
    of their section."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser")
    empty = []
    for heading in soup.find_all(re.compile(r"^h[1-6]$")):
        level, content = int(heading.name[1]), False
        for sibling in heading.find_next_siblings():
            if re.fullmatch(r"h[1-6]", sibling.name) and int(sibling.name[1]) <= level:
                break
            if sibling.get_text(strip=True) or sibling.find(["img", "table"]) or sibling.name in ("img", "table"):
                content = True
                break
        if not content:
            empty.append(heading.get_text(strip=True))
    return empty


def test_every_kind_and_outcome_reads_the_same_way(pages: dict) -> None:
    assert set(pages["dirs"]) == set(EXPECTED)
    for case, run_dir in pages["dirs"].items():
        assert run_dir is not None, case
        data = record.load(run_dir)
        outcome, word = EXPECTED[case]
        assert data["outcome"] == outcome, (case, data["summary"])
        assert data["lab"] is True, case
        page = (run_dir / "report.html").read_text()
        assert "papermill" not in page.lower(), case
        assert not _empty_headings(page), (case, _empty_headings(page))
        assert "Interactive:" not in page and "leave vm empty" not in page.lower(), case
        assert "Exception was encountered" not in page and "Traceback" not in page, case
        assert re.search(rf'<div class="rb-banner [^"]*" id="outcome-banner">\s*<h1>{word}</h1>', page), case
        assert ">LAB</span>" in page, case
        assert report.external_references(page) == [] and "<script" not in page.lower(), case
        errors = re.findall(r'<p class="rb-error">(.*?)</p>', page)
        if data.get("error"):  # one line in the banner, one section with the details
            assert len(errors) == 1 and page.count("<h2>What went wrong</h2>") == 1, case
        else:
            assert not errors and "What went wrong" not in page, case


def test_a_move_shows_devices_as_an_admin_knows_them_and_its_probes(pages: dict) -> None:
    page = (pages["dirs"]["move succeeded"] / "report.html").read_text()
    assert re.search(r"<td[^>]*>Hard disk 1 \([^)<]+\)</td>", page)  # the label and which disk it is
    assert 'alt="Chart: Ping through the move"' in page and (pages["dirs"]["move succeeded"] / "ping.png").is_file()
    assert "<th scope=\"col\">longest outage (ms)</th>" in page  # units in the headers


def test_the_inventory_tables_are_styled_and_scroll(pages: dict) -> None:
    page = (pages["dirs"]["inventory"] / "report.html").read_text()
    assert 'alt="Chart: Hosts"' in page and 'alt="Chart: Datastores"' in page
    vms = page[page.index('id="Virtual-machines"'):]
    vms = vms[:vms.index("</section>")]
    assert '<div class="rb-scroll"><table class="rb-table rb-wide">' in vms  # wide: it scrolls inside its section
    assert "<th scope=\"col\">memory (MiB)</th>" in vms and "<th>0</th>" not in vms  # units, no 0..n index
    assert re.search(r'<td class="rb-num">\d{1,3}(,\d{3})+</td>', vms)  # thousands separators (memory in MiB)
    assert re.search(r'<td class="rb-name">esx-0\d\.lab\.local</td>', vms)  # names kept on one line
    assert '<a href="./run.ipynb">run.ipynb</a>: the notebook that ran' in page
    assert '<a href="./vms.csv">vms.csv</a>' in page


def test_an_inventory_reads_the_same_whatever_ran_it(pages: dict) -> None:
    """The headless inventory (its notebook wrote the tables) and one run from Python (inventory_tables.save):
    the same sections, the same table headers, the same charts."""
    def outline(run_dir: Path) -> list:
        page = (run_dir / "report.html").read_text()
        return re.findall(r"<h2>(.*?)</h2>|<th scope=\"col\">(.*?)</th>|alt=\"(Chart: [^\"]*)\"", page)

    assert outline(pages["python inventory"]) == outline(pages["dirs"]["inventory"])
    assert ("Virtual machines", "", "") in outline(pages["python inventory"])


def test_a_wave_shows_its_plan_outcome_per_vm_timeline_and_outages(pages: dict) -> None:
    run_dir = pages["dirs"]["wave"]
    data = record.load(run_dir)
    page = (run_dir / "report.html").read_text()
    for title in ("Plan", "Outcome per VM", "Timeline", "Outage per VM", "Concurrency against the limits"):
        assert f"<h2>{title}</h2>" in page, title
    assert 'alt="Chart: Timeline of the moves"' in page and 'alt="Chart: Outage per VM"' in page
    for move in data["moves"]:
        link = Path(move["record"]).parent / "report.html"
        assert f'<a href="{link.as_posix()}">own record</a>' in page, move["vm"]
        child = (run_dir / link).read_text()  # each VM's own page exists and reads like any move
        assert "papermill" not in child.lower() and not _empty_headings(child)
        assert re.search(rf"<td[^>]*>{re.escape(move['vm'])}</td>", page)
    assert "<th scope=\"col\">longest outage (ms)</th>" in page and "Wall time" in page


def test_the_index_lists_every_run_with_its_word_vcenter_and_lab_badge(pages: dict) -> None:
    index = (pages["reports"] / "index.html").read_text()
    listed = len(EXPECTED) + 1  # and the inventory run from Python
    assert index.count("<tr><td>") == listed
    runs = report.list_runs(pages["reports"])
    assert sorted(runs["outcome_word"]) == sorted([word for _, word in EXPECTED.values()] + ["SUCCEEDED"])
    assert index.count(">LAB</span>") == listed and index.count("127.0.0.1:") >= listed
    wave = runs[runs["kind"] == "wave"].iloc[0]
    assert wave["vm_count"] == len(record.load(pages["dirs"]["wave"])["moves"])
    assert f">{wave['vm_count']} VMs <span" in index
    assert "<td>CHG-19</td>" in index and report.external_references(index) == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", index, re.I)  # the script is inline: nothing fetched
    assert not re.search(r"<[a-z]+\s[^>]*\bon[a-z]+\s*=", index, re.I)  # no event attributes: listeners only


@pytest.mark.browser
def test_index_sorts_and_filters_in_chromium_offline(pages: dict) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    fetched: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: fetched.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((pages["reports"] / "index.html").as_uri(), wait_until="load")
            column = "() => Array.from(document.querySelectorAll('#runs tbody tr')).filter(r => !r.hidden)" \
                     ".map(r => r.cells[%d].textContent.trim())"
            page.click("#runs th:nth-child(4)")  # Outcome, ascending
            words = page.evaluate(column % 3)
            assert words == sorted(words), words
            page.click("#runs th:nth-child(4)")  # descending
            assert page.evaluate(column % 3) == sorted(words, reverse=True)
            page.click("#runs th:nth-child(7)")  # Duration: numbers, not text
            durations = [float(d.rstrip(" s").replace(",", "")) for d in page.evaluate(column % 6) if d]
            assert durations == sorted(durations), durations
            page.screenshot(path=str(ARTIFACTS / "index-sorted-by-duration.png"), full_page=True)
            page.select_option("#rb-kind", "check")
            assert sorted(page.evaluate(column % 1)) == ["check", "check"]
            page.select_option("#rb-outcome", "PASSED")
            assert page.evaluate(column % 3) == ["PASSED"]
            assert page.inner_text("#rb-shown") == f"1 of {len(EXPECTED) + 1} shown"
            page.select_option("#rb-kind", "")
            page.select_option("#rb-outcome", "")
            page.fill("#rb-filter", "CHG-19")
            assert page.evaluate(column % 4) == ["CHG-19"]
            page.screenshot(path=str(ARTIFACTS / "index-filtered.png"), full_page=True)
            page.fill("#rb-filter", "")
            for case in ("move succeeded", "wave", "inventory", "refused"):
                page.goto((pages["dirs"][case] / "report.html").as_uri(), wait_until="load")
                page.screenshot(path=str(ARTIFACTS / f"record-{case.replace(' ', '-')}.png"), full_page=True)
                if case == "inventory":  # the wide VM table scrolls inside its section, not the page
                    page.set_viewport_size({"width": 1000, "height": 900})
                    wide = page.evaluate("() => { const d = document.querySelector('#Virtual-machines .rb-scroll');"
                                         " return [d.scrollWidth, d.clientWidth, document.documentElement.scrollWidth,"
                                         " window.innerWidth]; }")
                    assert wide[0] > wide[1] and wide[2] <= wide[3], wide
        finally:
            browser.close()
    assert fetched == [], fetched
