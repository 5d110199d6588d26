"""Our TFMA metrics (ECE, grouped AUC) and the spec's ranking MetricsSpec, in a
real TFMA run (`tfma.run_model_analysis`, Beam in memory) on examples that
carry their own predictions, against the same quantities computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions

from models.spec import load_spec
from pipeline import config, results, tfma_metrics
from pipeline.eval_config import CUSTOM_METRICS_MODULE, ranking_metrics_spec

# Minutes of TensorFlow or Beam work: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REQUESTS, SLATE = 60, 6


@pytest.fixture(scope="module")
def ranking_spec():
  return load_spec("synthetic").replace(
    evaluation={"ndcg_cutoffs": (3, 6), "confidence_intervals": True, "min_slice_size": 1}
  )


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
  """Requests of SLATE items: click labels, click and score predictions, device."""
  rng = np.random.default_rng(3)
  rows = []
  for request in range(REQUESTS):
    device = "phone" if request % 3 else "desktop"
    relevance = rng.normal(size=SLATE)
    clicks = (rng.random(SLATE) < 1 / (1 + np.exp(-2 * relevance))).astype(int)
    click_pred = 1 / (1 + np.exp(-relevance + rng.normal(scale=0.5, size=SLATE)))
    for i in range(SLATE):
      rows.append(
        {
          "request_id": f"r{request}",
          "device": device,
          "click": int(clicks[i]),
          "click_pred": float(click_pred[i]),
          "score_pred": float(click_pred[i] * 0.5),
        }
      )
  path = tmp_path_factory.mktemp("tfma") / "examples.tfrecord"
  with tf.io.TFRecordWriter(str(path)) as writer:
    for row in rows:
      feature = {
        "request_id": tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[row["request_id"].encode()])
        ),
        "device": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["device"].encode()])),
        "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["click"]])),
        "click_pred": tf.train.Feature(float_list=tf.train.FloatList(value=[row["click_pred"]])),
        "score_pred": tf.train.Feature(float_list=tf.train.FloatList(value=[row["score_pred"]])),
      }
      writer.write(
        tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
      )
  return path, rows


@pytest.fixture(scope="module")
def evaluated(logged, ranking_spec, tmp_path_factory) -> Path:
  path, _ = logged
  eval_config = tfma.EvalConfig(
    model_specs=[
      tfma.ModelSpec(
        label_keys={"click": "click", "score": "click"},
        prediction_keys={"click": "click_pred", "score": "score_pred"},
      )
    ],
    slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["device"])],
    metrics_specs=[
      tfma.MetricsSpec(
        output_names=["click"],
        metrics=[
          tfma.MetricConfig(class_name="ExampleCount"),
          tfma.MetricConfig(class_name="AUC"),
          tfma.MetricConfig(class_name="ExpectedCalibrationError", module=CUSTOM_METRICS_MODULE),
          tfma.MetricConfig(class_name="HistogramCalibration", module=CUSTOM_METRICS_MODULE),
        ],
      ),
      # TFMA's own, under another model-free name set: compared in a test below.
      tfma.MetricsSpec(
        output_names=["score"],
        metrics=[
          tfma.MetricConfig(class_name=name)
          for name in ("Calibration", "MeanLabel", "MeanPrediction")
        ],
      ),
      ranking_metrics_spec(ranking_spec),
    ],
    options=tfma.Options(compute_confidence_intervals={"value": True}),
  )
  out = tmp_path_factory.mktemp("tfma-out")
  tfma.run_model_analysis(
    eval_config=eval_config,
    data_location=str(path),
    output_path=str(out),
    random_seed_for_testing=1,
    pipeline_options=PipelineOptions(config.BEAM_PIPELINE_ARGS),
  )
  return out


def _ece(labels: np.ndarray, predictions: np.ndarray, bins: int = 10) -> float:
  index = np.minimum((predictions * bins).astype(int), bins - 1)
  return (
    sum(abs(labels[index == b].sum() - predictions[index == b].sum()) for b in range(bins))
    / labels.size
  )


def _grouped_auc(rows, keep=lambda row: True):
  aucs = []
  for request in sorted({r["request_id"] for r in rows if keep(r)}):
    members = [r for r in rows if r["request_id"] == request]
    labels = np.array([r["click"] for r in members])
    scores = np.array([r["score_pred"] for r in members])
    positive, negative = scores[labels == 1], scores[labels == 0]
    if positive.size and negative.size:
      aucs.append(np.mean([(p > n) + 0.5 * (p == n) for p in positive for n in negative]))
  return float(np.mean(aucs)), len(aucs)


def test_ece_matches_the_binned_gap(evaluated, logged, ranking_spec):
  _, rows = logged
  metrics = results.slice_metrics(ranking_spec, str(evaluated))
  labels = np.array([r["click"] for r in rows], dtype=float)
  predictions = np.array([r["click_pred"] for r in rows])
  click = metrics[("click", "overall")]
  assert click["example_count"] == REQUESTS * SLATE
  assert click["expected_calibration_error"] == pytest.approx(_ece(labels, predictions), abs=1e-4)
  assert 0 < click["expected_calibration_error"] < 1


def test_histogram_calibration_equals_tfma_own_and_the_sums(evaluated, logged, ranking_spec):
  _, rows = logged
  labels = np.array([r["click"] for r in rows], dtype=float)
  predictions = np.array([r["click_pred"] for r in rows])
  click = results.slice_metrics(ranking_spec, str(evaluated))[("click", "overall")]
  assert click["mean_label"] == pytest.approx(labels.mean(), rel=1e-6)
  assert click["mean_prediction"] == pytest.approx(predictions.mean(), rel=1e-6)
  assert click["calibration"] == pytest.approx(predictions.sum() / labels.sum(), rel=1e-6)
  # TFMA's own Calibration on the score output (label click): the same definition.
  score = results.slice_metrics(ranking_spec, str(evaluated))[("score", "overall")]
  scores = np.array([r["score_pred"] for r in rows])
  assert score["calibration"] == pytest.approx(scores.sum() / labels.sum(), rel=1e-6)
  assert score["mean_label"] == pytest.approx(labels.mean(), rel=1e-6)


def test_grouped_auc_and_ndcg_are_computed_per_request_and_slice(evaluated, logged, ranking_spec):
  _, rows = logged
  metrics = results.slice_metrics(ranking_spec, str(evaluated))
  score = metrics[("score", "overall")]
  expected, requests = _grouped_auc(rows)
  assert score["grouped_auc"] == pytest.approx(expected, abs=1e-6)
  assert score["grouped_auc_requests"] == requests
  assert score["requests"] == REQUESTS
  assert set(score) >= {"ndcg@3", "ndcg@6"}
  assert 0 < score["ndcg@3"] <= 1 and 0 < score["ndcg@6"] <= 1
  phone, phone_requests = _grouped_auc(rows, lambda r: r["device"] == "phone")
  # A slice's grouped AUC is over that slice's requests only.
  assert metrics[("score", "device=phone")]["grouped_auc"] == pytest.approx(phone, abs=1e-6)
  assert metrics[("score", "device=phone")]["grouped_auc_requests"] == phone_requests


def test_confidence_intervals_bracket_the_value_when_asked(evaluated, ranking_spec):
  metrics = results.slice_metrics(ranking_spec, str(evaluated))
  for output, metric in (
    ("click", "auc"),
    ("click", "expected_calibration_error"),
    ("score", "grouped_auc"),
  ):
    values = metrics[(output, "overall")]
    assert values[metric + "_lower"] <= values[metric] <= values[metric + "_upper"], metric
    assert values[metric + "_lower"] < values[metric + "_upper"], metric


def test_request_auc_counts_ties_as_half_and_skips_single_class():
  assert tfma_metrics.request_auc(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.1])) == 0.75
  assert tfma_metrics.request_auc(np.array([0, 0]), np.array([0.2, 0.1])) is None
