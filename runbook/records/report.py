"""HTML change records and the reports index: readable offline, years later, by people who do not read code.

``write_html(run_dir)`` turns a run directory into ``report.html``: the outcome banner and key figures
first, then the executed notebook (code hidden) or, for a run without one (the widgets, a kernel that
never started), the same sections built from the record itself. ``write_index()`` regenerates
``reports/index.html``; ``list_runs()`` is the same list as a DataFrame (``runbook reports``).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import logging

from runbook._imports import skip_iri_grammar

skip_iri_grammar()
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402

from runbook.records import record as rec
from runbook.records.record import scrub
from runbook.vsphere.find import display_name

__all__ = ["write_html", "write_index", "list_runs", "key_figures", "record_notebook", "external_references",
           "scrub"]

log = logging.getLogger("runbook")

_BANNER_CLASS = {"SUCCEEDED": "rb-ok", "NO CHANGE": "rb-ok", "DRY RUN": "rb-info",
                 "CHECKS FAILED": "rb-fail", "FAILED": "rb-fail", "TIMED OUT": "rb-fail",
                 "UNKNOWN": "rb-warn", "RUNNING": "rb-warn"}
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_TEMPLATES = Path(__file__).parent / "templates"
# Jupyter Book's cell tags, honoured in the report: a notebook marks what a change record should not show.
_REMOVE_CELL, _REMOVE_INPUT, _REMOVE_OUTPUT = "remove-cell", "remove-input", "remove-output"
_PY_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: .*\n(?:[ \t]+.*\n?)?", re.M)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.S | re.I)
_REFERENCE = re.compile(r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?|@import\s+["']?|url\(\s*["']?)"""
                        r"""([^"'\s>)]*)""", re.I)


#: Figures whose value is made of vCenter names: shown as people wrote them (``a%2fb`` is ``a/b``).
_NAME_FIGURES = frozenset({"VM", "From", "To", "Host", "Hosts", "Cluster", "Datastore"})


def key_figures(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures under the banner: the run's own (``figures``, set by the notebook or the move), else
    what the record holds (for a move: VM, from, to, duration, probes lost, longest outage); then the
    times, the operator and the error."""
    figures = [(str(a), _name(b) if str(a) in _NAME_FIGURES else str(b)) for a, b in data.get("figures") or []]
    if not figures:
        figures = _figures_from_record(data)
    op = data.get("operator") or {}
    started, ended = data.get("started"), data.get("ended")
    figures += [("Started (UTC)", str(started or "-")), ("Ended (UTC)", str(ended or "-")),
                ("Operator", f"{op.get('os_user') or '-'} / {op.get('vcenter_user') or '-'}"
                             + (f" on {op['machine']}" if op.get("machine") else ""))]
    if data.get("vcenter") and not any(label == "vCenter" for label, _ in figures):
        figures.append(("vCenter", str(data["vcenter"])))
    if data.get("error"):
        err = data["error"]
        figures.append(("Error", f"{err.get('type')}: {err.get('message')}"
                                 + (f" (step: {err['step']})" if err.get("step") else "")))
    return figures


def _figures_from_record(data: dict[str, Any]) -> list[tuple[str, str]]:
    plan, task, ping = data.get("plan") or {}, data.get("task") or {}, data.get("ping") or {}
    params = data.get("parameters") or {}
    if data.get("kind") not in ("migrate", "check"):
        return [("Run", f"{data.get('kind')} {data.get('run_id')}")]
    stores = ", ".join(_name(s) for s in plan.get("vm_datastores") or [])
    figures = [("VM", _name(plan.get("vm") or params.get("vm") or "-")),
               ("From", f"{_name(plan.get('source_host') or '-')} / {stores or '-'}"),
               ("To", f"{_name(plan.get('run_host') or params.get('target_host') or '-')} / "
                      f"{_name(plan.get('target_datastore') or params.get('target_datastore')) or stores or '-'}")]
    if data.get("kind") == "migrate":
        duration = task.get("duration_s")
        figures.append(("Duration", f"{duration:.1f} s" if isinstance(duration, (int, float)) else "-"))
        if "probes_lost" in ping:
            figures.append(("Probes lost", f"{ping['probes_lost']} of {ping.get('probes_sent')}"))
            figures.append(("Longest outage", f"{ping.get('longest_outage_ms') or 0:g} ms"))
        else:
            figures.append(("Probes lost", ping.get("note") or "not measured"))
    return figures


def _name(value: Any) -> str:
    """A vCenter name as people wrote it (``a%2fb`` is ``a/b``); the page escapes it as any text."""
    return display_name(str(value)) if value else ""


def _names(value: Any) -> Any:
    """A name or a list of names as people wrote them; anything else as it is."""
    if isinstance(value, list):
        return [_names(v) for v in value]
    return display_name(value) if isinstance(value, str) else value


# -- the notebook as a report ---------------------------------------------------------------------------
def _heading(cell: nbformat.NotebookNode) -> str | None:
    for line in cell.source.splitlines():
        if line.lstrip().startswith("#"):
            return line.lstrip().lstrip("#").strip()
    return None


def _for_report(nb: nbformat.NotebookNode, title: str = "") -> nbformat.NotebookNode:
    """What a static page can show, and nothing else: widget views and widget state go (they would need a
    renderer from a CDN), Python warnings on stderr go (noise for the reader), cells tagged
    ``remove-cell`` / ``remove-input`` / ``remove-output`` lose that part, images get alt text named after
    the section they are in."""
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if _REMOVE_CELL not in c.get("metadata", {}).get("tags", [])]
    section = title
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if _REMOVE_INPUT in tags:
            cell.metadata.setdefault("transient", {})["remove_source"] = True
            cell.source = ""
        if _REMOVE_OUTPUT in tags and cell.cell_type == "code":
            cell.outputs = []
        if cell.cell_type == "markdown":
            section = _heading(cell) or section
            continue
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if _WIDGET_MIME in data:
                    data.pop(_WIDGET_MIME)
                    if not any(m != "text/plain" for m in data):  # a bare widget: its text is a repr
                        continue
                for mime in ("image/png", "image/jpeg", "image/svg+xml"):
                    if mime in data:
                        meta = out.setdefault("metadata", {}).setdefault(mime, {})
                        meta.setdefault("alt", f"Chart: {section}" if section else "Chart")
            elif kind == "stream" and out.get("name") == "stderr":
                out["text"] = _PY_WARNING.sub("", out.get("text", ""))
                if not out["text"].strip():
                    continue
            outputs.append(out)
        cell.outputs = outputs
    return nb


def _png_output(image: Any, alt: str) -> nbformat.NotebookNode:
    if hasattr(image, "savefig"):  # a matplotlib Figure
        buf = io.BytesIO()
        image.savefig(buf, format="png", dpi=100)
        image = buf.getvalue()
    return nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(image).decode()},
                                  metadata={"image/png": {"alt": alt}})


def _table(rows: list[dict[str, Any]] | dict[str, Any], columns: list[str] | None = None) -> nbformat.NotebookNode:
    df = pd.DataFrame([rows] if isinstance(rows, dict) else rows)
    if columns:
        df = df.reindex(columns=[c for c in columns if c in df.columns] or list(df.columns))
    df = df.map(lambda v: ", ".join(map(str, v)) if isinstance(v, list) else v)
    return nbformat.v4.new_output("display_data", data={"text/html": df.to_html(index=False, na_rep=""),
                                                        "text/plain": df.to_string(index=False)})


def _placement_rows(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    def flat(p: dict[str, Any] | None) -> dict[str, str]:
        if not p:
            return {}
        row = {"host": p.get("host"), "resource pool": p.get("resource_pool"), "VM home": p.get("home_datastore")}
        for d in p.get("disks") or []:
            row[d["label"]] = f"{d.get('datastore')} ({d.get('format')})"
        for n in p.get("nics") or []:
            row[n["label"]] = n.get("port_group")
        return {k: str(v) for k, v in row.items()}

    b, a = flat(before), flat(after)
    return [{"item": k, "before": b.get(k, "-"), "after": a.get(k, "-") if after else "-",
             "changed": (b.get(k) != a.get(k)) if after else ""} for k in dict.fromkeys([*b, *a])]


_MARKDOWN_SPECIAL = re.compile(r"""([!-/:-@\[-`{-~])""")


def _markdown_text(text: str) -> str:
    """Text that markdown shows as itself: every ASCII punctuation character backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _text_output(text: str) -> nbformat.NotebookNode:
    """A paragraph of text (escaped: shown as written, never read as HTML)."""
    return nbformat.v4.new_output("display_data", data={"text/html": f"<p>{html.escape(text)}</p>",
                                                        "text/plain": text})


def record_notebook(data: dict[str, Any], ping_chart: Any = None) -> nbformat.NotebookNode:
    """The report's sections built from the record alone (plan, checks, before/after, task and events,
    ping): for runs without an executed notebook, such as the widgets. ``ping_chart`` is a matplotlib
    Figure or PNG bytes to show in the ping section."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    # Markdown gets only the runbook's own words: values from the record (names from the vCenter, the
    # operator's text) go into outputs as escaped text, never into markdown, which would pass HTML through.
    cells = [md(f"# {_markdown_text(str(data.get('kind') or 'run').capitalize())} run "
                f"{_markdown_text(str(data.get('run_id') or ''))}\n\n"
                f"Built from the change record (`record.json`): this run has no executed notebook.")]

    def section(title: str, *outputs: nbformat.NotebookNode, text: str = "") -> None:
        cells.append(md(f"## {title}"))
        if text:
            outputs = (_text_output(text), *outputs)
        if outputs:
            cells.append(code("", outputs=list(outputs)))

    if data.get("error"):
        section("What went wrong", _table(data["error"]), text=str(data.get("summary") or ""))
    if data.get("plan"):
        plan = data["plan"]
        names = ("vm", "source_host", "run_host", "vm_datastores", "target_datastore", "resource_pool")
        section("Plan", _table({k: _names(plan.get(k)) if k in names else plan.get(k)
                                for k in ("vm", "vm_moid", "power_state", "kind", "source_host", "run_host",
                                          "vm_datastores", "target_datastore", "resource_pool", "priority")
                                if k in plan}),
                text=str(data.get("move") or ""))
    elif data.get("parameters"):
        section("Parameters", _table(data["parameters"]))
    if data.get("checks"):
        section("Checks", _table(data["checks"], ["status", "check", "found", "remedy"]),
                text=str(data.get("verdict") or ""))
    placement = data.get("placement") or {}
    if placement.get("before"):
        section("Before and after", _table(_placement_rows(placement.get("before"), placement.get("after"))))
    if data.get("verification"):
        section("Verification", _table(data["verification"]))
    if data.get("task"):
        section("Task and vCenter events", _table(data["task"]),
                *([_table(data["events"], ["time", "type", "message", "user"])] if data.get("events") else []))
    ping = data.get("ping")
    if ping:
        figures = {k: ping.get(k) for k in ("target", "method", "interval_ms", "probes_sent", "probes_received",
                                            "probes_lost", "loss_pct", "outages_count", "longest_outage_ms",
                                            "total_outage_ms") if k in ping}
        outputs = [_table(figures)] if figures else []
        if ping_chart is not None:
            outputs.append(_png_output(ping_chart, "Chart: round-trip time and lost probes through the move"))
        section("Ping through the move", *outputs, text=str(ping.get("description") or ping.get("note") or ""))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def write_html(run_dir: Path, data: dict[str, Any] | None = None, *, with_code: bool = False,
               notebook: Path | None = None, ping_chart: Any = None) -> Path:
    """Write ``run_dir/report.html`` (atomically) and return its path.

    A stable entry point for every front end (pipeline, widgets): ``data`` is the record (read from
    ``run_dir/record.json`` when not given); ``notebook`` the executed notebook (default
    ``run_dir/run.ipynb`` when it exists), else the sections are built from the record and ``ping_chart``
    (a matplotlib Figure or PNG bytes) is shown in its ping section. Secrets are scrubbed from the page
    and from the notebook file; nothing in the page is fetched from the network.
    """
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    data = data if data is not None else (rec.load(run_dir) or {})
    notebook = Path(notebook) if notebook else run_dir / "run.ipynb"
    title = f"{data.get('outcome')}: {data.get('kind')} {data.get('change_id') or data.get('run_id')}"
    if notebook.exists():
        nb = _for_report(nbformat.read(notebook, as_version=4))
    else:
        nb = _for_report(record_notebook(data, ping_chart))
    nb.metadata["title"] = title
    exporter = HTMLExporter(template_name="lab", exclude_input=not with_code,
                            exclude_input_prompt=True, exclude_output_prompt=True,
                            extra_template_paths=[str(_TEMPLATES)], template_file="runbook_report.html.j2")
    resources = {"runbook_record": data, "runbook_figures": key_figures(data),
                 "runbook_banner_class": _BANNER_CLASS.get(str(data.get("outcome")), "rb-warn")}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    target = run_dir / "report.html"
    rec.write_atomic(target, scrub(_visible_bidi(_strip_css_comments(body))))
    if notebook.exists() and notebook.parent == run_dir:
        text = notebook.read_text()
        clean = scrub(text)
        if clean != text:
            rec.write_atomic(notebook, clean)
    return target


# Unicode's bidirectional overrides, embeddings and isolates ("Trojan Source"): in a name they can make a page
# show text other than what the record holds (a VM named "\u202egnp.exe" reads "exe.png"). Pages show them.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _visible_bidi(page: str) -> str:
    """Bidirectional control characters shown as ``[U+202E]``: a page shows what the record holds, in order.
    (The record keeps the name as the vCenter returns it; marks such as U+200F stay, they reorder nothing.)"""
    return _BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", page)


def _strip_css_comments(page: str) -> str:
    """CSS comments carry nothing for the reader, only links to the theme's sources."""
    return _STYLE.sub(lambda m: m.group(1) + _CSS_COMMENT.sub("", m.group(2)) + m.group(3), page)


def external_references(page: str) -> list[str]:
    """Every address the page would fetch or link to outside itself (``src=``, ``href=``, ``url(``,
    ``@import``): anything but in-page anchors, ``data:`` URIs and relative paths. Empty for a report
    that opens offline with nothing missing."""
    found = []
    for ref in _REFERENCE.findall(page):
        if not ref or ref.startswith("#") or ref.lower().startswith("data:"):
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:|^//", ref, re.I):
            found.append(ref)
    return found


# -- the index ------------------------------------------------------------------------------------------
_COLUMNS = ["started", "change_id", "kind", "vm", "move", "outcome", "probes_lost", "longest_outage_ms",
            "duration_s", "report"]


def list_runs(reports_dir: Path | None = None) -> pd.DataFrame:
    """Every run under ``reports/`` (one row per ``record.json``), newest first.

    A record that cannot be read (not JSON, or JSON of another shape) is skipped; the skipped files are in
    ``df.attrs["skipped"]`` as ``(path, reason)``, for the caller to say (one line each). One bad file
    never stops the listing of the others.
    """
    reports_dir = Path(reports_dir or rec.default_reports_dir())
    rows, skipped = [], []
    for path in sorted(reports_dir.glob("*/*/record.json")):
        try:
            rows.append(_run_row(path, reports_dir))
        except _Unreadable as exc:
            skipped.append((path, str(exc)))
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["probes_lost"] = df["probes_lost"].astype("Int64")
    df = df.sort_values(["started", "report"], ascending=False, ignore_index=True)
    df.attrs["skipped"] = skipped
    return df


class _Unreadable(Exception):
    """A record.json that is not a record: why, in a few words."""


def _run_row(path: Path, reports_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Unreadable(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise _Unreadable(f"not a change record (a JSON {type(data).__name__}, not an object)")
    for key in ("kind", "outcome", "started"):
        if not isinstance(data.get(key), str):
            raise _Unreadable(f"not a change record ({key!r} is missing or not text)")
    ping, plan, params = (_mapping(data.get(k)) for k in ("ping", "plan", "parameters"))
    return {
        "started": data["started"], "change_id": _text(data.get("change_id")), "kind": data["kind"],
        "vm": _name(_text(plan.get("vm")) or _text(params.get("vm"))), "move": _text(data.get("move")),
        "outcome": data["outcome"] or "UNKNOWN", "probes_lost": _number(ping.get("probes_lost"), int),
        "longest_outage_ms": _number(ping.get("longest_outage_ms")), "duration_s": _duration(data),
        "report": (path.parent.relative_to(reports_dir) / "report.html").as_posix(),
    }


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any, kind: type = float) -> Any:
    """A finite number of the record, or None (a record of another shape may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number):
        return None
    if kind is int:
        return int(number) if number.is_integer() else None
    return number


def _duration(data: dict[str, Any]) -> float | None:
    """The move's duration (the vCenter task) when there was one, else the run's."""
    for seconds in (_number(_mapping(data.get("task")).get("duration_s")), _number(data.get("duration_s"))):
        if seconds is not None:
            return round(seconds, 1)
    try:
        start = dt.datetime.fromisoformat(str(data["started"]).replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(str(data["ended"]).replace("Z", "+00:00"))
        return round((end - start).total_seconds(), 1)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def write_index(reports_dir: Path | None = None) -> Path:
    """Regenerate ``reports/index.html`` (atomically): a plain page, no scripts, listing every run; a
    record that cannot be read is named at the end of the page and in one warning line."""
    import jinja2

    reports_dir = Path(reports_dir or rec.default_reports_dir())
    runs = list_runs(reports_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True)
    rows = [{"started": r.started, "change_id": r.change_id, "kind": r.kind, "vm": r.vm, "move": r.move,
             "outcome": r.outcome, "css": _BANNER_CLASS.get(str(r.outcome), "rb-warn"),
             "probes_lost": "" if pd.isna(r.probes_lost) else int(r.probes_lost),
             "duration": "" if r.duration_s is None or pd.isna(r.duration_s) else f"{r.duration_s:g} s",
             "report": "./" + r.report}  # "./": a directory named "javascript:..." stays a relative path
            for r in runs.itertuples()]
    skipped = [f"{path.relative_to(reports_dir).as_posix()}: {why}" for path, why in runs.attrs.get("skipped", [])]
    for line in skipped:
        log.warning("the reports index skips %s", line)
    page = env.get_template("reports_index.html.j2").render(runs=rows, skipped=skipped,
                                                            generated=rec.iso(rec.utcnow()))
    target = reports_dir / "index.html"
    rec.write_atomic(target, scrub(_visible_bidi(page)))
    return target
