"""Tables for people, in the notebook (fronts/tables.py) and on the record's page (records/blocks.py): units in
the headers, thousands separators, no 0..n index, names on one line, every value escaped, big tables paged."""
from __future__ import annotations

import re

import pandas as pd

from runbook.fronts import tables
from runbook.records import blocks


def _vms(n: int) -> pd.DataFrame:
    return pd.DataFrame({"name": [f"vm-<b>{i}</b>" for i in range(n)], "host": ["esx-01.lab.local"] * n,
                         "memory_mb": [131072] * n, "provisioned_bytes": [3 * 2**40] * n, "vcpus": [4] * n})


def test_notebook_tables_are_styled_escaped_and_without_index(tmp_path) -> None:
    html = tables.page(_vms(3), name="vms", run_dir=tmp_path).to_html()
    headers = re.findall(r'<th id="T_\w+_level0_col\d+" class="col_heading[^"]*" >([^<]*)</th>', html)
    assert headers == ["name", "host", "memory (MiB)", "vCPUs", "provisioned (GiB)"]
    assert "131,072" in html and "3,072.0" in html  # thousands separators; bytes shown in GiB
    assert "&lt;b&gt;0&lt;/b&gt;" in html and "<b>" not in html
    assert "row_heading" not in html  # no 0..n index
    assert re.search(r"_row0_col1(?:, #T_\w+)*\s*\{[^}]*white-space: nowrap", html)  # host names on one line
    saved = pd.read_csv(tmp_path / "vms.csv")
    assert len(saved) == 3 and "provisioned_gib" in saved.columns


def test_big_tables_stay_paged_with_every_row_in_the_csv(tmp_path) -> None:
    shown = tables.page(_vms(30), name="vms", run_dir=tmp_path, limit=10)
    assert len(shown.data) == 10 and len(pd.read_csv(tmp_path / "vms.csv")) == 30


def test_record_tables_have_units_separators_and_scroll() -> None:
    html = blocks.table([{"vm": "a%2fb", "memory_mb": 131072, "ok": True, "note": "<i>x</i>"}],
                        ["vm", blocks.Column("memory_mb", "memory", "MiB"), "ok", "note"])
    assert html.startswith('<div class="rb-scroll"><table class="rb-table ')
    assert '<th scope="col">memory (MiB)</th>' in html and '<td class="rb-num">131,072</td>' in html
    assert '<td class="rb-name">a/b</td>' in html and "&lt;i&gt;x&lt;/i&gt;" in html and "<td>yes</td>" in html
    assert blocks.table([]) is None and blocks.pairs([("x", None)]) is None  # nothing: no table, no heading
