"""The wizard's live chart of the probes: the round trip of each ping sample, lost probes marked in red.

The engine reports the probes as :class:`~runbook.engine.events.PingSample` events (probes sent and lost
so far, the last round trip). :class:`ProbeChart` keeps them and draws a small inline SVG (no browser
library, nothing fetched), redrawn at most ``hz`` times a second however often samples come: a kernel
thread sending a widget update per probe would slow the very move it watches.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Optional

import ipywidgets as w

from runbook.engine.events import PingSample


@dataclass(frozen=True)
class Point:
    """One sample: probes sent so far, the last round trip (None: no reply yet) and probes newly lost."""

    sent: int
    rtt_ms: Optional[float]
    lost: int


class ProbeChart:
    """A small live chart of the probes, throttled to ``hz`` redraws a second."""

    def __init__(self, width: int = 420, height: int = 90, hz: float = 4.0, keep: int = 600):
        self.width, self.height, self.hz, self.keep = width, height, hz, keep
        self.widget = w.HTML()
        self.widget.add_class("rb-probe-chart")
        self.points: list[Point] = []
        self.draws = 0
        self._lost = 0
        self._drawn_at = 0.0

    def reset(self) -> None:
        self.points, self._lost, self._drawn_at = [], 0, 0.0
        self.widget.value = ""

    def add(self, sample: PingSample) -> None:
        """Keep one sample; redraw unless the last redraw was less than 1/hz s ago."""
        self.points.append(Point(sample.sent, sample.last_rtt_ms, max(0, sample.lost - self._lost)))
        self._lost = max(self._lost, sample.lost)
        del self.points[:-self.keep]
        now = time.monotonic()
        if now - self._drawn_at >= 1.0 / self.hz:
            self.draw(now)

    def draw(self, now: Optional[float] = None) -> None:
        """Redraw now (the throttle's last word: call it when the samples stop)."""
        self._drawn_at = time.monotonic() if now is None else now
        self.draws += 1
        self.widget.value = self.svg()

    def svg(self) -> str:
        """The chart as inline SVG: round trip over probes sent, a red mark where probes were lost."""
        W, H, pad = self.width, self.height, 18
        if not self.points:
            return ""
        rtts = [p.rtt_ms for p in self.points if p.rtt_ms is not None]
        top = max(rtts) * 1.25 if rtts and max(rtts) > 0 else 1.0
        first, last = self.points[0].sent, self.points[-1].sent
        span = max(1, last - first)

        def x(sent: int) -> float:
            return pad + (W - 2 * pad) * (sent - first) / span

        def y(rtt: float) -> float:
            return H - pad - (H - 2 * pad) * min(rtt, top) / top

        line = " ".join(f"{x(p.sent):.1f},{y(p.rtt_ms):.1f}" for p in self.points if p.rtt_ms is not None)
        marks = "".join(
            f'<g class="rb-lost"><title>{p.lost} lost by probe {p.sent}</title>'
            f'<line x1="{x(p.sent) - 3:.1f}" y1="{pad - 7}" x2="{x(p.sent) + 3:.1f}" y2="{pad - 1}" stroke="#b3261e" '
            f'stroke-width="2"/><line x1="{x(p.sent) - 3:.1f}" y1="{pad - 1}" x2="{x(p.sent) + 3:.1f}" '
            f'y2="{pad - 7}" stroke="#b3261e" stroke-width="2"/></g>'
            for p in self.points if p.lost)
        lost = sum(p.lost for p in self.points)
        caption = html.escape(f"round trip per sample (max {top / 1.25:.1f} ms); {last} sent, {lost} lost")
        return (f'<svg class="rb-probe-svg" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
                f'viewBox="0 0 {W} {H}" role="img" aria-label="{caption}">'
                f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fafafa" stroke="#ddd"/>'
                f'<line x1="{pad}" y1="{H - pad}" x2="{W - pad}" y2="{H - pad}" stroke="#999"/>'
                + (f'<polyline points="{line}" fill="none" stroke="#2f5d8a" stroke-width="1.5"/>' if line else "")
                + marks
                + f'<text x="{pad}" y="{H - 4}" font-size="10" fill="#555">{caption}</text></svg>')
