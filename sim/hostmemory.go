package main

// A host's memory in use (summary.quickStats.overallMemoryUsage, MB) follows its VMs, as vCenter's
// does when VMs power on or off or move: the hypervisor's own use plus the memory of the powered-on
// VMs it runs. The stock simulator copies one fixed figure (1404 MB) to every host.
//
// A registry handler notes the hosts whose VMs changed (power state, host, a host's VM list); a
// goroutine recomputes them within hostMemoryRefresh, without nesting locks (each VM read under its
// own lock, then the host updated under its lock). Where the lab differs (sim/README.md): a real host
// reports the memory its guests have touched (idle guests less than their size), refreshed every
// 20 s or so; the lab counts each powered-on VM's configured memory, within a quarter second.

import (
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	hypervisorMemoryMB = 1404 // the stock template's figure for a host without VMs
	hostMemoryRefresh  = 250 * time.Millisecond
)

// hostMemoryWatch is the registry handler.
type hostMemoryWatch struct {
	mu    sync.Mutex
	dirty map[types.ManagedObjectReference]bool
}

var hostMemory = &hostMemoryWatch{dirty: map[types.ManagedObjectReference]bool{}}

func (w *hostMemoryWatch) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "LabHostMemoryWatch", Value: "lab-host-memory"}
}

func (w *hostMemoryWatch) mark(ref *types.ManagedObjectReference) {
	if ref == nil {
		return
	}
	w.mu.Lock()
	w.dirty[*ref] = true
	w.mu.Unlock()
}

func (w *hostMemoryWatch) PutObject(obj mo.Reference) {
	if vm, ok := obj.(*simulator.VirtualMachine); ok {
		w.mark(vm.Runtime.Host)
	}
}

func (w *hostMemoryWatch) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	for _, c := range changes {
		switch o := obj.(type) {
		case *mo.VirtualMachine:
			switch c.Name {
			case "runtime.powerState", "summary.runtime.powerState", "runtime.host", "summary.runtime.host",
				"config.hardware.memoryMB":
				w.mark(o.Runtime.Host)
			}
		case *mo.HostSystem:
			if c.Name == "vm" {
				w.mark(&o.Self)
			}
		}
	}
}

func (w *hostMemoryWatch) RemoveObject(types.ManagedObjectReference) {}

// startHostMemory sets every host's figure and keeps them current.
func startHostMemory() {
	for _, h := range simulator.Map.All("HostSystem") {
		hostMemory.mark(&h.(*simulator.HostSystem).Self)
	}
	refreshHostMemory()
	simulator.Map.AddHandler(hostMemory)
	go func() {
		for range time.Tick(hostMemoryRefresh) {
			refreshHostMemory()
		}
	}()
}

func refreshHostMemory() {
	hostMemory.mu.Lock()
	dirty := hostMemory.dirty
	hostMemory.dirty = map[types.ManagedObjectReference]bool{}
	hostMemory.mu.Unlock()
	for ref := range dirty {
		if h, ok := simulator.Map.Get(ref).(*simulator.HostSystem); ok {
			updateHostMemory(h)
		}
	}
}

func updateHostMemory(h *simulator.HostSystem) {
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(h, func() { vms = append(vms, h.Vm...) })
	used := int64(hypervisorMemoryMB)
	for _, ref := range vms {
		vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		simulator.Map.WithLock(vm, func() {
			if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && vm.Config != nil &&
				vm.Runtime.Host != nil && *vm.Runtime.Host == h.Self {
				used += int64(vm.Config.Hardware.MemoryMB)
			}
		})
	}
	simulator.Map.WithLock(h, func() {
		if int64(h.Summary.QuickStats.OverallMemoryUsage) != used {
			h.Summary.QuickStats.OverallMemoryUsage = int32(used)
			simulator.Map.Update(h, []types.PropertyChange{
				{Name: "summary.quickStats.overallMemoryUsage", Val: int32(used)}})
		}
	})
}
