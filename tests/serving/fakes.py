"""Small SavedModels shaped like the pipeline's exports, for the conformance
tests and the load benchmark: `serving_default` parses serialized tf.Examples
and returns one float32 [None] output per task plus the fused `score`;
`transform_features` returns the transformed features; `classification` and
`regression` are Classify- and Regress-compatible signatures; the warm-up
file holds a few requests. The model is an MMoE over hashed embeddings."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

from contract import CLASSIFY_METHOD, EXAMPLES_INPUT, REGRESS_METHOD
from contract.signature_defs import set_signature_method_names
from contract.warmup import write_warmup_requests
from serving.examples import serialize_rows

SYNTHETIC_COLUMNS = {
  "user_id": "string",
  "item_id": "string",
  "device": "string",
  "hour": "int",
  "item_price": "float",
}
SYNTHETIC_TASKS = ("click", "conversion", "dwell")
SYNTHETIC_SCORE = {"click": 1.0, "conversion": 1.0, "dwell": 0.5}
REGRESSION_TASKS = ("dwell",)
CLASSIFY_SIGNATURE = "classification"
REGRESS_SIGNATURE = "regression"
TRANSFORM_SIGNATURE = "transform_features"
HASH_BUCKETS = 97
_DEFAULTS = {"string": "", "int": 0, "float": 0.0}
_TF_DTYPES = {"string": tf.string, "int": tf.int64, "float": tf.float32}


class RankingModule(tf.Module):
  """An MMoE ranking model over raw tf.Examples."""

  def __init__(
    self,
    columns: Mapping[str, str],
    tasks: Sequence[str],
    score: Mapping[str, float],
    seed: int,
    embedding_dim: int,
    num_experts: int,
    expert_units: int,
  ):
    super().__init__()
    rng = np.random.default_rng(seed)

    def variable(*shape: int) -> tf.Variable:
      return tf.Variable(rng.normal(0, 0.3, shape).astype(np.float32))

    self._columns = dict(columns)
    self._tasks = tuple(tasks)
    self._score = dict(score)
    self._embedded = [c for c, d in self._columns.items() if d != "float"]
    self._numeric = [c for c, d in self._columns.items() if d == "float"]
    width = len(self._embedded) * embedding_dim + len(self._numeric)
    self.embeddings = {c: variable(HASH_BUCKETS, embedding_dim) for c in self._embedded}
    self.experts = [
      (variable(width, expert_units), variable(expert_units)) for _ in range(num_experts)
    ]
    self.gates = {t: variable(width, num_experts) for t in self._tasks}
    self.heads = {t: (variable(expert_units, 1), variable(1)) for t in self._tasks}

  def _transform(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    spec = {
      c: tf.io.FixedLenFeature([], _TF_DTYPES[d], default_value=_DEFAULTS[d])
      for c, d in self._columns.items()
    }
    raw = tf.io.parse_example(examples, spec)
    features = {}
    for column in self._embedded:
      value = raw[column]
      if value.dtype == tf.string:
        features[column] = tf.strings.to_hash_bucket_fast(value, HASH_BUCKETS)
      else:
        features[column] = tf.math.floormod(value, HASH_BUCKETS)
    for column in self._numeric:
      features[column] = tf.math.log1p(tf.abs(raw[column]))
    return features

  def _outputs(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    features = self._transform(examples)
    parts = [tf.gather(self.embeddings[c], features[c]) for c in self._embedded]
    parts += [features[c][:, None] for c in self._numeric]
    x = tf.concat(parts, axis=1)
    experts = tf.stack([tf.nn.relu(x @ w + b) for w, b in self.experts], axis=1)
    outputs = {}
    for task in self._tasks:
      gate = tf.nn.softmax(x @ self.gates[task])[:, :, None]
      w, b = self.heads[task]
      logit = tf.squeeze(tf.reduce_sum(gate * experts, axis=1) @ w + b, axis=1)
      outputs[task] = tf.nn.softplus(logit) if task in REGRESSION_TASKS else tf.sigmoid(logit)
    score = tf.ones_like(outputs[self._tasks[0]])
    for task, exponent in self._score.items():
      score *= tf.pow(outputs[task], exponent)
    outputs["score"] = score
    return outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve(self, examples):
    return self._outputs(examples)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def transform_features(self, examples):
    return self._transform(examples)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
  def classify(self, inputs):
    p = self._outputs(inputs)[self._tasks[0]]
    batch = tf.shape(p)[0]
    return {
      "classes": tf.tile(tf.constant([["0", "1"]]), [batch, 1]),
      "scores": tf.stack([1.0 - p, p], axis=1),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
  def regress(self, inputs):
    return {"outputs": self._outputs(inputs)[self._tasks[-1]]}


def random_rows(columns: Mapping[str, str], count: int, seed: int = 0) -> List[Dict[str, Any]]:
  """Raw rows with plausible values for each column dtype."""
  rng = random.Random(seed)
  value = {
    "string": lambda: f"v{rng.randrange(50)}",
    "int": lambda: rng.randrange(24),
    "float": lambda: round(rng.uniform(0, 100), 3),
  }
  return [{c: value[d]() for c, d in columns.items()} for _ in range(count)]


def build_ranking_model(
  export_dir: str | os.PathLike,
  model_name: str,
  *,
  seed: int = 0,
  columns: Mapping[str, str] = SYNTHETIC_COLUMNS,
  tasks: Sequence[str] = SYNTHETIC_TASKS,
  score: Mapping[str, float] = SYNTHETIC_SCORE,
  embedding_dim: int = 4,
  num_experts: int = 2,
  expert_units: int = 8,
) -> Path:
  """Saves a ranking model with warm-up requests at `export_dir`; `seed`
  sets its weights, so two versions built with different seeds differ."""
  module = RankingModule(columns, tasks, score, seed, embedding_dim, num_experts, expert_units)
  tf.saved_model.save(
    module,
    str(export_dir),
    signatures={
      "serving_default": module.serve,
      TRANSFORM_SIGNATURE: module.transform_features,
      CLASSIFY_SIGNATURE: module.classify,
      REGRESS_SIGNATURE: module.regress,
    },
  )
  set_signature_method_names(
    export_dir, {CLASSIFY_SIGNATURE: CLASSIFY_METHOD, REGRESS_SIGNATURE: REGRESS_METHOD}
  )
  write_warmup_requests(
    export_dir, serialize_rows(random_rows(columns, 4, seed), columns), model_name
  )
  return Path(export_dir)
