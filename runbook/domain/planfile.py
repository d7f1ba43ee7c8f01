"""The moves a wave is given rather than works out: a plan file (CSV or YAML), or the moves back of a run.

A plan file has one move per row: ``vm`` and at least one of ``host`` and ``datastore``, optionally
``disk_format`` and ``network`` (``OLD=NEW;OLD2=NEW2`` in CSV, a mapping or that text in YAML). YAML is a
list of such mappings, or a mapping with a ``moves`` list. :func:`moves_back` reads the "before"
placement of a run's record (a single move's, or each VM's of a wave) into the same entries. Pure: the
engine reads the files, these functions read their text and data.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from runbook.errors import BadInput

COLUMNS = ("vm", "host", "datastore", "disk_format", "network")
_ALIASES = {"target_host": "host", "target_datastore": "datastore", "network_map": "network", "format": "disk_format"}


def parse(text: str, name: str = "plan") -> list[dict[str, Any]]:
    """The entries of a plan file's text; YAML when ``name`` ends in .yaml/.yml, else CSV."""
    if name.lower().endswith((".yaml", ".yml")):
        rows = _yaml(text, name)
    else:
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    entries, problems = [], []
    for number, row in enumerate(rows, start=1):
        try:
            entries.append(_entry(row, number))
        except BadInput as exc:
            problems.append(str(exc))
    if problems:
        raise BadInput(f"plan {name}: " + "; ".join(problems))
    if not entries:
        raise BadInput(f"plan {name} lists no moves: give one row per VM (columns {', '.join(COLUMNS)})")
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        if entry["vm"] in seen:
            raise BadInput(f"plan {name}: VM {entry['vm']!r} is in rows {seen[entry['vm']]} and {number}: keep one")
        seen[entry["vm"]] = number
    return entries


def to_yaml(entries: list[Mapping[str, Any]]) -> str:
    """A plan file (YAML) of ``entries`` (``vm``, ``host``, ``datastore``, ``disk_format``, ``network`` as a
    mapping) that :func:`parse` reads back to the same moves: YAML quotes any name, markup or separators
    included, where CSV's ``OLD=NEW;...`` network column could not hold a port group named with ``;``."""
    import yaml

    moves = [{"vm": str(e["vm"]), **({"host": str(e["host"])} if e.get("host") else {}),
              **({"datastore": str(e["datastore"])} if e.get("datastore") else {}),
              "disk_format": str(e.get("disk_format") or "same"),
              **({"network": {str(k): str(v) for k, v in e["network"].items()}} if e.get("network") else {})}
             for e in entries]
    return yaml.safe_dump(moves, sort_keys=False, allow_unicode=True)


def _yaml(text: str, name: str) -> list[Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"plan {name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(data, Mapping) and "moves" in data:
        data = data["moves"]
    if not isinstance(data, list):
        raise BadInput(f"plan {name} must be a list of moves (vm, host, datastore, disk_format, network)")
    return data


def _entry(row: Any, number: int) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise BadInput(f"row {number} is not a mapping of {', '.join(COLUMNS)}")
    clean = {_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in row.items() if k is not None}
    unknown = sorted(set(clean) - set(COLUMNS))
    if unknown:
        raise BadInput(f"row {number} has unknown column{'' if len(unknown) == 1 else 's'} {', '.join(unknown)}; columns: {', '.join(COLUMNS)}")
    text = {k: ("" if clean.get(k) is None else str(clean.get(k)).strip()) for k in COLUMNS if k != "network"}
    if not text["vm"]:
        raise BadInput(f"row {number} names no VM")
    if not text["host"] and not text["datastore"]:
        raise BadInput(f"row {number} ({text['vm']}) gives neither a host nor a datastore")
    return {"vm": text["vm"], "host": text["host"] or None, "datastore": text["datastore"] or None,
            "disk_format": text["disk_format"] or "same", "network": _network(clean.get("network"), number),
            "reason": f"plan row {number}"}


def _network(value: Any, number: int) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in value.items()}
    result = {}
    for part in str(value).replace(",", ";").split(";"):
        if not part.strip():
            continue
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise BadInput(f"row {number}: network entry {part.strip()!r} is not OLD=NEW")
        result[old.strip()] = new.strip()
    return result


def moves_back(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The moves that put each VM of a finished run back where the run found it (its "before" placement).

    A single move's record has ``placement.before``; a wave's has ``moves[].before`` for each VM it
    moved. A VM the run did not move is left out; one with no "before" is refused."""
    kind = record.get("kind")
    if kind == "migrate":
        placement = record.get("placement") or {}
        moved = [(placement.get("before"), placement.get("after"))] if placement.get("after") else []
    elif kind == "wave":
        moved = [(m.get("before"), m.get("after")) for m in record.get("moves") or () if m.get("status") == "moved"]
    else:
        raise BadInput(f"run {record.get('run_id')} is a {kind} run: only a migrate run or a wave can be undone")
    entries = []
    for before, after in moved:
        if not before:
            raise BadInput(f"run {record.get('run_id')} recorded no placement before its move: it cannot be undone")
        after = after or {}
        host = before.get("host") if before.get("host") != after.get("host") else None
        home = before.get("home_datastore")
        datastore = home if home and home != after.get("home_datastore") else None
        formats = {d.get("format") for d in before.get("disks") or ()}
        entries.append({"vm": before.get("vm"), "host": host, "datastore": datastore,
                        "disk_format": formats.pop() if datastore and len(formats) == 1 else "same",
                        "network": {}, "reason": f"back to where run {record.get('run_id')} found it"})
    return [e for e in entries if e["host"] or e["datastore"]]
