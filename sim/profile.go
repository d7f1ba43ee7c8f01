package main

// Opt-in profiling of the lab itself (for finding where its CPU goes; off unless asked for):
//   - RUNBOOK_LAB_CPUPROFILE=FILE writes a Go CPU profile of the whole run to FILE (written at SIGTERM);
//   - RUNBOOK_LAB_PPROF=1 serves net/http/pprof under /debug/pprof/ on the lab's port (loopback only),
//     e.g. `go tool pprof -top 'http://127.0.0.1:PORT/debug/pprof/profile?seconds=30'` during a read.
// runbook_lab.start passes its environment on to the lab, so both work from Python too.

import (
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	rpprof "runtime/pprof"
	"sync"
)

// startProfile starts the CPU profile asked for by RUNBOOK_LAB_CPUPROFILE; the function returned stops it.
func startProfile() func() {
	path := os.Getenv("RUNBOOK_LAB_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Printf("lab vCenter: no CPU profile: %v", err)
		return func() {}
	}
	if err := rpprof.StartCPUProfile(f); err != nil {
		log.Printf("lab vCenter: no CPU profile: %v", err)
		_ = f.Close()
		return func() {}
	}
	log.Printf("lab vCenter: CPU profile to %s", path)
	var once sync.Once
	return func() {
		once.Do(func() {
			rpprof.StopCPUProfile()
			_ = f.Close()
		})
	}
}

// registerPprof serves net/http/pprof when RUNBOOK_LAB_PPROF is set.
func registerPprof(mux *http.ServeMux) {
	if os.Getenv("RUNBOOK_LAB_PPROF") == "" {
		return
	}
	runtime.SetMutexProfileFraction(5)
	loopback := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				http.Error(w, "loopback clients only", http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("/debug/pprof/", loopback(pprof.Index))
	mux.HandleFunc("/debug/pprof/profile", loopback(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", loopback(pprof.Symbol))
	log.Printf("lab vCenter: pprof under /debug/pprof/")
}
