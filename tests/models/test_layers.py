"""Layers: the fused formulations compute what their unfused definitions do."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import architectures, layers


def test_feature_embedding_reads_each_feature_from_its_own_rows():
  layer = layers.FeatureEmbedding([("a", 3, 2), ("b", 4, 2), ("c", 5, 3)], ["x"])
  features = {
    "a": tf.constant([[2], [0]], tf.int64),
    "b": tf.constant([[3], [1]], tf.int64),
    "c": tf.constant([[4], [0]], tf.int64),
    "x": tf.constant([[0.5], [-1.0]]),
  }
  out = layer(features).numpy()
  table_2, table_3 = [w.numpy() for w in layer.weights]  # widths 2 and 3
  assert out.shape == (2, layer.output_dim) == (2, 2 + 2 + 3 + 1)
  np.testing.assert_array_equal(out[0, 0:2], table_2[2])  # a=2
  np.testing.assert_array_equal(out[0, 2:4], table_2[3 + 3])  # b=3 after a's 3 rows
  np.testing.assert_array_equal(out[0, 4:7], table_3[4])  # c=4
  np.testing.assert_array_equal(out[:, 7], [0.5, -1.0])


def test_feature_embedding_clips_out_of_vocabulary_ids_to_the_last_row():
  layer = layers.FeatureEmbedding([("a", 3, 2), ("b", 4, 2)], [])
  out = layer({"a": tf.constant([[7]], tf.int64), "b": tf.constant([[0]], tf.int64)})
  np.testing.assert_array_equal(out[0, :2], layer.weights[0].numpy()[2])


@pytest.mark.parametrize("shared_input", [True, False])
def test_parallel_mlp_equals_independent_networks(shared_input):
  num_networks, units = 3, [5, 2]
  layer = layers.ParallelMLP(num_networks, units, last_activation=None)
  x = tf.random.normal([4, 6] if shared_input else [4, num_networks, 6])
  out = layer(x).numpy()
  assert out.shape == (4, num_networks, 2)
  k0, b0, k1, b1 = [w.numpy() for w in layer.weights]
  for n in range(num_networks):
    x_n = x.numpy() if shared_input else x.numpy()[:, n]
    first = k0[:, n * 5 : (n + 1) * 5] if shared_input else k0[n]
    hidden = np.maximum(x_n @ first + b0[n], 0)
    np.testing.assert_allclose(out[:, n], hidden @ k1[n] + b1[n], rtol=1e-5, atol=1e-6)


def test_parallel_mlp_feeds_each_input_to_its_group_of_networks():
  layer = layers.ParallelMLP(4, [3], networks_per_input=2)
  x = tf.random.normal([2, 2, 5])
  out = layer(x).numpy()
  kernel, bias = [w.numpy() for w in layer.weights]
  np.testing.assert_allclose(
    out[:, 3], np.maximum(x.numpy()[:, 1] @ kernel[3] + bias[3], 0), rtol=1e-5, atol=1e-6
  )


def test_gate_weights_sum_to_one_and_mix_only_their_experts():
  gates = layers.ExpertGates(2, [[0, 2], [1, 2]])
  experts = tf.random.normal([5, 3, 4])
  mixtures, weights = gates(tf.random.normal([5, 7]), experts)
  np.testing.assert_allclose(tf.reduce_sum(weights, -1), np.ones((5, 2)), rtol=1e-6)
  expected = weights[:, 1, :1] * experts[:, 1] + weights[:, 1, 1:] * experts[:, 2]
  np.testing.assert_allclose(mixtures[:, 1], expected, rtol=1e-5, atol=1e-6)


def test_cgc_levels_chain_and_only_the_last_drops_the_shared_gate():
  first = layers.CGCLayer(3, shared_experts=2, task_experts=1, units=[4], is_last=False)
  last = layers.CGCLayer(3, shared_experts=2, task_experts=1, units=[4], is_last=True)
  x = tf.random.normal([5, 6])
  out = first(x)
  assert out["tasks"].shape == (5, 3, 4) and out["shared"].shape == (5, 4)
  assert out["task_gates"].shape == (5, 3, 1 + 2) and out["shared_gate"].shape == (5, 1, 5)
  top = last(out["tasks"], out["shared"])
  assert set(top) == {"tasks", "task_gates"}
  np.testing.assert_allclose(tf.reduce_sum(top["task_gates"], -1), np.ones((5, 3)), rtol=1e-6)


def test_stem_gates_read_every_expert_forward_and_train_only_their_own_and_the_shared():
  """AFTB: task 0's mixture changes with task 1's experts, yet its gradient
  never reaches them; the shared gate's reaches every expert."""
  layer = layers.STEMLayer(2, shared_experts=1, task_experts=1, units=[4], is_last=False)
  x = tf.random.normal([6, 3, 5])  # [B, tasks + shared, U]
  with tf.GradientTape(persistent=True) as tape:
    out = layer(x)
    task0, shared = out["outputs"][:, 0], out["outputs"][:, 2]
  assert out["outputs"].shape == (6, 3, 4) and out["gates"].shape == (6, 3, 3)
  np.testing.assert_allclose(tf.reduce_sum(out["gates"], -1), np.ones((6, 3)), rtol=1e-6)
  np.testing.assert_array_equal(layer.aftb_mask_rows, [[1, 0, 1], [0, 1, 1], [1, 1, 1]])
  experts = layer.task_expert_networks
  own, other = (tape.gradient(task0, experts.biases[0])[n] for n in (0, 1))
  assert float(tf.norm(own)) > 0 and float(tf.norm(other)) == 0.0
  assert float(tf.norm(tape.gradient(shared, experts.biases[0])[1])) > 0
  assert float(tf.norm(tape.gradient(task0, layer.shared_expert_networks.biases[0]))) > 0
  # Forward, task 0's mixture does read task 1's expert.
  before = layer(x)["outputs"][:, 0]
  experts.biases[0].assign_add(tf.constant([[0.0] * 4, [1.0] * 4]))
  assert float(tf.reduce_max(tf.abs(layer(x)["outputs"][:, 0] - before))) > 1e-4


def test_position_bias_tower_drops_rows_only_in_training():
  tower = layers.PositionBiasTower(max_position=3, dropout_rate=0.5)
  position = tf.constant([[1]] * 1000, tf.int64)
  tower(position)
  tower.bias_by_position.assign([0.0, 2.0, 1.0, 0.5])
  np.testing.assert_array_equal(tower(position, training=False), np.full((1000, 1), 2.0))
  dropped = (tower(position, training=True).numpy() == 0).mean()
  assert 0.4 < dropped < 0.6


@pytest.mark.parametrize(
  "layer",
  [
    layers.FeatureEmbedding([("a", 3, 2)], ["x"]),
    layers.ParallelMLP(3, [4, 1], last_activation=None, dropout=0.1, networks_per_input=3),
    layers.ExpertGates(2, [[0, 1], [1, 2]]),
    layers.CGCLayer(2, 1, 2, [4], is_last=True),
    layers.STEMLayer(3, 1, 2, [4], is_last=False, dropout=0.1),
    layers.PositionBiasTower(10, 0.2),
    layers.AdaptiveInformationTransfer(6),
  ],
)
def test_get_config_round_trip(layer):
  clone = type(layer).from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()


def test_fused_matmul_equals_one_matmul_per_kernel():
  x = tf.random.normal([5, 6])
  kernels = [tf.Variable(tf.random.normal([6, 8])), tf.Variable(tf.random.normal([6, 3]))]
  for part, kernel in zip(layers.fused_matmul(x, kernels), kernels):
    np.testing.assert_allclose(part, x @ kernel, rtol=1e-5, atol=1e-5)


def test_first_cgc_level_fuses_its_matmuls_without_changing_the_result():
  level = layers.CGCLayer(3, shared_experts=2, task_experts=1, units=[4, 3], is_last=False)
  x = tf.random.normal([5, 6])
  fused, separate = level(x), level(x, x)  # an explicit shared input: no fusion
  assert set(fused) == set(separate) == {"tasks", "task_gates", "shared", "shared_gate"}
  for key in fused:
    np.testing.assert_allclose(fused[key], separate[key], rtol=1e-5, atol=1e-6)


def test_mmoe_gates_from_the_experts_first_matmul_equal_the_separate_gates(tiny):
  spec = tiny.make_spec("mmoe")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, _ = tiny.make_batch(spec, n=16)
  x = model.embedding(features)
  mixtures, weights = model.gates(x, model.experts(x))  # each layer's own matmul
  logits, gates = model.forward(features, training=False)
  separate = model.towers(mixtures)
  for i, task in enumerate(spec.tasks):
    np.testing.assert_allclose(gates[f"gate_{task.name}"], weights[:, i], rtol=1e-5, atol=1e-6)
    if task.name in logits:
      np.testing.assert_allclose(logits[task.name], separate[:, i], rtol=1e-5, atol=1e-5)


def test_dot_interaction_appends_the_dot_product_of_each_pair():
  layer = layers.DotInteraction([(0, 2, 2), (1, 3, 1)])
  x = tf.constant([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]])
  out = layer(x).numpy()
  np.testing.assert_array_equal(out[:, :4], x.numpy())
  np.testing.assert_allclose(out[:, 4], [1 * 3 + 2 * 4, 0.5 * 2 + -1 * 0])
  np.testing.assert_allclose(out[:, 5], [2 * 4, -1 * 0])


def test_cross_network_computes_x0_times_linear_plus_residual():
  layer = layers.CrossNetwork(2)
  x0 = tf.random.normal([5, 3])
  out = layer(x0).numpy()
  w0, b0, w1, b1 = (w.numpy() for w in layer.trainable_weights)  # tfrs Cross: kernel, bias
  assert w0.shape == w1.shape == (3, 3) and b0.shape == b1.shape == (3,)
  x1 = x0.numpy() * (x0.numpy() @ w0 + b0) + x0.numpy()
  np.testing.assert_allclose(out, x0.numpy() * (x1 @ w1 + b1) + x1, rtol=1e-5, atol=1e-6)


def test_feature_embedding_dot_interaction_multiplies_the_named_embeddings():
  layer = layers.FeatureEmbedding(
    [("user", 3, 2), ("tag", 4, 3), ("item", 5, 2)],
    ["x"],
    interaction={"kind": "dot", "pairs": [["user", "item"]]},
  )
  features = {
    "user": tf.constant([[2], [0]], tf.int64),
    "tag": tf.constant([[1], [1]], tf.int64),
    "item": tf.constant([[4], [1]], tf.int64),
    "x": tf.constant([[0.5], [-1.0]]),
  }
  out = layer(features).numpy()
  assert out.shape == (2, layer.output_dim) == (2, 2 + 3 + 2 + 1 + 1)
  table_2 = next(w.numpy() for w in layer.weights if w.shape[-1] == 2)
  user, item = table_2[[2, 0]], table_2[3 + np.array([4, 1])]  # item rows after user's 3
  np.testing.assert_allclose(out[:, -1], (user * item).sum(axis=1), rtol=1e-6)
  rebuilt = layers.FeatureEmbedding.from_config(layer.get_config())
  rebuilt(features)
  rebuilt.set_weights(layer.get_weights())
  np.testing.assert_array_equal(rebuilt(features), out)


def test_feature_embedding_names_an_unknown_interaction_feature():
  with pytest.raises(ValueError, match="'item' is not an embedded feature"):
    layers.FeatureEmbedding(
      [("user", 3, 2)], [], interaction={"kind": "dot", "pairs": [["user", "item"]]}
    )


def test_parallel_mlp_takes_keras_initializers_and_regularizers_and_serialises_them():
  mlp = layers.ParallelMLP(
    2,
    [3],
    kernel_initializer="zeros",
    kernel_regularizer={"class_name": "L2", "config": {"l2": 0.5}},
  )
  out = mlp(tf.ones([4, 5]))
  assert float(tf.reduce_sum(tf.abs(out))) == 0.0  # zero kernels, zero biases, relu
  assert len(mlp.losses) == 1  # the regularizer's penalty, on the one kernel
  rebuilt = layers.ParallelMLP.from_config(mlp.get_config())
  assert rebuilt.get_config()["kernel_regularizer"] == mlp.get_config()["kernel_regularizer"]
  assert rebuilt.get_config()["kernel_initializer"]["class_name"] == "Zeros"
  default = layers.ParallelMLP(2, [3])
  default(tf.ones([4, 5]))
  assert not default.losses and float(tf.reduce_sum(tf.abs(default.kernels[0]))) > 0


def test_embedding_gates_and_position_tower_take_initializers_and_regularizers():
  """Every layer with its own weights takes Keras initializers (and, where
  weights decay, regularizers) as arguments and serialises them."""
  l2 = {"class_name": "L2", "config": {"l2": 0.5}}
  embedding = layers.FeatureEmbedding(
    [("a", 3, 2)], ["x"], embeddings_initializer="ones", embeddings_regularizer=l2
  )
  embedding({"a": tf.constant([[1]], tf.int64), "x": tf.constant([[0.5]])})
  np.testing.assert_array_equal(embedding.weights[0].numpy(), np.ones((3, 2)))
  assert len(embedding.losses) == 1
  gates = layers.ExpertGates(2, [[0, 1], [0, 1]], kernel_initializer="zeros", kernel_regularizer=l2)
  _, weights = gates(tf.ones([4, 3]), tf.ones([4, 2, 5]))
  np.testing.assert_allclose(weights.numpy(), 0.5)  # zero kernel: uniform gates
  assert len(gates.losses) == 1
  tower = layers.PositionBiasTower(3, 0.0, bias_initializer="ones")
  np.testing.assert_array_equal(tower(tf.constant([[2]], tf.int64)).numpy(), [[1.0]])
  for layer in (embedding, gates, tower):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
