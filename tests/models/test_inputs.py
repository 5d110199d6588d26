"""The Trainer's input pipeline on real GZIP TFRecords of tf.Examples: the
in-memory path yields the records on disk, reshuffled every epoch; the
streaming path is taken over the memory budget and yields the same rows."""

from __future__ import annotations

import collections
import logging
from typing import Counter, List, Tuple

import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging

from models import architectures, inputs

Row = Tuple[float, ...]


def _rows(features, labels) -> List[Row]:
  """The batch's rows as tuples of every column (features, then labels)."""
  columns = [features[k].numpy()[:, 0] for k in sorted(features)] + [
    labels[k].numpy()[:, 0] for k in sorted(labels)
  ]
  return [tuple(float(v) for v in row) for row in zip(*columns)]


def _epochs(dataset: tf.data.Dataset, num_epochs: int, batches_per_epoch: int) -> List[List[Row]]:
  batches = list(dataset.repeat(num_epochs))
  assert len(batches) == num_epochs * batches_per_epoch
  return [
    [
      row
      for f, l in batches[e * batches_per_epoch : (e + 1) * batches_per_epoch]
      for row in _rows(f, l)
    ]
    for e in range(num_epochs)
  ]


def _on_disk(pattern: str, feature_spec, spec) -> Counter[Row]:
  """Every record on disk, parsed one by one, as rows like `_rows`."""
  rows: Counter[Row] = collections.Counter()
  features, tasks = inputs.model_columns(spec)
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), "GZIP"):
    parsed = tf.io.parse_single_example(record, feature_spec)
    rows[
      tuple(float(parsed[k][0]) for k in sorted(features))
      + tuple(float(parsed[label][0]) for _, label in sorted(tasks))
    ] += 1
  return rows


def test_in_memory_epochs_are_the_records_on_disk_in_a_new_order(tiny, tmp_path):
  spec = tiny.make_spec("mmoe")
  pattern, feature_spec = tiny.write_transformed_records(spec, str(tmp_path), n=384)
  data = inputs.make_input([pattern], feature_spec, spec, batch_size=64, shuffle=True)
  assert data.in_memory and data.num_examples == 384

  epochs = _epochs(data.dataset, num_epochs=3, batches_per_epoch=6)
  on_disk = _on_disk(pattern, feature_spec, spec)
  for epoch in epochs:
    assert collections.Counter(epoch) == on_disk
  # A fresh permutation every epoch: the order and the batches' composition change.
  assert epochs[0] != epochs[1] != epochs[2]
  assert set(epochs[0][:64]) != set(epochs[1][:64])
  # A new iterator (Keras re-iterating a finite dataset) also reshuffles.
  assert _epochs(data.dataset, 1, 6)[0] != _epochs(data.dataset, 1, 6)[0]


def test_in_memory_shuffled_epochs_drop_a_different_remainder(tiny, tmp_path):
  spec = tiny.make_spec("mmoe")
  pattern, feature_spec = tiny.write_transformed_records(spec, str(tmp_path), n=400)
  data = inputs.make_input([pattern], feature_spec, spec, batch_size=64, shuffle=True)
  on_disk = _on_disk(pattern, feature_spec, spec)
  epochs = _epochs(data.dataset, num_epochs=2, batches_per_epoch=6)
  for epoch in epochs:
    assert len(set(epoch)) == 6 * 64 and set(epoch) <= set(on_disk)
  assert set(epochs[0]) != set(epochs[1])


def test_over_budget_streams_the_same_rows_with_the_same_element_spec(tiny, tmp_path, caplog):
  spec = tiny.make_spec("mmoe")
  pattern, feature_spec = tiny.write_transformed_records(spec, str(tmp_path), n=384)
  # absl's own verbosity gates its INFO lines (a SavedModel export in an earlier
  # test may have lowered it).
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  try:
    with caplog.at_level(logging.INFO):
      streamed = inputs.make_input(
        [pattern], feature_spec, spec, batch_size=64, shuffle=True, memory_budget_bytes=1000
      )
  finally:
    absl_logging.set_verbosity(verbosity)
  assert not streamed.in_memory and streamed.num_examples == 384
  assert "over the 0.0 MB budget: streaming" in caplog.text
  cached = inputs.make_input([pattern], feature_spec, spec, batch_size=64, shuffle=True)
  assert streamed.dataset.element_spec == cached.dataset.element_spec
  on_disk = _on_disk(pattern, feature_spec, spec)
  for epoch in _epochs(streamed.dataset, num_epochs=2, batches_per_epoch=6):
    assert collections.Counter(epoch) == on_disk


def test_unshuffled_eval_input_keeps_every_row_and_the_last_partial_batch(tiny, tmp_path):
  spec = tiny.make_spec("mmoe")
  pattern, feature_spec = tiny.write_transformed_records(spec, str(tmp_path), n=150, num_files=1)
  cached = inputs.make_input([pattern], feature_spec, spec, batch_size=64, shuffle=False)
  streamed = inputs.make_input(
    [pattern], feature_spec, spec, batch_size=64, shuffle=False, memory_budget_bytes=0
  )
  assert cached.in_memory and not streamed.in_memory
  cached_rows = _epochs(cached.dataset, 1, 3)[0]
  # One file, unshuffled: both paths yield the file's order.
  assert cached_rows == _epochs(streamed.dataset, 1, 3)[0]
  assert collections.Counter(cached_rows) == _on_disk(pattern, feature_spec, spec)
  assert [
    float(r[sorted(inputs.model_columns(spec)[0]).index("num_x")]) for r in cached_rows
  ] == list(range(150))


def test_a_model_trains_from_the_in_memory_input(tiny, tmp_path):
  spec = tiny.make_spec("mmoe")
  pattern, feature_spec = tiny.write_transformed_records(spec, str(tmp_path), n=1024)
  data = inputs.make_input([pattern], feature_spec, spec, batch_size=128, shuffle=True)
  model = architectures.build_model(spec, tiny.VOCAB_SIZES)
  model.compile_for_spec(spec, steps_per_execution=1)
  history = model.fit(data.dataset.repeat(), steps_per_epoch=8, epochs=3, verbose=0)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_a_batch_larger_than_the_split_is_a_clear_error(tiny, tmp_path):
  spec = tiny.make_spec("mmoe")
  pattern, feature_spec = tiny.write_transformed_records(spec, str(tmp_path), n=32)
  with pytest.raises(ValueError, match="batch size 64 exceeds the 32 examples"):
    inputs.make_input([pattern], feature_spec, spec, batch_size=64, shuffle=True)
