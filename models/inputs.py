"""The Trainer's input pipeline: (features, labels) batches from the Transform
output (GZIP TFRecords of transformed `tf.Example`s).

Two paths, chosen per split by the size of its parsed columns:

* in memory (the split's parsed columns fit `PARSED_CACHE_BUDGET_BYTES`): the
  records are read and parsed once into one column matrix per dtype; every
  epoch draws a fresh permutation of all rows and each batch is two gathers,
  so the steady state parses nothing;
* streaming (over the budget): serialized records, cached in memory when they
  fit `SERIALIZED_CACHE_BUDGET_BYTES`, shuffled with the spec's buffer,
  batched, then parsed a whole batch at a time, every epoch.

A log line says which path was taken and why.

    data = inputs.make_input(patterns, tft_output.transformed_feature_spec(), spec,
                             batch_size, shuffle=True)
    model.fit(data.dataset.repeat(), steps_per_epoch=data.num_examples // batch_size)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Mapping, Tuple

import tensorflow as tf
from absl import logging

from models.spec import RankingSpec

# Parsed columns up to this size are kept in memory (census train: ~80k rows,
# at most ~24 MB). The matrices are captured by the dataset's functions, and
# tf.data serializes captured tensors into its graph (a distribution strategy
# rewrites that graph; protobufs stop at 2 GB), so the budget stays well below.
PARSED_CACHE_BUDGET_BYTES = 256 << 20
# Over the parsed budget, serialized records up to this size (an estimate from
# the compressed size) are still cached in memory.
SERIALIZED_CACHE_BUDGET_BYTES = 2 << 30
_GZIP_EXPANSION = 4  # the estimate's ratio of serialized to compressed bytes
_READ_BATCH = 65_536  # records parsed per call while loading into memory

Batch = Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class InputData:
  """One pass over a split (`dataset`; `.repeat()` it for several epochs, each
  shuffled anew), its number of examples and which path reads it."""

  dataset: tf.data.Dataset
  num_examples: int
  in_memory: bool


def files_of(patterns: List[str]) -> List[str]:
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f"no input files match {patterns}")
  return files


def count_records(files: List[str]) -> int:
  """Examples in the files (one decompressing pass, no parsing)."""
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  return int(
    dataset.batch(_READ_BATCH).reduce(
      tf.constant(0, tf.int64), lambda total, batch: total + tf.size(batch, tf.int64)
    )
  )


def model_columns(spec: RankingSpec) -> Tuple[List[str], List[Tuple[str, str]]]:
  """(feature columns the model reads, [(task, label column)])."""
  feature_names = [f.name for f in spec.model_features]
  if spec.model.position_bias and spec.position_feature is not None:
    feature_names.append(spec.position_feature.name)
  return feature_names, [(t.name, t.label) for t in spec.tasks]


def parsed_row_bytes(feature_spec: Mapping[str, tf.io.FixedLenFeature], columns: List[str]) -> int:
  """Bytes one row of `columns` takes once parsed."""
  total = 0
  for name in columns:
    feature = feature_spec[name]
    if not isinstance(feature, tf.io.FixedLenFeature):
      raise ValueError(
        f"transformed feature {name!r} is {type(feature).__name__}; the "
        "trainer reads fixed-length features only"
      )
    total += math.prod(int(d) for d in feature.shape) * feature.dtype.size
  return total


def make_input(
  patterns: List[str],
  feature_spec: Mapping[str, tf.io.FixedLenFeature],
  spec: RankingSpec,
  batch_size: int,
  shuffle: bool,
  memory_budget_bytes: int = PARSED_CACHE_BUDGET_BYTES,
) -> InputData:
  """(features, labels) batches of the files: labels keyed by task name, shape
  [batch, 1]. Shuffled (a fresh order every pass, incomplete last batch
  dropped) iff `shuffle`."""
  files = files_of(patterns)
  feature_names, tasks = model_columns(spec)
  columns = list(dict.fromkeys(feature_names + [label for _, label in tasks]))
  num_examples = count_records(files)
  parsed_bytes = num_examples * parsed_row_bytes(feature_spec, columns)
  in_memory = parsed_bytes <= memory_budget_bytes
  logging.info(
    "Input %s: %d examples, %.1f MB parsed, %s the %.1f MB budget: %s",
    patterns,
    num_examples,
    parsed_bytes / 2**20,
    "within" if in_memory else "over",
    memory_budget_bytes / 2**20,
    "parsed once into memory, reshuffled by index every epoch"
    if in_memory
    else "streaming, parsed every epoch",
  )
  column_spec = {name: feature_spec[name] for name in columns}
  if in_memory:
    table = ColumnTable.load(files, column_spec)
    batches, read = table.row_batches(batch_size, shuffle, spec.training.seed), table.gather
  else:
    batches = _serialized_batches(files, spec, batch_size, shuffle)
    read = lambda records: tf.io.parse_example(records, column_spec)
  to_model = _to_model_batch(feature_names, tasks)
  dataset = batches.map(lambda batch: to_model(read(batch)), num_parallel_calls=tf.data.AUTOTUNE)
  return InputData(dataset.prefetch(tf.data.AUTOTUNE), num_examples, in_memory)


def _to_model_batch(feature_names: List[str], tasks: List[Tuple[str, str]]):
  def split(columns: Dict[str, tf.Tensor]) -> Batch:
    features = {name: columns[name] for name in feature_names}
    labels = {task: tf.reshape(columns[label], [-1, 1]) for task, label in tasks}
    return features, labels

  return split


@dataclasses.dataclass(frozen=True)
class ColumnTable:
  """A split's parsed columns in memory: one [rows, width] matrix per dtype
  (a batch is then one gather and one split per dtype, not an op per column)
  and the (name, shape) of its columns, in order."""

  matrices: Dict[tf.DType, tf.Tensor]
  layout: Dict[tf.DType, List[Tuple[str, Tuple[int, ...]]]]
  num_rows: int

  @classmethod
  def load(cls, files: List[str], column_spec: Mapping[str, tf.io.FixedLenFeature]) -> ColumnTable:
    """Reads and parses every record once."""
    layout: Dict[tf.DType, List[Tuple[str, Tuple[int, ...]]]] = {}
    for name, feature in column_spec.items():
      layout.setdefault(feature.dtype, []).append((name, tuple(int(d) for d in feature.shape)))

    def to_matrices(records: tf.Tensor) -> Dict[str, tf.Tensor]:
      parsed = tf.io.parse_example(records, column_spec)
      return {
        dtype.name: tf.concat(
          [tf.reshape(parsed[name], [-1, math.prod(shape)]) for name, shape in members], axis=1
        )
        for dtype, members in layout.items()
      }

    chunks = list(
      tf.data.TFRecordDataset(files, compression_type="GZIP")
      .batch(_READ_BATCH)
      .map(to_matrices, num_parallel_calls=tf.data.AUTOTUNE)
      .prefetch(2)
    )
    if not chunks:
      raise ValueError(f"no records in {files}")
    matrices = {dtype: tf.concat([c[dtype.name] for c in chunks], axis=0) for dtype in layout}
    return cls(matrices, layout, int(next(iter(matrices.values())).shape[0]))

  def row_batches(self, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """One pass as batches of row indices. Shuffled: a permutation of all rows
    drawn anew on every pass (`Dataset.random` re-randomizes per iteration;
    a seeded sequence, so the workers of a multi-worker strategy agree), cut
    into full batches."""
    n = self.num_rows
    if not shuffle:
      return tf.data.Dataset.range(n).batch(batch_size)
    full_batches = n // batch_size
    if full_batches == 0:
      raise ValueError(f"batch size {batch_size} exceeds the {n} examples")

    def permuted(pass_seed: tf.Tensor) -> tf.data.Dataset:
      order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([pass_seed, tf.constant(seed, tf.int64)])
      )
      return tf.data.Dataset.from_tensor_slices(
        tf.reshape(order[: full_batches * batch_size], [full_batches, batch_size])
      )

    return (
      tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(permuted)
    )

  def gather(self, rows: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The columns of `rows`, each [len(rows), *shape]."""
    columns = {}
    for dtype, members in self.layout.items():
      parts = tf.split(
        tf.gather(self.matrices[dtype], rows), [math.prod(shape) for _, shape in members], axis=1
      )
      for (name, shape), part in zip(members, parts):
        columns[name] = part if len(shape) == 1 else tf.reshape(part, [-1, *shape])
    return columns


def _serialized_batches(
  files: List[str], spec: RankingSpec, batch_size: int, shuffle: bool
) -> tf.data.Dataset:
  """Batches of serialized records (cached when they fit), shuffled with the
  spec's buffer."""
  dataset = tf.data.TFRecordDataset(
    files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE
  )
  compressed = sum(tf.io.gfile.stat(f).length for f in files)
  if compressed * _GZIP_EXPANSION < SERIALIZED_CACHE_BUDGET_BYTES:
    dataset = dataset.cache()
  if shuffle:
    dataset = dataset.shuffle(
      spec.training.shuffle_buffer, seed=spec.training.seed, reshuffle_each_iteration=True
    )
  return dataset.batch(batch_size, drop_remainder=shuffle)
