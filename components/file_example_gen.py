"""ExampleGen executors for the `files` data source, where TFX's own fall short
(CSV and Parquet with a hash or patterns split: `components.arrow_example_gen`).

HeaderlessCsvExecutor (now only the time split's reader of a headerless CSV;
the files source reads CSV with `ArrowFileExecutor` otherwise): TFX's
CsvExampleGen takes the column names from each file's first line and has no option for files without a header. This executor
is TFX's CSV reading (tfx_bsl's CSV parser and column type inference, TFX's
CSV-to-tf.Example conversion) with the names declared in the spec
(`data.columns`), and no line skipped.

TimeSplitExecutor: TFX splits one input pattern by hash buckets only. This
executor reads the span with the format's own executor (CSV, headerless CSV,
Parquet or TFRecord), takes the minimum and maximum of the timestamp column
over the span (one combine pass) and sends the rows of the latest
`eval_percent` of that time range to eval, those of the `validation_percent`
just before it to validation, the rest to train: the model is judged on the
span's most recent impressions, early-stopped on the ones before, and never
trained on either.

ShareSplitExecutor: a `patterns` split without a validation pattern. The
input config names the train pattern twice (train and validation input
splits, so TFX's driver and output artifact see three splits); this executor
reads the train files once with the format's reader and sends
`validation_percent` of the rows to validation by a hash (sha256, as TFX's
own hash split) of `share_column` when set (one request on one side), else
of the whole serialized row; the eval pattern is read as it is.

The time and share splits read Parquet with Beam's ReadFromParquet and
convert rows with `row_to_example`, not TFX's `dict_to_example`: TFX 1.16's
tests `if not pyval` and so writes every scalar 0, 0.0 and "" as a missing
value, and every negative label of a Parquet file was lost. Here only None (a
Parquet null) is missing. (Hash and pattern splits of Parquet go through
`arrow_example_gen.ArrowFileExecutor`.)

HeaderlessCsvExecutor, TimeSplitExecutor and ShareSplitExecutor read the
spec's file settings from ExampleGen's `custom_config` (a
`google.protobuf.Struct`: format, columns, time_column, eval_percent,
validation_percent, share_column).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Iterable, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import struct_pb2
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils
from tfx_bsl.coders import csv_decoder

from contract import EVAL_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT

CUSTOM_CONFIG_KEY = "custom_config"


def file_settings(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  """The spec's file settings packed in ExampleGen's custom_config."""
  raw = exec_properties.get(CUSTOM_CONFIG_KEY)
  if not raw:
    raise ValueError("this ExampleGen executor needs custom_config (the spec's file settings)")
  config = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(raw, config) if isinstance(raw, str) else config.CopyFrom(raw)
  struct = struct_pb2.Struct()
  if not config.custom_config.Unpack(struct):
    raise ValueError("custom_config does not hold a google.protobuf.Struct")
  return dict(struct)


@beam.typehints.with_input_types(str)
@beam.typehints.with_output_types(str)
class _ReadHeaderlessCsvRecords(beam.DoFn):
  """TFX's `_ReadCsvRecordsFromTextFile` without its header skip: yields the
  CSV records of one file, multi-line quoted fields joined."""

  def process(self, path: str) -> Iterable[str]:
    with beam.io.filesystems.FileSystems.open(path) as file:
      buffer = csv_executor._CsvLineBuffer()  # pylint: disable=protected-access
      for line in file:
        buffer.write(line.decode("utf-8"))
        if buffer.is_complete_line():
          yield buffer.read()
      if not buffer.is_empty():
        raise ValueError(f"{path}: a CSV record has unbalanced quotes")


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _HeaderlessCsvToExample(  # pylint: disable=invalid-name
  pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
  columns = [str(c) for c in file_settings(exec_properties)["columns"]]
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  files = fileio.glob(pattern)
  if not files:
    raise RuntimeError(f"split pattern {pattern} matches no file")
  logging.info("Reading headerless CSV %s with columns %s", pattern, columns)
  parsed = (
    pipeline
    | "CreateFilenames" >> beam.Create(files)
    | "ReadFromText" >> beam.ParDo(_ReadHeaderlessCsvRecords())
    | "ParseCSVLine" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
    | "ExtractParsedCSVLines" >> beam.Keys()
  )
  column_infos = beam.pvalue.AsSingleton(
    parsed
    | "InferColumnTypes"
    >> beam.CombineGlobally(csv_decoder.ColumnTypeInferrer(columns, skip_blank_lines=True))
  )
  return parsed | "ToTFExample" >> beam.ParDo(
    csv_executor._ParsedCsvToTfExample(),  # pylint: disable=protected-access
    column_infos,
  )


def row_to_example(row: Dict[str, Any]) -> tf.train.Example:
  """A Parquet row (column -> Python scalar, list or None) as a tf.Example:
  TFX's `dict_to_example` with zeros and empty strings kept as values."""
  feature = {}
  for key, value in row.items():
    if isinstance(value, np.ndarray):
      value = value.tolist()
    elif isinstance(value, np.generic):
      value = value.item()
    if value is None:
      feature[key] = tf.train.Feature()
      continue
    values = value if isinstance(value, list) else [value]
    values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values if v is not None]
    feature[key] = utils.pyval_to_feature(values)
  return tf.train.Example(features=tf.train.Features(feature=feature))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParquetToExample(  # pylint: disable=invalid-name
  pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  logging.info("Reading Parquet %s", pattern)
  return (
    pipeline
    | "ReadFromParquet" >> beam.io.ReadFromParquet(pattern)
    | "ToTFExample" >> beam.Map(row_to_example)
  )


class HeaderlessCsvExecutor(BaseExampleGenExecutor):
  """CSV files without a header line; column names from the spec's `data.columns`."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _HeaderlessCsvToExample


def _format_transform(settings: Dict[str, Any]) -> beam.PTransform:
  """The record-reading PTransform of the executor TFX (or this module) uses
  for the format."""
  file_format = settings["format"]
  if file_format == "csv":
    if settings.get("columns"):
      return _HeaderlessCsvToExample
    return csv_executor.Executor().GetInputSourceToExamplePTransform()
  if file_format == "parquet":
    return _ParquetToExample
  if file_format == "tfrecord":
    return import_executor.Executor().GetInputSourceToExamplePTransform()
  raise ValueError(f"no reader for format {file_format!r}")


def _timestamp(record: Any, column: str) -> float:
  example = tf.train.Example.FromString(record) if isinstance(record, bytes) else record
  if column not in example.features.feature:
    raise ValueError(f"time split: a row has no {column!r} (data.split.column)")
  feature = example.features.feature[column]
  values = list(feature.int64_list.value) or list(feature.float_list.value)
  if len(values) != 1:
    raise ValueError(
      f"time split: a row has {len(values)} numeric value(s) in {column!r} "
      "(data.split.column), expected one timestamp"
    )
  return float(values[0])


def _time_partition(record: Any, num_partitions: int, column: str, bounds) -> int:
  """2 (eval) from the eval cutoff on, 1 (validation) from the validation
  cutoff on, else 0 (train); a span of one instant is all train."""
  del num_partitions
  earliest, validation_cutoff, eval_cutoff = bounds
  time = _timestamp(record, column)
  if time <= earliest:
    return 0
  if time >= eval_cutoff:
    return 2
  return 1 if time >= validation_cutoff else 0


def read_configs(
  exec_properties: Dict[str, Any],
) -> Tuple[example_gen_pb2.Input, example_gen_pb2.Output]:
  """ExampleGen's input and output configs, which exec_properties carry as JSON."""
  input_config = example_gen_pb2.Input()
  proto_utils.json_to_proto(
    exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
  )
  output_config = example_gen_pb2.Output()
  proto_utils.json_to_proto(
    exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
  )
  return input_config, output_config


class TimeSplitExecutor(BaseExampleGenExecutor):
  """One input pattern; the span's latest `eval_percent` of time on the
  timestamp column to eval, the `validation_percent` before it to
  validation, the rest to train (see the module docstring)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError("GenerateExamplesByBeam picks the format's reader")

  def GenerateExamplesByBeam(
    self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
  ) -> Dict[str, beam.pvalue.PCollection]:
    settings = file_settings(exec_properties)
    column = str(settings["time_column"])
    eval_share = float(settings["eval_percent"]) / 100.0
    validation_share = float(settings["validation_percent"]) / 100.0
    input_config, output_config = read_configs(exec_properties)
    names = utils.generate_output_split_names(input_config, output_config)
    expected = [TRAIN_SPLIT, VALIDATION_SPLIT, EVAL_SPLIT]
    if len(input_config.splits) != 1 or names != expected:
      raise ValueError(
        f"a time split reads one input pattern into {expected}, "
        f"got inputs {[s.name for s in input_config.splits]} and outputs {names}"
      )
    exec_properties["_beam_pipeline_args"] = self._beam_pipeline_args or []
    records = pipeline | "InputToRecord" >> _format_transform(settings)(
      exec_properties, input_config.splits[0].pattern
    )
    times = records | "Timestamps" >> beam.Map(_timestamp, column)
    low = beam.pvalue.AsSingleton(
      times | "Earliest" >> beam.CombineGlobally(lambda xs: min(xs, default=0.0))
    )
    high = beam.pvalue.AsSingleton(
      times | "Latest" >> beam.CombineGlobally(lambda xs: max(xs, default=0.0))
    )
    bounds = beam.pvalue.AsSingleton(
      pipeline
      | "One" >> beam.Create([None])
      | "Cutoffs"
      >> beam.Map(
        lambda _, lo, hi: (
          lo,
          hi - (eval_share + validation_share) * (hi - lo),
          hi - eval_share * (hi - lo),
        ),
        lo=low,
        hi=high,
      )
    )
    train, validation, evaluation = records | "SplitByTime" >> beam.Partition(
      _time_partition, 3, column, bounds
    )
    return {TRAIN_SPLIT: train, VALIDATION_SPLIT: validation, EVAL_SPLIT: evaluation}


def _share_key(record: Any, column: str) -> bytes:
  example = tf.train.Example.FromString(record) if isinstance(record, bytes) else record
  if not column:
    return record if isinstance(record, bytes) else example.SerializeToString(deterministic=True)
  if column not in example.features.feature:
    raise ValueError(f"validation share: a row has no {column!r} (data.split.column)")
  feature = example.features.feature[column]
  values = feature.bytes_list.value or feature.int64_list.value or feature.float_list.value
  return repr([v.decode("utf-8") if isinstance(v, bytes) else v for v in values]).encode()


def share_bucket(record: Any, column: str) -> int:
  """The row's hash bucket in 0..99 (sha256 of the key, as TFX's hash split)."""
  return int(hashlib.sha256(_share_key(record, column)).hexdigest(), 16) % 100


def _share_partition(record: Any, num_partitions: int, column: str, percent: int) -> int:
  """1 (validation) for the rows in the lowest `percent` hash buckets, else 0 (train)."""
  del num_partitions
  return 1 if share_bucket(record, column) < percent else 0


class ShareSplitExecutor(BaseExampleGenExecutor):
  """Input splits train, validation (the train pattern again) and eval; the
  train files' rows split by hash into train and validation (see the module
  docstring)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError("GenerateExamplesByBeam picks the format's reader")

  def GenerateExamplesByBeam(
    self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
  ) -> Dict[str, beam.pvalue.PCollection]:
    settings = file_settings(exec_properties)
    column, percent = str(settings.get("share_column") or ""), int(settings["validation_percent"])
    input_config, _ = read_configs(exec_properties)
    patterns = {s.name: s.pattern for s in input_config.splits}
    expected = [TRAIN_SPLIT, VALIDATION_SPLIT, EVAL_SPLIT]
    if sorted(patterns) != sorted(expected) or patterns[TRAIN_SPLIT] != patterns[VALIDATION_SPLIT]:
      raise ValueError(
        f"a share split reads input splits {expected}, validation with train's pattern; "
        f"got {patterns}"
      )
    exec_properties["_beam_pipeline_args"] = self._beam_pipeline_args or []
    read = _format_transform(settings)
    rows = pipeline | "InputToRecord[train]" >> read(exec_properties, patterns[TRAIN_SPLIT])
    train, validation = rows | "SplitByShare" >> beam.Partition(
      _share_partition, 2, column, percent
    )
    evaluation = pipeline | "InputToRecord[eval]" >> read(exec_properties, patterns[EVAL_SPLIT])
    return {TRAIN_SPLIT: train, VALIDATION_SPLIT: validation, EVAL_SPLIT: evaluation}
