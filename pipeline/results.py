"""Reads a finished run back from ML Metadata and the Evaluator's output.

A run's facts live in MLMD (which component ran, was cached, how long it took;
the blessing; the push) and in the TFMA output (metrics per task and slice;
the validation result naming every failed threshold). This module turns them
into plain Python values for the run summary and the report.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
from pathlib import Path
from typing import Dict, List

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from contract import (
  BASELINE_COMPARISON_FILENAME,
  EVAL_SPLIT,
  EVALUATOR_NODE,
  FUSED_SCORE_OUTPUT,
  PUSHER_NODE,
  SELECTION_DIRNAME,
  SELECTION_REPORT_FILENAME,
  SERVED_OUTPUT_SUFFIX,
  SINGLE_TASK_TRAINER_NODE,
  TRAIN_SPLIT,
  TRAINER_NODE,
  TRANSFORM_NODE,
  VALIDATION_SPLIT,
  WARM_START_DIRNAME,
  WARM_START_REPORT_FILENAME,
)
from models.spec import RankingSpec

# Metrics compared between the multi-task and the single-task model, with the
# direction that is better.
COMPARED_METRICS = {
  "auc": True,
  "auc_precision_recall": True,
  "binary_crossentropy": False,
  "expected_calibration_error": False,
  "mean_squared_error": False,
  "mean_absolute_error": False,
}

_CACHED = metadata_store_pb2.Execution.CACHED
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass
class RunOutcome:
  run_id: str
  component_seconds: Dict[str, float]
  cached_components: List[str]
  blessed: bool
  not_blessed_reasons: List[str]
  evaluation_uri: str | None
  pushed_dir: str | None
  already_pushed_version: int | None
  single_task_evaluation_uri: str | None = None
  # Spans of the examples Transform read: the training window.
  training_spans: List[int] = dataclasses.field(default_factory=list)
  # The Examples artifact each span of the window came from: {span, artifact_id, uri}.
  training_examples: List[Dict[str, object]] = dataclasses.field(default_factory=list)
  # The Trainer's warm-start report (models/warm_start.py), None on a cold start.
  warm_start: Dict[str, object] | None = None
  # The Trainers' epoch-selection reports (models/selection.py), by node.
  selection: Dict[str, Dict[str, object]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class BaselineComparison:
  """One metric of one task on one slice: multi-task against single-task."""

  task: str
  slice: str
  metric: str
  multi_task: float
  single_task: float
  higher_is_better: bool
  # The paired bootstrap interval of MTL - STL (pipeline/model_comparison.py),
  # None where it could not be computed.
  delta_lower: float | None = None
  delta_upper: float | None = None

  @property
  def delta(self) -> float:
    """MTL - STL."""
    return self.multi_task - self.single_task

  @property
  def verdict(self) -> str:
    """ "tie" when the interval holds zero (or, without one, the values are equal)."""
    if self.delta == 0 or (
      self.delta_lower is not None and self.delta_lower <= 0 <= self.delta_upper
    ):
      return "tie"
    return "MTL better" if (self.delta > 0) == self.higher_is_better else "STL better"


def open_store(metadata_path: Path) -> metadata_store.MetadataStore:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = str(metadata_path)
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def latest_run(metadata_path: Path) -> RunOutcome:
  """The outcome of the most recent pipeline run recorded in `metadata_path`."""
  store = open_store(metadata_path)
  runs = store.get_contexts_by_type("pipeline_run")
  if not runs:
    raise RuntimeError(f"{metadata_path} records no pipeline run")
  run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
  executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  node_contexts = {c.id: c.name for c in store.get_contexts_by_type("node")}
  attributions = {}
  for execution in executions:
    for context in store.get_contexts_by_execution(execution.id):
      if context.id in node_contexts:
        attributions[execution.id] = node_contexts[context.id].split(".", 1)[-1]

  seconds: Dict[str, float] = {}
  cached: List[str] = []
  outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
  training_spans: List[int] = []
  training_examples: List[Dict[str, object]] = []
  # One read of every execution's events and artifacts, split by event type.
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted({e.artifact_id for e in events}))}
  output_of_execution: Dict[int, List[metadata_store_pb2.Artifact]] = {}
  input_of_execution: Dict[int, List[metadata_store_pb2.Artifact]] = {}
  for event in events:
    if event.type in _OUTPUT_EVENTS:
      output_of_execution.setdefault(event.execution_id, []).append(artifacts[event.artifact_id])
    elif event.type == metadata_store_pb2.Event.INPUT:
      input_of_execution.setdefault(event.execution_id, []).append(artifacts[event.artifact_id])
  for execution in executions:
    node = attributions.get(execution.id, execution.name or str(execution.id))
    seconds[node] = (
      execution.last_update_time_since_epoch - execution.create_time_since_epoch
    ) / 1000.0
    if execution.last_known_state == _CACHED:
      cached.append(node)
    outputs[node] = output_of_execution.get(execution.id, [])
    if node == TRANSFORM_NODE:
      examples = sorted(
        (a for a in input_of_execution.get(execution.id, []) if "span" in a.custom_properties),
        key=lambda a: (_int(a, "span"), a.id),
      )
      training_spans = [_int(a, "span") for a in examples]
      training_examples = [
        {"span": _int(a, "span"), "artifact_id": a.id, "uri": a.uri} for a in examples
      ]

  type_names = {t.id: t.name for t in store.get_artifact_types()}

  def output_of(node: str, type_name: str) -> metadata_store_pb2.Artifact | None:
    for artifact in outputs.get(node, []):
      if type_names.get(artifact.type_id) == type_name:
        return artifact
    return None

  blessing = output_of(EVALUATOR_NODE, "ModelBlessing")
  evaluation = output_of(EVALUATOR_NODE, "ModelEvaluation")
  # The single-task model is evaluated in the Evaluator's own TFMA pass.
  single_task_evaluation = (
    evaluation
    if evaluation is not None and Path(evaluation.uri, BASELINE_COMPARISON_FILENAME).exists()
    else None
  )
  pushed = output_of(PUSHER_NODE, "PushedModel")
  blessed = bool(blessing and _int(blessing, "blessed"))
  reasons = []
  if evaluation is not None and not blessed:
    reasons = validation_failures(evaluation.uri)
  pushed_dir = None
  already = None
  if pushed is not None and _int(pushed, "pushed"):
    pushed_dir = pushed.custom_properties["pushed_destination"].string_value
  elif pushed is not None and "already_pushed_as_version" in pushed.custom_properties:
    already = _int(pushed, "already_pushed_as_version")
  model = output_of(TRAINER_NODE, "Model")
  return RunOutcome(
    run_id=run.name,
    component_seconds=seconds,
    cached_components=cached,
    blessed=blessed,
    not_blessed_reasons=reasons,
    evaluation_uri=evaluation.uri if evaluation else None,
    pushed_dir=pushed_dir,
    already_pushed_version=already,
    single_task_evaluation_uri=(single_task_evaluation.uri if single_task_evaluation else None),
    training_spans=training_spans,
    training_examples=training_examples,
    warm_start=_report_beside(model, WARM_START_DIRNAME, WARM_START_REPORT_FILENAME),
    selection={
      node: report
      for node in (TRAINER_NODE, SINGLE_TASK_TRAINER_NODE)
      if (
        report := _report_beside(
          output_of(node, "Model"), SELECTION_DIRNAME, SELECTION_REPORT_FILENAME
        )
      )
      is not None
    },
  )


def count_records(path: Path) -> int:
  """Records in one TFRecord file (GZIP or not), read by its framing (length,
  length CRC, data, data CRC) without TensorFlow."""
  with path.open("rb") as raw:
    gzipped = raw.read(2) == b"\x1f\x8b"
  count = 0
  with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
    while True:
      header = f.read(12)
      if not header:
        return count
      if len(header) < 12:
        raise ValueError(f"{path}: truncated TFRecord header after {count} records")
      (length,) = struct.unpack("<Q", header[:8])
      f.seek(length + 4, 1)
      count += 1


def _split_count(examples_uri: str, split: str) -> int:
  directory = Path(examples_uri) / f"Split-{split}"
  return sum(count_records(p) for p in sorted(directory.glob("*")) if p.is_file())


def split_rows(training_examples: List[Dict[str, object]]) -> Dict[str, int]:
  """Rows per split of a run: train and validation summed over the training
  window's Examples (what the Trainer fit and selected on), eval of the newest
  span (what the Evaluator read)."""
  if not training_examples:
    return {}
  newest = max(training_examples, key=lambda e: (e["span"], e["artifact_id"]))
  return {
    TRAIN_SPLIT: sum(_split_count(str(e["uri"]), TRAIN_SPLIT) for e in training_examples),
    VALIDATION_SPLIT: sum(_split_count(str(e["uri"]), VALIDATION_SPLIT) for e in training_examples),
    EVAL_SPLIT: _split_count(str(newest["uri"]), EVAL_SPLIT),
  }


def _report_beside(
  model: metadata_store_pb2.Artifact | None, dirname: str, filename: str
) -> Dict[str, object] | None:
  """A JSON report the Trainer wrote into its Model artifact, if any."""
  path = Path(model.uri) / dirname / filename if model is not None else None
  return json.loads(path.read_text()) if path is not None and path.exists() else None


def _int(artifact: metadata_store_pb2.Artifact, key: str) -> int:
  value = artifact.custom_properties.get(key)
  return int(value.int_value) if value is not None else 0


def _slice_name(slice_key) -> str:
  parts = []
  for key in slice_key.single_slice_keys:
    value = getattr(key, key.WhichOneof("kind"))
    parts.append(f"{key.column}={value.decode() if isinstance(value, bytes) else value}")
  return ", ".join(parts) or "overall"


def _bound(threshold) -> str:
  """The violated bound, in words (TFMA leaves value-threshold messages empty)."""
  parts = []
  if threshold.HasField("value_threshold"):
    bounds = threshold.value_threshold
    if bounds.HasField("lower_bound"):
      parts.append(f">= {bounds.lower_bound.value:g}")
    if bounds.HasField("upper_bound"):
      parts.append(f"<= {bounds.upper_bound.value:g}")
  if threshold.HasField("change_threshold"):
    parts.append(
      f"a change of at most {threshold.change_threshold.absolute.value:+g} "
      "against the blessed baseline"
    )
  return "the bound " + " and ".join(parts) if parts else "its threshold"


def validation_failures(evaluation_uri: str) -> List[str]:
  """Every failed threshold: task, slice, metric, value and bound."""
  import tensorflow_model_analysis as tfma

  result = tfma.load_validation_result(evaluation_uri)
  failures = []
  for per_slice in result.metric_validations_per_slice:
    slice_name = _slice_name(per_slice.slice_key)
    for failure in per_slice.failures:
      key = failure.metric_key
      kind = "change vs blessed baseline" if key.is_diff else "value"
      if failure.message == "Metric not found.":
        failures.append(
          f"task {key.output_name or '-'}, slice {slice_name}: {key.name} "
          f"({kind}) was not computed: the slice has no examples"
        )
        continue
      failures.append(
        f"task {key.output_name or '-'}, slice {slice_name}: "
        f"{key.name} ({kind}) = {failure.metric_value.double_value.value:.4f}"
        f" fails {_bound(failure.metric_threshold)}"
      )
  if not failures and not result.validation_ok:
    if result.missing_thresholds:
      failures.append(
        "the spec declares no release thresholds (evaluation.thresholds): "
        "TFMA blesses no model without one"
      )
    for missing in result.missing_slices:
      failures.append(f"gated slice has no data: {missing}")
    if result.rubber_stamp:
      failures.append("rubber stamp")
  return failures


def task_metrics(
  spec: RankingSpec, evaluation_uri: str, slice_name: str = "overall"
) -> Dict[str, Dict[str, float]]:
  """{task: {metric: value}} of the candidate model on one slice."""
  return {
    task: values
    for (task, name), values in slice_metrics(spec, evaluation_uri).items()
    if name == slice_name
  }


def _metric_name(key) -> str:
  """TFMA's metric name, with its cutoff (`ndcg@5`) and `_diff` for a change."""
  name = key.name
  if key.HasField("sub_key") and key.sub_key.HasField("top_k"):
    name += f"@{key.sub_key.top_k.value}"
  return name + ("_diff" if key.is_diff else "")


def slice_metrics(
  spec: RankingSpec, evaluation_uri: str, model: str | None = None
) -> Dict[tuple, Dict[str, float]]:
  """{(task, slice name): {metric: value}} of one model (default the candidate),
  on the overall slice and every slice with at least `evaluation.min_slice_size`
  examples.

  The fused score's ranking metrics come under the task `score`. Where TFMA
  computed a confidence interval, `<metric>_lower` and `<metric>_upper` hold it.
  """
  import tensorflow_model_analysis as tfma

  # The position-biased task's served output (`<task>_served`, ranked against
  # the truth) reports under the task: its metric names start with `truth_`.
  outputs = {t: t for t in (*spec.task_names, FUSED_SCORE_OUTPUT)}
  outputs.update({t + SERVED_OUTPUT_SUFFIX: t for t in spec.task_names})
  # TFMA names a lone model "", the candidate "candidate" beside others.
  model = model or tfma.CANDIDATE_KEY
  names = {model, ""} if model == tfma.CANDIDATE_KEY else {model}
  result: Dict[tuple, Dict[str, float]] = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    slice_name = _slice_name(metrics.slice_key)
    for kv in metrics.metric_keys_and_values:
      key = kv.key
      if key.model_name not in names or key.output_name not in outputs:
        continue
      if kv.value.HasField("double_value"):
        name = _metric_name(key)
        values = result.setdefault((outputs[key.output_name], slice_name), {})
        values[name] = kv.value.double_value.value
        interval = kv.confidence_interval
        if interval.HasField("lower_bound") and interval.lower_bound.HasField("double_value"):
          values[name + "_lower"] = interval.lower_bound.double_value.value
          values[name + "_upper"] = interval.upper_bound.double_value.value
  minimum = spec.evaluation.min_slice_size
  counts = {
    slice_name: values.get("example_count", 0)
    for (task, slice_name), values in result.items()
    if task in spec.task_names
  }
  return {
    key: values
    for key, values in result.items()
    if key[1] == "overall" or counts.get(key[1], 0) >= minimum
  }


def compare_with_single_task(spec: RankingSpec, evaluation_uri: str) -> List[BaselineComparison]:
  """Per task, slice and compared metric: the multi-task model against the
  single-task baseline, with the paired bootstrap interval of the difference.

  The multi-task value is TFMA's (the one the summary reports and the gates
  read). TFMA does not evaluate the single-task model: the Evaluator's paired
  bootstrap predicts both models on the same eval rows, and the difference,
  its interval and so the single-task value (TFMA's multi-task value minus the
  difference) come from it. Its estimators bucket the predictions, TFMA's
  differ slightly: the difference is the bootstrap's, not TFMA's."""
  multi = slice_metrics(spec, evaluation_uri)
  intervals = bootstrap_intervals(evaluation_uri)
  comparisons = []
  for (task, slice_name), values in multi.items():
    for metric, higher in COMPARED_METRICS.items():
      found = intervals.get((task, slice_name, metric))
      if metric in values and found is not None:
        comparisons.append(
          BaselineComparison(
            task,
            slice_name,
            metric,
            values[metric],
            values[metric] - found["estimate"],
            higher,
            delta_lower=found["lower"],
            delta_upper=found["upper"],
          )
        )
  return comparisons


def bootstrap_intervals(evaluation_uri: str) -> Dict[tuple, Dict[str, float]]:
  """{(task, slice, metric): {estimate, lower, upper}} of MTL - STL, or {}."""
  path = Path(evaluation_uri, BASELINE_COMPARISON_FILENAME)
  if not path.exists():
    return {}
  rows = json.loads(path.read_text())["intervals"]
  return {(r["task"], r["slice"], r["metric"]): r for r in rows}
