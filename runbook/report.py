"""HTML change records and the reports index: readable offline, years later, by people who do not read code."""
from __future__ import annotations

import datetime as dt
import html
import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from . import record as rec

_BANNER_CLASS = {"SUCCEEDED": "rb-ok", "NO CHANGE": "rb-ok", "DRY RUN": "rb-info",
                 "CHECKS FAILED": "rb-fail", "FAILED": "rb-fail", "TIMED OUT": "rb-fail",
                 "UNKNOWN": "rb-warn"}
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _secrets() -> list[str]:
    """Values that must never reach a file: the password in use, wherever it came from."""
    found = [os.environ.get("GOVC_PASSWORD", "")]
    with_file = os.environ.get("RUNBOOK_PASSWORD_FILE")
    if with_file:
        try:
            found.append(Path(with_file).read_text().splitlines()[0])
        except (OSError, IndexError):
            pass
    try:
        from . import lab

        info = lab.status()
        if info is not None:
            found.append(info.password)
    except Exception:
        pass
    return [s for s in found if s and len(s) >= 4]


def scrub(text: str) -> str:
    """Last line of defence: replace any secret that slipped into generated text."""
    for secret in _secrets():
        text = text.replace(secret, "<redacted>")
    return text


def key_figures(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures shown under the banner: the notebook may set its own (``figures``), else a default."""
    figures = [(str(a), str(b)) for a, b in data.get("figures") or []]
    if not figures:
        figures = [("Run", f"{data.get('kind')} {data.get('run_id')}"),
                   ("vCenter", str(data.get("vcenter") or "-"))]
    started, ended = data.get("started"), data.get("ended")
    figures += [("Started (UTC)", str(started or "-")), ("Ended (UTC)", str(ended or "-")),
                ("Operator", f"{data.get('operator', {}).get('os_user')} / "
                             f"{data.get('operator', {}).get('vcenter_user') or '-'}")]
    if data.get("error"):
        figures.append(("Error", f"{data['error'].get('type')}: {data['error'].get('message')}"))
    return figures


def _for_report(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what a static page cannot show: widget views and widget state (they would need a CDN)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.get("outputs", [])
                        if not (o.get("output_type") in ("display_data", "execute_result")
                                and _WIDGET_MIME in o.get("data", {}) and len(o["data"]) <= 2
                                and "image/png" not in o["data"])]
        for out in cell.outputs:
            out.get("data", {}).pop(_WIDGET_MIME, None)
    return nb


def write_html(run_dir: Path, data: dict[str, Any], *, with_code: bool = False) -> Path:
    """Convert the executed notebook into ``report.html`` with the outcome banner first."""
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    target = run_dir / "report.html"
    notebook = run_dir / "run.ipynb"
    if notebook.exists():
        nb = _for_report(nbformat.read(notebook, as_version=4))
    else:  # the kernel never started: the record alone explains the failure
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
            "The notebook did not run; the record above says why.")])
    nb.metadata["title"] = f"{data.get('outcome')}: {data.get('kind')} {data.get('run_id')}"
    exporter = HTMLExporter(template_name="lab", exclude_input=not with_code,
                            exclude_input_prompt=True, exclude_output_prompt=True,
                            extra_template_paths=[str(Path(__file__).parent / "templates")],
                            template_file="runbook_report.html.j2")
    resources = {"runbook_record": data, "runbook_figures": key_figures(data),
                 "runbook_banner_class": _BANNER_CLASS.get(str(data.get("outcome")), "rb-warn")}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    rec.write_atomic(target, scrub(body))
    if notebook.exists():
        text = notebook.read_text()
        clean = scrub(text)
        if clean != text:
            rec.write_atomic(notebook, clean)
    return target


def list_runs(reports_dir: Path | None = None) -> pd.DataFrame:
    """Every run under ``reports/``, newest first (one row per record.json)."""
    reports_dir = Path(reports_dir or rec.default_reports_dir())
    rows = []
    for path in sorted(reports_dir.glob("*/*/record.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        ping = data.get("ping") or {}
        rows.append({
            "started": data.get("started"), "change_id": data.get("change_id") or "",
            "kind": data.get("kind"), "vm": (data.get("plan") or {}).get("vm") or "",
            "move": data.get("move") or "", "outcome": data.get("outcome"),
            "probes_lost": ping.get("lost") if ping else None,
            "duration_s": _duration(data), "report": str(path.parent.relative_to(reports_dir) / "report.html"),
        })
    df = pd.DataFrame(rows, columns=["started", "change_id", "kind", "vm", "move", "outcome", "probes_lost",
                                     "duration_s", "report"])
    return df.sort_values("started", ascending=False, ignore_index=True)


def _duration(data: dict[str, Any]) -> float | None:
    task = data.get("task") or {}
    if task.get("duration_s") is not None:
        return round(float(task["duration_s"]), 1)
    try:
        start = dt.datetime.fromisoformat(str(data["started"]).replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(str(data["ended"]).replace("Z", "+00:00"))
        return round((end - start).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        return None


def write_index(reports_dir: Path | None = None) -> Path:
    """Regenerate ``reports/index.html``: a plain page (no scripts) listing every run."""
    reports_dir = Path(reports_dir or rec.default_reports_dir())
    runs = list_runs(reports_dir)
    rows = []
    for r in runs.itertuples():
        cls = _BANNER_CLASS.get(str(r.outcome), "rb-warn")
        lost = "" if r.probes_lost is None or pd.isna(r.probes_lost) else str(int(r.probes_lost))
        dur = "" if r.duration_s is None or pd.isna(r.duration_s) else f"{r.duration_s:g} s"
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in
                             (r.started, r.change_id, r.kind, r.vm, r.move)) +
            f'<td class="{cls}">{html.escape(str(r.outcome))}</td><td>{lost}</td><td>{dur}</td>'
            f'<td><a href="{html.escape(r.report)}">report</a></td></tr>')
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Runbook change records</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
.rb-ok {{ color: #1e7b34; font-weight: 600; }} .rb-fail {{ color: #b3261e; font-weight: 600; }}
.rb-warn {{ color: #9a6700; font-weight: 600; }} .rb-info {{ color: #2f5d8a; font-weight: 600; }}
</style></head><body>
<h1>Runbook change records</h1>
<p>{len(runs)} run(s), newest first. Generated {rec.iso(rec.utcnow())}.</p>
<table><thead><tr><th>Started (UTC)</th><th>Change</th><th>Runbook</th><th>VM</th><th>Move</th><th>Outcome</th>
<th>Probes lost</th><th>Duration</th><th>Report</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    target = reports_dir / "index.html"
    rec.write_atomic(target, page)
    return target
