"""Reads one run back for the report: ML Metadata (which components ran, how
long, the blessing and every failed gate), the Evaluator's TFMA output (metrics
per task and slice, calibration histograms) and the Trainer's TensorBoard event
files (gate weights, task-gradient cosines, loss weights, per-task losses).

The spec comes from the run itself (the DataGate's `spec` property holds the
whole spec JSON; components downstream get only their part) unless one is
passed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Tuple

from contract import DATA_GATE_NODE, TRAINER_NODE
from models.spec import RankingSpec, spec_from_json
from pipeline import config, results

Series = List[Tuple[float, float]]
SPEC_NODE = DATA_GATE_NODE
TELEMETRY_DIR = Path("logs") / "train"
CALIBRATION_BINS = 20


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
      results.compare_with_single_task(spec, evaluation)
      if evaluation and outcome.single_task_evaluation_uri
      else []
    ),
  )
