package main

// content.vmProvisioningChecker: CheckRelocate_Task answers, without moving anything, the faults the
// same relocation would raise (all of them, from faults.go) and vCenter's warnings.

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type ProvisioningChecker struct {
	mo.VirtualMachineProvisioningChecker
}

func (c *ProvisioningChecker) CheckRelocateTask(req *types.CheckRelocate_Task) soap.HasFault {
	vm, ok := simulator.Map.Get(req.Vm).(*simulator.VirtualMachine)
	if !ok {
		f := notFound(req.Vm)
		return &methods.CheckRelocate_TaskBody{Fault_: simulator.Fault(messageOf(f), f)}
	}
	r, fault := newRelocation(vm, req.Spec)
	if fault != nil {
		return &methods.CheckRelocate_TaskBody{Fault_: simulator.Fault(messageOf(fault), fault)}
	}
	task := simulator.CreateTask(c, "checkRelocate", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res := types.CheckResult{Vm: &vm.Self, Host: &r.dstHost.Self}
		for _, f := range allFaults(r, req.TestType) {
			res.Error = append(res.Error, *localized(f))
		}
		lab.mu.Lock()
		other, busy := lab.running[vm.Self.Value]
		lab.mu.Unlock()
		if busy && wanted(req.TestType, "sourceTests") {
			// the fault names the running task: a reference without a type breaks clients
			res.Error = append(res.Error, *localized(withMessage(&types.TaskInProgress{Task: other.task.Self},
				"Another task is already in progress on virtual machine %s", vm.Name)))
		}
		for _, w := range checkWarnings(r, req.TestType) {
			res.Warning = append(res.Warning, *localized(w))
		}
		return types.ArrayOfCheckResult{CheckResult: []types.CheckResult{res}}, nil
	})
	task.Info.Name = "CheckRelocate_Task"
	task.Info.Entity, task.Info.EntityName = &vm.Self, vm.Name // a task's entity is a managed entity
	task.Info.DescriptionId = "vm.check.ProvisioningChecker.checkRelocate"
	return &methods.CheckRelocate_TaskBody{Res: &types.CheckRelocate_TaskResponse{Returnval: task.Run()}}
}

// checkWarnings are non-fatal: vCenter warns that a powered-off VM moves cold (no live migration).
func checkWarnings(r *relocation, testTypes []string) []types.BaseMethodFault {
	var w []types.BaseMethodFault
	if !r.poweredOn && wanted(testTypes, "sourceTests") {
		w = append(w, withMessage(&types.MigrationFault{},
			"The virtual machine %s is powered off: this is a cold migration.", r.vm.Name))
	}
	return w
}
