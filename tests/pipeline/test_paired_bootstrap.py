"""The paired bootstrap of MTL - STL: its estimators against direct computations,
ties when the models do not differ, a clear winner when they do, requests kept
whole, and the verdict read from the interval."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import paired_bootstrap as pb
from pipeline.results import BaselineComparison


def _exact_auc(labels, scores):
  pos, neg = scores[labels == 1], scores[labels == 0]
  greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return greater / (len(pos) * len(neg))


def _data(n=3000, seed=1):
  rng = np.random.default_rng(seed)
  labels = (rng.random(n) < 0.3).astype(np.float64)
  good = 1 / (1 + np.exp(-(2.0 * labels - 1 + rng.normal(0, 1.0, n))))
  poor = 1 / (1 + np.exp(-(0.6 * labels - 0.3 + rng.normal(0, 1.0, n))))
  return labels, good, poor


def test_full_sample_estimators_match_direct_computations():
  labels, good, _ = _data()
  ones = np.ones((1, len(labels)), dtype=np.float32)
  metrics = pb.binary_metrics(ones, labels, np.ones_like(labels), good)
  assert metrics["auc"][0] == pytest.approx(_exact_auc(labels, good), abs=2e-3)
  p = np.clip(good, 1e-7, 1 - 1e-7)
  log_loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  assert metrics["binary_crossentropy"][0] == pytest.approx(log_loss)
  bins = np.minimum((good * 10).astype(int), 9)
  ece = sum(abs(labels[bins == b].sum() - good[bins == b].sum()) for b in range(10)) / len(good)
  assert metrics["expected_calibration_error"][0] == pytest.approx(ece)
  regression = pb.regression_metrics(ones, labels, np.ones_like(labels), good)
  assert regression["mean_squared_error"][0] == pytest.approx(np.mean((good - labels) ** 2))


def test_same_model_is_a_tie_and_a_better_model_wins():
  labels, good, poor = _data()
  weights = pb.poisson_weights(len(labels), 200, seed=0)
  example_weights = np.ones_like(labels)
  same = pb.paired_intervals(pb.binary_metrics, labels, example_weights, good, good, weights)
  assert same["auc"].lower == same["auc"].upper == 0.0
  better = pb.paired_intervals(pb.binary_metrics, labels, example_weights, good, poor, weights)
  assert better["auc"].lower > 0 and better["auc"].estimate > 0
  assert better["binary_crossentropy"].upper < 0
  # A tiny perturbation of one model: the interval straddles zero.
  rng = np.random.default_rng(3)
  nudged = np.clip(good + rng.normal(0, 1e-3, len(good)), 0, 1)
  close = pb.paired_intervals(pb.binary_metrics, labels, example_weights, good, nudged, weights)
  assert close["auc"].lower < 0 < close["auc"].upper


def test_pairing_narrows_the_interval_against_independent_resamples():
  labels, good, poor = _data()
  weights = pb.poisson_weights(len(labels), 300, seed=0)
  other = pb.poisson_weights(len(labels), 300, seed=1)
  ones = np.ones_like(labels)
  paired = (
    pb.binary_metrics(weights, labels, ones, good)["auc"]
    - pb.binary_metrics(weights, labels, ones, poor)["auc"]
  )
  unpaired = (
    pb.binary_metrics(weights, labels, ones, good)["auc"]
    - pb.binary_metrics(other, labels, ones, poor)["auc"]
  )
  assert paired.std() < unpaired.std()


def test_rows_of_one_request_share_their_weight():
  groups = np.repeat(np.arange(50), 4)
  weights = pb.poisson_weights(len(groups), 20, seed=0, groups=groups)
  assert weights.shape == (20, 200)
  for request in range(50):
    block = weights[:, groups == request]
    assert (block == block[:, :1]).all()


def test_verdict_is_a_tie_when_the_interval_holds_zero():
  tie = BaselineComparison("income", "overall", "auc", 0.9430, 0.94301, True, -0.001, 0.001)
  assert tie.verdict == "tie"
  win = BaselineComparison("income", "overall", "auc", 0.95, 0.94, True, 0.004, 0.016)
  assert win.verdict == "MTL better"
  loss = BaselineComparison(
    "income", "overall", "binary_crossentropy", 0.30, 0.29, False, 0.002, 0.02
  )
  assert loss.verdict == "STL better"
  no_interval = BaselineComparison("income", "overall", "auc", 0.9430, 0.94301, True)
  assert no_interval.verdict == "STL better"
