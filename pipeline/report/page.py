"""The report's HTML page: one section per view of the run (outcome, metrics
per task and slice, calibration, ranking, the single-task comparison, gates,
gradients, loss weights, losses, durations), the charts from `plots`, the data
from `readers`."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Tuple

from contract import FUSED_SCORE_OUTPUT
from models.spec import RankingSpec
from pipeline import truth_table
from pipeline.report import interval_chart
from pipeline.report.plots import Series, _esc, bar_chart, heatmap, line_chart
from pipeline.report.readers import ReportData, collect

# Metrics shown first, in this order; any other metric TFMA reports follows.
METRIC_ORDER = (
  "example_count",
  "weighted_example_count",
  "auc",
  "auc_precision_recall",
  "binary_crossentropy",
  "calibration",
  "expected_calibration_error",
  "mean_label",
  "mean_prediction",
  "mean_squared_error",
  "mean_absolute_error",
)
SECTIONS = (
  ("outcome", "Run outcome"),
  ("metrics", "Metrics per task"),
  ("slices", "Metrics per slice"),
  ("calibration", "Calibration"),
  ("ranking", "Ranking quality of the fused score"),
  ("baseline", "Multi-task against single-task baselines"),
  ("gates", "Gate weights"),
  ("gradients", "Task-gradient cosine"),
  ("loss-weights", "Loss weights"),
  ("losses", "Per-task training loss"),
  ("durations", "Component durations"),
)


def _ordered_metrics(rows: Mapping[str, Mapping[str, float]]) -> List[str]:
  """Metrics in METRIC_ORDER, then the others; the weighted example count only
  where it differs from the example count (a conditional task's weights)."""
  plain = {
    n
    for values in rows.values()
    for n in values
    if not n.endswith(("_diff", "_lower", "_upper")) and not truth_table.is_truth_metric_key(n)
  }
  if all(v.get("weighted_example_count") == v.get("example_count") for v in rows.values()):
    plain.discard("weighted_example_count")
  return [m for m in METRIC_ORDER if m in plain] + sorted(plain - set(METRIC_ORDER))


def _cell(values: Mapping[str, float], metric: str) -> str:
  if metric not in values:
    return "<td>-</td>"
  text = f"{values[metric]:.0f}" if metric.endswith("example_count") else f"{values[metric]:.4f}"
  if metric + "_lower" in values:
    text += (
      f' <span class="interval">[{values[metric + "_lower"]:.4f}, '
      f"{values[metric + '_upper']:.4f}]</span>"
    )
  diff = values.get(metric + "_diff")
  if diff is not None:
    text += f' <span class="diff">({diff:+.4f})</span>'
  return f"<td>{text}</td>"


def metrics_table(rows: Mapping[str, Mapping[str, float]], row_header: str) -> str:
  """A table of {row: {metric: value}}; a `<metric>_diff` shows beside its metric
  in parentheses, a confidence interval `<metric>_lower/_upper` in brackets."""
  metrics = _ordered_metrics(rows)
  head = "".join(f"<th>{_esc(m)}</th>" for m in metrics)
  body = "".join(
    f"<tr><th>{_esc(row)}</th>{''.join(_cell(values, m) for m in metrics)}</tr>"
    for row, values in rows.items()
  )
  return (
    f'<div class="scroll"><table class="metrics"><thead><tr><th>{_esc(row_header)}'
    f"</th>{head}</tr></thead><tbody>{body}</tbody></table></div>"
  )


def _outcome_section(data: ReportData) -> str:
  outcome = data.outcome
  verdict = (
    '<p class="verdict blessed">Blessed</p>'
    if outcome.blessed
    else '<p class="verdict not-blessed">Not blessed</p>'
  )
  failures = ""
  if outcome.not_blessed_reasons:
    failures = (
      '<h3>Failed gates</h3><ul class="failures">'
      + "".join(f"<li>{_esc(r)}</li>" for r in outcome.not_blessed_reasons)
      + "</ul>"
    )
  elif not outcome.blessed:
    failures = "<p>No evaluation was recorded for this run.</p>"
  if outcome.pushed_dir:
    pushed = f"pushed to <code>{_esc(outcome.pushed_dir)}</code>"
  elif outcome.already_pushed_version is not None:
    pushed = f"nothing new pushed (already version {outcome.already_pushed_version})"
  else:
    pushed = "nothing pushed"
  facts = (
    f"<p>Spec <b>{_esc(data.spec.name)}</b>, architecture "
    f"<b>{_esc(data.spec.model.architecture)}</b>, run <code>{_esc(outcome.run_id)}"
    f"</code>, pipeline root <code>{_esc(data.pipeline_root)}</code>; {pushed}.</p>"
  )
  return facts + verdict + failures


def _overall_section(data: ReportData) -> str:
  rows = {
    task: values
    for (task, slice_name), values in data.metrics.items()
    if slice_name == "overall" and task in data.spec.task_names
  }
  if not rows:
    return "<p>No metrics: the Evaluator did not run.</p>"
  note = (
    "<p>In parentheses: the change against the blessed baseline model.</p>"
    if any(k.endswith("_diff") for v in rows.values() for k in v)
    else "<p>No blessed baseline model: no changes to show.</p>"
  )
  if any(k.endswith("_lower") for v in rows.values() for k in v):
    note += "<p>In brackets: TFMA's 95 % confidence interval.</p>"
  else:
    note += (
      "<p>No confidence intervals (the spec's "
      "<code>evaluation.confidence_intervals</code> is off).</p>"
    )
  return note + metrics_table(rows, "task")


def _slices_section(data: ReportData) -> str:
  parts = []
  for task in data.spec.task_names:
    ordered = sorted(data.metrics.items(), key=lambda kv: (kv[0][1] != "overall", kv[0][1]))
    rows = {slice_name: values for (name, slice_name), values in ordered if name == task}
    if rows:
      parts.append(f"<h3>{_esc(task)}</h3>" + metrics_table(rows, "slice"))
  return "".join(parts) or "<p>No metrics: the Evaluator did not run.</p>"


def _calibration_section(data: ReportData) -> str:
  binary = [t.name for t in data.spec.tasks if t.is_binary]
  parts = []
  for task in binary:
    curve = data.calibration.get(task)
    if not curve:
      parts.append(f"<h3>{_esc(task)}</h3><p>No calibration plot recorded.</p>")
      continue
    series = {f"{task} (overall slice)": [(b.mean_prediction, b.mean_label) for b in curve]}
    parts.append(
      f'<figure class="calibration" data-task="{_esc(task)}">'
      f"<figcaption>{_esc(task)}: mean label vs mean prediction, "
      f"{len(curve)} bins</figcaption>"
      + line_chart(series, "mean prediction", "mean label", (0.0, 1.0), diagonal=True, markers=True)
      + "</figure>"
    )
  return "".join(parts) or "<p>The spec has no binary task.</p>"


def _ranking_section(data: ReportData) -> str:
  evaluation = data.spec.evaluation
  if evaluation.query_key is None:
    return (
      "<p>No ranking metrics: the spec declares no "
      "<code>evaluation.query_key</code> (no request to group by).</p>"
    )
  ordered = sorted(data.metrics.items(), key=lambda kv: (kv[0][1] != "overall", kv[0][1]))
  rows = {
    slice_name: values for (task, slice_name), values in ordered if task == FUSED_SCORE_OUTPUT
  }
  if not rows:
    return "<p>No ranking metrics were recorded for the fused score.</p>"
  cutoffs = ", ".join(f"NDCG@{k}" for k in evaluation.ndcg_cutoffs)
  return (
    f"<p>The fused <code>score</code> ranks the items of each request "
    f"(<code>{_esc(evaluation.query_key)}</code>) against the gain "
    f"<code>{_esc(data.spec.gain_task.label)}</code>: {cutoffs}, and the grouped AUC "
    "(mean AUC within a request, over requests with both a positive and a "
    "negative; <code>grouped_auc_requests</code> counts them). A slice on a "
    "per-item column holds every request with an item in it.</p>"
    + metrics_table(rows, "slice")
    + _truth_table(data)
  )


def _truth_table(data: ReportData) -> str:
  """The served outputs ranked against the simulator's truth (overall slice)."""
  overall = {task: v for (task, slice_name), v in data.metrics.items() if slice_name == "overall"}
  rows = truth_table.truth_rows(overall)
  if not rows:
    return ""
  head = "".join(f"<th>{_esc(c)}</th>" for c in ("output", "metric", *truth_table.COLUMNS))
  body = "".join(
    f"<tr><th>{_esc(row['output'])}</th><td>{_esc(row['metric'])}</td>"
    + "".join(f"<td>{row[c]:.4f}</td>" if c in row else "<td>-</td>" for c in truth_table.COLUMNS)
    + "</tr>"
    for row in rows
  )
  return (
    '<h3 id="truth">Against the simulator\'s truth</h3><p>Each served output (the click '
    "without its position logit) ranks each request's items against its position-free "
    "truth (<code>truth_of</code> features): NDCG@k and pairwise agreement, for the model, "
    "the logged position order, a random order (expected) and the oracle (the truth "
    "itself); <i>share</i> is the model's share of the oracle's lift over random, "
    "<i>position_share</i> the position order's.</p>"
    f'<div class="scroll"><table class="metrics truth"><thead><tr>{head}</tr></thead>'
    f"<tbody>{body}</tbody></table></div>"
  )


def _baseline_section(data: ReportData) -> str:
  if not data.spec.evaluation.single_task_baseline:
    return (
      "<p>No single-task baseline in this run (the spec's "
      "<code>evaluation.single_task_baseline</code> is off).</p>"
    )
  if not data.baseline:
    return "<p>The single-task baseline was not evaluated in this run.</p>"
  classes = {"MTL better": "better", "STL better": "worse"}
  overall = [c for c in data.baseline if c.slice == "overall"]
  body = "".join(
    f'<tr class="{classes.get(c.verdict, "")}">'
    f"<th>{_esc(c.task)}</th><td>{_esc(c.metric)}</td>"
    f"<td>{c.multi_task:.4f}</td><td>{c.single_task:.4f}</td><td>{c.delta:+.4f}</td>"
    f"<td>{_esc(interval_chart.interval_text(c))}</td><td>{_esc(c.verdict)}</td></tr>"
    for c in sorted(overall, key=lambda c: (c.task, c.metric))
  )
  return (
    "<p>The multi-task model (MTL) against one single-task network per task "
    "(STL, architecture single_task) trained in the same run on the same "
    "Transform output with the same budget, evaluated in the same TFMA pass on "
    "the same eval split. One seed; MTL &minus; STL with its 95 % paired "
    "bootstrap interval over the eval rows (both models' predictions on the same "
    "resampled rows); an interval holding zero is a tie (lower is better for log "
    "loss, ECE and errors).</p>"
    '<table class="baseline"><thead><tr><th>task</th><th>metric (overall)</th>'
    "<th>MTL</th><th>STL</th><th>MTL &minus; STL</th><th>interval</th>"
    f"<th></th></tr></thead><tbody>{body}</tbody></table>" + interval_chart.charts(data.baseline)
  )


def _tags(telemetry: Mapping[str, Series], prefix: str) -> Dict[str, Series]:
  return {
    tag[len(prefix) :]: series
    for tag, series in sorted(telemetry.items())
    if tag.startswith(prefix)
  }


def gate_matrix(
  telemetry: Mapping[str, Series],
) -> Tuple[List[str], List[str], List[List[float | None]]]:
  """Gates x experts: each gate's mean expert weight at the last logged step."""
  last: Dict[str, Dict[int, float]] = {}
  entropy: Dict[str, float] = {}
  for tag, series in _tags(telemetry, "gate/").items():
    gate, _, what = tag.rpartition("/")
    if what == "entropy":
      entropy[gate] = series[-1][1]
    elif what.startswith("expert_"):
      last.setdefault(gate, {})[int(what[len("expert_") :])] = series[-1][1]
  experts = max((max(w) + 1 for w in last.values()), default=0)
  gates = sorted(last)
  rows = [f"{g} (entropy {entropy[g]:.2f})" if g in entropy else g for g in gates]
  values = [[last[g].get(e) for e in range(experts)] for g in gates]
  return rows, [f"expert {e}" for e in range(experts)], values


def _gates_section(data: ReportData) -> str:
  rows, columns, values = gate_matrix(data.telemetry)
  if not rows:
    return (
      f"<p>No gate telemetry: the {_esc(data.spec.model.architecture)} architecture "
      "has no gates, or the Trainer wrote no telemetry.</p>"
    )
  steps = max(s[-1][0] for s in _tags(data.telemetry, "gate/").values())
  return (
    f"<p>Mean weight each gate gives each expert at step {steps:.0f} "
    "(rows sum to 1; entropy in nats).</p>" + heatmap(rows, columns, values)
  )


def _series_section(
  data: ReportData,
  prefix: str,
  y_label: str,
  missing: str,
  y_range: Tuple[float, float] | None = None,
) -> str:
  series = _tags(data.telemetry, prefix)
  if not series:
    return f"<p>{_esc(missing)}</p>"
  names = {name.replace("__", " vs "): values for name, values in series.items()}
  return line_chart(names, "training step", y_label, y_range)


def _losses_section(data: ReportData) -> str:
  series = {
    task: data.telemetry[f"step/{task}_loss"]
    for task in data.spec.task_names
    if f"step/{task}_loss" in data.telemetry
  }
  if not series:
    return "<p>No per-task loss was recorded.</p>"
  return line_chart(series, "training step", "training loss (batch)")


def _durations_section(data: ReportData) -> str:
  outcome = data.outcome
  rows = "".join(
    f"<tr><th>{_esc(n)}</th><td>{s:.1f}</td>"
    f"<td>{'cached' if n in outcome.cached_components else ''}</td></tr>"
    for n, s in outcome.component_seconds.items()
  )
  total = sum(outcome.component_seconds.values())
  return (
    bar_chart(outcome.component_seconds, "s", outcome.cached_components)
    + '<table class="durations"><thead><tr><th>component</th><th>seconds</th>'
    f"<th></th></tr></thead><tbody>{rows}</tbody><tfoot><tr><th>total</th>"
    f"<td>{total:.1f}</td><td></td></tr></tfoot></table>"
  )


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child { text-align: left; } thead th { background: #f3f3f3; }
.diff, .interval { color: #666; font-size: 0.9em; }
tr.better td:last-child { color: #1a7f37; } tr.worse td:last-child { color: #c62828; }
.scroll { overflow-x: auto; }
.verdict { font-size: 1.3em; font-weight: bold; }
.delta-charts { display: flex; flex-wrap: wrap; gap: 8px; }
.blessed { color: #1a7f37; } .not-blessed { color: #c62828; }
.failures li { color: #c62828; }
svg text { font: 11px system-ui, sans-serif; } svg .tick { fill: #555; }
figure { display: inline-block; margin: 0 1em 1em 0; }
"""


def render(data: ReportData) -> str:
  """The report page for `data`, as one HTML string."""
  missing_gradients = (
    "No task-gradient cosine was recorded (a single task, or no shared parameters)."
  )
  bodies = {
    "outcome": _outcome_section(data),
    "metrics": _overall_section(data),
    "slices": _slices_section(data),
    "calibration": _calibration_section(data),
    "ranking": _ranking_section(data),
    "baseline": _baseline_section(data),
    "gates": _gates_section(data),
    "gradients": _series_section(
      data, "gradient/cosine/", "cosine similarity", missing_gradients, (-1.0, 1.0)
    ),
    "loss-weights": _series_section(
      data, "loss_weight/", "loss weight", "No loss weights were recorded."
    ),
    "losses": _losses_section(data),
    "durations": _durations_section(data),
  }
  sections = "".join(
    f'<section id="{key}"><h2>{_esc(title)}</h2>{bodies[key]}</section>' for key, title in SECTIONS
  )
  title = f"mtlrank report: {data.spec.name} ({data.outcome.run_id})"
  return (
    f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
    f"<h1>{_esc(title)}</h1>{sections}</body></html>"
  )


def write_report(pipeline_root: Path, out: Path, spec: RankingSpec | None = None) -> Path:
  """Renders the latest run under `pipeline_root` into the HTML file `out`."""
  out = Path(out)
  data = collect(Path(pipeline_root), spec)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(render(data), encoding="utf-8")
  return out
