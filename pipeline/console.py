"""What the console shows of a run: one line per component as it starts and
finishes, and the run summary's tables. The runner orchestrates; this module
only formats."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Dict, List

from contract import FUSED_SCORE_OUTPUT
from pipeline import truth_table

if TYPE_CHECKING:
  from pipeline.runner import RunSummary


def _selection_lines(selection: Dict[str, Dict], split: str) -> List[str]:
  """Per Trainer: the epoch kept and, per task, its own best epoch and what
  the kept epoch gives up against it (models/selection.py)."""
  lines = []
  for node, report in sorted(selection.items()):
    kept = (
      "each task at its own best epoch"
      if report["per_task"]
      else f"kept epoch {report['kept_epoch']} of {report['epochs_run']}"
    )
    lines.append(f"  {node}: selected on {split} by {report['monitor']}; {kept}")
    lines.append(
      f"    {'task':<20}{'metric':<8}{'best epoch':>11}{'best':>10}{'kept':>10}{'given up':>10}"
    )
    for task, t in report["tasks"].items():
      kept_value = "-" if t["kept"] is None else f"{t['kept']:.4f}"
      given_up = "-" if t["given_up"] is None else f"{t['given_up']:.4f}"
      lines.append(
        f"    {task:<20}{t['metric']:<8}{t['best_epoch']:>11}{t['best']:>10.4f}"
        f"{kept_value:>10}{given_up:>10}"
      )
  return lines


def render_summary(summary: RunSummary) -> str:
  """The run summary as console lines: metrics, baseline, blessing, push, durations."""
  lines = [f"mtlrank run of spec {summary.spec!r}: {summary.wall_seconds:.0f} s"]
  if summary.training_spans:
    lines.append("  trained on spans " + ", ".join(map(str, summary.training_spans)))
    if summary.training_examples:
      lines.append(
        "    from Examples "
        + ", ".join(f"#{e['artifact_id']} (span {e['span']})" for e in summary.training_examples)
      )
  if summary.split_rows:
    lines.append(
      "  rows: "
      + " / ".join(f"{rows} {split}" for split, rows in summary.split_rows.items())
      + f"; selected on {summary.selection_split}, evaluated on {summary.evaluation_split}"
    )
  lines += _selection_lines(summary.selection, summary.selection_split)
  if summary.warm_start:
    w = summary.warm_start
    carried = ", ".join(
      f"{name} {e['carried']} carried / {e['new']} new / {e['dropped']} dropped"
      for name, e in sorted(w.get("embeddings", {}).items())
    )
    lines.append(
      f"  warm start from {w['base']}: {w['variables_carried']} variables carried, "
      f"{len(w['variables_fresh'])} fresh" + (f"; embedding rows: {carried}" if carried else "")
    )
  tasks = {t: v for t, v in summary.metrics.items() if t != FUSED_SCORE_OUTPUT}
  lines.append(
    "  eval metrics (overall slice"
    + (
      ", [95 % confidence interval]):"
      if any(k.endswith("_lower") for v in tasks.values() for k in v)
      else "):"
    )
  )
  lines += _table(tasks, SUMMARY_METRICS)
  ranking = summary.metrics.get(FUSED_SCORE_OUTPUT)
  if ranking:
    lines.append("  ranking of the fused score, per request (overall slice):")
    lines += _table(
      {FUSED_SCORE_OUTPUT: ranking},
      sorted(
        m
        for m in ranking
        if m.startswith(("ndcg@", "grouped_auc", "requests"))
        and not m.endswith(("_lower", "_upper", "_diff"))
      ),
    )
  lines += truth_table.console_lines(summary.metrics)
  if summary.single_task_baseline:
    lines.append(
      "  multi-task (MTL) against single-task (STL) baselines, overall slice, one seed;"
      " 95 % paired bootstrap interval of MTL - STL over the eval rows:"
    )
    lines.append(
      f"    {'task':<16}{'metric':<28}{'MTL':>10}{'STL':>10}{'MTL - STL':>12}  {'interval':<20}"
    )
    for row in summary.single_task_baseline:
      lines.append(
        f"    {row['task']:<16}{row['metric']:<28}{row['multi_task']:>10.4f}"
        f"{row['single_task']:>10.4f}{row['delta']:>+12.4f}  {_interval(row):<20}  {row['verdict']}"
      )
  if summary.blessed:
    lines.append("  blessed: yes")
  else:
    lines.append("  blessed: NO")
    lines += [f"    - {reason}" for reason in summary.not_blessed_reasons]
  if summary.pushed_model_dir:
    lines.append(f"  pushed: {summary.pushed_model_dir}")
  elif summary.already_pushed_version is not None:
    lines.append(
      f"  pushed: nothing new (this model is already version {summary.already_pushed_version})"
    )
  else:
    lines.append("  pushed: nothing")
  lines += _ops_lines(summary)
  lines.append("  component durations (s):")
  for name, seconds in summary.component_seconds.items():
    cached = " (cached)" if name in summary.cached_components else ""
    lines.append(f"    {name:<32}{seconds:>8.1f}{cached}")
  return "\n".join(lines)


def _ops_lines(summary: RunSummary) -> list:
  """Where Beam ran and what retention removed (pipeline/beam_portable.py,
  pipeline/retention.py)."""
  lines = []
  if summary.beam.get("mode") == "portable":
    lines.append(
      f"  beam: PortableRunner via {summary.beam['job_endpoint']}, "
      f"{len(summary.beam.get('jobs', []))} job(s)"
    )
  kept = summary.retention
  if kept and "error" in kept:
    lines.append(f"  retention: FAILED ({kept['error']}); nothing else changed")
  elif kept:
    removed = kept["removed_versions"]
    lines.append(
      "  retention: removed "
      + (f"versions {', '.join(map(str, removed))}" if removed else "no version")
      + f" (kept {', '.join(map(str, kept['kept_versions'])) or 'none'}), "
      f"{len(kept['removed_artifacts'])} artifact(s) of older runs"
    )
  return lines


SUMMARY_METRICS = (
  "auc",
  "auc_precision_recall",
  "binary_crossentropy",
  "calibration",
  "expected_calibration_error",
  "mean_squared_error",
  "mean_absolute_error",
  "example_count",
)
SHORT_NAMES = {
  "auc_precision_recall": "pr_auc",
  "binary_crossentropy": "log_loss",
  "expected_calibration_error": "ece",
  "mean_squared_error": "mse",
  "mean_absolute_error": "mae",
}


def _table(rows: Dict[str, Dict[str, float]], metrics) -> List[str]:
  """Console table of {row: {metric: value}}; an interval follows its value."""
  shown = [m for m in metrics if any(m in v for v in rows.values())]
  width = 24 if any(m + "_lower" in v for v in rows.values() for m in shown) else 14
  lines = [
    "    "
    + f"{'task':<16}"
    + "".join(f"{SHORT_NAMES.get(m, m)[: width - 2]:>{width}}" for m in shown)
  ]
  for row, values in rows.items():
    cells = []
    for m in shown:
      text = f"{values[m]:.4f}" if m in values else "-"
      if m + "_lower" in values:
        text += f" [{values[m + '_lower']:.3f},{values[m + '_upper']:.3f}]"
      cells.append(f"{text:>{width}}")
    lines.append("    " + f"{row:<16}" + "".join(cells))
  return lines


class Progress(logging.Handler):
  """Turns LocalDagRunner's component start/finish log lines into console lines."""

  _PATTERN = re.compile(r"Component (\S+) is (running|finished)\.")

  def __init__(self, stream=None):
    super().__init__(logging.INFO)
    self.started: Dict[str, float] = {}
    self.seconds: Dict[str, float] = {}
    self._stream = stream

  @property
  def stream(self):
    # Looked up when printing, so a redirected sys.stdout gets the lines.
    return self._stream or sys.stdout

  def emit(self, record: logging.LogRecord) -> None:
    match = self._PATTERN.search(record.getMessage())
    if not match:
      return
    node, state = match.groups()
    now = time.perf_counter()
    if state == "running":
      self.started[node] = now
      print(f"[mtlrank] {node} ...", file=self.stream, flush=True)
    else:
      self.seconds[node] = now - self.started.get(node, now)
      print(f"[mtlrank] {node} done in {self.seconds[node]:.1f} s", file=self.stream, flush=True)


def _interval(row: Dict[str, object]) -> str:
  """`[lower, upper]` of a comparison's difference, or `-` without one."""
  lower, upper = row.get("delta_lower"), row.get("delta_upper")
  return "-" if lower is None else f"[{lower:+.4f}, {upper:+.4f}]"
