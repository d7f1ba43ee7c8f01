"""Device names as an admin knows them: the label the server gives, then which device it is.

The vCenter labels a VM's devices "Hard disk 1", "Network adapter 1"; the record keeps those labels as they
are, with the device's file or key beside them. A page shows both: "Hard disk 1 (web-01.vmdk)", or
"Hard disk 1 (key 2000)" where the record holds no file. A label that already names its device is kept.
"""
from __future__ import annotations

import re
from typing import Any


def device_name(device: dict[str, Any]) -> str:
    label = str(device.get("label") or device.get("name") or "device")
    if "(" in label:
        return label
    which = device.get("device") or _file_name(device.get("file")) or (
        f"key {device['key']}" if device.get("key") not in (None, "") else None)
    return f"{label} ({which})" if which else label


def _file_name(path: Any) -> str | None:
    """``[nfs-01] web-01/web-01.vmdk`` -> ``web-01.vmdk``."""
    if not isinstance(path, str) or not path.strip():
        return None
    return re.sub(r"^\[[^\]]*\]\s*", "", path).rsplit("/", 1)[-1] or None


def device_item(item: str, placement: dict[str, Any] | None) -> str:
    """A verification row's item ("Hard disk 1 datastore") with the device's full name."""
    for side in ("before", "after"):
        where = (placement or {}).get(side) or {}
        for device in [*(where.get("disks") or []), *(where.get("nics") or [])]:
            label = str(device.get("label") or "")
            if item.startswith(label + " (") or item.startswith(device_name(device)):
                return item  # already named in full
            if label and "(" not in label and (item == label or item.startswith(label + " ")):
                return device_name(device) + item[len(label):]
    return item
