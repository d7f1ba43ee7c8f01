package main

// Routing SOAP calls to the lab. The stock VirtualMachine already implements RelocateVM_Task (and a
// Go type cannot replace it in the object map without breaking the property collector), so an HTTP
// middleware rewrites the request's <_this> for chosen methods to a proxy object that implements
// them; sessions, locking and fault marshalling stay the simulator's. The middleware also counts
// SOAP requests for /lab/requests.

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"sync/atomic"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var (
	methodRe = regexp.MustCompile(`<(?:[\w-]+:)?Body[^>]*>\s*<(?:[\w-]+:)?(\w+)`)
	thisRe   = regexp.MustCompile(`(<_this[^>]*type=")(\w+)("[^>]*>)([^<]+)(</_this>)`)
)

// proxied lists the methods the lab implements itself, by the type of object they are called on.
var proxied = map[string]string{"RelocateVM_Task": "VirtualMachine", "CancelTask": "Task"}

// labProxy stands in for target while one of the proxied methods runs.
type labProxy struct {
	Self   types.ManagedObjectReference
	target types.ManagedObjectReference
}

func (p *labProxy) Reference() types.ManagedObjectReference { return p.Self }

func (p *labProxy) RelocateVMTask(ctx *simulator.Context, req *types.RelocateVM_Task) soap.HasFault {
	vm, ok := simulator.Map.Get(p.target).(*simulator.VirtualMachine)
	if !ok {
		f := notFound(p.target)
		return &methods.RelocateVM_TaskBody{Fault_: simulator.Fault(messageOf(f), f)}
	}
	return startRelocation(vm, req)
}

func (p *labProxy) CancelTask(req *types.CancelTask) soap.HasFault {
	lab.mu.Lock()
	r := lab.byTask[p.target.Value]
	lab.mu.Unlock()
	if r == nil || r.task.Info.State == types.TaskInfoStateSuccess || r.task.Info.State == types.TaskInfoStateError {
		f := withMessage(&types.InvalidState{}, "The task is not running and cannot be canceled.")
		return &methods.CancelTaskBody{Fault_: simulator.Fault(messageOf(f), f)}
	}
	r.canceled.Store(true)
	simulator.Map.WithLock(r.task, func() {
		simulator.Map.Update(r.task, []types.PropertyChange{{Name: "info.cancelled", Val: true}})
	})
	return &methods.CancelTaskBody{Res: &types.CancelTaskResponse{}}
}

// soapMiddleware counts SOAP calls and reroutes the proxied ones.
func soapMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/sdk" {
			next.ServeHTTP(w, req)
			return
		}
		atomic.AddInt64(&lab.requests, 1)
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if m := methodRe.FindSubmatch(body); m != nil {
			if kind, ok := proxied[string(m[1])]; ok {
				body = reroute(body, string(m[1]), kind)
			}
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		next.ServeHTTP(w, req)
	})
}

// reroute points <_this> at the proxy for (method, target) when the target exists (a missing one
// is left to the simulator, which answers ManagedObjectNotFound).
func reroute(body []byte, method, kind string) []byte {
	m := thisRe.FindSubmatch(body)
	if m == nil || string(m[2]) != kind {
		return body
	}
	target := types.ManagedObjectReference{Type: kind, Value: string(m[4])}
	if simulator.Map.Get(target) == nil {
		return body
	}
	if method == "CancelTask" {
		lab.mu.Lock()
		_, ours := lab.byTask[target.Value]
		lab.mu.Unlock()
		if !ours {
			return body
		}
	}
	ref := types.ManagedObjectReference{Type: "LabProxy", Value: method + ":" + target.Value}
	if simulator.Map.Get(ref) == nil {
		simulator.Map.Put(&labProxy{Self: ref, target: target})
	}
	repl := append([]byte{}, m[1]...)
	repl = append(repl, "LabProxy"...)
	repl = append(repl, m[3]...)
	repl = append(repl, ref.Value...)
	repl = append(repl, m[5]...)
	return bytes.Replace(body, m[0], repl, 1)
}
