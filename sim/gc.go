package main

// The lab's garbage collection, tuned so that a client's reads rarely pay for it.
//
// A 45,000-VM lab holds about 700 MB of live objects (millions of small ones), and marking them costs
// 5-9 s of CPU. An inventory read leaves about 250 MB of garbage (replies encoded and dropped). With
// Go's defaults the lab collects when its heap has doubled (one read in two or three) and at least
// every two minutes; each collection ran on the same two cores as the client and made a read seconds
// slower than the others. A real vCenter runs on hardware of its own: its collections are never its
// clients' cost.
//
// So, once the inventory is built (with the defaults, which bound the memory of building it), the lab
// collects once and from then on collects only when its memory reaches four times what is live then
// (at least 256 MB): no collection on a timer, about eight reads of a 45,000-VM lab per collection,
// for 2.7 GB of memory at most there. GOGC or GOMEMLIMIT in the lab's environment leave Go's own policy.

import (
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

const (
	servingHeapFactor = 4
	minServingLimit   = 256 << 20
	headroomCheck     = 5 * time.Second
)

// collectAfterBuilding is called once the inventory is built, before the lab answers.
func collectAfterBuilding() {
	runtime.GC()
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	limit := int64(stats.HeapAlloc) * servingHeapFactor
	if limit < minServingLimit {
		limit = minServingLimit
	}
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(-1) // collect by memory only (this also stops the collection every two minutes)
	go keepHeadroom(limit)
}

// keepHeadroom raises the limit when what stays live after a collection has grown past half of it (a lab
// whose state grows must not collect over and over): it is then four times that again.
func keepHeadroom(limit int64) {
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	cycles := stats.NumGC
	for range time.Tick(headroomCheck) {
		runtime.ReadMemStats(&stats)
		if stats.NumGC == cycles {
			continue
		}
		cycles = stats.NumGC
		if live := int64(stats.HeapAlloc); live > limit/2 { // just after a collection: mostly live
			limit = live * servingHeapFactor
			debug.SetMemoryLimit(limit)
		}
	}
}
