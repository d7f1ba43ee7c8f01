"""The pieces a change record's page is made of: sections, styled tables, paragraphs, charts and links.

Every value is escaped here, once: a name from the vCenter or an operator's text is shown as written, never
read as HTML. Tables are for people: units in the headers, thousands separators, no row numbers, names kept
on one line, and a table wider than the page scrolls inside its section.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.vsphere.find import display_name

#: Columns whose values are names of vCenter objects: shown as people wrote them and never wrapped.
NAME_KEYS = frozenset({"name", "vm", "host", "cluster", "datacenter", "datastore", "port_group", "hosts",
                       "datastores", "networks", "port_groups", "vms", "source_host", "target_host",
                       "target_datastore", "run_host", "resource_pool", "home_datastore", "item", "device",
                       "target", "disk"})
#: Columns kept on one line though not names: ids, times, states.
_NOWRAP_KEYS = frozenset({"task", "started", "completed", "queued", "time", "start", "status", "outcome", "state",
                          "kind", "move_kind", "adapter", "change", "record"})
_STATUS_CLASS = {"pass": "rb-pass", "warn": "rb-warnrow", "fail": "rb-failrow", "skip": "rb-skip",
                 "moved": "rb-pass", "failed": "rb-failrow", "skipped": "rb-skip", "not started": "rb-skip",
                 "cancelled": "rb-warnrow", "unknown": "rb-warnrow"}


@dataclass
class Section:
    """One titled part of a page; a section with no blocks is never shown (no empty headings)."""

    title: str
    blocks: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9-]+", "-", self.title).strip("-")

    def add(self, *blocks: str | None) -> "Section":
        self.blocks += [b for b in blocks if b]
        return self

    def __bool__(self) -> bool:
        return bool(self.blocks)


@dataclass(frozen=True)
class Column:
    """A table column: the record's key, the header people read and, for numbers, the unit and digits."""

    key: str
    header: str = ""
    unit: str = ""
    digits: int | None = None

    @property
    def title(self) -> str:
        words = self.header or " ".join(_WORDS.get(w, w) for w in self.key.split("_"))
        return f"{words} ({self.unit})" if self.unit else words


#: Words of a column's key as people write them ("evc_mode" reads "EVC mode").
_WORDS = {"cpu": "CPU", "evc": "EVC", "vmotion": "vMotion", "ip": "IP", "ips": "IPs", "vms": "VMs", "vm": "VM",
          "drs": "DRS", "ha": "HA", "os": "OS", "vcpus": "vCPUs", "rtt": "RTT", "vmks": "VMkernel adapters",
          "gib": "(GiB)", "id": "ID"}


def esc(value: Any) -> str:
    """A value for an attribute: every markup character escaped, quotes too."""
    return html.escape(str(value), quote=True)


def text(value: Any) -> str:
    """A value as the text of an element: ``<``, ``>`` and ``&`` escaped; quotes stay as written."""
    return html.escape(str(value), quote=False)


def para(value: Any, cls: str = "") -> str | None:
    """A paragraph of text (escaped), or None for no text."""
    words = str(value or "").strip()
    if not words:
        return None
    return f'<p class="{esc(cls)}">{text(words)}</p>' if cls else f"<p>{text(words)}</p>"


def pre(code: str) -> str | None:
    return f'<div class="rb-scroll"><pre>{text(code)}</pre></div>' if code and code.strip() else None


def link(href: str, words: str) -> str:
    return f'<a href="{esc(href)}">{text(words)}</a>'


def number(value: Any, digits: int | None = None) -> str:
    """``12,345``, ``1,234.5``: thousands separators; ``digits`` fixes the decimals of a float."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if digits is not None:
            return f"{value:,.{digits}f}"
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.{1 if abs(value) >= 10 else 2}f}".rstrip("0")
    return str(value)


def cell(key: str, value: Any, digits: int | None = None) -> tuple[str, str]:
    """A value as the table shows it, and its cell's class (numbers right-aligned, names on one line)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), ""
    if isinstance(value, (list, tuple)):
        shown = ", ".join(display_name(v) if key in NAME_KEYS and isinstance(v, str) else cell(key, v)[0]
                          for v in value)
        return shown, "rb-name" if key in NAME_KEYS else ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()), ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value, digits), "rb-num"
    if key in NAME_KEYS and isinstance(value, str):
        return display_name(value), "rb-name"
    return str(value), "rb-name" if key in _NOWRAP_KEYS else ""


def table(rows: Sequence[dict[str, Any]] | dict[str, Any], columns: Sequence[Column | str] | None = None, *,
          status_key: str | None = None, cls: str = "", links: dict[str, str] | None = None) -> str | None:
    """A styled HTML table of ``rows`` (dicts); None when there is nothing to show. ``columns``: which keys,
    in which order, with their headers and units (default: every key, in order of appearance).
    ``status_key``: colour each row by that column (pass, warn, fail...). ``links``: column -> key of the
    row holding the address the cell links to."""
    rows = [rows] if isinstance(rows, dict) else list(rows)
    if not rows:
        return None
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    cols = [c for c in cols if any(r.get(c.key) not in (None, "", []) for r in rows)] or cols
    head = "".join(f'<th scope="col">{text(c.title)}</th>' for c in cols)
    body = []
    for r in rows:
        status = str(r.get(status_key) or "") if status_key else ""
        tr = f'<tr class="{_STATUS_CLASS[status]}">' if status in _STATUS_CLASS else "<tr>"
        cells = []
        for c in cols:
            shown, kind = cell(c.key, r.get(c.key), c.digits)
            inner = text(shown)
            if links and c.key in links and r.get(links[c.key]):
                inner = link(str(r[links[c.key]]), shown)
            cells.append(f'<td class="{kind}">{inner}</td>' if kind else f"<td>{inner}</td>")
        body.append(tr + "".join(cells) + "</tr>")
    return (f'<div class="rb-scroll"><table class="rb-table {esc(cls)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def pairs(values: Iterable[tuple[str, Any]], names: Iterable[str] = ()) -> str | None:
    """A two-column table of label and value (a plan, a summary); ``names``: the labels whose values are
    names of vCenter objects (shown as people wrote them)."""
    names = set(names)
    rows = [(label, cell("name" if label in names else "", v)[0]) for label, v in values
            if v not in (None, "", [], {})]
    if not rows:
        return None
    body = "".join(f'<tr><th scope="row">{text(k)}</th><td>{text(v)}</td></tr>' for k, v in rows)
    return f'<div class="rb-scroll"><table class="rb-table rb-pairs"><tbody>{body}</tbody></table></div>'


def png_bytes(image: Any) -> bytes:
    """A matplotlib Figure or PNG bytes, as PNG bytes."""
    if hasattr(image, "savefig"):
        buf = io.BytesIO()
        image.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
    return bytes(image)


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<figure class="rb-chart"><img src="data:image/png;base64,{data}" alt="{esc(alt)}"></figure>'


# -- the page as a whole -------------------------------------------------------------------------------------
#: The banner's colour class per outcome (the index colours its outcome words the same way).
BANNER_CLASS = {"SUCCEEDED": "rb-ok", "NO CHANGE": "rb-ok", "DRY RUN": "rb-info", "CHECKS FAILED": "rb-fail",
                "FAILED": "rb-fail", "TIMED OUT": "rb-fail", "REFUSED": "rb-fail", "CANCELLED": "rb-warn",
                "UNKNOWN": "rb-warn", "RUNNING": "rb-warn"}

# Unicode's bidirectional overrides, embeddings and isolates ("Trojan Source"): in a name they can make a page
# show text other than what the record holds (a VM named "\u202egnp.exe" reads "exe.png"). Pages show them.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def banner_class(outcome: Any) -> str:
    return BANNER_CLASS.get(str(outcome), "rb-warn")


def visible_bidi(page: str) -> str:
    """Bidirectional control characters shown as ``[U+202E]``: a page shows what the record holds, in order.
    (The record keeps the name as the vCenter returns it; marks such as U+200F stay, they reorder nothing.)"""
    return _BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", page)
