"""Run directories under reports/: one per run, never reused."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A change id as a directory name: letters, digits, dot, dash, underscore."""
    return _SAFE.sub("-", text).strip("-.")[:80]


def make_run_dir(reports_dir: Path, change_id: str | None = None) -> Path:
    """Create ``reports/YYYY-MM-DD/<change-id or run>-HHMMSS`` (``-2``, ``-3`` ... if taken): a new
    directory for every run, so running the same change id again never overwrites a record."""
    now = dt.datetime.now(dt.timezone.utc)
    day = Path(reports_dir) / now.strftime("%Y-%m-%d")
    day.mkdir(parents=True, exist_ok=True)
    stem = f"{(safe_name(change_id) if change_id else '') or 'run'}-{now.strftime('%H%M%S')}Z"
    for n in range(1, 10_000):
        path = day / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run directory under {day}")
