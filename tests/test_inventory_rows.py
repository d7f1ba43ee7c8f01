"""Hosts, VMkernel adapters, datastores, clusters, pools and networks: the rows read from raw XML equal the
rows read from pyvmomi's own objects and from the fast reader's data objects.

The full inventory leaves the large values of these objects as XML (``inventory._RAW_ALL``:
mount lists, adapters, NIC services, CPU packages, cluster configuration) and reads a few fields of
each (:mod:`runbook.vsphere.rows`). The labs' objects have plain names, every mount mounted and
every property set, so these cases are written here as the SOAP a vCenter sends: names with markup
and quotes, unset properties (a datastore without maintenance mode or uncommitted space, a mount
without ``mountInfo`` or ``mounted``, a cluster without configuration or without DRS), NIC services
selected by key and by ``nicType.key``, the legacy vMotion adapter, a mount unmounted, a read-only
one, hosts that were not read (named by their moid). pyvmomi's deserializer is the reference.
"""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from pyVmomi import SoapAdapter, vmodl

from runbook.vsphere import inventory, soapdata
from runbook.vsphere.soapdata import Raw


def _mo(kind: str, moid: str, tag: str = "ManagedObjectReference") -> str:
    return f'<{tag} type="{kind}" xsi:type="ManagedObjectReference">{moid}</{tag}>'


def _prop(name: str, val: str, xsi: str) -> str:
    return f'<propSet><name>{name}</name><val xsi:type="{xsi}">{val}</val></propSet>'


def _vnic(device: str, portgroup: str, ip: str | None, tag: str = "HostVirtualNic") -> str:
    spec = "<spec>" + (f"<ip><dhcp>false</dhcp><ipAddress>{ip}</ipAddress></ip>" if ip else "") + "<mtu>1500</mtu></spec>"
    return (f"<{tag}><device>{device}</device><key>key-vim.host.VirtualNic-{device}</key>"
            f"<portgroup>{portgroup}</portgroup>{spec}</{tag}>")


_HOST = "".join([
    '<objects><obj type="HostSystem">host-1</obj>',
    _prop("name", "esx &lt;b&gt;&quot;one&quot; &amp; co", "xsd:string"),
    _prop("parent", "domain-c1", "ManagedObjectReference").replace("<val ", '<val type="ClusterComputeResource" '),
    _prop("runtime.connectionState", "connected", "HostSystemConnectionState"),
    _prop("runtime.powerState", "poweredOn", "HostSystemPowerState"),
    _prop("runtime.inMaintenanceMode", "true", "xsd:boolean"),
    _prop("hardware.cpuPkg", "<HostCpuPackage><index>0</index><vendor>GenuineIntel</vendor>"
          "<description>Xeon &lt;x&gt;</description></HostCpuPackage><HostCpuPackage><index>1</index>"
          "<vendor>other</vendor></HostCpuPackage>", "ArrayOfHostCpuPackage"),
    _prop("summary.hardware.cpuModel", "Xeon &lt;i&gt;", "xsd:string"),
    _prop("summary.maxEVCModeKey", "intel-cascadelake", "xsd:string"),  # summary.currentEVCModeKey unset
    _prop("config.network.vnic", _vnic("vmk0", "Management &lt;Network&gt;", "10.0.0.1")
          + _vnic("vmk1", "vMotion &amp; more", "10.1.0.1") + _vnic("vmk2", "legacy", None)
          + _vnic("vmk3", "&quot;quoted&quot;", ""), "ArrayOfHostVirtualNic"),
    _prop("config.virtualNicManagerInfo.netConfig",
          "<VirtualNicManagerNetConfig><nicType>management</nicType><multiSelectAllowed>true</multiSelectAllowed>"
          + _vnic("vmk0", "Management &lt;Network&gt;", "10.0.0.1", "candidateVnic")
          + "<selectedVnic>management.key-vim.host.VirtualNic-vmk0</selectedVnic></VirtualNicManagerNetConfig>"
          "<VirtualNicManagerNetConfig><nicType>vmotion</nicType><multiSelectAllowed>true</multiSelectAllowed>"
          + _vnic("vmk1", "vMotion &amp; more", "10.1.0.1", "candidateVnic")
          + _vnic("vmk3", "&quot;quoted&quot;", "", "candidateVnic")
          + "<selectedVnic>key-vim.host.VirtualNic-vmk1</selectedVnic>"
          "<selectedVnic>vmotion.key-vim.host.VirtualNic-vmk3</selectedVnic></VirtualNicManagerNetConfig>"
          "<VirtualNicManagerNetConfig><nicType>faultToleranceLogging</nicType>"
          "<multiSelectAllowed>true</multiSelectAllowed>"
          + _vnic("vmk0", "Management &lt;Network&gt;", "10.0.0.1", "candidateVnic")
          + "</VirtualNicManagerNetConfig>", "ArrayOfVirtualNicManagerNetConfig"),
    _prop("config.vmotion.netConfig.selectedVnic", "vmk2", "xsd:string"),  # the legacy choice, by device name
    _prop("datastore", _mo("Datastore", "datastore-1") + _mo("Datastore", "datastore-2"),
          "ArrayOfManagedObjectReference"),
    _prop("network", _mo("Network", "network-1"), "ArrayOfManagedObjectReference"),
    "</objects>",
    # a host with nothing but its name and states: no adapters, no services, no CPU packages, no datastores
    '<objects><obj type="HostSystem">host-2</obj>', _prop("name", "bare", "xsd:string"),
    _prop("runtime.connectionState", "disconnected", "HostSystemConnectionState"), "</objects>",
])


def _mount(host: str, info: str | None) -> str:
    return f'<DatastoreHostMount><key type="HostSystem">{host}</key>{info or ""}</DatastoreHostMount>'


_DATASTORES = "".join([
    '<objects><obj type="Datastore">datastore-1</obj>', _prop("name", "nfs &lt;01&gt; &amp; &apos;x&apos;", "xsd:string"),
    _prop("summary", '<datastore type="Datastore">datastore-1</datastore><name>nfs</name><url>ds:///x</url>'
          "<capacity>1000000</capacity><freeSpace>400000</freeSpace><uncommitted>50000</uncommitted>"
          "<accessible>true</accessible><multipleHostAccess>true</multipleHostAccess><type>NFS</type>"
          "<maintenanceMode>inMaintenance</maintenanceMode>", "DatastoreSummary"),
    _prop("host", _mount("host-1", "<mountInfo><path>/x</path><accessMode>readWrite</accessMode>"
                                   "<mounted>true</mounted><accessible>true</accessible></mountInfo>")
          + _mount("host-2", "<mountInfo><accessMode>readOnly</accessMode></mountInfo>")  # mounted unset
          + _mount("host-77", "<mountInfo><accessMode>readOnly</accessMode><mounted>true</mounted></mountInfo>")
          + _mount("host-3", "<mountInfo><accessMode>readWrite</accessMode><mounted>false</mounted></mountInfo>")
          + _mount("host-4", None), "ArrayOfDatastoreHostMount"),
    "</objects>",
    # unset: uncommitted, maintenance mode, the mount list
    '<objects><obj type="Datastore">datastore-2</obj>', _prop("name", "local", "xsd:string"),
    _prop("summary", "<name>local</name><url>ds:///y</url><capacity>10</capacity><freeSpace>10</freeSpace>"
          "<accessible>false</accessible><type>VMFS</type>", "DatastoreSummary"),
    "</objects>",
])

_CLUSTERS = "".join([
    '<objects><obj type="ClusterComputeResource">domain-c1</obj>', _prop("name", "Cl &lt;A&gt;", "xsd:string"),
    _prop("host", _mo("HostSystem", "host-1") + _mo("HostSystem", "host-2") + _mo("HostSystem", "host-99"),
          "ArrayOfManagedObjectReference"),
    _prop("summary.currentEVCModeKey", "intel-cascadelake", "xsd:string"),
    _prop("configurationEx", "<drsConfig><enabled>true</enabled><defaultVmBehavior>fullyAutomated</defaultVmBehavior>"
          "</drsConfig><dasConfig><enabled>false</enabled></dasConfig>", "ClusterConfigInfoEx"),
    "</objects>",
    '<objects><obj type="ClusterComputeResource">domain-c2</obj>', _prop("name", "no DRS", "xsd:string"),
    _prop("configurationEx", "<dasConfig><enabled>true</enabled></dasConfig>", "ClusterConfigInfoEx"),
    "</objects>",
    '<objects><obj type="ClusterComputeResource">domain-c3</obj>', _prop("name", "unset", "xsd:string"),
    "</objects>",
    '<objects><obj type="ResourcePool">resgroup-1</obj>', _prop("name", "Resources", "xsd:string"),
    _prop("owner", "domain-c1", "ManagedObjectReference").replace("<val ", '<val type="ClusterComputeResource" '),
    _prop("parent", "domain-c1", "ManagedObjectReference").replace("<val ", '<val type="ClusterComputeResource" '),
    "</objects>",
    '<objects><obj type="ResourcePool">resgroup-2</obj>', _prop("name", "a&lt;b&gt; &amp;", "xsd:string"),
    _prop("owner", "domain-c1", "ManagedObjectReference").replace("<val ", '<val type="ClusterComputeResource" '),
    _prop("parent", "resgroup-1", "ManagedObjectReference").replace("<val ", '<val type="ResourcePool" '),
    "</objects>",
    '<objects><obj type="Network">network-1</obj>', _prop("name", "VM &lt;Net&gt;", "xsd:string"),
    _prop("host", _mo("HostSystem", "host-1") + _mo("HostSystem", "host-9"), "ArrayOfManagedObjectReference"),
    "</objects>",
])

_REPLY = ('<?xml version="1.0" encoding="UTF-8"?>'
          '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
          'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
          '<soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>'
          + _HOST + _DATASTORES + _CLUSTERS + "</returnval></RetrievePropertiesExResponse></soapenv:Body>"
          "</soapenv:Envelope>").encode()


@pytest.fixture(scope="module")
def stub():
    return SoapAdapter.SoapStubAdapter(host="localhost", version="vim.version.version9")


def _pyvmomi_records(stub) -> dict:
    result_type = vmodl.query.PropertyCollector._GetMethodInfo("RetrievePropertiesEx").result
    result = SoapAdapter.SoapResponseDeserializer(stub).Deserialize(io.BytesIO(_REPLY), result_type)
    records = {}
    for obj in result.objects:
        record = {"_type": type(obj.obj).__name__.split(".")[-1], "_ref": obj.obj}
        for prop in obj.propSet or ():
            record[prop.name] = prop.val
        records[obj.obj._moId] = record
    return records


def _fast_records(stub, raw) -> dict:
    records: dict = {}
    soapdata.read_result(ET.fromstring(_REPLY), soapdata.Reader(stub), records, raw)
    return records


@pytest.fixture(scope="module")
def three(stub):
    """(pyvmomi's objects, the fast reader's data objects, raw XML): the inventory each gives."""
    built = []
    for records in (_pyvmomi_records(stub), _fast_records(stub, ()), _fast_records(stub, inventory._RAW_ALL)):
        built.append(inventory._build(records, {m: "DC <1>" for m in records}, []))
    return built


def test_the_raw_values_are_left_as_xml(stub):
    records = _fast_records(stub, inventory._RAW_ALL)
    for moid, path in [("host-1", "config.network.vnic"), ("host-1", "hardware.cpuPkg"), ("datastore-1", "host"),
                       ("datastore-1", "summary"), ("domain-c1", "configurationEx"), ("network-1", "host"),
                       ("host-1", "config.virtualNicManagerInfo.netConfig")]:
        assert isinstance(records[moid][path], Raw), (moid, path)


@pytest.mark.parametrize("table", ["hosts", "vmkernel", "datastores", "clusters", "pools", "networks"])
def test_raw_xml_data_objects_and_pyvmomi_give_the_same_rows(three, table):
    pyvmomi, data, raw = (inv.tables()[table] for inv in three)
    assert len(pyvmomi)
    pd.testing.assert_frame_equal(data, pyvmomi, check_exact=True)
    pd.testing.assert_frame_equal(raw, pyvmomi, check_exact=True)


def test_rows_say_what_the_xml_says(three):
    inv = three[2]
    host = inv.host("host-1")
    assert host["name"] == 'esx <b>"one" & co' and host["cluster"] == "Cl <A>" and host["maintenance"]
    assert (host["cpu_vendor"], host["cpu_model"], host["evc_mode"]) == ("genuineintel", "Xeon <i>", None)
    assert host["vmotion_vmks"] == ["vmk1", "vmk2", "vmk3"] and host["vmotion_ips"] == ["10.1.0.1"]
    assert host["datastores"] == ["local", "nfs <01> & 'x'"] and host["port_groups"] == ["VM <Net>"]
    vmk = inv.vmkernel.set_index("device")
    assert vmk.loc["vmk0", "port_group"] == "Management <Network>" and vmk.loc["vmk0", "ip"] == "10.0.0.1"
    assert vmk.loc["vmk0", "services"] == ["management"]  # a candidate for FT logging, not selected
    assert vmk.loc["vmk2", "ip"] is None and vmk.loc["vmk3", "ip"] is None and vmk.loc["vmk3", "port_group"] == '"quoted"'
    bare = inv.host("bare")
    assert bare["vmotion_vmks"] == [] and bare["cpu_vendor"] is None and bare["datastores"] == []
    ds = inv.datastore("datastore-1")
    assert ds["hosts"] == ["bare", 'esx <b>"one" & co', "host-4", "host-77"]  # unmounted host-3 left out
    assert ds["read_only_hosts"] == ["bare", "host-77"]
    assert (ds["capacity_bytes"], ds["free_bytes"], ds["provisioned_bytes"]) == (1000000, 400000, 650000)
    assert ds["maintenance_mode"] == "inMaintenance" and ds["accessible"] and ds["type"] == "NFS"
    local = inv.datastore("local")
    assert (local["maintenance_mode"], local["accessible"], local["hosts"], local["provisioned_bytes"]) == \
        ("normal", False, [], 0)
    clusters = inv.clusters.set_index("moid")
    assert clusters.loc["domain-c1", "hosts"] == ["bare", 'esx <b>"one" & co', "host-99"]
    assert [tuple(clusters.loc[c, ["drs_enabled", "ha_enabled"]]) for c in ("domain-c1", "domain-c2", "domain-c3")] == \
        [(True, False), (False, True), (False, False)]
    assert clusters.loc["domain-c1", "root_pool_moid"] == "resgroup-1"
    pools = inv.pools.set_index("moid")
    assert pools.loc["resgroup-2", "name"] == "a<b> &" and not pools.loc["resgroup-2", "root"]
    assert inv.networks.iloc[0]["hosts"] == ['esx <b>"one" & co', "host-9"]


def test_fast_rows_equal_pyvmomi_rows_on_the_hostile_names_lab(fresh_lab, monkeypatch):
    """The same comparison through the whole read, on a lab: both readers, every table."""
    from runbook import connect
    from runbook.vsphere.connection import Settings

    info = fresh_lab("hostile-names")
    with connect(Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                          password=info.password)) as si:
        monkeypatch.setenv("RUNBOOK_FAST_SOAP", "1")
        fast = inventory.read_inventory(si)
        monkeypatch.setenv("RUNBOOK_FAST_SOAP", "0")
        slow = inventory.read_inventory(si)
    assert any("<" in n for n in fast.vms["name"])
    for name, table in slow.tables().items():
        assert len(table), name
        pd.testing.assert_frame_equal(fast.tables()[name], table, check_exact=True, obj=name)
