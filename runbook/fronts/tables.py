"""Big tables in a notebook and its report: the first rows on the page, every row in a CSV beside it.

An inventory of 45,000 VMs as one HTML table is a page of a hundred megabytes that no browser opens well.
:func:`page` shows the first ``limit`` rows, says how many there are, and writes the whole table as CSV into
the run's directory, next to report.html, where a spreadsheet or a CMDB import reads it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

LIMIT = 500


def page(df: pd.DataFrame, columns: list[str] | None = None, *, name: str, run_dir: Path | None = None,
         limit: int = LIMIT) -> pd.DataFrame:
    """The table for the page (at most ``limit`` rows), after writing all of it to ``run_dir/<name>.csv``."""
    from runbook.fronts.notebook import readable

    full = readable(df, columns)
    where = None
    if run_dir is not None:
        where = Path(run_dir) / f"{name}.csv"
        full.to_csv(where, index=False)
    if len(full) <= limit:
        return full
    from IPython.display import Markdown, display

    kept = f"; all of them are in `{where.name}` beside this report" if where else ""
    display(Markdown(f"*The first {limit:,} of {len(full):,} rows{kept}.*"))
    return full.head(limit)
