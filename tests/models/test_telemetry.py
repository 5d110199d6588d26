"""Telemetry: statistics, TensorBoard output and the gate-collapse warning."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from models import architectures, telemetry


def test_gate_statistics_mean_weights_and_entropy():
  weights = tf.constant([[1.0, 0.0], [0.5, 0.5]])
  stats = telemetry.gate_statistics(weights)
  np.testing.assert_allclose(stats["mean_weights"], [0.75, 0.25])
  np.testing.assert_allclose(stats["entropy"], np.log(2) / 2, rtol=1e-5)


def test_gradient_statistics_cosines_and_norms():
  stats = telemetry.gradient_statistics(tf.constant([[3.0, 4.0], [-3.0, -4.0], [4.0, -3.0]]))
  np.testing.assert_allclose(stats["norms"], [5, 5, 5])
  np.testing.assert_allclose(stats["cosines"][0], [1, -1, 0], atol=1e-6)


def _scalar_tags(log_dir):
  tags = set()
  for path in tf.io.gfile.glob(os.path.join(log_dir, "train", "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


def test_fit_writes_losses_gates_gradients_and_weights(tiny, tmp_path):
  spec = tiny.make_spec("mmoe", tasks="two_binary", balancing="uncertainty").replace(
    training={"telemetry_every_n_steps": 2}
  )
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  data = tiny.make_dataset(spec, n=256, batch_size=64)
  model.fit(
    data,
    validation_data=data,
    epochs=1,
    verbose=0,
    callbacks=telemetry.callbacks(spec, str(tmp_path)),
  )
  tags = _scalar_tags(str(tmp_path))
  for tag in [
    "step/click_loss",
    "step/like_auc",
    "loss_weight/click",
    "loss_weight/like",
    "gate/gate_click/expert_0",
    "gate/gate_like/entropy",
    "gradient/cosine/click__like",
    "gradient/norm_ratio/click__like",
  ]:
    assert tag in tags, (tag, sorted(tags))
  np.testing.assert_allclose(
    tf.reduce_sum(model.telemetry.gate_mean_weights["gate_click"]), 1.0, rtol=1e-5
  )
  cosine = model.telemetry.gradient_cosines.numpy()[0, 1]
  assert -1.0 <= cosine <= 1.0 and cosine != 0.0


def test_collapsed_gate_is_warned_once_until_it_recovers(caplog):
  callback = telemetry.TelemetryCallback("unused", every_n_steps=1, collapse_threshold=0.9)
  with caplog.at_level(logging.WARNING, logger="models.telemetry"):
    callback.check_collapse("gate_click", [0.95, 0.05])
    callback.check_collapse("gate_click", [0.97, 0.03])
    callback.check_collapse("gate_click", [0.5, 0.5])
    callback.check_collapse("gate_click", [0.02, 0.98])
  warnings = [r.getMessage() for r in caplog.records]
  assert len(warnings) == 2
  assert "gate_click collapsed: expert 0" in warnings[0]
  assert "expert 1" in warnings[1]


def test_a_non_finite_task_loss_stops_training_naming_the_task(tiny, tmp_path):
  spec = tiny.make_spec("mmoe", tasks="two_binary")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec, steps_per_execution=1)
  data = tiny.make_dataset(spec, n=256, batch_size=64)

  def poison(features, labels):
    # NaN in every float feature from the third batch on.
    features = {
      k: tf.fill(tf.shape(v), np.float32("nan")) if v.dtype.is_floating else v
      for k, v in features.items()
    }
    return features, labels

  data = data.take(2).concatenate(data.map(poison))
  with pytest.raises(telemetry.NonFiniteLossError, match=r"task 'click': click_loss became nan"):
    model.fit(data, epochs=1, verbose=0, callbacks=telemetry.callbacks(spec, str(tmp_path)))
