"""Which variables weight decay shrinks: decided by the role a layer gives
each variable, not by its name."""

from __future__ import annotations

from typing import Dict, List

import tensorflow as tf
import tf_keras as keras


def decayed_variables(model: keras.layers.Layer) -> List[tf.Variable]:
  """The variables weight decay shrinks, by the role their layer gives them:
  weight matrices and embedding tables. A layer with its own weights says
  which in `decayed_weights`; Keras' Dense and Embedding layers (inside tfrs'
  Cross and the towers) by their `kernel` and `embeddings`. Biases, the
  position-bias logits, a balancer's task weights and telemetry never decay."""
  found: Dict[int, tf.Variable] = {}
  for layer in model._flatten_layers(include_self=False):
    if hasattr(layer, "decayed_weights"):
      variables = layer.decayed_weights
    elif isinstance(layer, keras.layers.Dense):
      variables = [layer.kernel]
    elif isinstance(layer, keras.layers.Embedding):
      variables = [layer.embeddings]
    else:
      continue
    found.update({id(v): v for v in variables})
  return list(found.values())
