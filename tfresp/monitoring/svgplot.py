"""Small line charts as self-contained SVG ``data:`` URIs for ``monitor.html`` (no matplotlib).

The monitor's plots are per-window lines (a few series, a CI band, a threshold line). Drawing them here keeps
matplotlib (about a second of CPU to import and render on a 2-core machine, ~10% of a 160k-row ``tfresp monitor``
call) out of the monitor. Missing values (``None``/NaN) break a line.
"""
from __future__ import annotations

import base64
import math
from html import escape
from typing import List, Optional, Sequence, Tuple

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
W, H = 700, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 40


def _ok(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def line_chart(x: Sequence[float], series: Sequence[Tuple[str, Sequence[Optional[float]], str]],
               band: Optional[Tuple[str, Sequence, Sequence]] = None, hline: Optional[Tuple[str, float]] = None,
               xlabel: str = "window") -> str:
    """``data:image/svg+xml;base64,...`` of a line chart.

    Args:
        x: x values.
        series: ``(label, y values, style)``; style ``"solid"`` or ``"dashed"``.
        band: ``(label, low, high)`` shaded between the bounds.
        hline: ``(label, y)`` drawn dashed across the chart.
    """
    ys = [v for _, vals, _ in series for v in vals if _ok(v)]
    if band is not None:
        ys += [v for v in list(band[1]) + list(band[2]) if _ok(v)]
    if hline is not None and _ok(hline[1]):
        ys.append(hline[1])
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or (abs(hi) * 0.05 or 0.5)
    lo, hi = lo - pad, hi + pad
    xs = [float(v) for v in x]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(v):
        return LEFT + (v - x0) / (x1 - x0) * pw

    def py(v):
        return TOP + (hi - v) / (hi - lo) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for t in _ticks(lo, hi):
        out.append(f'<line x1="{LEFT - 4}" x2="{LEFT}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#444"/>'
                   f'<text x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in _ticks(x0, x1, 8):
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}" stroke="#444"/>'
                   f'<text x="{px(t):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 6}" text-anchor="middle">{escape(xlabel)}</text>')
    legend = []
    if band is not None:
        pts = [(px(a), py(b)) for a, b in zip(xs, band[2]) if _ok(b)] + \
            [(px(a), py(b)) for a, b in reversed(list(zip(xs, band[1]))) if _ok(b)]
        if pts:
            out.append('<polygon fill="#1f77b4" fill-opacity="0.2" stroke="none" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
            legend.append((band[0], '<rect width="14" height="8" y="-7" fill="#1f77b4" fill-opacity="0.2"/>'))
    if hline is not None and _ok(hline[1]):
        y = py(hline[1])
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b8474d" '
                   'stroke-dasharray="6 4"/>')
        legend.append((hline[0], '<line x2="14" y1="-3" y2="-3" stroke="#b8474d" stroke-dasharray="4 2"/>'))
    for k, (label, vals, style) in enumerate(series):
        color, dash = COLORS[k % len(COLORS)], ' stroke-dasharray="6 4"' if style == "dashed" else ""
        runs, cur = [], []
        for a, b in zip(xs, vals):
            if _ok(b):
                cur.append((px(a), py(b)))
            elif cur:
                runs.append(cur)
                cur = []
        runs.append(cur)
        for r in runs:
            if len(r) > 1:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="'
                           + " ".join(f"{a:.1f},{b:.1f}" for a, b in r) + '"/>')
            out.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>' for a, b in r)
        legend.append((label, f'<line x2="14" y1="-3" y2="-3" stroke="{color}" stroke-width="2"{dash}/>'))
    for k, (label, mark) in enumerate(legend):
        y = TOP + 14 + 13 * k
        out.append(f'<g transform="translate({LEFT + 8},{y})">{mark}<text x="18" y="0">{escape(label)}</text></g>')
    out.append("</svg>")
    return "data:image/svg+xml;base64," + base64.b64encode("".join(out).encode()).decode()
