"""DataGate: stops the run before Transform when the new data is unfit to train on.

ExampleValidator only records anomalies; nothing in TFX stops a run on them.
DataGate reads ExampleValidator's anomalies and StatisticsGen's statistics and
raises `DataValidationError` (which fails the run, so Transform, Trainer and
Pusher never start and nothing already pushed is touched) when
  * the schema derived from the spec is violated: a required column missing, a
    column of the wrong type, a binary label outside {0, 1}, ... (TFDV; a
    column the spec does not declare is no violation: it is never read);
  * a split of the span is missing (every span has train, validation and
    eval) or holds no examples;
  * a numeric column holds NaN or +-inf (unless its feature declares `fill`),
    which would train to a NaN loss; a label never may;
  * a column's distribution drifted from the previous span's beyond its
    feature's `drift` threshold (TFDV's L-infinity distance for categorical,
    Jensen-Shannon divergence for numeric columns), on the train split;
  * a binary label of the train split has fewer positives than its task's
    `min_positives` (default 1; 0 turns the check off), or no negative:
    nothing to learn;
  * a conditional label is set while its parent's label is not (a conversion
    without a click), unless the task's `without_parent` is `drop` (counted,
    logged and recorded as `rows_without_parent`) or `unconditional` (no
    parent then): a rule across columns, which TFDV cannot express, so
    DataGate checks it by reading the label columns of every example.
The message names every problem with its split, column and counts. Each
binary label's positive rate, and its shift from the previous span, is logged
and recorded on the result artifact (`label_rates`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Tuple

import tensorflow as tf
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils

from contract import SPLITS, TRAIN_SPLIT
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
  """TFDV's anomalies, but for columns the spec does not declare: a user's
  files may hold more columns than the spec reads (Transform parses only the
  schema's), which TFDV reports as a "New column"."""
  problems = []
  for column, info in sorted(anomalies.anomaly_info.items()):
    if info.reason and all(
      r.type == anomalies_pb2.AnomalyInfo.SCHEMA_NEW_COLUMN for r in info.reason
    ):
      continue
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


def drift_problems(
  spec: RankingSpec,
  current: statistics_pb2.DatasetFeatureStatistics,
  previous: statistics_pb2.DatasetFeatureStatistics,
  previous_span: int,
  split: str,
) -> List[str]:
  """Columns whose distribution moved beyond their feature's `drift` threshold
  since the previous span, measured by TFDV's drift comparators."""
  import tensorflow_data_validation as tfdv

  checked = {f.column: f for f in spec.features if f.drift is not None}
  if not checked:
    return []
  wrap = statistics_pb2.DatasetFeatureStatisticsList
  current_list, previous_list = wrap(datasets=[current]), wrap(datasets=[previous])
  schema = tfdv.infer_schema(current_list)
  for column, feature in checked.items():
    try:
      target = tfdv.get_feature(schema, column)
    except ValueError:
      continue  # not in the span: the schema check reports it
    comparator = target.drift_comparator
    if feature.kind == "categorical":
      comparator.infinity_norm.threshold = feature.drift
    else:
      comparator.jensen_shannon_divergence.threshold = feature.drift
  anomalies = tfdv.validate_statistics(current_list, schema, previous_statistics=previous_list)
  problems = []
  for info in anomalies.drift_skew_info:
    column = ".".join(info.path.step)
    for measurement in info.drift_measurements:
      if measurement.value > measurement.threshold:
        kind = (
          "L-infinity distance"
          if measurement.type == measurement.L_INFTY
          else "Jensen-Shannon divergence"
        )
        problems.append(
          f"split {split!r}, column {column!r} (feature {checked[column].name!r}): drifted from "
          f"span {previous_span}: {kind} {measurement.value:.4f} above the threshold "
          f"{measurement.threshold}"
        )
  return problems


def label_rates(
  spec: RankingSpec, stats: statistics_pb2.DatasetFeatureStatistics
) -> Dict[str, float]:
  """Positive rate of each binary task's label (its mean)."""
  numeric = _numeric_stats(stats)
  return {
    t.name: float(numeric[t.label].mean)
    for t in spec.tasks
    if t.is_binary and t.label in numeric and not math.isnan(numeric[t.label].mean)
  }


def rows_without_parent(spec: RankingSpec, file_pattern: str) -> Dict[str, int]:
  """{conditional task: rows whose label is non-zero while its parent's is 0},
  read from the split's GZIP TFRecords (a rule across columns, beyond TFDV)."""
  pairs = [(t, spec.task(t.parent)) for t in spec.tasks if t.parent]
  files = tf.io.gfile.glob(file_pattern) if pairs else []
  if not files:
    return {}
  dtypes = spec.raw_columns
  feature_spec = {
    c: tf.io.FixedLenFeature([], tf.int64 if dtypes[c] == "int" else tf.float32, default_value=0)
    for c in {c for t, p in pairs for c in (t.label, p.label)}
  }
  counts = {t.name: 0 for t, _ in pairs}
  dataset = (
    tf.data.TFRecordDataset(files, compression_type="GZIP")
    .batch(_LABEL_READ_BATCH)
    .map(lambda x: tf.io.parse_example(x, feature_spec))
  )
  for batch in dataset.as_numpy_iterator():
    for task, parent in pairs:
      counts[task.name] += int(((batch[task.label] != 0) & (batch[parent.label] == 0)).sum())
  return counts


def without_parent_problem(spec: RankingSpec, task_name: str, count: int, split: str) -> str:
  """What the rows are, and the spec choices that would accept them."""
  task = spec.task(task_name)
  parent = spec.task(task.parent)
  field = f"tasks[{spec.task_names.index(task.name)}].without_parent"
  return (
    f"split {split!r}: {count} rows have {task.label!r} (task {task.name!r}) set while its "
    f"parent {parent.label!r} (task {parent.name!r}) is 0: a {task.name} without a "
    f"{parent.name}, which the spec says only exists after a {parent.name}. To accept such "
    f"rows set {field}: drop (their {task.name} label is dropped; the {task.name} task "
    f"learns and is judged on the {parent.name} rows only) or unconditional "
    f"({task.name} becomes a task of its own on every row, without a parent)"
  )


def conditional_label_problems(
  spec: RankingSpec, file_pattern: str, split: str
) -> Tuple[List[str], Dict[str, int]]:
  """(problems of the `stop` tasks, row counts of the `drop` tasks): the rows
  whose conditional label is set while the parent's is 0."""
  counts = rows_without_parent(spec, file_pattern)
  problems, dropped = [], {}
  for name, count in counts.items():
    if not count:
      continue
    if spec.task(name).without_parent == "drop":
      dropped[name] = count
      logging.info(
        "split %s: %d rows of task %s without a positive parent label: dropped from its "
        "loss and metrics (without_parent: drop)",
        split,
        count,
        name,
      )
    else:
      problems.append(without_parent_problem(spec, name, count, split))
  return problems, dropped


def missing_split_problems(splits: List[str], span: int) -> List[str]:
  """The splits every span must have (train, validation, eval) that it lacks."""
  missing = [s for s in SPLITS if s not in splits]
  if not missing:
    return []
  return [
    f"span {span} has no {s!r} split (it has {', '.join(map(repr, splits)) or 'none'}; "
    f"every span needs {', '.join(map(repr, SPLITS))})"
    for s in missing
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
    problems += missing_split_problems(splits, span)
    current_train: statistics_pb2.DatasetFeatureStatistics | None = None
    dropped: Dict[str, Dict[str, int]] = {}  # split -> task -> rows (without_parent: drop)
    for split in splits:
      stats = _read_stats(os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb"))
      if split == TRAIN_SPLIT:
        current_train = stats
      if stats.num_examples == 0:
        problems.append(f"split {split!r} of span {span} is empty: no examples")
        continue
      anomalies_path = os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
      found = anomalies_pb2.Anomalies()
      found.ParseFromString(io_utils.read_bytes_file(anomalies_path))
      problems += anomaly_problems(found, split)
      problems += non_finite_problems(spec, stats, split)
      if split == TRAIN_SPLIT:
        problems += label_class_problems(spec, stats, split)
      found_problems, found_dropped = conditional_label_problems(
        spec, os.path.join(examples.uri, f"Split-{split}", "*"), split
      )
      problems += found_problems
      if found_dropped:
        dropped[split] = found_dropped
    result = artifact_utils.get_single_instance(output_dict["result"])
    previous_span, previous_profile = _previous_profile(result.uri, span)
    rates = {}
    if current_train is not None:
      rates = {"span": span, "rates": label_rates(spec, current_train)}
      if previous_profile is not None:
        previous_train = _read_stats(previous_profile)
        problems += drift_problems(spec, current_train, previous_train, previous_span, TRAIN_SPLIT)
        rates["previous_span"] = previous_span
        rates["previous_rates"] = label_rates(spec, previous_train)
      for task, rate in rates["rates"].items():
        before = rates.get("previous_rates", {}).get(task)
        logging.info(
          "span %d: label rate of %s %.4f%s",
          span,
          task,
          rate,
          f" (span {previous_span}: {before:.4f})" if before is not None else "",
        )
    if problems:
      raise DataValidationError(
        f"span {span} of {spec.name!r} data is unfit to train on; the run stops "
        "before Transform:\n  - " + "\n  - ".join(problems)
      )
    result.set_int_custom_property("span", span)
    result.set_int_custom_property("passed", 1)
    result.set_string_custom_property("label_rates", json.dumps(rates, sort_keys=True))
    result.set_string_custom_property("rows_without_parent", json.dumps(dropped, sort_keys=True))
    if TRAIN_SPLIT in splits:  # the next span's drift baseline
      profile = os.path.join(result.uri, _PROFILE)
      fileio.makedirs(os.path.dirname(profile))
      fileio.copy(
        os.path.join(statistics.uri, f"Split-{TRAIN_SPLIT}", "FeatureStats.pb"),
        profile,
        overwrite=True,
      )
      with fileio.open(os.path.join(result.uri, _PROFILE_SPAN), "w") as f:
        f.write(str(span))


# The train split's statistics a passed gate keeps, and the span they profile.
# TFX's statistics artifacts do not record the span of the examples they
# profile, so the gate keeps its own copy for the next span's drift check.
_PROFILE = f"Split-{TRAIN_SPLIT}/FeatureStats.pb"
_PROFILE_SPAN = "profile_span.txt"


def _previous_profile(result_uri: str, span: int) -> Tuple[int | None, str | None]:
  """(span, statistics file) of the latest span before `span` that passed the
  gate, from the gate's earlier results beside this one (the newest run of
  that span wins)."""
  parent = os.path.dirname(result_uri.rstrip("/"))
  best: Tuple[int, int, str] | None = None
  for name in fileio.listdir(parent) if fileio.exists(parent) else []:
    directory = os.path.join(parent, name.rstrip("/"))
    span_file = os.path.join(directory, _PROFILE_SPAN)
    if directory.rstrip("/") == result_uri.rstrip("/") or not fileio.exists(span_file):
      continue
    with fileio.open(span_file) as f:
      earlier = int(f.read().strip() or 0)
    order = int(name.rstrip("/")) if name.rstrip("/").isdigit() else 0
    if earlier < span and (best is None or (earlier, order) > best[:2]):
      best = (earlier, order, os.path.join(directory, _PROFILE))
  return (best[0], best[2]) if best else (None, None)


def _read_stats(path: str) -> statistics_pb2.DatasetFeatureStatistics:
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  stats.ParseFromString(io_utils.read_bytes_file(path))
  return stats.datasets[0] if stats.datasets else statistics_pb2.DatasetFeatureStatistics()


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
