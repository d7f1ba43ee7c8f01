package main

// RelocateVM_Task as a vCenter runs it: the call returns a queued task at once; a goroutine runs
// the checks (faults.go), raises info.progress over the migration's duration, honours CancelTask,
// and on success moves every reference the move touches (bookkeeping below) and posts the events.

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// diskMove is one disk's placement before and after.
type diskMove struct {
	disk        *types.VirtualDisk
	from, to    string // datastore names
	toRef       types.ManagedObjectReference
	thin, eager bool // format after the move
}

// relocation is a resolved RelocateVM_Task request: what the checks and the bookkeeping read.
type relocation struct {
	vm               *simulator.VirtualMachine
	spec             types.VirtualMachineRelocateSpec
	srcHost, dstHost *simulator.HostSystem
	dstPool          types.ManagedObjectReference
	homeFrom, homeTo string
	disks            []diskMove
	nics             []*types.VirtualDeviceConfigSpec // edits of NICs (new port group)
	poweredOn        bool
	task             *simulator.Task
	chain            int32 // the event chain of the task (its TaskEvent's key)
	canceled         atomic.Bool
	admitted         chan struct{}    // closed when the lab's admission lets it run (concurrency.go)
	holding          map[resource]int // the budgets it holds while it runs (admission.mu)
	ran              atomic.Bool      // it left the queue and ran
}

func (r *relocation) hostChange() bool { return r.srcHost.Self != r.dstHost.Self }

func (r *relocation) dsChange() bool {
	if r.homeFrom != r.homeTo {
		return true
	}
	for _, d := range r.disks {
		if d.from != d.to {
			return true
		}
	}
	return false
}

// notFound is vCenter's answer to a reference that names no object.
func notFound(ref types.ManagedObjectReference) types.BaseMethodFault {
	return withMessage(&types.ManagedObjectNotFound{Obj: ref}, "The object '%s:%s' has already been deleted or has not been completely created", ref.Type, ref.Value)
}

// newRelocation resolves the spec's references (a missing one is a ManagedObjectNotFound raised at
// call time, as vCenter does) and plans each disk's target datastore and format.
func newRelocation(vm *simulator.VirtualMachine, spec types.VirtualMachineRelocateSpec) (*relocation, types.BaseMethodFault) {
	r := &relocation{vm: vm, spec: spec, poweredOn: vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn}
	r.srcHost = simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	r.dstHost = r.srcHost
	if spec.Host != nil {
		h, ok := simulator.Map.Get(*spec.Host).(*simulator.HostSystem)
		if !ok {
			return nil, notFound(*spec.Host)
		}
		r.dstHost = h
	}
	r.dstPool = *vm.ResourcePool
	if spec.Pool != nil {
		owner, ok := poolOwner(*spec.Pool)
		if !ok {
			return nil, notFound(*spec.Pool)
		}
		r.dstPool = *spec.Pool
		// a pool without a host: a standalone host's pool names its host (API reference, spec.host)
		if cr, standalone := simulator.Map.Get(owner).(*mo.ComputeResource); standalone && spec.Host == nil && len(cr.Host) == 1 {
			r.dstHost = simulator.Map.Get(cr.Host[0]).(*simulator.HostSystem)
		}
	} else if r.hostChange() && *r.dstHost.Parent != *r.srcHost.Parent {
		// no pool for another compute resource: the lab takes its root pool (see sim/README.md)
		_, cr := computeResourceOf(r.dstHost)
		r.dstPool = *cr.ResourcePool
	}
	r.homeFrom = dsName(vm.Config.Files.VmPathName)
	r.homeTo = r.homeFrom
	if spec.Datastore != nil {
		ds, ok := simulator.Map.Get(*spec.Datastore).(*simulator.Datastore)
		if !ok {
			return nil, notFound(*spec.Datastore)
		}
		r.homeTo = ds.Name
	}
	for _, d := range vmDisks(vm) {
		m := diskMove{disk: d, from: dsName(diskBacking(d).FileName), thin: isThin(d)}
		b := diskBacking(d)
		m.eager = b.EagerlyScrub != nil && *b.EagerlyScrub
		m.to = m.from
		if spec.Datastore != nil { // spec.datastore alone moves every disk, keeping its format
			m.to = r.homeTo
		}
		for _, loc := range spec.Disk {
			if loc.DiskId != d.Key {
				continue
			}
			ds, ok := simulator.Map.Get(loc.Datastore).(*simulator.Datastore)
			if !ok {
				return nil, notFound(loc.Datastore)
			}
			m.to = ds.Name
			// a format changes only when the disk is copied to another datastore (vCenter
			// leaves a disk that stays where it is in its format)
			if fb, ok := loc.DiskBackingInfo.(*types.VirtualDiskFlatVer2BackingInfo); ok && m.to != m.from {
				m.thin = fb.ThinProvisioned != nil && *fb.ThinProvisioned
				m.eager = !m.thin && fb.EagerlyScrub != nil && *fb.EagerlyScrub
			}
		}
		m.toRef = lab.dsByName[m.to]
		r.disks = append(r.disks, m)
	}
	for _, c := range spec.DeviceChange {
		dc := c.GetVirtualDeviceConfigSpec()
		if _, ok := dc.Device.(types.BaseVirtualEthernetCard); ok && dc.Operation == types.VirtualDeviceConfigSpecOperationEdit {
			r.nics = append(r.nics, dc)
		}
	}
	return r, nil
}

// startRelocation is the body of RelocateVM_Task once the request has been routed to the lab.
func startRelocation(vm *simulator.VirtualMachine, req *types.RelocateVM_Task) soap.HasFault {
	r, fault := newRelocation(vm, req.Spec)
	if fault != nil {
		return &methods.RelocateVM_TaskBody{Fault_: simulator.Fault(messageOf(fault), fault)}
	}
	r.task = simulator.CreateTask(vm, "relocate", nil)
	// pyvmomi resolves info.name as a WSDL method name (it then shows vim.VirtualMachine.relocate).
	r.task.Info.Name = "RelocateVM_Task"
	r.task.Info.DescriptionId = "VirtualMachine.relocate"
	r.task.Info.EntityName = vm.Name
	r.task.Info.Reason = &types.TaskReasonUser{UserName: lab.user}
	r.task.Info.Cancelable = true // until it ends (CancelTask works while queued or running)
	rememberTask(vm, r.task.Self)

	lab.mu.Lock()
	_, busy := lab.running[vm.Self.Value]
	if !busy {
		lab.running[vm.Self.Value] = r
	}
	lab.byTask[r.task.Self.Value] = r
	lab.mu.Unlock()
	if busy {
		go r.finish(withMessage(&types.TaskInProgress{Task: r.task.Self},
			"Another task is already in progress on virtual machine %s", vm.Name), false)
	} else {
		go r.run()
	}
	return &methods.RelocateVM_TaskBody{Res: &types.RelocateVM_TaskResponse{Returnval: r.task.Self}}
}

func (r *relocation) updateTask(changes ...types.PropertyChange) {
	simulator.Map.WithLock(r.task, func() { simulator.Map.Update(r.task, changes) })
}

// run is the task's life: running, checks, progress, bookkeeping.
func (r *relocation) run() {
	time.Sleep(20 * time.Millisecond) // a moment in "queued", as vCenter's scheduler shows
	if !admit.wait(r) {               // over vCenter's concurrency limits it stays queued (concurrency.go)
		r.finish(withMessage(&types.RequestCanceled{}, "The task was canceled by a user."), false)
		return
	}
	r.ran.Store(true)
	duration := r.duration()
	r.updateTask(types.PropertyChange{Name: "info.state", Val: types.TaskInfoStateRunning},
		types.PropertyChange{Name: "info.startTime", Val: time.Now()},
		types.PropertyChange{Name: "info.progress", Val: int32(0)})
	r.postStart()
	if f := firstFault(r); f != nil {
		r.finish(f, true)
		return
	}
	injected := lab.takeFault(r.vm.Self.Value)
	const steps = 10
	for i := 1; i <= steps; i++ {
		time.Sleep(duration / steps)
		if r.canceled.Load() {
			r.finish(withMessage(&types.RequestCanceled{}, "The task was canceled by a user."), true)
			return
		}
		if f := hostsStillConnected(r); f != nil { // a host lost mid-move fails it, as on a vCenter
			r.finish(f, true)
			return
		}
		if injected != nil && i == steps/2 { // an injected fault strikes half-way, as a real one would
			r.finish(injected, true)
			return
		}
		if i < steps {
			r.updateTask(types.PropertyChange{Name: "info.progress", Val: int32(i * 100 / steps)})
		}
	}
	r.apply()
	r.postDone()
	r.finish(nil, false)
}

// finish ends the task in success (fault == nil) or error, and forgets the relocation.
func (r *relocation) finish(fault types.BaseMethodFault, postFailure bool) {
	admit.release(r) // before the task ends: a client that sees the end finds the room free
	lab.mu.Lock()
	if lab.running[r.vm.Self.Value] == r {
		delete(lab.running, r.vm.Self.Value)
	}
	lab.mu.Unlock()
	changes := []types.PropertyChange{{Name: "info.completeTime", Val: time.Now()},
		{Name: "info.cancelable", Val: false}}
	if fault == nil {
		changes = append(changes, types.PropertyChange{Name: "info.progress", Val: int32(100)},
			types.PropertyChange{Name: "info.state", Val: types.TaskInfoStateSuccess})
	} else {
		if r.task.Info.StartTime == nil {
			changes = append(changes, types.PropertyChange{Name: "info.startTime", Val: time.Now()})
		}
		changes = append(changes, types.PropertyChange{Name: "info.state", Val: types.TaskInfoStateError},
			types.PropertyChange{Name: "info.error", Val: localized(fault)})
		if postFailure {
			r.postFailed(fault)
		}
	}
	r.updateTask(changes...)
}

// apply moves every reference a vCenter updates when a relocation succeeds.
func (r *relocation) apply() {
	vm := r.vm
	host, pool := r.dstHost.Self, r.dstPool
	oldPool := *vm.ResourcePool
	simulator.Map.WithLock(vm, func() {
		for _, m := range r.disks {
			b := diskBacking(m.disk)
			b.FileName = moveFile(b.FileName, m.to)
			ref := m.toRef // its own copy: the loop variable is shared by every disk
			b.Datastore = &ref
			b.ThinProvisioned = types.NewBool(m.thin)
			b.EagerlyScrub = types.NewBool(m.eager)
		}
		for _, c := range r.nics {
			moveNic(vm, c)
		}
		files := vm.Config.Files
		files.VmPathName = moveFile(files.VmPathName, r.homeTo)
		dir := files.VmPathName[:strings.LastIndex(files.VmPathName, "/")]
		files.LogDirectory, files.SnapshotDirectory, files.SuspendDirectory = dir, dir, dir
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.host", Val: host}, {Name: "summary.runtime.host", Val: host},
			{Name: "resourcePool", Val: pool}, {Name: "config.files", Val: files},
			{Name: "summary.config.vmPathName", Val: files.VmPathName},
			{Name: "config.hardware.device", Val: vm.Config.Hardware.Device},
			{Name: "guest.net", Val: vm.Guest.Net}, {Name: "network", Val: vm.Network},
		})
		recomputeVM(vm, true)
	})
	if r.hostChange() {
		simulator.Map.RemoveReference(r.srcHost, &r.srcHost.Vm, vm.Self)
		simulator.Map.AddReference(r.dstHost, &r.dstHost.Vm, vm.Self)
		simulator.Map.Update(r.srcHost, []types.PropertyChange{{Name: "vm", Val: r.srcHost.Vm}})
		simulator.Map.Update(r.dstHost, []types.PropertyChange{{Name: "vm", Val: r.dstHost.Vm}})
	}
	if oldPool != pool {
		src := simulator.Map.Get(oldPool).(*simulator.ResourcePool)
		dst := simulator.Map.Get(pool).(*simulator.ResourcePool)
		simulator.Map.RemoveReference(src, &src.Vm, vm.Self)
		simulator.Map.AddReference(dst, &dst.Vm, vm.Self)
	}
	recomputeDatastores(true)
}

// moveFile rewrites "[old] dir/file" as "[ds] dir/file".
func moveFile(p, ds string) string {
	var dp object.DatastorePath
	if !dp.FromString(p) || ds == "" {
		return p
	}
	dp.Datastore = ds
	return dp.String()
}

// moveNic puts a NIC on the port group named by the edit's backing (network and name).
func moveNic(vm *simulator.VirtualMachine, c *types.VirtualDeviceConfigSpec) {
	edit := c.Device.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
	nb, ok := edit.Backing.(*types.VirtualEthernetCardNetworkBackingInfo)
	if !ok {
		return
	}
	net := resolveNetwork(nb)
	for _, d := range vm.Config.Hardware.Device {
		card, ok := d.(types.BaseVirtualEthernetCard)
		if !ok || d.GetVirtualDevice().Key != edit.Key {
			continue
		}
		card.GetVirtualEthernetCard().Backing = &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: net.Name},
			Network:                        &net.Self,
		}
		card.GetVirtualEthernetCard().DeviceInfo = &types.Description{Label: d.GetVirtualDevice().DeviceInfo.GetDescription().Label, Summary: net.Name}
		for i := range vm.Guest.Net {
			if vm.Guest.Net[i].DeviceConfigId == edit.Key {
				vm.Guest.Net[i].Network = net.Name
			}
		}
	}
	var nets []types.ManagedObjectReference
	for _, d := range vm.Config.Hardware.Device {
		if card, ok := d.(types.BaseVirtualEthernetCard); ok {
			if b, ok := card.GetVirtualEthernetCard().Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok && b.Network != nil {
				if simulator.FindReference(nets, *b.Network) == nil {
					nets = append(nets, *b.Network)
				}
			}
		}
	}
	vm.Network = nets
}

// postStart posts the TaskEvent and VmBeingHotMigratedEvent / VmBeingRelocatedEvent.
func (r *relocation) postStart() {
	base := vmEvent(r.vm, r.srcHost)
	te := &types.TaskEvent{Event: base.Event}
	var ds *types.DatastoreEventArgument
	if ref, ok := lab.dsByName[r.homeTo]; ok {
		ds = dsArg(ref)
	}
	var start types.BaseEvent
	if r.poweredOn && r.hostChange() {
		start = &types.VmBeingHotMigratedEvent{VmEvent: base, DestHost: *hostArg(r.dstHost),
			DestDatacenter: base.Datacenter, DestDatastore: ds}
	} else {
		start = &types.VmBeingRelocatedEvent{VmRelocateSpecEvent: types.VmRelocateSpecEvent{VmEvent: base},
			DestHost: *hostArg(r.dstHost), DestDatacenter: base.Datacenter, DestDatastore: ds}
	}
	simulator.Map.WithLock(r.task, func() { te.Info = r.task.Info })
	r.chain = postEvents(0, te)
	te.Info.EventChainId = r.chain
	r.updateTask(types.PropertyChange{Name: "info.eventChainId", Val: r.chain})
	postEvents(r.chain, start)
}

// postDone posts VmMigratedEvent for a host change and VmRelocatedEvent for a datastore change or a
// cold migration.
func (r *relocation) postDone() {
	base := vmEvent(r.vm, r.dstHost)
	var src *types.DatastoreEventArgument
	if ref, ok := lab.dsByName[r.homeFrom]; ok {
		src = dsArg(ref)
	}
	var events []types.BaseEvent
	if r.hostChange() {
		events = append(events, &types.VmMigratedEvent{VmEvent: base, SourceHost: *hostArg(r.srcHost),
			SourceDatacenter: base.Datacenter, SourceDatastore: src})
	}
	if r.dsChange() || !r.poweredOn || !r.hostChange() {
		events = append(events, &types.VmRelocatedEvent{VmRelocateSpecEvent: types.VmRelocateSpecEvent{VmEvent: base},
			SourceHost: *hostArg(r.srcHost), SourceDatacenter: base.Datacenter, SourceDatastore: src})
	}
	postEvents(r.chain, events...)
}

// postFailed posts VmFailedMigrateEvent (host change) or VmRelocateFailedEvent.
func (r *relocation) postFailed(fault types.BaseMethodFault) {
	base := vmEvent(r.vm, r.srcHost)
	if r.hostChange() {
		postEvents(r.chain, &types.VmFailedMigrateEvent{VmEvent: base, DestHost: *hostArg(r.dstHost),
			Reason: *localized(fault), DestDatacenter: base.Datacenter})
		return
	}
	postEvents(r.chain, &types.VmRelocateFailedEvent{VmRelocateSpecEvent: types.VmRelocateSpecEvent{VmEvent: base},
		DestHost: *hostArg(r.dstHost), Reason: *localized(fault), DestDatacenter: base.Datacenter})
}

// withMessage attaches a human message to a fault (shown as the task error's localizedMessage).
func withMessage(f types.BaseMethodFault, format string, args ...interface{}) types.BaseMethodFault {
	msg := fmt.Sprintf(format, args...)
	f.GetMethodFault().FaultMessage = []types.LocalizableMessage{{Key: "com.vmware.lab.fault", Message: msg}}
	return f
}

func messageOf(f types.BaseMethodFault) string {
	if m := f.GetMethodFault().FaultMessage; len(m) > 0 {
		return m[0].Message
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", f), "*types.")
}

func localized(f types.BaseMethodFault) *types.LocalizedMethodFault {
	return &types.LocalizedMethodFault{Fault: f, LocalizedMessage: messageOf(f)}
}

// hostsStillConnected fails a running move whose source or target host stopped being connected.
func hostsStillConnected(r *relocation) types.BaseMethodFault {
	for _, h := range []*simulator.HostSystem{r.srcHost, r.dstHost} {
		var state types.HostSystemConnectionState
		simulator.Map.WithLock(h, func() { state = h.Runtime.ConnectionState })
		if state != types.HostSystemConnectionStateConnected {
			return withMessage(&types.HostNotConnected{},
				"The migration of %s failed: host %s is %s.", r.vm.Name, h.Name, state)
		}
	}
	return nil
}

// rememberTask lists the task in the VM's recentTask, as vCenter does (clients look there for a move
// already running); the list keeps the last 10.
func rememberTask(vm *simulator.VirtualMachine, task types.ManagedObjectReference) {
	simulator.Map.WithLock(vm, func() {
		recent := append(append([]types.ManagedObjectReference(nil), vm.RecentTask...), task)
		if len(recent) > 10 {
			recent = recent[len(recent)-10:]
		}
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "recentTask", Val: recent}})
	})
}
