"""Per-row task losses, label masks and their distribution-safe means.

A task's loss is the mean of its per-row loss over the rows where its label
exists: all rows for a root task, the rows whose parent label is positive for a
conditional task. Means are taken over the *global* batch (all replicas), so
that the per-replica losses Keras' optimizer sums across replicas add up to the
loss of the whole batch.
"""

from __future__ import annotations

from typing import Dict, Mapping

import tensorflow as tf

from models.spec import RankingSpec, TaskSpec

# log(p) is clipped below 0 so that log(1 - p) stays finite when p rounds to 1.
_MAX_LOG_PROBABILITY = -1e-7


def binary_cross_entropy_from_logits(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def log1mexp(x: tf.Tensor) -> tf.Tensor:
  """log(1 - exp(x)) for x < 0, accurate on both ends (Maechler 2012)."""
  return tf.where(x > -0.6931472, tf.math.log(-tf.math.expm1(x)), tf.math.log1p(-tf.exp(x)))


def binary_cross_entropy_from_log_probability(
  labels: tf.Tensor, log_probability: tf.Tensor
) -> tf.Tensor:
  """BCE of a probability given as its log, e.g. log(pCTR) + log(pCVR) for
  ESMM's pCTCVR: stays finite where the product underflows."""
  log_p = tf.minimum(log_probability, _MAX_LOG_PROBABILITY)
  return -(labels * log_p + (1.0 - labels) * log1mexp(log_p))


def regression_loss(
  task: TaskSpec, labels: tf.Tensor, predictions: tf.Tensor, huber_delta: float = 1.0
) -> tf.Tensor:
  error = predictions - labels
  if task.loss == "huber":
    absolute = tf.abs(error)
    quadratic = tf.minimum(absolute, huber_delta)
    return 0.5 * tf.square(quadratic) + huber_delta * (absolute - quadratic)
  return tf.square(error)


def replica_sum(value: tf.Tensor) -> tf.Tensor:
  """Sum over the replicas of a distribution strategy (identity without one)."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas() -> int:
  context = tf.distribute.get_replica_context()
  return 1 if context is None else context.num_replicas_in_sync


def global_masked_mean(per_row: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
  """This replica's share of the mean of `per_row` over the masked rows of the
  global batch: summed over replicas it is the global mean. A batch without any
  labelled row gives 0 (and zero gradient)."""
  per_row = tf.reshape(tf.cast(per_row, tf.float32), [-1])
  if mask is None:
    mask = tf.ones_like(per_row)
  mask = tf.reshape(mask, [-1])
  count = replica_sum(tf.reduce_sum(mask))
  return tf.reduce_sum(per_row * mask) / tf.maximum(count, 1.0)


def label_dict(spec: RankingSpec, labels: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Labels as float32 [B, 1], one per task."""
  return {t.name: tf.reshape(tf.cast(labels[t.name], tf.float32), [-1, 1]) for t in spec.tasks}
