"""SavedModel export: the signatures TF Serving and TFMA call.

`serving_default` takes serialized raw `tf.Example`s, applies the TFT graph
(the same one training used, so training and serving cannot drift) and returns
one named output per task (probabilities for binary tasks, the label's own unit
for regression tasks) and the fused ranking `score` the spec declares.
`raw_features` takes one typed tensor per raw feature, for clients that do not
build `tf.Example`s. `classification` (or `regression`) serves the spec's
`serving.classify_task` to TF Serving's Classify (Regress) API.
`transform_features` returns the transformed features (TFMA and debugging).
`slice_features` (only when the spec has derived features) returns each
bucketized feature's bucket and each renamed feature's column value under the
feature's name, which TFMA slices on (pipeline/eval_config.py).
The position never enters a served request: served scores are position-free.
`evaluation` (only when the spec has a position-bias tower) is for TFMA, not
for serving: it reads logged examples, position included, and returns the same
outputs with the position logit added to the position-biased task, i.e. the
model's fit to the logged, position-biased outcomes; the fused score stays the
served one, and the task's served output is also returned as `<task>_served`
(docs/evaluation.md).
Warm-up requests (`assets.extra/tf_serving_warmup_requests`) are written into
the export, so a server replays them before a version takes traffic.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from contract import (
  CLASSIFY_INPUT,
  CLASSIFY_METHOD,
  CLASSIFY_OUTPUT_CLASSES,
  CLASSIFY_OUTPUT_SCORES,
  CLASSIFY_SIGNATURE,
  EVAL_SIGNATURE,
  EXAMPLES_INPUT,
  FUSED_SCORE_OUTPUT,
  RAW_SIGNATURE,
  REGRESS_METHOD,
  REGRESS_OUTPUTS,
  REGRESS_SIGNATURE,
  SERVED_OUTPUT_SUFFIX,
  SERVING_SIGNATURE,
  SLICE_SIGNATURE,
  TRANSFORM_SIGNATURE,
)
from contract.signature_defs import set_signature_method_names
from contract.warmup import write_warmup_requests
from models.features import inverse_label_transform, serving_raw_columns
from models.spec import RankingSpec

WARMUP_REQUESTS = 8
_TF_DTYPES = {"string": tf.string, "int": tf.int64, "float": tf.float32}
# Exponents act on probabilities and regression outputs alike; a small floor
# keeps a zero prediction from making the log-space product undefined.
_SCORE_FLOOR = 1e-7


def fused_score(spec: RankingSpec, outputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """prod_t output_t ** exponent_t over the spec's `serving.score` tasks."""
  log_score = tf.add_n(
    [
      exponent * tf.math.log(tf.maximum(outputs[task], _SCORE_FLOOR))
      for task, exponent in spec.serving.score.items()
    ]
  )
  return tf.exp(log_score)


class ServingModule(tf.Module):
  """Holds the model and the TFT layer so the SavedModel tracks both."""

  def __init__(self, model: keras.Model, tft_output: tft.TFTransformOutput, spec: RankingSpec):
    super().__init__()
    self.model = model
    self.tft_layer = tft_output.transform_features_layer()
    self._spec = spec
    raw_spec = tft_output.raw_feature_spec()
    self._serving_feature_spec = {c: raw_spec[c] for c in serving_raw_columns(spec)}
    self._transform_feature_spec = raw_spec
    self._model_inputs = [f.name for f in spec.model_features]

  def predict_transformed(self, transformed: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    features = {name: transformed[name] for name in self._model_inputs}
    raw_outputs = self.model(features, training=False)
    outputs = {}
    for task in self._spec.tasks:
      value = tf.reshape(tf.cast(raw_outputs[task.name], tf.float32), [-1])
      outputs[task.name] = value if task.is_binary else inverse_label_transform(task, value)
    outputs[FUSED_SCORE_OUTPUT] = fused_score(self._spec, outputs)
    return outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(examples, self._serving_feature_spec)
    return self.predict_transformed(self.tft_layer(parsed))

  def serve_raw_features(self, **columns: tf.Tensor) -> Dict[str, tf.Tensor]:
    # tf.function renames a keyword that is no Python identifier (Ali-CCP's
    # column "101" arrives as "arg_101"): back to the column the transform reads.
    names = {raw_argument_name(c): c for c in serving_raw_columns(self._spec)}
    parsed = {names.get(name, name): tf.reshape(value, [-1, 1]) for name, value in columns.items()}
    return self.predict_transformed(self.tft_layer(parsed))

  # Not a tf.function here: saving traces every decorated method, and a spec
  # without a position feature has none to read (export_serving_model wraps it).
  def evaluate_logged(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The served outputs (fused score included), except the position-biased
    task's, which gets the position logit of the logged position; its served
    output stays under `<task>_served`."""
    transformed = self.tft_layer(tf.io.parse_example(examples, self._transform_feature_spec))
    outputs = self.predict_transformed(transformed)
    position = self._spec.position_feature.name
    features = {name: transformed[name] for name in (*self._model_inputs, position)}
    logits, _ = self.model.forward(features, training=False, use_position=True)
    task = self._spec.task(self.model.position_task)
    outputs[task.name + SERVED_OUTPUT_SUFFIX] = outputs[task.name]
    value = tf.reshape(tf.cast(self.model.heads(logits)[task.name], tf.float32), [-1])
    outputs[task.name] = value if task.is_binary else inverse_label_transform(task, value)
    return outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def transform_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(examples, self._transform_feature_spec)
    return self.tft_layer(parsed)

  # Wrapped in export_serving_model: a spec without a derived feature has none.
  def slice_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Each derived feature's slice value, under its name: a bucketized
    feature's bucket id, a renamed one's column value (the raw examples hold
    the column, under its own name). Reads served columns only."""
    parsed = tf.io.parse_example(examples, self._serving_feature_spec)
    transformed = self.tft_layer(parsed)
    values = {}
    for name in self._spec.derived_features:
      feature = self._spec.feature(name)
      bucketized = feature.kind == "numeric" and feature.transform == "bucketize"
      values[name] = tf.reshape(transformed[name] if bucketized else parsed[feature.column], [-1])
    return values

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)])
  def classify(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    probability = self.serve_examples(inputs)[self._spec.serving.classify_task]
    batch = tf.shape(probability)[0]
    return {
      CLASSIFY_OUTPUT_SCORES: tf.stack([1.0 - probability, probability], axis=1),
      CLASSIFY_OUTPUT_CLASSES: tf.tile(tf.constant([["0", "1"]]), [batch, 1]),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)])
  def regress(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {REGRESS_OUTPUTS: self.serve_examples(inputs)[self._spec.serving.classify_task]}


def has_eval_signature(spec: RankingSpec) -> bool:
  """Whether the export has the position-aware `evaluation` signature."""
  return spec.model.position_bias and spec.position_feature is not None


def raw_argument_name(column: str) -> str:
  """The `raw_features` signature's input key for a column: the column, or, for
  one that is no Python identifier, tf.function's sanitized name (non-alphanumerics
  to "_", "arg_" before a leading non-letter), which its signature then uses."""
  swapped = "".join(c if c.isalnum() else "_" for c in column)
  return swapped if swapped[0].isalpha() else "arg_" + swapped


def raw_input_signature(spec: RankingSpec) -> Dict[str, tf.TensorSpec]:
  return {
    column: tf.TensorSpec([None], _TF_DTYPES[dtype], name=column)
    for column, dtype in serving_raw_columns(spec).items()
  }


def warmup_examples(
  spec: RankingSpec, tft_output: tft.TFTransformOutput, count: int = WARMUP_REQUESTS
) -> List[bytes]:
  """Plausible raw requests: categorical values taken from the vocabularies."""
  from models.features import SHARED_VOCABULARY, uses_shared_vocabulary

  shared: Dict[str, List[bytes]] = {}
  for key in (
    tft_output.vocabulary_by_name(SHARED_VOCABULARY)
    if any(uses_shared_vocabulary(f) for f in spec.model_features)
    else []
  ):
    name, _, value = key.partition(b"=")
    shared.setdefault(name.decode(), []).append(value)
  vocabularies = {
    f.column: shared.get(f.name) or tft_output.vocabulary_by_name(f.name)
    for f in spec.model_features
    if f.kind == "categorical" and f.encoding == "vocabulary"
  }
  examples = []
  for i in range(count):
    example = tf.train.Example()
    for column, dtype in serving_raw_columns(spec).items():
      feature = example.features.feature[column]
      if dtype == "string":
        vocabulary = vocabularies.get(column) or [f"warmup-{i}".encode()]
        feature.bytes_list.value.append(vocabulary[i % len(vocabulary)])
      elif dtype == "int":
        feature.int64_list.value.append(i)
      else:
        feature.float_list.value.append(float(i))
    examples.append(example.SerializeToString())
  return examples


def export_serving_model(
  model: keras.Model, spec: RankingSpec, tft_output: tft.TFTransformOutput, export_dir: str
) -> ServingModule:
  """Writes the SavedModel with its signatures and warm-up requests."""
  module = ServingModule(model, tft_output, spec)
  raw = tf.function(module.serve_raw_features)
  classify_task = spec.task(spec.serving.classify_task)
  signatures = {
    SERVING_SIGNATURE: module.serve_examples.get_concrete_function(),
    RAW_SIGNATURE: raw.get_concrete_function(**raw_input_signature(spec)),
    TRANSFORM_SIGNATURE: module.transform_features.get_concrete_function(),
  }
  if has_eval_signature(spec):
    signatures[EVAL_SIGNATURE] = tf.function(
      module.evaluate_logged,
      input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
    ).get_concrete_function()
  if spec.derived_features:
    signatures[SLICE_SIGNATURE] = tf.function(
      module.slice_features,
      input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
    ).get_concrete_function()
  if classify_task.is_binary:
    signatures[CLASSIFY_SIGNATURE] = module.classify.get_concrete_function()
    method_names = {CLASSIFY_SIGNATURE: CLASSIFY_METHOD}
  else:
    signatures[REGRESS_SIGNATURE] = module.regress.get_concrete_function()
    method_names = {REGRESS_SIGNATURE: REGRESS_METHOD}
  tf.saved_model.save(module, export_dir, signatures=signatures)
  set_signature_method_names(export_dir, method_names)
  write_warmup_requests(export_dir, warmup_examples(spec, tft_output), model_name=spec.name)
  return module
