"""Inline SVG charts for the report: line charts, heatmaps, bar charts. Each
returns an `<svg>` string, so the page opens from disk without a script, a
server or a network connection."""

from __future__ import annotations

import html
import math
from typing import Iterable, List, Mapping, Sequence, Tuple

Series = List[Tuple[float, float]]
PALETTE = (
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
)


_WIDTH, _HEIGHT, _MARGIN = 500, 300, 52


def _color(index: int) -> str:
  return PALETTE[index % len(PALETTE)]


def _esc(value: object) -> str:
  return html.escape(str(value), quote=True)


def _span(values: Iterable[float], pad: float = 0.05) -> Tuple[float, float]:
  values = [v for v in values if math.isfinite(v)]
  low, high = (min(values), max(values)) if values else (0.0, 1.0)
  if high == low:
    low, high = low - 0.5, high + 0.5
  extra = (high - low) * pad
  return low - extra, high + extra


def line_chart(
  series: Mapping[str, Series],
  x_label: str,
  y_label: str,
  y_range: Tuple[float, float] | None = None,
  diagonal: bool = False,
  markers: bool = False,
) -> str:
  """An SVG line chart of named (x, y) series with axes, ticks and a legend."""
  points = [p for s in series.values() for p in s]
  x_low, x_high = (0.0, 1.0) if diagonal else _span((p[0] for p in points), pad=0.0)
  y_low, y_high = y_range or _span(p[1] for p in points)
  plot_w, plot_h = _WIDTH - 2 * _MARGIN, _HEIGHT - 2 * _MARGIN

  def sx(x: float) -> float:
    return _MARGIN + (x - x_low) / (x_high - x_low) * plot_w

  def sy(y: float) -> float:
    return _HEIGHT - _MARGIN - (y - y_low) / (y_high - y_low) * plot_h

  parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{_WIDTH}" '
    f'height="{_HEIGHT + 18 * len(series)}" role="img">',
    f'<rect x="{_MARGIN}" y="{_MARGIN}" width="{plot_w}" height="{plot_h}" '
    'fill="none" stroke="#999"/>',
  ]
  for i in range(5):
    x = x_low + (x_high - x_low) * i / 4
    y = y_low + (y_high - y_low) * i / 4
    parts.append(
      f'<text x="{sx(x):.1f}" y="{_HEIGHT - _MARGIN + 14}" '
      f'text-anchor="middle" class="tick">{x:.3g}</text>'
    )
    parts.append(
      f'<text x="{_MARGIN - 4}" y="{sy(y) + 4:.1f}" text-anchor="end" class="tick">{y:.3g}</text>'
    )
  parts.append(
    f'<text x="{_WIDTH / 2}" y="{_HEIGHT - _MARGIN + 32}" '
    f'text-anchor="middle">{_esc(x_label)}</text>'
  )
  parts.append(
    f'<text x="14" y="{_HEIGHT / 2}" text-anchor="middle" '
    f'transform="rotate(-90 14 {_HEIGHT / 2})">{_esc(y_label)}</text>'
  )
  if diagonal:
    parts.append(
      f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" '
      'stroke="#bbb" stroke-dasharray="4 3"/>'
    )
  for index, (name, data) in enumerate(series.items()):
    color = _color(index)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    if markers or len(data) == 1:
      parts += [
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>' for x, y in data
      ]
    legend_y = _HEIGHT + 18 * index
    parts.append(
      f'<rect x="{_MARGIN}" y="{legend_y - 9}" width="12" height="4" '
      f'fill="{color}"/><text x="{_MARGIN + 18}" y="{legend_y}">'
      f"{_esc(name)}</text>"
    )
  parts.append("</svg>")
  return "".join(parts)


def _heat_color(value: float) -> str:
  """White (0) to dark blue (1)."""
  value = min(max(value, 0.0), 1.0)
  red, green, blue = (round(255 - value * (255 - end)) for end in (33, 102, 204))
  return f"rgb({red},{green},{blue})"


def heatmap(
  row_labels: Sequence[str], column_labels: Sequence[str], values: Sequence[Sequence[float | None]]
) -> str:
  """An SVG heatmap of values in [0, 1]; None leaves a cell blank."""
  cell_w, cell_h, left, top = 64, 28, 220, 24
  width = left + cell_w * len(column_labels) + 10
  height = top + cell_h * len(row_labels) + 10
  parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{width}" '
    f'height="{height}" role="img">'
  ]
  for j, label in enumerate(column_labels):
    parts.append(
      f'<text x="{left + cell_w * j + cell_w / 2}" y="{top - 8}" '
      f'text-anchor="middle" class="tick">{_esc(label)}</text>'
    )
  for i, label in enumerate(row_labels):
    y = top + cell_h * i
    parts.append(
      f'<text x="{left - 6}" y="{y + cell_h / 2 + 4}" text-anchor="end">{_esc(label)}</text>'
    )
    for j, value in enumerate(values[i]):
      if value is None:
        continue
      x = left + cell_w * j
      ink = "#fff" if value > 0.6 else "#000"
      parts.append(
        f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" '
        f'fill="{_heat_color(value)}" stroke="#fff"/>'
        f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" '
        f'text-anchor="middle" fill="{ink}">{value:.2f}</text>'
      )
  parts.append("</svg>")
  return "".join(parts)


def bar_chart(values: Mapping[str, float], unit: str, highlighted: Iterable[str] = ()) -> str:
  """A horizontal SVG bar chart; highlighted bars are grey (e.g. cached)."""
  highlighted = set(highlighted)
  bar_h, left, width = 20, 230, 560
  top = max(values.values(), default=0.0) or 1.0
  parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="{width}" '
    f'height="{bar_h * len(values) + 10}" role="img">'
  ]
  for i, (name, value) in enumerate(values.items()):
    y = i * bar_h + 4
    length = (width - left - 70) * value / top
    color = "#aaa" if name in highlighted else PALETTE[0]
    parts.append(
      f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{_esc(name)}</text>'
      f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar_h - 6}" '
      f'fill="{color}"/><text x="{left + length + 4:.1f}" y="{y + 13}">'
      f"{value:.1f} {_esc(unit)}</text>"
    )
  parts.append("</svg>")
  return "".join(parts)
