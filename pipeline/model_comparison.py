"""MTL - STL with its noise: both models' predictions on the eval rows, paired bootstrap.

The Evaluator's TFMA pass gives each model's metrics; the difference needs
both models' predictions on the same examples, which TFMA does not write out.
This module reads the eval split once, runs both SavedModels' evaluation
signature on it in large batches, and computes per task, slice (those with at
least `evaluation.min_slice_size` rows, as the report shows) and compared
metric the paired bootstrap interval of MTL - STL
(`pipeline.paired_bootstrap`). The result is a JSON file in the Evaluator's
evaluation artifact (`contract.BASELINE_COMPARISON_FILENAME`).
"""

from __future__ import annotations

import glob
import itertools
import json
import os
from typing import Dict, Iterable, List, Sequence

import numpy as np
import tensorflow as tf

from contract import BASELINE_COMPARISON_FILENAME, EXAMPLES_INPUT
from models.spec import RankingSpec
from pipeline import paired_bootstrap

BATCH_SIZE = 4096


def read_records(split_uri: str) -> List[bytes]:
  """Every serialized tf.Example of one split directory (TFX writes them gzipped)."""
  files = sorted(glob.glob(os.path.join(split_uri, "*")))
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  return [record.numpy() for record in dataset]


def _value(feature: tf.train.Feature):
  kind = feature.WhichOneof("kind")
  values = getattr(feature, kind).value if kind else []
  if not values:
    return None
  value = values[0]
  return value.decode() if isinstance(value, bytes) else value


def columns(records: Sequence[bytes], names: Iterable[str]) -> Dict[str, List[object]]:
  """The first value of each named column per record (None where absent)."""
  names = list(dict.fromkeys(names))
  out: Dict[str, List[object]] = {name: [] for name in names}
  for record in records:
    features = tf.train.Example.FromString(record).features.feature
    for name in names:
      out[name].append(_value(features[name]) if name in features else None)
  return out


def predict(model_dir: str, signature: str, records: Sequence[bytes], outputs: Sequence[str]):
  """{output: predictions} of one SavedModel signature over the records."""
  fn = tf.saved_model.load(model_dir).signatures[signature]
  parts: Dict[str, List[np.ndarray]] = {name: [] for name in outputs}
  for start in range(0, len(records), BATCH_SIZE):
    batch = tf.constant(list(records[start : start + BATCH_SIZE]))
    result = fn(**{EXAMPLES_INPUT: batch})
    for name in outputs:
      parts[name].append(np.reshape(result[name].numpy(), [-1]))
  return {name: np.concatenate(parts[name]).astype(np.float64) for name in outputs}


def slice_masks(spec: RankingSpec, values: Dict[str, List[object]]) -> Dict[str, np.ndarray]:
  """{slice name as results._slice_name spells it: row mask}, overall first."""
  num_rows = len(next(iter(values.values()))) if values else 0
  masks = {"overall": np.ones(num_rows, dtype=bool)}
  for columns_of_slice in spec.evaluation.slices:
    keys = list(columns_of_slice)
    rows = list(zip(*(values[k] for k in keys)))
    for combo in sorted(set(rows), key=str):
      if any(v is None for v in combo):
        continue
      name = ", ".join(f"{k}={v}" for k, v in zip(keys, combo))
      masks[name] = np.array([row == combo for row in rows])
  minimum = spec.evaluation.min_slice_size
  return {n: m for n, m in masks.items() if n == "overall" or m.sum() >= minimum}


def compare(
  spec: RankingSpec,
  records: Sequence[bytes],
  multi_task: Dict[str, np.ndarray],
  single_task: Dict[str, np.ndarray],
  replicates: int = paired_bootstrap.DEFAULT_REPLICATES,
  seed: int = 0,
) -> Dict[str, object]:
  """The comparison's JSON: per task, slice and metric, MTL - STL and its interval."""
  query_key = spec.evaluation.query_key
  names = [t.label for t in spec.tasks] + [spec.parent_label(t) for t in spec.tasks if t.parent]
  slice_columns = list(itertools.chain.from_iterable(spec.evaluation.slices))
  values = columns(records, names + slice_columns + ([query_key] if query_key else []))
  groups = np.array([str(v) for v in values[query_key]]) if query_key else None
  intervals = []
  for slice_name, mask in slice_masks(spec, values).items():
    weights = paired_bootstrap.poisson_weights(
      int(mask.sum()), replicates, seed, groups[mask] if groups is not None else None
    )
    for task in spec.tasks:
      labels = np.array([v or 0 for v in values[task.label]], dtype=np.float64)[mask]
      example_weights = (
        np.array([v or 0 for v in values[spec.parent_label(task)]], dtype=np.float64)[mask]
        if task.parent
        else np.ones_like(labels)
      )
      metrics_fn = (
        paired_bootstrap.binary_metrics if task.is_binary else paired_bootstrap.regression_metrics
      )
      found = paired_bootstrap.paired_intervals(
        metrics_fn,
        labels,
        example_weights,
        multi_task[task.name][mask],
        single_task[task.name][mask],
        weights,
      )
      for metric, interval in found.items():
        intervals.append({"task": task.name, "slice": slice_name, "metric": metric,
                          **interval.as_dict()})  # fmt: skip
  return {
    "unit": "requests" if query_key else "rows",
    "replicates": replicates,
    "level": paired_bootstrap.DEFAULT_LEVEL,
    "intervals": intervals,
  }


def write(evaluation_uri: str, comparison: Dict[str, object]) -> str:
  path = os.path.join(evaluation_uri, BASELINE_COMPARISON_FILENAME)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(comparison, indent=1))
  return path
