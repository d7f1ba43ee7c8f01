"""A vCenter that does not answer in time is a connection problem with a remedy, never a traceback."""
from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from runbook.errors import ConnectionFailed


@contextlib.contextmanager
def answering(settings: Any) -> Iterator[None]:
    """Turn a read that timed out into ConnectionFailed (exit 4) naming the setting that gives more time."""
    try:
        yield
    except (TimeoutError, socket.timeout):
        seconds = getattr(settings, "timeout", None)
        raise ConnectionFailed(
            f"{getattr(settings, 'url', 'the vCenter')} did not answer within {seconds:g} s: a large vCenter or a "
            f"slow link needs more time; give it with RUNBOOK_TIMEOUT=SECONDS (for example 120)") from None
