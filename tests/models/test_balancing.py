"""Loss balancing strategies, on toy objectives and inside model.fit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import architectures, balancing, min_norm


def _request(balancer, losses_fn, variables, shared, step=0):
  """A GradientRequest for task losses `losses_fn()` -> [T] of `variables`."""
  tape = tf.GradientTape(persistent=True)
  with tape:
    task_losses = losses_fn()
    objectives = balancer.task_objectives(task_losses)
    request = balancing.GradientRequest(
      task_losses=task_losses,
      task_loss_terms=tf.unstack(task_losses),
      task_objectives=tf.unstack(objectives),
      total_objective=tf.reduce_sum(objectives),
      gradient=lambda target, vs, output_gradients=None: tape.gradient(
        target,
        vs,
        output_gradients=output_gradients,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
      ),
      variables=variables,
      shared_variables=shared,
      last_shared_variables=shared,
      step=tf.constant(step, tf.int64),
    )
  return request


def test_project_conflicting_leaves_no_conflict_between_two_tasks():
  gradients = tf.constant([[1.0, 0.0, 2.0], [-1.0, 1.0, -0.5]])
  assert float(tf.reduce_sum(gradients[0] * gradients[1])) < 0
  projected = balancing.project_conflicting(gradients, tf.constant([1, 0]))
  combined = tf.reduce_sum(projected, axis=0)
  for task_gradient in gradients:
    assert float(tf.reduce_sum(combined * task_gradient)) >= 0
  # Each projected gradient is orthogonal to the one it conflicted with.
  np.testing.assert_allclose(tf.reduce_sum(projected[0] * gradients[1]), 0, atol=1e-6)


def test_project_conflicting_keeps_agreeing_gradients():
  gradients = tf.constant([[1.0, 2.0], [0.5, 0.1]])
  np.testing.assert_array_equal(
    balancing.project_conflicting(gradients, tf.constant([0, 1])), gradients
  )


def test_pcgrad_update_agrees_with_each_task_on_shared_and_sums_own_parameters(tiny):
  spec = tiny.make_spec("mmoe", tasks="two_binary", balancing="pcgrad")
  balancer = balancing.create(spec)
  shared = tf.Variable([0.3, -0.2, 0.5])
  own = tf.Variable([1.0, 2.0])
  a, b = tf.constant([1.0, 0.0, 2.0]), tf.constant([-1.0, 1.0, -0.5])
  request = _request(
    balancer,
    lambda: tf.stack([tf.reduce_sum(shared * a) + own[0], tf.reduce_sum(shared * b) + own[1]]),
    [shared, own],
    [shared],
  )
  shared_update, own_update = balancer.gradients(request)
  assert float(tf.reduce_sum(shared_update * a)) >= 0
  assert float(tf.reduce_sum(shared_update * b)) >= 0
  np.testing.assert_allclose(own_update, [1.0, 1.0])


def test_dwa_gives_more_weight_to_the_task_whose_loss_falls_slower(tiny):
  spec = tiny.make_spec(
    "mmoe",
    tasks="two_binary",
    balancing="dwa",
    balancing_params={"window_steps": 1, "temperature": 1.0},
  )
  balancer = balancing.create(spec)
  w = tf.Variable(1.0)
  np.testing.assert_allclose(balancer.loss_weights(), [1.0, 1.0])
  for values in ([1.0, 1.0], [0.5, 0.95]):
    balancer.gradients(_request(balancer, lambda: w * tf.constant(values), [w], [w]))
  weights = balancer.loss_weights().numpy()
  assert weights[1] > 1.0 > weights[0]
  np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-6)


def test_gradnorm_shifts_weight_to_the_task_with_the_smaller_gradient(tiny):
  spec = tiny.make_spec(
    "mmoe", tasks="two_binary", balancing="gradnorm", balancing_params={"learning_rate": 0.1}
  )
  balancer = balancing.create(spec)
  w = tf.Variable([1.0, 1.0])
  request = _request(
    balancer, lambda: tf.stack([10.0 * tf.reduce_sum(w), tf.reduce_sum(w)]), [w], [w]
  )
  balancer.gradients(request)
  weights = balancer.loss_weights().numpy()
  assert weights[0] < 1.0 < weights[1]
  np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-6)


def test_uncertainty_weights_move_during_training(tiny):
  spec = tiny.make_spec("mmoe", balancing="uncertainty")
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  before = model.balancer.loss_weights().numpy()
  model.fit(tiny.make_dataset(spec, n=256, batch_size=64), epochs=2, verbose=0)
  after = model.balancer.loss_weights().numpy()
  assert np.all(np.abs(after - before) > 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fixed", "uncertainty", "gradnorm", "dwa", "pcgrad", "mgda"])
def test_every_strategy_trains_under_jit_compile(tiny, strategy):
  spec = tiny.make_spec(
    "mmoe", balancing=strategy, balancing_params=({"window_steps": 2} if strategy == "dwa" else {})
  ).replace(training={"jit_compile": True})
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  history = model.fit(tiny.make_dataset(spec, n=512, batch_size=64), epochs=2, verbose=0)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def _task_gradients(num_tasks, seed):
  """Random task gradients, some pairs conflicting (negative inner products)."""
  return tf.constant(np.random.default_rng(seed).normal(size=(num_tasks, 6)), tf.float32)


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_norm_point_is_on_the_simplex_and_agrees_with_every_task(num_tasks, seed):
  g = _task_gradients(num_tasks, seed)
  alpha = min_norm.min_norm_weights(tf.matmul(g, g, transpose_b=True), max_iterations=500)
  assert np.all(alpha.numpy() >= 0) and abs(float(tf.reduce_sum(alpha)) - 1.0) < 1e-5
  d = tf.linalg.matvec(g, alpha, transpose_a=True)
  squared = float(tf.reduce_sum(d * d))
  # Optimality: <d, g_t> >= |d|^2 for every t (up to the solver's tolerance).
  assert np.all(tf.linalg.matvec(g, d).numpy() >= squared * (1 - 1e-3) - 1e-6)
  # No point of the simplex does better (a grid of random convex combinations).
  others = np.random.default_rng(seed + 10).dirichlet(np.ones(num_tasks), 2000)
  assert squared <= np.min(np.sum((others @ g.numpy()) ** 2, axis=1)) + 1e-5


def test_two_task_closed_form_matches_a_line_search():
  g = tf.constant([[1.0, 0.0, 2.0], [-1.0, 1.0, -0.5]])
  a = float(min_norm.two_task_weights(tf.matmul(g, g, transpose_b=True))[0])
  grid = np.linspace(0, 1, 10001)
  norms = np.sum((grid[:, None] * g.numpy()[0] + (1 - grid[:, None]) * g.numpy()[1]) ** 2, 1)
  assert abs(a - grid[np.argmin(norms)]) < 1e-3


@pytest.mark.parametrize("use_representation", [True, False], ids=["upper_bound", "exact"])
def test_mgda_update_agrees_with_every_task_on_shared_and_sums_own_parameters(
  tiny, use_representation
):
  spec = tiny.make_spec("mmoe", tasks="chain", balancing="mgda")  # three tasks: Frank-Wolfe
  balancer = balancing.create(spec)
  shared = tf.Variable([[0.3, -0.2], [0.5, 0.1], [-0.4, 0.2]])  # Z = x @ shared
  own = tf.Variable([1.0, 2.0, 3.0])
  x = tf.constant([[1.0, 2.0, -1.0], [0.5, -1.0, 1.5]])
  # Tasks 0 and 1 conflict; the origin is outside the hull of the three task
  # gradients (with [0.2, -1.5] it was inside: a Pareto-stationary point, where
  # MGDA's direction is zero). The min-norm point is 0.6 g0 + 0.4 g1.
  heads = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.2, 1.5]])
  # As in MultiTaskModel.train_step: the request is built while the tape
  # records, the balancer's gradients are taken after it stopped.
  tape = tf.GradientTape(persistent=True)
  with tape:
    z = tf.matmul(x, shared)
    task_losses = tf.reduce_sum(z[None] * heads[:, None], axis=[1, 2]) + own
    objectives = balancer.task_objectives(task_losses)
    request = balancing.GradientRequest(
      task_losses=task_losses,
      task_loss_terms=tf.unstack(task_losses),
      task_objectives=tf.unstack(objectives),
      total_objective=tf.reduce_sum(objectives),
      gradient=lambda target, vs, output_gradients=None: tape.gradient(
        target,
        vs,
        output_gradients=output_gradients,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
      ),
      variables=[shared, own],
      shared_variables=[shared],
      last_shared_variables=[shared],
      step=tf.constant(0, tf.int64),
      representations=(z,) if use_representation else (),
    )
  shared_update, own_update = balancer.gradients(request)
  alphas = balancer.alphas.numpy()
  assert np.all(alphas >= 0) and abs(alphas.sum() - 1) < 1e-5
  np.testing.assert_allclose(alphas, [0.6, 0.4, 0.0], atol=1e-4)
  task_gradients = [tape.gradient(loss, shared) for loss in request.task_loss_terms]
  for task_gradient in task_gradients:
    assert float(tf.reduce_sum(shared_update * task_gradient)) >= -1e-6
  assert float(tf.norm(shared_update)) > 0
  # c_t = alpha_t * sum(loss_weight) = 3 alpha_t (normalization none).
  expected = sum(3.0 * a * g for a, g in zip(alphas, task_gradients))
  np.testing.assert_allclose(shared_update, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(own_update, [1.0, 1.0, 1.0])
  np.testing.assert_allclose(balancer.loss_weights(), alphas * 3.0, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe", "esmm"])
def test_recorded_representation_carries_every_shared_gradient(tiny, architecture):
  """MGDA-UB's premise: the shared variables reach each task's loss only
  through the recorded representation, so the chain rule through it gives
  their whole gradient."""
  spec = tiny.make_spec(architecture)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  features, labels = tiny.make_batch(spec, n=32)
  with tf.GradientTape(persistent=True) as tape:
    object.__setattr__(model, "_representation_sink", [])
    logits, _ = model.forward(features, training=True)
    representations = list(model._representation_sink)
    object.__setattr__(model, "_representation_sink", None)
    task_losses, _ = model.task_losses(labels, logits)
    per_task = tf.unstack(task_losses)  # while recording, or every gradient is zero
  assert representations
  for loss in per_task:
    direct = tape.gradient(loss, model.shared_variables, unconnected_gradients="zero")
    through = tape.gradient(
      representations,
      model.shared_variables,
      output_gradients=tape.gradient(loss, representations, unconnected_gradients="zero"),
      unconnected_gradients="zero",
    )
    assert sum(float(tf.norm(tf.convert_to_tensor(g))) for g in direct) > 0
    for a, b in zip(direct, through):
      np.testing.assert_allclose(tf.convert_to_tensor(a), tf.convert_to_tensor(b), atol=1e-6)


@pytest.mark.parametrize("architecture", ["mmoe", "stem"])
def test_mgda_trains_and_keeps_its_weights_on_the_simplex(tiny, architecture):
  spec = tiny.make_spec(architecture, balancing="mgda", balancing_params={"normalization": "l2"})
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  before = [v.numpy().copy() for v in model.shared_variables]
  history = model.fit(tiny.make_dataset(spec, n=512, batch_size=64), epochs=3, verbose=0).history
  assert history["loss"][-1] < history["loss"][0]
  # The shared variables train too (the towers alone would lower the loss).
  for value, variable in zip(before, model.shared_variables):
    assert np.abs(variable.numpy() - value).max() > 0, variable.name
  alphas = model.balancer.alphas.numpy()
  assert np.all(alphas >= 0) and abs(alphas.sum() - 1) < 1e-5
  assert np.ptp(alphas) > 1e-3  # it moved off the uniform start


def test_mgda_refuses_an_unknown_normalization(tiny):
  with pytest.raises(ValueError, match="normalization"):
    tiny.make_spec("mmoe", balancing="mgda", balancing_params={"normalization": "max"})


@pytest.mark.parametrize("architecture", ["mmoe", "stem"])
def test_mgda_and_its_options_survive_the_model_config_round_trip(tiny, architecture):
  spec = tiny.make_spec(
    architecture,
    balancing="mgda",
    balancing_params={"normalization": "loss+", "max_iterations": 7},
  )
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  clone = type(model).from_config(model.get_config())
  assert clone.get_config() == model.get_config() and clone.spec == spec
  assert isinstance(clone.balancer, balancing.MGDA)
  assert (clone.balancer.normalization, clone.balancer.max_iterations) == ("loss+", 7)
