"""Feature preprocessing derived from the spec: the TFT `preprocessing_fn`.

One transform per declared feature kind (see `models.spec.FeatureSpec`):
categorical features become integer ids (a TFT vocabulary or a hash), numeric
features are z-scored (after log1p for heavy tails) or bucketized into
quantiles, the position is passed through for the position-bias tower, and
each task's label becomes a float32 (log1p-transformed where the spec says
so). Identifiers and ground-truth columns are not transformed: the model never
sees them.

Categorical features encoded by a vocabulary without `top_k` share ONE TFT
vocabulary of `feature=value` keys: one analyzer instead of one per feature,
which made the census Transform (33 categorical columns) ~3.5x faster. Their ids
index the shared id space, so `vocab_sizes` reports the shared size for each.

The transformed keys are the feature names and the label column names, so the
model and the trainer derive every key from the spec as well.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models.spec import FeatureSpec, RankingSpec, TaskSpec, spec_from_json

SPEC_CONFIG_KEY = "spec"
SHARED_VOCABULARY = "shared_categorical_vocabulary"
_KEY_SEPARATOR = "="


def spec_from_custom_config(custom_config: Mapping[str, Any]) -> RankingSpec:
  """The spec a TFX component was given in its `custom_config`."""
  return spec_from_json(custom_config[SPEC_CONFIG_KEY])


def preprocessing_fn(
  inputs: Dict[str, tf.Tensor], custom_config: Mapping[str, Any]
) -> Dict[str, tf.Tensor]:
  """TFT entry point: transforms raw columns into model features and labels."""
  spec = spec_from_custom_config(custom_config)
  outputs: Dict[str, tf.Tensor] = shared_vocabulary_ids(spec, inputs)
  for feature in spec.features:
    if feature.name in outputs:
      continue
    if feature.is_model_input:
      outputs[feature.name] = transform_feature(feature, inputs[feature.column])
    elif feature.kind == "position":
      outputs[feature.name] = tf.clip_by_value(
        tf.cast(inputs[feature.column], tf.int64), 1, feature.max_value
      )
  for task in spec.tasks:
    outputs[task.label] = transform_label(task, inputs[task.label])
  return outputs


def uses_shared_vocabulary(feature: FeatureSpec) -> bool:
  return (
    feature.kind == "categorical" and feature.encoding == "vocabulary" and feature.top_k is None
  )


def shared_vocabulary_ids(
  spec: RankingSpec, inputs: Mapping[str, tf.Tensor]
) -> Dict[str, tf.Tensor]:
  """Ids of every shared-vocabulary feature, from one vocabulary analyzer."""
  keys = {}
  for feature in spec.features:
    if uses_shared_vocabulary(feature):
      column = inputs[feature.column]
      values = column if column.dtype == tf.string else tf.strings.as_string(column)
      keys[feature.name] = tf.strings.join([feature.name + _KEY_SEPARATOR, values])
  if not keys:
    return {}
  vocabulary = tft.vocabulary(
    tf.concat([tf.reshape(k, [-1]) for k in keys.values()], 0), vocab_filename=SHARED_VOCABULARY
  )
  return {
    name: tft.apply_vocabulary(key, vocabulary, num_oov_buckets=1) for name, key in keys.items()
  }


def transform_feature(feature: FeatureSpec, column: tf.Tensor) -> tf.Tensor:
  """The transform of one model-input feature."""
  if feature.kind == "categorical":
    values = column if column.dtype == tf.string else tf.strings.as_string(column)
    if feature.encoding == "hash":
      return tf.strings.to_hash_bucket_fast(values, feature.hash_buckets)
    return tft.compute_and_apply_vocabulary(
      values,
      top_k=feature.top_k,
      num_oov_buckets=feature.num_oov_buckets,
      vocab_filename=feature.name,
    )
  values = tf.cast(column, tf.float32)
  if feature.fill is not None:
    values = tf.where(tf.math.is_finite(values), values, feature.fill)
  if feature.transform == "bucketize":
    return tft.bucketize(values, feature.num_buckets)
  if feature.transform == "log_zscore":
    # Signed log keeps the transform defined for negative values as well.
    return tft.scale_to_z_score(tf.sign(values) * tf.math.log1p(tf.abs(values)))
  if feature.transform == "zscore":
    return tft.scale_to_z_score(values)
  return values


def transform_label(task: TaskSpec, column: tf.Tensor) -> tf.Tensor:
  label = tf.cast(column, tf.float32)
  if task.label_transform == "log1p":
    label = tf.math.log1p(tf.maximum(label, 0.0))
  return label


def inverse_label_transform(task: TaskSpec, prediction: tf.Tensor) -> tf.Tensor:
  """Maps a regression prediction back to the label's own unit."""
  if task.label_transform == "log1p":
    return tf.math.expm1(prediction)
  return prediction


def vocab_sizes(spec: RankingSpec, tft_output: tft.TFTransformOutput) -> Dict[str, int]:
  """Number of ids of each embedded feature (including OOV buckets)."""
  sizes: Dict[str, int] = {}
  for feature in spec.features:
    if uses_shared_vocabulary(feature):
      sizes[feature.name] = tft_output.vocabulary_size_by_name(SHARED_VOCABULARY) + 1
    elif feature.kind == "categorical" and feature.encoding == "hash":
      sizes[feature.name] = feature.hash_buckets
    elif feature.kind == "categorical":
      sizes[feature.name] = (
        tft_output.vocabulary_size_by_name(feature.name) + feature.num_oov_buckets
      )
    elif feature.kind == "numeric" and feature.transform == "bucketize":
      sizes[feature.name] = feature.num_buckets
    elif feature.kind == "position":
      sizes[feature.name] = feature.max_value + 1
  return sizes


def vocabulary_files(spec: RankingSpec, tft_output: tft.TFTransformOutput) -> Dict[str, str]:
  """{TFT vocabulary name: its file} of the embedded features' vocabularies."""
  files: Dict[str, str] = {}
  for feature in spec.features:
    if uses_shared_vocabulary(feature):
      files[SHARED_VOCABULARY] = tft_output.vocabulary_file_by_name(SHARED_VOCABULARY)
    elif feature.kind == "categorical" and feature.encoding == "vocabulary":
      files[feature.name] = tft_output.vocabulary_file_by_name(feature.name)
  return files


def serving_raw_columns(spec: RankingSpec) -> Dict[str, str]:
  """The raw columns a served request carries: model inputs only (no labels,
  no position, no identifiers or ground truth)."""
  return {f.column: f.dtype for f in spec.model_features}
