"""Look-ups by name or managed-object id over inventory tables: one match, or a typed error.

Never "first match": zero matches raise :class:`NotFound` with the closest names, two or more raise
:class:`Ambiguous` listing the candidates with their moids.
"""
from __future__ import annotations

import difflib

import pandas as pd

from runbook.errors import Ambiguous, BadInput, NotFound


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
