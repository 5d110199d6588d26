"""Architectures: outputs, masks, serialization, SavedModel, training."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from models import architectures  # noqa: E402

ARCHITECTURES = ["single_task", "shared_bottom", "mmoe"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_outputs_are_named_per_task_with_shape_and_dtype(tiny, architecture):
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=5)
  del features["position"]  # serving never sends the position
  outputs = model(features, training=False)
  assert set(spec.task_names) <= set(outputs)
  for task in spec.tasks:
    assert outputs[task.name].shape == (5, 1)
    assert outputs[task.name].dtype == tf.float32
    if task.is_binary:
      assert np.all((outputs[task.name] > 0) & (outputs[task.name] < 1))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_get_config_round_trip_rebuilds_the_same_model(tiny, architecture):
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=4)
  model(features)
  clone = type(model).from_config(model.get_config())
  clone(features)
  clone.set_weights(model.get_weights())
  assert clone.spec == spec
  for name, value in model(features).items():
    np.testing.assert_allclose(clone(features)[name], value)


def test_masked_row_contributes_zero_gradient(tiny):
  spec = tiny.make_spec("mmoe")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, labels = tiny.make_batch(spec, n=8)
  labels = {k: v.numpy().copy() for k, v in labels.items()}
  labels["click"][0] = 0.0                  # row 0 has no conversion label

  def conversion_gradients(conversion_row0):
    labels["conversion"][0] = conversion_row0
    with tf.GradientTape() as tape:
      logits, _ = model.forward(features, training=False)
      task_losses, _ = model.task_losses(
          {k: tf.constant(v) for k, v in labels.items()}, logits)
    return tape.gradient(task_losses[1], model.trainable_variables,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)

  for a, b in zip(conversion_gradients(0.0), conversion_gradients(1.0)):
    np.testing.assert_array_equal(tf.convert_to_tensor(a), tf.convert_to_tensor(b))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saved_model_round_trip_gives_identical_predictions(tiny, architecture, tmp_path):
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=6)
  del features["position"]
  expected = model(features, training=False)

  signature = {name: tf.TensorSpec([None, 1], value.dtype, name)
               for name, value in features.items()}
  module = tf.Module()
  module.model = model
  module.serve = tf.function(lambda f: model(f, training=False),
                             input_signature=[signature])
  tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
  loaded = tf.saved_model.load(str(tmp_path))
  served = loaded.signatures["serving_default"](**features)
  for name, value in expected.items():
    np.testing.assert_array_equal(served[name], value)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_short_fit_lowers_every_task_loss(tiny, architecture):
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  train = tiny.make_dataset(spec, n=1024, batch_size=128)
  before = model.evaluate(train, return_dict=True, verbose=0)
  model.fit(train, epochs=6, verbose=0)
  after = model.evaluate(train, return_dict=True, verbose=0)
  for task in spec.task_names:
    assert after[f"{task}_loss"] < before[f"{task}_loss"], task
