"""Big tables in a notebook: the first rows on the page, styled for people, every row in a CSV beside the record.

An inventory of 45,000 VMs as one HTML table is a page of a hundred megabytes that no browser opens well.
:func:`page` shows the first ``limit`` rows, says how many there are, and writes the whole table as CSV into
the run's directory, next to report.html, where a spreadsheet or a CMDB import reads it (and the record's
page shows it). The rows shown are styled: units in the headers, thousands separators, no row numbers, names
kept on one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

LIMIT = 500
#: Headers for columns whose name does not say their unit (``capacity_gib`` reads "capacity (GiB)").
_HEADERS = {"memory_mb": "memory (MiB)", "vcpus": "vCPUs", "vm_count": "VMs", "host_count": "hosts",
            "disk_count": "disks"}


def header(column: str) -> str:
    if column in _HEADERS:
        return _HEADERS[column]
    if column.endswith("_gib"):
        return column[:-4].replace("_", " ") + " (GiB)"
    return column.replace("_", " ")


def styled(df: pd.DataFrame) -> Any:
    """``df`` as people read it (a pandas Styler): every cell escaped, numbers with thousands separators and
    right-aligned, names on one line, no index, units in the headers."""
    from runbook.fronts.notebook import NAME_COLUMNS

    formats: dict[str, Any] = {}
    for col in df.columns:
        if pd.api.types.is_bool_dtype(df[col]):
            continue
        if pd.api.types.is_integer_dtype(df[col]):
            formats[col] = "{:,}"
        elif pd.api.types.is_float_dtype(df[col]):
            formats[col] = "{:,.1f}" if col.endswith("_gib") else "{:,.2f}"
    names = [c for c in df.columns if c in NAME_COLUMNS]
    numbers = list(formats)
    style = (df.style.format(formats, na_rep="", escape="html").format_index(header, axis=1, escape="html")
             .hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"}))
    if numbers:
        style = style.set_properties(subset=numbers, **{"text-align": "right", "white-space": "nowrap"})
    if names:
        style = style.set_properties(subset=names, **{"white-space": "nowrap"})
    return style.set_table_styles([{"selector": "th", "props": [("white-space", "nowrap"), ("text-align", "left")]}])


def page(df: pd.DataFrame, columns: list[str] | None = None, *, name: str, run_dir: Path | None = None,
         limit: int = LIMIT) -> Any:
    """The table for the page (at most ``limit`` rows, styled), after writing all of it to
    ``run_dir/<name>.csv``."""
    from runbook.fronts.notebook import readable

    where = None
    if run_dir is not None:
        where = Path(run_dir) / f"{name}.csv"
        if not where.exists():  # the engine saved the inventory's tables already (records.inventory_tables)
            readable(df, columns).to_csv(where, index=False)
    if len(df) <= limit:
        return styled(readable(df, columns))
    from IPython.display import Markdown, display

    kept = f"; all of them are in `{where.name}` beside this report" if where else ""
    display(Markdown(f"*The first {limit:,} of {len(df):,} rows{kept}.*"))
    return styled(readable(df.head(limit), columns))  # only the shown rows made readable
