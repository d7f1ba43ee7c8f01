"""Integration tests of the lab vCenter (sim/ + runbook/lab.py), asserted through pyvmomi."""
from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

import runbook_lab as lab
from runbook.errors import LabError
from conftest import objects_by_name

GB = 1 << 30


def _connect(info: lab.LabInfo, **kw: object) -> vim.ServiceInstance:
    proto = "https" if info.url.startswith("https") else "http"
    return SmartConnect(protocol=proto, host=info.host, port=info.port, user=info.username,
                        pwd=info.password, **kw)


@pytest.fixture(scope="module")
def default_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabInfo]:
    """A default-scenario lab shared by read-only tests; relocation tests use their own labs."""
    info = lab.start("default", state_dir=tmp_path_factory.mktemp("lab-default"))
    yield info
    lab.stop(info.state_dir)


@pytest.fixture(scope="module")
def si(default_lab: lab.LabInfo) -> Iterator[vim.ServiceInstance]:
    s = _connect(default_lab)
    yield s
    Disconnect(s)


@pytest.fixture()
def fresh_lab(tmp_path: Path) -> Iterator[tuple[lab.LabInfo, vim.ServiceInstance]]:
    """A throw-away prereq-failures lab for tests that change state."""
    info = lab.start("prereq-failures", state_dir=tmp_path / "lab")
    lab.LabControl(info).set_migration_seconds(None, 0.3)
    s = _connect(info)
    yield info, s
    Disconnect(s)
    lab.stop(info.state_dir)



def relocate(vm: vim.VirtualMachine, **spec: object) -> vim.Task:
    return vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(**spec))


def wait_error(task: vim.Task) -> vmodl.MethodFault:
    with pytest.raises(vmodl.MethodFault) as e:
        WaitForTask(task)
    return e.value


# ----- inventory -----------------------------------------------------------------------------


def test_mount_lists_consistent(si: vim.ServiceInstance) -> None:
    hosts = objects_by_name(si, vim.HostSystem)
    for ds in objects_by_name(si, vim.Datastore).values():
        mounted = {m.key.name for m in ds.host}
        seeing = {h.name for h in hosts.values() if ds in h.datastore}
        assert mounted == seeing and mounted, ds.name
        assert ds.summary.multipleHostAccess == (len(mounted) > 1)
    folder = si.RetrieveContent().rootFolder.childEntity[0].datastoreFolder
    names = [d.name for d in folder.childEntity]
    assert len(names) == len(set(names)) == 5


def test_per_host_networks(si: vim.ServiceInstance) -> None:
    for net in objects_by_name(si, vim.Network).values():
        for h in net.host:
            assert net in h.network
    for h in objects_by_name(si, vim.HostSystem).values():
        assert {n.name for n in h.network} == {"VM Network", "App Network"}
        assert {p.spec.name for p in h.config.network.portgroup} >= {"VM Network", "App Network"}
        assert [v.device for v in h.configManager.networkSystem.networkInfo.vnic] == ["vmk0", "vmk1"]
        assert h.hardware.cpuPkg[0].vendor == "intel"
        assert h.summary.currentEVCModeKey == "intel-cascadelake"


def test_vm_guest_and_storage(si: vim.ServiceInstance) -> None:
    vms = objects_by_name(si, vim.VirtualMachine)
    assert len(vms) == 12
    ips = {vm.guest.ipAddress for vm in vms.values() if vm.runtime.powerState == "poweredOn"}
    assert len(ips) == 11 and all(ip.startswith("127.0.10.") for ip in ips)
    web = vms["web-01"]
    assert web.summary.guest.ipAddress == "127.0.10.1"
    assert web.guest.net[0].ipAddress == ["127.0.10.1"] and web.guest.net[0].network == "VM Network"
    assert web.guest.toolsRunningStatus == "guestToolsRunning"
    disk = [d for d in web.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)][0]
    assert disk.capacityInBytes == 40 * GB and disk.backing.thinProvisioned
    assert web.summary.storage.committed >= 12 * GB and web.summary.storage.uncommitted == 28 * GB
    assert any(f.type == "diskExtent" and f.size == 12 * GB for f in web.layoutEx.file)
    iso = vms["iso-01"]
    assert {d.name for d in iso.datastore} == {"nfs-01", "nfs-02"}
    nfs1 = objects_by_name(si, vim.Datastore)["nfs-01"]
    assert nfs1.summary.freeSpace < nfs1.summary.capacity - 200 * GB


def test_vmotion_nic_select_deselect(default_lab: lab.LabInfo) -> None:
    s = _connect(default_lab)
    h = objects_by_name(s, vim.HostSystem)["esx-03.lab.local"]
    nm = h.configManager.virtualNicManager
    assert nm.QueryNetConfig("vmotion").selectedVnic
    h.configManager.vmotionSystem.DeselectVnic()
    assert not h.config.vmotion.netConfig.selectedVnic
    assert not h.summary.config.vmotionEnabled
    cfg = {c.nicType: c for c in h.config.virtualNicManagerInfo.netConfig}
    assert not cfg["vmotion"].selectedVnic and cfg["management"].selectedVnic
    nm.SelectVnicForNicType("vmotion", "vmk1")
    assert h.summary.config.vmotionEnabled
    assert h.config.vmotion.netConfig.selectedVnic.endswith("vmk1")
    nm.DeselectVnicForNicType("vmotion", "vmk1")
    assert not h.summary.config.vmotionEnabled
    h.configManager.vmotionSystem.SelectVnic("vmk1")
    assert h.summary.config.vmotionEnabled
    assert nm.QueryNetConfig("vmotion").selectedVnic
    Disconnect(s)


def test_bad_credentials(default_lab: lab.LabInfo) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(protocol="http", host=default_lab.host, port=default_lab.port,
                     user=default_lab.username, pwd="wrong")


def test_bulk_retrieval_and_requests(default_lab: lab.LabInfo, si: vim.ServiceInstance) -> None:
    ctl = lab.LabControl(default_lab)
    before = ctl.requests_served()
    c = si.RetrieveContent()
    view = c.viewManager.CreateContainerView(c.rootFolder, [vim.VirtualMachine], True)
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
            obj=view, skip=True, selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                name="t", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
    res = c.propertyCollector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    view.Destroy()
    assert len(res.objects) == 12
    assert ctl.requests_served() - before <= 4


def test_status_exports_and_refusal(default_lab: lab.LabInfo) -> None:
    info = lab.status(default_lab.state_dir)
    assert info is not None and info.pid == default_lab.pid
    assert "password" not in repr(info) and default_lab.password not in repr(info)
    ex = info.exports()
    assert "export GOVC_URL=" in ex and "GOVC_INSECURE=1" in ex and "GOVC_PASSWORD" in ex
    assert (default_lab.state_dir / "lab.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(LabError, match="already running"):
        lab.start("default", state_dir=default_lab.state_dir)
    with pytest.raises(LabError, match="available: .*default"):
        lab.start("nope", state_dir=default_lab.state_dir / "x")
    assert default_lab.password not in (default_lab.state_dir / "lab.log").read_text()


# ----- relocation ----------------------------------------------------------------------------


def test_relocate_async_progress_and_bookkeeping(default_lab: lab.LabInfo) -> None:
    s = _connect(default_lab)
    vms, hosts = objects_by_name(s, vim.VirtualMachine), objects_by_name(s, vim.HostSystem)
    vm, src, dst = vms["util-01"], hosts["esx-03.lab.local"], hosts["esx-01.lab.local"]
    lab.LabControl(default_lab).set_migration_seconds("util-01", 1.0)
    task = relocate(vm, host=dst)
    assert task.info.state in ("queued", "running")
    assert task.info.descriptionId == "VirtualMachine.relocate"
    seen: list[int] = []
    WaitForTask(task, onProgressUpdate=lambda t, p: seen.append(p) if isinstance(p, int) else None)
    assert task.info.state == "success" and task.info.completeTime and task.info.startTime
    assert any(0 < p < 100 for p in seen), seen
    assert vm.runtime.host == dst and vm.summary.runtime.host == dst
    assert vm in dst.vm and vm not in src.vm
    Disconnect(s)


@pytest.mark.parametrize("fmt", ["thin", "thick", "eagerzeroedthick"])
def test_storage_move_each_format(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance], fmt: str) -> None:
    _, s = fresh_lab
    vm = objects_by_name(s, vim.VirtualMachine)["app-02"]
    nfs1, nfs2 = objects_by_name(s, vim.Datastore)["nfs-01"], objects_by_name(s, vim.Datastore)["nfs-02"]
    free1, free2 = nfs1.summary.freeSpace, nfs2.summary.freeSpace
    disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        diskMode="persistent", thinProvisioned=fmt == "thin", eagerlyScrub=fmt == "eagerzeroedthick")
    locs = [vim.vm.RelocateSpec.DiskLocator(diskId=d.key, datastore=nfs2, diskBackingInfo=backing) for d in disks]
    WaitForTask(relocate(vm, datastore=nfs2, disk=locs))
    assert vm.config.files.vmPathName.startswith("[nfs-02]")
    assert vm.summary.config.vmPathName.startswith("[nfs-02]")
    assert [d.name for d in vm.datastore] == ["nfs-02"]
    assert vm in nfs2.vm and vm not in nfs1.vm
    for d in [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]:
        assert d.backing.fileName.startswith("[nfs-02]") and d.backing.datastore == nfs2
        assert d.backing.thinProvisioned == (fmt == "thin")
        assert d.backing.eagerlyScrub == (fmt == "eagerzeroedthick")
    assert all(f.name.startswith("[nfs-02]") for f in vm.layoutEx.file)
    expected = (15 if fmt == "thin" else 80) * GB
    assert nfs1.summary.freeSpace - free1 >= 15 * GB
    assert free2 - nfs2.summary.freeSpace >= expected
    assert vm.summary.storage.uncommitted == (65 * GB if fmt == "thin" else 0)


def test_combined_move_nic_and_events(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance]) -> None:
    _, s = fresh_lab
    vms, hosts, dss = objects_by_name(s, vim.VirtualMachine), objects_by_name(s, vim.HostSystem), objects_by_name(s, vim.Datastore)
    nets = objects_by_name(s, vim.Network)
    vm, dst = vms["web-01"], hosts["esx-02.lab.local"]
    nic = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)][0]
    nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
        deviceName="App Network", network=nets["App Network"])
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)
    pool = vm.resourcePool
    WaitForTask(relocate(vm, host=dst, datastore=dss["local-esx-02"], pool=pool, deviceChange=[change]))
    assert vm.runtime.host == dst and vm in dst.vm
    assert [d.name for d in vm.datastore] == ["local-esx-02"] and vm in dss["local-esx-02"].vm
    assert vm.resourcePool == pool and vm in pool.vm
    assert [n.name for n in vm.network] == ["App Network"] and vm.guest.net[0].network == "App Network"
    em = s.RetrieveContent().eventManager
    events = em.QueryEvents(vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"), maxCount=1000))
    kinds = {type(e).__name__.split(".")[-1] for e in events}
    assert {"TaskEvent", "VmBeingHotMigratedEvent", "VmMigratedEvent", "VmRelocatedEvent"} <= kinds, kinds
    mig = [e for e in events if isinstance(e, vim.event.VmMigratedEvent)][0]
    assert mig.host.host == dst and mig.sourceHost.name == "esx-01.lab.local"
    assert mig.datacenter.name == "DC1" and mig.createdTime


def test_cold_move_event(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance]) -> None:
    _, s = fresh_lab
    vm = objects_by_name(s, vim.VirtualMachine)["build-01"]
    WaitForTask(relocate(vm, host=objects_by_name(s, vim.HostSystem)["esx-03.lab.local"]))
    em = s.RetrieveContent().eventManager
    events = em.QueryEvents(vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"), maxCount=1000))
    kinds = {type(e).__name__.split(".")[-1] for e in events}
    assert {"VmBeingRelocatedEvent", "VmRelocatedEvent"} <= kinds


FAULTS = [
    # (vm, target host, datastore, expected fault)
    ("web-01", "esx-06.lab.local", None, vim.fault.InvalidHostConnectionState),
    ("web-01", "esx-05.lab.local", None, vim.fault.InvalidHostState),
    ("web-01", "esx-04.lab.local", None, vim.fault.VMotionNotConfigured),
    ("partial-01", "esx-03.lab.local", None, vim.fault.DatastoreNotWritableOnHost),
    ("iso-local-01", "esx-02.lab.local", None, vim.fault.CannotAccessVmDevice),
    ("web-01", None, "nfs-full", vim.fault.NoDiskSpace),
    ("web-01", "esx-07.lab.local", None, vim.fault.CpuIncompatible),
    ("cd-host-01", "esx-01.lab.local", None, vim.fault.DisallowedMigrationDeviceAttached),
    ("cd-client-01", "esx-01.lab.local", None, vim.fault.RemoteDeviceNotSupported),
    ("dmz-01", "esx-03.lab.local", None, vim.fault.DeviceBackingNotSupported),
]


def test_faults_and_checker(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance]) -> None:
    _, s = fresh_lab
    vms, hosts, dss = objects_by_name(s, vim.VirtualMachine), objects_by_name(s, vim.HostSystem), objects_by_name(s, vim.Datastore)
    checker = s.RetrieveContent().vmProvisioningChecker
    for vm_name, host, ds, fault in FAULTS:
        vm = vms[vm_name]
        spec = vim.vm.RelocateSpec(host=hosts[host] if host else None, datastore=dss[ds] if ds else None)
        task = checker.CheckRelocate_Task(vm=vm, spec=spec)
        WaitForTask(task)
        errors = list(task.info.result[0].error)
        assert any(isinstance(e, fault) for e in errors), (vm_name, fault, errors)
        before = vm.runtime.host
        err = wait_error(vm.RelocateVM_Task(spec=spec))
        assert isinstance(err, fault), (vm_name, err)
        assert vm.runtime.host == before
    # a failed migration posts its event
    events = s.RetrieveContent().eventManager.QueryEvents(vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=vms["web-01"], recursion="self"), maxCount=1000))
    assert any(isinstance(e, vim.event.VmFailedMigrateEvent) for e in events)
    assert any(isinstance(e, vim.event.VmRelocateFailedEvent) for e in events)
    # a healthy check: no error; powered-off VM: a cold-migration warning
    task = checker.CheckRelocate_Task(vm=vms["build-01"], spec=vim.vm.RelocateSpec(host=hosts["esx-01.lab.local"]))
    WaitForTask(task)
    assert not task.info.result[0].error and task.info.result[0].warning


def test_missing_reference_is_a_fault(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance]) -> None:
    _, s = fresh_lab
    vm = objects_by_name(s, vim.VirtualMachine)["web-01"]
    ghost = vim.HostSystem("host-99999", s._stub)
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=ghost))
    ghost_ds = vim.Datastore("datastore-99999", s._stub)
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(datastore=ghost_ds))
    assert vm.name == "web-01"  # the connection survived


def test_cancel_in_progress_and_injected(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance]) -> None:
    info, s = fresh_lab
    ctl = lab.LabControl(info)
    vms, hosts = objects_by_name(s, vim.VirtualMachine), objects_by_name(s, vim.HostSystem)
    vm = vms["web-02"]
    ctl.set_migration_seconds("web-02", 3)
    task = relocate(vm, host=hosts["esx-01.lab.local"])
    time.sleep(0.3)
    busy = relocate(vm, host=hosts["esx-03.lab.local"])
    assert isinstance(wait_error(busy), vim.fault.TaskInProgress)
    task.CancelTask()
    assert isinstance(wait_error(task), vmodl.fault.RequestCanceled)
    assert vm.runtime.host.name == "esx-02.lab.local"
    ctl.inject_fault("web-02", "GenericVmConfigFault", "planted by the test")
    err = wait_error(relocate(vm, host=hosts["esx-01.lab.local"]))
    assert isinstance(err, vim.fault.GenericVmConfigFault)
    assert vm.runtime.host.name == "esx-02.lab.local"


def test_controls(fresh_lab: tuple[lab.LabInfo, vim.ServiceInstance]) -> None:
    info, s = fresh_lab
    ctl = lab.LabControl(info)
    hosts, vms = objects_by_name(s, vim.HostSystem), objects_by_name(s, vim.VirtualMachine)
    ctl.disconnect_host("esx-03.lab.local")
    assert hosts["esx-03.lab.local"].runtime.connectionState == "disconnected"
    ctl.reconnect_host("esx-03.lab.local")
    assert hosts["esx-03.lab.local"].runtime.connectionState == "connected"
    ctl.set_guest_ip("web-01", "127.0.99.1")
    assert vms["web-01"].guest.ipAddress == "127.0.99.1" == vms["web-01"].summary.guest.ipAddress
    ctl.set_delay("CurrentTime", 300)
    t = time.monotonic()
    s.CurrentTime()
    assert time.monotonic() - t >= 0.3
    ctl.set_delay("CurrentTime", 0)
    assert ctl.placement("web-01")["host"] == "esx-01.lab.local"
    with pytest.raises(LabError):
        ctl.inject_fault("web-01", "NoSuchFault")


# ----- TLS, stop, scale ----------------------------------------------------------------------


def test_tls_and_stop(tmp_path: Path) -> None:
    info = lab.start("default", tls=True, state_dir=tmp_path / "lab")
    try:
        assert info.url.startswith("https://") and info.ca_file and info.ca_file.exists()
        assert "GOVC_TLS_CA_CERTS" in info.exports()
        ok = ssl.create_default_context(cafile=str(info.ca_file))
        s = _connect(info, sslContext=ok)
        assert s.CurrentTime()
        Disconnect(s)
        with pytest.raises(ssl.SSLError):
            _connect(info, sslContext=ssl.create_default_context())
    finally:
        assert lab.stop(info.state_dir)
    with pytest.raises(ProcessLookupError):
        os.kill(info.pid, 0)
    assert not (info.state_dir / "tmp").exists() and not (info.state_dir / "datastores").exists()
    assert lab.status(info.state_dir) is None and not lab.stop(info.state_dir)


def _bulk_names(info: lab.LabInfo) -> int:
    s = _connect(info)
    c = s.RetrieveContent()
    view = c.viewManager.CreateContainerView(c.rootFolder, [vim.VirtualMachine], True)
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
            obj=view, skip=True, selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                name="t", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(
            type=vim.VirtualMachine, pathSet=["name", "runtime.host", "guest.ipAddress"])])
    n = 0
    res = c.propertyCollector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    while res:
        n += len(res.objects)
        res = c.propertyCollector.ContinueRetrievePropertiesEx(res.token) if res.token else None
    view.Destroy()
    Disconnect(s)
    return n


def test_scale_1000(tmp_path: Path) -> None:
    t = time.monotonic()
    info = lab.start("scale", vms=1000, hosts=32, state_dir=tmp_path / "lab")
    try:
        assert time.monotonic() - t < 60
        assert _bulk_names(info) == 1000
    finally:
        lab.stop(info.state_dir)


@pytest.mark.slow
def test_scale_10000(tmp_path: Path) -> None:
    """A 10,000-VM lab starts and serves every VM (its start time is the benchmark's business, not a test's)."""
    info = lab.start("scale", vms=10000, hosts=320, state_dir=tmp_path / "lab")
    try:
        assert _bulk_names(info) == 10000
    finally:
        lab.stop(info.state_dir)


# ----- what vCenter clients read and do (issue 17) ------------------------------------------------


@pytest.fixture()
def lab_of(tmp_path: Path) -> Iterator:
    """A factory of throw-away labs of any scenario, with fast moves: ``info, si = lab_of("standalone")``."""
    made: list[tuple[lab.LabInfo, vim.ServiceInstance]] = []

    def make(scenario: str = "default") -> tuple[lab.LabInfo, vim.ServiceInstance]:
        info = lab.start(scenario, state_dir=tmp_path / f"lab-{len(made)}")
        lab.LabControl(info).set_migration_seconds(None, 0.3)
        made.append((info, _connect(info)))
        return made[-1]

    yield make
    for info, s in made:
        Disconnect(s)
        lab.stop(info.state_dir)


def disks_of(vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualDisk]:
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


def test_host_only_move_of_a_split_disk_vm_keeps_every_disk_where_it_is(lab_of) -> None:
    _, s = lab_of()
    vm = objects_by_name(s, vim.VirtualMachine)["app-01"]
    before = [(d.backing.fileName, d.backing.datastore.name) for d in disks_of(vm)]
    assert [b[1] for b in before] == ["nfs-02", "nfs-01"]
    WaitForTask(relocate(vm, host=objects_by_name(s, vim.HostSystem)["esx-02.lab.local"]))
    assert vm.runtime.host.name == "esx-02.lab.local"
    after = [(d.backing.fileName, d.backing.datastore.name) for d in disks_of(vm)]
    assert after == before
    assert all(f"[{ds}]" in name for name, ds in after)  # backing.datastore agrees with fileName
    assert sorted(d.name for d in vm.datastore) == ["nfs-01", "nfs-02"]


def test_standalone_hosts_have_their_own_compute_resource_and_pool(lab_of) -> None:
    _, s = lab_of("standalone")
    hosts, vms = objects_by_name(s, vim.HostSystem), objects_by_name(s, vim.VirtualMachine)
    h11, h12, h1 = hosts["esx-11.lab.local"], hosts["esx-12.lab.local"], hosts["esx-01.lab.local"]
    for h in (h11, h12):
        cr = h.parent
        assert type(cr) is vim.ComputeResource and cr.host == [h] and cr.name == h.name
        assert cr.resourcePool.owner == cr and cr.resourcePool.parent == cr
        assert {n.name for n in cr.network} == {"VM Network", "App Network"}
        assert {d.name for d in cr.datastore} == {d.name for d in h.datastore}
        assert not h.summary.currentEVCModeKey
    assert h11.parent.resourcePool != h12.parent.resourcePool != h1.parent.resourcePool
    vm = vms["edge-01"]
    assert vm.resourcePool == h11.parent.resourcePool and vm in h11.parent.resourcePool.vm
    # standalone to standalone: the target's root pool with or without spec.pool
    WaitForTask(relocate(vm, host=h12))
    assert vm.runtime.host == h12 and vm.resourcePool == h12.parent.resourcePool
    assert vm in h12.parent.resourcePool.vm and vm not in h11.parent.resourcePool.vm
    # standalone into the cluster, the cluster's root pool given
    WaitForTask(relocate(vm, host=h1, pool=h1.parent.resourcePool))
    assert vm.runtime.host == h1 and vm.resourcePool == h1.parent.resourcePool
    migrated = s.RetrieveContent().eventManager.QueryEvents(vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"), eventTypeId=["VmMigratedEvent"]))
    assert sorted(e.computeResource.name for e in migrated) == ["Cluster-A", "esx-12.lab.local"]


def test_a_pool_of_another_compute_resource_is_refused_with_vcenters_fault(lab_of) -> None:
    _, s = lab_of("standalone")
    hosts, vm = objects_by_name(s, vim.HostSystem), objects_by_name(s, vim.VirtualMachine)["edge-01"]
    wrong = hosts["esx-12.lab.local"].parent.resourcePool
    spec = vim.vm.RelocateSpec(host=hosts["esx-01.lab.local"], pool=wrong)
    check = s.RetrieveContent().vmProvisioningChecker.CheckRelocate_Task(vm=vm, spec=spec)
    WaitForTask(check)
    assert [e.invalidProperty for e in check.info.result[0].error] == ["pool"]
    err = wait_error(vm.RelocateVM_Task(spec=spec))
    assert isinstance(err, vmodl.fault.InvalidArgument) and err.invalidProperty == "pool"
    assert vm.runtime.host.name == "esx-11.lab.local" and vm.resourcePool == hosts["esx-11.lab.local"].parent.resourcePool


def test_check_relocate_honours_test_type(lab_of) -> None:
    _, s = lab_of("prereq-failures")
    hosts, vms = objects_by_name(s, vim.HostSystem), objects_by_name(s, vim.VirtualMachine)
    checker = s.RetrieveContent().vmProvisioningChecker

    def faults(vm: str, host: str, test_type: list[str] | None) -> set[str]:
        task = checker.CheckRelocate_Task(vm=vms[vm], spec=vim.vm.RelocateSpec(host=hosts[host]), testType=test_type)
        WaitForTask(task)
        return {type(e).__name__.split(".")[-1] for e in task.info.result[0].error}

    assert faults("dmz-01", "esx-03.lab.local", None) == {"DeviceBackingNotSupported"}
    assert faults("dmz-01", "esx-03.lab.local", ["networkTests"]) == {"DeviceBackingNotSupported"}
    assert faults("dmz-01", "esx-03.lab.local", ["sourceTests", "hostTests", "datastoreTests"]) == set()
    assert faults("partial-01", "esx-03.lab.local", ["datastoreTests"]) == {"DatastoreNotWritableOnHost"}
    assert faults("partial-01", "esx-03.lab.local", ["hostTests"]) == set()
    assert faults("cd-host-01", "esx-01.lab.local", ["sourceTests"]) == {"DisallowedMigrationDeviceAttached"}
    assert faults("web-01", "esx-04.lab.local", ["hostTests"]) == {"VMotionNotConfigured"}


def test_cancelable_while_running_and_one_event_chain_per_task(lab_of) -> None:
    info, s = lab_of()
    vm = objects_by_name(s, vim.VirtualMachine)["web-01"]
    lab.LabControl(info).set_migration_seconds("web-01", 1.0)
    em = s.RetrieveContent().eventManager
    started = s.CurrentTime()
    task = relocate(vm, host=objects_by_name(s, vim.HostSystem)["esx-02.lab.local"])
    time.sleep(0.4)
    assert task.info.state == "running" and task.info.cancelable is True
    WaitForTask(task)
    assert task.info.cancelable is False
    chain = task.info.eventChainId
    assert chain
    events = em.QueryEvents(vim.event.EventFilterSpec(eventChainId=chain))
    assert sorted(type(e).__name__.split(".")[-1] for e in events) == [
        "TaskEvent", "VmBeingHotMigratedEvent", "VmMigratedEvent"]
    assert {e.chainId for e in events} == {chain}
    first = [e for e in events if isinstance(e, vim.event.TaskEvent)][0]
    assert first.key == chain and first.info.eventChainId == chain and first.info.key == task.info.key
    # a failed move's events are a chain of their own
    failed = relocate(vm, host=objects_by_name(s, vim.HostSystem)["esx-03.lab.local"],
                      datastore=objects_by_name(s, vim.Datastore)["local-esx-01"])  # not mounted on esx-03
    wait_error(failed)
    other = em.QueryEvents(vim.event.EventFilterSpec(eventChainId=failed.info.eventChainId))
    assert {type(e).__name__.split(".")[-1] for e in other} == {"TaskEvent", "VmBeingHotMigratedEvent",
                                                                 "VmFailedMigrateEvent"}
    assert not {e.key for e in other} & {e.key for e in events}
    # the time window
    since = em.QueryEvents(vim.event.EventFilterSpec(time=vim.event.EventFilterSpec.ByTime(beginTime=started)))
    assert {e.key for e in since} == {e.key for e in events} | {e.key for e in other}
    before = em.QueryEvents(vim.event.EventFilterSpec(time=vim.event.EventFilterSpec.ByTime(endTime=started),
                                                      maxCount=1000))
    assert before and all(e.createdTime <= started for e in before) and not {e.key for e in before} & {e.key for e in since}


def test_query_events_filters_by_entity_and_type_and_caps_the_newest(lab_of) -> None:
    _, s = lab_of()
    vms, hosts = objects_by_name(s, vim.VirtualMachine), objects_by_name(s, vim.HostSystem)
    WaitForTask(relocate(vms["web-01"], host=hosts["esx-02.lab.local"]))
    WaitForTask(relocate(vms["web-02"], host=hosts["esx-01.lab.local"]))
    em = s.RetrieveContent().eventManager
    mine = em.QueryEvents(vim.event.EventFilterSpec(
        entity=vim.event.EventFilterSpec.ByEntity(entity=vms["web-01"], recursion="self"),
        eventTypeId=["VmMigratedEvent"]))
    assert [e.vm.name for e in mine] == ["web-01"]
    everything = em.QueryEvents(vim.event.EventFilterSpec(maxCount=1000))
    newest = em.QueryEvents(vim.event.EventFilterSpec(maxCount=2))
    assert [e.key for e in newest] == sorted((e.key for e in everything), reverse=True)[:2]
    assert newest[0].vm.name == "web-02"
    with pytest.raises(vmodl.fault.InvalidArgument):
        em.QueryEvents(vim.event.EventFilterSpec(maxCount=-1))


def test_vcenter_device_labels_and_datastore_moids(si: vim.ServiceInstance) -> None:
    vms = objects_by_name(si, vim.VirtualMachine)
    labels = [d.deviceInfo.label for d in vms["app-03"].config.hardware.device]
    assert {"SCSI controller 0", "Hard disk 1", "Network adapter 1", "Network adapter 2"} <= set(labels), labels
    assert [d.deviceInfo.label for d in disks_of(vms["app-02"])] == ["Hard disk 1", "Hard disk 2"]
    cds = [d for d in vms["iso-01"].config.hardware.device if isinstance(d, vim.vm.device.VirtualCdrom)]
    assert [d.deviceInfo.label for d in cds] == ["CD/DVD drive 1"]
    ides = [d for d in vms["iso-01"].config.hardware.device if isinstance(d, vim.vm.device.VirtualIDEController)]
    assert len(ides) == 2 and cds[0].controllerKey == ides[0].key
    datastores = objects_by_name(si, vim.Datastore)
    assert all(ds._moId.startswith("datastore-") and ds._moId[10:].isdigit() for ds in datastores.values())
    assert all(ds.summary.datastore == ds for ds in datastores.values())
    disk = disks_of(vms["web-01"])[0]
    assert disk.backing.datastore == datastores["nfs-01"]


def test_storage_figures_survive_refresh(lab_of) -> None:
    _, s = lab_of()
    vms, dss = objects_by_name(s, vim.VirtualMachine), objects_by_name(s, vim.Datastore)

    def figures() -> tuple:
        vm = vms["app-01"]
        return (vm.summary.storage.committed, vm.summary.storage.uncommitted,
                sorted((f.name, f.type, f.size) for f in vm.layoutEx.file),
                sorted((u.datastore.name, u.committed) for u in vm.storage.perDatastoreUsage),
                {d.name: (d.summary.freeSpace, d.info.freeSpace) for d in dss.values()})

    before = figures()
    assert {t for _, t, _ in before[2]} >= {"config", "nvram", "log", "swap", "diskDescriptor", "diskExtent"}
    assert before[0] > 28 * GB
    for vm in vms.values():
        assert vm.RefreshStorageInfo() is None
    for ds in dss.values():
        assert ds.RefreshDatastore() is None
        ds.RefreshDatastoreStorageInfo()
    assert figures() == before


def test_every_vmkernel_service_type(lab_of) -> None:
    _, s = lab_of()
    h = objects_by_name(s, vim.HostSystem)["esx-01.lab.local"]
    nm = h.configManager.virtualNicManager
    kinds = {c.nicType for c in h.config.virtualNicManagerInfo.netConfig}
    services = ["vSphereProvisioning", "faultToleranceLogging", "vSphereReplication", "vSphereReplicationNFC",
                "vsan", "vsanWitness", "vSphereBackupNFC", "ptp"]
    assert kinds == {"management", "vmotion", *services}
    for t in services:
        assert not nm.QueryNetConfig(t).selectedVnic
        nm.SelectVnicForNicType(t, "vmk1")
        assert nm.QueryNetConfig(t).selectedVnic == [f"{t}.key-vim.host.VirtualNic-vmk1"]
        selected = {c.nicType: c.selectedVnic for c in h.config.virtualNicManagerInfo.netConfig}
        assert selected[t] == [f"{t}.key-vim.host.VirtualNic-vmk1"]
        nm.DeselectVnicForNicType(t, "vmk1")
        assert not nm.QueryNetConfig(t).selectedVnic
    assert h.summary.config.vmotionEnabled  # the other services leave vMotion alone
    with pytest.raises(vmodl.fault.InvalidArgument):
        nm.QueryNetConfig("nope")
    with pytest.raises(vmodl.fault.InvalidArgument):
        nm.SelectVnicForNicType("vsan", "vmk9")


def test_host_managers_exist_and_unset_properties_read_as_unset(si: vim.ServiceInstance) -> None:
    hosts = objects_by_name(si, vim.HostSystem)
    h = hosts["esx-01.lab.local"]
    vsan = h.configManager.vsanSystem
    assert vsan.config.enabled is False and vsan.config.hostSystem == h
    assert vsan.QueryHostStatus().nodeState.state == "notInVsanCluster"
    assert h.config.host == h and h.config.vsanHostConfig.hostSystem == h
    assert h.datastoreBrowser.datastore == h.datastore
    others = {hosts[n].configManager.cpuScheduler._moId for n in hosts}
    assert len(others) == len(hosts)  # each host its own manager objects
    assert h.configManager.networkSystem.networkConfig is None  # unset: no dropped connection
    vm = objects_by_name(si, vim.VirtualMachine)["web-01"]
    assert vm.snapshot is None and vm.parentVApp is None and vm.rootSnapshot == []
    assert vm.name == "web-01"  # the connection is still up


def test_format_change_of_a_disk_that_stays_is_not_made(lab_of) -> None:
    _, s = lab_of()
    vm = objects_by_name(s, vim.VirtualMachine)["web-01"]
    nfs1 = objects_by_name(s, vim.Datastore)["nfs-01"]
    disk = disks_of(vm)[0]
    thick = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", thinProvisioned=False,
                                                          eagerlyScrub=True)
    WaitForTask(relocate(vm, disk=[vim.vm.RelocateSpec.DiskLocator(diskId=disk.key, datastore=nfs1,
                                                                   diskBackingInfo=thick)]))
    disk = disks_of(vm)[0]
    assert disk.backing.thinProvisioned and not disk.backing.eagerlyScrub
    assert disk.backing.datastore == nfs1


# ----- vCenter's concurrency limits: excess relocations wait queued ------------------------------------


def test_relocations_over_the_limits_wait_queued_and_the_counts_never_exceed_them(lab_of) -> None:
    """12 vMotions off esx-01 at once (10 GbE: 8 allowed per host) and 3 Storage vMotions of VMs on one host
    (2 allowed per host): the excess waits in state queued, cancelable, and starts when room frees; the lab's
    own count (LabControl.concurrency) never shows more than the limits, and every task succeeds."""
    info, s = lab_of("evacuate")
    control = lab.LabControl(info)
    control.set_migration_seconds(None, 1.0)
    vms = objects_by_name(s, vim.VirtualMachine)
    hosts = objects_by_name(s, vim.HostSystem)
    tasks = [relocate(vms[f"evac-{i:02d}"], host=hosts["esx-02.lab.local"]) for i in range(1, 13)]
    time.sleep(0.5)
    states = [t.info.state for t in tasks]
    assert states.count("running") == 8 and states.count("queued") == 4, states
    queued = next(t for t in tasks if t.info.state == "queued")
    assert queued.info.cancelable is True and queued.info.startTime is None
    for t in tasks:
        WaitForTask(t)
    counted = control.concurrency()
    assert counted["relocations"] == 12 and counted["queued"] == 4 and counted["waiting"] == 0, counted
    assert counted["hosts"]["esx-01.lab.local"]["peak"] == 8, counted  # the queue was kept full, never over
    assert all(c["peak"] <= 8 for c in counted["hosts"].values()), counted
    # Storage vMotions: 2 per host (a host's cost 8, a Storage vMotion costs 4); one of three waits, and a
    # cancelled queued relocation never runs and changes nothing
    storage = [relocate(vms[f"evac-{i:02d}"], datastore=objects_by_name(s, vim.Datastore)["nfs-02"])
               for i in (13, 15, 17)]  # on esx-01, home and disk on nfs-01
    time.sleep(0.5)
    waiting = [t for t in storage if t.info.state == "queued"]
    assert len(waiting) == 1, [t.info.state for t in storage]
    waiting[0].CancelTask()
    assert "RequestCanceled" in type(wait_error(waiting[0])).__name__
    cancelled_vm = waiting[0].info.entity
    for t in storage:
        if t is not waiting[0]:
            WaitForTask(t)
    assert sorted({d.name for d in cancelled_vm.datastore}) == ["nfs-01"]
    counted = control.concurrency()
    assert counted["relocations"] == 14, counted
    assert counted["hosts"]["esx-01.lab.local"]["storage_peak"] == 2, counted


def test_a_move_lasts_as_long_as_copying_its_memory_or_disks_takes(tmp_path: Path) -> None:
    """The evacuate lab copies memory at 1 GiB/s (vMotion) and disks at 2 GiB/s (Storage vMotion); its hosts
    have room for every VM (free memory is never negative)."""
    info = lab.start("evacuate", state_dir=tmp_path / "lab")  # no fixed duration set: the scenario's rates
    s = _connect(info)
    try:
        _timed_moves(s)
    finally:
        Disconnect(s)
        lab.stop(info.state_dir)


def _timed_moves(s: vim.ServiceInstance) -> None:
    vms = objects_by_name(s, vim.VirtualMachine)
    for host in objects_by_name(s, vim.HostSystem).values():
        used = sum(vm.config.hardware.memoryMB for vm in host.vm) << 20
        assert host.summary.hardware.memorySize - used > 0, host.name

    def seconds(task: vim.Task) -> float:
        WaitForTask(task)
        return (task.info.completeTime - task.info.startTime).total_seconds()

    small = seconds(relocate(vms["evac-01"], host=objects_by_name(s, vim.HostSystem)["esx-02.lab.local"]))
    large = seconds(relocate(vms["evac-03"], host=objects_by_name(s, vim.HostSystem)["esx-02.lab.local"]))
    assert 0.9 <= small < 1.6 and 1.9 <= large < 2.8, (small, large)  # 1 GiB and 2 GiB of memory
    # 2 GiB of disk + 1 GiB of swap at 2 GiB/s
    disk = seconds(relocate(vms["evac-05"], datastore=objects_by_name(s, vim.Datastore)["nfs-02"]))
    assert 1.4 <= disk < 2.2, disk
