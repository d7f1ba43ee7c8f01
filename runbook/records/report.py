"""HTML change records: readable offline, years later, by people who do not read code.

``write_html(run_dir)`` turns a run directory into ``report.html``, the same layout for every run whatever
started it (the command line, a notebook, the widgets, Python): the outcome banner (the outcome word of
the kind, one line of error when there was one) and the key figures first, then the sections built from
``record.json`` and the files the run saved beside it (tables as CSV, charts as PNG); the executed
notebook stays beside the page as the notebook that ran (its code is an appendix with ``with_code``).
``write_index()`` regenerates ``reports/index.html``; ``list_runs()`` is the same list as a DataFrame.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from runbook.records import record as rec
from runbook.records.blocks import Section, banner_class, esc, pairs, pre, text, visible_bidi
from runbook.records.index import list_runs, write_index
from runbook.records.record import outcome_word, scrub
from runbook.vsphere.find import display_name

__all__ = ["write_html", "write_index", "list_runs", "key_figures", "external_references", "scrub"]

log = logging.getLogger("runbook")

_TEMPLATES = Path(__file__).parent / "templates"
_REFERENCE = re.compile(r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?|@import\s+["']?|url\(\s*["']?)"""
                        r"""([^"'\s>)]*)""", re.I)
#: Figures whose value is made of vCenter names: shown as people wrote them (``a%2fb`` is ``a/b``).
_NAME_FIGURES = frozenset({"VM", "From", "To", "Host", "Hosts", "Cluster", "Datastore"})
#: Files a run may leave beside its record, as the page names them.
_FILES = {"record.json": "the change record, for machines", "run.ipynb": "the notebook that ran",
          "events.jsonl": "every event of the run, as it happened", "ping.png": "the probes chart",
          "timeline.png": "the wave's timeline chart", "hosts.png": "the VMs per host chart",
          "datastores.png": "the datastore capacity chart"}
PING_CHART = "ping.png"


def key_figures(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures under the banner: the run's own (``figures``, set by the engine), else what the record
    holds (for a move: VM, from, to, duration, probes lost, longest outage); then the times, the operator
    and the vCenter. The error is not a figure: the banner says it in one line."""
    figures = [(str(a), _name(b) if str(a) in _NAME_FIGURES else str(b)) for a, b in data.get("figures") or []]
    if not figures:
        figures = _figures_from_record(data)
    op = data.get("operator") or {}
    started, ended = data.get("started"), data.get("ended")
    duration = data.get("duration_s")
    figures += [("Started (UTC)", str(started or "-")), ("Ended (UTC)", str(ended or "-"))]
    if isinstance(duration, (int, float)):
        figures.append(("Run time", f"{duration:,.1f} s"))
    figures.append(("Operator", f"{op.get('os_user') or '-'} / {op.get('vcenter_user') or '-'}"
                                + (f" on {op['machine']}" if op.get("machine") else "")))
    if data.get("vcenter") and not any(label == "vCenter" for label, _ in figures):
        figures.append(("vCenter", str(data["vcenter"]) + (" (the lab)" if data.get("lab") is True else "")))
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


def error_line(data: dict[str, Any]) -> str:
    """The banner's one line about the error, or nothing; only its type (and step) when the summary above it
    already says its message."""
    err = data.get("error")
    if not isinstance(err, dict) or not err:
        return ""
    message = str(err.get("message") or "")
    said = bool(message) and message in str(data.get("summary") or "")
    line = f"{err.get('type') or 'Error'}" + ("" if said or not message else f": {message}")
    return line + (f" (step: {err['step']})" if err.get("step") else "")


# -- the page ---------------------------------------------------------------------------------------------
def sections(data: dict[str, Any], run_dir: Path, ping_png: bytes | None = None) -> list[Section]:
    """The page's sections for this record, none of them empty."""
    from runbook.records import sections as s

    kind = data.get("kind")
    found = [s.error_section(data)]
    if kind in ("migrate", "check"):
        found += s.move_sections(data, ping_png)
    elif kind == "inventory":
        found += s.inventory_sections(data, run_dir)
    elif kind == "enable-vmotion":
        found += s.enable_vmotion_sections(data)
    elif kind == "wave":
        from runbook.records.wave_report import wave_sections

        found += wave_sections(data, run_dir)
    if kind != "migrate" and kind != "check":
        params = {k: v for k, v in (data.get("parameters") or {}).items() if v not in (None, "", [], {}, False)}
        found.append(Section("Parameters").add(pairs(params.items()) if params else None))
    found.append(_files_section(run_dir))
    return [x for x in found if x]


def _files_section(run_dir: Path) -> Section:
    names = sorted(p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name not in ("report.html", "context.json")) if run_dir.is_dir() else []
    items = [f'<li><a href="./{esc(n)}">{text(n)}</a>{text(": " + _FILES[n]) if n in _FILES else ""}</li>'
             for n in names]
    if (run_dir / "moves").is_dir():
        items.append('<li><a href="./moves/">moves/</a>: each VM\'s own record</li>')
    return Section("Files of this run").add(f"<ul>{''.join(items)}</ul>" if items else None)


def _code_appendix(notebook: Path) -> Section:
    """The notebook's code cells (not its outputs, nor its parameters cell: the record has the parameters)."""
    import nbformat

    section = Section("Appendix: the code that ran")
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError):
        return section
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code" and cell.source.strip() and not tags & {"parameters", "injected-parameters",
                                                                             "remove-cell", "remove-input"}:
            section.add(pre(cell.source))
    return section


def ping_png(run_dir: Path, chart: Any = None, notebook: Path | None = None) -> bytes | None:
    """The probes chart of a move: the one given (saved as ping.png beside the record), else the one saved
    there, else the one the executed notebook drew in its ping section (saved there too)."""
    from runbook.records.blocks import png_bytes

    target = run_dir / PING_CHART
    if chart is not None:
        data = png_bytes(chart)
        rec.write_atomic(target, data)
        return data
    if target.is_file():
        return target.read_bytes()
    found = _notebook_chart(notebook or run_dir / "run.ipynb", "Ping")
    if found is not None:
        rec.write_atomic(target, found)
    return found


def _notebook_chart(notebook: Path, heading: str) -> bytes | None:
    """The first PNG the executed notebook showed under a heading starting with ``heading``."""
    import base64

    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    inside = False
    for cell in cells:
        source = "".join(cell.get("source") or [])
        if cell.get("cell_type") == "markdown" and source.lstrip().startswith("#"):
            inside = source.lstrip("# ").startswith(heading)
        elif inside and cell.get("cell_type") == "code":
            for out in cell.get("outputs") or []:
                data = (out.get("data") or {}).get("image/png")
                if data:
                    return base64.b64decode("".join(data) if isinstance(data, list) else data)
    return None


def write_html(run_dir: Path, data: dict[str, Any] | None = None, *, with_code: bool = False,
               notebook: Path | None = None, ping_chart: Any = None) -> Path:
    """Write ``run_dir/report.html`` (atomically) and return its path.

    A stable entry point for every front (pipeline, widgets, engine): ``data`` is the record (read from
    ``run_dir/record.json`` when not given); ``notebook`` the executed notebook (default ``run_dir/run.ipynb``),
    linked as the notebook that ran and, with ``with_code``, its code as an appendix; ``ping_chart`` (a
    matplotlib Figure or PNG bytes) is the move's probes chart, kept as ``ping.png``. Secrets are scrubbed;
    nothing in the page is fetched from the network.
    """
    import jinja2
    import markupsafe

    run_dir = Path(run_dir)
    data = data if data is not None else (rec.load(run_dir) or {})
    notebook = Path(notebook) if notebook else run_dir / "run.ipynb"
    kind, outcome = str(data.get("kind") or "run"), str(data.get("outcome") or "UNKNOWN")
    chart = ping_png(run_dir, ping_chart, notebook) if data.get("ping") else None
    parts = sections(data, run_dir, chart)
    if with_code and notebook.is_file():
        parts = [*parts, *[x for x in [_code_appendix(notebook)] if x]]
    word = outcome_word(kind, outcome)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True)
    env.filters["text"] = lambda value: markupsafe.Markup(text(value))  # element text: quotes as written
    page = env.get_template("runbook_report.html.j2").render(
        r=data, word=word, css=banner_class(outcome), error=error_line(data), figures=key_figures(data),
        sections=parts, lab=data.get("lab") is True,
        title=f"{word}: {kind} {data.get('change_id') or data.get('run_id') or ''}".strip())
    target = run_dir / "report.html"
    rec.write_atomic(target, scrub(visible_bidi(page)))
    if notebook.is_file() and notebook.parent == run_dir:
        source = notebook.read_text()
        clean = scrub(source)
        if clean != source:
            rec.write_atomic(notebook, clean)
    return target


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

