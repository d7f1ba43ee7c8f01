"""A notebook run by hand in JupyterLab (no papermill, no pipeline) leaves the same kind of change record."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_by_hand(name: str, tmp_path: Path, **parameters) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for key, value in parameters.items():  # what an operator types into the parameters cell
        cell.source += f"\n{key} = {value!r}"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()


def test_inventory_and_migrate_run_by_hand_write_record_report_and_index(fresh_lab, monkeypatch, tmp_path):
    info = fresh_lab()
    monkeypatch.delenv("RUNBOOK_RUN_DIR", raising=False)
    monkeypatch.setenv("RUNBOOK_REPORTS", str(tmp_path))
    run_by_hand("inventory.ipynb", tmp_path)
    run_by_hand("migrate.ipynb", tmp_path, vm="web-01", target_host="esx-02.lab.local", ping_tail=0.5)
    records = {json.loads(p.read_text())["kind"]: p.parent for p in tmp_path.glob("*/*/record.json")}
    assert set(records) == {"inventory", "migrate"}
    move = json.loads((records["migrate"] / "record.json").read_text())
    assert move["outcome"] == "SUCCEEDED" and move["ping"]["probes_sent"] > 0
    html = (records["migrate"] / "report.html").read_text()
    assert 'id="outcome-banner"' in html and "data:image/png;base64" in html  # the ping chart
    assert (records["inventory"] / "report.html").exists()
    index = (tmp_path / "index.html").read_text()
    assert index.count("report.html") == 2
    import runbook_lab as lab_mod

    assert lab_mod.LabControl(info).placement("web-01")["host"] == "esx-02.lab.local"
