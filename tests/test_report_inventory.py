"""An inventory's page at vCenter's scale (records/sections.py, records/charts.py): the charts the run drew are
shown as drawn (not drawn again for the report), and a big table is read only as far as the page shows it."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from runbook.records import charts, report


def _hosts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"name": [f"esx-{i:04d}.lab.local" for i in range(n)], "connection_state": ["connected"] * n,
                         "maintenance": [False] * n, "vm_count": [i % 20 for i in range(n)]})


def _run_dir(tmp_path: Path, counts: dict[str, int]) -> Path:
    run_dir = tmp_path / "2026-12-01" / "run-000000Z"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps({
        "kind": "inventory", "outcome": "SUCCEEDED", "started": "2026-12-01T00:00:00Z", "summary": "an inventory",
        "inventory": counts}))
    return run_dir


def test_the_runs_chart_is_shown_as_drawn_and_kept_beside_the_record(tmp_path) -> None:
    hosts = _hosts(120)
    run_dir = _run_dir(tmp_path, {"hosts": 120})
    hosts.to_csv(run_dir / "hosts.csv", index=False)
    shown = charts.kept("hosts", hosts, run_dir)
    assert shown._repr_png_().startswith(b"\x89PNG") and (run_dir / "hosts.png").read_bytes() == shown
    other = charts.png(charts.vms_per_host(_hosts(2)))  # a redraw from hosts.csv would not give this image
    (run_dir / "hosts.png").write_bytes(other)
    page = report.write_html(run_dir).read_text()
    assert base64.b64encode(other).decode() in page  # the file beside the record, byte for byte
    assert page.count('<figure class="rb-chart">') == 1
    assert '<a href="./hosts.png">hosts.png</a>: the VMs per host chart' in page


def test_without_a_saved_chart_the_page_draws_it_from_the_table(tmp_path) -> None:
    run_dir = _run_dir(tmp_path, {"hosts": 3})
    _hosts(3).to_csv(run_dir / "hosts.csv", index=False)
    page = report.write_html(run_dir).read_text()
    assert page.count('<figure class="rb-chart"><img src="data:image/png;base64,') == 1
    assert not (run_dir / "hosts.png").exists()  # the page draws it; only a run keeps one


def test_a_big_table_is_read_as_far_as_the_page_shows_it(tmp_path, monkeypatch) -> None:
    run_dir = _run_dir(tmp_path, {"vms": 2000})
    pd.DataFrame({"name": [f"vm-{i:05d}" for i in range(2000)], "memory_mb": [4096] * 2000}).to_csv(
        run_dir / "vms.csv", index=False)
    read: list = []
    original = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: read.append(k.get("nrows")) or original(*a, **k))
    page = report.write_html(run_dir).read_text()
    assert read == [500], read
    assert "The first 500 of 2,000 rows; all of them are in vms.csv beside this report." in page
    assert "vm-00499" in page and "vm-00500" not in page
