"""Bulk retrieval: the fast reader (runbook.fastsoap) and pyvmomi give the same records and tables."""
from __future__ import annotations

import os

import pandas as pd
import pytest
from pyVmomi import vim

from runbook.vsphere import devices, fastsoap, forked, inventory, properties, soapdata
import runbook_lab as lab_mod
from runbook.vsphere.connection import Settings
from runbook.vsphere.inventory import read_inventory, read_vm_table
from runbook.vsphere.properties import container_view, retrieve_objects, retrieve_view


def _settings(info: lab_mod.LabInfo) -> Settings:
    return Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                    password=info.password)


def _both_ways(info: lab_mod.LabInfo, monkeypatch: pytest.MonkeyPatch):
    from runbook import connect

    with connect(_settings(info)) as si:
        assert fastsoap.usable(si)
        monkeypatch.setenv("RUNBOOK_FAST_SOAP", "1")
        monkeypatch.setenv("RUNBOOK_READ_FORK", "0")  # the devices read on a thread
        threaded, threaded_vms = read_inventory(si), read_vm_table(si)
        monkeypatch.setenv("RUNBOOK_READ_FORK", "1")  # ... and by a child process, where the machine can,
        monkeypatch.setattr(inventory, "_FORK_OTHERS_FROM", 1)  # the other tables' rows by one too, however small
        fast, fast_vms = read_inventory(si), read_vm_table(si)
        monkeypatch.setenv("RUNBOOK_FAST_SOAP", "0")
        slow, slow_vms = read_inventory(si), read_vm_table(si)
    _assert_same(threaded, threaded_vms, slow, slow_vms)
    return fast, fast_vms, slow, slow_vms


def _assert_same(fast, fast_vms, slow, slow_vms) -> None:
    for name, table in slow.tables().items():
        pd.testing.assert_frame_equal(fast.tables()[name], table, check_exact=True, obj=name)
    pd.testing.assert_frame_equal(fast_vms, slow.vms, check_exact=True)
    pd.testing.assert_frame_equal(slow_vms, slow.vms, check_exact=True)


def test_fast_and_pyvmomi_paths_give_identical_tables_on_the_default_lab(lab, monkeypatch):
    fast, fast_vms, slow, slow_vms = _both_ways(lab, monkeypatch)
    assert len(fast.vms) and len(fast.hosts) and len(fast.vmkernel)
    _assert_same(fast, fast_vms, slow, slow_vms)


def test_fast_and_pyvmomi_paths_give_identical_tables_on_the_prereq_failures_lab(fresh_lab, monkeypatch):
    info = fresh_lab("prereq-failures")
    fast, fast_vms, slow, slow_vms = _both_ways(info, monkeypatch)
    assert any(row for row in fast.vms["cdroms"])  # devices beyond disks and NICs are compared too
    _assert_same(fast, fast_vms, slow, slow_vms)


def _plain(value):
    """A comparable form of a record value (pyvmomi objects and fastsoap.Data alike)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, vim.ManagedEntity) or hasattr(value, "_moId"):
        return ("ref", type(value).__name__, value._moId)
    kind = fastsoap.vmomi_type(value)
    if hasattr(kind, "_propList"):
        props = {}
        for info in kind._GetPropertyList():
            props[info.name] = _plain(getattr(value, info.name))
        return (kind.__name__, props)
    return value


def test_records_are_the_same_value_for_value_and_pages_are_followed(si, lab, monkeypatch):
    """Every path of every type, page by page (maxObjects) or not: same values, both readers."""
    from runbook.vsphere.inventory import CLUSTER_PATHS, DATASTORE_PATHS, HOST_PATHS, POOL_PATHS, VM_PATHS

    types = {vim.VirtualMachine: VM_PATHS, vim.HostSystem: HOST_PATHS, vim.Datastore: DATASTORE_PATHS,
             vim.ClusterComputeResource: CLUSTER_PATHS, vim.ResourcePool: POOL_PATHS}
    control = lab_mod.LabControl(lab)
    with container_view(si, None, list(types)) as view:
        counts = []
        for kwargs in ({}, {"fast": True}, {"max_objects": 5}, {"fast": True, "max_objects": 5}):
            before = control.requests_served()
            got = retrieve_view(si, view, types, **kwargs)
            counts.append(control.requests_served() - before)
            if not kwargs:
                slow = got
            elif kwargs == {"fast": True}:
                fast = got
            elif "fast" in kwargs:
                paged_fast = got
            else:
                paged_slow = got
    assert len(slow) > 5
    assert counts[0] == counts[1] and counts[2] == counts[3], counts  # same requests, page for page
    assert counts[2] == counts[0] - 1 + -(-len(slow) // 5), counts  # the lab pages as vCenter does
    for got in (fast, paged_slow, paged_fast):
        assert set(got) == set(slow)
        for moid, record in slow.items():
            assert {k: _plain(v) for k, v in got[moid].items()} == {k: _plain(v) for k, v in record.items()}


def test_fast_reader_falls_back_to_pyvmomi_when_it_cannot_drive_the_stub(si, monkeypatch):
    with container_view(si, None, [vim.HostSystem]) as view:
        refs = [r["_ref"] for r in retrieve_view(si, view, {vim.HostSystem: ["name"]}).values()]
    fast = retrieve_objects(si, refs, {vim.HostSystem: ["summary.hardware"]}, fast=True)
    assert all(isinstance(r["summary.hardware"], fastsoap.Data) for r in fast.values())
    monkeypatch.setattr(fastsoap, "usable", lambda si: False)
    slow = retrieve_objects(si, refs, {vim.HostSystem: ["summary.hardware"]}, fast=True)
    assert all(isinstance(r["summary.hardware"], vim.host.Summary.HardwareSummary) for r in slow.values())
    assert {m: _plain(r["summary.hardware"]) for m, r in fast.items()} == \
        {m: _plain(r["summary.hardware"]) for m, r in slow.items()}


def test_faults_are_raised_like_pyvmomi(si):
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
    view.DestroyView()  # a destroyed view: the server answers with a fault
    errors = []
    for fast in (False, True):
        with pytest.raises(vmodl_fault()) as err:
            retrieve_view(si, view, {vim.VirtualMachine: ["name"]}, fast=fast)
        errors.append(type(err.value))
    assert errors[0] is errors[1]


def vmodl_fault():
    from pyVmomi import vmodl

    return vmodl.MethodFault


def test_prune_keeps_only_the_wanted_devices():
    body = (b'<val xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ArrayOfVirtualDevice">'
            b'<VirtualDevice xsi:type="VirtualIDEController"><key>200</key></VirtualDevice>'
            b'<VirtualDevice xsi:type="VirtualDisk"><key>2000</key></VirtualDevice>'
            b'<VirtualDevice xsi:type="VirtualKeyboard"><key>600</key></VirtualDevice>'
            b'<VirtualDevice xsi:type="VirtualVmxnet3"><key>4000</key></VirtualDevice></val>')

    class _Stub:
        version = "vim.version.version9"

    reader = soapdata.Reader(_Stub())
    pruned = fastsoap.prune_devices(body, (vim.vm.device.VirtualDisk, vim.vm.device.VirtualEthernetCard),
                                    reader)
    assert b"VirtualIDEController" not in pruned and b"VirtualKeyboard" not in pruned
    assert b"<key>2000</key>" in pruned and b"<key>4000</key>" in pruned


class _Stub:
    version = "vim.version.version9"


def test_prune_drops_empty_device_elements_too():
    body = (b'<val xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ArrayOfVirtualDevice">'
            b'<VirtualDevice xsi:type="VirtualKeyboard"/>'
            b'<VirtualDevice xsi:type="VirtualDisk"><key>2000</key></VirtualDevice></val>')
    pruned = fastsoap.prune_devices(body, (vim.vm.device.VirtualDisk,), soapdata.Reader(_Stub()))
    assert pruned == body.replace(b'<VirtualDevice xsi:type="VirtualKeyboard"/>', b"")


def test_pruner_gives_the_same_reply_once_it_knows_the_start_tags():
    body = (b'<val xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ArrayOfVirtualDevice">'
            b'<VirtualDevice xsi:type="VirtualIDEController"><key>200</key></VirtualDevice>'
            b'<VirtualDevice xsi:type="VirtualKeyboard"/>'
            b'<VirtualDevice xsi:type="VirtualDisk"><key>2000</key></VirtualDevice></val><x/>')
    later = body.replace(b"VirtualKeyboard", b"VirtualPointingDevice").replace(b"IDE", b"SATA")
    prune = fastsoap.Pruner((vim.vm.device.VirtualDisk,), soapdata.Reader(_Stub()))
    first = prune(body)
    assert first == body.replace(b'<VirtualDevice xsi:type="VirtualIDEController"><key>200</key></VirtualDevice>'
                                 b'<VirtualDevice xsi:type="VirtualKeyboard"/>', b"")
    assert prune.kept and prune.dropped  # learnt: the next replies take the fast path
    assert prune(body) == first
    assert prune(later) == first  # start tags not seen before are learnt too


_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_OBJECT = ('<objects><obj type="VirtualMachine">vm-N</obj>'
           '<propSet><name>name</name><val DECL XMLSchema-instance:type="xsd:string">vm N</val></propSet>'
           '<propSet><name>config.hardware.numCPU</name><val DECL XMLSchema-instance:type="xsd:int">N</val>'
           '</propSet></objects>')


def _reply(objects: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
            '<soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>' + objects +
            '</returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>').encode()


def test_repeated_namespace_declarations_are_declared_once_and_values_are_unchanged():
    decl = f'xmlns:XMLSchema-instance="{_XSI}"'
    body = _reply("".join(_OBJECT.replace("DECL", decl).replace("N", str(n)) for n in range(5)))
    records: dict = {}
    feed = fastsoap._Feed(soapdata.Reader(_Stub()), None, records)
    for i in range(0, len(body), 97):  # chunks cut anywhere, as they arrive
        feed.add(body[i:i + 97])
    assert feed.close() is None
    assert feed.decls == [(b' xmlns:XMLSchema-instance="', b" " + decl.encode())]
    assert {m: (r["_type"], r["name"], r["config.hardware.numCPU"]) for m, r in records.items()} == \
        {f"vm-{n}": ("VirtualMachine", f"vm {n}", n) for n in range(5)}


def test_a_prefix_bound_to_another_uri_is_left_alone():
    feed = fastsoap._Feed(soapdata.Reader(_Stub()), None, {})
    feed.decls = [(b' xmlns:XMLSchema-instance="', f' xmlns:XMLSchema-instance="{_XSI}"'.encode())]
    part = (f'<objects><val xmlns:XMLSchema-instance="{_XSI}"/>'
            '<val xmlns:XMLSchema-instance="urn:other"/></objects>').encode()
    assert feed._strip(part) == part


def test_guest_addresses_read_from_the_xml_are_those_of_every_nic_once(si):
    """guest.net is left as XML by the fast reader; its addresses read as pyvmomi's objects give them."""
    import xml.etree.ElementTree as ET

    from runbook.vsphere.inventory import _guest_ips

    xml = ('<val xmlns="urn:vim25" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:type="ArrayOfGuestNicInfo"><GuestNicInfo><network>pg</network><ipAddress>10.0.0.5</ipAddress>'
           '<ipAddress>fe80::1</ipAddress></GuestNicInfo><GuestNicInfo><ipAddress>10.0.0.5</ipAddress>'
           '<ipAddress>192.168.1.9</ipAddress></GuestNicInfo><GuestNicInfo/></val>')
    raw = soapdata.Raw(ET.fromstring(xml), soapdata.Reader(si._stub).elements)
    nics = [vim.vm.GuestInfo.NicInfo(network="pg", ipAddress=["10.0.0.5", "fe80::1"]),
            vim.vm.GuestInfo.NicInfo(ipAddress=["10.0.0.5", "192.168.1.9"]), vim.vm.GuestInfo.NicInfo()]
    assert _guest_ips(raw) == _guest_ips(nics) == ["10.0.0.5", "fe80::1", "192.168.1.9"]
    assert _guest_ips(None) == []


_VM_DEVICES = {vim.VirtualMachine: ["name", "config.hardware.device"]}
_DEVICES_APART = {"alongside": {vim.VirtualMachine: ["config.hardware.device"]},
                  "digest": {"config.hardware.device": devices.facts}, "keep_devices": devices.CLASSES,
                  "raw": ["config.hardware.device"], "fast": True}


def _children(monkeypatch) -> list[int]:
    """The pids of the read's children, as they are forked."""
    pids: list[int] = []
    start = forked.start

    def recorded(fn):
        child = start(fn)
        if child is not None:
            pids.append(child.pid)
        return child

    monkeypatch.setattr(forked, "start", recorded)
    return pids


def test_a_read_apart_comes_from_a_child_process_and_agrees_with_the_thread(si, monkeypatch, caplog):
    monkeypatch.setenv("RUNBOOK_READ_FORK", "1")
    if not forked.enabled():
        pytest.skip("this machine does not fork reads (one CPU)")
    pids = _children(monkeypatch)
    caplog.set_level("INFO", logger="runbook")  # a child that failed would say so here
    with container_view(si, None, [vim.VirtualMachine]) as view:
        by_child = retrieve_view(si, view, _VM_DEVICES, **_DEVICES_APART)
        monkeypatch.setenv("RUNBOOK_READ_FORK", "0")
        by_thread = retrieve_view(si, view, _VM_DEVICES, **_DEVICES_APART)
    assert len(pids) == 1 and not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert "in this process" not in caplog.text
    assert by_child.keys() == by_thread.keys() and by_child
    assert any(r["config.hardware.device"] for r in by_child.values())
    assert {m: r["config.hardware.device"] for m, r in by_child.items()} == \
        {m: r["config.hardware.device"] for m, r in by_thread.items()}


def test_a_child_that_fails_costs_time_not_the_result(si, monkeypatch, caplog):
    monkeypatch.setenv("RUNBOOK_READ_FORK", "1")
    if not forked.enabled():
        pytest.skip("this machine does not fork reads (one CPU)")
    with container_view(si, None, [vim.VirtualMachine]) as view:
        expected = retrieve_view(si, view, _VM_DEVICES, **_DEVICES_APART)
        parent = os.getpid()
        digest = devices.facts

        def fails_in_the_child(value):
            if os.getpid() != parent:
                raise RuntimeError("the child's digest failed")
            return digest(value)

        caplog.set_level("INFO", logger="runbook")
        got = retrieve_view(si, view, _VM_DEVICES, **{**_DEVICES_APART,
                                                      "digest": {"config.hardware.device": fails_in_the_child}})
    assert "RuntimeError" in caplog.text and "in this process" in caplog.text
    assert got == expected


def test_an_interrupted_read_leaves_no_child_behind(si, monkeypatch):
    monkeypatch.setenv("RUNBOOK_READ_FORK", "1")
    if not forked.enabled():
        pytest.skip("this machine does not fork reads (one CPU)")
    pids = _children(monkeypatch)
    parent = os.getpid()
    retrieve = properties._retrieve

    def interrupted(*args, **kwargs):
        if os.getpid() == parent and pids:  # the parent's own request, once the child runs
            raise KeyboardInterrupt
        return retrieve(*args, **kwargs)

    monkeypatch.setattr(properties, "_retrieve", interrupted)
    with container_view(si, None, [vim.VirtualMachine]) as view, pytest.raises(KeyboardInterrupt):
        retrieve_view(si, view, _VM_DEVICES, **_DEVICES_APART)
    assert len(pids) == 1 and not os.path.exists(f"/proc/{pids[0]}")


def test_a_fault_during_a_read_apart_is_raised_like_pyvmomi(si):
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
    view.DestroyView()
    with pytest.raises(vmodl_fault()):
        retrieve_view(si, view, _VM_DEVICES, **_DEVICES_APART)


def test_the_other_tables_built_by_a_child_are_those_built_here(lab, monkeypatch, caplog):
    from runbook import connect

    monkeypatch.setenv("RUNBOOK_READ_FORK", "1")
    if not forked.enabled():
        pytest.skip("this machine does not fork reads (one CPU)")
    pids = _children(monkeypatch)
    monkeypatch.setattr(inventory, "_FORK_OTHERS_FROM", 1)
    caplog.set_level("INFO", logger="runbook")
    with connect(_settings(lab)) as si:
        by_children = read_inventory(si)
        monkeypatch.setattr(inventory, "_FORK_OTHERS_FROM", 10**9)
        here = read_inventory(si)
    assert len(pids) == 3 and "in this process" not in caplog.text  # devices, other tables; devices again
    assert by_children.hosts["vm_count"].sum() == len(here.vms) > 0
    assert by_children.clusters["vm_count"].sum() > 0 and by_children.networks["vm_count"].sum() > 0
    for name, table in here.tables().items():
        pd.testing.assert_frame_equal(by_children.tables()[name], table, check_exact=True, obj=name)
