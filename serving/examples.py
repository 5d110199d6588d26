"""Raw rows (dicts of column values) to tf.Examples, typed by a column->dtype
map such as `RankingSpec.raw_columns` ('string', 'int' or 'float')."""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Mapping

import tensorflow as tf

COLUMN_DTYPES = ("string", "int", "float")


def _feature(value: Any, dtype: str, column: str) -> tf.train.Feature:
  values = value if isinstance(value, (list, tuple)) else [value]
  try:
    if dtype == "string":
      return tf.train.Feature(
        bytes_list=tf.train.BytesList(
          value=[v if isinstance(v, bytes) else str(v).encode() for v in values]
        )
      )
    if dtype == "int":
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(v)) for v in values]))
    if dtype == "float":
      return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
  except ValueError as error:
    raise ValueError(f"column {column!r}: {error}") from None
  raise ValueError(f"column {column!r}: dtype {dtype!r} is not one of {COLUMN_DTYPES}")


def _is_missing(value: Any) -> bool:
  return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def make_example(row: Mapping[str, Any], columns: Mapping[str, str]) -> tf.train.Example:
  """A tf.Example with the row's values of the known columns; missing or empty
  values are left out (the model's parsing supplies defaults), unknown
  columns are ignored."""
  features = {
    name: _feature(row[name], dtype, name)
    for name, dtype in columns.items()
    if name in row and not _is_missing(row[name])
  }
  return tf.train.Example(features=tf.train.Features(feature=features))


def serialize_rows(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str]) -> List[bytes]:
  return [make_example(row, columns).SerializeToString() for row in rows]
