"""Small server-side SVG charts for the dashboard: stacked bars and lines, nothing loaded at run time.

Both functions return markup safe to put in a page (every label and title is escaped) and draw with
``viewBox`` so the browser scales them to the column they sit in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2e7d32", "#f9a825", "#c62828", "#1565c0", "#6a1b9a", "#00838f", "#8d6e63")

WIDTH = 640
HEIGHT = 240
LEFT = 56
RIGHT = 12
TOP = 28
BOTTOM = 44


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[int | float | Decimal]
    color: str = ""


def _nice_max(value: float) -> float:
    """The smallest 1/2/2.5/5 x 10^n at or above ``value`` so the axis ticks are round numbers."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _fmt(value: float) -> str:
    if value >= 10000:
        return f"{value / 1000:,.0f}k"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _text_width(text: str, size: float = 10) -> float:
    """Rough width of ``text`` in px: CJK characters are about twice as wide as Latin ones."""
    return sum(size if ord(c) > 0x2E80 else size * 0.62 for c in text)


def _frame(title: str, top: float, series: Sequence[Series]) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'class="bo-chart" aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold" fill="currentColor">{escape(title)}</text>',
    ]
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc" stroke-width="0.5"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="currentColor">{_fmt(value)}</text>'
        )
    # The legend sits on the title line, right-aligned, one swatch per series.
    x = WIDTH - RIGHT
    for s in reversed(series):
        x -= _text_width(s.label) + 26
        parts.append(f'<rect x="{x:.1f}" y="7" width="10" height="10" fill="{s.color}"/>')
        parts.append(
            f'<text x="{x + 14:.1f}" y="16" font-size="10" fill="currentColor">{escape(s.label)}</text>'
        )
    return parts


def _colored(series: Sequence[Series]) -> list[Series]:
    return [Series(s.label, s.values, s.color or PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]


def _category_labels(categories: Sequence[str], slot: float) -> list[str]:
    every = max(1, int(len(categories) * 38 / (WIDTH - LEFT - RIGHT)) + (1 if slot < 38 else 0))
    parts = []
    for i, label in enumerate(categories):
        if i % every:
            continue
        x = LEFT + slot * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="10" text-anchor="middle" fill="currentColor">'
            f"{escape(label)}</text>"
        )
    return parts


def bar_chart(title: str, categories: Sequence[str], series: Sequence[Series]) -> SafeString:
    """Stacked bars: one bar per category, one segment per series (each with a hover title)."""
    series = _colored(series)
    totals = [sum(float(s.values[i]) for s in series) for i in range(len(categories))]
    top = _nice_max(max(totals, default=0))
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    bar_w = slot * 0.7
    parts = _frame(title, top, series)
    for i, category in enumerate(categories):
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h
        for s in series:
            value = float(s.values[i])
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{s.color}">'
                f"<title>{escape(category)} · {escape(s.label)}: {_fmt(value)}</title></rect>"
            )
    parts += _category_labels(categories, slot)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped


def line_chart(title: str, categories: Sequence[str], series: Sequence[Series]) -> SafeString:
    """One polyline per series with a dot (and hover title) on each point."""
    series = _colored(series)
    top = _nice_max(max((float(v) for s in series for v in s.values), default=0))
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    parts = _frame(title, top, series)
    for s in series:
        points = []
        for i, value in enumerate(s.values):
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * float(value) / top
            points.append((x, y, float(value), categories[i]))
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _v, _c in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for x, y, value, category in points:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.color}">'
                f"<title>{escape(category)} · {escape(s.label)}: {_fmt(value)}</title></circle>"
            )
    parts += _category_labels(categories, slot)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308


__all__ = ["Series", "bar_chart", "line_chart"]
