"""The truth-based ranking metrics (`pipeline.tfma_truth_metrics`) of one
slice as rows, for the console summary and the run report: per output (the
fused `score`, then each task) and metric (NDCG@k per cutoff, pairwise
agreement), the model's value, the logged position order's, random's, the
oracle's, and the model's and position's shares of the oracle's lift over
random; after the score's rows, each of its heads against the true utility."""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Tuple

from contract import FUSED_SCORE_OUTPUT
from pipeline.ranking_truth import metric_names, result_name

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
      rows += _head_rows(values, metric, row)
  return rows


def _head_rows(
  values: Mapping[str, float], metric: str, score_row: Mapping[str, object]
) -> List[Dict[str, object]]:
  """The fused score's heads ranked against its truth (`..._by_<task>`), as
  rows `<task> vs utility` beside the score's own row."""
  prefix = result_name(metric, "by_")
  heads = sorted(
    n[len(prefix) :] for n in values if n.startswith(prefix) and not n.endswith("_share")
  )
  rows = []
  for head in heads:
    row: Dict[str, object] = {
      "output": f"{head} vs utility",
      "metric": metric,
      "model": values[result_name(metric, f"by_{head}")],
    }
    share = result_name(metric, f"by_{head}", share=True)
    if share in values:
      row["share"] = values[share]
    row.update({c: score_row[c] for c in ("position", "random", "oracle") if c in score_row})
    rows.append(row)
  return rows


def console_lines(metrics: Mapping[str, Mapping[str, float]]) -> List[str]:
  rows = truth_rows(metrics)
  if not rows:
    return []
  lines = [
    "  ranking against the simulator's truth, per request (overall slice; share = of the "
    "oracle's lift over random):",
    f"    {'output':<22}{'metric':<12}" + "".join(f"{c:>15}" for c in COLUMNS),
  ]
  for row in rows:
    cells = "".join(f"{row[c]:>15.4f}" if c in row else f"{'-':>15}" for c in COLUMNS)
    lines.append(f"    {row['output']:<22}{row['metric']:<12}{cells}")
  return lines
