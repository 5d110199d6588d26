"""The TFMA EvalConfig, derived from the spec.

One model spec whose output names are the task names; per task the metrics
its type calls for; the spec's slices; and the release gate as
`per_slice_thresholds` on the overall slice and on the spec's gated slices
only. A plain `MetricConfig.threshold` would be checked on every slice, and a
tiny single-class slice (AUC 0) would silently block every release.

A conditional task (conversion given click) is evaluated on the rows where its
parent's label is positive: TFMA weighs each example by the parent label.

Per binary task the expected calibration error comes from our own TFMA metric
(`pipeline.tfma_metrics`). With an `evaluation.query_key`, the fused `score`
output is also judged as a ranking: TFMA groups the eval examples by request
and computes NDCG@k for each of `evaluation.ndcg_cutoffs` and the grouped AUC,
both against the label of the spec's gain task (the click); with truth columns
(ground-truth features with `truth_of`), every served output is also ranked
against its truth per request (`truth_metrics_specs`). With
`evaluation.confidence_intervals`, TFMA computes an interval for every metric.

`multi_model_eval_config` evaluates the candidate, the latest blessed model
(when there is one) and the single-task baseline (when the spec asks for it)
in one TFMA pass: the gated metrics on the candidate and the blessed model
(the no-regression gate is candidate against blessed), the same metrics
without gates on the single-task model, which is compared, never released.

With a position-bias tower TFMA calls the export's `evaluation` signature, not
`serving_default`: logged clicks are position-biased and served scores are
not, so the position-biased task is judged with its position logit added (its
fit to the logs); the other outputs, and the fused score, are the served ones
(docs/evaluation.md).

A slice on a bucketized feature (census's `age_bucket`) is a slice per
bucket, and one on a feature reading a column of another name (Ali-CCP's
`user_gender`, column `124`) a slice per value of that column, named after
the feature: TFMA calls the export's `slice_features` signature for them. A
slice on an identifier or ground truth of a column of another name is refused
at load (models/spec_parsing.py): it is no model input, so not served.
"""

from __future__ import annotations

import json
from typing import Dict, List

import tensorflow_model_analysis as tfma

from contract import (
  EVAL_SIGNATURE,
  FUSED_SCORE_OUTPUT,
  SERVED_OUTPUT_SUFFIX,
  SERVING_SIGNATURE,
  SLICE_SIGNATURE,
)
from models.export import has_eval_signature
from models.spec import RankingSpec, TaskSpec, Threshold
from models.spec_truth import is_truth_metric
from pipeline import tfma_metrics, tfma_truth_metrics

INFERENCE_BATCH_SIZE = 4096
# Spec metric name -> (TFMA metric class, the name TFMA reports it under).
GATE_METRICS: Dict[str, tuple] = {
  "auc": ("AUC", "auc"),
  "pr_auc": ("AUCPrecisionRecall", "auc_precision_recall"),
  "log_loss": ("BinaryCrossEntropy", "binary_crossentropy"),
  "mse": ("MeanSquaredError", "mean_squared_error"),
  "mae": ("MeanAbsoluteError", "mean_absolute_error"),
}
# TFMA feeds every example of every slice to each distinct combiner, in Python:
# per binary task three (example count, the calibration histogram that AUC,
# PR-AUC, the plot, ECE and calibration share, log loss); a weighted
# (conditional) task also counts its weight. Calibration, mean label and mean
# prediction come from the histogram (tfma_metrics.HistogramCalibration), not
# from TFMA's fourth combiner (docs/evaluation.md).
BINARY_METRICS = (
  "ExampleCount",
  "AUC",
  "AUCPrecisionRecall",
  "BinaryCrossEntropy",
)
WEIGHTED_METRICS = ("WeightedExampleCount",)
BINARY_PLOTS = ("CalibrationPlot",)
CUSTOM_METRICS_MODULE = tfma_metrics.__name__
BINARY_CUSTOM_METRICS = (
  tfma_metrics.ExpectedCalibrationError.__name__,
  tfma_metrics.HistogramCalibration.__name__,
)
REGRESSION_METRICS = (
  "ExampleCount",
  "MeanSquaredError",
  "MeanAbsoluteError",
  "MeanLabel",
  "MeanPrediction",
)


def sliced_derived_features(spec: RankingSpec) -> List[str]:
  """The derived features a slice names (a bucketized feature, a feature
  reading a column of another name): TFMA takes their values from the export's
  `slice_features` signature (its transformed features, searched before the
  raw ones), as the raw examples hold the column under its own name."""
  derived = set(spec.derived_features)
  return sorted({c for s in spec.evaluation.slices for c in s if c in derived})


def evaluated_feature_columns(spec: RankingSpec) -> List[str]:
  """The raw columns TFMA reads once labels and example weights are
  extracted: the slices', the query key, and the ranking metrics' gain,
  truth and position columns. Everything else can leave the extracts."""
  columns = [c for s in spec.evaluation.slices for c in s]
  if spec.evaluation.query_key is not None:
    columns += [spec.evaluation.query_key, spec.gain_task.label]
    columns += [feature.column for feature in spec.truth_features.values()]
    if spec.position_feature is not None:
      columns.append(spec.position_feature.column)
  return list(dict.fromkeys(columns))


def slicing_specs(spec: RankingSpec) -> List[tfma.SlicingSpec]:
  return [tfma.SlicingSpec()] + [
    tfma.SlicingSpec(feature_keys=list(s)) for s in spec.evaluation.slices
  ]


def _metric_threshold(threshold: Threshold) -> tfma.MetricThreshold:
  higher = threshold.higher_is_better
  result = tfma.MetricThreshold()
  if threshold.value is not None:
    bound = {"lower_bound" if higher else "upper_bound": {"value": threshold.value}}
    result.value_threshold.CopyFrom(tfma.GenericValueThreshold(**bound))
  if threshold.max_regression is not None:
    result.change_threshold.CopyFrom(
      tfma.GenericChangeThreshold(
        direction=(
          tfma.MetricDirection.HIGHER_IS_BETTER if higher else tfma.MetricDirection.LOWER_IS_BETTER
        ),
        absolute={"value": -threshold.max_regression if higher else threshold.max_regression},
      )
    )
  return result


def _metric_configs(
  spec: RankingSpec, task: TaskSpec, with_gates: bool = True
) -> List[tfma.MetricConfig]:
  gated_slices = [tfma.SlicingSpec()] + [
    tfma.SlicingSpec(feature_keys=list(s)) for s in spec.evaluation.gated_slices
  ]
  thresholds = {
    GATE_METRICS[t.metric][0]: t
    for t in spec.evaluation.thresholds
    if with_gates and t.task == task.name and t.metric in GATE_METRICS
  }
  names = (BINARY_METRICS + BINARY_PLOTS) if task.is_binary else REGRESSION_METRICS
  if task.parent:
    names = names[:1] + WEIGHTED_METRICS + names[1:]
  configs = []
  for class_name in names:
    config = tfma.MetricConfig(class_name=class_name)
    if class_name in thresholds:
      config.per_slice_thresholds.append(
        tfma.PerSliceMetricThreshold(
          slicing_specs=gated_slices, threshold=_metric_threshold(thresholds[class_name])
        )
      )
    configs.append(config)
  if task.is_binary:
    configs += [
      tfma.MetricConfig(class_name=name, module=CUSTOM_METRICS_MODULE)
      for name in BINARY_CUSTOM_METRICS
    ]
  return configs


def ranking_metrics_spec(spec: RankingSpec) -> tfma.MetricsSpec | None:
  """NDCG@k and grouped AUC of the fused score per request, or None without a
  query key. The gain is the gain task's raw label column (0/1 clicks)."""
  if spec.evaluation.query_key is None:
    return None
  gain = spec.gain_task.label
  return tfma.MetricsSpec(
    output_names=[FUSED_SCORE_OUTPUT],
    query_key=spec.evaluation.query_key,
    metrics=[
      tfma.MetricConfig(
        class_name="NDCG",
        config=json.dumps({"gain_key": gain, "top_k_list": list(spec.evaluation.ndcg_cutoffs)}),
      ),
      tfma.MetricConfig(
        class_name=tfma_metrics.GroupedAUC.__name__,
        module=CUSTOM_METRICS_MODULE,
        config=json.dumps({"label_key": gain}),
      ),
    ],
  )


def truth_output(spec: RankingSpec, target: str) -> str:
  """The output ranked against `target`'s truth: the served one (under
  `<task>_served` in the `evaluation` signature for the position-biased task)."""
  if has_eval_signature(spec) and target == (spec.model.position_bias_task or spec.tasks[0].name):
    return target + SERVED_OUTPUT_SUFFIX
  return target


def truth_metrics_specs(spec: RankingSpec, with_gates: bool = True) -> List[tfma.MetricsSpec]:
  """Per output with a truth (`truth_of`), one MetricsSpec grouping by the query
  key with `tfma_truth_metrics.TruthRanking`, and the spec's truth thresholds on
  the overall slice and the gated slices (TFMA keys a MetricsSpec's thresholds
  by metric name, so each output has its own spec). None without a query key."""
  if spec.evaluation.query_key is None:
    return []
  position = spec.position_feature
  gated_slices = [tfma.SlicingSpec()] + [
    tfma.SlicingSpec(feature_keys=list(s)) for s in spec.evaluation.gated_slices
  ]
  specs = []
  for target, feature in spec.truth_features.items():
    output = truth_output(spec, target)
    config = {
      "truths": {output: feature.column},
      "position_key": position.column if position is not None else "",
      "cutoffs": list(spec.evaluation.ndcg_cutoffs),
    }
    if target == FUSED_SCORE_OUTPUT:
      # Each head of the score against the true utility: does fusing help?
      config["also"] = {t: truth_output(spec, t) for t in spec.serving.score}
    metrics_spec = tfma.MetricsSpec(
      output_names=[output],
      query_key=spec.evaluation.query_key,
      metrics=[
        tfma.MetricConfig(
          class_name=tfma_truth_metrics.TruthRanking.__name__,
          module=tfma_truth_metrics.__name__,
          config=json.dumps(config),
        )
      ],
    )
    for t in spec.evaluation.thresholds:
      if with_gates and t.task == target and is_truth_metric(t.metric):
        metrics_spec.per_slice_thresholds[t.metric].thresholds.append(
          tfma.PerSliceMetricThreshold(slicing_specs=gated_slices, threshold=_metric_threshold(t))
        )
    specs.append(metrics_spec)
  return specs


def eval_config_from_spec(spec: RankingSpec, with_gates: bool = True) -> tfma.EvalConfig:
  """The candidate's EvalConfig; `with_gates=False` leaves every threshold out."""
  example_weight_keys = {t.name: spec.parent_label(t) for t in spec.tasks if t.parent}
  label_keys = {t.name: t.label for t in spec.tasks}
  ranking = ranking_metrics_spec(spec)
  if ranking is not None:
    label_keys[FUSED_SCORE_OUTPUT] = spec.gain_task.label
  model_spec = tfma.ModelSpec(
    signature_name=EVAL_SIGNATURE if has_eval_signature(spec) else SERVING_SIGNATURE,
    label_keys=label_keys,
    example_weight_keys=example_weight_keys,
    # TFMA's adaptive batching settles on batches of ~40 examples; one large
    # batch per inference call is several times faster on CPU.
    inference_batch_size=INFERENCE_BATCH_SIZE,
    preprocessing_function_names=[SLICE_SIGNATURE] if sliced_derived_features(spec) else [],
  )
  metrics_specs = [
    tfma.MetricsSpec(output_names=[t.name], metrics=_metric_configs(spec, t, with_gates))
    for t in spec.tasks
  ]
  if ranking is not None:
    metrics_specs.append(ranking)
  metrics_specs += truth_metrics_specs(spec, with_gates)
  options = tfma.Options()
  options.compute_confidence_intervals.value = spec.evaluation.confidence_intervals
  # No TFMA min_slice_size: TFMA 0.47 reports every thresholded metric of a
  # suppressed slice as "Metric not found", even on slices no threshold names,
  # which blocks every release. Small slices are hidden in the report instead.
  return tfma.EvalConfig(
    model_specs=[model_spec],
    slicing_specs=slicing_specs(spec),
    metrics_specs=metrics_specs,
    options=options,
  )


def multi_model_eval_config(spec: RankingSpec, has_baseline: bool) -> tfma.EvalConfig:
  """One EvalConfig for the candidate and, when there is one, the blessed baseline.

  Without a baseline TFMA names the lone model "". The single-task baseline is
  not evaluated by TFMA: its MTL - STL comparison comes from the Evaluator's
  own paired bootstrap on the same eval rows (`pipeline.model_comparison`),
  which spared TFMA a third of its combiners.
  """
  config = eval_config_from_spec(spec)
  if not has_baseline:
    return config
  candidate = config.model_specs[0]
  candidate.name = tfma.CANDIDATE_KEY
  baseline = config.model_specs.add()
  baseline.CopyFrom(candidate)
  baseline.name, baseline.is_baseline = tfma.BASELINE_KEY, True
  for metrics_spec in config.metrics_specs:
    metrics_spec.model_names[:] = [tfma.CANDIDATE_KEY, tfma.BASELINE_KEY]
  return config
