"""MTL - STL with its noise: both models' predictions on the eval rows, paired bootstrap.

The Evaluator's TFMA pass gives each model's metrics; the difference needs
both models' predictions on the same examples, which TFMA does not write out.
This module streams the eval split once in batches, keeps at most
`evaluation.comparison_max_rows` of its rows (whole requests, a deterministic
draw), runs both SavedModels' evaluation signature on them, and computes per task, slice (those with at
least `evaluation.min_slice_size` rows, as the report shows) and compared
metric the paired bootstrap interval of MTL - STL
(`pipeline.paired_bootstrap`). The result is a JSON file in the Evaluator's
evaluation artifact (`contract.BASELINE_COMPARISON_FILENAME`).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
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


@dataclasses.dataclass
class ComparedRows:
  """The eval rows both models are compared on: the columns the comparison
  reads, each model's predictions, and how many rows the split had."""

  values: Dict[str, List[object]]
  predictions: Dict[str, Dict[str, np.ndarray]]  # model: {output: predictions}
  split_rows: int

  @property
  def rows(self) -> int:
    return len(next(iter(self.values.values()))) if self.values else 0


def dataset(split_uris: Sequence[str]) -> tf.data.Dataset:
  """The split directories' serialized tf.Examples, file by file."""
  files = sorted(f for uri in split_uris for f in glob.glob(os.path.join(uri, "*")))
  return tf.data.TFRecordDataset(files, compression_type="GZIP")  # TFX writes them gzipped


def count_records(split_uris: Sequence[str]) -> int:
  return int(dataset(split_uris).reduce(np.int64(0), lambda count, _: count + 1))


def _keep_share(key: object, share: float) -> bool:
  """A deterministic draw of `key` (a request or a row) with probability `share`."""
  digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
  return int.from_bytes(digest, "little") < share * 2.0**64


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


def compared_columns(spec: RankingSpec) -> List[str]:
  """Labels, parent labels, slice columns and the query key: what `compare` reads."""
  names = [t.label for t in spec.tasks] + [spec.parent_label(t) for t in spec.tasks if t.parent]
  names += list(itertools.chain.from_iterable(spec.evaluation.slices))
  if spec.evaluation.query_key:
    names.append(spec.evaluation.query_key)
  return list(dict.fromkeys(names))


def sample_and_predict(
  spec: RankingSpec,
  split_uris: Sequence[str],
  model_dirs: Dict[str, str],
  signature: str,
  max_rows: int,
) -> ComparedRows:
  """Streams the split in batches: keeps at most about `max_rows` rows (whole
  requests, drawn by a hash of the query key, else of the row's index, so the
  draw is the same on every run), their compared columns and every model's
  predictions on them. Memory is bounded by `max_rows`, not by the split."""
  total = count_records(split_uris)
  share = min(1.0, max_rows / total) if total else 1.0
  query_key = spec.evaluation.query_key
  names = compared_columns(spec)
  outputs = spec.task_names
  functions = {m: tf.saved_model.load(d).signatures[signature] for m, d in model_dirs.items()}
  values: Dict[str, List[object]] = {name: [] for name in names}
  parts = {m: {o: [] for o in outputs} for m in model_dirs}
  index = 0
  for batch in dataset(split_uris).batch(BATCH_SIZE):
    records = list(batch.numpy())
    found = columns(records, names)
    keys = found[query_key] if query_key else range(index, index + len(records))
    index += len(records)
    keep = [share >= 1.0 or _keep_share(key, share) for key in keys]
    records = [r for r, k in zip(records, keep) if k]
    if not records:
      continue
    for name in names:
      values[name].extend(v for v, k in zip(found[name], keep) if k)
    for model, fn in functions.items():
      result = fn(**{EXAMPLES_INPUT: tf.constant(records)})
      for name in outputs:
        parts[model][name].append(np.reshape(result[name].numpy(), [-1]))
  predictions = {
    m: {o: np.concatenate(p[o]).astype(np.float64) if p[o] else np.zeros(0) for o in outputs}
    for m, p in parts.items()
  }
  return ComparedRows(values, predictions, total)


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
  values: Dict[str, List[object]],
  multi_task: Dict[str, np.ndarray],
  single_task: Dict[str, np.ndarray],
  replicates: int = paired_bootstrap.DEFAULT_REPLICATES,
  seed: int = 0,
) -> Dict[str, object]:
  """The comparison's JSON: per task, slice and metric, MTL - STL and its
  interval, on the rows of `values` (the columns of `compared_columns`)."""
  query_key = spec.evaluation.query_key
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
