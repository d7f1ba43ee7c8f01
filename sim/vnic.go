package main

// VMkernel adapters and the two managers that select them for vMotion. The stock host points
// configManager.vmotionSystem / virtualNicManager at objects that do not exist; here they are real
// objects whose methods change config.vmotion, config.virtualNicManagerInfo and
// summary.config.vmotionEnabled together, so the runbook can read and repair vMotion networking.

import (
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// nicTypes are the VMkernel services an ESXi host offers (HostVirtualNicManagerNicType, API 7.0).
var nicTypes = []string{
	string(types.HostVirtualNicManagerNicTypeManagement), string(types.HostVirtualNicManagerNicTypeVmotion),
	string(types.HostVirtualNicManagerNicTypeVSphereProvisioning),
	string(types.HostVirtualNicManagerNicTypeFaultToleranceLogging),
	string(types.HostVirtualNicManagerNicTypeVSphereReplication),
	string(types.HostVirtualNicManagerNicTypeVSphereReplicationNFC), string(types.HostVirtualNicManagerNicTypeVsan),
	string(types.HostVirtualNicManagerNicTypeVsanWitness), string(types.HostVirtualNicManagerNicTypeVSphereBackupNFC),
	string(types.HostVirtualNicManagerNicTypePtp),
}

func knownNicType(t string) bool {
	for _, n := range nicTypes {
		if n == t {
			return true
		}
	}
	return false
}

func vnicKey(device string) string { return "key-vim.host.VirtualNic-" + device }

// setupVnics installs the scenario's VMkernel adapters and the vMotion managers on host h.
func setupVnics(h *simulator.HostSystem, vmks []VmkSpec) {
	var vnics []types.HostVirtualNic
	selected := map[string][]string{}
	for i, v := range vmks {
		vnics = append(vnics, types.HostVirtualNic{
			Device: v.Device, Key: vnicKey(v.Device), Portgroup: v.PortGroup,
			Spec: types.HostVirtualNicSpec{
				Ip:  &types.HostIpConfig{IpAddress: v.IP, SubnetMask: "255.255.255.0"},
				Mac: strings.Replace("00:50:56:6b:00:0N", "N", string(rune('0'+i%10)), 1),
				Mtu: 1500,
			},
		})
		for _, svc := range v.Services {
			selected[svc] = append(selected[svc], svc+"."+vnicKey(v.Device))
		}
	}
	h.Config.Network.Vnic = vnics
	ns := simulator.Map.Get(*h.ConfigManager.NetworkSystem).(*simulator.HostNetworkSystem)
	ns.NetworkInfo.Vnic = vnics

	info := &types.HostVirtualNicManagerInfo{}
	for _, t := range nicTypes {
		info.NetConfig = append(info.NetConfig, types.VirtualNicManagerNetConfig{
			NicType: t, MultiSelectAllowed: true, CandidateVnic: vnics, SelectedVnic: selected[t]})
	}
	h.Config.VirtualNicManagerInfo = info
	h.Config.Vmotion = &types.HostVMotionInfo{NetConfig: &types.HostVMotionNetConfig{CandidateVnic: vnics}}
	if len(selected["vmotion"]) > 0 {
		h.Config.Vmotion.NetConfig.SelectedVnic = selected["vmotion"][0]
	}
	h.Summary.Config.VmotionEnabled = len(selected["vmotion"]) > 0

	vs := &HostVMotionSystem{host: h}
	vs.Self = types.ManagedObjectReference{Type: "HostVMotionSystem", Value: "vmotionSystem-" + h.Self.Value}
	vs.NetConfig = h.Config.Vmotion.NetConfig
	simulator.Map.Put(vs)
	h.ConfigManager.VmotionSystem = &vs.Self

	nm := &HostVirtualNicManager{host: h}
	nm.Self = types.ManagedObjectReference{Type: "HostVirtualNicManager", Value: "virtualNicManager-" + h.Self.Value}
	nm.Info = *info
	simulator.Map.Put(nm)
	h.ConfigManager.VirtualNicManager = &nm.Self
}

// hasVmotionVnic tells whether a vmk is selected for vMotion on h (what vCenter requires).
func hasVmotionVnic(h *simulator.HostSystem) bool {
	return h.Config.Vmotion != nil && h.Config.Vmotion.NetConfig != nil && h.Config.Vmotion.NetConfig.SelectedVnic != ""
}

// setVmotionVnic selects (device != "") or deselects the vMotion vmk and updates all three views.
func setVmotionVnic(h *simulator.HostSystem, device string) types.BaseMethodFault {
	var key string
	if device != "" {
		found := false
		for _, v := range h.Config.Network.Vnic {
			found = found || v.Device == device
		}
		if !found {
			return &types.InvalidArgument{InvalidProperty: "device"}
		}
		key = "vmotion." + vnicKey(device)
	}
	simulator.Map.WithLock(h, func() {
		nc := *h.Config.Vmotion.NetConfig
		nc.SelectedVnic = key
		info := &types.HostVirtualNicManagerInfo{}
		for _, c := range h.Config.VirtualNicManagerInfo.NetConfig {
			if c.NicType == "vmotion" {
				c.SelectedVnic = nil
				if key != "" {
					c.SelectedVnic = []string{key}
				}
			}
			info.NetConfig = append(info.NetConfig, c)
		}
		simulator.Map.Update(h, []types.PropertyChange{
			{Name: "config.vmotion.netConfig", Val: &nc},
			{Name: "config.virtualNicManagerInfo", Val: info},
			{Name: "summary.config.vmotionEnabled", Val: key != ""},
		})
		if vs, ok := simulator.Map.Get(*h.ConfigManager.VmotionSystem).(*HostVMotionSystem); ok {
			simulator.Map.Update(vs, []types.PropertyChange{{Name: "netConfig", Val: &nc}})
		}
		if nm, ok := simulator.Map.Get(*h.ConfigManager.VirtualNicManager).(*HostVirtualNicManager); ok {
			simulator.Map.Update(nm, []types.PropertyChange{{Name: "info", Val: *info}})
		}
	})
	return nil
}

// deviceOf accepts "vmk1" or a key such as "vmotion.key-vim.host.VirtualNic-vmk1".
func deviceOf(s string) string {
	return s[strings.LastIndex(s, "-")+1:]
}

// HostVMotionSystem implements configManager.vmotionSystem.
type HostVMotionSystem struct {
	mo.HostVMotionSystem
	host *simulator.HostSystem
}

func (s *HostVMotionSystem) SelectVnic(req *types.SelectVnic) soap.HasFault {
	if f := setVmotionVnic(s.host, req.Device); f != nil {
		return &methods.SelectVnicBody{Fault_: simulator.Fault("", f)}
	}
	return &methods.SelectVnicBody{Res: &types.SelectVnicResponse{}}
}

func (s *HostVMotionSystem) DeselectVnic(req *types.DeselectVnic) soap.HasFault {
	_ = setVmotionVnic(s.host, "")
	return &methods.DeselectVnicBody{Res: &types.DeselectVnicResponse{}}
}

// HostVirtualNicManager implements configManager.virtualNicManager for every nic type. vmotion
// selects one adapter (and keeps config.vmotion and summary.config.vmotionEnabled in step); the
// other services add or remove an adapter from their selection.
type HostVirtualNicManager struct {
	mo.HostVirtualNicManager
	host *simulator.HostSystem
}

func badNicType(t string) *soap.Fault {
	return simulator.Fault("unknown nicType "+t, &types.InvalidArgument{InvalidProperty: "nicType"})
}

func (m *HostVirtualNicManager) QueryNetConfig(req *types.QueryNetConfig) soap.HasFault {
	for _, c := range m.host.Config.VirtualNicManagerInfo.NetConfig {
		if c.NicType == req.NicType {
			c := c
			return &methods.QueryNetConfigBody{Res: &types.QueryNetConfigResponse{Returnval: &c}}
		}
	}
	return &methods.QueryNetConfigBody{Fault_: badNicType(req.NicType)}
}

func (m *HostVirtualNicManager) SelectVnicForNicType(req *types.SelectVnicForNicType) soap.HasFault {
	if !knownNicType(req.NicType) {
		return &methods.SelectVnicForNicTypeBody{Fault_: badNicType(req.NicType)}
	}
	var f types.BaseMethodFault
	if req.NicType == "vmotion" {
		f = setVmotionVnic(m.host, deviceOf(req.Device))
	} else {
		f = setServiceVnic(m.host, req.NicType, deviceOf(req.Device), true)
	}
	if f != nil {
		return &methods.SelectVnicForNicTypeBody{Fault_: simulator.Fault("", f)}
	}
	return &methods.SelectVnicForNicTypeBody{Res: &types.SelectVnicForNicTypeResponse{}}
}

func (m *HostVirtualNicManager) DeselectVnicForNicType(req *types.DeselectVnicForNicType) soap.HasFault {
	if !knownNicType(req.NicType) {
		return &methods.DeselectVnicForNicTypeBody{Fault_: badNicType(req.NicType)}
	}
	if req.NicType == "vmotion" {
		_ = setVmotionVnic(m.host, "")
	} else if f := setServiceVnic(m.host, req.NicType, deviceOf(req.Device), false); f != nil {
		return &methods.DeselectVnicForNicTypeBody{Fault_: simulator.Fault("", f)}
	}
	return &methods.DeselectVnicForNicTypeBody{Res: &types.DeselectVnicForNicTypeResponse{}}
}

// setServiceVnic adds (on) or removes the adapter device from the selection of nicType.
func setServiceVnic(h *simulator.HostSystem, nicType, device string, on bool) types.BaseMethodFault {
	found := false
	for _, v := range h.Config.Network.Vnic {
		found = found || v.Device == device
	}
	if !found {
		return &types.InvalidArgument{InvalidProperty: "device"}
	}
	key := nicType + "." + vnicKey(device)
	simulator.Map.WithLock(h, func() {
		info := &types.HostVirtualNicManagerInfo{}
		for _, c := range h.Config.VirtualNicManagerInfo.NetConfig {
			if c.NicType == nicType {
				var sel []string
				for _, k := range c.SelectedVnic {
					if k != key {
						sel = append(sel, k)
					}
				}
				if on {
					sel = append(sel, key)
				}
				c.SelectedVnic = sel
			}
			info.NetConfig = append(info.NetConfig, c)
		}
		simulator.Map.Update(h, []types.PropertyChange{{Name: "config.virtualNicManagerInfo", Val: info}})
		if nm, ok := simulator.Map.Get(*h.ConfigManager.VirtualNicManager).(*HostVirtualNicManager); ok {
			simulator.Map.Update(nm, []types.PropertyChange{{Name: "info", Val: *info}})
		}
	})
	return nil
}
