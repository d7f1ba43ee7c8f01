package main

// EventManager.QueryEvents with the whole filter honoured. The stock one applies only the entity
// and event-type filters, ignores time, chain and user, and when more events match than maxCount
// returns the newest plus the oldest. Here the stock query supplies the entity/type matches (up to
// its 1000-event history) and the lab applies the rest, then keeps the newest maxCount.

import (
	"sort"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const maxEvents = 1000 // the simulator's history and vCenter's cap for one QueryEvents

func (p *labProxy) QueryEvents(ctx *simulator.Context, req *types.QueryEvents) soap.HasFault {
	spec := req.Filter
	if spec.MaxCount < 0 {
		return &methods.QueryEventsBody{Fault_: simulator.Fault("", &types.InvalidArgument{InvalidProperty: "maxCount"})}
	}
	wide := spec
	wide.Time, wide.EventChainId, wide.UserName, wide.MaxCount = nil, 0, nil, maxEvents
	m := simulator.Map.EventManager()
	var res soap.HasFault
	simulator.Map.WithLock(m, func() {
		res = m.QueryEvents(ctx, &types.QueryEvents{This: m.Self, Filter: wide})
	})
	body, ok := res.(*methods.QueryEventsBody)
	if !ok || body.Fault_ != nil {
		return res
	}
	var out []types.BaseEvent
	for _, e := range body.Res.Returnval {
		if eventWanted(e.GetEvent(), &spec) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetEvent().Key > out[j].GetEvent().Key })
	limit := int(spec.MaxCount)
	if limit == 0 || limit > maxEvents {
		limit = maxEvents
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return &methods.QueryEventsBody{Res: &types.QueryEventsResponse{Returnval: out}}
}

// eventWanted applies the time window (inclusive), the chain id and the user filter.
func eventWanted(e *types.Event, spec *types.EventFilterSpec) bool {
	if t := spec.Time; t != nil {
		if t.BeginTime != nil && e.CreatedTime.Before(*t.BeginTime) {
			return false
		}
		if t.EndTime != nil && e.CreatedTime.After(*t.EndTime) {
			return false
		}
	}
	if spec.EventChainId != 0 && e.ChainId != spec.EventChainId {
		return false
	}
	if u := spec.UserName; u != nil {
		match := u.SystemUser && e.UserName == ""
		for _, name := range u.UserList {
			match = match || name == e.UserName
		}
		if !match {
			return false
		}
	}
	return true
}
