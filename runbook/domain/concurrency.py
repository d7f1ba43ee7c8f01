"""vCenter's concurrent migration limits as costs, and what a set of running moves uses of them.

vCenter gives each host, network and datastore a budget and each kind of move a cost (vSphere's
"Limits on Simultaneous Migrations", shared/reference/vmotion.md): a host 8 (a vMotion costs 1, a Storage
vMotion 4), a host's vMotion network 4 on 1 GbE and 8 on 10 GbE (a vMotion costs 1), a datastore 128 (a
vMotion 1, a Storage vMotion 16). A move of host and datastore together counts against both. Over a
budget, vCenter queues the move; a wave never submits one over it, so nothing waits unseen in a queue
and a stop rule leaves nothing queued behind it. Pure functions: :class:`Limits` says whether one more
move fits beside the running ones, :func:`peaks` what a list of moves used at its busiest.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HOST_MAX_COST = 8
DATASTORE_MAX_COST = 128
VMOTION_HOST_COST, SVMOTION_HOST_COST = 1, 4
VMOTION_DATASTORE_COST, SVMOTION_DATASTORE_COST = 1, 16
VMOTIONS_1GBE, VMOTIONS_10GBE = 4, 8

#: A resource is (what, name): "net" a host's vMotion network (count), "host" a host's cost,
#: "svm-host" Storage vMotions on a host (count), "ds" a datastore's cost, "svm-ds" Storage vMotions on it.
Resource = tuple[str, str]
_WORDS = {"net": "vMotions on host {}", "host": "migration cost on host {}", "svm-host": "Storage vMotions on host {}",
          "ds": "migration cost on datastore {}", "svm-ds": "Storage vMotions on datastore {}"}


@dataclass(frozen=True)
class Move:
    """What a move occupies: the hosts it leaves and reaches, the datastores it reads and writes."""

    vm: str
    hosts: tuple[str, ...]
    datastores: tuple[str, ...]
    host_change: bool
    storage_change: bool


def move_of(row: Mapping[str, Any]) -> Move:
    """The :class:`Move` of a plan row (``vm``, ``source_host``, ``target_host``, ``source_datastores``,
    ``target_datastore``, ``move_kind``)."""
    kind = row.get("move_kind") or "none"
    hosts = tuple(dict.fromkeys(h for h in (row.get("source_host"), row.get("target_host")) if h))
    datastores = tuple(dict.fromkeys([*(row.get("source_datastores") or ()),
                                      *([row["target_datastore"]] if row.get("target_datastore") else [])]))
    return Move(vm=str(row.get("vm")), hosts=hosts, datastores=datastores,
                host_change=kind in ("host", "both"), storage_change=kind in ("datastore", "both"))


def demand(move: Move) -> dict[Resource, int]:
    """What the move costs each resource it touches."""
    need: dict[Resource, int] = defaultdict(int)
    for host in move.hosts:
        if move.host_change:
            need[("net", host)] += 1
        need[("host", host)] += SVMOTION_HOST_COST if move.storage_change else VMOTION_HOST_COST
        if move.storage_change:
            need[("svm-host", host)] += 1
    for ds in move.datastores:
        need[("ds", ds)] += SVMOTION_DATASTORE_COST if move.storage_change else VMOTION_DATASTORE_COST
        if move.storage_change:
            need[("svm-ds", ds)] += 1
    return dict(need)


def vmotions_for_link(link_mbps: int | None) -> int:
    """vCenter's concurrent vMotions per host for its fastest physical NIC (unknown: the 1 GbE limit)."""
    return VMOTIONS_10GBE if link_mbps and link_mbps >= 10_000 else VMOTIONS_1GBE


@dataclass(frozen=True)
class Limits:
    """The budgets a wave keeps to: vCenter's, or lower where the operator asked.

    ``vmotions_per_host``: 0 means vCenter's own limit for each host's link (``host_links``, Mb/s).
    """

    vmotions_per_host: int = 0
    svmotions_per_host: int = 2
    svmotions_per_datastore: int = 8
    host_links: Mapping[str, int | None] = field(default_factory=dict, hash=False)

    def vmotions_on(self, host: str) -> int:
        vcenter = vmotions_for_link(self.host_links.get(host))
        return min(self.vmotions_per_host, vcenter) if self.vmotions_per_host else vcenter

    def capacity(self, resource: Resource) -> int:
        what, name = resource
        return {"net": lambda: self.vmotions_on(name), "host": lambda: HOST_MAX_COST,
                "svm-host": lambda: min(self.svmotions_per_host, HOST_MAX_COST // SVMOTION_HOST_COST),
                "ds": lambda: DATASTORE_MAX_COST,
                "svm-ds": lambda: min(self.svmotions_per_datastore,
                                      DATASTORE_MAX_COST // SVMOTION_DATASTORE_COST)}[what]()

    def fits(self, move: Move, running: Iterable[Move]) -> bool:
        """Whether ``move`` can start now beside ``running`` without going over any budget."""
        used = usage(running)
        return all(used.get(r, 0) + need <= self.capacity(r) for r, need in demand(move).items())

    def to_dict(self, hosts: Iterable[str] = ()) -> dict[str, Any]:
        return {"vmotions_per_host": {h: self.vmotions_on(h) for h in sorted(set(hosts))},
                "svmotions_per_host": self.capacity(("svm-host", "")),
                "svmotions_per_datastore": self.capacity(("svm-ds", "")),
                "host_max_cost": HOST_MAX_COST, "datastore_max_cost": DATASTORE_MAX_COST}


def usage(running: Iterable[Move]) -> dict[Resource, int]:
    used: dict[Resource, int] = defaultdict(int)
    for move in running:
        for r, need in demand(move).items():
            used[r] += need
    return dict(used)


def words(resource: Resource) -> str:
    return _WORDS[resource[0]].format(resource[1])


def peaks(intervals: Iterable[tuple[dt.datetime, dt.datetime, Move]], limits: Limits) -> list[dict[str, Any]]:
    """The most each resource carried at once over ``intervals`` (start, end, move), with its limit.

    An interval ending at the instant another starts does not overlap it."""
    points: list[tuple[dt.datetime, int, Move]] = []
    for start, end, move in intervals:
        points += [(start, 1, move), (end, 0, move)]  # ends sort before starts at the same time
    used: dict[Resource, int] = defaultdict(int)
    peak: dict[Resource, int] = defaultdict(int)
    for _, starts, move in sorted(points, key=lambda p: (p[0], p[1])):
        for r, need in demand(move).items():
            used[r] += need if starts else -need
            peak[r] = max(peak[r], used[r])
    return [{"resource": words(r), "kind": r[0], "name": r[1], "peak": peak[r], "limit": limits.capacity(r)}
            for r in sorted(peak)]
