"""The headless front: a request run as its notebook under papermill, followed live, into a run directory.

``run_notebook(request)`` is what ``runbook migrate ...`` does once the CLI has validated the options:
it makes the run directory, writes the run's context there (``context.json``, passed to the notebook as
``run_context``), executes the notebook with a kernel of this same interpreter, streams the events the
engine writes to ``events.jsonl``, and renders ``report.html`` from the executed notebook. The record
itself is the engine's (in the kernel); this front only settles a record that a dead or killed kernel
left RUNNING, with the same recorder.

SIGINT and SIGTERM are forwarded to the kernel: the engine there cancels the vCenter task and finalises
the record. A kernel that does not end within ``GRACE_S`` is killed, and the record is settled
from what the vCenter reports.

``prestart()`` starts the kernel ahead of its run (launching it takes a tenth of a second; it then boots,
about two seconds, while the front prepares the run): a front calls it once the request's names are
known to exist (a refusal never starts a kernel), then passes it to ``run_notebook(..., kernel=)``.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runbook import errors
from runbook._imports import skip_iri_grammar
from runbook.engine.context import CONTEXT_FILE, RunContext
from runbook.engine.events import EVENTS_FILE, Notice, Sink, follow
from runbook.engine.interrupt import signals_handled
from runbook.engine.requests import Request
from runbook.engine.result import RunResult
from runbook.errors import BadInput
from runbook.records import record as rec
from runbook.records.recorder import first_line as _first_line

log = logging.getLogger("runbook")
skip_iri_grammar()  # before papermill brings in jsonschema

NOTEBOOKS = {"inventory": "inventory.ipynb", "check": "check.ipynb", "migrate": "migrate.ipynb",
             "enable-vmotion": "enable_vmotion.ipynb"}
CONTEXT_PARAMETER = "run_context"  # the one notebook parameter that is not a request field
GRACE_S = 60.0  # after an interrupt, how long the kernel may take to cancel and record before it is killed


def notebooks_dir() -> Path:
    env = os.environ.get("RUNBOOK_NOTEBOOKS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "notebooks"


def notebook_path(kind: str) -> Path:
    if kind not in NOTEBOOKS:
        raise BadInput(f"unknown runbook {kind!r}; choose one of {', '.join(NOTEBOOKS)}")
    return notebooks_dir() / NOTEBOOKS[kind]


def _kernel_manager(socket_dir: Path, started: list, prestarted: Kernel | None = None) -> type:
    """A kernel manager for a kernel of this interpreter, over Unix sockets in a private directory.

    Over TCP every ipykernel prints "Kernel is running over TCP without encryption"; over IPC the channels
    are files only this user can open. The kernel is ``sys.executable``, so a plain (non-editable)
    install runs its own notebooks whatever kernelspecs the machine has.
    """
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class _RunbookKernelManager(AsyncKernelManager):
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            km = prestarted.take() if prestarted is not None else None
            return km if km is not None else super().__new__(cls)  # a kernel started ahead is used as is

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(socket_dir / "kernel")
            started.append(self)

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                    f"--IPKernelApp.exec_lines={_KERNEL_LINE}"],
                              display_name="runbook", language="python", env={}, interrupt_mode="signal")

    return _RunbookKernelManager


EXTRA_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]  # what nbclient gives the kernels it starts
#: Imported by a kernel started ahead while it boots (the notebooks' first cells import them): that second
#: overlaps the front's own preparation instead of following it. No name is left in the notebook.
PRELOAD = ("pandas", "pyVmomi", "runbook.engine.relocation", "runbook.fronts.notebook")
#: Run first by every kernel of a run (runbook/fronts/kernelside.py): no IRI grammar, no shutdown-race traceback.
_KERNEL_LINE = "import runbook.fronts.kernelside as _runbook_s; _runbook_s.prepare(); del _runbook_s"
_PRELOAD_LINE = (f"{_KERNEL_LINE}; import importlib as _runbook_i; "
                 f"[_runbook_i.import_module(m) for m in {PRELOAD!r}]; del _runbook_i")


class Kernel:
    """A kernel started ahead of its run (:func:`prestart`): used by ``run_notebook``, or discarded."""

    def __init__(self) -> None:
        self.sockets = Path(tempfile.mkdtemp(prefix="runbook-kernel-"))
        self.managers: list = []
        self._km: Any = None
        from jupyter_core.utils import run_sync

        km = _kernel_manager(self.sockets, self.managers)(kernel_name="python3")
        # In this thread's event loop, the one nbclient runs in later: the manager's futures and sockets stay
        # usable. start_kernel returns once the process is launched; the kernel boots meanwhile.
        run_sync(km.start_kernel)(extra_arguments=[*EXTRA_ARGUMENTS, f"--IPKernelApp.exec_lines={_PRELOAD_LINE}"],
                                  cwd=str(notebooks_dir()))
        self._km = km

    def take(self) -> Any:
        """The started kernel's manager, once (None after)."""
        km, self._km = self._km, None
        return km

    def discard(self) -> None:
        """Shut the kernel down if no run took it; remove its socket directory."""
        km = self.take()
        if km is not None:
            from jupyter_core.utils import run_sync

            with contextlib.suppress(Exception):
                run_sync(km.shutdown_kernel)(now=True)
            with contextlib.suppress(Exception):
                run_sync(km.cleanup_resources)()
        shutil.rmtree(self.sockets, ignore_errors=True)


def prestart() -> Kernel | None:
    """Start the kernel for a run now (see the module's docstring); None if it cannot be (the run then
    starts its own). Call it only for a request that will run: the kernel is discarded, not reused."""
    try:
        kernel = Kernel()
    except Exception as exc:  # the run starts its own kernel and reports what is wrong with it
        log.debug("no kernel started ahead: %s", exc)
        return None
    atexit.register(kernel.discard)
    return kernel


def _kernel_pid(managers: list) -> int | None:
    for km in managers:
        provisioner = getattr(km, "provisioner", None)
        pid = getattr(provisioner, "pid", None) or getattr(getattr(provisioner, "process", None), "pid", None)
        if pid:
            return int(pid)
    return None


@contextlib.contextmanager
def _forward_signals(managers: list, interrupted: list[str]) -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the kernel (the engine then ends the run truthfully); if it is not
    done within GRACE_S it is killed and the record settled here."""
    killer: list[threading.Timer] = []

    def kill() -> None:
        pid = _kernel_pid(managers)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def handler(signum: int, frame: Any) -> None:
        interrupted.append(signal.Signals(signum).name)
        pid = _kernel_pid(managers)
        if pid:  # the same signal: the engine in the kernel turns either into a cancel and a true record
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
        if not killer:
            killer.append(threading.Timer(GRACE_S, kill))
            killer[0].daemon = True
            killer[0].start()

    try:
        with signals_handled(handler):
            yield
    finally:
        for timer in killer:
            timer.cancel()


def _engine() -> str:
    """papermill's engine, writing the executed notebook once: when the run ends, or when it stopped because
    the kernel died or could not start (what ran so far). papermill's own writes the whole notebook at every
    cell's start and end: an inventory of 45,000 VMs holds megabytes of outputs, 37 writes of which cost
    seconds of this process's CPU while the kernel needed it."""
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.iorw import write_ipynb

    class _WrittenAtEnd(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None, **kwargs: Any) -> Any:
            try:  # papermill writes the notebook once after a normal end, and after a cell's error
                return super().execute_notebook(nb, kernel_name, output_path=None, **kwargs)
            except BaseException:
                if output_path:
                    with contextlib.suppress(Exception):
                        write_ipynb(nb, output_path)
                raise

    papermill_engines.register(_ENGINE, _WrittenAtEnd)
    return _ENGINE


_ENGINE = "runbook"


def run_notebook(request: Request, *, context: RunContext | None = None, on_event: Sink | None = None,
                 kernel: Kernel | None = None) -> RunResult:
    """Run ``request`` as its notebook; return how it ended (the exit code is the record's outcome's).

    ``kernel`` is one from :func:`prestart` (used, or discarded if the run does not start).
    Raises the refusal (BadInput, NotFound, ConnectionFailed...) when the engine refused the request before
    a record existed; the run directory is then removed: a refusal leaves no change record.
    """
    try:
        return _run_notebook(request, context, on_event, kernel)
    finally:
        if kernel is not None:
            kernel.discard()


def _run_notebook(request: Request, context: RunContext | None, on_event: Sink | None,
                  kernel: Kernel | None) -> RunResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from runbook.records.rundir import make_run_dir

    context = (context or RunContext(via="headless")).replace(report=False, events_file=True)
    notebook = notebook_path(request.kind)
    reports_dir = context.resolved_reports_dir()
    try:
        run_dir = make_run_dir(reports_dir, request.change_id or None)
    except OSError as exc:
        raise BadInput(f"the reports directory {str(reports_dir)!r} cannot hold a run ({exc.strerror or exc}): "
                       f"give a writable directory with --reports DIR or RUNBOOK_REPORTS") from None
    context = context.replace(run_dir=run_dir.resolve())
    context_file = context.save(run_dir / CONTEXT_FILE)
    parameters = {**request.to_params(), CONTEXT_PARAMETER: str(context_file)}
    output = run_dir / "run.ipynb"
    failure: dict[str, Any] | None = None
    interrupted: list[str] = []
    managers: list = kernel.managers if kernel is not None else []
    log.info("running %s into %s", notebook.name, run_dir)
    with contextlib.ExitStack() as stack:
        sockets = kernel.sockets if kernel is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="runbook-kernel-")))
        if on_event is not None:
            stack.enter_context(follow(run_dir / EVENTS_FILE, on_event))
        stack.enter_context(_forward_signals(managers, interrupted))
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, progress_bar=False, log_output=False,
                cwd=str(notebook.parent), request_save_on_cell_execute=True, engine_name=_engine(),
                kernel_manager_class=_kernel_manager(sockets, managers, kernel))
        except PapermillExecutionError as exc:
            failure = {"type": exc.ename, "message": _first_line(exc.evalue, exc.ename), "cell": exc.exec_count}
        except Exception as exc:  # the kernel died or was killed, the output could not be written
            failure = {"type": type(exc).__name__, "message": _first_line(str(exc), type(exc).__name__)}
    with contextlib.suppress(OSError):
        output.chmod(0o600)
    data = rec.load(run_dir)
    if data is None:
        return _no_record(request, context, run_dir, failure, interrupted)
    if data.get("outcome") == "RUNNING":
        data = _settle(run_dir, interrupted, failure)
    notices = [] if failure is None or _is_refusal(failure) or not failure.get("type") else [
        f"the notebook stopped on {failure['type']}: {failure['message']} (the record holds the run's outcome)"]
    report = _render(run_dir, data, context, notices)
    for text in notices:
        if on_event is not None:
            on_event(Notice("warning", text))
    return RunResult(record=data, exit_code=int(data.get("exit_code", rec.EXIT_OF_OUTCOME.get(
        str(data.get("outcome")), errors.EXIT_FAILED))), run_dir=run_dir, report=report, notebook=output,
        notices=notices)


def _is_refusal(failure: dict[str, Any]) -> bool:
    cls = getattr(errors, str(failure.get("type")), None)
    return isinstance(cls, type) and issubclass(cls, errors.RunbookError) and cls.exit_code in (
        errors.EXIT_REFUSED, errors.EXIT_CONNECTION)


def _no_record(request: Request, context: RunContext, run_dir: Path, failure: dict[str, Any] | None,
               interrupted: list[str]) -> RunResult:
    """The kernel ended before the engine made a record: a refusal (no record, the error raised), an
    interrupt before anything started, or a kernel that died: recorded as FAILED."""
    if failure and _is_refusal(failure):
        shutil.rmtree(run_dir, ignore_errors=True)
        cls = getattr(errors, str(failure["type"]))
        raise (errors.ConnectionFailed if cls.exit_code == errors.EXIT_CONNECTION else BadInput)(failure["message"])
    from runbook.records.recorder import Recorder

    recorder = Recorder(request.kind, request.to_params(), context).start()
    if interrupted:
        data = recorder.finish("CANCELLED", f"interrupted by {interrupted[0]} before the run started: nothing was "
                                            f"changed", error={"type": "Interrupted",
                                                               "message": f"interrupted by {interrupted[0]}"},
                               interrupted=interrupted[0])
    else:
        failure = failure or {"type": "Error", "message": "the notebook ended without a record"}
        data = recorder.finish("FAILED", f"{failure['type']}: {failure['message']}; the run stopped before it "
                                         f"started anything", error={k: failure[k] for k in ("type", "message")})
    return RunResult(record=data, exit_code=recorder.exit_code, run_dir=run_dir,
                     report=_render(run_dir, data, context, []), notebook=run_dir / "run.ipynb")


def _settle(run_dir: Path, interrupted: list[str], failure: dict[str, Any] | None) -> dict[str, Any]:
    from runbook.engine.settle import settle
    from runbook.vsphere.connection import settings_from_env

    settings = None
    with contextlib.suppress(Exception):
        settings = settings_from_env()
    return settle(run_dir, interrupted=interrupted[0] if interrupted else None,
                  failure={k: failure[k] for k in ("type", "message")} if failure else None, settings=settings) or {}


def _render(run_dir: Path, data: dict[str, Any], context: RunContext, notices: list[str]) -> Path | None:
    """report.html from the executed notebook, and the index; a failure is a notice, never the outcome."""
    from runbook.records import report

    html = None
    try:
        html = report.write_html(run_dir, data, with_code=context.with_code)
    except Exception as exc:
        notices.append(f"the report could not be written ({type(exc).__name__}: {exc}); record.json holds the "
                       f"outcome")
    try:
        report.write_index(run_dir.parent.parent)
    except Exception as exc:
        notices.append(f"the reports index could not be updated ({type(exc).__name__}: {exc})")
    return html

