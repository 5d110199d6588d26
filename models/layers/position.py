"""The position-bias tower: a shallow tower on the displayed position, added to
a task's logit in training only, so that the served score is position-free."""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="mtlrank")
class PositionBiasTower(keras.layers.Layer):
  """A shallow tower reading only the displayed position: one bias logit per
  position (YouTube's shallow tower, PAL). Its logit is added to a task's logit
  in training only; in training each row drops it with probability
  `dropout_rate`, so that the main tower cannot lean on the position.

  call(position [B, 1] int in 1..max_position) -> logit [B, 1] float32.
  """

  def __init__(
    self,
    max_position: int,
    dropout_rate: float = 0.1,
    bias_initializer: Any = "zeros",
    **kwargs: Any,
  ):
    """`bias_initializer`: the position logits' start (zeros: no bias yet)."""
    super().__init__(**kwargs)
    self.bias_initializer = keras.initializers.get(bias_initializer)
    self.max_position = int(max_position)
    self.dropout_rate = float(dropout_rate)

  def build(self, input_shape: Any) -> None:
    self.bias_by_position = self.add_weight(
      name="bias_by_position",
      shape=(self.max_position + 1,),
      initializer=self.bias_initializer,
      dtype=tf.float32,
    )
    super().build(input_shape)

  def call(self, position: tf.Tensor, training: bool | None = None) -> tf.Tensor:
    ids = tf.clip_by_value(tf.reshape(tf.cast(position, tf.int64), [-1, 1]), 0, self.max_position)
    logit = tf.gather(tf.cast(self.bias_by_position, tf.float32), ids)
    if training and self.dropout_rate:
      keep = tf.random.uniform(tf.shape(logit)) >= self.dropout_rate
      logit = logit * tf.cast(keep, logit.dtype)
    return logit

  def get_config(self) -> Dict[str, Any]:
    return {
      **super().get_config(),
      "max_position": self.max_position,
      "dropout_rate": self.dropout_rate,
      "bias_initializer": keras.initializers.serialize(self.bias_initializer),
    }
