"""Loss balancing strategies, on toy objectives and inside model.fit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import architectures, balancing


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
      gradient=lambda target, vs: tape.gradient(
        target, vs, unconnected_gradients=tf.UnconnectedGradients.ZERO
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
@pytest.mark.parametrize("strategy", ["fixed", "uncertainty", "gradnorm", "dwa", "pcgrad"])
def test_every_strategy_trains_under_jit_compile(tiny, strategy):
  spec = tiny.make_spec(
    "mmoe", balancing=strategy, balancing_params=({"window_steps": 2} if strategy == "dwa" else {})
  ).replace(training={"jit_compile": True})
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec)
  history = model.fit(tiny.make_dataset(spec, n=512, batch_size=64), epochs=2, verbose=0)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
