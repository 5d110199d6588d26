"""A span whose TFRecords cannot be read is named with the record at fault,
whatever is wrong with it (issue 13: garbage spans failed inside
StatisticsGen with a hex dump and no file named; the truncated case runs
through the real pipeline in tests/pipeline/test_bad_input.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import tensorflow as tf

from pipeline.data.errors import find_unreadable_record


def _records(path: Path, count: int, compression: str = "") -> bytes:
  with tf.io.TFRecordWriter(str(path), options=compression or None) as writer:
    for i in range(count):
      writer.write(tf.train.Example().SerializeToString() + bytes([i]))
  return path.read_bytes()


def test_good_files_name_nothing(tmp_path):
  _records(tmp_path / "a.tfrecord", 3)
  _records(tmp_path / "b.tfrecord.gz", 3, "GZIP")
  assert find_unreadable_record([tmp_path / "a.tfrecord", tmp_path / "b.tfrecord.gz"]) is None


@pytest.mark.parametrize(
  "name, damage, record",
  [
    ("garbage.tfrecord.gz", lambda good: b"this is no gzip at all" * 10, 1),
    ("gzipped-garbage.tfrecord.gz", lambda good: gzip.compress(b"\x07garbage" * 50, mtime=0), 1),
    # 17-byte records: bytes 40-47 fall in the third one.
    ("corrupt-third.tfrecord", lambda good: good[:40] + b"\xff" * 8 + good[48:], 3),
  ],
  ids=["not-gzip", "gzipped-garbage", "corrupt-record"],
)
def test_garbage_spans_are_named_with_the_record(tmp_path, name, damage, record):
  good = _records(tmp_path / "good.tfrecord", 5)
  bad = tmp_path / name
  bad.write_bytes(damage(good))
  message = find_unreadable_record([tmp_path / "good.tfrecord", bad])
  assert message is not None and message.startswith(f"{bad}: record {record}: ")
  assert len(message.splitlines()) == 1
