"""Hand-rolled inline SVG charts (no JavaScript, no chart library): a sparkline and a multi-series line chart."""

from __future__ import annotations

import re
from html import escape
from typing import Sequence

COLOURS = {"ndcg@10": "#1f5fbf", "recall@10": "#b3471d", "coverage@10": "#2e7d32"}
VERSION_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})")
LABEL_WIDTH = 70  # px a "2026-12-02" label takes at font-size 10, with a gap


def sparkline(values: Sequence[float], width: int = 120, height: int = 28) -> str:
    """A small SVG polyline of `values` (oldest first); empty string for fewer than one value."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - 3 - (v - low) / span * (height - 6):.1f}" for i, v in enumerate(values))
    label = ", ".join(f"{v:.4f}" for v in values)
    dot = ""
    if len(values) == 1:  # one version: a dot in the middle (a polyline of one point draws nothing)
        dot = f'<circle cx="{width / 2:.1f}" cy="{height / 2:.1f}" r="3" fill="#1f5fbf"/>'
        points = ""
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="NDCG@10 over versions: {escape(label)}" data-values="{escape(label)}">'
        f'<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{points}"/>{dot}</svg>'
    )


def version_label(version: str) -> tuple[str, str]:
    """A version id as two short lines for an axis: its UTC date and time ("2026-12-02", "18:59:07")."""
    match = VERSION_TIME.match(version)
    if not match:
        return version[:10], version[10:18]
    y, mo, d, h, mi, sec = match.groups()
    return f"{y}-{mo}-{d}", f"{h}:{mi}:{sec}"


def line_chart(labels: Sequence[str], series: dict[str, Sequence[float | None]], width: int = 640, height: int = 250) -> str:
    """An SVG chart of each series over `labels` (version ids; x: one point per label); every point carries its data.

    Each x label is the version's date and time on two lines, centred under its point; the plot leaves room on
    both sides for half a label, and with many versions only every k-th label is written (the points keep theirs).
    """
    pad_left, pad_right, pad_bottom, pad_top = 52, 40, 36, 10
    plot_w, plot_h = width - pad_left - pad_right, height - pad_bottom - pad_top
    n = len(labels)
    values = [v for s in series.values() for v in s if v is not None]
    high = max(values + [0.0]) or 1.0
    high = min(1.0, high * 1.1) if high <= 1.0 else high * 1.1
    x = lambda i: pad_left + (plot_w * i / max(n - 1, 1) if n > 1 else plot_w / 2)  # noqa: E731
    y = lambda v: pad_top + plot_h - v / high * plot_h  # noqa: E731
    parts = [f'<svg class="chart" id="metrics-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'role="img" aria-label="held-out metrics over model versions">']
    for k in range(5):
        v = high * k / 4
        parts.append(f'<line x1="{pad_left}" x2="{width - pad_right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{pad_left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.2f}</text>')
    every = max(1, -(-n * LABEL_WIDTH // plot_w)) if n else 1  # labels ~LABEL_WIDTH px wide must not overlap
    for i, label in enumerate(labels):
        if i % every and i != n - 1:
            continue
        day, clock = version_label(label)
        parts.append(f'<text class="xlabel" x="{x(i):.1f}" y="{height - 20}" text-anchor="middle" font-size="10">'
                     f'<tspan x="{x(i):.1f}">{escape(day)}</tspan><tspan x="{x(i):.1f}" dy="12">{escape(clock)}</tspan>'
                     f'<title>{escape(label)}</title></text>')
    for name, points in series.items():
        colour = COLOURS.get(name, "#555")
        coords = [(x(i), y(v), v, labels[i]) for i, v in enumerate(points) if v is not None]
        if len(coords) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _, _ in coords) + '"/>')
        for cx, cy, v, label in coords:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}" class="point" data-series="{escape(name)}" '
                         f'data-version="{escape(label)}" data-value="{v:.6f}"><title>{escape(name)} {escape(label)}: {v:.4f}</title></circle>')
    parts.append("</svg>")
    legend = " ".join(f'<span class="legend"><span class="swatch" style="background:{COLOURS.get(n, "#555")}"></span>{escape(n)}</span>'
                      for n in series)
    return "".join(parts) + f'<div class="legend-row">{legend}</div>'
