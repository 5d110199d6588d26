"""A sample of the user's rows, typed as the pipeline's ExampleGen will type
them, and its TFDV statistics: what `mtlrank init` decides from.

CSV cells are typed by tfx_bsl's `ColumnTypeInferrer`, the inference
CsvExampleGen runs (a column of integers is INT even where the user meant
floats), so that a drafted `dtype` matches what DataGate will see; Parquet
columns by their Arrow type; tf.Example features by their kind. Rows are read
from the start of each file, at most `rows // len(files)` per file (latest
files first), never a whole file."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

DEFAULT_SAMPLE_ROWS = 10_000
_QUANTILES = 100


class SampleError(ValueError):
  """The sample cannot be read; the message names the file."""


@dataclasses.dataclass(frozen=True)
class ColumnStats:
  """One column of the sample: TFDV's statistics and the distinct count."""

  name: str
  dtype: str  # "string" | "int" | "float"
  rows: int
  missing: int
  distinct: int
  non_finite: int = 0
  min: float = 0.0
  max: float = 0.0
  mean: float = 0.0
  std: float = 0.0
  num_zeros: int = 0
  # Percentiles 0..100 of the present, finite values (TFDV's quantiles).
  percentiles: Tuple[float, ...] = ()
  top_values: Tuple[str, ...] = ()

  def percentile(self, p: int) -> float:
    return self.percentiles[p] if self.percentiles else 0.0

  @property
  def present(self) -> int:
    return self.rows - self.missing


@dataclasses.dataclass(frozen=True)
class Sample:
  """The sampled rows (column -> values, None where missing) and their statistics."""

  columns: Dict[str, List[Any]]
  stats: Dict[str, ColumnStats]
  rows: int
  files: Tuple[Path, ...]


def read_sample(
  files: Sequence[Path],
  file_format: str,
  columns: Sequence[str] = (),
  rows: int = DEFAULT_SAMPLE_ROWS,
) -> Sample:
  """Reads up to `rows` rows spread over `files` (the latest first) and computes
  their statistics with TFDV."""
  ordered = sorted(files, reverse=True)
  per_file = max(1, rows // len(ordered))
  readers = {"csv": _csv_rows, "parquet": _parquet_rows, "tfrecord": _tfrecord_rows}
  values: Dict[str, List[Any]] = {}
  dtypes: Dict[str, str] = {}
  count = 0
  for path in ordered:
    if count >= rows:
      break
    file_values, file_types = readers[file_format](path, min(per_file, rows - count), columns)
    added = len(next(iter(file_values.values()), []))
    for name in list(values) + [n for n in file_values if n not in values]:
      values.setdefault(name, [None] * count).extend(file_values.get(name, [None] * added))
      dtypes[name] = _wider(dtypes.get(name), file_types.get(name))
    count += added
  if not count:
    raise SampleError(f"no row in {', '.join(str(p) for p in ordered)}")
  typed = {name: _cast(values[name], dtypes[name] or "string") for name in values}
  return Sample(
    typed, statistics(typed, {n: t or "string" for n, t in dtypes.items()}), count, tuple(ordered)
  )


_ORDER = {None: -1, "int": 0, "float": 1, "string": 2}


def _wider(a: str | None, b: str | None) -> str | None:
  """INT -> FLOAT -> STRING, as tfx_bsl widens a CSV column's type."""
  return a if _ORDER[a] >= _ORDER[b] else b


def _cast(values: List[Any], dtype: str) -> List[Any]:
  kind = {"int": int, "float": float, "string": str}[dtype]
  return [None if v is None else kind(v) for v in values]


def _csv_rows(path: Path, limit: int, columns: Sequence[str]) -> Tuple[Dict, Dict]:
  """CSV rows typed by tfx_bsl's ColumnTypeInferrer (CsvExampleGen's inference)."""
  from tfx_bsl.coders import csv_decoder

  with path.open(newline="", encoding="utf-8") as f:
    reader = csv.reader(f)
    header = list(columns) or [c.strip() for c in next(reader, [])]
    lines = [row for row in itertools.islice(reader, limit) if row]
  if not header:
    raise SampleError(f"{path}: empty file")
  for i, row in enumerate(lines):
    if len(row) != len(header):
      where = "--columns names" if columns else "the header has"
      raise SampleError(
        f"{path}: row {i + (1 if columns else 2)} has {len(row)} field(s) but {where} {len(header)}"
      )
  inferrer = csv_decoder.ColumnTypeInferrer(header, skip_blank_lines=True)
  accumulator = inferrer.create_accumulator()
  for row in lines:
    accumulator = inferrer.add_input(accumulator, [cell.encode() for cell in row])
  names = {
    csv_decoder.ColumnType.INT: "int",
    csv_decoder.ColumnType.FLOAT: "float",
    csv_decoder.ColumnType.STRING: "string",
  }
  types = {info.name: names.get(info.type) for info in inferrer.extract_output(accumulator)}
  values = {
    name: [row[i] if row[i] != "" else None for row in lines] for i, name in enumerate(header)
  }
  return values, types


def looks_like_data(path: Path) -> bool:
  """Whether a CSV's first line is data, not a header. A header names each
  column once, and some field of it is a word where the next line has a
  number (Ali-CCP's header of field ids, `click,purchase,101,...`, is one);
  a first line with a number and no such contrast is data."""
  with path.open(newline="", encoding="utf-8") as f:
    lines = list(itertools.islice(csv.reader(f), 2))
  if not lines:
    return False
  first = lines[0]
  if len(set(first)) < len(first):
    return True
  if len(lines) < 2:
    return all(_is_number(c) for c in first)
  header_like = any(not _is_number(a) and _is_number(b) for a, b in zip(first, lines[1]))
  return not header_like and any(_is_number(c) for c in first)


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def _parquet_rows(path: Path, limit: int, columns: Sequence[str]) -> Tuple[Dict, Dict]:
  import pyarrow as pa
  import pyarrow.parquet as pq

  parquet = pq.ParquetFile(str(path))
  batches, count = [], 0
  for batch in parquet.iter_batches(batch_size=min(limit, 65_536)):
    batches.append(batch.slice(0, limit - count))
    count += batches[-1].num_rows
    if count >= limit:
      break
  table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
  types = {}
  for field in table.schema:
    t = field.type
    types[field.name] = (
      "int"
      if pa.types.is_integer(t) or pa.types.is_boolean(t)
      else "float"
      if pa.types.is_floating(t)
      else "string"
    )
  return {name: table.column(name).to_pylist() for name in table.column_names}, types


def _tfrecord_rows(path: Path, limit: int, columns: Sequence[str]) -> Tuple[Dict, Dict]:
  """tf.Example records; a feature's kind is its type, a list's first value its value."""
  import tensorflow as tf

  records = tf.data.TFRecordDataset(str(path)).take(limit)
  rows: List[Dict[str, Any]] = []
  types: Dict[str, str] = {}
  try:
    for record in records.as_numpy_iterator():
      example = tf.train.Example.FromString(record)
      row = {}
      for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        listed = list(getattr(feature, kind).value) if kind else []
        dtype = {"int64_list": "int", "float_list": "float", "bytes_list": "string"}.get(kind)
        types[name] = _wider(types.get(name), dtype)
        first = listed[0] if listed else None
        row[name] = first.decode("utf-8", "replace") if isinstance(first, bytes) else first
      rows.append(row)
  except tf.errors.DataLossError as e:
    raise SampleError(f"{path}: not a TFRecord file of tf.Example ({e.message})") from None
  names = sorted(set().union(*rows)) if rows else []
  return {n: [r.get(n) for r in rows] for n in names}, types


def statistics(
  columns: Mapping[str, List[Any]], dtypes: Mapping[str, str]
) -> Dict[str, ColumnStats]:
  """TFDV's statistics of the sample (computed in memory, no Beam job), with
  the distinct count of every column (TFDV gives it for strings only)."""
  import pandas as pd
  import tensorflow_data_validation as tfdv

  frame = {}
  for name, values in columns.items():
    if dtypes[name] == "string":
      frame[name] = pd.Series(values, dtype=object)
    else:
      finite = [v if v is not None and math.isfinite(v) else None for v in values]
      frame[name] = pd.array(finite, dtype="Int64" if dtypes[name] == "int" else "Float64")
  options = tfdv.StatsOptions(num_quantiles_histogram_buckets=_QUANTILES, num_top_values=10)
  result = tfdv.generate_statistics_from_dataframe(pd.DataFrame(frame), options)
  by_name = {f.path.step[0]: f for f in result.datasets[0].features}
  stats = {}
  for name, values in columns.items():
    present = [v for v in values if v is not None]
    non_finite = sum(1 for v in present if isinstance(v, float) and not math.isfinite(v))
    stats[name] = _column_stats(name, dtypes[name], values, present, non_finite, by_name.get(name))
  return stats


def _column_stats(name, dtype, values, present, non_finite, feature) -> ColumnStats:
  base = dict(
    name=name,
    dtype=dtype,
    rows=len(values),
    missing=len(values) - len(present),
    distinct=len(set(present)),
    non_finite=non_finite,
  )
  if feature is None:
    return ColumnStats(**base)
  if dtype == "string":
    top = tuple(v.value for v in feature.string_stats.top_values)
    return ColumnStats(**base, top_values=top)
  num = feature.num_stats
  quantiles = next((h for h in num.histograms if h.type == h.QUANTILES), None)
  percentiles: Tuple[float, ...] = ()
  if quantiles is not None and quantiles.buckets:
    percentiles = (quantiles.buckets[0].low_value,) + tuple(b.high_value for b in quantiles.buckets)
  return ColumnStats(
    **base,
    min=float(num.min),
    max=float(num.max),
    mean=float(num.mean),
    std=float(num.std_dev),
    num_zeros=int(num.num_zeros),
    percentiles=tuple(float(p) for p in percentiles),
  )


def label_values(sample: Sample, column: str) -> np.ndarray:
  """A label column as floats (NaN where missing)."""
  return np.array([np.nan if v is None else float(v) for v in sample.columns[column]])
