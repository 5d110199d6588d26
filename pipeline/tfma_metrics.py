"""Custom TFMA metrics: expected calibration error, calibration from the shared
histogram, and per-request (grouped) AUC.

TFMA 0.47 ships neither. Both are real TFMA metrics, computed by the Evaluator
per slice like the built-in ones; `pipeline.eval_config` references them by
`module` in a `MetricConfig`.

* `ExpectedCalibrationError`: sum over `num_bins` equal-width prediction bins of
  (weight of the bin / total weight) * |mean label - mean prediction|, derived
  from TFMA's calibration histogram (the one CalibrationPlot already computes).
* `HistogramCalibration`: calibration, mean label and mean prediction from
  that same histogram's bucket sums, instead of TFMA's separate combiner.
* `GroupedAUC`: used with a `MetricsSpec.query_key`; the mean over requests
  holding both a positive and a negative `label_key` of the AUC of the model's
  prediction within the request (ties count one half). A request with a
  single class says nothing about ordering and is left out: `grouped_auc_requests`
  counts the requests it averages over, `requests` all requests of the slice.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Sequence

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import calibration_histogram, metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import util

ECE_NAME = "expected_calibration_error"
GROUPED_AUC_NAME = "grouped_auc"
GROUPED_AUC_REQUESTS_NAME = "grouped_auc_requests"
REQUESTS_NAME = "requests"
DEFAULT_ECE_BINS = 10
CALIBRATION_NAME = "calibration"
MEAN_LABEL_NAME = "mean_label"
MEAN_PREDICTION_NAME = "mean_prediction"


def _from_default_histogram(
  names: Sequence[str],
  from_buckets: Callable[[List[calibration_histogram.Bucket]], Dict[str, float]],
  eval_config: config_pb2.EvalConfig | None,
  model_name: str,
  output_name: str,
  sub_key: metric_types.SubKey | None,
  aggregation_type: metric_types.AggregationType | None,
  class_weights: Dict[int, float] | None,
  example_weighted: bool,
) -> metric_types.MetricComputations:
  """Metrics `names` derived by `from_buckets` from TFMA's default calibration
  histogram (10,000 buckets on [0, 1]): the one AUC, PR-AUC and
  CalibrationPlot use, so TFMA computes it once for every metric built on it."""
  keys = {
    name: metric_types.MetricKey(
      name=name,
      model_name=model_name,
      output_name=output_name,
      sub_key=sub_key,
      example_weighted=example_weighted,
    )
    for name in names
  }
  computations = calibration_histogram.calibration_histogram(
    eval_config=eval_config,
    model_name=model_name,
    output_name=output_name,
    sub_key=sub_key,
    left=0.0,
    right=1.0,
    aggregation_type=aggregation_type,
    class_weights=class_weights,
    example_weighted=example_weighted,
  )
  histogram_key = computations[-1].keys[-1]

  def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, Any]:
    values = from_buckets(metrics[histogram_key])
    return {keys[name]: values[name] for name in names}

  computations.append(
    metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result)
  )
  return computations


class ExpectedCalibrationError(metric_types.Metric):
  """Expected calibration error over equal-width bins of the prediction."""

  def __init__(self, num_bins: int = DEFAULT_ECE_BINS, name: str = ECE_NAME):
    super().__init__(
      metric_util.merge_per_key_computations(_expected_calibration_error),
      num_bins=num_bins,
      name=name,
    )


metric_types.register_metric(ExpectedCalibrationError)


def expected_calibration_error(
  buckets: Iterable[calibration_histogram.Bucket], num_bins: int
) -> float:
  """ECE of histogram buckets already rebinned to `num_bins` equal-width bins."""
  total, gap = 0.0, 0.0
  for bucket in buckets:
    total += bucket.weighted_examples
    # weight * |mean label - mean prediction| = |sum of labels - sum of predictions|
    gap += abs(bucket.weighted_labels - bucket.weighted_predictions)
  return gap / total if total > 0 else float("nan")


def _expected_calibration_error(
  num_bins: int = DEFAULT_ECE_BINS,
  name: str = ECE_NAME,
  eval_config: config_pb2.EvalConfig | None = None,
  model_name: str = "",
  output_name: str = "",
  sub_key: metric_types.SubKey | None = None,
  aggregation_type: metric_types.AggregationType | None = None,
  class_weights: Dict[int, float] | None = None,
  example_weighted: bool = False,
) -> metric_types.MetricComputations:
  def from_buckets(buckets: List[calibration_histogram.Bucket]) -> Dict[str, float]:
    thresholds = [float("-inf")] + [i / num_bins for i in range(num_bins + 1)]
    rebinned = calibration_histogram.rebin(thresholds, buckets, left=0.0, right=1.0)
    return {name: expected_calibration_error(rebinned, num_bins)}

  return _from_default_histogram(
    [name],
    from_buckets,
    eval_config,
    model_name,
    output_name,
    sub_key,
    aggregation_type,
    class_weights,
    example_weighted,
  )


class HistogramCalibration(metric_types.Metric):
  """Calibration (mean prediction / mean label), mean label and mean prediction
  from the calibration histogram AUC, PR-AUC, the plot and ECE already share.

  TFMA's Calibration, MeanLabel and MeanPrediction feed every example of every
  slice into one more combiner; the histogram's bucket sums hold the same
  weighted totals, so these come at no per-example cost. Same names and values
  as TFMA's (up to float summation order).
  """

  def __init__(self, name: str = CALIBRATION_NAME):
    super().__init__(metric_util.merge_per_key_computations(_histogram_calibration), name=name)


metric_types.register_metric(HistogramCalibration)


def _histogram_calibration(
  name: str = CALIBRATION_NAME,
  eval_config: config_pb2.EvalConfig | None = None,
  model_name: str = "",
  output_name: str = "",
  sub_key: metric_types.SubKey | None = None,
  aggregation_type: metric_types.AggregationType | None = None,
  class_weights: Dict[int, float] | None = None,
  example_weighted: bool = False,
) -> metric_types.MetricComputations:
  def from_buckets(buckets: List[calibration_histogram.Bucket]) -> Dict[str, float]:
    weight = sum(b.weighted_examples for b in buckets)
    labels = sum(b.weighted_labels for b in buckets)
    predictions = sum(b.weighted_predictions for b in buckets)
    nan = float("nan")
    return {
      name: predictions / labels if labels else nan,
      MEAN_LABEL_NAME: labels / weight if weight else nan,
      MEAN_PREDICTION_NAME: predictions / weight if weight else nan,
    }

  return _from_default_histogram(
    [name, MEAN_LABEL_NAME, MEAN_PREDICTION_NAME],
    from_buckets,
    eval_config,
    model_name,
    output_name,
    sub_key,
    aggregation_type,
    class_weights,
    example_weighted,
  )


class GroupedAUC(metric_types.Metric):
  """Mean per-request AUC of the prediction against the binary `label_key`
  feature, over requests with both classes (needs a `query_key`)."""

  def __init__(self, label_key: str, name: str = GROUPED_AUC_NAME):
    super().__init__(_grouped_auc, label_key=label_key, name=name)


metric_types.register_metric(GroupedAUC)


def request_auc(labels: np.ndarray, predictions: np.ndarray) -> float | None:
  """AUC within one request (ties one half); None without both classes."""
  positive = predictions[labels > 0]
  negative = predictions[labels <= 0]
  if positive.size == 0 or negative.size == 0:
    return None
  greater = (positive[:, None] > negative[None, :]).sum()
  ties = (positive[:, None] == negative[None, :]).sum()
  return float(greater + 0.5 * ties) / (positive.size * negative.size)


def _grouped_auc(
  label_key: str,
  name: str = GROUPED_AUC_NAME,
  eval_config: config_pb2.EvalConfig | None = None,
  model_names: List[str] | None = None,
  output_names: List[str] | None = None,
  example_weighted: bool = False,
  query_key: str = "",
) -> metric_types.MetricComputations:
  if not query_key:
    raise ValueError(f"{name} needs a query_key in its MetricsSpec")
  computations = []
  for model_name in model_names or [""]:
    for output_name in output_names or [""]:
      keys = [
        metric_types.MetricKey(
          n, model_name=model_name, output_name=output_name, example_weighted=example_weighted
        )
        for n in (name, GROUPED_AUC_REQUESTS_NAME, REQUESTS_NAME)
      ]
      computations.append(
        metric_types.MetricComputation(
          keys=keys,
          preprocessors=[
            metric_types.CombinedFeaturePreprocessor(feature_keys=[query_key, label_key])
          ],
          combiner=_GroupedAUCCombiner(keys, eval_config, model_name, output_name, label_key),
        )
      )
  return computations


class _GroupedAUCCombiner(beam.CombineFn):
  """Accumulates [sum of per-request AUCs, requests with both classes, requests]."""

  def __init__(
    self,
    keys: List[metric_types.MetricKey],
    eval_config: config_pb2.EvalConfig | None,
    model_name: str,
    output_name: str,
    label_key: str,
  ):
    self._keys = keys
    self._eval_config = eval_config
    self._model_name = model_name
    self._output_name = output_name
    self._label_key = label_key

  def create_accumulator(self) -> List[float]:
    return [0.0, 0.0, 0.0]

  def add_input(
    self, accumulator: List[float], element: metric_types.StandardMetricInputs
  ) -> List[float]:
    _, predictions, _ = next(
      metric_util.to_label_prediction_example_weight(
        element,
        eval_config=self._eval_config,
        model_name=self._model_name,
        output_name=self._output_name,
        flatten=False,
        require_single_example_weight=True,
      )
    )
    labels = util.get_by_keys(element.combined_features, [self._label_key])
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if labels.size != predictions.size:
      raise ValueError(
        f"{self._label_key}: {labels.size} labels for {predictions.size} predictions in one request"
      )
    auc = request_auc(labels, predictions)
    accumulator[2] += 1
    if auc is not None:
      accumulator[0] += auc
      accumulator[1] += 1
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[List[float]]) -> List[float]:
    result = self.create_accumulator()
    for accumulator in accumulators:
      result = [a + b for a, b in zip(result, accumulator)]
    return result

  def extract_output(self, accumulator: List[float]) -> Dict[metric_types.MetricKey, float]:
    total, with_both_classes, requests = accumulator
    return {
      self._keys[0]: total / with_both_classes if with_both_classes else float("nan"),
      self._keys[1]: with_both_classes,
      self._keys[2]: requests,
    }
