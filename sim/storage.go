package main

// Storage accounting. The stock simulator sizes VM files from the (empty) files on disk and sums
// them wrongly, so the lab computes a VM's files, layoutEx, per-datastore usage and the datastores'
// free space itself from the scenario's sizes: a thin disk commits what it holds, a thick or
// eager-zeroed disk its full size.

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func vmDisks(vm *simulator.VirtualMachine) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disks = append(disks, d.(*types.VirtualDisk))
	}
	return disks
}

func diskBacking(d *types.VirtualDisk) *types.VirtualDiskFlatVer2BackingInfo {
	return d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
}

func isThin(d *types.VirtualDisk) bool {
	b := diskBacking(d)
	return b.ThinProvisioned != nil && *b.ThinProvisioned
}

// diskCommitted is what a disk occupies on its datastore.
func diskCommitted(vm string, d *types.VirtualDisk) int64 {
	if !isThin(d) {
		return d.CapacityInBytes
	}
	lab.mu.Lock()
	defer lab.mu.Unlock()
	return lab.diskUsed[diskKey{vm, d.Key}]
}

// dsName returns the datastore name of a "[ds] path" string.
func dsName(p string) string {
	var dp object.DatastorePath
	if dp.FromString(p) {
		return dp.Datastore
	}
	return ""
}

// isoDatastore returns the datastore of the VM's CD-ROM ISO, if any.
func isoDatastores(vm *simulator.VirtualMachine) []string {
	var names []string
	for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualCdrom)(nil)) {
		if b, ok := d.GetVirtualDevice().Backing.(*types.VirtualCdromIsoBackingInfo); ok {
			names = append(names, dsName(b.FileName))
		}
	}
	return names
}

// recomputeVM rebuilds layout, layoutEx, storage, summary.storage and the datastore list of vm.
// With notify, property collectors are told (use it once the server runs; the caller holds vm's lock).
func recomputeVM(vm *simulator.VirtualMachine, notify bool) {
	home := vm.Config.Files.VmPathName
	dir := home[:strings.LastIndex(home, "/")]
	var files []types.VirtualMachineFileLayoutExFileInfo
	usage := map[string]*types.VirtualMachineUsageOnDatastore{}
	var order []string
	add := func(name, kind string, size, uncommitted int64) int32 {
		key := int32(len(files))
		files = append(files, types.VirtualMachineFileLayoutExFileInfo{
			Key: key, Name: name, Type: kind, Size: size, UniqueSize: size, Accessible: types.NewBool(true)})
		ds := dsName(name)
		u, ok := usage[ds]
		if !ok {
			u = &types.VirtualMachineUsageOnDatastore{Datastore: lab.dsByName[ds]}
			usage[ds] = u
			order = append(order, ds)
		}
		u.Committed += size
		u.Uncommitted += uncommitted
		u.Unshared += size
		return key
	}
	add(home, "config", 4096, 0)
	nvram := dir + "/" + vm.Name + ".nvram"
	add(nvram, "nvram", 8684, 0)
	logf := dir + "/vmware.log"
	add(logf, "log", 262144, 0)
	layout := &types.VirtualMachineFileLayout{ConfigFile: []string{vm.Name + ".nvram"}, LogFile: []string{"vmware.log"}}
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		swap := fmt.Sprintf("%s/%s.vswp", dir, vm.Name)
		add(swap, "swap", int64(vm.Config.Hardware.MemoryMB)<<20, 0)
		layout.SwapFile = swap
	}
	var disksEx []types.VirtualMachineFileLayoutExDiskLayout
	for _, d := range vmDisks(vm) {
		b := diskBacking(d)
		committed := diskCommitted(vm.Self.Value, d)
		desc := add(b.FileName, "diskDescriptor", 512, 0)
		flat := add(strings.TrimSuffix(b.FileName, ".vmdk")+"-flat.vmdk", "diskExtent", committed, d.CapacityInBytes-committed)
		disksEx = append(disksEx, types.VirtualMachineFileLayoutExDiskLayout{
			Key: d.Key, Chain: []types.VirtualMachineFileLayoutExDiskUnit{{FileKey: []int32{desc, flat}}}})
		layout.Disk = append(layout.Disk, types.VirtualMachineFileLayoutDiskLayout{Key: d.Key, DiskFile: []string{b.FileName}})
	}
	now := time.Now()
	summary := &types.VirtualMachineStorageSummary{Timestamp: now}
	var per []types.VirtualMachineUsageOnDatastore
	var dsRefs []types.ManagedObjectReference
	for _, name := range order {
		u := usage[name]
		per = append(per, *u)
		dsRefs = append(dsRefs, u.Datastore)
		summary.Committed += u.Committed
		summary.Uncommitted += u.Uncommitted
		summary.Unshared += u.Unshared
	}
	for _, name := range isoDatastores(vm) { // vCenter lists the ISO's datastore too
		if ref, ok := lab.dsByName[name]; ok && simulator.FindReference(dsRefs, ref) == nil {
			dsRefs = append(dsRefs, ref)
		}
	}
	layoutEx := &types.VirtualMachineFileLayoutEx{File: files, Disk: disksEx, Timestamp: now}
	storage := &types.VirtualMachineStorageInfo{PerDatastoreUsage: per, Timestamp: now}
	changes := []types.PropertyChange{
		{Name: "layout", Val: layout}, {Name: "layoutEx", Val: layoutEx}, {Name: "storage", Val: storage},
		{Name: "summary.storage", Val: summary}, {Name: "datastore", Val: dsRefs},
	}
	if notify {
		simulator.Map.Update(vm, changes)
		return
	}
	vm.Layout, vm.LayoutEx, vm.Storage, vm.Summary.Storage, vm.Datastore = layout, layoutEx, storage, summary, dsRefs
}

// recomputeDatastores sets every datastore's vm list, free space and uncommitted space from the VMs.
func recomputeDatastores(notify bool) {
	used := map[string]int64{}
	uncommitted := map[string]int64{}
	vms := map[string][]types.ManagedObjectReference{}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		for _, u := range vm.Storage.PerDatastoreUsage {
			used[u.Datastore.Value] += u.Committed
			uncommitted[u.Datastore.Value] += u.Uncommitted
		}
		for _, ref := range vm.Datastore {
			vms[ref.Value] = append(vms[ref.Value], vm.Self)
		}
	}
	now := time.Now()
	for _, ref := range lab.dsByName {
		ds := simulator.Map.Get(ref).(*simulator.Datastore)
		update := func() {
			free := lab.dsCap[ref.Value] - lab.dsBase[ref.Value] - used[ref.Value]
			if free < 0 {
				free = 0
			}
			summary := ds.Summary
			summary.Capacity = lab.dsCap[ref.Value]
			summary.FreeSpace = free
			summary.Uncommitted = uncommitted[ref.Value]
			info := ds.Info.GetDatastoreInfo()
			info.FreeSpace = free
			info.MaxFileSize = free
			info.MaxMemoryFileSize = free
			info.Timestamp = &now
			if notify {
				simulator.Map.Update(ds, []types.PropertyChange{
					{Name: "summary", Val: summary}, {Name: "vm", Val: vms[ref.Value]}, {Name: "info", Val: ds.Info}})
			} else {
				ds.Summary, ds.Vm = summary, vms[ref.Value]
			}
		}
		if notify {
			simulator.Map.WithLock(ds, update)
		} else {
			update()
		}
	}
}
