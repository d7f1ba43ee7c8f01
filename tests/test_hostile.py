"""Hostile names: VMs named with markup, quotes, '/', '\\', '%', unicode, RTL marks and 80 characters.

The lab holds them as vCenter does (``sim/scenarios/hostile-names.toml``; '/', '\\' and '%' come back escaped as
%2f, %5c and %25). The runbook accepts either form from the operator, runs check (passing and failing), a dry
run, a move and an inventory headless (``runbook ...``) and a move through the widgets' path (the report built
from the record alone), and every page it writes shows the names as text: Chromium opens each one and no
dialog opens and no script runs. Screenshots are kept in test-artifacts/. A malformed record.json left in the
reports directory changes none of these runs' exit codes; ``runbook reports`` names it in one line.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import runbook
from conftest import lab_env, lab_settings, running_lab
from runbook.records import record, report

pytestmark = pytest.mark.slow

RUNBOOK = str(Path(sys.executable).with_name("runbook"))
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

SCRIPT = '<script>alert("vm-script")</script>'
IMG = "<img src=x onerror=alert(1)>"
SVG = "<svg onload=alert(2)>"
QUOTES = """q"uote's & <b>bold</b>"""
PERCENT = "100% <i>busy</i> C:\\vms\\x"
MARKDOWN = "{{7*7}} ${7*7} [x](javascript:alert(3)) `code` *bold*"
UNICODE = "Ünïcødé 名前 🚀 \u202egnp.exe\u202c \u200frtl\u200e"
LONG = "<img src=x onerror=alert(8)>-a-very-long-name-of-eighty-characters-0123456789abc"
HOSTILE_CHANGE = '<svg onload=alert("chg")>'
HOSTILE = [SCRIPT, IMG, SVG, QUOTES, PERCENT, MARKDOWN, UNICODE, LONG, HOSTILE_CHANGE]
# markup a page must never hold as markup (it may hold it as escaped text)
ACTIVE = re.compile(r"<(?:script|img|svg|b|i)\b[^>]*(?:alert|onerror|onload|>bold|>busy)|(?:href|src)\s*=\s*[\"']?\s*javascript:",
                    re.I)


def vcenter_form(name: str) -> str:
    from runbook.vsphere.find import vcenter_name

    return vcenter_name(name)


def test_vcenter_name_escaping_matches_the_lab() -> None:
    from runbook.vsphere.find import display_name, vcenter_name

    assert vcenter_name(PERCENT) == "100%25 <i>busy<%2fi> C:%5cvms%5cx"
    assert vcenter_name("a%2fb %5C c%25 d%zz") == "a%2fb %5c c%25 d%25zz"  # sequences kept, as vCenter does
    for name in (SCRIPT, IMG, QUOTES, PERCENT, MARKDOWN, UNICODE, LONG, "a%2fb"):
        assert display_name(vcenter_name(name)) == display_name(name)


def test_look_ups_accept_the_name_as_written_and_as_vcenter_returns_it() -> None:
    import pandas as pd

    from runbook.errors import Ambiguous, NotFound
    from runbook.vsphere.find import find_row, vcenter_name

    table = pd.DataFrame({"moid": ["vm-1", "vm-2", "vm-3", "vm-4"],
                          "name": [vcenter_name(QUOTES), vcenter_name(PERCENT), "a%2fb", "a%252fb"]})
    assert find_row(table, QUOTES, "VM")["moid"] == "vm-1"  # as the operator writes it
    assert find_row(table, vcenter_name(QUOTES), "VM")["moid"] == "vm-1"  # as vCenter returns it
    assert find_row(table, PERCENT, "VM")["moid"] == "vm-2"
    assert find_row(table, "100%25 <i>busy<%2Fi> C:%5Cvms%5cx", "VM")["moid"] == "vm-2"  # either case
    assert find_row(table, "a/b", "VM")["moid"] == "vm-3" and find_row(table, "a%2fb", "VM")["moid"] == "vm-3"
    assert find_row(table, "a%252fb", "VM")["moid"] == "vm-4"  # the name "a%2fb" itself, escaped once more
    with pytest.raises(NotFound):
        find_row(table, "a\\b", "VM")
    with pytest.raises(Ambiguous):
        find_row(pd.concat([table, table.assign(moid=["vm-5", "vm-6", "vm-7", "vm-8"])]), "a/b", "VM")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Every kind of run over hostile names; returns the reports directory, the lab, and each run's output."""
    root = tmp_path_factory.mktemp("hostile")
    with running_lab(root / "lab", "hostile-names") as info:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVC_", "RUNBOOK_"))}
        env.update(lab_env(info), RUNBOOK_REPORTS=str(root / "reports"), RUNBOOK_LAB_DIR=str(root / "none"))

        for name, text in (("not-json", "{not json"), ("wrong-shape", '{"kind": ["x"], "outcome": 1}')):
            bad = root / "reports" / "2000-01-01" / name / "record.json"  # a bad file must not break later runs
            bad.parent.mkdir(parents=True)
            bad.write_text(text)

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([RUNBOOK, *args], env=env, capture_output=True, text=True, timeout=300)

        done = {
            # the operator's form of a name holding '/': the lab holds q"uote's & <b>bold<%2fb>
            "check": cli("check", "--vm", QUOTES, "--host", "esx-03.lab.local", "--change-id", HOSTILE_CHANGE),
            # vCenter's own escaped form is accepted too; the target host cannot see local-esx-03: a failed check
            "check-failed": cli("check", "--vm", vcenter_form(PERCENT), "--host", "esx-01.lab.local",
                                "--datastore", "local-esx-03"),
            "dry-run": cli("migrate", "--vm", SVG, "--host", "esx-03.lab.local", "--dry-run",
                           "--change-id", MARKDOWN),
            "migrate": cli("migrate", "--vm", SCRIPT, "--host", "esx-02.lab.local", "--ping-tcp-port", "9",
                           "--ping-tail", "0.3", "--change-id", IMG),
            "forced": cli("migrate", "--vm", IMG, "--host", "esx-02.lab.local", "--datastore", "local-esx-03",
                          "--ping", "none", "--force-reason", SVG, "--dry-run"),
            "inventory": cli("inventory", "--change-id", LONG[:40]),
        }
        old = {k: os.environ.get(k) for k in ("GOVC_URL", "GOVC_USERNAME", "GOVC_PASSWORD", "RUNBOOK_REPORTS")}
        os.environ.update(lab_env(info), RUNBOOK_REPORTS=str(root / "reports"))
        try:  # the widgets' path: the engine writes the report from the record alone
            widgets = [runbook.migrate(runbook.MoveRequest(vm=name, target_host="esx-03.lab.local", ping="none",
                                                           change_id=UNICODE),
                                       settings=lab_settings(info), context=runbook.RunContext(via="widgets"))
                       for name in (UNICODE, LONG)]
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        listing = cli("reports")
        yield {"reports": root / "reports", "info": info, "cli": done, "widgets": widgets, "listing": listing}


def test_every_run_over_hostile_names_ends_as_expected(runs) -> None:
    expected = {"check": 0, "check-failed": 2, "dry-run": 0, "migrate": 0, "forced": 0, "inventory": 0}
    for kind, result in runs["cli"].items():
        assert result.returncode == expected[kind], f"{kind}: {result.stdout[-1500:]}\n{result.stderr[-1500:]}"
        assert "Traceback" not in result.stdout + result.stderr, kind
    assert [r.outcome for r in runs["widgets"]] == ["SUCCEEDED", "SUCCEEDED"]
    listing = runs["listing"]
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    skipped = [line for line in listing.stderr.splitlines() if line.startswith("runbook: skipped ")]
    assert len(skipped) == 2 and "not-json" in skipped[0] + skipped[1] and "wrong-shape" in skipped[0] + skipped[1]
    from runbook_lab import LabControl

    control = LabControl(runs["info"])
    assert control.placement(SCRIPT)["host"] == "esx-02.lab.local"  # the lab agrees the move happened
    assert control.placement(UNICODE)["host"] == "esx-03.lab.local"
    assert control.placement(vcenter_form(QUOTES))["host"] == "esx-02.lab.local"  # a check changes nothing


def _pages(reports: Path) -> list[Path]:
    pages = sorted(reports.rglob("report.html")) + [reports / "index.html"]
    assert len(pages) == 9, pages
    return pages


def test_records_keep_the_names_and_are_valid(runs) -> None:
    records = [record.load(p.parent) for p in sorted(runs["reports"].rglob("record.json"))
               if not p.parent.parent.name.startswith("2000")]
    assert len(records) == 8
    for data in records:
        record.validate(data)
    vms = {(d.get("plan") or {}).get("vm") for d in records}
    assert {vcenter_form(n) for n in (SCRIPT, IMG, SVG, QUOTES, PERCENT, UNICODE, LONG)} <= vms
    assert {d["change_id"] for d in records} >= {HOSTILE_CHANGE, MARKDOWN, IMG, UNICODE}
    assert any(d.get("force_reason") == SVG for d in records)
    inventory = next(d for d in records if d["kind"] == "inventory")
    assert inventory["outcome"] == "SUCCEEDED"


def test_every_page_shows_hostile_names_as_text(runs) -> None:
    for page in _pages(runs["reports"]):
        text = page.read_text()
        found = ACTIVE.findall(text)
        assert not found, f"{page}: {found[:3]}"
        assert report.external_references(text) == [], page
    index = (runs["reports"] / "index.html").read_text()
    assert "&lt;svg onload=alert(&#34;chg&#34;)&gt;" in index or "&lt;svg onload=alert(&quot;chg&quot;)&gt;" in index
    check = next(p for p in _pages(runs["reports"])[:-1] if record.load(p.parent)["change_id"] == HOSTILE_CHANGE)
    vm_figure = re.findall(r"<tr><th>VM</th><td>([^<]*)", check.read_text())
    assert re.fullmatch(r"q\"uote's &amp; &lt;b&gt;bold&lt;/b&gt; \(vm-\d+\)", vm_figure[0]), vm_figure  # "/", not %2f
    for page in _pages(runs["reports"]):  # a bidi override in a name never reorders a page: it is shown
        assert "\u202e" not in page.read_text(), page
    assert "[U+202E]gnp.exe[U+202C]" in (runs["reports"] / "index.html").read_text()
    inventory = next(p for p in _pages(runs["reports"])[:-1] if record.load(p.parent)["kind"] == "inventory")
    assert "uote's &amp; &lt;b&gt;bold&lt;/b&gt;" in inventory.read_text()  # shown as written: '/', not %2f


def _visible(name: str) -> str:
    """A name as pages show it: bidirectional overrides as [U+202E]."""
    return re.sub("[\u202a-\u202e\u2066-\u2069]", lambda m: f"[U+{ord(m.group()):04X}]", name)


# Installed before any page script: a dialog or any of the payloads' calls marks the page.
_TRAP = """
window.__ran = [];
for (const name of ["alert", "confirm", "prompt", "print"]) {
  const original = window[name];
  window[name] = function (...args) { window.__ran.push(name + ":" + args.join(",")); };
}
"""
_ACTIVE_DOM = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("*")) {
    for (const a of el.attributes) {
      if (/^on/i.test(a.name) || /javascript:/i.test(a.value)) bad.push(el.tagName + " " + a.name + "=" + a.value);
    }
    if (el.tagName === "SCRIPT" && /alert/.test(el.textContent)) bad.push("script " + el.textContent.slice(0, 80));
  }
  return bad;
}"""


@pytest.mark.browser
def test_no_page_opens_a_dialog_or_runs_a_script_in_chromium(runs) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("hostile-*.png"):
        old.unlink()
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1200})
            context.add_init_script(_TRAP)
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
            for n, path in enumerate(_pages(runs["reports"])):
                page.goto(path.as_uri(), wait_until="load")
                page.wait_for_timeout(300)  # an onload/onerror handler fires within this
                where = path.relative_to(runs["reports"]).as_posix()
                data = record.load(path.parent) if path.name == "report.html" else None
                label = f"{data['kind']}-{data['outcome']}".replace(" ", "-").lower() if data else "index"
                page.screenshot(path=str(ARTIFACTS / f"hostile-{n:02d}-{label}.png"), full_page=True)
                assert dialogs == [], f"{where}: {dialogs}"
                assert page.evaluate("window.__ran") == [], where
                assert page.evaluate(_ACTIVE_DOM) == [], where
                body = page.inner_text("body")
                shown = [t for t in HOSTILE if _visible(t) in body or _visible(vcenter_form(t)) in body]
                assert shown, f"{where} shows none of the hostile names as text"
        finally:
            browser.close()


def test_the_widgets_html_escapes_every_value() -> None:
    """The widgets' own HTML (outcome banner, key figures, errors, check lines, notices, the checks table)."""
    import types

    import ipywidgets as w

    from runbook.engine.events import CheckDone, Notice
    from runbook.errors import NotFound
    from runbook.fronts import widgets, wizard_run

    name = " ".join(HOSTILE)
    pages = [wizard_run.outcome_html({"outcome": name, "summary": name, "figures": [[name, name]],
                                      "error": {"type": name, "message": name}}),
             wizard_run.error_html(NotFound("VM", name, [name])), wizard_run.error_html(ValueError(name)),
             wizard_run.html_table([(name, name)])]
    view = types.SimpleNamespace(checks_out=w.Output(), checks_box=w.Accordion(children=[w.Output()]),
                                 run=types.SimpleNamespace(on_event=lambda event: None))
    for event in (CheckDone(status="fail", check=name, found=name, remedy=name), Notice(level="warning", text=name)):
        widgets.Wizard.on_event(view, event)  # type: ignore[arg-type]
    pages += [o["data"]["text/html"] for o in view.checks_out.outputs]
    assert len(pages) == 6
    for page in pages:
        assert not ACTIVE.findall(page), page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, page
