"""The `files` data source: the user's CSV, Parquet or TFRecord spans, read by
TFX's own ExampleGens inside the pipeline (streamed by Beam, never converted
beforehand nor held in memory).

  csv       `FileBasedExampleGen` with `components.arrow_example_gen.
            ArrowFileExecutor` (a header line, or `data.columns` for a
            headerless file): pyarrow's streaming CSV reader with the spec's
            column types and tfx_bsl's C++ encoder, where TFX's CsvExampleGen
            converts row by row in Python and holds the span in memory; a
            `time` split still reads CSV with TFX's reading (below);
  parquet   the same `ArrowFileExecutor`, reading each file in bounded
            batches (`ParquetFile.iter_batches`); only a null is missing (TFX
            1.16's Parquet conversion writes every 0 as a missing value, the
            negative labels lost);
  tfrecord  `tfx.components.ImportExampleGen` (tf.Example records).

The split rule (`data.split`) makes three splits, train, validation and
eval. It is TFX's: three input patterns (`patterns`), or one pattern divided
by ExampleGen's `output_config` on a hash of a column (`hash`,
`partition_feature_name`: one request or user never straddles the splits).
A `time` split (the span's latest rows on a timestamp column as eval, the
slice before them as validation) needs a pass over the span TFX's
ExampleGens do not make: `components.file_example_gen.TimeSplitExecutor`
wraps the format's executor. `patterns` without a validation pattern reads
the train pattern as both train and validation input splits, and
`components.file_example_gen.ShareSplitExecutor` keeps `validation_percent`
of its rows (by hash) in validation and the rest in train.

The runner calls `check_window` before it builds the pipeline: a pattern that
matches no file, a span missing from one split, or a declared column the files
lack (CSV headers, Parquet schemas) stops the run there, naming the root,
pattern, file and column; what TFDV can see (types, values, empty columns)
DataGate reports after StatisticsGen.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Dict, List

from contract import EVAL_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from models.spec import RankingSpec
from pipeline.config import REPO_ROOT

# The one input split a `hash` or `time` rule divides into train, validation and eval.
ALL_SPLIT = "all"


class FilesSourceError(ValueError):
  """The spec's files cannot be read; the message names root, pattern, file, column."""


def resolve_root(root: str) -> Path:
  """An absolute `data.root` as is; a relative one against the repository root
  (as the census adapter's `path`)."""
  path = Path(root)
  return path if path.is_absolute() else (REPO_ROOT / path)


def split_patterns(spec: RankingSpec) -> Dict[str, str]:
  """The input pattern of each input split of ExampleGen. Without a
  validation pattern, validation reads the train files (`carves_validation`)."""
  data = spec.data
  if data.split.kind == "patterns":
    return {
      TRAIN_SPLIT: data.split.train,
      VALIDATION_SPLIT: data.split.validation or data.split.train,
      EVAL_SPLIT: data.split.eval,
    }
  return {ALL_SPLIT: data.pattern}


def carves_validation(spec: RankingSpec) -> bool:
  """Whether validation is a hashed share of the train files' rows (a
  `patterns` split without a validation pattern)."""
  return spec.data.split.kind == "patterns" and not spec.data.split.validation


def input_config(spec: RankingSpec):
  from tfx.proto import example_gen_pb2

  return example_gen_pb2.Input(
    splits=[
      example_gen_pb2.Input.Split(name=name, pattern=pattern)
      for name, pattern in split_patterns(spec).items()
    ]
  )


def output_config(spec: RankingSpec):
  """ExampleGen's output splits: the input splits as they are (`patterns`), or
  `hash` buckets of the split column, in the order train, validation, eval
  (eval keeps the top `eval_percent` buckets). A `time` split has the same
  three output splits here; its executor assigns rows by time itself."""
  from tfx.proto import example_gen_pb2

  split = spec.data.split
  if split.kind == "patterns":
    return None
  buckets = example_gen_pb2.SplitConfig(
    splits=[
      example_gen_pb2.SplitConfig.Split(
        name=TRAIN_SPLIT, hash_buckets=100 - split.eval_percent - split.validation_percent
      ),
      example_gen_pb2.SplitConfig.Split(
        name=VALIDATION_SPLIT, hash_buckets=split.validation_percent
      ),
      example_gen_pb2.SplitConfig.Split(name=EVAL_SPLIT, hash_buckets=split.eval_percent),
    ],
  )
  if split.kind == "hash":
    buckets.partition_feature_name = split.column
  return example_gen_pb2.Output(split_config=buckets)


def custom_config(spec: RankingSpec):
  """What the project's executors read: the headerless CSV's column names, the
  time split's column and eval and validation shares, the share split's
  column and validation share, the format, and the declared columns' dtypes
  (the CSV executor's column types)."""
  from google.protobuf import any_pb2, struct_pb2
  from tfx.proto import example_gen_pb2

  values = {
    "format": spec.data.format,
    "columns": list(spec.data.columns),
    "time_column": spec.data.split.column if spec.data.split.kind == "time" else "",
    "eval_percent": spec.data.split.eval_percent,
    "validation_percent": spec.data.split.validation_percent,
    "share_column": spec.data.split.column if carves_validation(spec) else "",
    "column_types": dict(spec.raw_columns),
  }
  struct = struct_pb2.Struct()
  struct.update(json.loads(json.dumps(values)))
  packed = any_pb2.Any()
  packed.Pack(struct)
  return example_gen_pb2.CustomConfig(custom_config=packed)


def has_spans(spec: RankingSpec) -> bool:
  """Whether the patterns carry a span ({SPAN} or a date); without one, all
  matching files are span 0."""
  from tfx.components.example_gen import utils
  from tfx.proto import example_gen_pb2

  pattern = next(iter(split_patterns(spec).values()))
  is_span, is_date, _ = utils.verify_split_pattern_specs(
    example_gen_pb2.Input.Split(name="any", pattern=pattern)
  )
  return is_span or is_date


def example_gen(spec: RankingSpec, range_config=None):
  """The ExampleGen for the spec's format and split rule (node id set by the
  caller); `range_config` (the span to ingest) is dropped for patterns
  without a span, which TFX's driver refuses it for."""
  from tfx import v1 as tfx
  from tfx.components.example_gen.component import FileBasedExampleGen
  from tfx.dsl.components.base import executor_spec

  from components import arrow_example_gen, file_example_gen

  data = spec.data
  common = dict(
    input_base=str(resolve_root(data.root)),
    input_config=input_config(spec),
    output_config=output_config(spec),
    range_config=range_config if has_spans(spec) else None,
  )
  custom_executor = None
  if data.split.kind == "time":
    custom_executor = file_example_gen.TimeSplitExecutor
  elif carves_validation(spec):
    custom_executor = file_example_gen.ShareSplitExecutor
  elif data.format in arrow_example_gen.FORMATS:
    custom_executor = arrow_example_gen.ArrowFileExecutor
  if custom_executor is None:
    return tfx.components.ImportExampleGen(**common)
  # BeamExecutorSpec, not ExecutorClassSpec (as TFX's parquet_executor
  # docstring has it): only a Beam spec passes the pipeline's Beam args (the in-memory
  # FnApiRunner) to the executor.
  return FileBasedExampleGen(
    custom_config=custom_config(spec),
    custom_executor_spec=executor_spec.BeamExecutorSpec(custom_executor),
    **common,
  )


def _where(spec: RankingSpec, split: str, pattern: str) -> str:
  root = resolve_root(spec.data.root)
  field = "data.pattern" if split == ALL_SPLIT else f"data.split.{split}"
  if split == VALIDATION_SPLIT and carves_validation(spec):
    field = "data.split.train"
  return f"{os.path.join(str(root), pattern)} ({field} {pattern!r} under data.root {str(root)!r})"


def span_files(spec: RankingSpec) -> Dict[str, Dict[int, List[str]]]:
  """Per input split, the files of each span (the latest version only), as
  TFX's driver matches them; span 0 when the pattern has no span."""
  from tfx.components.example_gen import utils
  from tfx.dsl.io import fileio
  from tfx.proto import example_gen_pb2

  root = str(resolve_root(spec.data.root))
  result: Dict[str, Dict[int, List[str]]] = {}
  for name, pattern in split_patterns(spec).items():
    split = example_gen_pb2.Input.Split(name=name, pattern=pattern)
    is_span, is_date, is_version = utils.verify_split_pattern_specs(split)
    # TFX's own matching (private helpers of tfx 1.16's ExampleGen driver), so
    # that the spans found here are the spans the driver will find.
    glob, regex = utils._create_matching_glob_and_regex(  # pylint: disable=protected-access
      uri=root,
      split=split,
      is_match_span=is_span,
      is_match_date=is_date,
      is_match_version=is_version,
      range_config=None,
    )
    by_span: Dict[int, Dict[int, List[str]]] = {}
    for path in sorted(p for p in fileio.glob(glob) if not fileio.isdir(p)):
      if is_span or is_date:
        try:
          _, span, _, version = utils._find_matched_span_version_from_path(  # pylint: disable=protected-access
            path, regex, is_span, is_date, is_version
          )
        except ValueError as e:
          raise FilesSourceError(f"{path}: {e} (matching {_where(spec, name, pattern)})") from e
      else:
        span, version = 0, None
      by_span.setdefault(span, {}).setdefault(version or 0, []).append(path)
    if not by_span:
      raise FilesSourceError(f"no file matches {_where(spec, name, pattern)}")
    result[name] = {span: versions[max(versions)] for span, versions in by_span.items()}
  return result


def check_window(spec: RankingSpec, span: int | None = None) -> List[int]:
  """The spans of the training window (the latest `data.num_spans` up to
  `span`), oldest first, after checking that every split of each has files
  and that the files hold the declared columns."""
  files = span_files(spec)
  splits = list(files)
  spans = sorted(set.intersection(*(set(by_span) for by_span in files.values())))
  for name in splits:
    missing = sorted(set().union(*(set(s) for s in files.values())) - set(files[name]))
    if missing:
      pattern = split_patterns(spec)[name]
      raise FilesSourceError(
        f"span(s) {missing} have files in another split but none match {_where(spec, name, pattern)}"
      )
  if span is not None:
    if span not in spans:
      raise FilesSourceError(f"span {span} is not among the spans found: {spans}")
    spans = [s for s in spans if s <= span]
  window = spans[-spec.data.num_spans :]
  if len(window) < spec.data.num_spans:
    raise FilesSourceError(
      f"the spec trains on the latest {spec.data.num_spans} span(s) but only "
      f"{window} match {_where(spec, splits[0], split_patterns(spec)[splits[0]])}"
    )
  for s in window:
    for name in splits:
      for path in files[name][s]:
        check_columns(spec, path)
  return window


def _declared(spec: RankingSpec) -> Dict[str, str]:
  """Each column the spec reads, with where the spec declares it."""
  where = {}
  for i, f in enumerate(spec.features):
    where.setdefault(f.column, f"features[{i}] {f.name!r}")
  for i, t in enumerate(spec.tasks):
    where.setdefault(t.label, f"tasks[{i}] {t.name!r} label")
  return where


def file_columns(spec: RankingSpec, path: str) -> List[str] | None:
  """The column names a file holds (CSV header, Parquet schema), or None
  where the format does not say without reading the records (TFRecord)."""
  from tfx.dsl.io import fileio

  if spec.data.format == "csv":
    with fileio.open(path, "rb") as f:
      first = f.readline().decode("utf-8")
    row = next(csv.reader(io.StringIO(first)), [])
    if spec.data.columns:
      if first.strip() and len(row) != len(spec.data.columns):
        raise FilesSourceError(
          f"{path}: line 1 has {len(row)} field(s) but data.columns names {len(spec.data.columns)}"
        )
      return list(spec.data.columns)
    return [c.strip() for c in row]
  if spec.data.format == "parquet":
    if "://" in path:
      return None  # DataGate's TFDV check reports a missing column there.
    import pyarrow.parquet as pq

    # The footer only: no row group is read.
    return list(pq.read_schema(path).names)
  return None


def check_columns(spec: RankingSpec, path: str) -> None:
  columns = file_columns(spec, path)
  if columns is None:
    return
  missing = [(c, w) for c, w in _declared(spec).items() if c not in columns]
  if missing:
    listed = "; ".join(f"{c!r} ({w})" for c, w in missing)
    raise FilesSourceError(
      f"{path}: lacks the declared column(s) {listed}; the file has: {', '.join(columns)}"
    )
