"""Charts people would rather look at than read. Return matplotlib figures; never call show()."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def vms_per_host(hosts: pd.DataFrame) -> Figure:
    """Bar chart of VM count per host, hosts that cannot take a VM marked."""
    data = hosts.sort_values("name")
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(data))))
    colors = ["#2f5d8a" if (c == "connected" and not m) else "#b3261e"
              for c, m in zip(data["connection_state"], data["maintenance"])]
    ax.barh(data["name"], data["vm_count"], color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("VMs")
    ax.set_title("VMs per host (red: disconnected or in maintenance mode)")
    for y, v in enumerate(data["vm_count"]):
        ax.text(v, y, f" {v}", va="center")
    fig.tight_layout()
    return fig


def datastore_capacity(datastores: pd.DataFrame) -> Figure:
    """Used and free space per datastore (GiB), with the number of hosts that mount each."""
    data = datastores.sort_values("name")
    used = (data["capacity_bytes"] - data["free_bytes"]) / 2**30
    free = data["free_bytes"] / 2**30
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.4 * len(data))))
    ax.barh(data["name"], used, color="#9a6700", label="used")
    ax.barh(data["name"], free, left=used, color="#7fb27f", label="free")
    ax.invert_yaxis()
    ax.set_xlabel("GiB")
    ax.set_title("Datastore capacity (label: hosts mounting it, free %)")
    for y, (u, f, n, cap) in enumerate(zip(used, free, data["host_count"], data["capacity_bytes"])):
        pct = 100 * f / (cap / 2**30) if cap else 0
        ax.text(u + f, y, f" {n} host{'s' if n != 1 else ''}, {pct:.0f}% free", va="center")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
