"""Look-ups by name or managed-object id over inventory tables: one match, or a typed error.

Never "first match": zero matches raise :class:`NotFound` with the closest names, two or more raise
:class:`Ambiguous` listing the candidates with their moids.

Names as vCenter keeps them: ``ManagedEntity.name`` returns ``/``, ``\\`` and ``%`` escaped as ``%2f``,
``%5c`` and ``%25``. :func:`display_name` gives the name as people wrote it (for pages and messages),
:func:`vcenter_name` the form vCenter returns; a look-up accepts either form.
"""
from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only in annotations: a refusal at the CLI never loads pandas
    import pandas as pd

from runbook.errors import Ambiguous, BadInput, NotFound

_ESCAPED = re.compile(r"%(2f|5c|25)", re.I)
_UNESCAPE = {"2f": "/", "5c": "\\", "25": "%"}
_TO_ESCAPE = re.compile(r"%(?!(?:2f|5c|25))|[/\\]", re.I)


def display_name(name: str) -> str:
    """A name as vCenter returns it, shown as people wrote it: ``a%2fb`` is ``a/b``."""
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1).lower()], name) if "%" in name else name


def vcenter_name(name: str) -> str:
    """A name as ``ManagedEntity.name`` returns it: ``/``, ``\\`` and ``%`` escaped as ``%2f``, ``%5c`` and
    ``%25``, except a ``%`` that already starts one of these sequences (as vCenter does)."""
    escaped = _TO_ESCAPE.sub(lambda m: {"%": "%25", "/": "%2f", "\\": "%5c"}[m.group(0)], name)
    return _ESCAPED.sub(lambda m: "%" + m.group(1).lower(), escaped)


def find_row(table: pd.DataFrame, key: str, kind: str) -> pd.Series:
    """Return the one row of ``table`` whose ``moid`` or ``name`` is ``key``.

    ``kind`` ("VM", "host", "datastore", ...) names the object in error messages.
    """
    if key is None or not str(key).strip():
        raise BadInput(f"the {kind} name is empty; give a {kind} name or moid")
    key = str(key).strip()
    by_moid = table[table["moid"] == key]
    if len(by_moid) == 1:
        return by_moid.iloc[0]
    matches = table[table["name"] == key]
    if matches.empty:  # either form: "a/b" finds vCenter's "a%2fb", and "a%2fb" finds a table of display names
        wanted = display_name(vcenter_name(key))
        matches = table[table["name"].astype(str).map(lambda n: display_name(n) == wanted)]
    if len(matches) == 1:
        return matches.iloc[0]
    if len(matches) > 1:
        raise Ambiguous(kind, key, [_describe(row) for _, row in matches.iterrows()])
    names = table["name"].astype(str).tolist()
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    if not close:
        folded = [n for n in names if n.lower() == key.lower()]
        close = folded[:3]
    raise NotFound(kind, key, close)


def _describe(row: pd.Series) -> str:
    where = next((row[c] for c in ("cluster", "datacenter") if c in row and isinstance(row[c], str)), "")
    return f"{row['moid']}" + (f" (in {where})" if where else "")
