package main

// Concurrent relocations as the lab ran them: GET /lab/concurrency counts, over every relocation task
// the lab has run (its start and completion times), the most that ran at once on each host (source or
// target: vCenter charges both) and on each datastore (read or written), all of them and the Storage
// vMotions among them. Tests read it to check that a client never went over vCenter's concurrency
// limits. The lab does not queue relocations over those limits (a vCenter would): it only counts.

import (
	"sort"
	"time"

	"github.com/vmware/govmomi/simulator"
)

func init() {
	controls["/lab/concurrency"] = concurrencyReport
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
		if start == nil {
			continue // still queued
		}
		stop := time.Now()
		if end != nil {
			stop = *end
		}
		names := []string{r.homeFrom, r.homeTo}
		for _, d := range r.disks {
			names = append(names, d.from, d.to)
		}
		spans = append(spans, relocationSpan{start: *start, end: stop, storage: r.dsChange(),
			hosts: distinct(r.srcHost.Name, r.dstHost.Name), datastores: distinct(names...)})
	}
	return map[string]interface{}{
		"relocations": len(spans),
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
