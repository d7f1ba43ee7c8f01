package main

// A host's compute resource: a cluster (ClusterComputeResource) or, for a standalone host, its own
// ComputeResource. Both have a root resource pool, networks and datastores; the lab reads and
// updates them the same way whatever the kind.

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// computeResourceOf returns the object holding host h (for locking and updates) and its
// ComputeResource part (name, root pool, networks, datastores).
func computeResourceOf(h *simulator.HostSystem) (mo.Reference, *mo.ComputeResource) {
	switch cr := simulator.Map.Get(*h.Parent).(type) {
	case *simulator.ClusterComputeResource:
		return cr, &cr.ClusterComputeResource.ComputeResource
	case *mo.ComputeResource:
		return cr, cr
	}
	return nil, nil
}

// poolOwner is the compute resource a resource pool belongs to (child pools included).
func poolOwner(ref types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
	p, ok := simulator.Map.Get(ref).(*simulator.ResourcePool)
	if !ok {
		return types.ManagedObjectReference{}, false
	}
	return p.Owner, true
}
