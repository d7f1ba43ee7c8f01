"""Helpers for the notebooks: the first cell's request, events as they come, one-line errors, tables.

Notebooks stay thin: the parameters cell, then ``request, context = notebook.begin("migrate", globals())``
(the same validation as the CLI's, papermill's strings read as a person means them), then one engine call
with ``on_event=notebook.show``, then cells that display what the result holds.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

import pandas as pd

from runbook.errors import RunbookError


class StopHere(Exception):
    """Stops *Run All* at this cell quietly: its message is shown as one plain line of instruction, no error
    box, no traceback (the kernel still answers "error", which is what stops the cells below)."""


def setup() -> None:
    """Show the runbook's log lines in the notebook, its own errors as one red line, no traceback, and a
    :class:`StopHere` as one plain line."""
    logger = logging.getLogger("runbook")
    if not any(getattr(h, "_runbook", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler._runbook = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.max_colwidth", 80)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((RunbookError, StopHere), _one_line)
        # The runbook's charts are plain matplotlib Figures (no pyplot state): say how they display, or
        # display(fig) shows only a repr until some pyplot figure happens to load the inline backend.
        from matplotlib.figure import Figure

        shell.display_formatter.formatters["image/png"].for_type(Figure, _figure_png)


def _figure_png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    return buf.getvalue()


def _one_line(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    if issubclass(etype, StopHere):
        print(value, flush=True)
        return []
    line = f"\x1b[1;31m{etype.__name__}: {value}\x1b[0m"
    shell._showtraceback(etype, value, [line])
    return [line]


def gib(n: float | int | None) -> float | None:
    return None if n is None or pd.isna(n) else round(float(n) / 2**30, 1)


#: Columns that hold names of vCenter objects: shown as people wrote them (``a%2fb`` is ``a/b``).
NAME_COLUMNS = frozenset({"name", "vm", "host", "cluster", "datacenter", "datastore", "port_group", "hosts",
                          "datastores", "networks", "port_groups", "vms"})


def readable(df: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """A table for people: names as people wrote them, lists joined with commas, bytes in GiB."""
    from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype

    from runbook.vsphere.find import display_name

    def shown(v: Any) -> Any:  # a name column's cell (one call per cell: inventories have 45,000 rows)
        if isinstance(v, str):
            return display_name(v) if "%" in v else v
        if isinstance(v, (list, tuple)):
            return ", ".join(display_name(x) if isinstance(x, str) else str(x) for x in v)
        return v

    def joined(v: Any) -> Any:
        return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v

    out = df[columns].copy() if columns else df.copy()
    for col in list(out.columns):
        if col.endswith("_bytes"):
            out[col.replace("_bytes", "_gib")] = out.pop(col).map(gib)
            continue
        if is_numeric_dtype(out[col]) or is_datetime64_any_dtype(out[col]):  # no names, no lists
            continue
        out[col] = out[col].map(shown if col in NAME_COLUMNS else joined)
    return out


_STATUS_COLOURS = {"pass": "#d8f0dc", "warn": "#fff1c2", "fail": "#f8d4d1", "skip": "#eeeeee"}


def styled_checks(df: pd.DataFrame) -> Any:
    """The checks table coloured by status (plain HTML: it survives the static report). Every cell is
    HTML-escaped: what a check found quotes names from the vCenter, which may hold markup."""
    def colour(row: pd.Series) -> list[str]:
        return [f"background-color: {_STATUS_COLOURS.get(row['status'], '#fff')}"] * len(row)

    return (df.style.format(escape="html").format_index(escape="html", axis=1)
            .apply(colour, axis=1).hide(axis="index")
            .set_properties(**{"text-align": "left", "vertical-align": "top"})
            .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}]))


def placement_table(before: dict[str, Any] | None, after: dict[str, Any] | None) -> pd.DataFrame:
    """Before / after, side by side: host, VM home, each disk's datastore and format, each NIC's port group."""
    def flat(p: dict[str, Any] | None) -> dict[str, Any]:
        if not p:
            return {}
        row = {"host": p["host"], "resource pool": p.get("resource_pool"), "VM home": p["home_datastore"]}
        for d in p["disks"]:
            row[f"{d['label']}"] = f"{d['datastore']} ({d['format']}, {gib(d['capacity_bytes'])} GiB)"
        for n in p["nics"]:
            row[f"{n['label']}"] = n["port_group"]
        for c in p["cdroms"]:
            row[f"{c['label']}"] = c["iso"] or c["kind"]
        return row

    b, a = flat(before), flat(after)
    keys = list(dict.fromkeys([*b, *a]))
    return pd.DataFrame({"before": [b.get(k) for k in keys], "after": [a.get(k, "-") for k in keys],
                         "changed": [b.get(k) != a.get(k) if a else None for k in keys]}, index=keys)


def wait_for_input(namespace: dict[str, Any], instruction: str) -> None:
    """Run by hand with no VM given: stop *Run All* here with ``instruction`` as one quiet line. A headless
    run (``run_context`` set by ``runbook``) goes on, and its first cell refuses as the command line does."""
    if str(namespace.get("vm") or "").strip() or namespace.get("run_context"):
        return
    setup()
    raise StopHere(instruction)


def begin(kind: str, namespace: dict[str, Any]) -> tuple[Any, Any]:
    """The request of this notebook's parameters (validated) and the run's context.

    ``namespace`` is the notebook's ``globals()``: the request's fields are read from it by name, and
    ``run_context`` (the pipeline's context file; empty when run by hand) gives where the record goes.
    """
    from runbook.engine import context as ctx
    from runbook.engine.requests import build, request_class

    setup()
    cls = request_class(kind)
    values = {p.name: namespace[p.name] for p in cls.params() if p.name in namespace}
    context = ctx.load(namespace.get("run_context") or None)
    return build(cls, values), context


def show(event: Any) -> None:
    """Print an event as it comes (the notebook's sink): checks, progress, probes, the outcome."""
    text = event.line()
    if text:
        print(text, flush=True)


def sink(context: Any = None) -> Any:
    """The notebook's events printer: progress every 10 %, probe figures every 5 s. When a front follows the
    run live (the ``runbook`` command reads ``events.jsonl``), the notebook prints only the outcome, so that
    the report built from it is not a second copy of the terminal's log."""
    from runbook.engine.events import printer

    return printer(lambda text: print(text, flush=True), quiet=bool(getattr(context, "events_file", False)))
