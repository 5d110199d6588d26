"""Paired bootstrap of a metric's difference between two models on the same rows.

The multi-task model and its single-task baseline are scored on the same eval
examples, so their difference is judged on resamples that keep each example's
two predictions together: a Poisson(1) weight per example (or per request, when
the spec has a query key, so that a request's items move together) and
replicate, the same weights for both models. The interval of MTL - STL is the
2.5 and 97.5 % quantiles of the replicates' differences; a difference whose
interval holds zero is a tie.

The estimators work on buckets of the prediction (AUC and PR-AUC from the
weighted positives and negatives per bucket, as TFMA's own AUC does), so one
replicate costs a few vectorised sums over the rows, not a sort.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Tuple

import numpy as np

DEFAULT_REPLICATES = 200
DEFAULT_LEVEL = 0.95
AUC_BUCKETS = 1000
ECE_BINS = 10
_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Interval:
  """A difference's estimate on all rows and its bootstrap quantiles."""

  estimate: float
  lower: float
  upper: float

  def as_dict(self) -> Dict[str, float]:
    return dataclasses.asdict(self)


def poisson_weights(
  num_rows: int, replicates: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
  """(replicates, rows) Poisson(1) resampling weights; rows of one group share a weight."""
  rng = np.random.default_rng(seed)
  if groups is None:
    return rng.poisson(1.0, size=(replicates, num_rows)).astype(np.float32)
  _, index = np.unique(groups, return_inverse=True)
  per_group = rng.poisson(1.0, size=(replicates, int(index.max()) + 1)).astype(np.float32)
  return per_group[:, index]


def _bucket_sums(weights: np.ndarray, values: np.ndarray, buckets: np.ndarray, size: int):
  """Per replicate, the sum of weight x value in each bucket: (replicates, size)."""
  order = np.argsort(buckets, kind="stable")
  sorted_buckets = buckets[order]
  starts = np.searchsorted(sorted_buckets, np.arange(size))
  present = np.unique(sorted_buckets)
  sums = np.add.reduceat(weights[:, order] * values[order], starts[present], axis=1)
  out = np.zeros((weights.shape[0], size), dtype=np.float64)
  out[:, present] = sums
  return out


def _buckets(predictions: np.ndarray, size: int) -> np.ndarray:
  return np.clip((predictions * size).astype(np.int64), 0, size - 1)


def _auc_and_pr_auc(weights, labels, example_weights, predictions) -> Tuple[np.ndarray, np.ndarray]:
  buckets = _buckets(predictions, AUC_BUCKETS)
  pos = _bucket_sums(weights, labels * example_weights, buckets, AUC_BUCKETS)[:, ::-1]
  neg = _bucket_sums(weights, (1 - labels) * example_weights, buckets, AUC_BUCKETS)[:, ::-1]
  # Buckets from the highest prediction down: a positive outranks the negatives
  # of lower buckets and ties half of its own bucket's.
  neg_above = np.cumsum(neg, axis=1) - neg
  total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    auc = (pos * (total_neg[:, None] - neg_above - 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
    true_pos = np.cumsum(pos, axis=1)
    precision = true_pos / np.maximum(true_pos + np.cumsum(neg, axis=1), _EPSILON)
    pr_auc = (pos * precision).sum(axis=1) / total_pos
  return auc, pr_auc


def _weighted_mean(weights, values, example_weights) -> np.ndarray:
  with np.errstate(invalid="ignore", divide="ignore"):
    return (weights @ (values * example_weights)) / (weights @ example_weights)


def _ece(weights, labels, example_weights, predictions) -> np.ndarray:
  bins = _buckets(predictions, ECE_BINS)
  label_sums = _bucket_sums(weights, labels * example_weights, bins, ECE_BINS)
  prediction_sums = _bucket_sums(weights, predictions * example_weights, bins, ECE_BINS)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.abs(label_sums - prediction_sums).sum(axis=1) / (weights @ example_weights)


def binary_metrics(weights, labels, example_weights, predictions) -> Dict[str, np.ndarray]:
  """Per replicate (row of `weights`): the compared metrics of a binary task."""
  p = np.clip(predictions, _EPSILON, 1 - _EPSILON)
  log_loss = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  auc, pr_auc = _auc_and_pr_auc(weights, labels, example_weights, predictions)
  return {
    "auc": auc,
    "auc_precision_recall": pr_auc,
    "binary_crossentropy": _weighted_mean(weights, log_loss, example_weights),
    "expected_calibration_error": _ece(weights, labels, example_weights, predictions),
  }


def regression_metrics(weights, labels, example_weights, predictions) -> Dict[str, np.ndarray]:
  """Per replicate: the compared metrics of a regression task."""
  error = predictions - labels
  return {
    "mean_squared_error": _weighted_mean(weights, error * error, example_weights),
    "mean_absolute_error": _weighted_mean(weights, np.abs(error), example_weights),
  }


MetricsFn = Callable[..., Dict[str, np.ndarray]]
REPLICATE_CHUNK = 25


def _stack(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def paired_intervals(
  metrics_fn: MetricsFn,
  labels: np.ndarray,
  example_weights: np.ndarray,
  first: np.ndarray,
  second: np.ndarray,
  weights: np.ndarray,
  level: float = DEFAULT_LEVEL,
) -> Dict[str, Interval]:
  """Per metric of `metrics_fn`: first - second on all rows and its paired interval."""
  ones = np.ones((1, labels.shape[0]), dtype=np.float32)
  args = (labels.astype(np.float64), example_weights.astype(np.float64))
  full_a, full_b = metrics_fn(ones, *args, first), metrics_fn(ones, *args, second)
  # Replicates a chunk at a time: the estimators' temporaries are (chunk, rows).
  chunks = range(0, weights.shape[0], REPLICATE_CHUNK)
  boot_a = _stack([metrics_fn(weights[i : i + REPLICATE_CHUNK], *args, first) for i in chunks])
  boot_b = _stack([metrics_fn(weights[i : i + REPLICATE_CHUNK], *args, second) for i in chunks])
  tail = (1 - level) / 2
  result = {}
  for name in full_a:
    deltas = boot_a[name] - boot_b[name]
    deltas = deltas[np.isfinite(deltas)]
    estimate = float(full_a[name][0] - full_b[name][0])
    if deltas.size == 0 or not np.isfinite(estimate):
      continue
    lower, upper = np.quantile(deltas, [tail, 1 - tail])
    result[name] = Interval(estimate, float(lower), float(upper))
  return result
