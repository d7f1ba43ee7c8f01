package main

// Routing SOAP calls to the lab. The stock VirtualMachine already implements RelocateVM_Task (and a
// Go type cannot replace it in the object map without breaking the property collector), so an HTTP
// middleware rewrites the request's <_this> for chosen methods to a proxy object that implements
// them; sessions, locking and fault marshalling stay the simulator's. The middleware also counts
// SOAP requests and the bytes of their replies for /lab/requests.

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
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
var proxied = map[string]string{
	"RelocateVM_Task": "VirtualMachine", "CancelTask": "Task",
	"RefreshStorageInfo": "VirtualMachine", "RefreshDatastore": "Datastore",
	"RefreshDatastoreStorageInfo": "Datastore", "QueryEvents": "EventManager",
	"RetrievePropertiesEx": "PropertyCollector", "ContinueRetrievePropertiesEx": "PropertyCollector",
	"CancelRetrievePropertiesEx": "PropertyCollector", // paged results (paging.go)
}

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

// RefreshStorageInfo recomputes the VM's storage figures from the lab's model (the stock one
// re-reads the simulator's empty files and loses the vmx, nvram, log, swap and disk sizes).
func (p *labProxy) RefreshStorageInfo(req *types.RefreshStorageInfo) soap.HasFault {
	vm, ok := simulator.Map.Get(p.target).(*simulator.VirtualMachine)
	if !ok {
		f := notFound(p.target)
		return &methods.RefreshStorageInfoBody{Fault_: simulator.Fault(messageOf(f), f)}
	}
	simulator.Map.WithLock(vm, func() { recomputeVM(vm, true) })
	recomputeDatastores(true)
	return &methods.RefreshStorageInfoBody{Res: &types.RefreshStorageInfoResponse{}}
}

// RefreshDatastore and RefreshDatastoreStorageInfo recompute free space from the lab's model
// (the stock ones answer an empty body and take free space from the machine's disk).
func (p *labProxy) RefreshDatastore(req *types.RefreshDatastore) soap.HasFault {
	recomputeDatastores(true)
	return &methods.RefreshDatastoreBody{Res: &types.RefreshDatastoreResponse{}}
}

func (p *labProxy) RefreshDatastoreStorageInfo(req *types.RefreshDatastoreStorageInfo) soap.HasFault {
	recomputeDatastores(true)
	return &methods.RefreshDatastoreStorageInfoBody{Res: &types.RefreshDatastoreStorageInfoResponse{}}
}

// soapMiddleware counts SOAP calls and reroutes the proxied ones.
func soapMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/sdk" {
			next.ServeHTTP(w, req)
			return
		}
		atomic.AddInt64(&lab.requests, 1)
		w = &countingWriter{ResponseWriter: w}
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		method := ""
		if m := methodRe.FindSubmatch(body); m != nil {
			method = string(m[1])
		}
		if kind, ok := proxied[method]; ok {
			body = reroute(body, method, kind)
		}
		if method == "RetrievePropertiesEx" || method == "ContinueRetrievePropertiesEx" {
			w = &splicingWriter{ResponseWriter: w} // pages encoded by the lab (splice.go)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		if method == "Fetch" {
			fetch(next, w, req)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// replyBytes counts the bytes of the SOAP replies served (body only): what a client had to read.
var replyBytes int64

// countingWriter adds what it writes to replyBytes.
type countingWriter struct{ http.ResponseWriter }

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	atomic.AddInt64(&replyBytes, int64(n))
	return n, err
}

// Flush passes on to the writer underneath when it can flush (a streamed reply).
func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// emptyFetch is vCenter's answer to Fetch (pyvmomi's property read) of an unset property: no value.
const emptyFetch = `<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><FetchResponse xmlns="urn:vim25"></FetchResponse></soapenv:Body></soapenv:Envelope>`

// fetch serves a Fetch call. The stock collector indexes an empty result when the property is
// unset (a VM's snapshot, a host's networkConfig) and panics, which drops the client's
// connection; that case is answered with no value, as vCenter does. The panic happens before
// anything is written, and the simulator releases its locks with defer.
func fetch(next http.Handler, w http.ResponseWriter, req *http.Request) {
	defer func() {
		if r := recover(); r != nil {
			if err, ok := r.(error); ok && strings.Contains(err.Error(), "index out of range") {
				w.Header().Set("Content-Type", "text/xml; charset=utf-8")
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, emptyFetch)
				return
			}
			panic(r)
		}
	}()
	next.ServeHTTP(w, req)
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
		if kind == "PropertyCollector" {
			simulator.Map.Put(&pagingCollector{Self: ref, target: target})
		} else {
			simulator.Map.Put(&labProxy{Self: ref, target: target})
		}
	}
	repl := append([]byte{}, m[1]...)
	repl = append(repl, "LabProxy"...)
	repl = append(repl, m[3]...)
	repl = append(repl, ref.Value...)
	repl = append(repl, m[5]...)
	return bytes.Replace(body, m[0], repl, 1)
}
