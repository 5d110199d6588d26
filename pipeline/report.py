"""A self-contained HTML report of the latest run under a pipeline root.

`write_report(pipeline_root, out)` reads the run back from ML Metadata (which
components ran, how long, the blessing and every failed gate), from the
Evaluator's TFMA output (metrics per task and slice with their change against
the blessed baseline, calibration histograms) and from the Trainer's
TensorBoard event files (gate weights, task-gradient cosines, loss weights,
per-task losses), and renders one HTML page whose charts are inline SVG: it
opens from disk, without a server, a script or a network connection.

The spec comes from the run itself (the DataGate's `spec` property holds the
whole spec JSON; components downstream get only their part) unless one is
passed. With `evaluation.single_task_baseline` the single-task Evaluator's
output gives the MTL - STL table; with a query key the fused score's ranking
metrics get their own section; TFMA's confidence intervals show in brackets.
"""

from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from contract import DATA_GATE_NODE, FUSED_SCORE_OUTPUT, TRAINER_NODE
from models.spec import RankingSpec, spec_from_json
from pipeline import config, esmm_report, results

Series = List[Tuple[float, float]]
SPEC_NODE = DATA_GATE_NODE
TELEMETRY_DIR = Path("logs") / "train"
CALIBRATION_BINS = 20
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


@dataclasses.dataclass(frozen=True)
class CalibrationBin:
  """Examples whose prediction falls in one bin: their mean prediction and label."""

  mean_prediction: float
  mean_label: float
  weight: float


@dataclasses.dataclass
class ReportData:
  spec: RankingSpec
  pipeline_root: Path
  outcome: results.RunOutcome
  metrics: Dict[Tuple[str, str], Dict[str, float]]
  calibration: Dict[str, List[CalibrationBin]]
  telemetry: Dict[str, Series]
  baseline: List[results.BaselineComparison] = dataclasses.field(default_factory=list)
  # The ESMM experiment's result (pipeline.esmm_report), shown when given.
  esmm: Dict[str, object] | None = None


# ----------------------------------------------------------------------------
# Reading the run


def _execution_of(store, run_name: str, node: str):
  """The execution of `node` in the run named `run_name` (cached or not)."""
  run = next(c for c in store.get_contexts_by_type("pipeline_run") if c.name == run_name)
  node_contexts = {
    c.id for c in store.get_contexts_by_type("node") if c.name.split(".", 1)[-1] == node
  }
  for execution in store.get_executions_by_context(run.id):
    if any(c.id in node_contexts for c in store.get_contexts_by_execution(execution.id)):
      return execution
  return None


def _model_run_uri(store, execution) -> str | None:
  types = {t.id: t.name for t in store.get_artifact_types()}
  artifact_ids = [
    e.artifact_id
    for e in store.get_events_by_execution_ids([execution.id])
    if e.type in results._OUTPUT_EVENTS
  ]  # pylint: disable=protected-access
  for artifact in store.get_artifacts_by_id(artifact_ids):
    if types.get(artifact.type_id) == "ModelRun":
      return artifact.uri
  return None


def _spec_of(execution) -> RankingSpec | None:
  spec = execution.custom_properties.get("spec")
  if spec is None or not spec.string_value:
    return None
  return spec_from_json(spec.string_value)


def read_telemetry(log_dir: Path) -> Dict[str, Series]:
  """{tag: [(step, value)]} of every scalar in the event files under `log_dir`."""
  import tensorflow as tf

  telemetry: Dict[str, Dict[float, float]] = {}
  for event_file in sorted(log_dir.glob("events.out.tfevents*")):
    for event in tf.compat.v1.train.summary_iterator(str(event_file)):
      for value in event.summary.value:
        if value.HasField("tensor"):
          number = float(tf.make_ndarray(value.tensor))
        elif value.HasField("simple_value"):
          number = float(value.simple_value)
        else:
          continue
        telemetry.setdefault(value.tag, {})[float(event.step)] = number
  return {tag: sorted(points.items()) for tag, points in telemetry.items()}


def read_calibration(
  spec: RankingSpec, evaluation_uri: str, bins: int = CALIBRATION_BINS
) -> Dict[str, List[CalibrationBin]]:
  """{binary task: calibration bins} of the candidate model on the overall slice,
  TFMA's CalibrationPlot histogram regrouped into `bins` equal-width bins."""
  import tensorflow_model_analysis as tfma

  curves: Dict[str, List[CalibrationBin]] = {}
  for plots in tfma.load_plots(evaluation_uri):
    if plots.slice_key.single_slice_keys:
      continue
    for key_and_value in plots.plot_keys_and_values:
      key = key_and_value.key
      if key.model_name == "baseline" or key.output_name not in spec.task_names:
        continue
      buckets = key_and_value.value.calibration_histogram_buckets.buckets
      if buckets:
        curves[key.output_name] = _regroup(buckets, bins)
  return curves


def _regroup(buckets, bins: int) -> List[CalibrationBin]:
  weight, label, prediction = [0.0] * bins, [0.0] * bins, [0.0] * bins
  for bucket in buckets:
    lower = min(max(bucket.lower_threshold_inclusive, 0.0), 1.0)
    index = min(int(lower * bins), bins - 1)
    weight[index] += bucket.num_weighted_examples.value
    label[index] += bucket.total_weighted_label.value
    prediction[index] += bucket.total_weighted_refined_prediction.value
  return [
    CalibrationBin(prediction[i] / weight[i], label[i] / weight[i], weight[i])
    for i in range(bins)
    if weight[i] > 0
  ]


def collect(pipeline_root: Path, spec: RankingSpec | None = None) -> ReportData:
  """Everything the report shows about the latest run under `pipeline_root`."""
  metadata_path = Path(pipeline_root) / config.METADATA_FILE
  if not metadata_path.exists():
    raise FileNotFoundError(
      f"{metadata_path} does not exist: is {pipeline_root} a "
      "pipeline root (the --pipeline-root of `mtlrank run`)?"
    )
  outcome = results.latest_run(metadata_path)
  store = results.open_store(metadata_path)
  trainer = _execution_of(store, outcome.run_id, TRAINER_NODE)
  if spec is None:
    gate = _execution_of(store, outcome.run_id, SPEC_NODE)
    spec = _spec_of(gate) if gate is not None else None
    if spec is None:
      raise RuntimeError(
        f"the latest run in {metadata_path} has no {SPEC_NODE} execution "
        "holding the spec: pass --spec"
      )
  model_run = _model_run_uri(store, trainer) if trainer is not None else None
  telemetry = read_telemetry(Path(model_run) / TELEMETRY_DIR) if model_run else {}
  evaluation = outcome.evaluation_uri
  return ReportData(
    spec=spec,
    pipeline_root=Path(pipeline_root),
    outcome=outcome,
    metrics=results.slice_metrics(spec, evaluation) if evaluation else {},
    calibration=read_calibration(spec, evaluation) if evaluation else {},
    telemetry=telemetry,
    baseline=(
      results.compare_with_single_task(spec, evaluation, outcome.single_task_evaluation_uri)
      if evaluation and outcome.single_task_evaluation_uri
      else []
    ),
  )


# ----------------------------------------------------------------------------
# Inline SVG charts

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


# ----------------------------------------------------------------------------
# Sections


def _ordered_metrics(rows: Mapping[str, Mapping[str, float]]) -> List[str]:
  """Metrics in METRIC_ORDER, then the others; the weighted example count only
  where it differs from the example count (a conditional task's weights)."""
  plain = {
    n for values in rows.values() for n in values if not n.endswith(("_diff", "_lower", "_upper"))
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
    "per-item column holds every request with an item in it.</p>" + metrics_table(rows, "slice")
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
  body = "".join(
    f'<tr class="{classes.get(c.verdict, "")}">'
    f"<th>{_esc(c.task)}</th><td>{_esc(c.slice)}</td><td>{_esc(c.metric)}</td>"
    f"<td>{c.multi_task:.4f}</td><td>{c.single_task:.4f}</td><td>{c.delta:+.4f}</td>"
    f"<td>{_esc(c.verdict)}</td></tr>"
    for c in sorted(data.baseline, key=lambda c: (c.task, c.slice != "overall", c.slice, c.metric))
  )
  return (
    "<p>The multi-task model (MTL) against one single-task network per task "
    "(STL, architecture single_task) trained in the same run on the same "
    "Transform output with the same budget, evaluated on the same eval split. "
    "One seed; MTL &minus; STL with its sign (lower is better for log loss, "
    "ECE and errors).</p>"
    '<div class="scroll"><table class="baseline"><thead><tr><th>task</th>'
    "<th>slice</th><th>metric</th><th>MTL</th><th>STL</th><th>MTL &minus; STL</th>"
    f"<th></th></tr></thead><tbody>{body}</tbody></table></div>"
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


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child { text-align: left; } thead th { background: #f3f3f3; }
.diff, .interval { color: #666; font-size: 0.9em; }
tr.better td:last-child { color: #1a7f37; } tr.worse td:last-child { color: #c62828; }
.scroll { overflow-x: auto; }
.verdict { font-size: 1.3em; font-weight: bold; }
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
  if data.esmm is not None:
    sections += esmm_report.render_section(data.esmm)
  title = f"mtlrank report: {data.spec.name} ({data.outcome.run_id})"
  return (
    f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>"
    f"<h1>{_esc(title)}</h1>{sections}</body></html>"
  )


def write_report(
  pipeline_root: Path, out: Path, spec: RankingSpec | None = None, esmm_results: Path | None = None
) -> Path:
  """Renders the latest run under `pipeline_root` into the HTML file `out`,
  with the ESMM experiment's section when its JSON file is given."""
  out = Path(out)
  esmm = esmm_report.load_results(esmm_results) if esmm_results else None
  data = collect(Path(pipeline_root), spec)
  data.esmm = esmm
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(render(data), encoding="utf-8")
  return out
