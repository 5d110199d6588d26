"""Our TFMA metrics (ECE, grouped AUC, ranking against the truth) and the spec's
ranking MetricsSpecs, in a
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
from pipeline import config, ranking_truth, results, tfma_extracts, tfma_metrics
from pipeline.eval_config import (
  CUSTOM_METRICS_MODULE,
  evaluated_feature_columns,
  ranking_metrics_spec,
  truth_metrics_specs,
)

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
    # Position-free truths: the attraction, and a utility the score only partly follows.
    attraction = 1 / (1 + np.exp(-relevance))
    utility = attraction * np.exp(rng.normal(scale=0.7, size=SLATE))
    position = rng.permutation(SLATE) + 1
    for i in range(SLATE):
      rows.append(
        {
          "request_id": f"r{request}",
          "device": device,
          "click": int(clicks[i]),
          "click_pred": float(click_pred[i]),
          "score_pred": float(click_pred[i] * 0.5),
          "attraction": float(attraction[i]),
          "utility": float(utility[i]),
          "position": int(position[i]),
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
        "position": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["position"]])),
      }
      for truth in ("attraction", "utility"):
        feature[truth] = tf.train.Feature(float_list=tf.train.FloatList(value=[row[truth]]))
      writer.write(
        tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
      )
  return path, rows


@pytest.fixture(scope="module")
def evaluated(logged, ranking_spec, tmp_path_factory) -> Path:
  return _run(logged, ranking_spec, tmp_path_factory, extractors=None)


def _run(logged, ranking_spec, tmp_path_factory, extractors) -> Path:
  path, _ = logged
  eval_config = _eval_config(ranking_spec)
  out = tmp_path_factory.mktemp("tfma-out")
  tfma.run_model_analysis(
    eval_config=eval_config,
    data_location=str(path),
    output_path=str(out),
    extractors=extractors and extractors(eval_config),
    random_seed_for_testing=1,
    pipeline_options=PipelineOptions(config.BEAM_PIPELINE_ARGS),
  )
  return out


def _eval_config(ranking_spec) -> tfma.EvalConfig:
  return tfma.EvalConfig(
    model_specs=[
      tfma.ModelSpec(
        label_keys={"click": "click", "score": "click"},
        prediction_keys={
          "click": "click_pred",
          "click_served": "click_pred",
          "score": "score_pred",
        },
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
      *(
        s
        for s in truth_metrics_specs(ranking_spec)
        if s.output_names[0] in ("score", "click_served")
      ),
    ],
    options=tfma.Options(compute_confidence_intervals={"value": True}),
  )


def test_trimmed_extracts_give_the_same_metrics(evaluated, logged, ranking_spec, tmp_path_factory):
  """The Evaluator drops the raw records and unread columns before TFMA
  unbatches (pipeline/tfma_extracts.py): every metric, plot and slice stays."""
  keep = evaluated_feature_columns(ranking_spec)
  trimmed = _run(
    logged,
    ranking_spec,
    tmp_path_factory,
    extractors=lambda cfg: tfma_extracts.trimmed_extractors(None, cfg, keep),
  )

  def metrics(out):
    return {
      (str(key), name): value
      for key, values in results.slice_metrics(ranking_spec, str(out)).items()
      for name, value in values.items()
    }

  full, trim = metrics(evaluated), metrics(trimmed)
  assert len(full) > 20 and full.keys() == trim.keys()
  differ = {k: (full[k], trim[k]) for k in full if trim[k] != pytest.approx(full[k], nan_ok=True)}
  assert not differ


def test_trim_keeps_the_read_columns_only():
  batch = {
    tfma.constants.INPUT_KEY: np.array([b"raw"]),
    tfma.constants.ARROW_RECORD_BATCH_KEY: object(),
    tfma.constants.FEATURES_KEY: {"device": np.array([b"phone"]), "age": np.array([3])},
    tfma.constants.LABELS_KEY: np.array([1]),
  }
  out = tfma_extracts.trim(batch, frozenset({"device"}))
  assert set(out) == {tfma.constants.FEATURES_KEY, tfma.constants.LABELS_KEY}
  assert set(out[tfma.constants.FEATURES_KEY]) == {"device"}
  stages = [e.stage_name for e in tfma_extracts.trimmed_extractors(None, tfma.EvalConfig(), [])]
  assert stages.index(tfma_extracts.TRIM_STAGE_NAME) + 1 == stages.index("ExtractUnbatchedInputs")


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


def _by_request(rows, keep=lambda row: True):
  requests = {}
  for row in rows:
    if keep(row):
      requests.setdefault(row["request_id"], []).append(row)
  return list(requests.values())


def _ndcg(members, score: str, truth: str, k: int) -> float:
  ranked = sorted(members, key=lambda r: -r[score])[:k]
  ideal = sorted((r[truth] for r in members), reverse=True)[:k]
  dcg = sum(r[truth] / np.log2(rank + 2) for rank, r in enumerate(ranked))
  return dcg / sum(g / np.log2(rank + 2) for rank, g in enumerate(ideal))


def _agreement(members, score: str, truth: str) -> float:
  same = [
    (a[score] - b[score]) * (a[truth] - b[truth]) > 0
    for i, a in enumerate(members)
    for b in members[i + 1 :]
  ]
  return float(np.mean(same))


def test_truth_ranking_per_request_against_the_truth_with_baselines(
  evaluated, logged, ranking_spec
):
  _, rows = logged
  metrics = results.slice_metrics(ranking_spec, str(evaluated))
  # The served click (`click_served`) reports under the click, the fused score under `score`.
  for task, score, truth in (
    ("click", "click_pred", "attraction"),
    ("score", "score_pred", "utility"),
  ):
    values = metrics[(task, "overall")]
    requests = _by_request(rows)
    assert values["truth_requests"] == REQUESTS
    ndcg = np.mean([_ndcg(m, score, truth, 3) for m in requests])
    assert values["truth_ndcg@3"] == pytest.approx(ndcg, abs=1e-6)
    by_position = np.mean([_ndcg(m, "position", truth, 3) for m in requests])
    # Position 1 first: the position order's NDCG is that of -position.
    for m in requests:
      for r in m:
        r["minus_position"] = -r["position"]
    by_position = np.mean([_ndcg(m, "minus_position", truth, 3) for m in requests])
    assert values["truth_ndcg@3_position"] == pytest.approx(by_position, abs=1e-6)
    agreement = np.mean([_agreement(m, score, truth) for m in requests])
    assert values["truth_agreement"] == pytest.approx(agreement, abs=1e-6)
    assert values["truth_agreement_random"] == 0.5 and values["truth_agreement_oracle"] == 1.0
    assert values["truth_ndcg@6_oracle"] == 1.0
    random = np.mean(
      [
        np.mean([r[truth] for r in m])
        * sum(1 / np.log2(i + 2) for i in range(3))
        / sum(
          g / np.log2(i + 2) for i, g in enumerate(sorted((r[truth] for r in m), reverse=True)[:3])
        )
        for m in requests
      ]
    )
    assert values["truth_ndcg@3_random"] == pytest.approx(random, abs=1e-6)
    share = (ndcg - random) / (1 - random)
    assert values["truth_ndcg@3_share"] == pytest.approx(share, abs=1e-6)
    assert values["truth_agreement_share"] == pytest.approx(2 * agreement - 1, abs=1e-6)
  # The click prediction follows the attraction closely, the score the utility less.
  assert metrics[("click", "overall")]["truth_agreement"] > 0.75
  assert (
    metrics[("click", "overall")]["truth_agreement"]
    > metrics[("score", "overall")]["truth_agreement"]
  )
  # The score's heads against the true utility (the conversion and dwell heads
  # are not among this model's outputs: left out, not failed).
  score = metrics[("score", "overall")]
  by_click = np.mean([_agreement(m, "click_pred", "utility") for m in _by_request(rows)])
  assert score["truth_agreement_by_click"] == pytest.approx(by_click, abs=1e-6)
  assert score["truth_agreement_by_click_share"] == pytest.approx(2 * by_click - 1, abs=1e-6)
  assert np.isnan(score["truth_agreement_by_conversion"])
  # Per slice: that slice's requests only.
  phone = _by_request(rows, lambda r: r["device"] == "phone")
  expected = np.mean([_agreement(m, "score_pred", "utility") for m in phone])
  assert metrics[("score", "device=phone")]["truth_agreement"] == pytest.approx(expected, abs=1e-6)


def test_ranking_truth_math_on_small_cases():
  gains = np.array([3.0, 1.0, 0.0])
  assert ranking_truth.ndcg_at_k(gains, np.array([0.9, 0.5, 0.1]), 2) == 1.0
  reversed_order = ranking_truth.ndcg_at_k(gains, np.array([0.1, 0.5, 0.9]), 2)
  assert reversed_order == pytest.approx((1.0 / np.log2(3)) / (3.0 + 1.0 / np.log2(3)))
  # Ties in the score rank the lower gain first: a constant earns no credit from row order.
  assert ranking_truth.ndcg_at_k(gains, np.zeros(3), 1) == 0.0
  assert ranking_truth.ndcg_at_k(np.zeros(3), np.arange(3.0), 2) is None
  random = ranking_truth.random_ndcg_at_k(gains, 3)
  assert random == pytest.approx((4 / 3) * (1 + 1 / np.log2(3) + 0.5) / (3 + 1 / np.log2(3)))
  assert ranking_truth.pairwise_agreement(gains, np.array([0.9, 0.1, 0.5])) == (2 / 3, 3)
  assert ranking_truth.pairwise_agreement(gains, np.array([0.5, 0.5, 0.1])) == (2.5 / 3, 3)
  assert ranking_truth.pairwise_agreement(np.ones(3), np.arange(3.0)) is None
  assert ranking_truth.oracle_share(0.8, 0.6) == pytest.approx(0.5)


def test_request_auc_counts_ties_as_half_and_skips_single_class():
  assert tfma_metrics.request_auc(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.1])) == 0.75
  assert tfma_metrics.request_auc(np.array([0, 0]), np.array([0.2, 0.1])) is None
