"""Device rows: the same XML read as raw elements and as pyvmomi's own objects gives the same rows.

The lab's VMs have no distributed port groups, client-device CD-ROMs or disks without
``capacityInBytes``; these cases are written here as the SOAP a vCenter sends, and pyvmomi's
deserializer is the reference for what the fast reader's elements must yield.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pyVmomi import SoapAdapter, vim

from runbook.vsphere import devices, soapdata

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_DEVICES = """
<VirtualDevice xsi:type="VirtualIDEController"><key>200</key>
  <deviceInfo><label>IDE 0</label><summary>IDE 0</summary></deviceInfo><busNumber>0</busNumber></VirtualDevice>
<VirtualDevice xsi:type="VirtualDisk"><key>2000</key>
  <deviceInfo><label>Hard disk 1</label><summary>x</summary></deviceInfo>
  <backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[ds-a] web/web.vmdk</fileName>
    <datastore type="Datastore">datastore-1</datastore><diskMode>persistent</diskMode>
    <thinProvisioned>false</thinProvisioned><eagerlyScrub>true</eagerlyScrub></backing>
  <controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInKB>1024</capacityInKB></VirtualDevice>
<VirtualDevice xsi:type="VirtualDisk"><key>2001</key>
  <deviceInfo><label>Hard disk 2</label><summary>x</summary></deviceInfo>
  <backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[gone] web/web_1.vmdk</fileName>
    <diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing>
  <capacityInKB>1</capacityInKB><capacityInBytes>4096</capacityInBytes></VirtualDevice>
<VirtualDevice xsi:type="VirtualVmxnet3"><key>4000</key>
  <deviceInfo><label>Network adapter 1</label><summary>dv</summary></deviceInfo>
  <backing xsi:type="VirtualEthernetCardDistributedVirtualPortBackingInfo">
    <port><switchUuid>50 2a</switchUuid><portgroupKey>dvportgroup-9</portgroupKey></port></backing>
  <macAddress>00:50:56:00:00:01</macAddress></VirtualDevice>
<VirtualDevice xsi:type="VirtualE1000e"><key>4001</key>
  <deviceInfo><label>Network adapter 2</label><summary>n</summary></deviceInfo>
  <backing xsi:type="VirtualEthernetCardNetworkBackingInfo"><deviceName>VM Network</deviceName>
    <network type="Network">network-7</network></backing></VirtualDevice>
<VirtualDevice xsi:type="VirtualCdrom"><key>3000</key>
  <deviceInfo><label>CD/DVD drive 1</label><summary>iso</summary></deviceInfo>
  <backing xsi:type="VirtualCdromIsoBackingInfo"><fileName>[iso-lib] tools.iso</fileName></backing>
  <connectable><startConnected>true</startConnected><allowGuestControl>false</allowGuestControl>
    <connected>true</connected></connectable></VirtualDevice>
<VirtualDevice xsi:type="VirtualCdrom"><key>3001</key>
  <deviceInfo><label>CD/DVD drive 2</label><summary>client</summary></deviceInfo>
  <backing xsi:type="VirtualCdromRemotePassthroughBackingInfo"><deviceName></deviceName>
    <exclusive>false</exclusive></backing></VirtualDevice>
<VirtualDevice xsi:type="VirtualCdrom"><key>3002</key>
  <deviceInfo><label>CD/DVD drive 3</label><summary>host</summary></deviceInfo>
  <backing xsi:type="VirtualCdromAtapiBackingInfo"><deviceName>/dev/cdrom</deviceName></backing></VirtualDevice>
<VirtualDevice xsi:type="VirtualCdrom"><key>3003</key></VirtualDevice>
"""
_VAL = (f'<val xmlns="urn:vim25" xmlns:xsi="{_XSI}" xsi:type="ArrayOfVirtualDevice">{_DEVICES}</val>')
_NAMES = {"datastore-1": "ds-a", "dvportgroup-9": "dv-prod", "network-7": "VM Network"}


class _Stub:
    version = "vim.version.version9"


def _name_of(moid):
    return None if moid is None else _NAMES.get(moid, moid)


@pytest.fixture(scope="module")
def both():
    objects = SoapAdapter.Deserialize(_VAL, vim.vm.device.VirtualDevice.Array)
    assert len(objects) == 9  # pyvmomi read every device
    raw = soapdata.Raw(ET.fromstring(_VAL), soapdata.Reader(_Stub()).elements)
    return devices.read(objects, _name_of), devices.read(raw, _name_of)


def test_raw_xml_and_pyvmomi_objects_give_the_same_rows(both):
    from_objects, from_xml = both
    assert from_xml == from_objects


def test_rows_say_what_the_devices_are(both):
    disks, nics, cdroms = both[1]
    assert [(d["key"], d["datastore"], d["datastore_moid"], d["capacity_bytes"], d["format"]) for d in disks] == [
        (2000, "ds-a", "datastore-1", 1024 * 1024, "eagerzeroedthick"),
        (2001, "gone", None, 4096, "thin"),  # no datastore reference: named from the file path
    ]
    assert [(n["port_group"], n["device_type"], n["mac"]) for n in nics] == [
        ("dv-prod", "VirtualVmxnet3", "00:50:56:00:00:01"), ("VM Network", "VirtualE1000e", None)]
    assert [(c["kind"], c["iso"], c["datastore"], c["connected"]) for c in cdroms] == [
        ("iso", "[iso-lib] tools.iso", "iso-lib", True), ("client-device", None, None, False),
        ("host-device", "/dev/cdrom", None, False), ("empty", None, None, False)]
    assert cdroms[3]["label"] == "3003"  # no deviceInfo: the key stands in for the label


def test_no_devices():
    assert devices.read(None, _name_of) == ([], [], [])
    assert devices.read([], _name_of) == ([], [], [])
