package main

// Relocations scheduled as a vCenter runs them: how many at once (vCenter's concurrent migration limits,
// enforced and counted) and how long each lasts (what it copies).
//
// Admission: a relocation costs each host, vMotion network and datastore it touches what vCenter charges
// ("Limits on Simultaneous Migrations", shared/reference/vmotion.md): a host has 8 (a vMotion costs 1, a
// Storage vMotion 4), a host's vMotion network 4 on 1 GbE and 8 on 10 GbE (a vMotion 1), a datastore 128
// (a vMotion 1, a Storage vMotion 16). A relocation over any budget waits with its task in state
// "queued" (cancelable) until the running ones leave room; waiting relocations are admitted in the order
// they arrived, each as soon as it fits (a later one that fits may start before an earlier one that does
// not: see sim/README.md for what is known and guessed of vCenter's order).
//
// Counting: GET /lab/concurrency reports, over every relocation task the lab has run (its start and
// completion times), the most that ran at once on each host (source or target: vCenter charges both)
// and on each datastore (read or written), all of them and the Storage vMotions among them, and how many
// relocations waited queued. Tests read it to check that a client never went over the limits.

import (
	"sort"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
)

func init() {
	controls["/lab/concurrency"] = concurrencyReport
}

// The budgets and costs (vCenter's defaults).
const (
	hostMaxCost, datastoreMaxCost               = 8, 128
	vmotionHostCost, svmotionHostCost           = 1, 4
	vmotionDatastoreCost, svmotionDatastoreCost = 1, 16
	netVmotions1GbE, netVmotions10GbE           = 4, 8
)

// resource is one budget: "host", "net" (a host's vMotion network) or "ds", and its object's name.
type resource struct{ kind, name string }

// admission holds the budgets in use and the relocations waiting for room.
type admission struct {
	mu      sync.Mutex
	used    map[resource]int
	waiting []*relocation
	queued  int            // relocations that ever waited
	nets    map[string]int // a host's vMotion budget, by host name (its NICs do not change)
}

var admit = &admission{used: map[resource]int{}, nets: map[string]int{}}

// costs is what the relocation charges each budget it touches.
func (r *relocation) costs() map[resource]int {
	need := map[resource]int{}
	storage := r.dsChange()
	for _, h := range []*simulator.HostSystem{r.srcHost, r.dstHost} {
		if _, seen := need[resource{"host", h.Name}]; seen {
			continue
		}
		if storage {
			need[resource{"host", h.Name}] = svmotionHostCost
		} else {
			need[resource{"host", h.Name}] = vmotionHostCost
		}
		if r.hostChange() {
			need[resource{"net", h.Name}] = 1
		}
	}
	for _, ds := range r.datastores() {
		if storage {
			need[resource{"ds", ds}] = svmotionDatastoreCost
		} else {
			need[resource{"ds", ds}] = vmotionDatastoreCost
		}
	}
	return need
}

func (r *relocation) datastores() []string {
	names := []string{r.homeFrom, r.homeTo}
	for _, d := range r.disks {
		names = append(names, d.from, d.to)
	}
	return distinct(names...)
}

// capacity is a budget's size; a host's vMotion network follows its fastest physical NIC (a.mu held).
func (a *admission) capacity(res resource) int {
	switch res.kind {
	case "host":
		return hostMaxCost
	case "ds":
		return datastoreMaxCost
	}
	if n, ok := a.nets[res.name]; ok {
		return n
	}
	a.nets[res.name] = netBudget(res.name)
	return a.nets[res.name]
}

func netBudget(host string) int {
	if h, ok := findEntity("HostSystem", host).(*simulator.HostSystem); ok {
		fastest := int32(0)
		simulator.Map.WithLock(h, func() {
			if h.Config != nil && h.Config.Network != nil {
				for _, p := range h.Config.Network.Pnic {
					if p.LinkSpeed != nil && p.LinkSpeed.SpeedMb > fastest {
						fastest = p.LinkSpeed.SpeedMb
					}
				}
			}
		})
		if fastest >= 10000 {
			return netVmotions10GbE
		}
	}
	return netVmotions1GbE
}

// wait blocks while the relocation does not fit (its task stays queued); false when it was cancelled
// while it waited. An admitted relocation holds its costs until release.
func (a *admission) wait(r *relocation) bool {
	r.admitted = make(chan struct{})
	a.mu.Lock()
	a.waiting = append(a.waiting, r)
	a.scan()
	if len(a.waiting) > 0 && a.waiting[len(a.waiting)-1] == r {
		a.queued++
	}
	a.mu.Unlock()
	for {
		select {
		case <-r.admitted:
			return true
		case <-time.After(20 * time.Millisecond):
		}
		if r.canceled.Load() {
			a.mu.Lock()
			defer a.mu.Unlock()
			select {
			case <-r.admitted: // admitted meanwhile: the run loop sees the cancel and releases
				return true
			default:
			}
			for i, w := range a.waiting {
				if w == r {
					a.waiting = append(a.waiting[:i:i], a.waiting[i+1:]...)
					break
				}
			}
			return false
		}
	}
}

// scan admits, in arrival order, every waiting relocation that fits now (a.mu held).
func (a *admission) scan() {
	kept := a.waiting[:0:0]
	for _, w := range a.waiting {
		need := w.costs()
		fits := true
		for res, c := range need {
			if a.used[res]+c > a.capacity(res) {
				fits = false
				break
			}
		}
		if !fits {
			kept = append(kept, w)
			continue
		}
		for res, c := range need {
			a.used[res] += c
		}
		w.holding = need
		close(w.admitted)
	}
	a.waiting = kept
}

// release frees what the relocation held (nothing if it was never admitted) and admits the waiting.
func (a *admission) release(r *relocation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.holding == nil {
		return
	}
	for res, c := range r.holding {
		a.used[res] -= c
	}
	r.holding = nil
	a.scan()
}

// duration is how long the relocation runs: a duration set through the controls, else, when the scenario
// gives transfer rates, the memory a vMotion copies (a powered-on VM's) plus the disks and home a Storage
// vMotion copies, at those rates; else the scenario's fixed migration_seconds.
func (r *relocation) duration() time.Duration {
	lab.mu.Lock()
	_, once := lab.nextSecs[r.vm.Self.Value]
	fixed := once || lab.defSecs != nil
	s := lab.scenario
	lab.mu.Unlock()
	d := lab.migrationDuration(r.vm) // also forgets a one-shot duration
	if fixed || (s.VmotionGiBPerSecond <= 0 && s.StorageGiBPerSecond <= 0) {
		return d
	}
	const gibf = float64(gib)
	memory := float64(r.vm.Config.Hardware.MemoryMB) * (1 << 20)
	secs := 0.0
	if r.hostChange() && r.poweredOn && s.VmotionGiBPerSecond > 0 {
		secs += memory / gibf / s.VmotionGiBPerSecond
	}
	if r.dsChange() && s.StorageGiBPerSecond > 0 {
		copied := 0.0
		for _, m := range r.disks {
			if m.from != m.to {
				copied += float64(diskCommitted(r.vm.Self.Value, m.disk))
			}
		}
		if r.homeFrom != r.homeTo && r.poweredOn {
			copied += memory // the swap file
		}
		secs += copied / gibf / s.StorageGiBPerSecond
	}
	if secs <= 0 {
		return d
	}
	return time.Duration(secs * float64(time.Second))
}

// relocationSpan is one relocation's time on the lab and what it occupied.
type relocationSpan struct {
	start, end        time.Time
	hosts, datastores []string
	storage           bool // disks or home copied (a Storage vMotion)
}

// concurrencyCount is the most relocations that ran at once on one host or datastore.
type concurrencyCount struct {
	Peak        int `json:"peak"`
	StoragePeak int `json:"storage_peak"`
}

func concurrencyReport(*controlRequest) (interface{}, error) {
	lab.mu.Lock()
	rels := make([]*relocation, 0, len(lab.byTask))
	for _, r := range lab.byTask {
		rels = append(rels, r)
	}
	lab.mu.Unlock()
	var spans []relocationSpan
	for _, r := range rels {
		var start, end *time.Time
		simulator.Map.WithLock(r.task, func() { start, end = r.task.Info.StartTime, r.task.Info.CompleteTime })
		if start == nil || !r.ran.Load() {
			continue // still queued, or never admitted (cancelled while queued, refused)
		}
		stop := time.Now()
		if end != nil {
			stop = *end
		}
		spans = append(spans, relocationSpan{start: *start, end: stop, storage: r.dsChange(),
			hosts: distinct(r.srcHost.Name, r.dstHost.Name), datastores: r.datastores()})
	}
	admit.mu.Lock()
	queued, waiting := admit.queued, len(admit.waiting)
	admit.mu.Unlock()
	return map[string]interface{}{
		"relocations": len(spans),
		"queued":      queued,  // relocations that waited for room at some point
		"waiting":     waiting, // waiting now
		"hosts":       peaks(spans, func(s relocationSpan) []string { return s.hosts }),
		"datastores":  peaks(spans, func(s relocationSpan) []string { return s.datastores }),
	}, nil
}

// peaks sweeps the spans in time order (an end before a start at the same instant) per name.
func peaks(spans []relocationSpan, of func(relocationSpan) []string) map[string]*concurrencyCount {
	type edge struct {
		at      time.Time
		delta   int
		storage bool
		name    string
	}
	var edges []edge
	for _, s := range spans {
		for _, name := range of(s) {
			edges = append(edges, edge{s.start, 1, s.storage, name}, edge{s.end, -1, s.storage, name})
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta
	})
	now, storage := map[string]int{}, map[string]int{}
	out := map[string]*concurrencyCount{}
	for _, e := range edges {
		if out[e.name] == nil {
			out[e.name] = &concurrencyCount{}
		}
		now[e.name] += e.delta
		if e.storage {
			storage[e.name] += e.delta
		}
		if now[e.name] > out[e.name].Peak {
			out[e.name].Peak = now[e.name]
		}
		if storage[e.name] > out[e.name].StoragePeak {
			out[e.name].StoragePeak = storage[e.name]
		}
	}
	return out
}

func distinct(names ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
