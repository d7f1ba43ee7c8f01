"""Bulk property retrieval: one ContainerView and one PropertyCollector call per batch of objects.

Never walk objects attribute by attribute (each attribute is a round trip: about 44 times slower, see
shared/reference/performance.md). Views and their results are cleaned up in ``finally``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pyVmomi import vim, vmodl

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


def retrieve_view(si: vim.ServiceInstance, view: vim.view.ContainerView,
                  paths: Mapping[type, Sequence[str]]) -> Records:
    """Every object in ``view`` with the given property paths per type, in as few calls as the server allows."""
    traverse = PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
    obj_spec = PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])
    return _retrieve(si, [obj_spec], paths)


def retrieve_objects(si: vim.ServiceInstance, objects: Sequence[vmodl.ManagedObject],
                     paths: Mapping[type, Sequence[str]]) -> Records:
    """The given property paths of a known list of objects, in one call."""
    if not objects:
        return {}
    return _retrieve(si, [PC.ObjectSpec(obj=o, skip=False) for o in objects], paths)


def _retrieve(si: vim.ServiceInstance, obj_specs: list, paths: Mapping[type, Sequence[str]]) -> Records:
    prop_specs = [PC.PropertySpec(type=t, pathSet=list(p), all=False) for t, p in paths.items()]
    spec = PC.FilterSpec(objectSet=obj_specs, propSet=prop_specs, reportMissingObjectsInResults=False)
    collector = si.content.propertyCollector
    records: Records = {}
    result = collector.RetrievePropertiesEx(specSet=[spec], options=PC.RetrieveOptions())
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
