"""The headless pipeline every runbook goes through: papermill into a run directory, then an HTML
change record, a JSON record, and the reports index.

``run_notebook("inventory", {"cluster": "Cluster-A"})`` is what ``runbook inventory --cluster
Cluster-A`` does; the CLI only turns options into this call. Every call leaves a run directory with
``record.json`` and ``report.html`` (and ``run.ipynb`` once the notebook started), whatever happened.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
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


def _ipc_kernel_manager(socket_dir: Path) -> type:
    """A kernel manager that talks to the kernel over Unix sockets in a private directory.

    Over TCP (the default) every ipykernel prints "Kernel is running over TCP without encryption" to
    stderr; over IPC the channels are files only this user can open, and the warning has no cause.
    """
    from jupyter_client import AsyncKernelManager

    class _IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(socket_dir / "kernel")

    return _IPCKernelManager


def run_notebook(kind: str, parameters: dict[str, Any], *, change_id: str | None = None,
                 with_code: bool = False, reports_dir: Path | None = None) -> RunResult:
    """Execute a runbook headless and leave its change record; never raises for a failed run.

    Raises :class:`BadInput` only for an unknown runbook ``kind``; bad parameters, a notebook error, a
    dead kernel all end as a FAILED record (with the exit code of the error) and its report.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = notebook_path(kind)
    parameters = {k: v for k, v in parameters.items() if v is not None}
    if change_id:
        parameters["change_id"] = change_id
    reports_dir = Path(reports_dir or rec.default_reports_dir())
    run_dir = make_run_dir(reports_dir, change_id)
    output = run_dir / "run.ipynb"
    failure: dict[str, Any] | None = None
    with _env(rec.VIA_ENV, "headless"):
        # The record exists before anything can fail, so even a kernel that never starts leaves one.
        rec.RunRecord(kind=kind, run_dir=run_dir, run_id=run_dir.name, change_id=change_id or None,
                      parameters=parameters).save()
        try:
            validate_parameters(notebook, parameters)
        except BadInput as exc:
            failure = {"type": type(exc).__name__, "message": str(exc)}
        if failure is None:
            log.info("running %s into %s", notebook.name, run_dir)
            with contextlib.ExitStack() as stack:
                stack.enter_context(_env(rec.RUN_DIR_ENV, str(run_dir.resolve())))
                stack.enter_context(_env("RUNBOOK_REPORTS", str(reports_dir.resolve())))
                sockets = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runbook-kernel-")))
                try:
                    papermill.execute_notebook(
                        str(notebook), str(output), parameters=parameters, kernel_name="python3",
                        progress_bar=False, log_output=False, cwd=str(notebook.parent),
                        request_save_on_cell_execute=True,
                        kernel_manager_class=_ipc_kernel_manager(sockets))
                except PapermillExecutionError as exc:
                    failure = {"type": exc.ename, "message": exc.evalue, "cell": exc.exec_count}
                except Exception as exc:  # the kernel died, a cell timed out, the output could not be written
                    failure = {"type": type(exc).__name__, "message": str(exc)}
        data = finish_record(kind, run_dir, parameters, change_id, failure)
    from .report import write_html, write_index

    html = write_html(run_dir, data, with_code=with_code)
    write_index(reports_dir)
    return RunResult(run_dir=run_dir, html=html, notebook=output, record=data,
                     exit_code=int(data.get("exit_code", errors.EXIT_FAILED)))


_OUTCOME_OF_ERROR = {"ChecksFailed": "CHECKS FAILED", "TaskTimeout": "TIMED OUT", "OutcomeUnknown": "UNKNOWN"}


def exit_code_for_error(ename: str) -> int:
    """The exit code of a runbook error by its class name (EXIT_FAILED for anything else)."""
    cls = getattr(errors, ename, None)
    if isinstance(cls, type) and issubclass(cls, errors.RunbookError):
        return cls.exit_code
    return errors.EXIT_FAILED


def _first_line(text: Any, default: str) -> str:
    text = str(text or "").strip()
    return text.splitlines()[0].strip() if text else default


def _failed_step(run_dir: Path, exec_count: int | None) -> str | None:
    """The heading of the notebook section whose cell failed: where the run stopped, in words."""
    import nbformat

    if exec_count is None:
        return None
    try:
        nb = nbformat.read(run_dir / "run.ipynb", as_version=4)
    except Exception:
        return None
    heading = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    heading = line.lstrip("#").strip()
                    break
        elif cell.get("execution_count") == exec_count:
            return heading
    return None


def finish_record(kind: str, run_dir: Path, parameters: dict[str, Any], change_id: str | None,
                  failure: dict[str, Any] | tuple[str, str] | None) -> dict[str, Any]:
    """Complete the record the notebook left (or write one if it left none), with the outcome.

    ``failure`` is what stopped the notebook: ``{"type", "message", "cell"?}`` (or ``(type, message)``).
    An outcome the notebook already recorded (CHECKS FAILED, TIMED OUT, FAILED ...) is kept; a run that
    stopped on an error before recording one is FAILED, with the error's exit code.
    """
    data = rec.load(run_dir)
    record = rec.RunRecord(kind=kind, run_dir=run_dir, run_id=run_dir.name, change_id=change_id or None,
                           parameters=parameters, data=data or {})
    if isinstance(failure, tuple):
        failure = {"type": failure[0], "message": failure[1]}
    if failure:
        ename = str(failure.get("type") or "Error")
        evalue = _first_line(failure.get("message"), ename)
        error = {"type": ename, "message": evalue}
        step = _failed_step(run_dir, failure.get("cell"))
        if failure.get("cell") is not None:
            error["cell"] = int(failure["cell"])
        if step:
            error["step"] = step
        outcome = record.data.get("outcome")
        if outcome in (None, "RUNNING", "SUCCEEDED"):
            outcome = _OUTCOME_OF_ERROR.get(ename, "FAILED")
            summary = f"{ename}: {evalue}" + (f" (at step: {step})" if step else "")
        else:
            summary = record.data.get("summary") or f"{ename}: {evalue}"
        code = exit_code_for_error(ename) if outcome == "FAILED" else rec.EXIT_OF_OUTCOME[outcome]
        record.finish(outcome, summary, error=error, exit_code=code)
    else:
        outcome = record.data.get("outcome", "RUNNING")
        if outcome == "RUNNING":
            outcome = "SUCCEEDED"
        code = record.data.get("exit_code")
        record.finish(outcome, record.data.get("summary", ""),
                      exit_code=code if code is not None else rec.EXIT_OF_OUTCOME[outcome])
    return record.data
