"""A wave's change record on a page: the plan, the outcome per VM with a link to each VM's own record, the
timeline the engine saved, the outage per VM as a chart and a table, the durations and the limits kept.

Each VM's own record (``moves/NNN-vm/record.json``, written by the wave's moves) gets its own report.html
here too, so that every link of the wave's page opens a page, offline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runbook.records.blocks import Column, Section, image, pairs, para, table

_STATUS_ORDER = ("moved", "failed", "cancelled", "unknown", "skipped", "not started")


def wave_sections(data: dict[str, Any], run_dir: Path) -> list[Section]:
    wave, moves = data.get("wave") or {}, data.get("moves") or []
    links = child_reports(data, run_dir)
    sections = [_wave_section(data, wave, moves), _plan_section(data.get("plan_table") or []),
                _outcome_section(moves, links), _timeline_section(data, run_dir),
                _outage_section(moves), _limits_section(data.get("concurrency") or [], wave)]
    return sections


def child_reports(data: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """Write each VM's own report.html (from its record); the link of each VM, relative to the wave's page."""
    from runbook.records import record as rec
    from runbook.records.report import write_html

    links = {}
    for move in data.get("moves") or []:
        path = move.get("record")
        if not isinstance(path, str) or not path:
            continue
        child = (run_dir / path).parent
        if child.resolve().parent.parent != run_dir.resolve() or rec.load(child) is None:
            continue  # a record outside the wave's directory is not the wave's
        try:
            write_html(child)
            links[move["vm"]] = (Path(path).parent / "report.html").as_posix()
        except Exception:  # the VM's record.json stays the link; one page must not cost the wave its report
            links[move["vm"]] = path
    return links


def _wave_section(data: dict[str, Any], wave: dict[str, Any], moves: list[dict[str, Any]]) -> Section:
    """What kind of wave, its canary, the stop rule that fired, maintenance mode; the counts and times are the
    key figures under the banner (the engine's), or here when a record has none."""
    stop, maint = wave.get("stop") or {}, wave.get("maintenance") or {}
    counts = {s: sum(1 for m in moves if m.get("status") == s) for s in _STATUS_ORDER}
    tasks = [m["task_s"] for m in moves if isinstance(m.get("task_s"), (int, float))]
    wall = next((w for w in (wave.get("wall_s"), data.get("wall_s"), data.get("duration_s"))
                 if isinstance(w, (int, float))), None)
    figures = {str(f[0]) for f in data.get("figures") or [] if isinstance(f, (list, tuple)) and f}
    return Section("The wave").add(pairs([
        ("Kind", wave.get("kind")), ("Undoes run", wave.get("undoes")), ("Plan file", wave.get("plan_file")),
        ("VMs", None if "VMs" in figures else len(moves)),
        ("Outcome per VM", None if "Outcome per VM" in figures else
         ", ".join(f"{n:,} {s}" for s, n in counts.items() if n)),
        ("Canary (moved first, alone)", wave.get("canary")),
        ("Stopped by", f"{stop.get('rule')}: {stop.get('reason')} (at {stop.get('at')})" if stop else None),
        ("Maintenance mode", None if not maint else ("entered" if maint.get("entered") else
                                                     f"not entered: {maint.get('reason') or 'see the task'}")),
        ("Wall time", f"{wall:,.1f} s" if isinstance(wall, (int, float)) and "Wall time" not in figures else None),
        ("Task time", f"{sum(tasks):,.1f} s in all, longest {max(tasks):,.1f} s"
         if tasks and "Task time" not in figures else None)],
        names=("Canary (moved first, alone)",)))


def _plan_section(rows: list[dict[str, Any]]) -> Section:
    shown = [{**r, "target": " / ".join(str(t) for t in (r.get("target_host"), r.get("target_datastore")) if t)}
             for r in rows]
    return Section("Plan").add(
        para("Each VM's target as planned and checked before anything moved, and why that target."),
        table(shown, [Column("vm", "VM"), "source_host", Column("target", "target"), Column("move_kind", "move"),
                      "status", "verdict", "reason", "remedy"], status_key="status"))


def _outcome_section(moves: list[dict[str, Any]], links: dict[str, str]) -> Section:
    rows = []
    for m in moves:
        link = links.get(m.get("vm"))
        rows.append({"vm": m.get("vm"), "status": m.get("status"), "outcome": m.get("outcome"),
                     "target": " / ".join(str(t) for t in (m.get("target_host"), m.get("target_datastore")) if t),
                     "task": m.get("task"), "started": m.get("started"), "task_s": m.get("task_s"),
                     "duration_s": m.get("duration_s"), "summary": m.get("summary"),
                     "record": "own record" if link else None, "_link": link})
    return Section("Outcome per VM").add(
        para("moved, failed, cancelled, skipped (its checks failed) or not started (the wave stopped first); "
             "each VM's own record has its checks, placement and probes."),
        table(rows, [Column("vm", "VM"), "status", "outcome", "target", "task", Column("started", "task started (UTC)"),
                     Column("task_s", "task", "s", 1), Column("duration_s", "VM's run", "s", 1), "summary",
                     Column("record", "record")], status_key="status", links={"record": "_link"}))


def _timeline_section(data: dict[str, Any], run_dir: Path) -> Section:
    name = data.get("timeline_chart")
    section = Section("Timeline")
    path = run_dir / str(name) if isinstance(name, str) and name and "/" not in name else None
    if path is not None and path.is_file():
        section.add(para("Each VM's vCenter task from start to end, beside its longest outage; below, the moves "
                         "at once per host against the vMotion limit."),
                    image(path.read_bytes(), "Chart: Timeline of the moves"))
    return section


def _outage_section(moves: list[dict[str, Any]]) -> Section:
    measured = [m for m in moves if isinstance(m.get("outage_ms"), (int, float))]
    section = Section("Outage per VM")
    if not measured:
        return section
    rows = [{"vm": m["vm"], "outage_ms": m["outage_ms"], "probes_lost": m.get("probes_lost"),
             "probes_sent": m.get("probes_sent"), "status": m.get("status")} for m in measured]
    section.add(image(outage_chart(rows), "Chart: Outage per VM"),
                table(rows, [Column("vm", "VM"), Column("outage_ms", "longest outage", "ms"),
                             Column("probes_lost", "probes lost"), Column("probes_sent", "probes sent"), "status"]))
    return section


def outage_chart(rows: list[dict[str, Any]]) -> bytes:
    """A bar per VM: its longest outage (ms)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from runbook.records.charts import png

    fig = Figure(figsize=(9, max(2.2, 0.28 * len(rows) + 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([r["vm"] for r in rows], [r["outage_ms"] for r in rows], color="#1565c0")
    ax.invert_yaxis()
    ax.set_xlabel("longest outage (ms)")
    ax.set_title("Longest outage per VM (probes lost or answered late)", loc="left", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="y", labelsize=8)
    top = max(r["outage_ms"] for r in rows)
    ax.set_xlim(left=0, right=max(1.0, top * 1.2))
    for y, r in enumerate(rows):  # the value beside each bar: a 0 ms outage is a bar too small to see
        ax.text(r["outage_ms"], y, f" {r['outage_ms']:,.0f} ms", va="center", fontsize=8)
    if not top:
        ax.set_title("Longest outage per VM: no VM lost or was late answering a probe", loc="left", fontsize=10)
    return png(fig)


def _limits_section(peaks: list[dict[str, Any]], wave: dict[str, Any]) -> Section:
    return Section("Concurrency against the limits").add(
        para("The most each host and datastore carried at once (from the vCenter's task times), against the "
             "limit the wave kept to.") if peaks else None,
        table([{**p, "status": "fail" if p.get("peak", 0) > p.get("limit", 0) else "pass"} for p in peaks],
              ["resource", "peak", "limit"], status_key="status"))
