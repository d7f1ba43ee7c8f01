package main

// Test controls under /lab/ on the SOAP server's port (JSON in and out, loopback clients only):
// they let tests steer what a real vCenter would do on its own (a slow migration, a failure, a host
// dropping off) and observe the lab (requests served, a VM's placement).

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type controlRequest struct {
	VM      string   `json:"vm"`
	Host    string   `json:"host"`
	Seconds *float64 `json:"seconds"`
	Fault   string   `json:"fault"`
	Message string   `json:"message"`
	IP      string   `json:"ip"`
	Method  string   `json:"method"`
	MS      int      `json:"ms"`
}

type controlFunc func(req *controlRequest) (interface{}, error)

var controls = map[string]controlFunc{
	"/lab/requests": func(*controlRequest) (interface{}, error) {
		return map[string]int64{"requests": atomic.LoadInt64(&lab.requests),
			"reply_bytes": atomic.LoadInt64(&replyBytes), "objects_encoded_fast": atomic.LoadInt64(&encodedFast),
			"objects_encoded_stock": atomic.LoadInt64(&encodedStock)}, nil
	},
	"/lab/migration-seconds": setMigrationSeconds,
	"/lab/fault":             injectFault,
	"/lab/host/disconnect": func(r *controlRequest) (interface{}, error) {
		return setConnection(r, types.HostSystemConnectionStateDisconnected)
	},
	"/lab/host/reconnect": func(r *controlRequest) (interface{}, error) {
		return setConnection(r, types.HostSystemConnectionStateConnected)
	},
	"/lab/guest-ip":  setGuestIP,
	"/lab/delay":     setDelay,
	"/lab/placement": placement,
}

func registerControls(mux *http.ServeMux) {
	for path, f := range controls {
		f := f
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				http.Error(w, `{"error": "the lab controls answer loopback clients only"}`, http.StatusForbidden)
				return
			}
			req := &controlRequest{VM: r.URL.Query().Get("vm")}
			if r.Method == http.MethodPost {
				if err := json.NewDecoder(r.Body).Decode(req); err != nil {
					writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
					return
				}
			}
			res, err := f(req)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			if res == nil {
				res = map[string]bool{"ok": true}
			}
			writeJSON(w, http.StatusOK, res)
		})
	}
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func findVM(key string) (*simulator.VirtualMachine, error) {
	if vm, ok := findEntity("VirtualMachine", key).(*simulator.VirtualMachine); ok {
		return vm, nil
	}
	return nil, fmt.Errorf("no VM named %q", key)
}

func findHost(key string) (*simulator.HostSystem, error) {
	if h, ok := findEntity("HostSystem", key).(*simulator.HostSystem); ok {
		return h, nil
	}
	return nil, fmt.Errorf("no host named %q", key)
}

// setMigrationSeconds sets the next relocation's duration of one VM, or with no vm the default.
func setMigrationSeconds(r *controlRequest) (interface{}, error) {
	if r.Seconds == nil || *r.Seconds < 0 {
		return nil, fmt.Errorf("seconds must be given and not negative")
	}
	if r.VM == "" {
		lab.mu.Lock()
		lab.defSecs = r.Seconds
		lab.mu.Unlock()
		return nil, nil
	}
	vm, err := findVM(r.VM)
	if err != nil {
		return nil, err
	}
	lab.mu.Lock()
	lab.nextSecs[vm.Self.Value] = *r.Seconds
	lab.mu.Unlock()
	return nil, nil
}

// injectFault makes the VM's next relocation fail half-way with the named vim fault.
func injectFault(r *controlRequest) (interface{}, error) {
	vm, err := findVM(r.VM)
	if err != nil {
		return nil, err
	}
	name := r.Fault[strings.LastIndex(r.Fault, ".")+1:]
	t, ok := types.TypeFunc()(name)
	if !ok {
		return nil, fmt.Errorf("no vim fault type %q", r.Fault)
	}
	f, ok := reflect.New(t).Interface().(types.BaseMethodFault)
	if !ok {
		return nil, fmt.Errorf("%q is not a fault type", r.Fault)
	}
	msg := r.Message
	if msg == "" {
		msg = name
	}
	lab.mu.Lock()
	lab.nextFault[vm.Self.Value] = withMessage(f, "%s", msg)
	lab.mu.Unlock()
	return nil, nil
}

func setConnection(r *controlRequest, state types.HostSystemConnectionState) (interface{}, error) {
	h, err := findHost(r.Host)
	if err != nil {
		return nil, err
	}
	simulator.Map.WithLock(h, func() {
		simulator.Map.Update(h, []types.PropertyChange{{Name: "runtime.connectionState", Val: state}})
		simulator.Map.Update(h, []types.PropertyChange{{Name: "summary.runtime", Val: &h.Runtime}})
	})
	return nil, nil
}

func setGuestIP(r *controlRequest) (interface{}, error) {
	vm, err := findVM(r.VM)
	if err != nil {
		return nil, err
	}
	simulator.Map.WithLock(vm, func() {
		nets := append([]types.GuestNicInfo(nil), vm.Guest.Net...)
		if len(nets) > 0 {
			nets[0].IpAddress = []string{r.IP}
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "guest.ipAddress", Val: r.IP}, {Name: "summary.guest.ipAddress", Val: r.IP},
			{Name: "guest.net", Val: nets},
		})
	})
	return nil, nil
}

// setDelay delays every later call of a SOAP method by ms milliseconds (0 removes the delay).
func setDelay(r *controlRequest) (interface{}, error) {
	if r.Method == "" {
		return nil, fmt.Errorf("method must be given")
	}
	lab.mu.Lock()
	defer lab.mu.Unlock()
	delays := map[string]int{}
	for k, v := range lab.delay.MethodDelay {
		delays[k] = v
	}
	delays[r.Method] = r.MS
	lab.delay.MethodDelay = delays // a new map: the simulator reads the old one without a lock
	return nil, nil
}

// placement reports where a VM is, as the inventory says.
func placement(r *controlRequest) (interface{}, error) {
	vm, err := findVM(r.VM)
	if err != nil {
		return nil, err
	}
	var ds []string
	for _, ref := range vm.Datastore {
		ds = append(ds, ref.Value)
	}
	h := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	return map[string]interface{}{
		"vm": vm.Self.Value, "host": h.Name, "host_moid": h.Self.Value, "pool": vm.ResourcePool.Value,
		"datastores": ds, "vm_path_name": vm.Config.Files.VmPathName, "power_state": vm.Runtime.PowerState,
	}, nil
}
