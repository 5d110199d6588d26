"""Architectures: outputs, masks, serialization, SavedModel, training."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import architectures, layers

ARCHITECTURES = ["single_task", "shared_bottom", "mmoe", "ple", "esmm", "aitm", "stem"]


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
  features, labels = tiny.make_batch(spec, n=32)
  labels = {k: v.numpy().copy() for k, v in labels.items()}
  assert labels["click"][1:].sum() > 0
  labels["click"][0] = 0.0  # row 0 has no conversion label
  model(features)

  def conversion_gradients(conversion_row0):
    labels["conversion"][0] = conversion_row0
    with tf.GradientTape() as tape:
      logits, _ = model.forward(features, training=False)
      task_losses, _ = model.task_losses({k: tf.constant(v) for k, v in labels.items()}, logits)
      conversion_loss = task_losses[1]
    return tape.gradient(
      conversion_loss, model.trainable_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )

  unlabelled_negative, unlabelled_positive = (conversion_gradients(0.0), conversion_gradients(1.0))
  assert sum(float(tf.norm(tf.convert_to_tensor(g))) for g in unlabelled_negative) > 0
  for a, b in zip(unlabelled_negative, unlabelled_positive):
    np.testing.assert_array_equal(tf.convert_to_tensor(a), tf.convert_to_tensor(b))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saved_model_round_trip_gives_identical_predictions(tiny, architecture, tmp_path):
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=6)
  del features["position"]
  expected = model(features, training=False)

  signature = {
    name: tf.TensorSpec([None, 1], value.dtype, name) for name, value in features.items()
  }
  module = tf.Module()
  module.model = model
  module.serve = tf.function(lambda f: model(f, training=False), input_signature=[signature])
  tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
  loaded = tf.saved_model.load(str(tmp_path))
  served = loaded.signatures["serving_default"](**features)
  for name, value in expected.items():
    np.testing.assert_array_equal(served[name], value)


INTERACTIONS = {
  "dot": {"kind": "dot", "pairs": [["cat_a", "bucket_y"]]},
  "cross": {"kind": "cross", "layers": 2},
}


# The interaction lives in FeatureEmbedding, which every architecture builds
# (one shared, or one per task for single_task and stem): each architecture
# once, each kind on both a shared and a per-task embedding, instead of the
# full product (14 fits, about 3.5 minutes of the test run).
INTERACTION_CASES = [
  ("single_task", "cross"),
  ("shared_bottom", "dot"),
  ("mmoe", "cross"),
  ("ple", "dot"),
  ("esmm", "cross"),
  ("aitm", "dot"),
  ("stem", "dot"),
]


def test_the_interaction_cases_cover_every_architecture_and_kind():
  assert sorted(a for a, _ in INTERACTION_CASES) == sorted(ARCHITECTURES)
  per_task = {k for a, k in INTERACTION_CASES if a in ("single_task", "stem")}
  shared = {k for a, k in INTERACTION_CASES if a not in ("single_task", "stem")}
  assert per_task == shared == set(INTERACTIONS)


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "interaction"), INTERACTION_CASES)
def test_feature_interaction_serves_the_same_after_a_saved_model_round_trip(
  tiny, architecture, interaction, tmp_path
):
  spec = tiny.make_spec(architecture, interaction=INTERACTIONS[interaction])
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  assert spec.model.interaction.kind == interaction
  model.compile_for_spec(spec)
  model.fit(tiny.make_dataset(spec, n=256, batch_size=64), epochs=1, verbose=0)
  features, _ = tiny.make_batch(spec, n=6)
  del features["position"]
  expected = model(features, training=False)
  clone = type(model).from_config(model.get_config())
  clone(features)
  clone.set_weights(model.get_weights())
  signature = {
    name: tf.TensorSpec([None, 1], value.dtype, name) for name, value in features.items()
  }
  module = tf.Module()
  module.model = model
  module.serve = tf.function(lambda f: model(f, training=False), input_signature=[signature])
  tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
  served = tf.saved_model.load(str(tmp_path)).signatures["serving_default"](**features)
  for name, value in expected.items():
    np.testing.assert_array_equal(served[name], value)
    np.testing.assert_allclose(clone(features, training=False)[name], value, rtol=1e-6)


@pytest.mark.slow
def test_weight_decay_shrinks_tables_and_kernels_never_biases_or_position_logits(tiny):
  def trained(weight_decay):
    keras.utils.set_random_seed(0)
    spec = tiny.make_spec("mmoe", position_bias=True).replace(
      training={"weight_decay": weight_decay}
    )
    model = architectures.build_model(spec, tiny.VOCAB_SIZES)
    model.compile_for_spec(spec)
    model.fit(tiny.make_dataset(spec, n=512, batch_size=64), epochs=3, verbose=0)
    return model

  plain, decayed = trained(0.0), trained(5.0)
  assert isinstance(decayed.optimizer, keras.optimizers.AdamW)
  assert not isinstance(plain.optimizer, keras.optimizers.AdamW)
  assert float(tf.norm(decayed.embedding.weights[0])) < 0.8 * float(
    tf.norm(plain.embedding.weights[0])
  )
  decayed_ids = {id(v) for v in layers.decayed_variables(decayed)}
  assert id(decayed.position_tower.bias_by_position) not in decayed_ids
  decays = {v.name: id(v) in decayed_ids for v in decayed.trainable_variables}
  assert all(d == ("kernel" in n or "table_" in n) for n, d in decays.items()), decays


def test_train_step_adds_the_layers_own_losses(tiny):
  """A regularizer added to the model (Keras' `add_loss`) is trained on."""

  def table_norm(penalty):
    keras.utils.set_random_seed(0)
    spec = tiny.make_spec("shared_bottom")
    model = architectures.build_model(spec, tiny.VOCAB_SIZES)
    dataset = tiny.make_dataset(spec, n=256, batch_size=64)
    model(next(iter(dataset))[0])  # build, so the table exists for the penalty
    if penalty:
      table = model.embedding.weights[0]
      model.add_loss(lambda: penalty * tf.reduce_sum(tf.square(table)))
    model.compile_for_spec(spec)
    model.fit(dataset, epochs=2, verbose=0)
    return float(tf.norm(model.embedding.weights[0]))

  assert table_norm(10.0) < 0.5 * table_norm(0.0)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_short_fit_lowers_every_task_loss(tiny, architecture):
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  history = model.fit(tiny.make_dataset(spec, n=1024, batch_size=128), epochs=5, verbose=0).history
  for task in spec.task_names:
    assert history[f"{task}_loss"][-1] < history[f"{task}_loss"][0], task


def test_mixed_precision_trains_and_outputs_float32(tiny):
  keras.mixed_precision.set_global_policy("mixed_float16")
  spec = tiny.make_spec("mmoe")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
  history = model.fit(tiny.make_dataset(spec, n=512, batch_size=128), epochs=2, verbose=0).history
  assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
  features, _ = tiny.make_batch(spec, n=4)
  assert model.experts.compute_dtype == "float16"
  assert all(v.dtype == tf.float32 for v in model(features).values())


def test_esmm_ctcvr_is_ctr_times_cvr_and_at_most_ctr(tiny):
  spec = tiny.make_spec("esmm")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=32)
  outputs = model(features, training=False)
  np.testing.assert_allclose(
    outputs["conversion_ctcvr"], outputs["click"] * outputs["conversion"], rtol=1e-6
  )
  assert np.all(outputs["conversion_ctcvr"] <= outputs["click"])


def test_esmm_supervises_ctcvr_on_unclicked_impressions(tiny):
  spec = tiny.make_spec("esmm")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, labels = tiny.make_batch(spec, n=1)
  labels = {"click": tf.zeros([1, 1]), "conversion": tf.zeros([1, 1]), "dwell": tf.zeros([1, 1])}
  model(features)
  with tf.GradientTape() as tape:
    logits, _ = model.forward(features)
    task_losses, masks = model.task_losses(labels, logits)
    conversion_loss = task_losses[1]
  assert masks["conversion"] is None and masks["dwell"] is not None
  gradients = tape.gradient(conversion_loss, model.towers.trainable_variables)
  assert float(tf.norm(gradients[-2])) > 0  # the conversion tower learns from it
  assert float(task_losses[2]) == 0.0  # dwell stays masked to clicks


def test_position_bias_enters_training_logits_only(tiny):
  spec = tiny.make_spec(
    "mmoe", position_bias=True, position_bias_task="click", position_dropout=0.0
  )
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=8)
  model(features)
  model.position_tower.bias_by_position.assign(np.linspace(0, 1, 6))
  without_position = {k: v for k, v in features.items() if k != "position"}
  served = model(features, training=False)
  for name, value in model(without_position, training=False).items():
    np.testing.assert_array_equal(served[name], value)
  trained, _ = model.forward(features, training=True, use_position=True)
  plain, _ = model.forward(features, training=True)
  np.testing.assert_allclose(
    trained["click"] - plain["click"],
    tf.gather(np.linspace(0, 1, 6), features["position"]),
    rtol=1e-5,
  )
  np.testing.assert_array_equal(trained["conversion"], plain["conversion"])


def test_position_bias_tower_learns_that_low_positions_are_clicked_less(tiny):
  spec = tiny.make_spec("shared_bottom", tasks="single", position_bias=True, position_dropout=0.1)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  model.fit(tiny.make_dataset(spec, n=2048, batch_size=128), epochs=4, verbose=0)
  bias = model.position_tower.bias_by_position.numpy()[1:]
  assert bias[0] > bias[-1] + 0.3  # data: logit falls by 0.3 per position


def test_aitm_chain_outputs_conditional_and_ordered_entire_space_probabilities(tiny):
  spec = tiny.make_spec("aitm", tasks="chain")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=16)
  outputs = model(features, training=False)
  np.testing.assert_allclose(outputs["cart_entire"], outputs["click"] * outputs["cart"], rtol=1e-5)
  np.testing.assert_allclose(
    outputs["purchase_entire"], outputs["cart_entire"] * outputs["purchase"], rtol=1e-5
  )
  assert np.all(outputs["purchase_entire"] <= outputs["cart_entire"])
  _, gates = model.forward(features)
  assert set(gates) == {"ait_cart", "ait_purchase"}
  np.testing.assert_allclose(tf.reduce_sum(gates["ait_cart"], -1), np.ones(16), rtol=1e-6)


@pytest.mark.parametrize("levels", [1, 2])
def test_stem_shares_exactly_the_variables_several_task_losses_reach(tiny, levels):
  """STEM's AFTB gates: with one level a task's embedding and experts reach
  only its own loss, so `shared_layers` (what PCGrad, MGDA and the telemetry
  treat as shared) is the shared embedding and experts; with two levels the
  shared gate carries every lower branch to every task."""
  spec = tiny.make_spec("stem", levels=levels)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, labels = tiny.make_batch(spec, n=64)
  with tf.GradientTape(persistent=True) as tape:
    logits, _ = model.forward(features, training=True)
    task_losses, _ = model.task_losses(labels, logits)
    # Unstacked while recording: outside the tape, each task's loss would be
    # unconnected and every gradient zero.
    per_task = tf.unstack(task_losses)
  # Counted per element: the experts and towers of all tasks are slices of
  # one fused variable each, every slice reached by its own task's loss only.
  reached = {v.ref(): np.zeros(v.shape, np.int64) for v in model.trainable_variables}
  for loss in per_task:
    gradients = tape.gradient(loss, model.trainable_variables, unconnected_gradients="zero")
    for v, g in zip(model.trainable_variables, gradients):
      reached[v.ref()] += (tf.convert_to_tensor(g).numpy() != 0).astype(np.int64)
  shared = {v.ref() for v in model.shared_variables}
  several = {ref for ref, count in reached.items() if count.max() > 1}
  assert several <= shared
  assert {v.ref() for v in model.embedding.trainable_variables} <= several
  own_embedding = {v.ref() for v in model.task_embeddings[1].trainable_variables}
  assert (own_embedding <= several) == (levels > 1)
