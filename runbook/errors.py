"""Typed errors of the runbook.

Every error the operator can meet is a :class:`RunbookError` subclass whose message is one line that
names the problem and the fix. Each class carries the process exit code the command line uses for it,
so that front ends (CLI, notebooks, widgets) never invent their own.
"""
from __future__ import annotations

from collections.abc import Iterable

# Exit codes, documented in README.md ("Exit codes").
EXIT_OK = 0  # the run succeeded (also: dry run, already there)
EXIT_FAILED = 1  # the move or the run failed (task fault, notebook error)
EXIT_REFUSED = 2  # bad input or a failed check: nothing was changed
EXIT_TIMEOUT = 3  # the task timed out or was cancelled
EXIT_CONNECTION = 4  # no vCenter, unreachable, bad credentials, untrusted certificate
EXIT_UNKNOWN = 5  # the outcome of a started task could not be learned (see the task id)


class RunbookError(Exception):
    """Base of every error the runbook raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(RunbookError):
    """The operator's input cannot be used (nothing was changed)."""

    exit_code = EXIT_REFUSED


class NotFound(BadInput):
    """No object of that kind has that name or moid."""

    def __init__(self, kind: str, key: str, suggestions: Iterable[str] = ()):
        self.kind, self.key, self.suggestions = kind, key, list(suggestions)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"no {kind} named {key!r}{hint}")


class Ambiguous(BadInput):
    """Several objects of that kind share the name: the operator must say which (by moid)."""

    def __init__(self, kind: str, key: str, candidates: Iterable[str]):
        self.kind, self.key, self.candidates = kind, key, list(candidates)
        super().__init__(
            f"{len(self.candidates)} {kind}s are named {key!r}: {', '.join(self.candidates)}; "
            f"give the moid instead"
        )


class ChecksFailed(RunbookError):
    """A prerequisite check failed, so the move was refused (nothing was changed)."""

    exit_code = EXIT_REFUSED

    def __init__(self, failed: list[str]):
        self.failed = failed
        super().__init__(
            f"{len(failed)} check{'' if len(failed) == 1 else 's'} failed: {'; '.join(failed)}; fix {'it' if len(failed) == 1 else 'them'} or give force_reason"
        )


class ConnectionFailed(RunbookError):
    """The vCenter could not be reached, logged in to, or trusted."""

    exit_code = EXIT_CONNECTION


class LabError(RunbookError):
    """The lab vCenter could not be built, started or stopped."""


class TaskFailed(RunbookError):
    """The vCenter task ended in error; carries vCenter's fault and message."""

    def __init__(self, task_id: str, fault: str, message: str):
        self.task_id, self.fault, self.fault_message = task_id, fault, message
        super().__init__(f"task {task_id} failed: {fault}: {message}")


class TaskTimeout(RunbookError):
    """The task did not finish in time; the runbook asked the vCenter to cancel it."""

    exit_code = EXIT_TIMEOUT

    def __init__(self, task_id: str, seconds: float, cancelled: bool):
        self.task_id, self.seconds, self.cancelled = task_id, seconds, cancelled
        what = "cancelled it" if cancelled else "could not cancel it: check it in the vSphere Client"
        super().__init__(f"task {task_id} did not finish within {seconds:g} s; the runbook {what}")


class OutcomeUnknown(RunbookError):
    """A task was started but its outcome could not be learned."""

    exit_code = EXIT_UNKNOWN

    def __init__(self, task_id: str, reason: str):
        self.task_id, self.reason = task_id, reason
        super().__init__(
            f"the outcome of task {task_id} is unknown ({reason}); look it up in the vSphere Client "
            f"(Monitor > Tasks) or with: govc task.ls, and do not start the move again until it ends"
        )


class PingNotPermitted(BadInput):
    """ICMP echo is not allowed for this process; a TCP probe port must be given."""
