"""The change record of one run: a JSON document for machines, kept beside the HTML report.

Written only through the engine's :class:`~runbook.records.recorder.Recorder` (each step saved atomically,
finalised once), validated against ``record.schema.json`` and documented field by field in docs/record.md.
It never holds a secret, by construction: parameters pass through :func:`redact`, the vCenter is recorded
by address only, and nothing writes the password. :func:`scrub` is the last line of defence and never
edits ordinary text: it replaces session cookies and URL credentials by their context, and the password in
use only as a whole token and only when it could not be an ordinary word (a password such as ``pass`` or
``vsphere`` would otherwise turn every PASS or vsphere.local into ``<redacted>``, corrupting the record
and revealing the password's shape). Every record is validated against the schema before it is written.
"""
from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
import math
import os
import re
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runbook import __version__

SCHEMA_VERSION = 1
#: Final outcomes, and RUNNING: the run has not finished (or its process died before it could say).
OUTCOMES = ("SUCCEEDED", "FAILED", "CHECKS FAILED", "REFUSED", "DRY RUN", "TIMED OUT", "CANCELLED", "NO CHANGE",
            "UNKNOWN", "RUNNING")
#: The exit code the command line returns for each outcome (see errors.py and the README).
EXIT_OF_OUTCOME = {"SUCCEEDED": 0, "DRY RUN": 0, "NO CHANGE": 0, "FAILED": 1, "CHECKS FAILED": 2, "REFUSED": 2,
                   "TIMED OUT": 3, "CANCELLED": 3, "UNKNOWN": 5}
#: What a check's outcome means to a reader: a check PASSED or FAILED (a check that "SUCCEEDED" reads like a move).
_CHECK_WORDS = {"SUCCEEDED": "PASSED", "CHECKS FAILED": "FAILED"}


def outcome_word(kind: str, outcome: str) -> str:
    """The word a reader sees for a run's outcome (banner, index, terminal): per kind, so that a check reads
    PASSED or FAILED and a move SUCCEEDED, FAILED, TIMED OUT, CANCELLED, REFUSED... The record's ``outcome``
    field and the exit codes stay as they are; this is only how they read."""
    outcome = str(outcome or "UNKNOWN")
    if kind == "check":
        return _CHECK_WORDS.get(outcome, outcome)
    return outcome


_SECRET_KEYS = re.compile(r"pass|secret|token|cookie|session|credential", re.I)
# pyvmomi's session cookie as it would appear in a repr, a header dump or an exception.
_COOKIE = re.compile(r"(vmware_soap_session|vmware_cgi_ticket|vmware-api-session-id)(\s*[=:]\s*\\?[\"']?)"
                     r"([^\"'\\;,\s<>)]+)", re.I)
# Credentials in a URL, whatever they are: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@\"'<>]*:)([^\s/@\"'<>]+)(@)", re.I)
#: A secret shorter than this, or made of letters only up to twice as long, could be an ordinary word
#: ("pass", "admin", "vsphere", "password"): the scrub leaves such words alone (see module docstring).
_WORDLIKE_MAX = 8


class RecordInvalid(ValueError):
    """A record that does not follow record.schema.json: a programming error. ``RunRecord.save`` refuses it;
    the engine's recorder still writes it (with a notice), since a run must not lose its true record."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def redact(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters as they may be recorded: anything that looks like a secret is dropped."""
    return {k: ("<redacted>" if _SECRET_KEYS.search(k) else v) for k, v in values.items()}


def secrets_in_use() -> list[str]:
    """The secrets this process could leak: the vCenter password, wherever it came from (GOVC_PASSWORD,
    RUNBOOK_PASSWORD_FILE, the password in GOVC_URL, the running lab's state)."""
    from urllib.parse import unquote, urlsplit

    found = [os.environ.get("GOVC_PASSWORD", "")]
    with_file = os.environ.get("RUNBOOK_PASSWORD_FILE")
    if with_file:
        try:
            found.append(Path(with_file).read_text().splitlines()[0])
        except (OSError, IndexError):
            pass
    try:
        in_url = urlsplit(os.environ.get("GOVC_URL", "")).password or ""
        found += [in_url, unquote(in_url)]
    except ValueError:
        pass
    try:
        from runbook.vsphere.labstate import running_lab

        info = running_lab()
        if info is not None:
            found.append(info.password)
    except Exception:  # a broken lab state file must not stop a record being written
        pass
    return sorted({s for s in found if s}, key=len, reverse=True)


def wordlike(secret: str) -> bool:
    """True for a secret that could be an ordinary word of a record (``pass``, ``vsphere``, ``admin``):
    replacing it would edit ordinary text, so the scrub does not look for it (nothing writes it anyway)."""
    return len(secret) < _WORDLIKE_MAX or (secret.isalpha() and len(secret) <= 2 * _WORDLIKE_MAX) or \
        secret.strip("_-.").isdigit()


@functools.lru_cache(maxsize=32)
def _token_pattern(secret: str) -> re.Pattern[str]:
    """The secret as a whole token, in each form it could be written: as is, JSON-escaped, percent-encoded."""
    forms = sorted({secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                    quote(secret, safe="")}, key=len, reverse=True)
    return re.compile(r"(?<![\w])(?:" + "|".join(map(re.escape, forms)) + r")(?![\w])")


def scrub(text: str) -> str:
    """The last line of defence before anything is written; it never edits ordinary text.

    Session cookies and the password of a URL (``scheme://user:PASSWORD@host``) are replaced with
    ``<redacted>`` by their context, whatever they are. The password in use is replaced only as a whole
    token (never inside another word) and only when it cannot be an ordinary word (:func:`wordlike`).
    """
    for secret in secrets_in_use():
        if not wordlike(secret):
            text = _token_pattern(secret).sub("<redacted>", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}<redacted>{m.group(3)}", text)
    return _COOKIE.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):  # NaN, inf: not JSON for everyone
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    plain = {k: _jsonable(v) for k, v in values.items()}
    if plain.get("figures"):  # label and value, both text: "VMs", 12 -> ["VMs", "12"]
        plain["figures"] = [[str(label), str(value)] for label, value in plain["figures"]]
    return plain


def is_lab(settings: Any) -> bool:
    """Whether ``settings`` address the lab vCenter: chosen as the embedded default, or the address of the lab
    running on this machine (a GOVC_URL pointing at it). Recorded so that the index can tell lab runs apart."""
    if str(getattr(settings, "source", "")).startswith("the lab"):
        return True
    from runbook.vsphere.labstate import running_lab

    info = running_lab()
    return info is not None and info.url.rstrip("/") == str(settings.url).rstrip("/")


@dataclass
class RunRecord:
    """What one run did. ``save()`` after every step so a crash still leaves a record."""

    kind: str
    run_dir: Path
    run_id: str = field(default_factory=new_run_id)
    change_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data.setdefault("schema_version", SCHEMA_VERSION)
        self.data.setdefault("kind", self.kind)
        self.data.setdefault("run_id", self.run_id)
        self.data.setdefault("change_id", self.change_id)
        self.data.setdefault("runbook_version", __version__)
        self.data.setdefault("operator", {"os_user": _os_user(), "vcenter_user": None,
                                          "machine": socket.gethostname()})
        self.data.setdefault("via", "python")
        self.data.setdefault("vcenter", None)
        self.data.setdefault("lab", None)
        self.data.setdefault("started", iso(utcnow()))
        self.data.setdefault("ended", None)
        self.data.setdefault("parameters", _jsonable(redact(self.parameters)))
        self.data.setdefault("outcome", "RUNNING")
        self.data.setdefault("summary", "")
        self.data.setdefault("error", None)

    @property
    def path(self) -> Path:
        return self.run_dir / "record.json"

    def set(self, **values: Any) -> "RunRecord":
        """Record values (plain data, datetimes become ISO UTC) and save."""
        self.data.update(_plain(values))
        return self.save()

    def connected(self, settings: Any) -> "RunRecord":
        """Record where and as whom: the address only, never the password or session."""
        self.data["vcenter"] = settings.url
        self.data["lab"] = is_lab(settings)
        self.data["operator"]["vcenter_user"] = settings.username
        return self.save()

    def finish(self, outcome: str, summary: str = "", **values: Any) -> "RunRecord":
        """Record how the run ended: the outcome, a one-sentence summary, the end time, the duration and
        the exit code that fits the outcome (unless ``exit_code`` is given)."""
        if outcome not in OUTCOMES or outcome == "RUNNING":
            raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES[:-1])}")
        self.data.update(_plain(values))
        self.data["outcome"], self.data["summary"] = outcome, str(summary)
        ended = utcnow()
        self.data["ended"] = iso(ended)
        try:
            started = dt.datetime.fromisoformat(str(self.data["started"]).replace("Z", "+00:00"))
            self.data["duration_s"] = round((ended - started).total_seconds(), 3)
        except (KeyError, ValueError):
            self.data["duration_s"] = None
        if values.get("exit_code") is None:
            self.data["exit_code"] = EXIT_OF_OUTCOME[outcome]
        return self.save()

    def save(self) -> "RunRecord":
        """Validate the record against the schema (while RUNNING too), then write it atomically.

        Raises :class:`RecordInvalid` (and writes nothing) for a record the schema refuses."""
        text = scrub(json.dumps(self.data, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n")
        problem = _schema_problem(json.loads(text))
        if problem:
            raise RecordInvalid(f"the {self.kind} record {self.path} does not follow record.schema.json: {problem}")
        write_atomic(self.path, text)
        return self


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid())


def load(run_dir: Path) -> dict[str, Any] | None:
    """The record of a run directory, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / "record.json").read_text())
    except (OSError, ValueError):
        return None


def schema() -> dict[str, Any]:
    return json.loads(resources.files("runbook.records").joinpath("record.schema.json").read_text())


def validate(data: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``data`` does not follow the documented schema."""
    validator = _validator()  # first: it imports jsonschema without its IRI grammar
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise error


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    """The schema's validator, built once per process (a record is validated at every save)."""
    from runbook._imports import skip_iri_grammar

    skip_iri_grammar()
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema())


def _schema_problem(data: Any) -> str | None:
    """What makes ``data`` not a record, in one line (where and why), or None."""
    validator = _validator()  # first: it imports jsonschema without its IRI grammar
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the record)"
    return f"{where}: {error.message[:300]}"


def default_reports_dir() -> Path:
    """``$RUNBOOK_REPORTS`` or the project's ``reports/`` (found from the package or the working dir)."""
    env = os.environ.get("RUNBOOK_REPORTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent.parent  # a source checkout: the project's own reports/
    if (here / "notebooks").is_dir() and (here / "pyproject.toml").is_file():
        return here / "reports"
    return Path.cwd() / "reports"
