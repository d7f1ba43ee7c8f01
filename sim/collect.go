package main

// The properties of one page's objects, collected as the simulator's PropertyCollector collects them
// (simulator/property_collector.go: collect, collectFields, fieldValue, wrapValue), with the
// reflection it repeats for every object and path (FieldByName, splitting and capitalising paths)
// looked up once per type and path. Each object is collected and encoded under its lock, so a page
// shows each object as it was at one moment, as the stock collector does.
//
// Only for a logged-in session asking for property paths: `all` and session-less reads go to the
// stock collector (paging.go). tests/test_sim_replies.py compares the bytes with the stock reply.

import (
	"path"
	"reflect"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type fieldKey struct {
	t    reflect.Type
	name string
}

type fieldHit struct {
	field reflect.StructField
	ok    bool
}

var (
	fieldCache  sync.Map // fieldKey -> fieldHit (reflect.Type.FieldByName)
	pathCache   sync.Map // string -> []string (a path split at dots, each part capitalised)
	moHops      sync.Map // reflect.Type -> int (Field(0) steps to the embedded mo type)
	typeMatches sync.Map // fieldKey -> bool (whether a property spec's type applies to an object type)
)

func fieldByName(t reflect.Type, name string) (reflect.StructField, bool) {
	k := fieldKey{t, name}
	if h, ok := fieldCache.Load(k); ok {
		return h.(fieldHit).field, h.(fieldHit).ok
	}
	f, ok := t.FieldByName(name)
	fieldCache.Store(k, fieldHit{f, ok})
	return f, ok
}

func pathParts(p string) []string {
	if parts, ok := pathCache.Load(p); ok {
		return parts.([]string)
	}
	parts := strings.Split(p, ".")
	for i, name := range parts {
		if name != "" {
			parts[i] = strings.ToUpper(name[:1]) + name[1:]
		}
	}
	pathCache.Store(p, parts)
	return parts
}

// moValue is the simulator's getManagedObject: the embedded mo type of a registry object.
func moValue(obj mo.Reference) reflect.Value {
	rval := reflect.ValueOf(obj).Elem()
	if hops, ok := moHops.Load(rval.Type()); ok {
		for i := 0; i < hops.(int); i++ {
			rval = rval.Field(0)
		}
		return rval
	}
	t0, hops := rval.Type(), 0
	for path.Base(rval.Type().PkgPath()) != "mo" {
		if rval.Kind() != reflect.Struct || rval.NumField() == 0 {
			panic(obj.Reference().String() + " does not have an embedded mo type")
		}
		rval, hops = rval.Field(0), hops+1
	}
	moHops.Store(t0, hops)
	return rval
}

// pageObject is the simulator's getObject for a session.
func pageObject(ctx *simulator.Context, ref types.ManagedObjectReference) (reflect.Value, bool) {
	obj := ctx.Session.Get(ref)
	if obj == nil {
		return reflect.Value{}, false
	}
	if o, ok := obj.(interface{ Get() mo.Reference }); ok {
		obj = o.Get()
	}
	return moValue(obj), true
}

func specApplies(rtype reflect.Type, ref types.ManagedObjectReference, specType string) bool {
	if specType == ref.Type || specType == rtype.Name() {
		return true
	}
	k := fieldKey{rtype, specType}
	if m, ok := typeMatches.Load(k); ok {
		return m.(bool)
	}
	field, ok := rtype.FieldByName(specType) // e.g. ManagedEntity, ComputeResource
	m := ok && field.Anonymous
	typeMatches.Store(k, m)
	return m
}

type fieldState int

const (
	fieldSet fieldState = iota
	fieldEmpty
	fieldMissing
)

// pageFieldValue is the simulator's fieldValue with cached lookups.
func pageFieldValue(rval reflect.Value, p string) (interface{}, fieldState) {
	parts := pathParts(p)
	for i, x := range parts {
		kind := rval.Type().Kind()
		if kind == reflect.Interface {
			if rval.IsNil() {
				continue
			}
			rval = rval.Elem()
			kind = rval.Type().Kind()
		}
		if kind == reflect.Ptr {
			if rval.IsNil() {
				continue
			}
			rval = rval.Elem()
		}
		if x == "" {
			panic("an empty part in property path " + p) // where the stock collector panics too
		}
		var val reflect.Value
		var ftype reflect.StructField
		if rval.Kind() == reflect.Struct {
			f, ok := fieldByName(rval.Type(), x)
			if !ok {
				return nil, fieldMissing
			}
			val, ftype = rval.FieldByIndex(f.Index), f
		} else {
			val = rval.FieldByName(x) // panics as the stock collector does
		}
		if (val.Kind() == reflect.Ptr && val.IsNil()) || (val.Kind() == reflect.String && val.Len() == 0) {
			return nil, fieldEmpty
		}
		if i == len(parts)-1 {
			if val.Kind() == reflect.Ptr {
				val = val.Elem()
			}
			return wrapValue(val, ftype.Type), fieldSet
		}
		rval = val
	}
	return nil, fieldSet
}

// wrapValue is the simulator's: slices become the ArrayOf* types of property collector replies.
func wrapValue(rval reflect.Value, rtype reflect.Type) interface{} {
	pval := rval.Interface()
	if rval.Kind() != reflect.Slice {
		return pval
	}
	switch v := pval.(type) {
	case []string:
		return &types.ArrayOfString{String: v}
	case []uint8:
		return &types.ArrayOfByte{Byte: v}
	case []int16:
		return &types.ArrayOfShort{Short: v}
	case []int32:
		return &types.ArrayOfInt{Int: v}
	case []int64:
		return &types.ArrayOfLong{Long: v}
	}
	kind := strings.TrimPrefix(rtype.Elem().Name(), "Base")
	akind, _ := types.TypeFunc()("ArrayOf" + kind)
	a := reflect.New(akind)
	a.Elem().FieldByName(kind).Set(rval)
	return a.Interface()
}

// collectObject is the simulator's retrieveResult.collect for one object and property paths; ok is
// false when no property spec applies to the object (it is then left out, as the stock one does).
func collectObject(rval reflect.Value, ref types.ManagedObjectReference, props []types.PropertySpec) (types.ObjectContent, bool) {
	content := types.ObjectContent{Obj: ref}
	rtype := rval.Type()
	match := false
	for _, p := range props {
		if !specApplies(rtype, ref, p.Type) {
			continue
		}
		match = true
		seen := make(map[string]bool, len(content.PropSet)+len(p.PathSet))
		for i := range content.PropSet {
			seen[content.PropSet[i].Name] = true
		}
		for _, name := range p.PathSet {
			if seen[name] {
				continue
			}
			seen[name] = true
			val, state := pageFieldValue(rval, name)
			switch state {
			case fieldSet, fieldEmpty:
				content.PropSet = append(content.PropSet, types.DynamicProperty{Name: name, Val: val})
			case fieldMissing:
				content.MissingSet = append(content.MissingSet, types.MissingProperty{
					Path: name, Fault: types.LocalizedMethodFault{Fault: &types.InvalidProperty{Name: name}},
				})
			}
		}
	}
	if !match {
		return content, false
	}
	kept := content.PropSet[:0] // RetrievePropertiesEx leaves unset values out
	for _, p := range content.PropSet {
		if p.Val != nil {
			kept = append(kept, p)
		}
	}
	content.PropSet = kept
	return content, true
}

// appendPageObjects collects and encodes the page's objects, each under its lock.
func appendPageObjects(ctx *simulator.Context, b []byte, refs []types.ManagedObjectReference, props []types.PropertySpec) ([]byte, error) {
	var err error
	for _, ref := range refs {
		if err != nil {
			break
		}
		ctx.WithLock(ref, func() {
			rval, ok := pageObject(ctx, ref)
			if !ok {
				return // deleted since the first page: left out
			}
			if content, ok := collectObject(rval, ref, props); ok {
				b, err = appendObjects(b, []types.ObjectContent{content})
			}
		})
	}
	return b, err
}

// selectObjects is the first half of the simulator's collect for a logged-in session: the objects a
// filter selects (its object specs and their traversals), each once, in order, still existing and with
// a property spec that applies to it. The stock one also builds an empty result per object and looks
// a type up by reflection for every object and property spec that does not match it, which made the
// first page of a 45,000-VM read wait seconds.
func selectObjects(ctx *simulator.Context, req *types.RetrievePropertiesEx) ([]types.ManagedObjectReference, types.BaseMethodFault) {
	var refs []types.ManagedObjectReference
	specs := map[string]*types.TraversalSpec{}
	for _, spec := range req.SpecSet {
		for _, o := range spec.ObjectSet {
			var rval reflect.Value
			ok := false
			ctx.WithLock(o.Obj, func() { rval, ok = pageObject(ctx, o.Obj) })
			if !ok {
				if !isTrue(spec.ReportMissingObjectsInResults) {
					return nil, &types.ManagedObjectNotFound{Obj: o.Obj}
				}
				continue
			}
			if o.SelectSet == nil || !isTrue(o.Skip) {
				refs = append(refs, o.Obj)
			}
			if fault := traverse(ctx, specs, rval, o.SelectSet, &refs); fault != nil {
				return nil, fault
			}
		}
	}
	var props []types.PropertySpec
	for _, spec := range req.SpecSet {
		props = append(props, spec.PropSet...)
	}
	seen := map[types.ManagedObjectReference]bool{}
	selected := make([]types.ManagedObjectReference, 0, len(refs))
	for _, ref := range refs {
		if seen[ref] {
			continue
		}
		exists, applies := false, false
		ctx.WithLock(ref, func() {
			rval, ok := pageObject(ctx, ref)
			if !ok {
				return
			}
			exists = true
			for _, p := range props {
				applies = applies || specApplies(rval.Type(), ref, p.Type)
			}
		})
		seen[ref] = exists
		if applies {
			selected = append(selected, ref)
		}
	}
	return selected, nil
}

// traverse is the simulator's retrieveResult.selectSet.
func traverse(ctx *simulator.Context, specs map[string]*types.TraversalSpec, obj reflect.Value,
	set []types.BaseSelectionSpec, refs *[]types.ManagedObjectReference) types.BaseMethodFault {
	for _, ss := range set {
		if ts, ok := ss.(*types.TraversalSpec); ok && ts.Name != "" {
			specs[ts.Name] = ts
		}
	}
	for _, ss := range set {
		ts, ok := ss.(*types.TraversalSpec)
		if !ok {
			if ts = specs[ss.GetSelectionSpec().Name]; ts == nil {
				return &types.InvalidArgument{InvalidProperty: "undefined TraversalSpec name"}
			}
		}
		f, _ := pageFieldValue(obj, ts.Path)
		var found []types.ManagedObjectReference
		switch v := f.(type) {
		case types.ManagedObjectReference:
			found = []types.ManagedObjectReference{v}
		case *types.ArrayOfManagedObjectReference:
			found = v.ManagedObjectReference
		}
		for _, ref := range found {
			if !isTrue(ts.Skip) {
				*refs = append(*refs, ref)
			}
			if rval, ok := pageObject(ctx, ref); ok {
				if fault := traverse(ctx, specs, rval, ts.SelectSet, refs); fault != nil {
					return fault
				}
			}
		}
	}
	return nil
}
