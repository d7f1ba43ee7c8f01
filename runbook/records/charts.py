"""Charts people would rather look at than read. Return matplotlib figures; never call show().

Counts get whole-number ticks; labels beside bars stay inside the axes, and a legend sits outside the bars so
that it covers no label.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def png(fig: Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (closed afterwards if pyplot made it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    import matplotlib.pyplot as plt

    if plt.fignum_exists(getattr(fig, "number", -1)):
        plt.close(fig)
    return buf.getvalue()


def _figure(width: float, height: float) -> tuple[Figure, object]:
    """A pyplot figure (it shows in a notebook when returned) laid out so nothing overlaps."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def _flag(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


#: Bars a chart shows at most: a vCenter of 2,500 hosts gets the ones that matter, not a chart miles long.
MAX_BARS = 50


def vms_per_host(hosts: pd.DataFrame) -> Figure:
    """Bar chart of VM count per host, hosts that cannot take a VM marked. Whole-number ticks. Above
    ``MAX_BARS`` hosts, the ones with the most VMs."""
    data = hosts.sort_values("name")
    more = len(data) > MAX_BARS
    if more:
        data = data.sort_values(["vm_count", "name"], ascending=[False, True]).head(MAX_BARS)
    fig, ax = _figure(8, max(2.5, 0.35 * len(data) + 1))
    colors = ["#2f5d8a" if (str(c) == "connected" and not _flag(m)) else "#b3261e"
              for c, m in zip(data["connection_state"], data["maintenance"])]
    counts = [int(v) for v in data["vm_count"]]
    ax.barh(data["name"].astype(str), counts, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("VMs")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(counts + [1]) * 1.15 + 0.5)
    ax.set_title(f"VMs per host{f' ({MAX_BARS} of {len(hosts):,} with the most VMs)' if more else ''} "
                 f"(red: disconnected or in maintenance mode)")
    for y, v in enumerate(counts):
        ax.text(v, y, f" {v:,}", va="center")
    return fig


def datastore_capacity(datastores: pd.DataFrame) -> Figure:
    """Used and free space per datastore (GiB), with the number of hosts that mount each. Takes the
    inventory's bytes (``capacity_bytes``, ``free_bytes``) or a saved table's GiB (``capacity_gib``)."""
    data = datastores.sort_values("name")
    more = len(data) > MAX_BARS
    if more:  # the fullest ones: where room runs out
        data = data.assign(_free=data["free_bytes"] if "free_bytes" in data else data["free_gib"]) \
            .sort_values("_free").head(MAX_BARS).sort_values("name")
    if "capacity_bytes" in data:
        capacity, free = data["capacity_bytes"] / 2**30, data["free_bytes"] / 2**30
    else:
        capacity, free = data["capacity_gib"].astype(float), data["free_gib"].astype(float)
    used = capacity - free
    fig, ax = _figure(9, max(2.5, 0.4 * len(data) + 1.2))
    names = data["name"].astype(str)
    ax.barh(names, used, color="#9a6700", label="used")
    ax.barh(names, free, left=used, color="#7fb27f", label="free")
    ax.invert_yaxis()
    ax.set_xlabel("GiB")
    ax.set_title(f"Datastore capacity{f' ({MAX_BARS} of {len(datastores):,} with the least free space)' if more else ''}"
                 f" (label: hosts mounting it, free %)")
    widest = float(capacity.max()) if len(capacity) else 1.0
    ax.set_xlim(0, widest * 1.45 or 1)  # room for the labels beside the longest bar
    for y, (cap, f, n) in enumerate(zip(capacity, free, data["host_count"])):
        pct = 100 * f / cap if cap else 0
        n = int(n)
        ax.text(cap, y, f" {n} host{'s' if n != 1 else ''}, {pct:.0f}% free", va="center", fontsize=9)
    # Outside the axes, below them: a legend there covers no bar and no label.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    return fig


#: The inventory's charts, by the table each is drawn from; a run keeps each beside its record as ``<table>.png``.
INVENTORY = {"hosts": vms_per_host, "datastores": datastore_capacity}


class Png(bytes):
    """PNG bytes that a notebook shows as the image (no figure left open for the inline backend to draw again)."""

    def _repr_png_(self) -> bytes:
        return bytes(self)


def kept(table: str, df: pd.DataFrame, run_dir: Path | None = None) -> Png:
    """The inventory chart of ``table`` (a key of :data:`INVENTORY`) drawn once: written to
    ``run_dir/<table>.png``, where the report takes it instead of drawing it again, and returned to show."""
    data = Png(png(INVENTORY[table](df)))
    if run_dir is not None:
        from runbook.records.record import write_atomic

        write_atomic(Path(run_dir) / f"{table}.png", bytes(data))
    return data
