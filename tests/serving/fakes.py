"""Small SavedModels shaped like the pipeline's exports, for the conformance
tests and the load benchmark: `serving_default` parses serialized tf.Examples
and returns one float32 [None] output per task plus the fused `score`;
`transform_features` returns the transformed features; `classification` and
`regression` are Classify- and Regress-compatible signatures; the warm-up
file holds a few requests. The model is an MMoE over hashed embeddings."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

from contract import (
  CLASSIFY_INPUT,
  CLASSIFY_METHOD,
  CLASSIFY_OUTPUT_SCORES,
  EXAMPLES_INPUT,
  PREDICT_METHOD,
  REGRESS_METHOD,
  REGRESS_OUTPUTS,
  SERVE_TAG,
)
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


# --- TF Serving's half_plus_two test models, rebuilt -----------------------------------
# TF Serving tests its server on `saved_model_half_plus_two_*`: y = a*x + b with
# a=0.5, b=2 (c=3 for the second offset), served as `serving_default` (Predict
# on a float x), `classify_x_to_y` and `regress_x_to_y` (serialized
# tf.Examples with a float feature x) and `regress_x2_to_y3` (a float input,
# no examples: Regress must fail on it). These builders make the same
# signatures, TF1-style and TF2-style.

HALF_PLUS_TWO_SIGNATURES = ("classify_x_to_y", "regress_x_to_y", "regress_x2_to_y3")


def _half_plus_two_features() -> Dict[str, tf.io.FixedLenFeature]:
  return {
    "x": tf.io.FixedLenFeature([1], tf.float32),
    "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
  }


def build_half_plus_two_tf1(export_dir: str | os.PathLike, offset: float = 2.0) -> Path:
  """The TF1 export (SavedModelBuilder): Predict feeds the parsed `x` tensor
  itself, declared [None, 1], so a request's x of shape [1] runs too; the
  Classify and Regress signatures carry their method names."""
  v1 = tf.compat.v1
  with tf.Graph().as_default(), v1.Session() as session:
    a = v1.Variable(0.5, name="a")
    b = v1.Variable(offset, name="b")
    c = v1.Variable(3.0, name="c")
    serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
    parsed = v1.io.parse_example(serialized, _half_plus_two_features())
    x = tf.identity(parsed["x"], name="x")
    x2 = tf.identity(parsed["x2"], name="x2")
    y = tf.identity(a * x + b, name="y")
    y3 = tf.identity(a * x2 + c, name="y3")
    info = v1.saved_model.utils.build_tensor_info
    build = v1.saved_model.signature_def_utils.build_signature_def
    signatures = {
      "serving_default": build({"x": info(x)}, {"y": info(y)}, PREDICT_METHOD),
      "classify_x_to_y": build(
        {CLASSIFY_INPUT: info(serialized)}, {CLASSIFY_OUTPUT_SCORES: info(y)}, CLASSIFY_METHOD
      ),
      "regress_x_to_y": build(
        {CLASSIFY_INPUT: info(serialized)}, {REGRESS_OUTPUTS: info(y)}, REGRESS_METHOD
      ),
      "regress_x2_to_y3": build(
        {CLASSIFY_INPUT: info(x2)}, {REGRESS_OUTPUTS: info(y3)}, REGRESS_METHOD
      ),
    }
    session.run(v1.global_variables_initializer())
    builder = v1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(session, [SERVE_TAG], signature_def_map=signatures)
    builder.save()
  return Path(export_dir)


class HalfPlusTwo(tf.Module):
  """The TF2 export (tf.saved_model.save): every signature has the Predict
  method name, which TF Serving still serves Classify and Regress on."""

  def __init__(self, offset: float = 2.0):
    super().__init__()
    self.a = tf.Variable(0.5)
    self.b = tf.Variable(offset)
    self.c = tf.Variable(3.0)

  def _parsed_x(self, serialized: tf.Tensor) -> tf.Tensor:
    return tf.io.parse_example(serialized, _half_plus_two_features())["x"]

  @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
  def predict(self, x):
    return {"y": self.a * x + self.b}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)])
  def classify_x_to_y(self, inputs):
    return {CLASSIFY_OUTPUT_SCORES: self.a * self._parsed_x(inputs) + self.b}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)])
  def regress_x_to_y(self, inputs):
    return {REGRESS_OUTPUTS: self.a * self._parsed_x(inputs) + self.b}

  @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name=CLASSIFY_INPUT)])
  def regress_x2_to_y3(self, inputs):
    return {REGRESS_OUTPUTS: self.a * inputs + self.c}


def build_half_plus_two_tf2(export_dir: str | os.PathLike, offset: float = 2.0) -> Path:
  module = HalfPlusTwo(offset)
  signatures = {name: getattr(module, name) for name in HALF_PLUS_TWO_SIGNATURES}
  tf.saved_model.save(
    module, str(export_dir), signatures={"serving_default": module.predict, **signatures}
  )
  return Path(export_dir)


class TextTokens(tf.Module):
  """A model whose graph runs TF Text's ops (case folding, whitespace
  tokenizing), as TF Serving's tf_text_regression test model does: it loads
  only where TF Text's kernels are registered."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def predict(self, text):
    import tensorflow_text

    folded = tensorflow_text.case_fold_utf8(text)
    tokens = tensorflow_text.WhitespaceTokenizer().tokenize(folded)
    return {"folded": folded, "tokens": tokens.row_lengths()}


def save_tf_text_model(export_dir: str) -> None:
  module = TextTokens()
  tf.saved_model.save(module, export_dir, signatures={"serving_default": module.predict})


def build_tf_text_model(export_dir: str | os.PathLike) -> Path:
  """Saved in a child process, so that this (the server's) process has not
  registered TF Text's kernels by building it: the server must do so."""
  code = (
    f"from tests.serving.fakes import save_tf_text_model; save_tf_text_model({str(export_dir)!r})"
  )
  root = Path(__file__).resolve().parents[2]
  subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True)
  return Path(export_dir)


class SlowRestApi:
  """A REST API that answers every request after `seconds`: a request that
  outlives --rest_api_timeout_in_ms."""

  def __init__(self, seconds: float):
    self.seconds = seconds

  def handle(self, http_method: str, path: str, body: bytes) -> Dict[str, Any]:
    time.sleep(self.seconds)
    return {}
