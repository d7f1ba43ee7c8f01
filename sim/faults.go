package main

// The relocation checks. Each is one small function over the resolved request that returns the
// fault vCenter raises for one cause, or nil. RelocateVM_Task stops at the first fault;
// CheckRelocate_Task (checker.go) reports them all. To add a cause, write a function and append it
// to relocationChecks, then add its row to the table in sim/README.md (the Python prerequisite
// checks mirror that table).

import (
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// relocationCheck is one cause of failure and the CheckRelocate_Task test type that covers it
// (CheckTestType: sourceTests, hostTests, resourcePoolTests, datastoreTests, networkTests).
type relocationCheck struct {
	testType string
	check    func(r *relocation) types.BaseMethodFault
}

var relocationChecks = []relocationCheck{
	{"hostTests", targetConnected},
	{"hostTests", targetNotInMaintenance},
	{"resourcePoolTests", poolOfTargetHost},
	{"hostTests", vmotionNics},
	{"datastoreTests", datastoresVisible},
	{"datastoreTests", isoVisible},
	{"datastoreTests", freeSpace},
	{"hostTests", cpuCompatible},
	{"sourceTests", hostBoundDevices},
	{"networkTests", portGroupsPresent},
}

func firstFault(r *relocation) types.BaseMethodFault {
	for _, c := range relocationChecks {
		if f := c.check(r); f != nil {
			return f
		}
	}
	return nil
}

// wanted tells whether test type t is asked for (no test types: all of them, as vCenter does).
func wanted(testTypes []string, t string) bool {
	if len(testTypes) == 0 {
		return true
	}
	for _, x := range testTypes {
		if x == t {
			return true
		}
	}
	return false
}

// allFaults runs the checks of the given test types and returns every fault.
func allFaults(r *relocation, testTypes []string) []types.BaseMethodFault {
	var faults []types.BaseMethodFault
	for _, c := range relocationChecks {
		if !wanted(testTypes, c.testType) {
			continue
		}
		if f := c.check(r); f != nil {
			faults = append(faults, f)
		}
	}
	return faults
}

// live is true for a host change of a powered-on VM: a vMotion with its network and CPU rules.
func (r *relocation) live() bool { return r.poweredOn && r.hostChange() }

func targetConnected(r *relocation) types.BaseMethodFault {
	h := r.dstHost
	if h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected {
		return nil
	}
	return withMessage(&types.InvalidHostConnectionState{InvalidHostState: types.InvalidHostState{Host: &h.Self}},
		"The operation is not allowed in the current connection state of the host %s (%s).", h.Name, h.Runtime.ConnectionState)
}

func targetNotInMaintenance(r *relocation) types.BaseMethodFault {
	h := r.dstHost
	if !r.hostChange() || !h.Runtime.InMaintenanceMode {
		return nil
	}
	return withMessage(&types.InvalidHostState{Host: &h.Self},
		"The operation is not allowed in the current state of the host %s: it is in maintenance mode.", h.Name)
}

// poolOfTargetHost: a resource pool given with the move must belong to the target host's compute
// resource (its cluster, or the standalone host's own); vCenter answers InvalidArgument on "pool".
func poolOfTargetHost(r *relocation) types.BaseMethodFault {
	if r.spec.Pool == nil {
		return nil
	}
	owner, _ := poolOwner(*r.spec.Pool)
	if owner == *r.dstHost.Parent {
		return nil
	}
	pool := simulator.Map.Get(*r.spec.Pool).(*simulator.ResourcePool)
	return withMessage(&types.InvalidArgument{InvalidProperty: "pool"},
		"A specified parameter was not correct: pool. The resource pool %s (%s) does not belong to the compute resource of the host %s.",
		pool.Name, pool.Self.Value, r.dstHost.Name)
}

func vmotionNics(r *relocation) types.BaseMethodFault {
	if !r.live() {
		return nil
	}
	for _, h := range []*simulator.HostSystem{r.srcHost, r.dstHost} {
		if !hasVmotionVnic(h) {
			f := &types.VMotionNotConfigured{}
			f.AtSourceHost = h == r.srcHost
			f.FailedHost = h.Name
			f.FailedHostEntity = &h.Self
			return withMessage(f, "vMotion is not enabled on the host %s: no VMkernel adapter is selected for vMotion.", h.Name)
		}
	}
	return nil
}

// mountedOn tells whether datastore name is mounted on host h.
func mountedOn(name string, h *simulator.HostSystem) bool {
	ref, ok := lab.dsByName[name]
	return ok && simulator.FindReference(h.Datastore, ref) != nil
}

func datastoresVisible(r *relocation) types.BaseMethodFault {
	h := r.dstHost
	notWritable := func(name, what string) types.BaseMethodFault {
		ref := lab.dsByName[name]
		return withMessage(&types.DatastoreNotWritableOnHost{
			InvalidDatastore: types.InvalidDatastore{Datastore: &ref, Name: name}, Host: h.Self},
			"The datastore %s holding the %s is not accessible from the host %s.", name, what, h.Name)
	}
	if !mountedOn(r.homeTo, h) {
		return notWritable(r.homeTo, "virtual machine's files")
	}
	for _, d := range r.disks {
		if !mountedOn(d.to, h) {
			return notWritable(d.to, "disk "+d.disk.DeviceInfo.GetDescription().Label)
		}
	}
	return nil
}

func isoVisible(r *relocation) types.BaseMethodFault {
	for _, d := range object.VirtualDeviceList(r.vm.Config.Hardware.Device).SelectByType((*types.VirtualCdrom)(nil)) {
		b, ok := d.GetVirtualDevice().Backing.(*types.VirtualCdromIsoBackingInfo)
		if !ok || mountedOn(dsName(b.FileName), r.dstHost) {
			continue
		}
		label := d.GetVirtualDevice().DeviceInfo.GetDescription().Label
		return withMessage(&types.CannotAccessVmDevice{Device: label, Backing: b.FileName, Connected: true},
			"The ISO image %s of %s is on a datastore the host %s cannot access.", b.FileName, label, r.dstHost.Name)
	}
	return nil
}

// freeSpace: a disk copied to another datastore needs its committed size there (thin) or its
// full size (thick); a disk that stays needs nothing (its format does not change).
func freeSpace(r *relocation) types.BaseMethodFault {
	need := map[string]int64{}
	for _, d := range r.disks {
		size := d.disk.CapacityInBytes
		if d.thin {
			size = lab.diskUsed[diskKey{r.vm.Self.Value, d.disk.Key}]
		}
		if d.from != d.to {
			need[d.to] += size
		}
	}
	if r.homeFrom != r.homeTo {
		need[r.homeTo] += int64(r.vm.Config.Hardware.MemoryMB)<<20 + 1<<20
	}
	for name, bytes := range need {
		ds := simulator.Map.Get(lab.dsByName[name]).(*simulator.Datastore)
		if bytes > ds.Summary.FreeSpace {
			return withMessage(&types.NoDiskSpace{FileFault: types.FileFault{File: name}, Datastore: name},
				"There is not enough space on the datastore %s: %d MB needed, %d MB free.", name, bytes>>20, ds.Summary.FreeSpace>>20)
		}
	}
	return nil
}

func cpuVendor(h *simulator.HostSystem) string {
	if len(h.Hardware.CpuPkg) == 0 {
		return ""
	}
	return h.Hardware.CpuPkg[0].Vendor
}

// cpuCompatible: a live move needs the same CPU vendor; EVC modes are per vendor, so no EVC mode
// bridges Intel and AMD.
func cpuCompatible(r *relocation) types.BaseMethodFault {
	src, dst := cpuVendor(r.srcHost), cpuVendor(r.dstHost)
	if !r.live() || src == dst {
		return nil
	}
	return withMessage(&types.CpuIncompatible{Level: 0, RegisterName: "vendor", Host: &r.dstHost.Self},
		"The CPU vendor of the host %s (%s) differs from the source host %s (%s) and no EVC mode is common to both.",
		r.dstHost.Name, dst, r.srcHost.Name, src)
}

// hostBoundDevices: a connected CD drive backed by the source host's drive or by a client.
func hostBoundDevices(r *relocation) types.BaseMethodFault {
	if !r.live() {
		return nil
	}
	for _, d := range object.VirtualDeviceList(r.vm.Config.Hardware.Device).SelectByType((*types.VirtualCdrom)(nil)) {
		v := d.GetVirtualDevice()
		if v.Connectable != nil && !v.Connectable.Connected {
			continue
		}
		label := v.DeviceInfo.GetDescription().Label
		switch v.Backing.(type) {
		case *types.VirtualCdromAtapiBackingInfo, *types.VirtualCdromPassthroughBackingInfo:
			inner := &types.DeviceNotSupported{Device: label, Reason: "host device"}
			return withMessage(&types.DisallowedMigrationDeviceAttached{Fault: types.LocalizedMethodFault{Fault: inner, LocalizedMessage: "host device"}},
				"The virtual machine has %s connected to a physical device of the host %s.", label, r.srcHost.Name)
		case *types.VirtualCdromRemotePassthroughBackingInfo, *types.VirtualCdromRemoteAtapiBackingInfo:
			return withMessage(&types.RemoteDeviceNotSupported{DeviceNotSupported: types.DeviceNotSupported{Device: label, Reason: "client device"}},
				"The virtual machine has %s connected to a client device.", label)
		}
	}
	return nil
}

// resolveNetwork finds the Network of a NIC backing, by reference or by port group name.
func resolveNetwork(b *types.VirtualEthernetCardNetworkBackingInfo) *mo.Network {
	if b.Network != nil {
		if n, ok := simulator.Map.Get(*b.Network).(*mo.Network); ok {
			return n
		}
	}
	for _, e := range simulator.Map.All("Network") {
		if n, ok := e.(*mo.Network); ok && n.Name == b.DeviceName {
			return n
		}
	}
	return nil
}

// portGroupsPresent: each NIC's port group (after the spec's NIC edits) must exist on the target.
func portGroupsPresent(r *relocation) types.BaseMethodFault {
	for _, d := range r.vm.Config.Hardware.Device {
		card, ok := d.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		backing := card.GetVirtualEthernetCard().Backing
		for _, c := range r.nics {
			if c.Device.GetVirtualDevice().Key == d.GetVirtualDevice().Key {
				backing = c.Device.GetVirtualDevice().Backing
			}
		}
		nb, ok := backing.(*types.VirtualEthernetCardNetworkBackingInfo)
		if !ok {
			continue
		}
		n := resolveNetwork(nb)
		label := d.GetVirtualDevice().DeviceInfo.GetDescription().Label
		if n == nil {
			return withMessage(&types.DeviceBackingNotSupported{DeviceNotSupported: types.DeviceNotSupported{Device: label}, Backing: nb.DeviceName},
				"The network %s of %s does not exist.", nb.DeviceName, label)
		}
		if simulator.FindReference(r.dstHost.Network, n.Self) == nil {
			return withMessage(&types.DeviceBackingNotSupported{DeviceNotSupported: types.DeviceNotSupported{Device: label}, Backing: n.Name},
				"Currently connected network interface '%s' uses network '%s', which is not accessible on the host %s.", label, n.Name, r.dstHost.Name)
		}
	}
	return nil
}
