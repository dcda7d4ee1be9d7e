"""Hand-rolled inline SVG charts (no JavaScript, no chart library): a sparkline and a multi-series line chart."""

from __future__ import annotations

from html import escape
from typing import Sequence

COLOURS = {"ndcg@10": "#1f5fbf", "recall@10": "#b3471d", "coverage@10": "#2e7d32"}


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


def line_chart(labels: Sequence[str], series: dict[str, Sequence[float | None]], width: int = 640, height: int = 240) -> str:
    """An SVG chart of each series over `labels` (x: one point per label); every point carries its data."""
    pad_left, pad_bottom, pad_top = 44, 24, 10
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
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
        parts.append(f'<line x1="{pad_left}" x2="{width - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{pad_left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.2f}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="middle" font-size="10">{escape(label[:15])}</text>')
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
