"""Everything derived from the spec: schema, preprocessing_fn (run by the real
TFT Beam implementation), TFMA EvalConfig, export's fused score."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import metadata_io

from models import export
from models.features import SPEC_CONFIG_KEY, preprocessing_fn, vocab_sizes
from models.spec import load_spec
from pipeline.eval_config import eval_config_from_spec, multi_model_eval_config
from pipeline.schema import schema_from_spec


@pytest.fixture(scope="module")
def spec():
  return load_spec("synthetic")


def test_schema_requires_every_column_and_bounds_labels(spec):
  schema = schema_from_spec(spec)
  features = {f.name: f for f in schema.feature}
  assert set(features) == set(spec.raw_columns)
  assert all(f.presence.min_fraction == 1.0 for f in features.values())
  assert features["click"].type == schema_pb2.INT
  assert (features["click"].int_domain.min, features["click"].int_domain.max) == (0, 1)
  assert features["position"].int_domain.max == 10
  assert features["item_price"].type == schema_pb2.FLOAT
  assert features["device"].type == schema_pb2.BYTES


def _rows(n: int):
  rng = np.random.default_rng(1)
  for i in range(n):
    click = int(rng.random() < 0.3)
    yield {
      "request_id": f"r{i // 10}",
      "user_id": f"u{i % 7}",
      "item_id": f"i{i % 11}",
      "item_category": ["a", "b", "c"][i % 3],
      "user_segment": "s",
      "device": ["ios", "web"][i % 2],
      "hour": i % 24,
      "item_price": float(1 + i % 50),
      "position": i % 10 + 1,
      "p_click": 0.3,
      "p_conv_given_click": 0.1,
      "attraction": 0.4,
      "expected_dwell": 30.0,
      "utility": 0.4 * 0.1 * 30.0**0.5,
      "click": click,
      "conversion": click * int(rng.random() < 0.2),
      "dwell_seconds": click * float(rng.uniform(1, 100)),
    }


@pytest.fixture(scope="module")
def tft_run(spec):
  """200 rows analyzed and transformed by TFT Beam: (rows, transformed, output)."""
  schema = schema_from_spec(spec)
  raw_metadata = tft.DatasetMetadata(schema)
  rows = [{k: [v] for k, v in row.items()} for row in _rows(200)]
  with tft_beam.Context(temp_dir=tempfile.mkdtemp(), force_tf_compat_v1=False):
    (transformed, _), transform_fn = (rows, raw_metadata) | tft_beam.AnalyzeAndTransformDataset(
      lambda inputs: preprocessing_fn(inputs, {SPEC_CONFIG_KEY: spec.to_json()}),
      output_record_batches=False,
    )
    out_dir = tempfile.mkdtemp()
    _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
  # The Transform component writes the raw metadata too; the export reads it.
  metadata_io.write_metadata(
    raw_metadata, os.path.join(out_dir, tft.TFTransformOutput.RAW_METADATA_DIR)
  )
  return rows, transformed, tft.TFTransformOutput(out_dir)


def test_preprocessing_fn_with_tft_beam(spec, tft_run):
  rows, transformed, tft_output = tft_run
  sizes = vocab_sizes(spec, tft_output)
  # device (2), item_category (3), user_segment (1) and hour (24) share one
  # vocabulary, plus one OOV id.
  assert sizes["device"] == sizes["item_category"] == sizes["hour"] == 2 + 3 + 1 + 24 + 1
  assert sizes["user_id"] == 5000 and sizes["position"] == 11
  first = transformed[0]
  expected_keys = {f.name for f in spec.model_features} | {"position"} | set(spec.label_columns)
  assert set(first) == expected_keys
  prices = np.array([r["item_price"] for r in transformed])
  assert abs(prices.mean()) < 1e-5 and abs(prices.std() - 1) < 1e-2
  dwell = np.array([r["dwell_seconds"] for r in transformed]).reshape(-1)
  raw_dwell = np.array([r["dwell_seconds"][0] for r in rows])
  np.testing.assert_allclose(dwell, np.log1p(raw_dwell), rtol=1e-5)
  assert all(0 <= r["device"] < sizes["device"] for r in transformed)


def test_eval_config_is_per_task_with_gates_only_on_named_slices(spec):
  config = eval_config_from_spec(spec)
  (model_spec,) = config.model_specs
  # A position-bias tower: TFMA judges the fit to the logged (position-biased) clicks.
  assert model_spec.signature_name == export.EVAL_SIGNATURE
  no_tower = spec.replace(model={"position_bias": False, "position_bias_task": None})
  assert eval_config_from_spec(no_tower).model_specs[0].signature_name == "serving_default"
  # The fused score is ranked against the gain task's label, the click.
  assert dict(model_spec.label_keys) == {
    "click": "click",
    "conversion": "conversion",
    "dwell": "dwell_seconds",
    "score": "click",
  }
  # Conditional tasks are judged on the rows where the parent happened.
  assert dict(model_spec.example_weight_keys) == {"conversion": "click", "dwell": "click"}
  # Then one truth-ranking spec per `truth_of` (the position-biased click's
  # served output, `click_served`, in the evaluation signature).
  assert [list(s.output_names) for s in config.metrics_specs] == [
    ["click"],
    ["conversion"],
    ["dwell"],
    ["score"],
    ["conversion"],
    ["click_served"],
    ["dwell"],
    ["score"],
  ]
  assert [m.class_name for s in config.metrics_specs[4:] for m in s.metrics] == ["TruthRanking"] * 4
  # In the one TFMA pass the truth metrics, like the ranking ones, cover the
  # candidate and the blessed baseline; the single-task model is not in TFMA.
  multi = multi_model_eval_config(spec, has_baseline=True)
  assert [m.name for m in multi.model_specs] == ["candidate", "baseline"]
  truth_models = {
    tuple(s.model_names)
    for s in multi.metrics_specs
    if any(m.class_name == "TruthRanking" for m in s.metrics)
  }
  assert truth_models == {("candidate", "baseline")}
  for task_spec in config.metrics_specs[:2]:
    assert "ExpectedCalibrationError" in [m.class_name for m in task_spec.metrics]
  ranking = config.metrics_specs[3]
  assert ranking.query_key == "request_id"
  ndcg = next(m for m in ranking.metrics if m.class_name == "NDCG")
  assert json.loads(ndcg.config) == {"gain_key": "click", "top_k_list": [5, 10]}
  assert not config.options.compute_confidence_intervals.value
  ungated = eval_config_from_spec(spec, with_gates=False)
  assert not any(m.per_slice_thresholds for s in ungated.metrics_specs for m in s.metrics)
  for metrics_spec in config.metrics_specs:
    for metric in metrics_spec.metrics:
      assert not metric.HasField("threshold"), "plain thresholds apply to every slice"
  click_auc = next(m for m in config.metrics_specs[0].metrics if m.class_name == "AUC")
  (gate,) = click_auc.per_slice_thresholds
  assert [list(s.feature_keys) for s in gate.slicing_specs] == [[], ["device"]]
  assert gate.threshold.value_threshold.lower_bound.value == 0.77
  assert gate.threshold.change_threshold.absolute.value == -0.01
  slices = [list(s.feature_keys) for s in config.slicing_specs]
  assert slices == [[], ["device"], ["position"], ["device", "hour"]]


def test_fused_score_is_the_declared_product(spec):
  outputs = {
    "click": tf.constant([0.5, 0.1]),
    "conversion": tf.constant([0.2, 0.5]),
    "dwell": tf.constant([16.0, 4.0]),
  }
  score = export.fused_score(spec, outputs).numpy()
  np.testing.assert_allclose(score, [0.5 * 0.2 * 4.0, 0.1 * 0.5 * 2.0], rtol=1e-5)


def _example(row) -> bytes:
  example = tf.train.Example()
  for name, (value,) in row.items():
    feature = example.features.feature[name]
    if isinstance(value, str):
      feature.bytes_list.value.append(value.encode())
    elif isinstance(value, int):
      feature.int64_list.value.append(value)
    else:
      feature.float_list.value.append(value)
  return example.SerializeToString()


def test_evaluation_signature_adds_the_position_logit_to_click_only(spec, tft_run, tmp_path):
  """TFMA's signature: the served outputs, except click = sigmoid(click logit +
  the position-bias logit of the logged position); serving stays position-free."""
  from models import architectures

  rows, _, tft_output = tft_run
  model = architectures.build_model(spec, vocab_sizes(spec, tft_output))
  position_logits = np.linspace(2.0, -2.0, spec.position_feature.max_value + 1)
  model.position_tower.bias_by_position.assign(position_logits)
  export.export_serving_model(model, spec, tft_output, str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path))
  assert export.EVAL_SIGNATURE in loaded.signatures
  examples = tf.constant([_example(r) for r in rows[:20]])
  served = loaded.signatures["serving_default"](examples=examples)
  logged = loaded.signatures[export.EVAL_SIGNATURE](examples=examples)
  positions = np.array([r["position"][0] for r in rows[:20]])
  logit = lambda p: np.log(p / (1 - p))
  np.testing.assert_allclose(
    logit(logged["click"].numpy()),
    logit(served["click"].numpy()) + position_logits[positions],
    rtol=1e-4,
    atol=1e-4,
  )
  for task in ("conversion", "dwell", "score"):
    np.testing.assert_allclose(logged[task].numpy(), served[task].numpy(), rtol=1e-6)
  # The served click stays beside it, for the ranking against the truth.
  np.testing.assert_allclose(logged["click_served"].numpy(), served["click"].numpy(), rtol=1e-6)
  assert "click_served" not in served
  # Without a position-bias tower there is nothing to add: no such signature.
  assert not export.has_eval_signature(
    spec.replace(model={"position_bias": False, "position_bias_task": None})
  )
