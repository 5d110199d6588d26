"""The ESMM experiment's HTML page, from the experiment's JSON (a benchmark's
result, so it is rendered here and not by the product's run report).

`python -m benchmarks.esmm_experiment --out FILE` writes the result of training
ESMM and a naive CVR model (clicked rows only) on the simulator and scoring
pCVR on every test impression against the truth;
`python -m benchmarks.esmm_report FILE --out page.html` renders it: a table (mean ± std over the seeds, the x-only oracles, the
truth) and an inline SVG point chart with one-std error bars and the ESMM
paper's Ali-CCP figures for reference.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

SECTION_ID = "esmm"
SECTION_TITLE = "ESMM experiment"
MODELS = ("naive", "esmm")
MODEL_LABELS = {"naive": "naive CVR (clicked rows)", "esmm": "ESMM"}
MODEL_COLORS = {"naive": "#7f7f7f", "esmm": "#1f77b4"}
# (result key, label): the entire-space metrics the chart shows.
CHART_METRICS = (
  ("entire_space_auc", "entire-space AUC (sampled outcomes)"),
  ("entire_space_expected_auc", "entire-space AUC (expected)"),
  ("clicked_auc", "AUC on clicked rows"),
)
TABLE_METRICS = CHART_METRICS + (
  ("entire_space_spearman", "Spearman with the true p_conv_given_click"),
  ("mean_prediction", "mean pCVR over all impressions"),
)
ORACLES = (
  ("x_only_click_space", "x-only P(conv | click, x)"),
  ("x_only_entire_space", "x-only E_z p_conv(x, z)"),
  ("truth", "truth"),
)
REQUIRED = (
  "seeds",
  "summary",
  "truth",
  "oracles",
  "intent_strength",
  "train_rows",
  "train_clicks",
  "train_conversions",
  "test_rows",
)


def _esc(value: object) -> str:
  return html.escape(str(value), quote=True)


def load_results(path: Path) -> Dict[str, Any]:
  """The experiment's JSON; a missing field is named with the file."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(
      f"--esmm-results: {path} does not exist (write it with "
      "`python -m benchmarks.esmm_experiment --out FILE`)"
    )
  try:
    result = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not JSON ({e})") from None
  missing = [key for key in REQUIRED if key not in result]
  for model in MODELS:
    if model not in result.get("summary", {}):
      missing.append(f"summary.{model}")
      continue
    missing += [
      f"summary.{model}.{key}" for key, _ in TABLE_METRICS if key not in result["summary"][model]
    ]
  if missing:
    raise ValueError(f"{path}: not an ESMM experiment result, missing {', '.join(missing)}")
  return result


def _mean_std(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
  return f"{summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}"


def results_table(result: Mapping[str, Any]) -> str:
  summary = result["summary"]
  references = [
    result["truth"] if name == "truth" else result["oracles"][name] for name, _ in ORACLES
  ]
  head = (
    "<tr><th>metric</th>"
    + "".join(f"<th>{_esc(MODEL_LABELS[m])}</th>" for m in MODELS)
    + "<th>ESMM − naive</th>"
    + "".join(f"<th>{_esc(label)}</th>" for _, label in ORACLES)
    + "</tr>"
  )
  rows = []
  for key, label in TABLE_METRICS:
    gap = summary["esmm"][key]["mean"] - summary["naive"][key]["mean"]
    rows.append(
      f"<tr><th>{_esc(label)}</th>"
      + "".join(f"<td>{_mean_std(summary[m], key)}</td>" for m in MODELS)
      + f"<td>{gap:+.4f}</td>"
      + "".join(f"<td>{r[key]:.4f}</td>" if key in r else "<td>-</td>" for r in references)
      + "</tr>"
    )
  return (
    f'<div class="scroll"><table class="metrics esmm"><thead>{head}</thead>'
    f"<tbody>{''.join(rows)}</tbody></table></div>"
  )


def point_chart(result: Mapping[str, Any], width: int = 640) -> str:
  """One row per metric: each model's mean with a one-std bar, the x-only
  ceiling as a hollow mark; the paper's Ali-CCP AUCs as dashed lines."""
  summary = result["summary"]
  paper = result.get("paper_ali_ccp_cvr_auc", {})
  ceiling = result["oracles"]["x_only_click_space"]
  values: List[float] = [
    v
    for m in MODELS
    for key, _ in CHART_METRICS
    for v in (
      summary[m][key]["mean"] - summary[m][key]["std"],
      summary[m][key]["mean"] + summary[m][key]["std"],
    )
  ]
  values += [ceiling[key] for key, _ in CHART_METRICS] + list(paper.values())
  low, high = min(values) - 0.01, max(values) + 0.01
  left, right, row_h, top = 230, 20, 46, 30
  height = top + row_h * len(CHART_METRICS) + 40
  x = lambda v: left + (width - left - right) * (v - low) / (high - low)
  parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" class="chart esmm-points" '
    f'width="{width}" height="{height}" role="img">'
  ]
  for tick in range(6):
    value = low + (high - low) * tick / 5
    parts.append(
      f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top - 8}" '
      f'y2="{height - 34}" stroke="#eee"/><text class="tick" x="{x(value):.1f}" '
      f'y="{height - 20}" text-anchor="middle">{value:.3f}</text>'
    )
  for name, value in paper.items():
    parts.append(
      f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top - 8}" '
      f'y2="{height - 34}" stroke="{MODEL_COLORS.get(name, "#999")}" '
      f'stroke-dasharray="4 3"><title>ESMM paper, Ali-CCP, {_esc(name)}: '
      f"{value:.4f}</title></line>"
    )
  for row, (key, label) in enumerate(CHART_METRICS):
    y0 = top + row * row_h
    parts.append(f'<text x="{left - 8}" y="{y0 + 18}" text-anchor="end">{_esc(label)}</text>')
    for offset, model in enumerate(MODELS):
      mean, std = summary[model][key]["mean"], summary[model][key]["std"]
      y = y0 + 10 + 14 * offset
      color = MODEL_COLORS[model]
      parts.append(
        f'<line x1="{x(mean - std):.1f}" x2="{x(mean + std):.1f}" y1="{y}" '
        f'y2="{y}" stroke="{color}" stroke-width="2"/><circle cx="{x(mean):.1f}" '
        f'cy="{y}" r="4.5" fill="{color}"><title>{_esc(MODEL_LABELS[model])}: '
        f"{mean:.4f} ± {std:.4f}</title></circle>"
      )
    parts.append(
      f'<circle cx="{x(ceiling[key]):.1f}" cy="{y0 + 17}" r="5" fill="none" '
      f'stroke="#2ca02c" stroke-width="2"><title>x-only ceiling: '
      f"{ceiling[key]:.4f}</title></circle>"
    )
  legend: Sequence[Tuple[str, str]] = [(MODEL_LABELS[m], MODEL_COLORS[m]) for m in MODELS] + [
    ("x-only ceiling (hollow)", "#2ca02c"),
    ("paper, Ali-CCP (dashed)", "#999"),
  ]
  for i, (label, color) in enumerate(legend):
    parts.append(
      f'<rect x="{left + i * 150}" y="4" width="10" height="10" fill="{color}"/>'
      f'<text x="{left + i * 150 + 14}" y="13">{_esc(label)}</text>'
    )
  parts.append("</svg>")
  return "".join(parts)


def section_body(result: Mapping[str, Any]) -> str:
  seeds = result["seeds"]
  summary = result["summary"]
  gap = summary["esmm"]["entire_space_auc"]["mean"] - summary["naive"]["entire_space_auc"]["mean"]
  paper = result.get("paper_ali_ccp_cvr_auc", {})
  paper_text = (
    f" The ESMM paper reports {paper['esmm']:.4f} against {paper['naive']:.4f} "
    f"({paper['esmm'] - paper['naive']:+.4f}) on Ali-CCP."
    if {"esmm", "naive"} <= set(paper)
    else ""
  )
  intro = (
    f"<p>pCVR scored on all {result['test_rows']:,} test impressions, clicked or not, "
    f"against the simulator's truth (hidden intent strength "
    f"{result['intent_strength']:g}); trained on {result['train_rows']:,} impressions "
    f"({result['train_clicks']:,} clicks, {result['train_conversions']:,} conversions), "
    f"{len(seeds)} seeds ({', '.join(map(str, seeds))}). Entire-space AUC, "
    f"ESMM − naive: <b>{gap:+.4f}</b>.{_esc(paper_text)}</p>"
  )
  return intro + results_table(result) + f"<figure>{point_chart(result)}</figure>"


def render_section(result: Mapping[str, Any]) -> str:
  return (
    f'<section id="{SECTION_ID}"><h2>{_esc(SECTION_TITLE)}</h2>{section_body(result)}</section>'
  )


def render_page(result: Mapping[str, Any]) -> str:
  """A standalone page (the run report's style) holding the section."""
  from pipeline.report.page import STYLE

  return (
    f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    f"<title>{_esc(SECTION_TITLE)}</title><style>{STYLE}</style></head><body>"
    f"<h1>{_esc(SECTION_TITLE)}</h1>{render_section(result)}</body></html>"
  )


def main(argv: Sequence[str] | None = None) -> int:
  import argparse
  import sys

  parser = argparse.ArgumentParser(prog="python -m benchmarks.esmm_report", description=__doc__)
  parser.add_argument("results", help="the JSON file of benchmarks.esmm_experiment --out")
  parser.add_argument("--out", required=True, help="the HTML file to write")
  args = parser.parse_args(argv)
  try:
    page = render_page(load_results(Path(args.results)))
  except (FileNotFoundError, ValueError) as error:
    print(f"esmm_report: {error}", file=sys.stderr)
    return 1
  Path(args.out).write_text(page, encoding="utf-8")
  print(f"ESMM page: {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
