"""The "reader": walk every managed object a lab vCenter hands out and read every property of its
type, the way fact-gathering tools do, in bulk (RetrievePropertiesEx) and one by one (pyvmomi's
attribute access, the Fetch call). The lab must answer every read without dropping the connection
or panicking, and every reference it returns must name an object that exists."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import VmomiSupport, vim, vmodl

import runbook_lab as lab

PC = vmodl.query.PropertyCollector
# the scale scenario at a size that reads in seconds: every type of object is there all the same
SIZES = {"scale": {"vms": 60, "hosts": 4}}


def _props(si: vim.ServiceInstance, kind: type) -> list[str]:
    """The properties of a managed type that the API version spoken with the lab knows."""
    version = si._stub.version
    return [p.name for p in kind._GetPropertyList() if VmomiSupport.IsChildVersion(version, p.version)]


def _refs(value: object, out: list) -> None:
    if isinstance(value, VmomiSupport.ManagedObject):
        out.append(value)
    elif isinstance(value, list):
        for v in value:
            _refs(v, out)
    elif isinstance(value, VmomiSupport.DataObject):
        for p in value._GetPropertyList():
            _refs(getattr(value, p.name, None), out)


def walk(si: vim.ServiceInstance) -> dict[tuple[str, str], int]:
    """Read every property of every object reachable from the service content; return the number of
    properties read per object. Fails on the first read the lab cannot answer."""
    content = si.RetrieveContent()
    queue = [content.rootFolder] + [getattr(content, p.name) for p in content._GetPropertyList()
                                    if isinstance(getattr(content, p.name), VmomiSupport.ManagedObject)]
    seen: dict[tuple[str, str], int] = {}
    found_in: dict[tuple[str, str], str] = {}
    while queue:
        obj = queue.pop(0)
        key = (obj._wsdlName, obj._moId)
        if key in seen:
            continue
        names = _props(si, type(obj))
        where = found_in.get(key, "the service content")
        # in bulk: every property in one RetrievePropertiesEx (an object that does not exist faults here)
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=obj)],
                             propSet=[PC.PropertySpec(type=type(obj), pathSet=names, all=not names)])
        try:
            res = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        except vmodl.fault.ManagedObjectNotFound:
            pytest.fail(f"{key} (found in {where}) names no object")
        oc = res.objects[0]
        assert not oc.missingSet, (key, [(m.path, type(m.fault).__name__) for m in oc.missingSet])
        found: list = []
        for dp in oc.propSet:
            _refs(dp.val, found)
        # one by one, as pyvmomi's attribute access reads them (Fetch)
        for name in names:
            _refs(getattr(obj, name), found)
        for ref in found:
            rkey = (ref._wsdlName, ref._moId)
            if rkey not in seen:
                found_in.setdefault(rkey, f"{key[0]}:{key[1]}")
                queue.append(type(ref)(ref._moId, si._stub))
        seen[key] = len(names)
    return seen


@pytest.fixture(params=lab.scenarios())
def scenario_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[lab.LabInfo]:
    info = lab.start(request.param, state_dir=tmp_path / "lab", **SIZES.get(request.param, {}))
    yield info
    lab.stop(info.state_dir)


def bulk_reads(si: vim.ServiceInstance) -> dict[str, int]:
    """Every inventory object, every property of its type, by type through a ContainerView in the three ways
    bulk readers use: RetrieveContents (legacy), RetrievePropertiesEx with paging, and a filter with
    WaitForUpdatesEx. Returns how many objects of each type each read returned (they must agree)."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ManagedEntity], True)
    try:
        kinds = {type(o) for o in view.view}
        counts: dict[str, int] = {}
        for kind in sorted(kinds, key=lambda k: k._wsdlName):
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
                    PC.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[PC.PropertySpec(type=kind, pathSet=_props(si, kind))])
            legacy = content.propertyCollector.RetrieveContents([spec])
            paged, res = [], content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=50))
            while res:
                paged.extend(res.objects)
                res = content.propertyCollector.ContinueRetrievePropertiesEx(res.token) if res.token else None
            collector = content.propertyCollector.CreatePropertyCollector()
            try:
                collector.CreateFilter(spec, partialUpdates=False)
                update = collector.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0))
                waited = [o for fs in update.filterSet for o in fs.objectSet]
            finally:
                collector.DestroyPropertyCollector()
            for oc in legacy + paged:
                assert not oc.missingSet, (kind._wsdlName, oc.obj, [m.path for m in oc.missingSet])
            assert len(legacy) == len(paged) == len(waited) > 0, kind._wsdlName
            counts[kind._wsdlName] = len(paged)
        return counts
    finally:
        view.Destroy()


def test_every_property_of_every_object_reads(scenario_lab: lab.LabInfo) -> None:
    si = SmartConnect(protocol="http", host=scenario_lab.host, port=scenario_lab.port,
                      user=scenario_lab.username, pwd=scenario_lab.password)
    try:
        seen = walk(si)
        counts = bulk_reads(si)
        assert counts["VirtualMachine"] == len([k for k in seen if k[0] == "VirtualMachine"])
        kinds = {k for k, _ in seen}
        # the walk reached what fact-gathering tools read: inventory, host managers, events, tasks
        assert {"VirtualMachine", "HostSystem", "Datastore", "ResourcePool", "Network", "HostVsanSystem",
                "HostNetworkSystem", "HostVirtualNicManager", "HostDatastoreBrowser", "EventManager"} <= kinds
        assert sum(seen.values()) > 1000
        assert si.CurrentTime()  # the same connection, still answering
    finally:
        Disconnect(si)
    assert "panic" not in (scenario_lab.state_dir / "lab.log").read_text()
