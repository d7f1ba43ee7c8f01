"""Reading PropertyCollector replies parsed by C ElementTree into what pyvmomi would give.

Conversion follows per-type plans built once from pyvmomi's type information:

* primitive values, enums and managed-object references become exactly what pyvmomi gives (refs are
  real pyvmomi managed objects bound to the session);
* data objects become :class:`Data` with every property of the reply already converted (absent
  properties read as in pyvmomi); :func:`vmomi_type` gives their pyvmomi class (use it instead of
  ``isinstance``);
* properties asked for ``raw`` are left as :class:`Raw` XML, read through :data:`OBJECTS` /
  :class:`Elements` (the same few questions asked of pyvmomi objects or of elements), for callers
  that only need a few fields of a large value (the VM table and ``config.hardware.device``).
"""
from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Collection
from typing import Any

from pyVmomi import SoapAdapter, VmomiSupport

from runbook.vsphere.values import OBJECTS, XSI_TYPE, Elements, Objects, Raw, access, moids, to_bool

__all__ = ["OBJECTS", "XSI_TYPE", "Data", "Elements", "Objects", "Raw", "Reader", "access", "moids", "read_result",
           "vmomi_type"]

_XSD_PREFIXES = ("xsd", "xs")


def vmomi_type(obj: Any) -> type:
    """The pyvmomi class of a value: ``Data`` objects report the class they stand for."""
    return obj._vmomi_type if isinstance(obj, Data) else type(obj)


_LEAF, _TEXT, _LIST, _MOREF, _DATA = range(5)


class Reader:
    """Per-call state: the stub, type look-ups, conversion plans and managed-object references made so far."""

    def __init__(self, stub: Any):
        self.stub = stub
        self.ns = VmomiSupport.GetWsdlNamespace(stub.version)
        self._deserializer = SoapAdapter.SoapDeserializer(stub)
        self._types: dict[str, type] = {}
        self._refs: dict[tuple[type, str], Any] = {}
        self._morefs: dict[tuple[str, str], Any] = {}
        self._props: dict[tuple[type, str], Any] = {}
        self._kinds: dict[type, tuple[int, bool]] = {}
        self._plans: dict[type, dict[str, tuple[str, type, bool, Any] | None]] = {}
        self._converters: dict[type, Any] = {}
        self._resolved: dict[type, dict[str | None, tuple[int, Any]]] = {}
        self.elements = Elements(self)

    def lookup(self, qname: str) -> type:
        """The pyvmomi class of an ``xsi:type`` or ``type`` attribute value."""
        found = self._types.get(qname)
        if found is None:
            prefix, _, name = qname.rpartition(":")
            ns = VmomiSupport.XMLNS_XSD if prefix in _XSD_PREFIXES else self.ns
            found = self._deserializer.LookupWsdlType(ns, name, allowManagedObjectReference=True)
            self._types[qname] = found
        return found

    def prop(self, cls: type, name: str) -> Any:
        key = (cls, name)
        info = self._props.get(key)
        if info is None:
            info = self._props[key] = cls._GetPropertyInfo(name)  # AttributeError like pyvmomi
        return info

    def ref(self, cls: type, moid: str) -> Any:
        key = (cls, moid)
        mo = self._refs.get(key)
        if mo is None:
            mo = self._refs[key] = cls(moid, self.stub)
        return mo

    def moref(self, elem: ET.Element) -> Any:
        """The managed object a reference element names (its ``type`` attribute and its text)."""
        key = (elem.get("type"), elem.text or "")
        mo = self._morefs.get(key)
        if mo is None:
            mo = self._morefs[key] = self.ref(self.lookup(key[0]), key[1])
        return mo

    def _kind(self, cls: type) -> tuple[int, bool]:
        if issubclass(cls, list):
            kind = _LIST
        elif issubclass(cls, VmomiSupport.ManagedObject):
            kind = _MOREF
        elif issubclass(cls, VmomiSupport.DataObject):
            kind = _DATA
        elif cls is str or cls is object:
            kind = _TEXT
        else:
            kind = _LEAF
        found = self._kinds[cls] = (kind, SoapAdapter.isDynamicType(cls))
        return found

    def item_kind(self, cls: type) -> int:
        """How an element declared as ``cls`` is read, before its xsi:type is seen (``_MOREF`` for references)."""
        return (self._kinds.get(cls) or self._kind(cls))[0]

    def converter(self, cls: type) -> Any:
        """A function of an element's text giving the value of leaf type ``cls`` (str and object: None)."""
        conv = self._converters.get(cls, _UNSET)
        if conv is _UNSET:
            if cls is str or cls is object:
                conv = None
            elif cls is bool:
                conv = to_bool
            elif cls is int or (issubclass(cls, int) and not issubclass(cls, VmomiSupport.Enum)
                                and cls is not bool) or cls is float:
                conv = cls
            else:
                conv = functools.partial(self.leaf, cls)
            self._converters[cls] = conv
        return conv

    def resolved(self, declared: type) -> dict[str | None, tuple[int, Any]]:
        """{xsi:type: (kind, class / item class / leaf converter)} of elements declared ``declared``,
        as far as met (see :meth:`value`)."""
        return self._resolved.setdefault(declared, {})

    def value(self, elem: ET.Element, declared: type) -> Any:
        """Convert one element the way pyvmomi's deserializer does."""
        xsi = elem.get(XSI_TYPE)
        by_xsi = self._resolved.get(declared)
        found = by_xsi.get(xsi) if by_xsi is not None else None
        if found is None:
            found = self._resolve(declared, xsi)
        kind, arg = found
        if kind == _DATA:
            return self.data(elem, arg)
        if kind == _TEXT:
            return elem.text or ""
        if kind == _LEAF:
            return arg(elem.text or "")
        if kind == _LIST:
            value = self.value
            return [value(child, arg) for child in elem]
        return self.moref(elem)

    def _resolve(self, declared: type, xsi: str | None) -> tuple[int, Any]:
        """How an element declared as ``declared`` with this ``xsi:type`` is read: (kind, class / item
        class / leaf converter)."""
        cls = declared
        kind, dynamic = self._kinds.get(cls) or self._kind(cls)
        if xsi and not dynamic:
            dyn = self.lookup(xsi)
            if dyn is not cls and not (kind == _LIST and issubclass(dyn, list)):
                cls = dyn
                kind = (self._kinds.get(cls) or self._kind(cls))[0]
        arg = cls.Item if kind == _LIST else self.converter(cls) if kind == _LEAF else cls
        found = self._resolved.setdefault(declared, {})[xsi] = (kind, arg)
        return found

    def data(self, elem: ET.Element, cls: type) -> Data:
        """A data object with every property present in ``elem`` converted (absent ones read as pyvmomi's)."""
        plan = self._plans.get(cls)
        if plan is None:
            plan = self._plans[cls] = {}
        obj = Data(cls, self)
        values = obj.__dict__
        for child in elem:
            tag = child.tag
            try:
                entry = plan[tag]
            except KeyError:
                entry = plan[tag] = self._entry(cls, tag)
            if entry is None:
                continue
            name, ptype, many, leaf = entry
            if leaf is not None and child.get(XSI_TYPE) is None:
                if name not in values:
                    text = child.text or ""
                    values[name] = text if leaf is True else leaf(text)
                continue
            if many:
                item = self.value(child, ptype)
                found = values.get(name)
                if found is None:
                    values[name] = [item]
                else:
                    found.append(item)
            elif name not in values:
                values[name] = self.value(child, ptype)
        return obj

    def _entry(self, cls: type, tag: str) -> tuple[str, type, bool, Any] | None:
        """How a child of a ``cls`` element is converted: (property, declared type, is a list, leaf reader)."""
        try:
            info = self.prop(cls, tag[tag.rfind("}") + 1:])
        except AttributeError:
            return None  # not a property of this type (pyvmomi's reader would not expose it either)
        many = issubclass(info.type, list)
        ptype = info.type.Item if many else info.type
        leaf = None  # how a single leaf value is read without pyvmomi types: True for plain text
        if not many and self._kind_of(ptype) in (_TEXT, _LEAF):
            leaf = self.converter(ptype) or True
        return info.name, ptype, many, leaf

    def _kind_of(self, cls: type) -> int:
        return (self._kinds.get(cls) or self._kind(cls))[0]

    def leaf(self, cls: type, data: str) -> Any:
        """A leaf value of a type :meth:`converter` has no plain function for."""
        if cls is type:
            return self.lookup(data) if data else None
        if cls is VmomiSupport.ManagedMethod or cls is VmomiSupport.binary or cls is VmomiSupport.datetime:
            return _pyvmomi_leaf(self.stub, cls, data)
        if issubclass(cls, VmomiSupport.Enum):
            return getattr(cls, data)
        return cls(data)


_UNSET = object()


def _pyvmomi_leaf(stub: Any, cls: type, data: str) -> Any:
    """Rare leaf types (dates, binary, method names): let pyvmomi's deserializer do it."""
    from xml.sax.saxutils import escape

    tag = {VmomiSupport.datetime: "xsd:dateTime", VmomiSupport.binary: "xsd:base64Binary"}.get(cls)
    if tag is None:
        return VmomiSupport.GetWsdlMethod(VmomiSupport.XMLNS_VMODL_BASE, data.rpartition(":")[2])
    doc = (f'<val xmlns="urn:vim25" xmlns:xsi="{VmomiSupport.XMLNS_XSI}" xmlns:xsd="{VmomiSupport.XMLNS_XSD}" '
           f'xsi:type="{tag}">{escape(data)}</val>')
    return SoapAdapter.Deserialize(doc, cls, stub=stub)


class Data:
    """A data object from a reply, its properties converted as the reply is read.

    Properties absent from the reply read as pyvmomi gives them (None, or an empty list for arrays);
    names that are not properties of the type raise AttributeError.
    """

    __slots__ = ("_vmomi_type", "_reader", "__dict__")

    def __init__(self, cls: type, reader: Reader):
        self._vmomi_type, self._reader = cls, reader

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        info = self._reader.prop(self._vmomi_type, name)
        value = [] if issubclass(info.type, list) else None
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"<{self._vmomi_type.__name__} (fastsoap)>"


def read_result(root: ET.Element, reader: Reader, records: dict[str, dict[str, Any]],
                raw: Collection[str] = ()) -> str | None:
    """Add the ObjectContents of one reply to ``records``; the paging token, if any.

    Values of the property paths in ``raw`` are left as :class:`Raw`.
    """
    body = next((e for e in root if e.tag.endswith("}Body")), None)
    response = body[0] if body is not None and len(body) else None
    result = response.find("{*}returnval") if response is not None else None
    if result is None:
        return None
    ns = result.tag[:result.tag.rfind("}") + 1]  # the reply's namespace, as the parser spells tags
    t_objects, t_obj, t_prop, t_name, t_val = (ns + t for t in ("objects", "obj", "propSet", "name", "val"))
    token = None
    type_names: dict[type, str] = {}
    value, moref, elements = reader.value, reader.moref, reader.elements
    top = reader.resolved(object)  # how each xsi:type of a <val> is read, filled as types are met
    ref_items: dict[type, bool] = {}  # array item class -> whether its items are references
    for part in result:
        tag = part.tag
        if tag != t_objects:
            if tag == ns + "token":
                token = part.text
            continue
        obj = None
        record: dict[str, Any] = {}
        for field in part:
            ftag = field.tag
            if ftag == t_prop:
                if len(field) == 2 and field[0].tag == t_name and field[1].tag == t_val:
                    name, val = field[0].text, field[1]  # <name/><val/>, as the schema orders them
                else:
                    name = val = None
                    for item in field:
                        itag = item.tag
                        if itag == t_name:
                            name = item.text
                        elif itag == t_val:
                            val = item
                    if name is None or val is None:
                        continue
                if name in raw:
                    record[name] = Raw(val, elements)
                    continue
                found = top.get(val.get(XSI_TYPE))
                if found is not None:  # the common cases, leaves and references, read here without a call
                    kind, arg = found
                    if kind == _LEAF:
                        record[name] = arg(val.text or "")
                        continue
                    if kind == _TEXT:
                        record[name] = val.text or ""
                        continue
                    if kind == _MOREF:
                        record[name] = moref(val)
                        continue
                    if kind == _LIST:
                        refs = ref_items.get(arg)
                        if refs is None:
                            refs = ref_items[arg] = reader.item_kind(arg) == _MOREF
                        if refs:  # an array of references: each item is one, whatever its xsi:type says
                            record[name] = [moref(item) for item in val]
                            continue
                record[name] = value(val, object)
            elif ftag == t_obj:
                obj = moref(field)
        if obj is not None:
            kind = type(obj)
            type_name = type_names.get(kind)
            if type_name is None:
                type_name = type_names[kind] = kind.__name__.split(".")[-1]
            record["_type"], record["_ref"] = type_name, obj
            records[obj._moId] = record
    return token

