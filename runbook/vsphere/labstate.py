"""Where a running lab vCenter answers: its state file, read without importing the lab.

The lab (the ``runbook_lab`` package, a development tool) writes ``lab.json`` into its state directory
(``$RUNBOOK_LAB_DIR``, else ``$XDG_STATE_HOME/runbook/lab``, else ``~/.local/state/runbook/lab``). With no
``GOVC_URL`` set the runbook reads that file to find the lab; production code never imports the lab itself.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "lab.json"


@dataclass
class LabInfo:
    """Where a running lab vCenter answers and how to log in to it."""

    url: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    scenario: str
    pid: int
    state_dir: Path
    ca_file: Path | None
    insecure: bool
    control_url: str

    def exports(self) -> str:
        """govc-style ``export`` lines for a shell, as vcsim prints them."""
        lines = {
            "GOVC_URL": self.url,
            "GOVC_USERNAME": self.username,
            "GOVC_PASSWORD": self.password,
        }
        if self.insecure:
            lines["GOVC_INSECURE"] = "1"
        if self.ca_file:
            lines["GOVC_TLS_CA_CERTS"] = str(self.ca_file)
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in lines.items()) + "\n"

    def _to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state_dir"] = str(self.state_dir)
        d["ca_file"] = str(self.ca_file) if self.ca_file else None
        return d

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> LabInfo:
        d = dict(d)
        d["state_dir"] = Path(d["state_dir"])
        d["ca_file"] = Path(d["ca_file"]) if d.get("ca_file") else None
        return cls(**d)


def default_state_dir() -> Path:
    """The lab's state directory: $RUNBOOK_LAB_DIR, $XDG_STATE_HOME/runbook/lab or ~/.local/state/runbook/lab."""
    if os.environ.get("RUNBOOK_LAB_DIR"):
        return Path(os.environ["RUNBOOK_LAB_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "runbook" / "lab"



def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_lab(state_dir: Path | None = None) -> LabInfo | None:
    """The lab recorded in the state directory, if its process is alive; None otherwise (read only)."""
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    try:
        info = LabInfo._from_json(json.loads((state_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return info if pid_alive(info.pid) else None
