package main

// Events vCenter posts around a relocation. The stock event description table has malformed
// templates for the migration events (PostEvent would panic), so they are replaced at start-up.

import (
	"context"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var eventTemplates = map[string]string{
	"TaskEvent":               "Task: {{.Info.DescriptionId}}",
	"VmBeingHotMigratedEvent": "Migrating {{.Vm.Name}} from {{.Host.Name}} to {{.DestHost.Name}} in {{.Datacenter.Name}}",
	"VmBeingMigratedEvent":    "Migrating {{.Vm.Name}} from {{.Host.Name}} to {{.DestHost.Name}} in {{.Datacenter.Name}}",
	"VmBeingRelocatedEvent":   "Relocating {{.Vm.Name}} from {{.Host.Name}} to {{.DestHost.Name}} in {{.Datacenter.Name}}",
	"VmMigratedEvent":         "Migration of virtual machine {{.Vm.Name}} from {{.SourceHost.Name}} to {{.Host.Name}} completed",
	"VmRelocatedEvent":        "Completed the relocation of the virtual machine {{.Vm.Name}} from {{.SourceHost.Name}} to {{.Host.Name}}",
	"VmFailedMigrateEvent":    "Cannot migrate {{.Vm.Name}} from {{.Host.Name}} to {{.DestHost.Name}} in {{.Datacenter.Name}}",
	"VmRelocateFailedEvent":   "Cannot relocate virtual machine {{.Vm.Name}} in {{.Datacenter.Name}}",
}

// fixEventTemplates replaces the broken descriptions by well-formed ones.
func fixEventTemplates() {
	m := simulator.Map.EventManager()
	var infos []types.EventDescriptionEventDetail
	for _, info := range m.Description.EventInfo {
		if _, ok := eventTemplates[info.Key]; !ok {
			infos = append(infos, info)
		}
	}
	for key, format := range eventTemplates {
		infos = append(infos, types.EventDescriptionEventDetail{
			Key: key, Category: "info", Description: key, FullFormat: format})
	}
	m.Description.EventInfo = infos
}

// postEvents posts events as the lab user, holding the event manager's lock. With chain != 0 each
// event joins that chain (vCenter gives every event of a task the chainId of its first event);
// with chain == 0 the first event starts a chain that the others join. It returns the chain id.
func postEvents(chain int32, events ...types.BaseEvent) int32 {
	m := simulator.Map.EventManager()
	ctx := &simulator.Context{Context: context.Background(), Map: simulator.Map,
		Session: &simulator.Session{UserSession: types.UserSession{UserName: lab.user}}}
	simulator.Map.WithLock(m, func() {
		for _, e := range events {
			m.PostEvent(ctx, &types.PostEvent{EventToPost: e})
			if chain == 0 {
				chain = e.GetEvent().Key
			}
			e.GetEvent().ChainId = chain // PostEvent starts a chain per event
		}
	})
	return chain
}

func hostArg(h *simulator.HostSystem) *types.HostEventArgument {
	return &types.HostEventArgument{Host: h.Self, EntityEventArgument: types.EntityEventArgument{Name: h.Name}}
}

func dsArg(ref types.ManagedObjectReference) *types.DatastoreEventArgument {
	name := ""
	if ds, ok := simulator.Map.Get(ref).(*simulator.Datastore); ok {
		name = ds.Name
	}
	return &types.DatastoreEventArgument{Datastore: ref, EntityEventArgument: types.EntityEventArgument{Name: name}}
}

// vmEvent is the common part of a VM event: the VM, its host, compute resource and datacenter.
func vmEvent(vm *simulator.VirtualMachine, host *simulator.HostSystem) types.VmEvent {
	_, cr := computeResourceOf(host)
	dc := datacenterOf(host)
	return types.VmEvent{Event: types.Event{
		Datacenter: &types.DatacenterEventArgument{Datacenter: dc.Self,
			EntityEventArgument: types.EntityEventArgument{Name: dc.Name}},
		ComputeResource: &types.ComputeResourceEventArgument{ComputeResource: cr.Self,
			EntityEventArgument: types.EntityEventArgument{Name: cr.Name}},
		Host: hostArg(host),
		Vm:   &types.VmEventArgument{Vm: vm.Self, EntityEventArgument: types.EntityEventArgument{Name: vm.Name}},
	}}
}

// datacenterOf walks up the inventory from a host to its datacenter.
func datacenterOf(h *simulator.HostSystem) *simulator.Datacenter {
	ref := h.Parent
	for ref != nil {
		switch obj := simulator.Map.Get(*ref).(type) {
		case *simulator.Datacenter:
			return obj
		case *simulator.ClusterComputeResource:
			ref = obj.Parent
		case *mo.ComputeResource:
			ref = obj.Parent
		case *simulator.Folder:
			ref = obj.Parent
		default:
			return nil
		}
	}
	return nil
}
