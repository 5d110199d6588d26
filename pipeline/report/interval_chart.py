"""The MTL - STL chart: per task and metric, one row per slice with the
difference as a dot and its paired bootstrap interval as a bar, a line at zero.

A row whose bar crosses zero is a tie (grey); otherwise it is coloured by
which model is better on that metric (green MTL, red STL). Inline SVG, like
the report's other charts (pipeline/report/plots.py).
"""

from __future__ import annotations

import html
import math
from typing import Dict, List, Sequence, Tuple

from pipeline.results import BaselineComparison

VERDICT_COLORS = {"MTL better": "#2ca02c", "STL better": "#d62728", "tie": "#7f7f7f"}
_ROW, _LABEL_W, _PLOT_W, _PAD = 18, 150, 260, 34


def _esc(value: object) -> str:
  return html.escape(str(value), quote=True)


def _extent(rows: Sequence[BaselineComparison]) -> Tuple[float, float]:
  values = [0.0]
  for c in rows:
    values += [c.delta] + [v for v in (c.delta_lower, c.delta_upper) if v is not None]
  values = [v for v in values if math.isfinite(v)]
  half = max(abs(min(values)), abs(max(values))) or 1e-6
  return -half * 1.1, half * 1.1


def delta_chart(task: str, metric: str, rows: Sequence[BaselineComparison]) -> str:
  """One `<svg>`: MTL - STL per slice of one task and metric, intervals as bars."""
  low, high = _extent(rows)
  height = _PAD + _ROW * len(rows) + 24
  width = _LABEL_W + _PLOT_W + 16

  def sx(value: float) -> float:
    return _LABEL_W + (value - low) / (high - low) * _PLOT_W

  parts: List[str] = [
    f'<svg xmlns="http://www.w3.org/2000/svg" class="delta-chart" width="{width}" '
    f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
    f'aria-label="{_esc(task)} {_esc(metric)}: MTL minus STL per slice">',
    f'<text x="4" y="16" font-size="12" font-weight="bold">{_esc(task)} &#183; '
    f"{_esc(metric)} (MTL &#8722; STL)</text>",
    f'<line x1="{sx(0):.1f}" y1="{_PAD - 8}" x2="{sx(0):.1f}" y2="{height - 20}" '
    'stroke="#333" stroke-width="1"/>',
  ]
  for i, c in enumerate(rows):
    y = _PAD + i * _ROW + _ROW / 2
    color = VERDICT_COLORS.get(c.verdict, "#1f77b4")
    parts.append(
      f'<text x="{_LABEL_W - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
      f"{_esc(c.slice)}</text>"
    )
    if c.delta_lower is not None:
      parts.append(
        f'<line class="interval" x1="{sx(c.delta_lower):.1f}" y1="{y:.1f}" '
        f'x2="{sx(c.delta_upper):.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="3"/>'
      )
    parts.append(
      f'<circle class="delta" cx="{sx(c.delta):.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
      f"<title>{_esc(c.slice)}: {c.delta:+.4f} {_esc(interval_text(c))} {_esc(c.verdict)}"
      "</title></circle>"
    )
  axis_y = height - 8
  for value in (low / 1.1, 0.0, high / 1.1):
    parts.append(
      f'<text x="{sx(value):.1f}" y="{axis_y}" font-size="10" text-anchor="middle">'
      f"{value:+.3g}</text>"
    )
  parts.append("</svg>")
  return "".join(parts)


def interval_text(c: BaselineComparison) -> str:
  if c.delta_lower is None:
    return "(no interval)"
  return f"[{c.delta_lower:+.4f}, {c.delta_upper:+.4f}]"


def charts(comparisons: Sequence[BaselineComparison]) -> str:
  """Every task and metric's chart, overall slice first, in a wrapping row."""
  groups: Dict[Tuple[str, str], List[BaselineComparison]] = {}
  for c in sorted(comparisons, key=lambda c: (c.task, c.metric, c.slice != "overall", c.slice)):
    groups.setdefault((c.task, c.metric), []).append(c)
  legend = " ".join(
    f'<span style="color:{color}">&#9679; {_esc(verdict)}</span>'
    for verdict, color in VERDICT_COLORS.items()
  )
  body = "".join(delta_chart(task, metric, rows) for (task, metric), rows in groups.items())
  return f'<p class="legend">{legend}</p><div class="delta-charts">{body}</div>'
