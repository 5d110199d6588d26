"""The truth-based ranking metrics (`pipeline.tfma_truth_metrics`) of one
slice as rows, for the console summary and the run report: per output (the
fused `score`, then each task) and metric (NDCG@k per cutoff, pairwise
agreement), the model's value, the logged position order's, random's, the
oracle's, and the model's and position's shares of the oracle's lift over
random."""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Tuple

from contract import FUSED_SCORE_OUTPUT
from pipeline.tfma_truth_metrics import metric_names, result_name

COLUMNS = ("model", "position", "random", "oracle", "share", "position_share")


def is_truth_metric_key(name: str) -> bool:
  """Whether a metric name belongs to the truth table (kept out of the task tables)."""
  return name.startswith("truth_")


def _cutoffs(metrics: Mapping[str, Mapping[str, float]]) -> Tuple[int, ...]:
  found = {
    int(m.group(1))
    for values in metrics.values()
    for name in values
    if (m := re.fullmatch(r"truth_ndcg@(\d+)", name))
  }
  return tuple(sorted(found))


def truth_rows(metrics: Mapping[str, Mapping[str, float]]) -> List[Dict[str, object]]:
  """[{output, metric, model, position, random, oracle, share, position_share}]
  for every output of `metrics` ({output: {metric: value}}) with truth metrics
  (the NDCG cutoffs those metrics hold); a value TFMA did not compute is left
  out of its row."""
  cutoffs = _cutoffs(metrics)
  outputs = sorted(
    (o for o, values in metrics.items() if any(is_truth_metric_key(m) for m in values)),
    key=lambda o: (o != FUSED_SCORE_OUTPUT, o),
  )
  rows = []
  for output in outputs:
    values = metrics[output]
    for metric in metric_names(cutoffs):
      names = {
        "model": result_name(metric),
        "position": result_name(metric, "position"),
        "random": result_name(metric, "random"),
        "oracle": result_name(metric, "oracle"),
        "share": result_name(metric, share=True),
        "position_share": result_name(metric, "position", share=True),
      }
      row: Dict[str, object] = {"output": output, "metric": metric}
      row.update({column: values[name] for column, name in names.items() if name in values})
      if "model" in row:
        rows.append(row)
  return rows


def console_lines(metrics: Mapping[str, Mapping[str, float]]) -> List[str]:
  rows = truth_rows(metrics)
  if not rows:
    return []
  lines = [
    "  ranking against the simulator's truth, per request (overall slice; share = of the "
    "oracle's lift over random):",
    f"    {'output':<12}{'metric':<12}" + "".join(f"{c:>16}" for c in COLUMNS),
  ]
  for row in rows:
    cells = "".join(f"{row[c]:>16.4f}" if c in row else f"{'-':>16}" for c in COLUMNS)
    lines.append(f"    {row['output']:<12}{row['metric']:<12}{cells}")
  return lines
