package main

// The lab's own state next to the simulator's object map: what the stock model has no field for
// (bytes a thin disk really uses, space used outside the VMs, test controls), guarded by one mutex.

import (
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type diskKey struct {
	vm  string // VM moid
	key int32  // device key
}

type labState struct {
	mu sync.Mutex

	scenario  *Scenario
	user      string
	diskUsed  map[diskKey]int64 // bytes written to the disk (a thin disk's committed size)
	dsBase    map[string]int64  // datastore moid -> bytes used by files that are not the lab's VMs
	dsCap     map[string]int64  // datastore moid -> capacity
	dsByName  map[string]types.ManagedObjectReference
	running   map[string]*relocation           // VM moid -> relocation in progress
	byTask    map[string]*relocation           // task moid -> relocation (for CancelTask)
	nextSecs  map[string]float64               // VM moid -> duration of its next relocation
	defSecs   *float64                         // default duration for every relocation (overrides the scenario)
	nextFault map[string]types.BaseMethodFault // VM moid -> fault to raise in its next relocation
	requests  int64                            // SOAP requests served
	delay     *simulator.DelayConfig
}

var lab = &labState{
	diskUsed:  map[diskKey]int64{},
	dsBase:    map[string]int64{},
	dsCap:     map[string]int64{},
	running:   map[string]*relocation{},
	byTask:    map[string]*relocation{},
	nextSecs:  map[string]float64{},
	nextFault: map[string]types.BaseMethodFault{},
}

// migrationDuration tells how long the next relocation of vm lasts (and forgets a one-shot value).
func (l *labState) migrationDuration(vm *simulator.VirtualMachine) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	secs := l.scenario.MigrationSeconds
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		secs = l.scenario.ColdMigrationSeconds
	}
	if l.defSecs != nil {
		secs = *l.defSecs
	}
	if s, ok := l.nextSecs[vm.Self.Value]; ok {
		secs = s
		delete(l.nextSecs, vm.Self.Value)
	}
	return time.Duration(secs * float64(time.Second))
}

// takeFault returns (and forgets) a fault injected for vm's next relocation.
func (l *labState) takeFault(vm string) types.BaseMethodFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.nextFault[vm]
	delete(l.nextFault, vm)
	return f
}

// findEntity finds a managed entity of kind by moid or by name (names are unique in a scenario).
func findEntity(kind, key string) mo.Entity {
	if obj := simulator.Map.Get(types.ManagedObjectReference{Type: kind, Value: key}); obj != nil {
		if e, ok := obj.(mo.Entity); ok {
			return e
		}
	}
	for _, e := range simulator.Map.All(kind) {
		if e.Entity().Name == key || e.Entity().Name == vcenterName(key) {
			return e
		}
	}
	return nil
}
