package main

// The scenario is the lab's inventory, written by runbook/lab.py as JSON from a TOML file in
// sim/scenarios/ (Python's tomllib parses TOML, so no TOML library is needed here). Defaults
// ([defaults.host], [defaults.vm]) and the scale template are expanded on the Python side: this
// file only declares the flat shape the Go side builds.

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/vmware/govmomi/simulator/esx"
)

const gib = int64(1) << 30

type Scenario struct {
	Name                 string  `json:"name"`
	MigrationSeconds     float64 `json:"migration_seconds"`      // powered-on relocation
	ColdMigrationSeconds float64 `json:"cold_migration_seconds"` // powered-off relocation
	// Transfer rates (GiB/s): when set, a relocation lasts as long as copying what it moves takes
	// (memory for a vMotion of a powered-on VM, disks and home for a Storage vMotion), see relocate.go.
	VmotionGiBPerSecond float64 `json:"vmotion_gib_per_second"`
	StorageGiBPerSecond float64 `json:"storage_gib_per_second"`
	// Every host's memory (GiB; 0 keeps the simulator's 4 GiB): set on the host template before the
	// hosts are built, so that a scenario's VMs fit their hosts (free memory never negative).
	HostMemoryGiB float64       `json:"host_memory_gib"`
	Datacenters   []DCSpec      `json:"datacenters"`
	Clusters      []ClusterSpec `json:"clusters"`
	Hosts         []HostSpec    `json:"hosts"`
	Datastores    []DSSpec      `json:"datastores"`
	VMs           []VMSpec      `json:"vms"`
}

type DCSpec struct {
	Name string `json:"name"`
}

type ClusterSpec struct {
	Name       string `json:"name"`
	Datacenter string `json:"datacenter"`
	EVCMode    string `json:"evc_mode"` // "" = EVC disabled
}

type VmkSpec struct {
	Device    string   `json:"device"`
	PortGroup string   `json:"port_group"`
	IP        string   `json:"ip"`
	Services  []string `json:"services"` // management, vmotion
	Uplinks   *bool    `json:"uplinks"`  // false: its port group is on a vSwitch without physical NICs
}

// hasUplinks tells whether the vmk's port group has physical uplinks (the default).
func (v VmkSpec) hasUplinks() bool { return v.Uplinks == nil || *v.Uplinks }

type HostSpec struct {
	Name            string    `json:"name"`
	Cluster         string    `json:"cluster"`    // "" = a standalone host (its own compute resource)
	Datacenter      string    `json:"datacenter"` // a standalone host's datacenter (else the cluster's)
	CPUVendor       string    `json:"cpu_vendor"` // intel | amd
	CPUModel        string    `json:"cpu_model"`
	MaxEVCMode      string    `json:"max_evc_mode"`
	ConnectionState string    `json:"connection_state"` // connected | disconnected | notResponding
	MaintenanceMode bool      `json:"maintenance_mode"`
	PortGroups      []string  `json:"port_groups"`
	Vmks            []VmkSpec `json:"vmks"`
}

type DSSpec struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"` // NFS | VMFS
	CapacityGB float64  `json:"capacity_gb"`
	UsedGB     float64  `json:"used_gb"` // space used by files outside the lab's VMs
	Hosts      []string `json:"hosts"`
}

type DiskSpec struct {
	SizeGB      float64 `json:"size_gb"`
	CommittedGB float64 `json:"committed_gb"` // data written; a thick disk commits its full size anyway
	Format      string  `json:"format"`       // thin | thick | eagerzeroedthick
	Datastore   string  `json:"datastore"`    // "" = the VM's home datastore
}

type NicSpec struct {
	PortGroup string `json:"port_group"`
}

type CdromSpec struct {
	Type      string `json:"type"` // iso | host | client
	Datastore string `json:"datastore"`
	Path      string `json:"path"`
}

type VMSpec struct {
	Name       string     `json:"name"`
	Host       string     `json:"host"`
	PowerState string     `json:"power_state"` // poweredOn | poweredOff
	Datastore  string     `json:"datastore"`   // home: .vmx, logs, swap
	GuestIP    string     `json:"guest_ip"`
	GuestOS    string     `json:"guest_os"`
	CPUs       int32      `json:"cpus"`
	MemoryMB   int64      `json:"memory_mb"`
	Disks      []DiskSpec `json:"disks"`
	Nics       []NicSpec  `json:"nics"`
	Cdrom      *CdromSpec `json:"cdrom"`
}

func loadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &Scenario{MigrationSeconds: 2, ColdMigrationSeconds: 0.5}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	if len(s.Datacenters) == 0 {
		return nil, fmt.Errorf("scenario %s declares no datacenter", path)
	}
	if s.HostMemoryGiB > 0 { // the template every host is copied from (simulator.NewHostSystem)
		size := int64(s.HostMemoryGiB * float64(gib))
		esx.HostHardwareInfo.MemorySize = size
		esx.HostSystem.Summary.Hardware.MemorySize = size
	}
	return s, nil
}
