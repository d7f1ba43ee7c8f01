package main

// A host's managers as vCenter lists them. The stock host template points most of
// configManager (cpuScheduler, serviceSystem, vsanSystem, ...), datastoreBrowser, config.host and
// config.vsanHostConfig.hostSystem at ESXi-local ids ("ha-host", "vsanSystem") shared by every
// host and naming no object, so a client that follows them gets ManagedObjectNotFound. Here each
// host gets its own object of the right type for each of them (its properties unset unless the lab
// models them, which reads as "not reported"), a vsanSystem whose config says vSAN is off, and a
// datastore browser over the host's datastores.

import (
	"fmt"
	"reflect"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostVsanSystem implements configManager.vsanSystem: vSAN is not enabled on lab hosts.
type HostVsanSystem struct {
	mo.HostVsanSystem
	host *simulator.HostSystem
}

// QueryHostStatus answers as a host outside any vSAN cluster does.
func (s *HostVsanSystem) QueryHostStatus(*types.QueryHostStatus) soap.HasFault {
	return &methods.QueryHostStatusBody{Res: &types.QueryHostStatusResponse{Returnval: types.VsanHostClusterStatus{
		Health: "unknown", NodeState: types.VsanHostClusterStatusState{State: "notInVsanCluster"}}}}
}

// fixHostManagers gives host h its own manager objects and fixes its self references.
func fixHostManagers(h *simulator.HostSystem) {
	cfg := *h.Config
	cfg.Host = h.Self
	cfg.CacheConfigurationInfo = nil // its key named a datastore that does not exist
	if cfg.VsanHostConfig != nil {
		v := *cfg.VsanHostConfig
		v.HostSystem = &h.Self
		v.Enabled = types.NewBool(false)
		cfg.VsanHostConfig = &v
	}
	h.Config = &cfg

	vs := &HostVsanSystem{host: h}
	vs.Self = types.ManagedObjectReference{Type: "HostVsanSystem", Value: "vsanSystem-" + h.Self.Value}
	if cfg.VsanHostConfig != nil {
		vs.Config = *cfg.VsanHostConfig
	}
	simulator.Map.Put(vs)
	h.ConfigManager.VsanSystem = &vs.Self

	b := &simulator.HostDatastoreBrowser{}
	b.Self = types.ManagedObjectReference{Type: "HostDatastoreBrowser", Value: "datastoreBrowser-" + h.Self.Value}
	simulator.Map.Put(b)
	h.DatastoreBrowser = b.Self

	// Every other manager reference that names no object gets an object of its type, per host.
	cm := reflect.ValueOf(&h.ConfigManager).Elem()
	for i := 0; i < cm.NumField(); i++ {
		ref, ok := cm.Field(i).Interface().(*types.ManagedObjectReference)
		if !ok || ref == nil {
			continue
		}
		if simulator.Map.Get(*ref) != nil {
			continue
		}
		own := types.ManagedObjectReference{Type: ref.Type, Value: ref.Value + "-" + h.Self.Value}
		if simulator.Map.Get(own) == nil {
			obj, err := newManagedObject(own)
			if err != nil {
				cm.Field(i).Set(reflect.Zero(cm.Field(i).Type())) // a type the lab cannot build: unset
				continue
			}
			simulator.Map.Put(obj)
		}
		cm.Field(i).Set(reflect.ValueOf(&own))
	}
}

// browseDatastores keeps each host's datastore browser listing the host's datastores.
func browseDatastores(h *simulator.HostSystem) {
	if b, ok := simulator.Map.Get(h.DatastoreBrowser).(*simulator.HostDatastoreBrowser); ok {
		b.Datastore = append([]types.ManagedObjectReference(nil), h.Datastore...)
	}
}

// newManagedObject builds an empty managed object of ref's type (its properties all unset).
func newManagedObject(ref types.ManagedObjectReference) (obj mo.Reference, err error) {
	defer func() {
		if recover() != nil { // a type unknown to govmomi's mo package
			obj, err = nil, fmt.Errorf("no managed object type %s", ref.Type)
		}
	}()
	v, err := mo.ObjectContentToType(types.ObjectContent{Obj: ref}, true)
	if err != nil {
		return nil, err
	}
	r, ok := v.(mo.Reference)
	if !ok {
		return nil, fmt.Errorf("%s is not a managed object", ref.Type)
	}
	return r, nil
}
