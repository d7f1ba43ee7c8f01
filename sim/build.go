package main

// Building the inventory: the scenario's objects are created through the simulator's own API
// (in process, no HTTP) so that its internal links (folders, pools, host lists) stay right;
// what the stock model gets wrong is corrected afterwards in fixups.go.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// inventory maps the scenario's names to what was built.
type inventory struct {
	c        *vim25.Client
	dcs      map[string]*object.Datacenter
	folders  map[string]*object.DatacenterFolders
	clusters map[string]*object.ClusterComputeResource
	hosts    map[string]*object.HostSystem
	hostDC   map[string]string // host name -> datacenter name
	dss      map[string]types.ManagedObjectReference
	dsDirs   map[string]string // datastore name -> directory backing it
	vms      map[string]types.ManagedObjectReference
}

func buildInventory(ctx context.Context, svc *simulator.Service, s *Scenario, dataDir string) (*inventory, error) {
	c, err := vim25.NewClient(ctx, svc)
	if err != nil {
		return nil, err
	}
	inv := &inventory{
		c: c, dcs: map[string]*object.Datacenter{}, folders: map[string]*object.DatacenterFolders{},
		clusters: map[string]*object.ClusterComputeResource{}, hosts: map[string]*object.HostSystem{},
		hostDC: map[string]string{}, dss: map[string]types.ManagedObjectReference{},
		dsDirs: map[string]string{}, vms: map[string]types.ManagedObjectReference{},
	}
	root := object.NewRootFolder(c)
	for _, d := range s.Datacenters {
		dc, err := root.CreateDatacenter(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("datacenter %s: %w", d.Name, err)
		}
		inv.dcs[d.Name] = dc
		if inv.folders[d.Name], err = dc.Folders(ctx); err != nil {
			return nil, err
		}
	}
	for _, cl := range s.Clusters {
		f, ok := inv.folders[cl.Datacenter]
		if !ok {
			return nil, fmt.Errorf("cluster %s: unknown datacenter %q", cl.Name, cl.Datacenter)
		}
		if inv.clusters[cl.Name], err = f.HostFolder.CreateCluster(ctx, cl.Name, types.ClusterConfigSpecEx{}); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", cl.Name, err)
		}
	}
	for _, h := range s.Hosts {
		if err := inv.addHost(ctx, s, h); err != nil {
			return nil, err
		}
	}
	if err := inv.addPortGroups(ctx, s); err != nil {
		return nil, err
	}
	for _, d := range s.Datastores {
		if err := inv.addDatastore(ctx, d, dataDir); err != nil {
			return nil, err
		}
	}
	// The simulator places a VM's files through its host's datastore list: mount first.
	fixDatastores(inv, s)
	for _, v := range s.VMs {
		if err := inv.addVM(ctx, v); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

func (inv *inventory) addHost(ctx context.Context, s *Scenario, h HostSpec) error {
	var task *object.Task
	var err error
	if h.Cluster == "" { // standalone: the host gets its own ComputeResource in the datacenter's host folder
		f, ok := inv.folders[h.Datacenter]
		if !ok {
			return fmt.Errorf("standalone host %s: unknown datacenter %q", h.Name, h.Datacenter)
		}
		task, err = f.HostFolder.AddStandaloneHost(ctx, types.HostConnectSpec{HostName: h.Name}, true, nil, nil)
		inv.hostDC[h.Name] = h.Datacenter
	} else {
		cl, ok := inv.clusters[h.Cluster]
		if !ok {
			return fmt.Errorf("host %s: unknown cluster %q", h.Name, h.Cluster)
		}
		task, err = cl.AddHost(ctx, types.HostConnectSpec{HostName: h.Name}, true, nil, nil)
		for _, c := range s.Clusters {
			if c.Name == h.Cluster {
				inv.hostDC[h.Name] = c.Datacenter
			}
		}
	}
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	inv.hosts[h.Name] = object.NewHostSystem(inv.c, info.Result.(types.ManagedObjectReference))
	return nil
}

// addPortGroups creates each port group's Network once per datacenter (the stock AddPortGroup
// refuses a second host with DuplicateName); fixNetworks then links every host that has it.
func (inv *inventory) addPortGroups(ctx context.Context, s *Scenario) error {
	done := map[string]bool{}
	for _, h := range s.Hosts {
		for _, pg := range h.PortGroups {
			key := inv.hostDC[h.Name] + "/" + pg
			if done[key] {
				continue
			}
			done[key] = true
			if pg == "VM Network" { // the stock model's default network already exists
				continue
			}
			ns, err := inv.hosts[h.Name].ConfigManager().NetworkSystem(ctx)
			if err != nil {
				return err
			}
			err = ns.AddPortGroup(ctx, types.HostPortGroupSpec{Name: pg, VswitchName: "vSwitch0",
				Policy: types.HostNetworkPolicy{}})
			if err != nil {
				return fmt.Errorf("port group %s: %w", pg, err)
			}
		}
	}
	return nil
}

// addDatastore creates the datastore once, on its first host; fixDatastores mounts it on the rest
// (creating it per host makes the stock model replace the object and duplicate folder children).
func (inv *inventory) addDatastore(ctx context.Context, d DSSpec, dataDir string) error {
	if len(d.Hosts) == 0 {
		return fmt.Errorf("datastore %s is mounted on no host", d.Name)
	}
	host, ok := inv.hosts[d.Hosts[0]]
	if !ok {
		return fmt.Errorf("datastore %s: unknown host %q", d.Name, d.Hosts[0])
	}
	dir := filepath.Join(dataDir, d.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dss, err := host.ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return err
	}
	var ds *object.Datastore
	if d.Type == "NFS" {
		ds, err = dss.CreateNasDatastore(ctx, types.HostNasVolumeSpec{
			RemoteHost: "nfs.lab.local", RemotePath: "/export/" + d.Name, LocalPath: dir,
			AccessMode: string(types.HostMountModeReadWrite), Type: "NFS",
		})
	} else {
		ds, err = dss.CreateLocalDatastore(ctx, d.Name, dir)
	}
	if err != nil {
		return fmt.Errorf("datastore %s: %w", d.Name, err)
	}
	inv.dss[d.Name] = renameDatastore(ds.Reference(), host)
	inv.dsDirs[d.Name] = dir
	return nil
}

// renameDatastore gives a datastore just created on host a vCenter moid, datastore-NN, in place of
// the simulator's path-like one, and updates every reference made to it so far (its folder, the
// datacenter, the host, its datastore system and compute resource, its browser).
func renameDatastore(old types.ManagedObjectReference, host *object.HostSystem) types.ManagedObjectReference {
	ds := simulator.Map.Get(old).(*simulator.Datastore)
	simulator.Map.Remove(old)
	simulator.Map.NewEntity(ds)
	ref := ds.Self
	ds.Summary.Datastore = &ref
	simulator.Map.Put(ds)
	swap := func(list []types.ManagedObjectReference) {
		for i := range list {
			if list[i] == old {
				list[i] = ref
			}
		}
	}
	folder := simulator.Map.Get(*ds.Parent).(*simulator.Folder)
	swap(folder.ChildEntity)
	for _, e := range simulator.Map.All("Datacenter") {
		swap(e.(*simulator.Datacenter).Datastore)
	}
	h := simulator.Map.Get(host.Reference()).(*simulator.HostSystem)
	dss := simulator.Map.Get(*h.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
	swap(dss.Datastore)
	swap(h.Datastore)
	if _, cr := computeResourceOf(h); cr != nil {
		swap(cr.Datastore)
	}
	if b, ok := simulator.Map.Get(ds.Browser).(*simulator.HostDatastoreBrowser); ok {
		swap(b.Datastore)
	}
	return ref
}

func (inv *inventory) addVM(ctx context.Context, v VMSpec) error {
	host, ok := inv.hosts[v.Host]
	if !ok {
		return fmt.Errorf("vm %s: unknown host %q", v.Name, v.Host)
	}
	folders := inv.folders[inv.hostDC[v.Host]]
	pool, err := host.ResourcePool(ctx)
	if err != nil {
		return err
	}
	if _, ok := inv.dss[v.Datastore]; !ok {
		return fmt.Errorf("vm %s: unknown datastore %q", v.Name, v.Datastore)
	}
	spec := types.VirtualMachineConfigSpec{
		Name: vcenterName(v.Name), GuestId: v.GuestOS, NumCPUs: v.CPUs, MemoryMB: v.MemoryMB,
		Files: &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", v.Datastore)},
	}
	var devices object.VirtualDeviceList
	scsi, _ := devices.CreateSCSIController("pvscsi")
	devices = append(devices, scsi)
	for i, d := range v.Disks {
		dsName := d.Datastore
		if dsName == "" {
			dsName = v.Datastore
		}
		dsRef, ok := inv.dss[dsName]
		if !ok {
			return fmt.Errorf("vm %s: unknown datastore %q", v.Name, dsName)
		}
		// The simulator creates an empty file for each disk: its folder must exist.
		if err := os.MkdirAll(filepath.Join(inv.dsDirs[dsName], vcenterName(v.Name)), 0o700); err != nil {
			return err
		}
		file := fmt.Sprintf("[%s] %s/%s.vmdk", dsName, vcenterName(v.Name), vcenterName(v.Name))
		if i > 0 {
			file = fmt.Sprintf("[%s] %s/%s_%d.vmdk", dsName, vcenterName(v.Name), vcenterName(v.Name), i)
		}
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), dsRef, file)
		disk.CapacityInKB = int64(d.SizeGB * float64(gib) / 1024)
		disk.CapacityInBytes = disk.CapacityInKB * 1024
		b := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		b.ThinProvisioned = types.NewBool(d.Format == "thin")
		b.EagerlyScrub = types.NewBool(d.Format == "eagerzeroedthick")
		devices = append(devices, disk)
	}
	if v.Cdrom != nil {
		// on the VM's stock first IDE controller (key 200), as vCenter places a CD drive
		ide := &types.VirtualIDEController{VirtualController: types.VirtualController{
			VirtualDevice: types.VirtualDevice{Key: 200}}}
		cd, _ := devices.CreateCdrom(ide)
		switch v.Cdrom.Type {
		case "iso":
			iso := fmt.Sprintf("[%s] %s", v.Cdrom.Datastore, v.Cdrom.Path)
			cd = devices.InsertIso(cd, iso)
			if ref, ok := inv.dss[v.Cdrom.Datastore]; ok {
				cd.Backing.(*types.VirtualCdromIsoBackingInfo).Datastore = &ref
			}
		case "host":
			cd.Backing = &types.VirtualCdromAtapiBackingInfo{
				VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "/dev/cdrom"}}
		case "client":
			cd.Backing = &types.VirtualCdromRemotePassthroughBackingInfo{
				VirtualDeviceRemoteDeviceBackingInfo: types.VirtualDeviceRemoteDeviceBackingInfo{DeviceName: ""}}
		}
		cd.Connectable = &types.VirtualDeviceConnectInfo{StartConnected: true, Connected: true}
		devices = append(devices, cd)
	}
	for _, n := range v.Nics {
		nic, err := devices.CreateEthernetCard("vmxnet3", &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: n.PortGroup}})
		if err != nil {
			return err
		}
		devices = append(devices, nic)
	}
	if spec.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
		return err
	}
	setDeviceLabels(devices)
	task, err := folders.VmFolder.CreateVM(ctx, spec, pool, host)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return fmt.Errorf("vm %s: %w", v.Name, err)
	}
	ref := info.Result.(types.ManagedObjectReference)
	inv.vms[v.Name] = ref
	if v.PowerState == "poweredOn" {
		if _, err := object.NewVirtualMachine(inv.c, ref).PowerOn(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setDeviceLabels names the devices as vCenter does: "SCSI controller 0", "Hard disk 1",
// "CD/DVD drive 1", "Network adapter 1" (the simulator keeps a label it is given).
func setDeviceLabels(devices object.VirtualDeviceList) {
	count := map[string]int{}
	for _, d := range devices {
		var label string
		switch d.(type) {
		case types.BaseVirtualSCSIController:
			label = fmt.Sprintf("SCSI controller %d", count["scsi"])
			count["scsi"]++
		case *types.VirtualDisk:
			count["disk"]++
			label = fmt.Sprintf("Hard disk %d", count["disk"])
		case *types.VirtualCdrom:
			count["cdrom"]++
			label = fmt.Sprintf("CD/DVD drive %d", count["cdrom"])
		case types.BaseVirtualEthernetCard:
			count["nic"]++
			label = fmt.Sprintf("Network adapter %d", count["nic"])
		default:
			continue
		}
		d.GetVirtualDevice().DeviceInfo = &types.Description{Label: label}
	}
}
