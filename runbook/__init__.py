"""vMotion runbook: inventory, prerequisite checks, the move, ping loss and change records for vSphere."""
from __future__ import annotations

__version__ = "0.1.0"

from .connection import Settings, connect, login, logout, settings_from_env  # noqa: E402
from .errors import (  # noqa: E402
    Ambiguous, BadInput, ChecksFailed, ConnectionFailed, LabError, NotFound, OutcomeUnknown, RunbookError,
    TaskFailed, TaskTimeout,
)
from .inventory import Inventory, read_inventory  # noqa: E402
from .pipeline import RunResult, run_notebook  # noqa: E402
from .record import RunRecord, start_run  # noqa: E402

__all__ = [
    "__version__", "Settings", "connect", "login", "logout", "settings_from_env", "Ambiguous", "BadInput",
    "ChecksFailed", "ConnectionFailed", "LabError", "NotFound", "OutcomeUnknown", "RunbookError", "TaskFailed",
    "TaskTimeout", "Inventory", "read_inventory", "RunResult", "run_notebook", "RunRecord", "start_run",
]
