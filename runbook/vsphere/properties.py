"""Bulk property retrieval: one ContainerView and one PropertyCollector call per batch of objects.

Never walk objects attribute by attribute (each attribute is a round trip: about 44 times slower, see
shared/reference/performance.md). Views and their results are cleaned up in ``finally``.

``fast=True`` reads the reply with :mod:`runbook.fastsoap` (C ElementTree, plain conversion plans)
instead of pyvmomi's deserializer: same request, same records, about ten times less client time on
large inventories. It falls back to pyvmomi when the session's stub is not one it can drive, and is
switched off everywhere by ``RUNBOOK_FAST_SOAP=0``. Both paths follow ``ContinueRetrievePropertiesEx``
paging tokens (a real vCenter pages; ``max_objects`` asks for pages of that size).
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pyVmomi import vim, vmodl

from runbook.vsphere import fastsoap, forked


PC = vmodl.query.PropertyCollector

#: ``{moid: {"_type": class name, "_ref": moref, path: value, ...}}``
Records = dict[str, dict[str, Any]]


@contextlib.contextmanager
def container_view(si: vim.ServiceInstance, container: vim.ManagedEntity | None,
                   types: Sequence[type]) -> Iterator[vim.view.ContainerView]:
    """A recursive ContainerView of ``types`` under ``container`` (root folder by default), destroyed after."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(container or content.rootFolder, list(types), True)
    try:
        yield view
    finally:
        with contextlib.suppress(Exception):
            view.DestroyView()


def name_in(records: Records, moid: str | None) -> str | None:
    """The name in that object's record, the moid itself when it was not read, None for None."""
    if moid is None:
        return None
    rec = records.get(moid)
    return rec.get("name") if rec else moid


def namer(records: Records) -> Callable[[str | None], str | None]:
    """``name_of(moid)``: :func:`name_in` over ``records``."""
    return functools.partial(name_in, records)


def fast_enabled(si: vim.ServiceInstance) -> bool:
    """Whether ``fast=True`` will use the fast reader for this session (else pyvmomi)."""
    return os.environ.get("RUNBOOK_FAST_SOAP", "1").strip().lower() not in ("0", "false", "no", "off") \
        and fastsoap.usable(si)


def retrieve_view(si: vim.ServiceInstance, view: vim.view.ContainerView,
                  paths: Mapping[type, Sequence[str]], *, fast: bool = False,
                  keep_devices: Sequence[type] | None = None, raw: Sequence[str] = (),
                  alongside: Mapping[type, Sequence[str]] | None = None,
                  digest: Mapping[str, Callable[[Any], Any]] | None = None,
                  max_objects: int | None = None) -> Records:
    """Every object in ``view`` with the given property paths per type, in as few calls as the server allows.

    ``fast`` reads the reply with :mod:`runbook.fastsoap` (data objects then come as
    :class:`~runbook.fastsoap.Data`; use :func:`~runbook.fastsoap.vmomi_type` for their class);
    ``keep_devices`` lets that reader skip, unparsed, the virtual devices of other classes, and
    ``raw`` leave the values of those paths as XML (:class:`~runbook.soapdata.Raw`; pyvmomi's reader
    ignores both).

    ``alongside`` names paths (among ``paths``) asked for in a second request sent at the same time:
    the server builds both replies at once while the client reads the first. Worth it for a path
    that dominates the reply (``config.hardware.device`` is 70% of the VM table's bytes). Its
    values are added to the records of the objects in the first reply, each turned by
    ``digest[path]`` (if given) into what the caller needs of it. With the fast reader, the second
    request is read, parsed and digested by a forked child on the other core (:mod:`runbook.vsphere.forked`;
    digests must then return picklable values), else on a thread.
    """
    traverse = PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
    obj_spec = PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])
    read = functools.partial(_retrieve, si, [obj_spec], fast=fast, keep_devices=keep_devices, raw=raw,
                             max_objects=max_objects)
    apart = {t: [p for p in ps if p in (alongside or {}).get(t, ())] for t, ps in paths.items()}
    apart = {t: ps for t, ps in apart.items() if ps}
    if not apart:
        return read(paths)
    first = {t: ps or ["name"] for t, ps in ((t, [p for p in ps if p not in apart.get(t, ())])
                                               for t, ps in paths.items())}
    second = functools.partial(_digested, read, apart, digest or {})
    records, values = forked.beside(second, functools.partial(read, first), in_child=functools.partial(
        fastsoap.detach, si), fork=fast and fast_enabled(si), thread=True)
    for moid, rec in values.items():
        if moid in records:  # an object created between the two reads is not half-listed
            records[moid].update(rec)
    return records


def _digested(read: Callable[[Mapping[type, Sequence[str]]], Records], paths: Mapping[type, Sequence[str]],
              digest: Mapping[str, Callable[[Any], Any]]) -> dict[str, dict[str, Any]]:
    """``{moid: {path: value}}`` of ``read(paths)``, each value turned by its digest."""
    keep = lambda value: value  # noqa: E731
    return {moid: {p: digest.get(p, keep)(v) for p, v in rec.items() if p not in ("_type", "_ref")}
            for moid, rec in read(paths).items()}


def retrieve_objects(si: vim.ServiceInstance, objects: Sequence[vmodl.ManagedObject],
                     paths: Mapping[type, Sequence[str]], *, fast: bool = False,
                     max_objects: int | None = None) -> Records:
    """The given property paths of a known list of objects, in one call (more if the server pages)."""
    if not objects:
        return {}
    return _retrieve(si, [PC.ObjectSpec(obj=o, skip=False) for o in objects], paths, fast=fast,
                     max_objects=max_objects)


def _retrieve(si: vim.ServiceInstance, obj_specs: list, paths: Mapping[type, Sequence[str]], *,
              fast: bool = False, keep_devices: Sequence[type] | None = None, raw: Sequence[str] = (),
              max_objects: int | None = None) -> Records:
    prop_specs = [PC.PropertySpec(type=t, pathSet=list(p), all=False) for t, p in paths.items()]
    spec = PC.FilterSpec(objectSet=obj_specs, propSet=prop_specs, reportMissingObjectsInResults=False)
    options = PC.RetrieveOptions(maxObjects=max_objects) if max_objects else PC.RetrieveOptions()
    if fast and fast_enabled(si):
        return fastsoap.retrieve(si, spec, options, keep_devices=keep_devices, raw=raw)
    collector = si.content.propertyCollector
    records: Records = {}
    result = collector.RetrievePropertiesEx(specSet=[spec], options=options)
    while result is not None:
        for obj in result.objects:
            record = {"_type": type(obj.obj).__name__.split(".")[-1], "_ref": obj.obj}
            for prop in obj.propSet or ():
                record[prop.name] = prop.val
            records[obj.obj._moId] = record
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(token=result.token)
    return records
