"""The lab's own encoder of paged PropertyCollector replies (sim/fastxml.go) writes the same bytes as the
simulator's: every property of every object, read unpaged (the simulator's encoder) and paged (the lab's),
in scenarios with hostile names, before and after a move and with tasks (times) in the reply.

Raw SOAP over http.client (pyvmomi would parse the bytes away); the requests are the ones pyvmomi sends.
"""
from __future__ import annotations

import http.client
import re
import time
from urllib.parse import urlparse
from xml.sax.saxutils import escape

import pytest

import runbook_lab as lab_mod

_ENV = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>')


class Soap:
    """A logged-in raw SOAP session to a lab."""

    def __init__(self, info: lab_mod.LabInfo):
        url = urlparse(info.url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.cookie = ""
        content = self.call("RetrieveServiceContent", '<_this type="ServiceInstance">ServiceInstance</_this>')
        self.ref = {k: re.search(rf'<{k} type="\w+">([^<]+)<'.encode(), content).group(1).decode()
                    for k in ("rootFolder", "viewManager", "propertyCollector", "sessionManager", "taskManager")}
        self.call("Login", f'<_this type="SessionManager">{self.ref["sessionManager"]}</_this>'
                           f'<userName>{escape(info.username)}</userName><password>{escape(info.password)}</password>')

    def call(self, method: str, inner: str, status: int = 200) -> bytes:
        headers = {"Content-Type": "text/xml", "SOAPAction": "urn:vim25/7.0"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = _ENV.format(f'<{method} xmlns="urn:vim25">{inner}</{method}>')
        self.conn.request("POST", "/sdk", body.encode(), headers)
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.getheader("Set-Cookie"):
            self.cookie = reply.getheader("Set-Cookie").split(";")[0]
        assert reply.status == status, data[:500]
        return data

    def view(self) -> str:
        reply = self.call("CreateContainerView",
                          f'<_this type="ViewManager">{self.ref["viewManager"]}</_this>'
                          f'<container type="Folder">{self.ref["rootFolder"]}</container>'
                          '<type>ManagedEntity</type><recursive>true</recursive>')
        return re.search(rb'<returnval type="ContainerView">([^<]+)<', reply).group(1).decode()

    def retrieve(self, objects: str, props: dict[str, list[str] | None], max_objects: int | None) -> list[bytes]:
        """The property paths of the objects per type (None: every property); every page of the reply."""
        options = f"<maxObjects>{max_objects}</maxObjects>" if max_objects else ""
        prop_sets = "".join(
            f"<propSet><type>{t}</type>" + ("<all>true</all>" if paths is None else
                                            "".join(f"<pathSet>{p}</pathSet>" for p in paths)) + "</propSet>"
            for t, paths in props.items())
        spec = f"<specSet>{prop_sets}{objects}</specSet><options>{options}</options>"
        pc = f'<_this type="PropertyCollector">{self.ref["propertyCollector"]}</_this>'
        pages = [self.call("RetrievePropertiesEx", pc + spec)]
        while token := re.search(rb"<token>([^<]+)</token>", pages[-1]):
            pages.append(self.call("ContinueRetrievePropertiesEx", f"{pc}<token>{token.group(1).decode()}</token>"))
        return pages

    def view_objects(self) -> str:
        return (f'<objectSet><obj type="ContainerView">{self.view()}</obj><skip>true</skip>'
                '<selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type>'
                '<path>view</path><skip>false</skip></selectSet></objectSet>')


XSI = 'xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance'


def objects_of(pages: list[bytes]) -> bytes:
    """The <objects> elements of all pages, in order."""
    out = b""
    for page in pages:
        returnval = re.search(rb"<returnval>(.*)</returnval>", page, re.S)
        out += re.sub(rb"^<token>[^<]*</token>", b"", returnval.group(1)) if returnval else b""
    return out


def assert_same_replies(s: Soap, objects: str, props: dict[str, list[str] | None], page: int = 3) -> bytes:
    stock = s.retrieve(objects, props, None)  # the simulator's collector and encoder (the lab does not page it)
    assert len(stock) == 1
    one_page = s.retrieve(objects, props, 1_000_000)  # the lab's, everything in one page
    assert one_page == stock
    paged = s.retrieve(objects, props, page)
    assert len(paged) == -(-stock[0].count(b"<objects>") // page)  # pages of `page` objects, the last fewer
    assert objects_of(paged) == objects_of(stock)
    return stock[0]


ALL = {"ManagedEntity": None}


def runbook_paths() -> dict[str, list[str] | None]:
    """The inventory's paths per type (as the runbook reads them), with paths vCenter has no value for,
    paths no object has, and a second spec that also matches every object."""
    from runbook.vsphere import inventory as inv
    odd = ["snapshot.currentSnapshot", "no.such.path", "config.noSuchField", "parent"]
    return {"VirtualMachine": inv.VM_PATHS + odd, "HostSystem": inv.HOST_PATHS + odd,
            "Datastore": inv.DATASTORE_PATHS, "ClusterComputeResource": inv.CLUSTER_PATHS,
            "Network": inv.NETWORK_PATHS, "ResourcePool": inv.POOL_PATHS,
            "ManagedEntity": ["name", "overallStatus", "alarmActionsEnabled"]}


def encoded(info: lab_mod.LabInfo) -> tuple[int, int]:
    counts = lab_mod.LabControl(info)._call("/requests")
    return counts["objects_encoded_fast"], counts["objects_encoded_stock"]


@pytest.mark.parametrize("scenario", ["hostile-names", "standalone"])
def test_paged_replies_are_the_simulators_bytes(fresh_lab, scenario: str) -> None:
    info = fresh_lab(scenario)
    s = Soap(info)
    reply = assert_same_replies(s, s.view_objects(), ALL)
    assert reply.count(b"<objects>") > 20  # every entity
    assert (b"&lt;img" in reply) == (scenario == "hostile-names")  # markup in names escaped
    paths = assert_same_replies(s, s.view_objects(), runbook_paths())
    assert b"<missingSet><path>no.such.path</path>" in paths and b"<name>config.hardware.device</name>" in paths
    fast, stock = encoded(info)
    assert fast > 80 and stock == 0  # the lab's encoder covered every value


def test_replies_follow_a_move_and_encode_tasks(fresh_lab) -> None:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim
    from pyVim.task import WaitForTask

    info = fresh_lab("default")
    s = Soap(info)
    before = assert_same_replies(s, s.view_objects(), ALL)
    si = SmartConnect(protocol="http", host=info.host, port=info.port, user=info.username, pwd=info.password)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vm = next(v for v in view.view if v.runtime.powerState == "poweredOn")
        cluster = vm.runtime.host.parent
        target = next(h for h in cluster.host if h != vm.runtime.host and h.runtime.connectionState == "connected")
        lab_mod.LabControl(info).set_migration_seconds(vm.name, 0.2)
        WaitForTask(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=target, pool=cluster.resourcePool)))
        task_moids = [t._moId for t in content.taskManager.recentTask]
        assert vm.runtime.host == target
        target_moid = target._moId
        vm_moid = vm._moId
    finally:
        Disconnect(si)
    time.sleep(0.6)  # the lab updates the hosts' memory in use within 0.25 s of a move (hostmemory.go)
    after = assert_same_replies(s, s.view_objects(), ALL)
    assert after != before
    assert after.count(b"<objects>") == before.count(b"<objects>")
    paths = assert_same_replies(s, s.view_objects(), runbook_paths())
    vm_paths = re.search(rf'<obj type="VirtualMachine">{vm_moid}</obj>.*?</objects>'.encode(), paths, re.S).group(0)
    host_now = f'<name>runtime.host</name><val {XSI}:type="ManagedObjectReference" type="HostSystem">{target_moid}<'
    assert host_now.encode() in vm_paths
    vm_xml = re.search(rf'<obj type="VirtualMachine">{vm_moid}</obj>.*?</objects>'.encode(), after, re.S).group(0)
    assert f'<host type="HostSystem">{target_moid}</host>'.encode() in vm_xml
    assert task_moids
    tasks = "".join(f'<objectSet><obj type="Task">{t}</obj><skip>false</skip></objectSet>' for t in task_moids)
    reply = assert_same_replies(s, tasks, {"Task": None}, page=1)
    assert b"<startTime>" in reply and b"<completeTime>" in reply  # times through the lab's encoder
    assert encoded(info)[1] == 0


FOLDERS = ('<objectSet><obj type="Folder">{root}</obj><skip>false</skip>'
           '<selectSet xsi:type="TraversalSpec"><name>folders</name><type>Folder</type><path>childEntity</path>'
           '<skip>false</skip><selectSet><name>folders</name></selectSet><selectSet><name>dcVms</name></selectSet>'
           '</selectSet><selectSet xsi:type="TraversalSpec"><name>dcVms</name><type>Datacenter</type>'
           '<path>vmFolder</path><skip>false</skip><selectSet><name>folders</name></selectSet></selectSet>'
           '</objectSet>')


def test_selection_by_named_traversals_and_a_missing_object(fresh_lab) -> None:
    """The lab's selection of a filter's objects (collect.go selectObjects) is the simulator's: a folder
    walk by named selection specs, an unknown object (fault), an unknown one reported missing, an unknown
    selection spec name (fault)."""
    info = fresh_lab("standalone")
    s = Soap(info)
    props = {"VirtualMachine": ["name", "runtime.host"], "Folder": ["name"], "Datacenter": ["name"]}
    walk = assert_same_replies(s, FOLDERS.format(root=s.ref["rootFolder"]), props)
    assert walk.count(b'<obj type="VirtualMachine">') > 3 and b'<obj type="Datacenter">' in walk
    vms_only = assert_same_replies(s, s.view_objects(), {"VirtualMachine": ["name"]})  # a view of every entity
    assert vms_only.count(b"<objects>") == vms_only.count(b'<obj type="VirtualMachine">') > 3

    vm = re.search(rb'<obj type="VirtualMachine">([^<]+)<', walk).group(1).decode()
    twice = 2 * f'<objectSet><obj type="VirtualMachine">{vm}</obj><skip>false</skip></objectSet>'
    assert assert_same_replies(s, twice, {"VirtualMachine": ["name"]}, page=1).count(b"<objects>") == 1

    missing = '<objectSet><obj type="VirtualMachine">vm-999999</obj><skip>false</skip></objectSet>'
    pc = f'<_this type="PropertyCollector">{s.ref["propertyCollector"]}</_this>'

    def fault(spec: str, options: str) -> bytes:
        return s.call("RetrievePropertiesEx", f"{pc}<specSet>{spec}</specSet><options>{options}</options>", status=500)

    spec = f"<propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet>{missing}"
    stock = fault(spec, "")
    assert b"ManagedObjectNotFound" in stock
    assert fault(spec, "<maxObjects>2</maxObjects>") == stock
    reported = spec + "<reportMissingObjectsInResults>true</reportMissingObjectsInResults>"
    stock = s.call("RetrievePropertiesEx", f"{pc}<specSet>{reported}</specSet><options></options>")
    paged = s.call("RetrievePropertiesEx",
                   f"{pc}<specSet>{reported}</specSet><options><maxObjects>2</maxObjects></options>")
    assert paged == stock and b"<returnval></returnval>" in stock
    unnamed = FOLDERS.format(root=s.ref["rootFolder"]).replace("<selectSet><name>dcVms</name></selectSet>",
                                                              "<selectSet><name>nowhere</name></selectSet>")
    spec = f"<propSet><type>Folder</type><pathSet>name</pathSet></propSet>{unnamed}"
    stock = fault(spec, "")
    assert b"InvalidArgument" in stock
    assert fault(spec, "<maxObjects>2</maxObjects>") == stock
