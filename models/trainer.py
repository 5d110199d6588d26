"""TFX Trainer entry point: `run_fn` trains the spec's multi-task model.

The spec arrives in `fn_args.custom_config` (see `pipeline.pipeline`), so the
architecture, heads, losses, balancing and training budget all come from the
one spec file. The input pipeline reads the Transform output (GZIP TFRecords of
transformed `tf.Example`s), shuffles serialized records, batches, then parses
whole batches at once; it is cached in memory when it fits.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Tuple

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx

from models import architectures, export, telemetry
from models.features import spec_from_custom_config, vocab_sizes
from models.spec import RankingSpec

# Serialized transformed examples up to this size are cached in memory.
_CACHE_LIMIT_BYTES = 2 << 30


def _files(patterns: List[str]) -> List[str]:
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f"no training files match {patterns}")
  return files


def count_records(patterns: List[str]) -> int:
  """Examples in the files; Keras needs step counts to run several steps per call."""
  dataset = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
  return int(dataset.batch(65536).reduce(tf.constant(0, tf.int64),
                                         lambda total, batch: total + tf.size(batch,
                                                                              tf.int64)))


def make_dataset(patterns: List[str], tft_output: tft.TFTransformOutput,
                 spec: RankingSpec, batch_size: int, shuffle: bool) -> tf.data.Dataset:
  """(features, labels) batches: labels keyed by task name, shape [batch, 1]."""
  files = _files(patterns)
  feature_spec = tft_output.transformed_feature_spec()
  feature_names = [f.name for f in spec.model_features]
  if spec.model.position_bias and spec.position_feature is not None:
    feature_names.append(spec.position_feature.name)
  tasks = [(t.name, t.label) for t in spec.tasks]

  def parse(records: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    parsed = tf.io.parse_example(records, feature_spec)
    features = {name: parsed[name] for name in feature_names}
    labels = {task: tf.reshape(parsed[label], [-1, 1]) for task, label in tasks}
    return features, labels

  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                    num_parallel_reads=tf.data.AUTOTUNE)
  if sum(tf.io.gfile.stat(f).length for f in files) * 4 < _CACHE_LIMIT_BYTES:
    dataset = dataset.cache()
  if shuffle:
    dataset = dataset.shuffle(spec.training.shuffle_buffer, seed=spec.training.seed,
                              reshuffle_each_iteration=True)
  return (dataset.batch(batch_size, drop_remainder=shuffle)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the spec's model on the Transform output and exports it."""
  spec = spec_from_custom_config(fn_args.custom_config)
  tf.keras.utils.set_random_seed(spec.training.seed)
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  train_ds = make_dataset(fn_args.train_files, tft_output, spec,
                          spec.training.batch_size, shuffle=True)
  eval_ds = make_dataset(fn_args.eval_files, tft_output, spec,
                         spec.training.eval_batch_size, shuffle=False)
  train_steps = max(1, count_records(fn_args.train_files) // spec.training.batch_size)
  eval_steps = -(-count_records(fn_args.eval_files) // spec.training.eval_batch_size)

  model = architectures.build_model(spec, vocab_sizes(spec, tft_output))
  architectures.compile_model(model, spec)
  log_dir = os.path.join(fn_args.model_run_dir, "logs")
  started = time.perf_counter()
  model.fit(train_ds.repeat(), steps_per_epoch=train_steps, validation_data=eval_ds,
            validation_steps=eval_steps, epochs=spec.training.epochs,
            callbacks=telemetry.callbacks(spec, log_dir), verbose=2)
  logging.info("Training took %.1f s", time.perf_counter() - started)
  export.export_serving_model(model, spec, tft_output, fn_args.serving_model_dir)
