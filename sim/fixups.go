package main

// Fixups: after the stock simulator built the scenario's objects, correct what it models wrongly
// or not at all (see /work/shared/reference/lab-simulator.md): per-host networks, datastore mount
// lists, host CPU and EVC, host state, guest IP and tools. Runs before the server listens, so
// fields are set directly without locks.

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func applyFixups(inv *inventory, s *Scenario) {
	for _, cl := range s.Clusters {
		c := simulator.Map.Get(inv.clusters[cl.Name].Reference()).(*simulator.ClusterComputeResource)
		c.Summary.(*types.ClusterComputeResourceSummary).CurrentEVCModeKey = cl.EVCMode
	}
	for _, h := range s.Hosts {
		fixHost(inv, s, h)
	}
	fixNetworks(inv, s)
	fixPools()
	for _, v := range s.VMs {
		fixVM(inv, v)
	}
	for _, ref := range inv.vms {
		recomputeVM(simulator.Map.Get(ref).(*simulator.VirtualMachine), false)
	}
	recomputeDatastores(false)
}

func hostObj(inv *inventory, name string) *simulator.HostSystem {
	return simulator.Map.Get(inv.hosts[name].Reference()).(*simulator.HostSystem)
}

// fixHost gives the host its own CPU (the stock hosts share one cpuPkg slice: copy it first),
// EVC keys, connection and maintenance state, and VMkernel adapters (vnic.go).
func fixHost(inv *inventory, s *Scenario, spec HostSpec) {
	h := hostObj(inv, spec.Name)
	hw := *h.Hardware
	hw.CpuPkg = append([]types.HostCpuPackage(nil), hw.CpuPkg...)
	vendor := spec.CPUVendor
	if vendor == "" {
		vendor = "intel"
	}
	for i := range hw.CpuPkg {
		hw.CpuPkg[i].Vendor = vendor
		hw.CpuPkg[i].Description = spec.CPUModel
	}
	h.Hardware = &hw
	h.Summary.Hardware.CpuModel = spec.CPUModel
	h.Summary.MaxEVCModeKey = spec.MaxEVCMode
	h.Summary.CurrentEVCModeKey = "" // a standalone host has no EVC mode
	for _, cl := range s.Clusters {
		if cl.Name == spec.Cluster {
			h.Summary.CurrentEVCModeKey = cl.EVCMode
		}
	}
	switch spec.ConnectionState {
	case "", "connected":
		h.Runtime.ConnectionState = types.HostSystemConnectionStateConnected
	default:
		h.Runtime.ConnectionState = types.HostSystemConnectionState(spec.ConnectionState)
	}
	h.Runtime.InMaintenanceMode = spec.MaintenanceMode
	setupVnics(h, spec.Vmks)
	fixHostManagers(h)
	browseDatastores(h)
}

// fixPools gives every resource pool its own summary and config naming itself (the stock pools share
// one summary whose config.entity is the ESXi-local "ha-root-pool", an object that does not exist).
func fixPools() {
	for _, e := range simulator.Map.All("ResourcePool") {
		p := e.(*simulator.ResourcePool)
		self := p.Self
		if p.Summary != nil {
			summary := *p.Summary.GetResourcePoolSummary()
			summary.Name = p.Name
			summary.Config.Entity = &self
			p.Summary = &summary
		}
		p.Config.Entity = &self
	}
}

// fixNetworks links each port group's Network to exactly the hosts that have it (the stock model
// gives every host the same list and leaves network.host empty).
func fixNetworks(inv *inventory, s *Scenario) {
	for _, spec := range s.Hosts { // a standalone host's compute resource starts with the stock network
		if cr, standalone := simulator.Map.Get(*hostObj(inv, spec.Name).Parent).(*mo.ComputeResource); standalone {
			cr.Network = nil
		}
	}
	for dcName, dc := range inv.dcs {
		d := simulator.Map.Get(dc.Reference()).(*simulator.Datacenter)
		nets := map[string]*mo.Network{}
		for _, ref := range d.Network {
			if n, ok := simulator.Map.Get(ref).(*mo.Network); ok {
				nets[n.Name] = n
				n.Host = nil
			}
		}
		used := map[string]bool{}
		for _, spec := range s.Hosts {
			if inv.hostDC[spec.Name] != dcName {
				continue
			}
			h := hostObj(inv, spec.Name)
			h.Network = nil
			var pgs []types.HostPortGroup
			var names []string
			for _, pg := range spec.PortGroups {
				n := nets[pg]
				used[pg] = true
				h.Network = append(h.Network, n.Self)
				n.Host = append(n.Host, h.Self)
				pgs = append(pgs, portGroup(pg))
				names = append(names, pg)
			}
			var isolated []types.HostPortGroup
			for _, vmk := range spec.Vmks { // VMkernel port groups are not Network objects
				if !vmk.hasUplinks() {
					isolated = append(isolated, portGroupOn(vmk.PortGroup, isolatedSwitch))
					continue
				}
				pgs = append(pgs, portGroup(vmk.PortGroup))
				names = append(names, vmk.PortGroup)
			}
			h.Config.Network.Vswitch = hostSwitches(h.Config.Network.Vswitch, pgs, isolated)
			pgs = append(pgs, isolated...)
			h.Config.Network.Portgroup = pgs
			ns := simulator.Map.Get(*h.ConfigManager.NetworkSystem).(*simulator.HostNetworkSystem)
			ns.NetworkInfo.Portgroup = pgs
			ns.NetworkInfo.Vswitch[0].Portgroup = names
			if obj, cr := computeResourceOf(h); obj != nil {
				for _, ref := range h.Network {
					simulator.Map.AddReference(obj, &cr.Network, ref)
				}
			}
		}
		if n, ok := nets["VM Network"]; ok && !used["VM Network"] {
			removeNetwork(d, n)
		}
	}
}

func portGroup(name string) types.HostPortGroup { return portGroupOn(name, "vSwitch0") }

func portGroupOn(name, vswitch string) types.HostPortGroup {
	return types.HostPortGroup{
		Key:  "key-vim.host.PortGroup-" + name,
		Spec: types.HostPortGroupSpec{Name: name, VswitchName: vswitch},
	}
}

// isolatedSwitch holds the port groups of vmks declared `uplinks = false`: it has no physical NIC.
const isolatedSwitch = "vSwitch-isolated"

// hostSwitches lists the host's port groups on the stock vSwitch0 (uplink vmnic0) and, when a vmk
// has no uplinks, adds a vSwitch without pnic for them (config.network.vswitch[].pnic).
func hostSwitches(stock []types.HostVirtualSwitch, pgs, isolated []types.HostPortGroup) []types.HostVirtualSwitch {
	keys := func(list []types.HostPortGroup) (out []string) {
		for _, pg := range list {
			out = append(out, pg.Key)
		}
		return out
	}
	switches := append([]types.HostVirtualSwitch(nil), stock...)
	if len(switches) > 0 {
		switches[0].Portgroup = keys(pgs)
	}
	if len(isolated) > 0 {
		switches = append(switches, types.HostVirtualSwitch{
			Name: isolatedSwitch, Key: "key-vim.host.VirtualSwitch-" + isolatedSwitch, NumPorts: 128,
			NumPortsAvailable: 128, Mtu: 1500, Portgroup: keys(isolated),
			Spec: types.HostVirtualSwitchSpec{NumPorts: 128, Mtu: 1500},
		})
	}
	return switches
}

// removeNetwork drops the stock default "VM Network" when the scenario does not use it.
func removeNetwork(d *simulator.Datacenter, n *mo.Network) {
	simulator.RemoveReference(&d.Network, n.Self)
	f := simulator.Map.Get(d.NetworkFolder).(*simulator.Folder)
	simulator.RemoveReference(&f.ChildEntity, n.Self)
	for _, e := range simulator.Map.All("ClusterComputeResource") {
		cl := e.(*simulator.ClusterComputeResource)
		simulator.RemoveReference(&cl.Network, n.Self)
	}
	for _, e := range simulator.Map.All("ComputeResource") {
		if cr, ok := e.(*mo.ComputeResource); ok {
			simulator.RemoveReference(&cr.Network, n.Self)
		}
	}
	simulator.Map.Remove(n.Self)
}

// fixDatastores mounts each datastore on its hosts, keeping datastore.host and host.datastore in
// step, and sets its type, capacity and multipleHostAccess.
func fixDatastores(inv *inventory, s *Scenario) {
	lab.dsByName = map[string]types.ManagedObjectReference{}
	for name, ref := range inv.dss {
		lab.dsByName[name] = ref
	}
	for _, spec := range s.Datastores {
		ref := inv.dss[spec.Name]
		ds := simulator.Map.Get(ref).(*simulator.Datastore)
		ds.Host = nil
		for _, hn := range spec.Hosts {
			h := hostObj(inv, hn)
			ds.Host = append(ds.Host, types.DatastoreHostMount{
				Key: h.Self,
				MountInfo: types.HostMountInfo{
					Path:       ds.Info.GetDatastoreInfo().Url,
					AccessMode: string(types.HostMountModeReadWrite),
					Mounted:    types.NewBool(true),
					Accessible: types.NewBool(true),
				},
			})
			dss := simulator.Map.Get(*h.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
			simulator.Map.AddReference(dss, &dss.Datastore, ref)
			h.Datastore = dss.Datastore
			if obj, cr := computeResourceOf(h); obj != nil {
				simulator.Map.AddReference(obj, &cr.Datastore, ref)
			}
		}
		ds.Summary.Type = spec.Type
		ds.Summary.MultipleHostAccess = types.NewBool(len(spec.Hosts) > 1)
		lab.dsCap[ref.Value] = int64(spec.CapacityGB * float64(gib))
		lab.dsBase[ref.Value] = int64(spec.UsedGB * float64(gib))
		ds.Summary.Capacity = lab.dsCap[ref.Value]
	}
}

// fixVM sets the guest's identity and IP (guest.ipAddress, summary.guest, guest.net[]), tools
// running for a powered-on VM, and remembers how much each disk really holds.
func fixVM(inv *inventory, spec VMSpec) {
	vm := simulator.Map.Get(inv.vms[spec.Name]).(*simulator.VirtualMachine)
	on := vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	g := vm.Guest
	g.GuestId = spec.GuestOS
	g.GuestFullName = spec.GuestOS
	g.HostName = spec.Name
	g.ToolsVersionStatus2 = string(types.VirtualMachineToolsVersionStatusGuestToolsCurrent)
	if on {
		g.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		g.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
		g.GuestState = "running"
		g.IpAddress = spec.GuestIP
	} else {
		g.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
		g.ToolsStatus = types.VirtualMachineToolsStatusToolsNotRunning
		g.GuestState = "notRunning"
	}
	for i := range g.Net {
		if i < len(spec.Nics) {
			g.Net[i].Network = spec.Nics[i].PortGroup
		}
		if i == 0 && on && spec.GuestIP != "" {
			g.Net[i].IpAddress = []string{spec.GuestIP}
		}
	}
	s := vm.Summary.Guest
	s.GuestId, s.GuestFullName, s.HostName = g.GuestId, g.GuestFullName, g.HostName
	s.IpAddress, s.ToolsStatus, s.ToolsRunningStatus = g.IpAddress, g.ToolsStatus, g.ToolsRunningStatus
	s.ToolsVersionStatus2 = g.ToolsVersionStatus2
	for i, d := range vmDisks(vm) {
		if i >= len(spec.Disks) {
			break
		}
		used := int64(spec.Disks[i].CommittedGB * float64(gib))
		if used == 0 || used > d.CapacityInBytes {
			used = d.CapacityInBytes
		}
		lab.diskUsed[diskKey{vm.Self.Value, d.Key}] = used
	}
}
