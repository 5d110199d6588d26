"""DataGate: stops the run before Transform when the new data is unfit to train on.

ExampleValidator only records anomalies; nothing in TFX stops a run on them.
DataGate reads ExampleValidator's anomalies and StatisticsGen's statistics and
raises `DataValidationError` (which fails the run, so Transform, Trainer and
Pusher never start and nothing already pushed is touched) when
  * the schema derived from the spec is violated: a required column missing, a
    column of the wrong type, a binary label outside {0, 1}, ... (TFDV);
  * a split of the span holds no examples;
  * a numeric column holds NaN or +-inf (unless its feature declares `fill`),
    which would train to a NaN loss; a label never may;
  * a binary label of the train split has fewer positives than its task's
    `min_positives` (default 1; 0 turns the check off), or no negative:
    nothing to learn;
  * a conditional label is set while its parent's label is not (a conversion
    without a click): a rule across columns, which TFDV cannot express, so
    DataGate checks it by reading the label columns of every example.
The message names every problem with its split, column and counts.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils

from contract import TRAIN_SPLIT
from models.spec import RankingSpec, spec_from_json

_LABEL_READ_BATCH = 8192


class DataValidationError(RuntimeError):
  """The data violates the spec; the message lists every violation."""


class DataGateResult(types.Artifact):
  """Marks that a span passed the gate (the checks it ran are properties).

  The type name has the `<namespace>.<Title>` form Kubeflow's pipeline spec
  requires of custom artifact types (`mtlrank schedule kubeflow`)."""

  TYPE_NAME = "mtlrank.DataGateResult"


class DataGateSpec(types.ComponentSpec):
  PARAMETERS = {"spec": ExecutionParameter(type=str)}
  INPUTS = {
    "examples": ChannelParameter(type=standard_artifacts.Examples),
    "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
    "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
  }
  OUTPUTS = {"result": ChannelParameter(type=DataGateResult)}


def anomaly_problems(anomalies: anomalies_pb2.Anomalies, split: str) -> List[str]:
  problems = []
  for column, info in sorted(anomalies.anomaly_info.items()):
    reasons = "; ".join(r.description for r in info.reason) or info.description
    problems.append(f"split {split!r}, column {column!r}: {info.short_description} ({reasons})")
  if anomalies.HasField("dataset_anomaly_info"):
    info = anomalies.dataset_anomaly_info
    problems.append(f"split {split!r}: {info.short_description} ({info.description})")
  return problems


def _numeric_stats(
  stats: statistics_pb2.DatasetFeatureStatistics,
) -> Dict[str, statistics_pb2.NumericStatistics]:
  return {
    ".".join(f.path.step) or f.name: f.num_stats for f in stats.features if f.HasField("num_stats")
  }


def non_finite_problems(
  spec: RankingSpec, stats: statistics_pb2.DatasetFeatureStatistics, split: str
) -> List[str]:
  """Columns with NaN or +-inf values (TFDV counts NaN in its histograms and
  keeps infinities in min/max), except numeric features that declare `fill`."""
  filled = {f.column for f in spec.features if f.fill is not None}
  labels = {t.label for t in spec.tasks}
  problems = []
  for column, num in sorted(_numeric_stats(stats).items()):
    if column in filled and column not in labels:
      continue
    nans = max((h.num_nan for h in num.histograms), default=0)
    infinite = [b for b, v in (("-inf", num.min), ("+inf", num.max)) if math.isinf(v)]
    if nans or infinite or math.isnan(num.mean):
      found = ([f"{nans} NaN"] if nans else []) + [f"{b} values" for b in infinite]
      what = "label" if column in labels else "column"
      fix = "" if column in labels else " (declare `fill` on its feature to replace them)"
      problems.append(
        f"split {split!r}, {what} {column!r}: non-finite values "
        f"({', '.join(found) or 'NaN mean'}); training would reach a NaN loss{fix}"
      )
  return problems


def label_class_problems(
  spec: RankingSpec, stats: statistics_pb2.DatasetFeatureStatistics, split: str
) -> List[str]:
  """Binary labels with fewer positives than `min_positives`, or no negative.
  A {0, 1} label's positives are its mean times its count."""
  numeric = _numeric_stats(stats)
  problems = []
  for task in spec.tasks:
    num = numeric.get(task.label)
    if not task.is_binary or task.min_positives == 0 or num is None or math.isnan(num.mean):
      continue
    count = num.common_stats.num_non_missing
    positives = int(round(num.mean * count))
    if positives < task.min_positives or positives == count:
      which = "no negative" if positives == count else f"{positives} positive(s)"
      problems.append(
        f"split {split!r}, label {task.label!r} (task {task.name!r}): {which} in {count} rows "
        f"(the task needs at least {task.min_positives} positive(s) and one negative; "
        "`min_positives: 0` on the task turns this check off)"
      )
  return problems


def conditional_label_problems(spec: RankingSpec, file_pattern: str, split: str) -> List[str]:
  """Counts rows whose conditional label is non-zero while the parent's is 0."""
  pairs = [(t, spec.task(t.parent)) for t in spec.tasks if t.parent]
  if not pairs:
    return []
  columns = {c for t, p in pairs for c in (t.label, p.label)}
  dtypes = spec.raw_columns
  feature_spec = {
    c: tf.io.FixedLenFeature([], tf.int64 if dtypes[c] == "int" else tf.float32, default_value=0)
    for c in columns
  }
  files = tf.io.gfile.glob(file_pattern)
  violations = {t.name: 0 for t, _ in pairs}
  if not files:
    return []
  dataset = (
    tf.data.TFRecordDataset(files, compression_type="GZIP")
    .batch(_LABEL_READ_BATCH)
    .map(lambda x: tf.io.parse_example(x, feature_spec))
  )
  for batch in dataset.as_numpy_iterator():
    for task, parent in pairs:
      violations[task.name] += int(((batch[task.label] != 0) & (batch[parent.label] == 0)).sum())
  return [
    f"split {split!r}: {count} rows have {task.label!r} (task {task.name!r}) set "
    f"while its parent {parent.label!r} (task {parent.name!r}) is 0; a "
    f"{task.name} only exists after a {parent.name}"
    for (task, parent) in pairs
    if (count := violations[task.name])
  ]


class Executor(base_executor.BaseExecutor):
  def Do(
    self,
    input_dict: Dict[str, List[types.Artifact]],
    output_dict: Dict[str, List[types.Artifact]],
    exec_properties: Dict[str, Any],
  ) -> None:
    spec = spec_from_json(exec_properties["spec"])
    examples = artifact_utils.get_single_instance(input_dict["examples"])
    statistics = artifact_utils.get_single_instance(input_dict["statistics"])
    anomalies = artifact_utils.get_single_instance(input_dict["anomalies"])
    span = examples.get_int_custom_property("span")
    problems: List[str] = []
    splits = artifact_utils.decode_split_names(examples.split_names)
    for split in splits:
      stats_path = os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb")
      stats = statistics_pb2.DatasetFeatureStatisticsList()
      stats.ParseFromString(io_utils.read_bytes_file(stats_path))
      if not stats.datasets or stats.datasets[0].num_examples == 0:
        problems.append(f"split {split!r} of span {span} is empty: no examples")
        continue
      anomalies_path = os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
      found = anomalies_pb2.Anomalies()
      found.ParseFromString(io_utils.read_bytes_file(anomalies_path))
      problems += anomaly_problems(found, split)
      problems += non_finite_problems(spec, stats.datasets[0], split)
      if split == TRAIN_SPLIT:
        problems += label_class_problems(spec, stats.datasets[0], split)
      problems += conditional_label_problems(
        spec, os.path.join(examples.uri, f"Split-{split}", "*"), split
      )
    if problems:
      raise DataValidationError(
        f"span {span} of {spec.name!r} data is unfit to train on; the run stops "
        "before Transform:\n  - " + "\n  - ".join(problems)
      )
    result = artifact_utils.get_single_instance(output_dict["result"])
    result.set_int_custom_property("span", span)
    result.set_int_custom_property("passed", 1)


class DataGate(base_component.BaseComponent):
  """Fails the run when a span violates the spec (see module docstring)."""

  SPEC_CLASS = DataGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(
    self,
    examples: types.BaseChannel,
    statistics: types.BaseChannel,
    anomalies: types.BaseChannel,
    spec: RankingSpec,
  ):
    super().__init__(
      spec=DataGateSpec(
        examples=examples,
        statistics=statistics,
        anomalies=anomalies,
        spec=spec.to_json(),
        result=types.Channel(type=DataGateResult),
      )
    )
