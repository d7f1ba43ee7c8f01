"""A few fields of a property value, read the same way from pyvmomi objects or from the reply's XML.

A table needs a few fields of large values (a VM's devices, a datastore's mount list, a host's
adapters): :class:`Objects` asks them of pyvmomi objects (and the fast reader's ``Data``),
:class:`Elements` of a value left as XML (:class:`Raw`), so one piece of code reads either
(``access(value)`` gives the right one).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def to_bool(data: str) -> bool:
    """An xsd:boolean's text as pyvmomi reads it (TypeError for anything else)."""
    if data == "0" or data.lower() == "false":
        return False
    if data == "1" or data.lower() == "true":
        return True
    raise TypeError(data)


class Raw:
    """A property value left as XML: ``elem`` is its ``<val>`` element, ``access`` the :class:`Elements`
    to read it with. Iterating gives the items of an array value."""

    __slots__ = ("elem", "access")

    def __init__(self, elem: ET.Element, access: Elements):
        self.elem, self.access = elem, access

    def __iter__(self):
        return iter(self.elem)

    def __repr__(self) -> str:
        return f"<Raw {self.elem.get(XSI_TYPE)}: {len(self.elem)} items>"


class Objects:
    """A few questions about a data object, asked of pyvmomi objects (and :class:`Data`).

    :class:`Elements` answers the same questions from XML, so one piece of code can read either.
    A ``node`` may be None (a missing value): every answer is then None (``flag``: False).
    """

    @staticmethod
    def kind(node: Any) -> type | None:
        """The node's pyvmomi class."""
        return None if node is None else getattr(node, "_vmomi_type", None) or type(node)

    @staticmethod
    def get(node: Any, name: str) -> Any:
        """The data object in property ``name``."""
        return getattr(node, name, None)

    text = get  # a string property

    @staticmethod
    def int(node: Any, name: str) -> int | None:
        value = getattr(node, name, None)
        return None if value is None else int(value)

    @staticmethod
    def flag(node: Any, name: str) -> bool:
        return bool(getattr(node, name, None))

    @staticmethod
    def maybe(node: Any, name: str) -> bool | None:
        """A boolean property, None when it is unset."""
        return getattr(node, name, None)

    @staticmethod
    def texts(node: Any, name: str) -> list[str]:
        """The strings of an array-of-strings property."""
        return list(getattr(node, name, None) or ())

    @staticmethod
    def items(node: Any, name: str) -> Any:
        """The items (data objects) of an array property."""
        return getattr(node, name, None) or ()

    @staticmethod
    def moid(node: Any, name: str) -> str | None:
        """The moid of the managed object referred to by property ``name``."""
        ref = getattr(node, name, None)
        return None if ref is None else ref._moId


OBJECTS = Objects()


class Elements:
    """The questions of :class:`Objects`, answered from a data object's XML element.

    ``kind`` is the class named by the element's ``xsi:type`` (None when it names none: the declared
    type, which the caller knows).
    """

    def __init__(self, reader: Any):  # a runbook.vsphere.soapdata.Reader: its type look-up and namespace
        self._lookup = reader.lookup
        self._tags = _Tags("{%s}" % reader.ns)

    def kind(self, node: ET.Element | None) -> type | None:
        if node is None:
            return None
        xsi = node.get(XSI_TYPE)
        return self._lookup(xsi) if xsi else None

    def get(self, node: ET.Element | None, name: str) -> ET.Element | None:
        return None if node is None else node.find(self._tags[name])

    def text(self, node: ET.Element | None, name: str) -> str | None:
        return None if node is None else node.findtext(self._tags[name])

    def int(self, node: ET.Element | None, name: str) -> int | None:
        text = None if node is None else node.findtext(self._tags[name])
        return int(text) if text else None

    def flag(self, node: ET.Element | None, name: str) -> bool:
        text = None if node is None else node.findtext(self._tags[name])
        return bool(text) and to_bool(text)

    def maybe(self, node: ET.Element | None, name: str) -> bool | None:
        text = None if node is None else node.findtext(self._tags[name])
        return None if text is None else to_bool(text)

    def texts(self, node: ET.Element | None, name: str) -> list[str]:
        return [] if node is None else [e.text or "" for e in node.iterfind(self._tags[name])]

    def items(self, node: ET.Element | None, name: str) -> Any:
        return () if node is None else node.iterfind(self._tags[name])

    def moid(self, node: ET.Element | None, name: str) -> str | None:
        return None if node is None else node.findtext(self._tags[name])


def access(value: Any) -> tuple[Objects | Elements, Any]:
    """(how to read it, the node) of a record value: :class:`Raw` XML or objects (pyvmomi's or :class:`Data`).
    The node of a Raw array is its ``<val>`` element: iterate it for the items."""
    return (value.access, value.elem) if isinstance(value, Raw) else (OBJECTS, value)


def moids(value: Any) -> list[str]:
    """The moids of an array of managed-object references, left :class:`Raw` or read as pyvmomi objects."""
    if isinstance(value, Raw):
        return [e.text or "" for e in value.elem]
    return [ref._moId for ref in value or ()]


class _Tags(dict):
    """Property name -> the tag the parser gives its element (``{urn:vim25}name``)."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def __missing__(self, name: str) -> str:
        tag = self[name] = self.prefix + name
        return tag
