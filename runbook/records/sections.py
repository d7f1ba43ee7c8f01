"""The sections of a change record, built from ``record.json`` and the files the run left beside it.

One layout for every run, whatever started it (the command line, a notebook, the widgets, Python): what
went wrong (only when something did), then the kind's own sections: for a check or a move the plan, the
checks, before and after, the verification, the probes and the vCenter task with its events; for an
inventory its counts, tables and charts; for enable-vmotion the hosts. A section with nothing to show is
left out. A wave's sections are in :mod:`runbook.records.wave_report`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runbook.records.blocks import Column, Section, image, pairs, para, pre, table
from runbook.records.devices import device_item, device_name
from runbook.vsphere.find import display_name

PING_TITLE = "Ping through the move"


def error_section(data: dict[str, Any]) -> Section:
    """One section with the error's details (the banner has its one line)."""
    err = data.get("error") or {}
    section = Section("What went wrong")
    if not isinstance(err, dict) or not err:
        return section
    task = data.get("task") or {}
    section.add(pairs([("Error", err.get("type")), ("Message", err.get("message")), ("Step", err.get("step")),
                       ("Task", task.get("id") if task.get("id") not in (None, "-") else None),
                       ("Task state", task.get("state")), ("Fault", task.get("fault")),
                       ("Interrupted by", data.get("interrupted"))]))
    return section


def move_sections(data: dict[str, Any], ping_png: bytes | None) -> list[Section]:
    """A check's or a move's sections."""
    plan = data.get("plan") or {}
    sections = []
    s = Section("Plan").add(para(data.get("move")))
    if plan:
        s.add(pairs([("VM", _vm(plan)), ("Power state", plan.get("power_state")),
                     ("Migration type", {"host": "change host", "datastore": "change datastore",
                                         "both": "change host and datastore"}.get(plan.get("kind"), plan.get("kind"))),
                     ("From host", plan.get("source_host")), ("To host", plan.get("run_host")),
                     ("Datastores now", plan.get("vm_datastores")), ("Target datastore", plan.get("target_datastore")),
                     ("Resource pool", plan.get("resource_pool")), ("Priority", (plan.get("plan") or {}).get("priority")),
                     ("Forced because", data.get("force_reason"))],
                    names=("VM", "From host", "To host", "Datastores now", "Target datastore", "Resource pool")))
        files = {d.get("label"): d.get("file") for d in ((data.get("placement") or {}).get("before") or {}).get("disks") or []}
        disks = [{"disk": device_name({**d, "file": files.get(d.get("label"))}), "from": d.get("source_datastore"), "to": d.get("target_datastore"),
                  "format now": d.get("source_format"), "format after": d.get("target_format"),
                  "capacity_gib": _gib(d.get("capacity_bytes")), "moves": d.get("moves")}
                 for d in plan.get("disks") or []]
        s.add(table(disks, ["disk", Column("from", "datastore now"), Column("to", "datastore after"), "format now",
                            "format after", Column("capacity_gib", "capacity", "GiB", 1), "moves"]))
    elif data.get("parameters"):
        s.add(pairs((k, v) for k, v in data["parameters"].items() if k not in ("run_context",)))
    sections.append(s)
    sections.append(Section("Checks").add(
        para(data.get("verdict")),
        table(data.get("checks") or [], ["status", "check", "found", "remedy"], status_key="status")))
    if data.get("spec"):
        checked = data.get("kind") == "check" or not data.get("task")
        sections.append(Section("Relocation spec checked" if checked else "Relocation spec sent").add(
            para("What the vCenter's own check (CheckRelocate_Task) was given; nothing was sent to move the VM."
                 if checked else "What RelocateVM_Task was given (the vCenter's own check got the same):"),
            pre(json.dumps(data["spec"], indent=1))))
    placement = data.get("placement") or {}
    sections.append(Section("Before and after").add(
        table(_placement_rows(placement.get("before"), placement.get("after")),
              ["item", "before", "after", "changed"])))
    verification = [{**v, "item": device_item(str(v.get("item", "")), placement)} for v in data.get("verification") or []]
    sections.append(Section("Verification").add(
        para("Where the vCenter says the VM is now, against the plan.") if verification else None,
        table([{**v, "status": "pass" if v.get("ok") else "fail"} for v in verification],
              ["item", "expected", "actual", "ok"], status_key="status")))
    sections.append(ping_section(data.get("ping"), ping_png))
    task = data.get("task") or {}
    events = data.get("events") or []
    sections.append(Section("Task and vCenter events").add(
        pairs([("Task", task.get("id")), ("State", task.get("state")), ("Queued", task.get("queued")),
               ("Started", task.get("started")), ("Completed", task.get("completed")),
               ("Duration", f"{task['duration_s']:,.1f} s" if isinstance(task.get("duration_s"), (int, float)) else None),
               ("Error", task.get("error")), ("Fault", task.get("fault"))]) if task else None,
        table(events, [Column("time", "time (UTC)"), "type", "message", "user"]) if events else None))
    return sections


def ping_section(ping: dict[str, Any] | None, png: bytes | None) -> Section:
    section = Section(PING_TITLE)
    if not ping:
        return section
    section.add(para(ping.get("description") or ping.get("note")))
    if "probes_sent" in ping:
        section.add(table({k: ping.get(k) for k in ("target", "method", "interval_ms", "probes_sent", "probes_lost",
                                                    "probes_late", "loss_pct", "outages_count", "longest_outage_ms",
                                                    "total_outage_ms", "rtt_median_ms")},
                          ["target", "method", Column("interval_ms", "interval", "ms"), Column("probes_sent", "sent"),
                           Column("probes_lost", "lost"), Column("probes_late", "late"), Column("loss_pct", "loss", "%"),
                           Column("outages_count", "outages"), Column("longest_outage_ms", "longest outage", "ms"),
                           Column("total_outage_ms", "outage in all", "ms"), Column("rtt_median_ms", "median RTT", "ms")]))
    if png:
        section.add(image(png, f"Chart: {PING_TITLE}"))
    section.add(table(ping.get("outages") or [], [Column("start", "start (UTC)"), Column("duration_ms", "duration", "ms"),
                                                  "kind", Column("probes_lost", "lost"), Column("probes_late", "late"),
                                                  "phase"]))
    return section


def inventory_sections(data: dict[str, Any], run_dir: Path) -> list[Section]:
    """The counts, then each table the run saved (``<name>.csv``) with the charts drawn from them (saved by the
    run as ``<name>.png``, else drawn here)."""
    counts = data.get("inventory") or {}
    sections = [Section("What the vCenter holds").add(
        table({k: v for k, v in counts.items() if isinstance(v, int)}) if counts else None,
        para(data.get("summary")))]
    for name, title in (("hosts", "Hosts"), ("datastores", "Datastores"), ("vms", "Virtual machines"),
                        ("clusters", "Clusters"), ("networks", "Port groups"), ("vmkernel", "VMkernel adapters")):
        path = run_dir / f"{name}.csv"
        if not path.is_file():
            continue
        drawn = run_dir / f"{name}.png"  # the run drew it (charts.kept): shown as it is, not drawn again
        total = counts.get(name)
        whole = not isinstance(total, int) or (name in CHART_TABLES and not drawn.is_file())
        df = _read_table(path, None if whole else ROWS_SHOWN)  # 45,000 VMs: the rows shown, not all of them
        s = Section(title).add(csv_table(df, name, data, total=None if whole else total))
        if name in CHART_TABLES and drawn.is_file():
            s.add(image(drawn.read_bytes(), f"Chart: {title}"))
        elif name in CHART_TABLES and len(df):
            from runbook.records import charts

            try:
                s.add(image(charts.png(charts.INVENTORY[name](df)), f"Chart: {title}"))
            except (KeyError, ValueError, TypeError):  # a CSV of another shape: the table alone
                pass
        sections.append(s)
    return sections


#: The tables the inventory's charts are drawn from (``runbook.records.charts.INVENTORY``; not imported here:
#: a report whose charts were saved by its run never loads matplotlib).
CHART_TABLES = ("hosts", "datastores")


def _read_table(path: Path, rows: int | None = None) -> Any:
    """A saved table as it was written (its first ``rows`` rows if given): names stay text ("0001", "nan", "1e5"
    are names), other columns that hold only numbers are numbers."""
    import pandas as pd

    from runbook.records.blocks import NAME_KEYS

    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], nrows=rows)
    for col in df.columns:
        if col in NAME_KEYS or col in ("guest_ip", "ip", "vmotion_ips", "cpu_model"):
            continue
        try:
            df[col] = pd.to_numeric(df[col])
        except (ValueError, TypeError):
            pass
    return df


#: A saved table's columns: header and unit for those whose name does not say it.
_CSV_COLUMNS = {"capacity_gib": Column("capacity_gib", "capacity", "GiB", 1),
                "free_gib": Column("free_gib", "free", "GiB", 1),
                "provisioned_gib": Column("provisioned_gib", "provisioned", "GiB", 1),
                "committed_gib": Column("committed_gib", "committed", "GiB", 1),
                "memory_mb": Column("memory_mb", "memory", "MiB"), "vcpus": Column("vcpus", "vCPUs"),
                "vm_count": Column("vm_count", "VMs"), "host_count": Column("host_count", "hosts"),
                "disk_count": Column("disk_count", "disks")}
ROWS_SHOWN = 500


def csv_table(df: Any, name: str, data: dict[str, Any], total: int | None = None) -> str | None:
    """A saved table on the page: the first ``ROWS_SHOWN`` rows, and where all of them are (``total`` rows, the
    record's count, when ``df`` holds only the first ones)."""
    total = len(df) if total is None else total
    rows = df.head(ROWS_SHOWN).astype(object).where(df.head(ROWS_SHOWN).notna(), None).to_dict("records")
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and v.is_integer() and not k.endswith("_gib"):
                r[k] = int(v)
    cols = [_CSV_COLUMNS.get(c, Column(c)) for c in df.columns]
    shown = table(rows, cols, cls="rb-wide")
    if total > ROWS_SHOWN:
        return (shown or "") + (para(f"The first {ROWS_SHOWN:,} of {total:,} rows; all of them are in "
                                     f"{name}.csv beside this report.") or "")
    return shown


def enable_vmotion_sections(data: dict[str, Any]) -> list[Section]:
    rows = [{**h, "status": "pass" if h.get("change") == "none" or h.get("applied") else "warn"}
            for h in data.get("hosts") or []]
    return [Section("Hosts").add(table(rows, ["host", "adapter", "change", "applied", Column("before", "services before"),
                                              Column("after", "services after"), "vmotion_adapters_before",
                                              "vmotion_adapters_after", "note"]))]


def _vm(plan: dict[str, Any]) -> str | None:
    vm = display_name(plan["vm"]) if isinstance(plan.get("vm"), str) else plan.get("vm")
    return f"{vm} ({plan['vm_moid']})" if vm and plan.get("vm_moid") else vm


def _gib(value: Any) -> float | None:
    return round(value / 2**30, 1) if isinstance(value, (int, float)) else None


def _placement_rows(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    def flat(p: dict[str, Any] | None) -> dict[str, str]:
        if not p:
            return {}
        row = {"host": p.get("host"), "resource pool": p.get("resource_pool"), "VM home": p.get("home_datastore")}
        for d in p.get("disks") or []:
            row[device_name(d)] = f"{d.get('datastore')} ({d.get('format')})"
        for n in p.get("nics") or []:
            row[device_name(n)] = n.get("port_group")
        for c in p.get("cdroms") or []:
            row[device_name(c)] = c.get("iso") or c.get("kind")
        return {k: str(v) for k, v in row.items() if v is not None}

    b, a = flat(before), flat(after)
    return [{"item": k, "before": b.get(k, "-"), "after": a.get(k, "-") if after else "-",
             "changed": ("yes" if b.get(k) != a.get(k) else "no") if after else ""} for k in dict.fromkeys([*b, *a])]
