"""``runbook app``: the migrate wizard and the inventory as a web page without code cells, served by Voila.

Operators who never open a notebook get the same widgets (:class:`runbook.fronts.widgets.Wizard`), the same
engine and the same records as everyone else; their records say ``via: "app"``.

Two halves, one concept. :func:`serve` runs in the ``runbook app`` process: it refuses early (no vCenter,
a port in use), writes the run context (``context.json``: where records go, ``via="app"``) and the page's
notebook (``notebooks/app.ipynb`` with ``run_context`` injected as papermill would) into the reports
directory, starts Voila on it in a process group of its own, prints the one URL line, and stops that group
on Ctrl-C or SIGTERM. The page's notebook lives in the reports directory so that the kernel's directory is
the records' own: a record's link and the index link are plain relative links that Voila serves from
there (``/voila/files/...``, only records' file types). :func:`page` runs in the page's kernel: the title,
the vCenter (its address, never a secret; a LAB badge for the lab), a Move tab (the wizard) and an
Inventory tab (:class:`InventoryPager`: the tables, paged), and the link to the reports index.
"""
from __future__ import annotations

import atexit
import contextlib
import html
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runbook.errors import BadInput, RunbookError

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "app.ipynb"
#: What Voila may serve from the reports directory: the records' own files, never a notebook or a script.
FILES = [r".*\.(html|json|png|csv|svg)"]
STOP_WAIT_S = 30.0  # how long Voila gets to shut its kernels down before its group is killed


class _Stop(Exception):
    """SIGTERM, turned into an exception in the main thread (as SIGINT is KeyboardInterrupt)."""


# -- the server: the `runbook app` process ------------------------------------------------------------
def serve(port: int | None = None, *, open_browser: bool = True, reports_dir: Path | None = None,
          say: Callable[[str], None] = print) -> int:
    """Serve the app until Ctrl-C or SIGTERM; the exit code (0 when stopped on request).

    Refuses before starting anything: no vCenter configured and no lab (or any connection error: the same
    one line and exit code 4 as every command), a port that is taken (exit 2)."""
    from runbook.engine.context import RunContext
    from runbook.records.report import write_index
    from runbook.records.record import default_reports_dir
    from runbook.vsphere.connection import connect, settings_from_env

    with connect(settings_from_env()):  # the same refusal, and the same line, as any command's
        pass
    port = _free_port() if port is None else _check_port(port)
    reports = Path(reports_dir or default_reports_dir()).expanduser().resolve()
    reports.mkdir(parents=True, exist_ok=True)
    write_index(reports)  # the page links to it, also before the first run
    _remove_stale_pages(reports)
    work = Path(tempfile.mkdtemp(prefix="runbook-app-"))
    notebook = reports / f"runbook-app-{os.getpid()}.ipynb"  # Voila serves no hidden file; removed on stop
    proc = None
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        context = RunContext(reports_dir=reports, via="app").save(work / "context.json")
        write_page_notebook(notebook, context)
        token = secrets.token_urlsafe(24)
        log = work / "voila.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(_voila_command(notebook, port, token, work), cwd=reports, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_stop_with_parent)
        _wait_listening(port, proc, log)
        url = f"http://127.0.0.1:{port}/?token={token}"
        say(f"runbook app serving at {url}  (Ctrl-C stops it)")
        if open_browser:
            import webbrowser

            with contextlib.suppress(Exception):  # no browser here (a server): the URL line says where
                webbrowser.open(url)
        code = proc.wait()
        raise RunbookError(f"the app server stopped by itself (exit {code}): {_tail(log)}")
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc is not None:
            _stop_group(proc)
        notebook.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def write_page_notebook(path: Path, context_file: Path) -> Path:
    """``notebooks/app.ipynb`` with ``run_context`` injected (papermill's own parameterisation)."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), {"run_context": str(context_file)})
    nbformat.write(nb, path)
    return path


def _remove_stale_pages(reports: Path) -> None:
    """The page notebooks an app killed by SIGKILL left (its pid is in the name, and no longer runs)."""
    from runbook.vsphere.labstate import pid_alive

    for stale in reports.glob("runbook-app-*.ipynb"):
        pid = stale.stem.removeprefix("runbook-app-")
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def _voila_command(notebook: Path, port: int, token: str, work: Path) -> list[str]:
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0", f"--token={token}", f"--Voila.connection_dir_root={work}",
            "--VoilaConfiguration.show_tracebacks=False",
            *(f"--VoilaConfiguration.file_allowlist={pattern}" for pattern in FILES),
            # a move still running when the app stops gets time to cancel its task and finish its record
            f"--KernelManager.shutdown_wait_time={STOP_WAIT_S - 5:g}"]


def _stop_with_parent() -> None:
    """In Voila's process, before it starts: SIGTERM when ``runbook app`` dies, even by SIGKILL (Linux)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise BadInput(f"port {port} is not a TCP port: give --port 1..65535, or leave it out for a free one")
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BadInput(f"port {port} on 127.0.0.1 cannot be used ({exc.strerror}): give another --port, "
                           f"or leave it out for a free one") from None
    return port


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunbookError(f"the app server did not start (exit {proc.returncode}): {_tail(log)}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RunbookError(f"the app server did not listen on port {port} within {timeout:g} s: {_tail(log)}")


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    return lines[-1].strip() if lines else "no output"


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to Voila's process group (Voila then shuts its kernels down), SIGKILL if it does not end."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# -- the page: the app's kernel ---------------------------------------------------------------------
#: The inventory tables the app pages through, with the columns the inventory notebook shows.
INVENTORY_TABLES: dict[str, tuple[str, list[str]]] = {
    "VMs": ("vms", ["name", "power_state", "cluster", "host", "datastores", "guest_ip", "guest_os", "vcpus",
                    "memory_mb", "provisioned_bytes", "committed_bytes", "networks", "disk_count", "disk_formats",
                    "tools_status"]),
    "Hosts": ("hosts", ["name", "cluster", "connection_state", "maintenance", "cpu_vendor", "cpu_model",
                        "evc_mode", "vmotion_vmks", "vmotion_ips", "vm_count", "datastores", "port_groups"]),
    "Datastores": ("datastores", ["name", "type", "capacity_bytes", "free_bytes", "provisioned_bytes",
                                  "host_count", "hosts", "accessible"]),
    "Clusters": ("clusters", ["name", "datacenter", "host_count", "hosts", "evc_mode", "drs_enabled",
                              "ha_enabled", "vm_count"]),
    "Port groups": ("networks", ["name", "type", "host_count", "hosts", "vm_count"]),
    "VMkernel adapters": ("vmkernel", ["host", "device", "port_group", "ip", "services", "vmotion"]),
}
PAGE_ROWS = 25


class InventoryPager:
    """One inventory table at a time, a page of rows at a time, filtered by a text typed in the box."""

    def __init__(self, inventory: Any, read: Callable[[], Any], rows: int = PAGE_ROWS):
        import ipywidgets as w

        self.inventory, self.read, self.rows, self.start = inventory, read, rows, 0
        self.table = w.ToggleButtons(options=list(INVENTORY_TABLES), value="VMs")
        self.filter = w.Text(placeholder="filter: part of any value", description="Filter",
                             style={"description_width": "50px"}, layout=w.Layout(width="360px"))
        self.prev = w.Button(description="Previous", icon="chevron-left", layout=w.Layout(width="110px"))
        self.next = w.Button(description="Next", icon="chevron-right", layout=w.Layout(width="110px"))
        self.refresh = w.Button(description="Read again", icon="refresh", layout=w.Layout(width="120px"))
        self.where = w.Label()
        self.out = w.HTML()
        for widget, name in ((self.table, "rb-inv-table"), (self.filter, "rb-inv-filter"), (self.prev, "rb-inv-prev"),
                             (self.next, "rb-inv-next"), (self.refresh, "rb-inv-refresh"), (self.where, "rb-inv-where"),
                             (self.out, "rb-inv-rows")):
            widget.add_class(name)
        self.table.observe(lambda _: self._go(0), names="value")
        self.filter.observe(lambda _: self._go(0), names="value")
        self.prev.on_click(lambda _: self._go(self.start - self.rows))
        self.next.on_click(lambda _: self._go(self.start + self.rows))
        self.refresh.on_click(lambda _: self._reread())
        self.view = w.VBox([self.table, w.HBox([self.filter, self.prev, self.next, self.where, self.refresh]),
                            self.out])
        self.view.add_class("rb-inventory")
        self._go(0)

    def frame(self) -> Any:
        """The chosen table for people (names as written, GiB), only the rows matching the filter."""
        from runbook.fronts.notebook import readable

        attr, columns = INVENTORY_TABLES[self.table.value]
        df = getattr(self.inventory, attr)
        df = readable(df, [c for c in columns if c in df.columns])
        text = self.filter.value.strip().lower()
        if text:
            hit = df.astype(str).apply(lambda col: col.str.lower().str.contains(text, regex=False)).any(axis=1)
            df = df[hit]
        return df

    def _go(self, start: int) -> None:
        df = self.frame()
        total = len(df)
        self.start = max(0, min(start, (total - 1) // self.rows * self.rows if total else 0))
        shown = df.iloc[self.start:self.start + self.rows]
        self.prev.disabled = self.start == 0
        self.next.disabled = self.start + self.rows >= total
        self.where.value = (f"rows {self.start + 1:,}–{self.start + len(shown):,} of {total:,}" if total
                            else "no rows")
        self.out.value = _table_html(shown)

    def _reread(self) -> None:
        try:
            self.inventory = self.read()
        except RunbookError as exc:
            from runbook.fronts.widgets import error_html

            self.out.value = error_html(exc)
            return
        self._go(self.start)


def _table_html(df: Any) -> str:
    """A page of rows: every value escaped (names from the vCenter may hold markup), thousands separated, no
    0..n index, wide tables scroll sideways."""
    df = df.rename(columns=lambda c: c.replace("_gib", " (GiB)").replace("_mb", " (MB)").replace("_", " "))
    styled = (df.style.format(escape="html", thousands=",", precision=1, na_rep="")
              .format_index(escape="html", axis=1).hide(axis="index")
              .set_table_styles([{"selector": "th", "props": [("text-align", "left"), ("padding", "2px 10px")]},
                                 {"selector": "td", "props": [("padding", "2px 10px"), ("white-space", "nowrap")]}]))
    return f'<div style="overflow-x:auto;max-width:100%">{styled.to_html()}</div>'


def header_html(settings: Any, reports_link: str) -> str:
    """The page's title, the vCenter it talks to (its address only; a LAB badge for the lab) and the link
    to the reports index."""
    from runbook.records.record import is_lab

    badge = ('<span class="rb-lab-badge" style="background:#9a6700;color:#fff;border-radius:4px;padding:1px 7px;'
             'margin-left:8px;font-weight:700;font-size:0.85em">LAB</span>' if is_lab(settings) else "")
    return (f'<div class="rb-app-header"><h2 style="margin:6px 0">vMotion runbook</h2>'
            f'<div>vCenter <code class="rb-vcenter">{html.escape(settings.url)}</code>{badge}'
            f'<span style="margin-left:24px"><a class="rb-reports-link" href="{html.escape(reports_link)}" '
            f'style="color:#1a5fb4;text-decoration:underline" target="_blank" rel="noopener">Change records (index)'
            f'</a></span></div></div>')


def _log_to_server() -> None:
    """The runbook's log lines go to the server's log (the kernel's own stderr), not onto the page."""
    logger = logging.getLogger("runbook")
    if not any(getattr(h, "_runbook_app", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("%(asctime)s runbook app: %(levelname)s %(message)s"))
        handler._runbook_app = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _finish_running_move(wizard: Any, wait_s: float = STOP_WAIT_S - 8) -> None:
    """When the app stops (its kernel shuts down) during a move: Cancel, as the button would, and give the
    engine the time to cancel the vCenter task and finish the record with what the vCenter reports."""
    thread = getattr(wizard, "thread", None)
    if thread is not None and thread.is_alive():
        wizard.cancel()
        thread.join(wait_s)


def page(run_context: str = "") -> Any:
    """The app's page, displayed; ``run_context``: the context file ``runbook app`` wrote (empty when the
    notebook is opened by hand: then it is the widgets' page, recorded as such)."""
    import ipywidgets as w
    from IPython.display import HTML, display

    from runbook.engine import context as ctx
    from runbook.fronts.widgets import Wizard
    from runbook.fronts.widgets import error_html
    from runbook.vsphere.connection import connect, settings_from_env
    from runbook.vsphere.inventory import read_inventory

    _log_to_server()
    try:
        context = ctx.load(run_context or None, default_via="widgets")
        settings = settings_from_env()

        def read() -> Any:
            with connect(settings) as si:
                return read_inventory(si)

        inventory = read()
        wizard = Wizard(settings, inventory, context=context)
    except RunbookError as exc:  # one red line, as everywhere: never a traceback on the page
        display(HTML(error_html(exc)))
        return None
    atexit.register(_finish_running_move, wizard)
    index = context.resolved_reports_dir().resolve() / "index.html"
    header = w.HTML(header_html(settings, os.path.relpath(index, Path.cwd().resolve())))
    tabs = w.Tab(children=[wizard.view, InventoryPager(inventory, read).view])
    tabs.titles = ("Move", "Inventory")
    tabs.add_class("rb-app-tabs")
    view = w.VBox([header, tabs])
    view.add_class("rb-app")
    display(view)
    return view
