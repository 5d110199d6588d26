"""Shared writer helpers for the data adapters: columns -> GZIP TFRecords of
`tf.train.Example`, the on-disk layout, atomic span directories.

Layout (the contract with ImportExampleGen's `{SPAN}` patterns):

    <out_dir>/span-<N>/train/data-00000-of-00001.tfrecord.gz
    <out_dir>/span-<N>/validation/data-00000-of-00001.tfrecord.gz
    <out_dir>/span-<N>/eval/data-00000-of-00001.tfrecord.gz
    <out_dir>/span-<N>/_summary.json      (row counts, rates and a params fingerprint)

Every example has exactly one feature per column of `spec.raw_columns`, each
with exactly one value (string -> bytes_list, int -> int64_list, float ->
float_list), and nothing else.

Why not tfx_bsl's `RecordBatchToExamplesEncoder`: it is fast, but it emits the
`Features.feature` map in the iteration order of a C++ hash map, which changes
from one process to the next, so the same data would give different bytes
(measured: two runs of the same record batch gave different digests). The
pipeline needs byte-identical output for identical inputs (caching, diffs), so
`encode_examples` serializes the protos itself, vectorized with numpy and
pyarrow compute kernels, with the map entries in sorted key order (the
canonical order protobuf's deterministic serialization uses). Its output
parses with `tf.io.parse_example` and `tf.train.Example.FromString`
(tests/data check both).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Union

import numpy as np

from contract import SPLITS
from models.example_encoding import (  # noqa: F401  (re-exported: the adapters' encoder)
  DTYPES,
  ColumnValues,
  _check_names,
  _num_rows,
  encode_examples,
)

DATA_FILE = "data-00000-of-00001.tfrecord.gz"
SUMMARY_FILE = "_summary.json"


def write_examples(
  columns: Mapping[str, ColumnValues],
  spec_columns: Mapping[str, str],
  path: Union[str, Path],
  batch_rows: int = 65536,
) -> int:
  """Writes the rows of `columns` to a GZIP TFRecord file of serialized
  `tf.train.Example`s; returns the number of rows.

  The file appears atomically: it is written under a temporary name in the
  same directory and renamed into place.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _check_names(columns, spec_columns)
  n = _num_rows(columns)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  try:
    with tf.io.TFRecordWriter(
      tmp, options=tf.io.TFRecordOptions(compression_type="GZIP")
    ) as writer:
      for start in range(0, n, batch_rows):
        batch = {k: v[start : start + batch_rows] for k, v in columns.items()}
        for record in encode_examples(batch, spec_columns).to_pylist():
          writer.write(record)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  return n


# ----------------------------------------------------------------------------
# Reading back (tests, docs, sanity checks).
# ----------------------------------------------------------------------------


def feature_spec(spec_columns: Mapping[str, str]) -> Dict[str, Any]:
  """A `tf.io.parse_example` feature spec for the columns of a spec."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  dtypes = {"string": tf.string, "int": tf.int64, "float": tf.float32}
  return {name: tf.io.FixedLenFeature([], dtypes[dtype]) for name, dtype in spec_columns.items()}


def read_examples(
  paths: Union[str, Path, Sequence[Union[str, Path]]], spec_columns: Mapping[str, str]
) -> Dict[str, np.ndarray]:
  """Reads GZIP TFRecord files back into columns (numpy; strings as bytes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if isinstance(paths, (str, Path)):
    paths = [paths]
  ds = tf.data.TFRecordDataset([str(p) for p in paths], compression_type="GZIP")
  parsed = {name: [] for name in spec_columns}
  fspec = feature_spec(spec_columns)
  for batch in ds.batch(65536):
    for name, tensor in tf.io.parse_example(batch, fspec).items():
      parsed[name].append(tensor.numpy())
  return {
    name: (np.concatenate(parts) if parts else np.array([])) for name, parts in parsed.items()
  }


def span_dir(out_dir: Union[str, Path], span: int) -> Path:
  return Path(out_dir) / f"span-{span}"


def split_files(out_dir: Union[str, Path], span: int, split: str) -> List[Path]:
  return sorted((span_dir(out_dir, span) / split).glob("data-*.tfrecord.gz"))


# ----------------------------------------------------------------------------
# Spans: skip when present, otherwise build in a temporary directory and
# rename it into place.
# ----------------------------------------------------------------------------


def fingerprint(payload: Mapping[str, Any]) -> str:
  """A stable hash of the parameters that determine a span's content."""
  text = json.dumps(payload, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def span_complete(out_dir: Union[str, Path], span: int) -> bool:
  return all(split_files(out_dir, span, split) for split in SPLITS)


def read_span_summary(out_dir: Union[str, Path], span: int) -> Dict[str, Any] | None:
  path = span_dir(out_dir, span) / SUMMARY_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def existing_span(
  out_dir: Union[str, Path], span: int, params_fingerprint: str
) -> Dict[str, Any] | None:
  """The summary of a complete existing span, or None if it must be written.

  A complete span written with other parameters is an error rather than a
  silent reuse: pass overwrite=True to replace it.
  """
  if not span_complete(out_dir, span):
    return None
  summary = read_span_summary(out_dir, span) or {}
  found = summary.get("fingerprint")
  if found is not None and found != params_fingerprint:
    raise ValueError(
      f"{span_dir(out_dir, span)} exists but was written with other parameters "
      f"(fingerprint {found}, now {params_fingerprint}); pass overwrite=True to "
      "replace it or choose another output directory"
    )
  return {**summary, "skipped": True}


@contextlib.contextmanager
def atomic_span(out_dir: Union[str, Path], span: int) -> Iterator[Path]:
  """Yields a temporary directory to fill with `train/`, `eval/` and the
  summary; on success it replaces `<out_dir>/span-<span>` in one rename (an
  existing span is moved aside first and deleted after). On error the
  temporary directory is removed and any existing span is left untouched."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".tmp-span-{span}-", dir=out_dir))
  try:
    yield tmp
    os.chmod(tmp, 0o755)
    final = span_dir(out_dir, span)
    old = None
    if final.exists():
      old = Path(tempfile.mkdtemp(prefix=f".old-span-{span}-", dir=out_dir))
      os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)


def write_span_summary(directory: Path, summary: Mapping[str, Any]) -> None:
  (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
