"""A custom TFMA metric: each request's served outputs ranked against the
simulator's position-free truth (`pipeline.ranking_truth` has the math).

Logged clicks are position-biased and the served scores position-free, so an
AUC against the logs mixes the model with the production ranker's placement.
With truth columns (spec features of kind `ground_truth` with `truth_of`) the
ranking can be judged directly: `TruthRanking`, in a `MetricsSpec` with a
`query_key`, computes per output (the fused score, the served click, each
task) and per request, against that output's truth column:

* `truth_ndcg@k` for each cutoff and `truth_agreement` (pairwise agreement);
* the same for the logged position order (`..._position`: position 1 first),
  a random order (`..._random`, expected values) and the oracle, the truth
  itself (`..._oracle`, 1);
* `..._share`: (model - random) / (oracle - random) of the request means, the
  share of the oracle's lift over random the output reaches, and the same for
  the position order (`..._position_share`);
* `truth_requests`: the requests averaged over;
* with `also` ({name: another output}), those outputs ranked against this
  output's truth too (`truth_<metric>_by_<name>`, and `_by_<name>_share`): each
  task head against the true utility, beside the fused score.

An output missing from the predictions (a baseline exported before the
`_served` output existed) contributes no request.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import util

from pipeline import ranking_truth
from pipeline.ranking_truth import (
  BASELINES,
  TRUTH_RANKING_NAME,
  TRUTH_REQUESTS,
  metric_names,
  result_name,
)


class TruthRanking(metric_types.Metric):
  """Per-request NDCG@k and pairwise agreement of each output against its
  truth feature (`truths`: {output name: feature key}), with the position,
  random and oracle orders and the oracle shares (needs a `query_key`)."""

  def __init__(
    self,
    truths: Mapping[str, str],
    position_key: str = "",
    cutoffs: Sequence[int] = (10,),
    also: Mapping[str, str] | None = None,
    name: str = TRUTH_RANKING_NAME,
  ):
    super().__init__(
      _truth_ranking,
      truths=dict(truths),
      position_key=position_key,
      cutoffs=list(cutoffs),
      also=dict(also or {}),
      name=name,
    )


metric_types.register_metric(TruthRanking)


def _truth_ranking(
  truths: Mapping[str, str],
  position_key: str = "",
  cutoffs: Sequence[int] = (10,),
  also: Mapping[str, str] | None = None,
  name: str = TRUTH_RANKING_NAME,
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
      if output_name not in truths:
        raise ValueError(f"{name}: no truth for output {output_name!r} (truths: {dict(truths)})")
      also = dict(also or {})
      names = _result_names(cutoffs, bool(position_key), tuple(also))
      keys = [
        metric_types.MetricKey(
          n, model_name=model_name, output_name=output_name, example_weighted=example_weighted
        )
        for n in names
      ]
      feature_keys = [query_key, truths[output_name]] + ([position_key] if position_key else [])
      computations.append(
        metric_types.MetricComputation(
          keys=keys,
          preprocessors=[metric_types.CombinedFeaturePreprocessor(feature_keys=feature_keys)],
          combiner=_TruthRankingCombiner(
            dict(zip(names, keys)),
            model_name,
            output_name,
            truths[output_name],
            position_key,
            tuple(cutoffs),
            also,
          ),
        )
      )
  return computations


def _scores(with_position: bool, also: Sequence[str] = ()) -> Tuple[str, ...]:
  return (
    ("model",) + (BASELINES if with_position else BASELINES[1:]) + tuple(f"by_{a}" for a in also)
  )


def _shared(with_position: bool, also: Sequence[str]) -> Tuple[str, ...]:
  """The scores whose oracle share is reported."""
  return ("model",) + (("position",) if with_position else ()) + tuple(f"by_{a}" for a in also)


def _result_names(
  cutoffs: Sequence[int], with_position: bool, also: Sequence[str] = ()
) -> List[str]:
  names = [TRUTH_REQUESTS]
  for metric in metric_names(cutoffs):
    names += [result_name(metric, s) for s in _scores(with_position, also)]
    names += [result_name(metric, s, share=True) for s in _shared(with_position, also)]
  return names


def summarise(
  sums: Mapping[Tuple[str, str], float],
  counts: Mapping[Tuple[str, str], int],
  requests: int,
  cutoffs: Sequence[int],
  with_position: bool,
  also: Sequence[str] = (),
) -> Dict[str, float]:
  """The metric values by result name, from per-(score, metric) sums and counts
  of request values: means, and the shares of the oracle's lift over random."""
  out = {TRUTH_REQUESTS: float(requests)}
  for metric in metric_names(cutoffs):
    mean = {
      s: sums[(s, metric)] / counts[(s, metric)] if counts.get((s, metric)) else float("nan")
      for s in _scores(with_position, also)
    }
    for s, value in mean.items():
      out[result_name(metric, s)] = value
    for s in _shared(with_position, also):
      out[result_name(metric, s, share=True)] = ranking_truth.oracle_share(mean[s], mean["random"])
  return out


class _TruthRankingCombiner(beam.CombineFn):
  """Accumulates ({(score, metric): sum over requests}, {(score, metric): count}, requests)."""

  def __init__(
    self,
    keys: Dict[str, metric_types.MetricKey],
    model_name: str,
    output_name: str,
    truth_key: str,
    position_key: str,
    cutoffs: Tuple[int, ...],
    also: Mapping[str, str],
  ):
    self._keys = keys
    self._also = dict(also)
    self._model_name = model_name
    self._output_name = output_name
    self._truth_key = truth_key
    self._position_key = position_key
    self._cutoffs = cutoffs

  def create_accumulator(self) -> List[Any]:
    return [{}, {}, 0]

  def _prediction(
    self, element: metric_types.StandardMetricInputs, output_name: str
  ) -> np.ndarray | None:
    prediction = element.prediction
    for key in (self._model_name, output_name):
      if key:
        if not isinstance(prediction, Mapping) or key not in prediction:
          return None
        prediction = prediction[key]
    return np.asarray(prediction, dtype=np.float64).reshape(-1)

  def add_input(
    self, accumulator: List[Any], element: metric_types.StandardMetricInputs
  ) -> List[Any]:
    predictions = self._prediction(element, self._output_name)
    if predictions is None:
      return accumulator
    features = element.combined_features
    truth = np.asarray(util.get_by_keys(features, [self._truth_key]), np.float64).reshape(-1)
    if truth.size != predictions.size:
      raise ValueError(
        f"{self._truth_key}: {truth.size} truths for {predictions.size} predictions in one request"
      )
    scores = {"model": predictions}
    if self._position_key:
      position = util.get_by_keys(features, [self._position_key])
      scores["position"] = -np.asarray(position, np.float64).reshape(-1)
    for label, output in self._also.items():
      other = self._prediction(element, output)
      if other is not None and other.size == predictions.size:
        scores[f"by_{label}"] = other
    sums, counts, _ = accumulator
    for key, value in ranking_truth.request_metrics(truth, scores, self._cutoffs).items():
      sums[key] = sums.get(key, 0.0) + value
      counts[key] = counts.get(key, 0) + 1
    accumulator[2] += 1
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[List[Any]]) -> List[Any]:
    result = self.create_accumulator()
    for sums, counts, requests in accumulators:
      for key, value in sums.items():
        result[0][key] = result[0].get(key, 0.0) + value
      for key, value in counts.items():
        result[1][key] = result[1].get(key, 0) + value
      result[2] += requests
    return result

  def extract_output(self, accumulator: List[Any]) -> Dict[metric_types.MetricKey, float]:
    sums, counts, requests = accumulator
    values = summarise(
      sums, counts, requests, self._cutoffs, bool(self._position_key), tuple(self._also)
    )
    return {self._keys[name]: value for name, value in values.items()}
