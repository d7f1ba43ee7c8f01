"""One typed request per kind of run: the fields, their defaults, their help and their validation.

Every front builds its input from these classes and nothing else: the CLI derives its options from the
fields (``cli_flag`` and ``help``), each notebook's parameters cell declares the same names (a test keeps
them equal), the widgets fill a :class:`MoveRequest`. :func:`build` is the one place where raw values
become a request: it reads papermill's strings as a person means them (``"false"`` is False, never
True), refuses numbers that are not finite, unknown names and values out of range, each with one line
that names the parameter and the fix.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runbook.errors import BadInput

DISK_FORMATS = ("same", "thin", "thick", "eagerzeroedthick")
PRIORITIES = ("default", "high", "low")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


def param(default: Any, help: str, *, flag: str | None = None, choices: tuple[str, ...] = (),
          minimum: float | None = None, maximum: float | None = None, repeat: bool = False,
          metavar: str | None = None) -> Any:
    """A request field with what the fronts need to show it: its CLI flag, help and limits."""
    meta = {"help": help, "flag": flag, "choices": choices, "minimum": minimum, "maximum": maximum,
            "repeat": repeat, "metavar": metavar}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Param:
    """One field of a request, as the fronts see it."""

    name: str
    type: type
    default: Any
    help: str
    flag: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    repeat: bool = False
    metavar: str | None = None


@dataclass(frozen=True)
class Request:
    """Fields every run has."""

    kind: ClassVar[str] = ""
    change_id: str = param("", "change ticket this run belongs to (names the run directory); empty: a run id")

    def __post_init__(self) -> None:
        """Every field as its type, in range, or one BadInput naming each bad field; then the rules that
        tie fields together (:meth:`_validate`). Direct construction and :func:`build` both come here."""
        problems = []
        for p in self.params():
            value = getattr(self, p.name)
            try:
                object.__setattr__(self, p.name, p.default if value is None else coerce(p, value))
            except BadInput as exc:
                problems.append(str(exc))
        if problems:
            raise BadInput("; ".join(problems))
        self._validate()

    def _validate(self) -> None:
        """Rules between fields (a subclass's)."""

    @classmethod
    def params(cls) -> list[Param]:
        """The fields in the order a person reads them (the request's own first, change_id last)."""
        out = []
        for f in dataclasses.fields(cls):
            meta = f.metadata
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append(Param(name=f.name, type=_TYPES[f.type] if isinstance(f.type, str) else f.type,
                             default=default, help=meta.get("help", ""),
                             flag=meta.get("flag") or "--" + f.name.replace("_", "-"),
                             choices=meta.get("choices") or (), minimum=meta.get("minimum"),
                             maximum=meta.get("maximum"), repeat=bool(meta.get("repeat")),
                             metavar=meta.get("metavar")))
        return [p for p in out if p.name != "change_id"] + [p for p in out if p.name == "change_id"]

    def to_params(self) -> dict[str, Any]:
        """Plain values by name: the notebook's parameters, the record's ``parameters``."""
        return {p.name: _plain(getattr(self, p.name)) for p in self.params()}

    def replace(self, **values: Any) -> "Request":
        return build(type(self), {**self.to_params(), **values})


_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict, "list": list}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True)
class InventoryRequest(Request):
    """Read the vCenter's inventory into tables and a report."""

    kind: ClassVar[str] = "inventory"
    datacenter: str = param("", "only this datacenter (name or moid); empty: all datacenters")
    cluster: str = param("", "only this cluster (name or moid); empty: all clusters")


@dataclass(frozen=True)
class CheckRequest(Request):
    """Check every prerequisite of moving one VM; change nothing."""

    kind: ClassVar[str] = "check"
    vm: str = param("", "the VM to move (name or moid)")
    target_host: str = param("", "host that should run it (name or moid); empty: keep the host", flag="--host")
    target_datastore: str = param("", "datastore for its files and disks (name or moid); empty: keep the storage",
                                  flag="--datastore")
    disk_format: str = param("same", "same, thin, thick or eagerzeroedthick (changes only when the disks move)",
                             choices=DISK_FORMATS)
    resource_pool: str = param("", "resource pool on the target (name or moid); empty: keep it, or the target's "
                                   "root pool", flag="--pool")
    network_map: dict = param({}, "the VM's port groups mapped to port groups of the target host: {\"old\": \"new\"} "
                                  "(on the command line: repeatable)",
                              flag="--network", repeat=True, metavar="OLD=NEW")
    disk_placement: dict = param({}, "per-disk placement: a disk (label or device key) mapped to DATASTORE[:FORMAT] "
                                     "(on the command line: repeatable)",
                                 flag="--disk", repeat=True, metavar="DISK=DATASTORE[:FORMAT]")

    def _validate(self) -> None:
        problems = []
        placement = {}
        for disk, target in self.disk_placement.items():
            try:
                datastore, fmt = disk_target(target, disk)
            except BadInput as exc:
                problems.append(str(exc))
                continue
            placement[disk] = datastore if fmt is None else f"{datastore}:{fmt}"
        object.__setattr__(self, "disk_placement", placement)
        if not self.vm:
            problems.append("no VM given: give the VM's name or moid (vm / --vm)")
        if not self.target_host and not self.target_datastore and not self.disk_placement:
            problems.append("give a target host, a target datastore, or both (--host, --datastore), or a datastore "
                            "per disk (--disk 'Hard disk 1=DATASTORE')")
        if self.disk_format != "same" and not self.target_datastore and not self.disk_placement:
            problems.append(f"disk format {self.disk_format!r} needs a target datastore: a format only changes "
                            f"when the disks are copied")
        if problems:
            raise BadInput("; ".join(problems))

    def plan(self) -> Any:
        """The domain's :class:`MigrationPlan` for this request."""
        from runbook.domain.plan import MigrationPlan

        return MigrationPlan(vm=self.vm, target_host=self.target_host or None,
                             target_datastore=self.target_datastore or None, disk_format=self.disk_format,
                             resource_pool=self.resource_pool or None, network_map=dict(self.network_map),
                             disk_placement={disk: _with_format(disk_target(target, disk), self.disk_format)
                                             for disk, target in self.disk_placement.items()},
                             priority=getattr(self, "priority", "default"))


def disk_target(text: Any, disk: str = "") -> tuple[str, str | None]:
    """``(datastore, format)`` of one per-disk placement ``DATASTORE[:FORMAT]``; format None when not given.

    The split is at the last ``:`` and only when what follows is a disk format, so a datastore whose name
    holds a ``:`` is still a datastore ("nfs:02" is the datastore nfs:02; "nfs:02:thin" is nfs:02, thin).
    An empty datastore or format is refused in one line naming the disk and the form it takes.
    """
    where = f"disk {disk!r}: " if disk else ""
    if not isinstance(text, str):
        raise BadInput(f"disk placement {where}{text!r} is not DATASTORE[:FORMAT] (text)")
    value = text.strip()
    head, sep, tail = value.rpartition(":")
    if sep and tail.strip().lower() in DISK_FORMATS:
        datastore, fmt = head.strip(), tail.strip().lower()
    elif sep and not tail.strip():
        raise BadInput(f"disk placement {where}{text!r} has an empty format: give DATASTORE:FORMAT with FORMAT one "
                       f"of {', '.join(DISK_FORMATS)}, or DATASTORE alone")
    else:
        datastore, fmt = value, None
    if not datastore:
        raise BadInput(f"disk placement {where}{text!r} names no datastore: give DATASTORE[:FORMAT]")
    if any(c in _CONTROL for c in datastore):
        raise BadInput(f"disk placement {where}{text!r} holds control characters (a new line, a tab...): remove them")
    return datastore, fmt


def _with_format(target: tuple[str, str | None], default: str) -> tuple[str, str]:
    return target[0], target[1] or default


@dataclass(frozen=True)
class MoveRequest(CheckRequest):
    """Move one running VM to another host and/or datastore, pinged all through, on the record."""

    kind: ClassVar[str] = "migrate"
    priority: str = param("default", "default, high or low", choices=PRIORITIES)
    dry_run: bool = param(False, "show plan, spec and checks; change nothing")
    force_reason: str = param("", "move despite failed checks; the reason goes in the record")
    timeout_s: float = param(3600.0, "seconds before the vCenter task is cancelled", flag="--timeout",
                             minimum=1.0, maximum=7 * 86400.0)
    ping: str = param("auto", "auto (the VM's guest IP), an address, or none")
    ping_interval: float = param(0.1, "seconds between probes (0.01 to 10)", minimum=0.01, maximum=10.0)
    ping_tcp_port: int = param(0, "probe this TCP port where ICMP is not permitted; 0: ICMP", minimum=0,
                               maximum=65535)
    ping_tail: float = param(5.0, "seconds to keep probing after the task ends", minimum=0.0, maximum=600.0)

    def _validate(self) -> None:
        super()._validate()
        if not self.ping.strip():
            raise BadInput("ping must be 'auto', 'none' or an address")


@dataclass(frozen=True)
class EnableVmotionRequest(Request):
    """Enable (or disable) vMotion on a VMkernel adapter of hosts."""

    kind: ClassVar[str] = "enable-vmotion"
    cluster: str = param("", "every host of this cluster (name or moid); empty: use hosts")
    hosts: list = param([], "a host to change (name or moid; repeatable)", flag="--host", repeat=True,
                        metavar="HOST")
    vmk: str = param("", "adapter to use (e.g. vmk1); empty: the management adapter (disable: the vMotion ones)")
    apply: bool = param(False, "make the change; false: a dry run that changes nothing")
    disable: bool = param(False, "take vMotion off the adapter instead of putting it on")

    def _validate(self) -> None:
        if bool(self.cluster) == bool(self.hosts):
            raise BadInput("give either a cluster (--cluster) or hosts (--host, repeatable), not both or neither")


REQUESTS: dict[str, type[Request]] = {r.kind: r for r in (InventoryRequest, CheckRequest, MoveRequest,
                                                          EnableVmotionRequest)}


def request_class(kind: str) -> type[Request]:
    try:
        return REQUESTS[kind]
    except KeyError:
        raise BadInput(f"unknown kind of run {kind!r}; one of {', '.join(REQUESTS)}") from None


def build(cls: type[Request] | str, values: Mapping[str, Any]) -> Any:
    """The request of ``cls`` from raw values (CLI, papermill, widgets); one line of BadInput if unusable.

    ``None`` (or a missing name) takes the default. Unknown names are refused, with the names it takes.
    """
    cls = request_class(cls) if isinstance(cls, str) else cls
    params = {p.name: p for p in cls.params()}
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise BadInput(f"{cls.kind} has no parameter {', '.join(map(repr, unknown))}; it takes: {', '.join(params)}")
    return cls(**{name: value for name, value in values.items() if value is not None})


def coerce(p: Param, value: Any) -> Any:
    """One raw value as the field's type, or BadInput naming the parameter and what it takes."""
    try:
        return _coerce(p, value)
    except BadInput as exc:
        raise BadInput(str(exc).replace(p.name, label(p.name), 1)) from None


def label(name: str) -> str:
    """A parameter's name as a person says it: ``timeout_s`` -> "timeout", ``disk_format`` -> "disk format"."""
    return name.removesuffix("_s").replace("_", " ")


def _coerce(p: Param, value: Any) -> Any:
    kind = p.type
    if kind is bool:
        result = _bool(p, value)
    elif kind in (int, float):
        result = _number(p, value)
    elif kind is str:
        result = _text(p, value)
    elif kind is dict:
        result = _mapping(p, value)
    elif kind is list:
        result = _list(p, value)
    else:  # pragma: no cover - a field of another type is a programming error
        raise TypeError(f"unsupported parameter type {kind!r}")
    if p.choices and result not in p.choices:
        raise BadInput(f"{p.name} {result!r} is not one of {', '.join(p.choices)}")
    return result


def _bool(p: Param, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadInput(f"{p.name} must be true or false, not {value!r}")


def _number(p: Param, value: Any) -> int | float:
    words = "a whole number" if p.type is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadInput(f"{p.name} must be {words}, not {value!r}")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (ValueError, OverflowError):
        raise BadInput(f"{p.name} must be {words}, not {value!r}") from None
    if not math.isfinite(number):
        raise BadInput(f"{p.name} must be a finite number, not {value!r}")
    if p.type is int:
        if number != int(number):
            raise BadInput(f"{p.name} must be a whole number, not {value!r}")
        number = int(number)
    if (p.minimum is not None and number < p.minimum) or (p.maximum is not None and number > p.maximum):
        raise BadInput(f"{p.name} {value!r} is out of range: give {p.minimum:g} to {p.maximum:g}")
    return number


def _text(p: Param, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadInput(f"{p.name} must be text, not {type(value).__name__} ({value!r})")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput(f"{p.name} must be text, not {value!r}")
    text = str(value).strip()
    if any(c in _CONTROL for c in text):
        raise BadInput(f"{p.name} {text!r} holds control characters (a new line, a tab...): remove them")
    return text


#: What each mapping field's two sides are, for its refusals.
_SIDES = {"network_map": ("port group", "old port group to new port group"),
          "disk_placement": ("disk", "a disk to DATASTORE[:FORMAT]")}


def _mapping(p: Param, value: Any) -> dict[str, str]:
    """``{"old": "new"}``, its JSON text (papermill), or ``OLD=NEW`` entries (the CLI)."""
    form = p.metavar or "OLD=NEW"
    noun, maps = _SIDES.get(p.name, ("name", "names to names"))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise BadInput(f"{p.name} is not valid JSON: give {{\"{form.split('=')[0]}\": "
                               f"\"{form.split('=', 1)[1]}\"}}") from None
        else:
            value = [part for part in text.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        result: dict[str, str] = {}
        for entry in value:
            old, sep, new = str(entry).partition("=")
            old, new = old.strip(), new.strip()
            if not sep or not old or not new:
                raise BadInput(f"{p.name} entry {entry!r} is not {form} (nothing empty on either side)")
            if old in result and result[old] != new:
                raise BadInput(f"{noun} {old!r} is mapped twice ({result[old]!r} and {new!r}): keep one")
            result[old] = new
        return result
    if not isinstance(value, Mapping):
        raise BadInput(f"{p.name} must map {maps}, not {type(value).__name__}")
    result = {}
    for old, new in value.items():
        old = str(old) if isinstance(old, int) and not isinstance(old, bool) else old  # a device key
        if not isinstance(old, str) or not isinstance(new, str) or not old.strip() or not new.strip():
            raise BadInput(f"{p.name} entry {old!r}: {new!r} is malformed: both sides must be non-empty text "
                           f"({form})")
        result[old.strip()] = new.strip()
    return result


def _list(p: Param, value: Any) -> list[str]:
    """A list of names, or one text of comma-separated names (papermill, a scheduler's config)."""
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise BadInput(f"{p.name} must be a list of names, not {type(value).__name__}")
    names = [_text(p, v) for v in value]
    return [n for n in names if n]


# -- waves: many moves as one change (issue 18) ---------------------------------------------------------
# Waves are kept out of REQUESTS: that table is the notebook runs' (each has a notebook with the same
# parameters); a wave runs in-process, one run for the whole wave (runbook.engine.wave).
@dataclass(frozen=True)
class WaveRequest(Request):
    """What every wave takes: how to run its moves and when to stop."""

    kind: ClassVar[str] = "wave"
    dry_run: bool = param(False, "show the plan table with each row's checks and reason; change nothing")
    skip_failing: bool = param(False, "run the rows whose checks pass and skip the failing ones (default: refuse "
                                      "the whole wave while any row fails)")
    max_outage: float = param(0.0, "stop the wave (running moves finish, nothing new starts) when a VM's longest "
                                   "outage exceeds this many seconds; 0: no limit", minimum=0.0, maximum=3600.0)
    max_vmotions_per_host: int = param(0, "concurrent vMotions per host; 0: vCenter's limit (4 on 1 GbE, 8 on "
                                          "10 GbE)", minimum=0, maximum=8)
    max_svmotions_per_host: int = param(2, "concurrent Storage vMotions per host (vCenter's limit: 2)", minimum=1,
                                        maximum=2)
    max_svmotions_per_datastore: int = param(8, "concurrent Storage vMotions per datastore (vCenter's limit: 8)",
                                             minimum=1, maximum=8)
    priority: str = param("default", "default, high or low", choices=PRIORITIES)
    timeout_s: float = param(3600.0, "seconds before a move's vCenter task is cancelled", flag="--timeout",
                             minimum=1.0, maximum=7 * 86400.0)
    ping: str = param("auto", "auto (each VM's guest IP) or none")
    ping_interval: float = param(0.1, "seconds between probes (0.01 to 10)", minimum=0.01, maximum=10.0)
    ping_tcp_port: int = param(0, "probe this TCP port where ICMP is not permitted; 0: ICMP", minimum=0,
                               maximum=65535)
    ping_tail: float = param(2.0, "seconds to keep probing each VM after its task ends", minimum=0.0,
                             maximum=600.0)

    @classmethod
    def params(cls) -> list[Param]:
        """The kind's own fields first (what to move), then how to run it, change_id last."""
        common = {f.name for f in dataclasses.fields(WaveRequest)}
        found = super().params()
        return [p for p in found if p.name not in common] + [p for p in found if p.name in common]

    def _validate(self) -> None:
        if self.ping.strip().lower() not in ("auto", "none"):
            raise BadInput("ping of a wave is 'auto' (each VM's guest IP) or 'none'")

    def words(self) -> str:
        """The wave in a few words (the record's ``move``, the index's column)."""
        return self.kind


@dataclass(frozen=True)
class EvacuateRequest(WaveRequest):
    """Move every VM off a host (vMotion), balanced over the other hosts; optionally enter maintenance mode."""

    kind: ClassVar[str] = "evacuate"
    host: str = param("", "the host to empty (name or moid)")
    to: list = param([], "target hosts (names or moids; comma-separated or repeatable); empty: every other "
                         "connected host of its cluster", repeat=True, metavar="HOST[,HOST...]")
    maintenance: bool = param(False, "enter maintenance mode when the host is empty")

    def _validate(self) -> None:
        super()._validate()
        _split_names(self, "to")
        if not self.host:
            raise BadInput("no host given: give the host to evacuate (--host)")
        if self.host in self.to:
            raise BadInput(f"host {self.host!r} is both the host to empty and a target (--to)")

    def words(self) -> str:
        return f"evacuate host {self.host}"


@dataclass(frozen=True)
class DrainRequest(WaveRequest):
    """Move every VM with a file on a datastore off it (Storage vMotion of disks and home), balanced by free space."""

    kind: ClassVar[str] = "drain"
    datastore: str = param("", "the datastore to empty (name or moid)")
    to: list = param([], "target datastores (names or moids; comma-separated or repeatable); empty: every other "
                         "datastore the VM's host mounts", repeat=True, metavar="DATASTORE[,DATASTORE...]")
    disk_format: str = param("same", "same, thin, thick or eagerzeroedthick", choices=DISK_FORMATS)
    min_free: float = param(10.0, "no target datastore may go below this free space, in percent of its capacity",
                            minimum=0.0, maximum=95.0, metavar="PCT")

    def _validate(self) -> None:
        super()._validate()
        _split_names(self, "to")
        if not self.datastore:
            raise BadInput("no datastore given: give the datastore to drain (--datastore)")
        if self.datastore in self.to:
            raise BadInput(f"datastore {self.datastore!r} is both the one to drain and a target (--to)")

    def words(self) -> str:
        return f"drain datastore {self.datastore}"


@dataclass(frozen=True)
class PlanRequest(WaveRequest):
    """Run the moves a plan file lists (CSV or YAML: vm, host, datastore, disk_format, network)."""

    kind: ClassVar[str] = "plan"
    plan: str = param("", "a CSV or YAML file with one move per row: vm, host, datastore, disk_format, network "
                          "(OLD=NEW;OLD2=NEW2)", metavar="FILE")

    def _validate(self) -> None:
        super()._validate()
        if not self.plan:
            raise BadInput("no plan file given (--plan moves.csv or moves.yaml)")

    def words(self) -> str:
        return f"plan {self.plan.rsplit('/', 1)[-1]}"


@dataclass(frozen=True)
class UndoRequest(WaveRequest):
    """Move the VMs of an earlier run or wave back to where they were before it, as a new checked wave."""

    kind: ClassVar[str] = "undo"
    run_id: str = param("", "the run or wave to undo: its run id (its directory's name under reports/)",
                        metavar="RUN_ID")

    def _validate(self) -> None:
        super()._validate()
        if not self.run_id:
            raise BadInput("no run given: give the run id of the run or wave to undo")

    def words(self) -> str:
        return f"undo {self.run_id}"


def _split_names(request: Request, name: str) -> None:
    """``--to a,b --to c`` as ``[a, b, c]``: each entry of a repeated option may itself list names."""
    names = [n.strip() for entry in getattr(request, name) for n in entry.split(",")]
    object.__setattr__(request, name, [n for n in names if n])


WAVE_REQUESTS: dict[str, type[WaveRequest]] = {r.kind: r for r in (EvacuateRequest, DrainRequest, PlanRequest,
                                                                    UndoRequest)}
