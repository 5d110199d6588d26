"""Tiny specs and synthetic batches for the model tests.

The data has a learnable signal: click depends on `cat_a` and `num_x`,
conversion (given click) on `cat_b`, dwell (given click) on `num_x`; click is
also position-biased (lower positions are clicked less).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np
import pytest
import tensorflow as tf

from models import options
from models.spec import RankingSpec, parse_spec

VOCAB_SIZES = {"cat_a": 6, "cat_b": 9, "bucket_y": 4}
MAX_POSITION = 5


def make_spec(
  architecture: str = "mmoe",
  tasks: str = "click_conversion_dwell",
  training: Dict[str, Any] | None = None,
  **model: Any,
) -> RankingSpec:
  """A tiny spec. `tasks`: click_conversion_dwell (a conditional chain with a
  regression), two_binary (two independent binary tasks), single (click),
  chain (click -> cart -> purchase); `training` adds training fields."""
  task_sets = {
    "click_conversion_dwell": [
      {"name": "click", "label": "click"},
      {"name": "conversion", "label": "conversion", "parent": "click"},
      {
        "name": "dwell",
        "label": "dwell",
        "type": "regression",
        "parent": "click",
        "loss": "huber",
        "loss_weight": 0.5,
      },
    ],
    "two_binary": [{"name": "click", "label": "click"}, {"name": "like", "label": "like"}],
    "single": [{"name": "click", "label": "click"}],
    "chain": [
      {"name": "click", "label": "click"},
      {"name": "cart", "label": "cart", "parent": "click"},
      {"name": "purchase", "label": "purchase", "parent": "cart"},
    ],
  }
  model_section = {
    "architecture": architecture,
    "embedding_dim": 4,
    "num_experts": 3,
    "expert_units": [8],
    "tower_units": [4],
    "levels": 2,
    "shared_experts": 2,
    "task_experts": 1,
  }
  # Fields another architecture reads are an error at load (options.ARCHITECTURE_FIELDS).
  model_section = {
    k: v
    for k, v in model_section.items()
    if architecture in options.ARCHITECTURE_FIELDS.get(k, (architecture,))
  }
  model_section.update(model)
  return parse_spec(
    {
      "name": "tiny",
      "data": {"source": "simulator"},
      "features": [
        {"name": "cat_a", "kind": "categorical"},
        {"name": "cat_b", "kind": "categorical", "embedding_dim": 3},
        {"name": "num_x", "kind": "numeric", "dtype": "float"},
        {
          "name": "bucket_y",
          "kind": "numeric",
          "dtype": "float",
          "transform": "bucketize",
          "num_buckets": 4,
        },
        {"name": "position", "kind": "position", "dtype": "int", "max_value": MAX_POSITION},
      ],
      "tasks": task_sets[tasks],
      "model": model_section,
      "training": {"batch_size": 64, "learning_rate": 0.01, "seed": 1, **(training or {})},
    }
  )


def make_batch(
  spec: RankingSpec, n: int = 64, seed: int = 0
) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
  """(features, labels) of n rows, as the TFT-transformed tensors."""
  rng = np.random.default_rng(seed)
  cat_a = rng.integers(0, VOCAB_SIZES["cat_a"], (n, 1))
  cat_b = rng.integers(0, VOCAB_SIZES["cat_b"], (n, 1))
  num_x = rng.normal(size=(n, 1)).astype(np.float32)
  position = rng.integers(1, MAX_POSITION + 1, (n, 1))
  features = {
    "cat_a": cat_a,
    "cat_b": cat_b,
    "num_x": num_x,
    "bucket_y": rng.integers(0, VOCAB_SIZES["bucket_y"], (n, 1)),
    "position": position,
  }
  p_click = 1 / (1 + np.exp(-(1.5 * (cat_a % 2) - 0.75 + num_x - 0.3 * position + 0.9)))
  first = (rng.random((n, 1)) < p_click).astype(np.float32)
  second = first * (rng.random((n, 1)) < np.where(cat_b % 3 == 0, 0.8, 0.2))
  third = second * (rng.random((n, 1)) < 0.6)
  values = {
    "click": first,
    "conversion": second,
    "cart": second,
    "purchase": third,
    "dwell": first * (1.0 + 0.5 * num_x).astype(np.float32),
    "like": (rng.random((n, 1)) < np.where(cat_a % 3 == 0, 0.7, 0.3)).astype(np.float32),
  }
  labels = {t.name: tf.constant(values[t.name], tf.float32) for t in spec.tasks}
  return (
    {
      k: tf.constant(v, tf.int64 if v.dtype.kind == "i" else tf.float32)
      for k, v in features.items()
    },
    labels,
  )


def make_dataset(
  spec: RankingSpec, n: int = 512, batch_size: int = 64, seed: int = 0
) -> tf.data.Dataset:
  features, labels = make_batch(spec, n, seed)
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)


def write_transformed_records(
  spec: RankingSpec, directory: str, n: int, num_files: int = 2, seed: int = 0
) -> Tuple[str, Dict[str, tf.io.FixedLenFeature]]:
  """n rows of `make_batch` as GZIP TFRecords of tf.Examples, as the Transform
  output writes them, spread over `num_files` files; `num_x` is the row's
  index, so every row is distinct. Returns (file pattern, feature spec)."""
  features, labels = make_batch(spec, n, seed)
  features["num_x"] = tf.range(n, dtype=tf.float32)[:, None]
  columns = {**features, **{spec.task(name).label: value for name, value in labels.items()}}
  feature_spec = {name: tf.io.FixedLenFeature([1], value.dtype) for name, value in columns.items()}
  values = {name: value.numpy() for name, value in columns.items()}
  writers = [
    tf.io.TFRecordWriter(os.path.join(directory, f"part-{i}.gz"), "GZIP") for i in range(num_files)
  ]
  for row in range(n):
    example = tf.train.Example()
    for name, column in values.items():
      feature = example.features.feature[name]
      if column.dtype.kind == "f":
        feature.float_list.value.append(float(column[row, 0]))
      else:
        feature.int64_list.value.append(int(column[row, 0]))
    writers[row % num_files].write(example.SerializeToString())
  for writer in writers:
    writer.close()
  return os.path.join(directory, "part-*.gz"), feature_spec


@pytest.fixture(autouse=True)
def _fresh_keras_state():
  """Each test starts from the float32 policy and a fixed seed."""
  import tf_keras as keras

  keras.mixed_precision.set_global_policy("float32")
  keras.utils.set_random_seed(0)
  yield
  keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def tiny():
  """This module's helpers (make_spec, make_batch, make_dataset, VOCAB_SIZES)."""
  import sys

  return sys.modules[__name__]
