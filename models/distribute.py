"""Training options the trainer sets before building the model: the
distribution strategy and the precision policy.

    strategy = distribute.strategy_from_environment()
    distribute.set_precision_policy(spec)
    with strategy.scope():
      model = architectures.build_model(spec, vocab_sizes)
      model.compile_for_spec(spec)
    model.fit(...)   # datasets batched by the global batch size

The models need nothing else: task-loss means are taken over the global batch
(`models.losses.global_masked_mean`) and balancers that need global values
all-reduce them.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
import tf_keras as keras

from models.spec import RankingSpec


def strategy_from_environment() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster of more
  than one task, MirroredStrategy when this host has more than one GPU, else
  the default (single-device) strategy."""
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  if len(tf.config.list_logical_devices("GPU")) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def set_precision_policy(spec: RankingSpec) -> None:
  """mixed_float16 when `spec.training.mixed_precision`, else float32. Call it
  before building the model; outputs stay float32 either way."""
  keras.mixed_precision.set_global_policy(
    "mixed_float16" if spec.training.mixed_precision else "float32"
  )
