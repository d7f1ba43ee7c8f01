"""The headless pipeline every runbook goes through: papermill into a run directory, then an HTML
change record, a JSON record, and the reports index.

``run_notebook("inventory", {"cluster": "Cluster-A"})`` is what ``runbook inventory --cluster
Cluster-A`` does; the CLI only turns options into this call.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors, record as rec
from .errors import BadInput
from .rundir import make_run_dir

log = logging.getLogger("runbook")

NOTEBOOKS = {
    "inventory": "inventory.ipynb",
    "check": "check.ipynb",
    "migrate": "migrate.ipynb",
    "enable-vmotion": "enable_vmotion.ipynb",
}
_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list": list}


@dataclass
class RunResult:
    """Where a run left its files, how it ended, and the exit code the CLI returns."""

    run_dir: Path
    html: Path
    notebook: Path
    record: dict[str, Any]
    exit_code: int

    @property
    def outcome(self) -> str:
        return self.record.get("outcome", "UNKNOWN")


def notebook_path(kind: str) -> Path:
    if kind not in NOTEBOOKS:
        raise BadInput(f"unknown runbook {kind!r}; choose one of {', '.join(NOTEBOOKS)}")
    return notebooks_dir() / NOTEBOOKS[kind]


def notebooks_dir() -> Path:
    env = os.environ.get("RUNBOOK_NOTEBOOKS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "notebooks"


def validate_parameters(notebook: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Refuse unknown names and wrong types before anything runs (papermill checks neither)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    for name, value in parameters.items():
        if name not in declared:
            raise BadInput(f"{notebook.name} has no parameter {name!r}; it takes: {', '.join(declared)}")
        type_name = str(declared[name].get("inferred_type_name", "")).split("|")[0].strip()
        expected = _TYPES.get(type_name)
        if expected is None or value is None:
            continue
        if not isinstance(value, expected) or (type_name in ("int", "float") and isinstance(value, bool)):
            raise BadInput(f"parameter {name!r} must be {declared[name]['inferred_type_name']}, "
                           f"not {type(value).__name__} ({value!r})")
    return parameters


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def run_notebook(kind: str, parameters: dict[str, Any], *, change_id: str | None = None,
                 with_code: bool = False, reports_dir: Path | None = None) -> RunResult:
    """Execute a runbook headless and leave its change record; never raises for a failed run."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = notebook_path(kind)
    parameters = {k: v for k, v in parameters.items() if v is not None}
    if change_id:
        parameters["change_id"] = change_id
    validate_parameters(notebook, parameters)
    reports_dir = Path(reports_dir or rec.default_reports_dir())
    run_dir = make_run_dir(reports_dir, change_id)
    output = run_dir / "run.ipynb"
    failure: tuple[str, str] | None = None
    with _env(rec.RUN_DIR_ENV, str(run_dir.resolve())), _env("RUNBOOK_REPORTS", str(reports_dir.resolve())):
        try:
            papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                       kernel_name="python3", progress_bar=False, log_output=False,
                                       cwd=str(notebook.parent), request_save_on_cell_execute=True)
        except PapermillExecutionError as exc:
            failure = (exc.ename, exc.evalue)
        except Exception as exc:  # the kernel died, a cell timed out, the output could not be written
            failure = (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    data = finish_record(kind, run_dir, parameters, change_id, failure)
    from .report import write_html, write_index

    html = write_html(run_dir, data, with_code=with_code)
    write_index(reports_dir)
    return RunResult(run_dir=run_dir, html=html, notebook=output, record=data,
                     exit_code=int(data.get("exit_code", errors.EXIT_FAILED)))


_OUTCOME_OF_ERROR = {"ChecksFailed": "CHECKS FAILED", "TaskTimeout": "TIMED OUT", "OutcomeUnknown": "UNKNOWN"}
_EXIT_OF_OUTCOME = {"SUCCEEDED": errors.EXIT_OK, "DRY RUN": errors.EXIT_OK, "NO CHANGE": errors.EXIT_OK,
                    "CHECKS FAILED": errors.EXIT_REFUSED, "TIMED OUT": errors.EXIT_TIMEOUT,
                    "UNKNOWN": errors.EXIT_UNKNOWN, "FAILED": errors.EXIT_FAILED}


def exit_code_for_error(ename: str) -> int:
    cls = getattr(errors, ename, None)
    if isinstance(cls, type) and issubclass(cls, errors.RunbookError):
        return cls.exit_code
    return errors.EXIT_FAILED


def finish_record(kind: str, run_dir: Path, parameters: dict[str, Any], change_id: str | None,
                  failure: tuple[str, str] | None) -> dict[str, Any]:
    """Complete the record the notebook left (or write one if it left none), with the outcome."""
    data = rec.load(run_dir)
    record = rec.RunRecord(kind=kind, run_dir=run_dir, run_id=run_dir.name, change_id=change_id,
                           parameters=parameters, data=data or {})
    if failure:
        ename, evalue = failure
        evalue = evalue.strip().splitlines()[0] if evalue.strip() else ename
        outcome = record.data.get("outcome")
        if outcome in (None, "RUNNING", "SUCCEEDED"):
            outcome = _OUTCOME_OF_ERROR.get(ename, "FAILED")
        code = exit_code_for_error(ename) if outcome == "FAILED" else _EXIT_OF_OUTCOME[outcome]
        record.finish(outcome, record.data.get("summary") or f"{ename}: {evalue}",
                      error={"type": ename, "message": evalue}, exit_code=code)
    else:
        outcome = record.data.get("outcome", "RUNNING")
        if outcome == "RUNNING":
            outcome = "SUCCEEDED"
        record.finish(outcome, record.data.get("summary", ""),
                      exit_code=record.data.get("exit_code") or _EXIT_OF_OUTCOME.get(outcome, 1))
    return record.data
