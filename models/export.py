"""SavedModel export: the signatures TF Serving and TFMA call.

`serving_default` takes serialized raw `tf.Example`s, applies the TFT graph
(the same one training used, so training and serving cannot drift) and returns
one named output per task (probabilities for binary tasks, the label's own unit
for regression tasks) and the fused ranking `score` the spec declares.
`transform_features` returns the transformed features (TFMA and debugging).
The position never enters a served request: served scores are position-free.
"""

from __future__ import annotations

from typing import Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models.features import inverse_label_transform, serving_raw_columns
from models.spec import RankingSpec

SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"
EXAMPLES_INPUT = "examples"
SCORE_OUTPUT = "score"
# Exponents act on probabilities and regression outputs alike; a small floor
# keeps a zero prediction from making the log-space product undefined.
_SCORE_FLOOR = 1e-7


def fused_score(spec: RankingSpec, outputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """prod_t output_t ** exponent_t over the spec's `serving.score` tasks."""
  log_score = tf.add_n([
      exponent * tf.math.log(tf.maximum(outputs[task], _SCORE_FLOOR))
      for task, exponent in spec.serving.score.items()])
  return tf.exp(log_score)


class ServingModule(tf.Module):
  """Holds the model and the TFT layer so the SavedModel tracks both."""

  def __init__(self, model: tf.keras.Model, tft_output: tft.TFTransformOutput,
               spec: RankingSpec):
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
    outputs[SCORE_OUTPUT] = fused_score(self._spec, outputs)
    return outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(examples, self._serving_feature_spec)
    return self.predict_transformed(self.tft_layer(parsed))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def transform_features(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(examples, self._transform_feature_spec)
    return self.tft_layer(parsed)


def export_serving_model(model: tf.keras.Model, spec: RankingSpec,
                         tft_output: tft.TFTransformOutput, export_dir: str) -> ServingModule:
  """Writes the SavedModel with its signatures; returns the module saved."""
  module = ServingModule(model, tft_output, spec)
  signatures = {
      SERVING_SIGNATURE: module.serve_examples.get_concrete_function(),
      TRANSFORM_SIGNATURE: module.transform_features.get_concrete_function(),
  }
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return module
