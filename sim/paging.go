package main

// Paged PropertyCollector results, as vCenter gives them. RetrievePropertiesEx with
// options.maxObjects answers at most that many objects and, when more remain, a token;
// ContinueRetrievePropertiesEx(token) answers the next page (the last one without a token);
// CancelRetrievePropertiesEx(token) drops what is left. The stock simulator ignores maxObjects and
// knows neither method.
//
// The objects are selected once, at the first call (the filter's traversal, no properties; the lab's
// selectObjects for a logged-in session, else the stock collector); each
// page's properties are collected and encoded when that page is asked for. A client that asks for
// the next page as soon as it has a page's token (the token comes before the objects in the reply)
// has the lab build that page while it reads the one it has, as a vCenter would.
//
// Where vCenter may differ (say so in sim/README.md): vCenter may answer fewer objects than
// maxObjects and chooses a page size itself when maxObjects is unset; the lab answers exactly
// maxObjects per page, and everything in one reply when it is unset. An object deleted between
// pages is left out of its page. A token is good for its session only; tokens of results left
// unfinished for pageTTL are forgotten.

import (
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const pageTTL = 10 * time.Minute

// pagedResult is what is left of one paged result.
type pagedResult struct {
	collector types.ManagedObjectReference
	session   string
	props     []types.PropertySpec
	refs      []types.ManagedObjectReference
	size      int
	sizeHint  int // bytes of the last page, to size the next one's buffer
	used      time.Time
}

var paged = struct {
	sync.Mutex
	results map[string]*pagedResult
	next    int
}{results: map[string]*pagedResult{}}

// pagingCollector stands in for a PropertyCollector while RetrievePropertiesEx and the paging calls
// run. It takes no lock of its own (as the stock collector), so calls run side by side.
type pagingCollector struct {
	Self   types.ManagedObjectReference
	target types.ManagedObjectReference
}

func (p *pagingCollector) Reference() types.ManagedObjectReference { return p.Self }
func (p *pagingCollector) Lock()                                   {}
func (p *pagingCollector) Unlock()                                 {}

func (p *pagingCollector) collector() *simulator.PropertyCollector {
	pc, _ := simulator.Map.Get(p.target).(*simulator.PropertyCollector)
	return pc
}

func sessionKey(ctx *simulator.Context) string {
	if ctx.Session == nil {
		return ""
	}
	return ctx.Session.Key
}

func (p *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, req *types.RetrievePropertiesEx) soap.HasFault {
	pc := p.collector()
	if pc == nil {
		f := notFound(p.target)
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault(messageOf(f), f)}
	}
	size := int(req.Options.MaxObjects)
	if size <= 0 {
		return pc.RetrievePropertiesEx(ctx, req)
	}
	// Select the objects: the same filter, each property spec without paths.
	sel := *req
	sel.SpecSet = make([]types.PropertyFilterSpec, len(req.SpecSet))
	var props []types.PropertySpec
	for i, spec := range req.SpecSet {
		sel.SpecSet[i] = spec
		sel.SpecSet[i].PropSet = nil
		for _, ps := range spec.PropSet {
			sel.SpecSet[i].PropSet = append(sel.SpecSet[i].PropSet, types.PropertySpec{Type: ps.Type})
			props = append(props, ps)
		}
	}
	var refs []types.ManagedObjectReference
	if ctx.Session != nil { // the lab selects (collect.go)
		var fault types.BaseMethodFault
		if refs, fault = selectObjects(ctx, req); fault != nil {
			msg := "" // as the stock collector answers
			if _, ok := fault.(*types.ManagedObjectNotFound); ok {
				msg = "The object has already been deleted or has not been completely created"
			}
			return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault(msg, fault)}
		}
	} else {
		res := pc.RetrievePropertiesEx(ctx, &sel)
		body, ok := res.(*methods.RetrievePropertiesExBody)
		if !ok || body.Fault_ != nil || body.Res == nil || body.Res.Returnval == nil {
			return res
		}
		for _, o := range body.Res.Returnval.Objects {
			refs = append(refs, o.Obj)
		}
	}
	left := &pagedResult{collector: p.target, session: sessionKey(ctx), props: props, refs: refs, size: size}
	page, fault := left.page(ctx, pc)
	if fault != nil {
		return &methods.RetrievePropertiesExBody{Fault_: simulator.Fault("", fault)}
	}
	return &rawRetrieveBody{Res: &RetrievePropertiesExResponse{Raw: page}}
}

func (p *pagingCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, req *types.ContinueRetrievePropertiesEx) soap.HasFault {
	left, fault := takeToken(ctx, req.Token)
	pc := p.collector()
	if fault == nil && pc == nil {
		fault = notFound(p.target)
	}
	if fault != nil {
		return &methods.ContinueRetrievePropertiesExBody{Fault_: simulator.Fault(messageOf(fault), fault)}
	}
	page, fault := left.page(ctx, pc)
	if fault != nil {
		return &methods.ContinueRetrievePropertiesExBody{Fault_: simulator.Fault("", fault)}
	}
	return &rawContinueBody{Res: &ContinueRetrievePropertiesExResponse{Raw: page}}
}

func (p *pagingCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, req *types.CancelRetrievePropertiesEx) soap.HasFault {
	if _, fault := takeToken(ctx, req.Token); fault != nil {
		return &methods.CancelRetrievePropertiesExBody{Fault_: simulator.Fault(messageOf(fault), fault)}
	}
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}

// takeToken removes and returns the result a token stands for (InvalidArgument for an unknown one,
// or one of another session).
func takeToken(ctx *simulator.Context, token string) (*pagedResult, types.BaseMethodFault) {
	paged.Lock()
	defer paged.Unlock()
	left := paged.results[token]
	if left == nil || left.session != sessionKey(ctx) {
		return nil, withMessage(&types.InvalidArgument{InvalidProperty: "token"},
			"A specified parameter was not correct: token")
	}
	delete(paged.results, token)
	return left, nil
}

// A page's reply, encoded by the lab (fastxml.go): the simulator writes the bytes of Raw (the marker
// of the page, splice.go) as the content of the response element named after the type
// (<RetrievePropertiesExResponse xmlns="urn:vim25">...</RetrievePropertiesExResponse>), as it does
// for its own response types.
type RetrievePropertiesExResponse struct {
	Raw []byte `xml:",innerxml"`
}

type ContinueRetrievePropertiesExResponse struct {
	Raw []byte `xml:",innerxml"`
}

type rawRetrieveBody struct {
	Res *RetrievePropertiesExResponse
}

func (b *rawRetrieveBody) Fault() *soap.Fault { return nil }

type rawContinueBody struct {
	Res *ContinueRetrievePropertiesExResponse
}

func (b *rawContinueBody) Fault() *soap.Fault { return nil }

// page collects the next page's properties and encodes them as a <returnval> element, held for the
// reply's writer (splice.go; the marker is returned); what is left after it is kept under a new token.
func (r *pagedResult) page(ctx *simulator.Context, pc *simulator.PropertyCollector) ([]byte, types.BaseMethodFault) {
	n := r.size
	if n > len(r.refs) {
		n = len(r.refs)
	}
	refs := r.refs[:n]
	r.refs = r.refs[n:]
	own := ctx.Session != nil // the lab collects (collect.go) unless a spec asks for all properties
	for _, p := range r.props {
		own = own && !isTrue(p.All)
	}
	var stock *types.RetrieveResult
	if !own && n > 0 {
		var fault types.BaseMethodFault
		if stock, fault = r.stockCollect(ctx, pc, refs); fault != nil {
			return nil, fault
		}
	}
	token := r.keep()
	buf := newPageBuffer(r.sizeHint)
	b := append(*buf, "<returnval>"...)
	if token != "" {
		b = append(b, "<token>"...)
		b = appendEscaped(b, token)
		b = append(b, "</token>"...)
	}
	var err error
	if own {
		b, err = appendPageObjects(ctx, b, refs, r.props)
	} else if stock != nil {
		b, err = appendObjects(b, stock.Objects)
	}
	if err != nil {
		pageBuffers.Put(buf)
		return nil, &types.SystemError{Reason: "encoding a page failed: " + err.Error()}
	}
	b = append(b, "</returnval>"...)
	r.sizeHint = len(b) + len(b)/8
	*buf = b
	return holdPage(buf), nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// stockCollect collects the page's objects with the simulator's collector.
func (r *pagedResult) stockCollect(ctx *simulator.Context, pc *simulator.PropertyCollector, refs []types.ManagedObjectReference) (*types.RetrieveResult, types.BaseMethodFault) {
	spec := types.PropertyFilterSpec{PropSet: r.props, ReportMissingObjectsInResults: types.NewBool(true)}
	for _, ref := range refs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: ref, Skip: types.NewBool(false)})
	}
	res := pc.RetrievePropertiesEx(ctx, &types.RetrievePropertiesEx{This: r.collector,
		SpecSet: []types.PropertyFilterSpec{spec}})
	body, _ := res.(*methods.RetrievePropertiesExBody)
	if body == nil || body.Fault_ != nil {
		return nil, &types.SystemError{Reason: "collecting a page failed"}
	}
	if body.Res == nil || body.Res.Returnval == nil {
		return &types.RetrieveResult{}, nil
	}
	return body.Res.Returnval, nil
}

// keep keeps what is left under a new token (returned; none when nothing is left).
func (r *pagedResult) keep() string {
	if len(r.refs) == 0 {
		return ""
	}
	paged.Lock()
	defer paged.Unlock()
	now := time.Now()
	for token, old := range paged.results {
		if now.Sub(old.used) > pageTTL {
			delete(paged.results, token)
		}
	}
	paged.next++
	token := fmt.Sprintf("lab-page-%d", paged.next)
	r.used = now
	paged.results[token] = r
	return token
}
