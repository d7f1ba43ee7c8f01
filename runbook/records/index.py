"""The reports index: every change record under ``reports/`` in one page that sorts and filters offline.

``list_runs()`` reads every ``record.json`` into a DataFrame (``runbook reports`` prints it);
``write_index()`` writes ``reports/index.html``: when, kind, VM or target (a wave's VM count), the outcome
word of its kind, change id, the vCenter's host with a LAB badge for runs against the lab, duration and
link. Click a header to sort; type in the box or pick a kind or outcome to filter. The script and style are
inline: the page fetches nothing.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from runbook.records import record as rec
from runbook.records.blocks import banner_class, visible_bidi
from runbook.records.record import outcome_word, scrub
from runbook.vsphere.find import display_name

log = logging.getLogger("runbook")

_TEMPLATES = Path(__file__).parent / "templates"
_COLUMNS = ["started", "change_id", "kind", "vm", "target", "move", "outcome", "outcome_word", "vm_count",
            "vcenter", "lab", "probes_lost", "longest_outage_ms", "duration_s", "report"]


def list_runs(reports_dir: Path | None = None) -> pd.DataFrame:
    """Every run under ``reports/`` (one row per ``record.json``), newest first. A wave's own VMs (their
    records under the wave's ``moves/``) are not rows: the wave is, with its VM count.

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
    df["vm_count"] = df["vm_count"].astype("Int64")
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
    moves = data.get("moves") if isinstance(data.get("moves"), list) else None
    outcome = data["outcome"] or "UNKNOWN"
    return {
        "started": data["started"], "change_id": _text(data.get("change_id")), "kind": data["kind"],
        "vm": _name(_text(plan.get("vm")) or _text(params.get("vm"))), "target": _target(data, plan, params),
        "move": _text(data.get("move")), "outcome": outcome, "outcome_word": outcome_word(data["kind"], outcome),
        "vm_count": len(moves) if moves is not None else None, "vcenter": _host(data.get("vcenter")),
        "lab": data.get("lab") if isinstance(data.get("lab"), bool) else None,
        "probes_lost": _number(ping.get("probes_lost"), int),
        "longest_outage_ms": _number(ping.get("longest_outage_ms")), "duration_s": _duration(data),
        "report": (path.parent.relative_to(reports_dir) / "report.html").as_posix(),
    }


def _target(data: dict[str, Any], plan: dict[str, Any], params: dict[str, Any]) -> str:
    """Where the run aimed: a move's target host / datastore, a wave's words, an inventory's scope."""
    kind = data.get("kind")
    if kind in ("migrate", "check"):
        host = _text(plan.get("run_host")) or _text(params.get("target_host"))
        store = _text(plan.get("target_datastore")) or _text(params.get("target_datastore"))
        return " / ".join(_name(x) for x in (host, store) if x)
    if kind == "wave":
        figures = dict(f for f in data.get("figures") or [] if isinstance(f, list) and len(f) == 2)
        return _text(figures.get("Wave")) or _text(_mapping(data.get("wave")).get("kind"))
    if kind == "inventory":
        scope = [_name(_text(params.get(k))) for k in ("datacenter", "cluster") if _text(params.get(k))]
        return " / ".join(scope) or "all"
    if kind == "enable-vmotion":
        hosts = params.get("hosts") if isinstance(params.get("hosts"), list) else []
        return _name(_text(params.get("cluster"))) or ", ".join(_name(str(h)) for h in hosts)
    return ""


def _host(url: Any) -> str:
    """The vCenter's host (and port, when not the default) from its recorded address."""
    if not isinstance(url, str) or not url:
        return ""
    try:
        parts = urlsplit(url)
        return parts.netloc.rsplit("@", 1)[-1] or url
    except ValueError:
        return url


def _name(value: Any) -> str:
    return display_name(str(value)) if value else ""


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


def _when(started: str) -> str:
    """``2026-12-01 20:02:01`` from the record's ISO time (the full time stays the sort key)."""
    return started.replace("T", " ")[:19] if len(started) >= 19 else started


def write_index(reports_dir: Path | None = None) -> Path:
    """Regenerate ``reports/index.html`` (atomically), listing every run; a record that cannot be read is
    named at the end of the page and in one warning line."""
    import jinja2

    reports_dir = Path(reports_dir or rec.default_reports_dir())
    runs = list_runs(reports_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True)
    rows = []
    for r in runs.itertuples():
        duration = None if r.duration_s is None or pd.isna(r.duration_s) else float(r.duration_s)
        what = r.vm or ""
        if r.kind == "wave" and not pd.isna(r.vm_count):
            what = f"{int(r.vm_count):,} VM{'s' if int(r.vm_count) != 1 else ''}"
        rows.append({"started": r.started, "when": _when(r.started), "change_id": r.change_id, "kind": r.kind,
                     "what": what, "target": r.target, "move": r.move, "outcome": r.outcome, "word": r.outcome_word,
                     "css": banner_class(r.outcome), "vcenter": r.vcenter, "lab": r.lab is True,
                     "duration": "" if duration is None else f"{duration:,.1f} s",
                     "duration_sort": "" if duration is None else f"{duration:.3f}",
                     "report": "./" + r.report})  # "./": a directory named "javascript:..." stays a relative path
    skipped = [f"{path.relative_to(reports_dir).as_posix()}: {why}" for path, why in runs.attrs.get("skipped", [])]
    for line in skipped:
        log.warning("the reports index skips %s", line)
    page = env.get_template("reports_index.html.j2").render(
        runs=rows, skipped=skipped, generated=rec.iso(rec.utcnow()),
        kinds=sorted({r["kind"] for r in rows}), words=sorted({r["word"] for r in rows}))
    target = reports_dir / "index.html"
    rec.write_atomic(target, scrub(visible_bidi(page)))
    return target
