package main

// The lab's garbage collection, tuned so that a client's reads rarely pay for it.
//
// A 45,000-VM lab holds about 700 MB of live objects (millions of small ones), and marking them costs
// 6-9 s of CPU. An inventory read leaves about 300 MB of garbage (replies encoded and dropped). With
// Go's default (a collection when the heap has doubled) one read in two or three met a collection,
// which ran on the same two cores as the client and made that read seconds slower than the others. A
// real vCenter runs on hardware of its own: its collections are never its clients' cost.
//
// So, once the inventory is built (with the default, which bounds the memory of building it), the lab
// collects once and lets its heap grow to five times its live size before the next collection
// (GOGC=400): about ten reads of a 45,000-VM lab per collection, for about 3.5 GB of memory at most. A
// small lab's heap is a few MB either way. GOGC in the lab's environment overrides this.

import (
	"os"
	"runtime"
	"runtime/debug"
)

const servingGCPercent = 400

// collectAfterBuilding is called once the inventory is built, before the lab answers.
func collectAfterBuilding() {
	runtime.GC()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(servingGCPercent)
	}
}
