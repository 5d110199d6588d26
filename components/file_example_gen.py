"""ExampleGen executors for the `files` data source, where TFX's own fall short
(CSV with a hash or patterns split: `components.csv_arrow_example_gen`).

HeaderlessCsvExecutor (now only the time split's reader of a headerless CSV;
the files source reads CSV with `ArrowCsvExecutor` otherwise): TFX's
CsvExampleGen takes the column names from each file's first line and has no option for files without a header. This executor
is TFX's CSV reading (tfx_bsl's CSV parser and column type inference, TFX's
CSV-to-tf.Example conversion) with the names declared in the spec
(`data.columns`), and no line skipped.

TimeSplitExecutor: TFX splits one input pattern by hash buckets only. This
executor reads the span with the format's own executor (CSV, headerless CSV,
Parquet or TFRecord), takes the minimum and maximum of the timestamp column
over the span (one combine pass) and sends the rows of the latest
`eval_percent` of that time range to eval, the rest to train: the model is
judged on the span's most recent impressions, never trained on them.

ParquetExecutor: TFX's parquet_executor (Beam's ReadFromParquet, then
`tfx.components.example_gen.utils.dict_to_example`), except that TFX 1.16's
`dict_to_example` tests `if not pyval` and so writes every scalar 0, 0.0 and
"" as a missing value: every negative label of a Parquet file was lost (DataGate
stopped the run: `click` present in 32 % of the rows, its click rate). This
executor converts rows with `row_to_example`, where only None (a Parquet null)
is missing.

HeaderlessCsvExecutor and TimeSplitExecutor read the spec's file settings from ExampleGen's `custom_config` (a
`google.protobuf.Struct`: format, columns, time_column, eval_percent).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable

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

from contract import EVAL_SPLIT, TRAIN_SPLIT

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


class ParquetExecutor(BaseExampleGenExecutor):
  """Parquet files, zeros kept (see the module docstring)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ParquetToExample


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
  """1 (eval) from the cutoff on; a span of one instant is all train."""
  del num_partitions
  earliest, cutoff = bounds
  time = _timestamp(record, column)
  return 1 if time >= cutoff and time > earliest else 0


class TimeSplitExecutor(BaseExampleGenExecutor):
  """One input pattern; the span's latest `eval_percent` of time on the
  timestamp column to eval, the rest to train (see the module docstring)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError("GenerateExamplesByBeam picks the format's reader")

  def GenerateExamplesByBeam(
    self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
  ) -> Dict[str, beam.pvalue.PCollection]:
    settings = file_settings(exec_properties)
    column, share = str(settings["time_column"]), float(settings["eval_percent"]) / 100.0
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
    )
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
    )
    names = utils.generate_output_split_names(input_config, output_config)
    if len(input_config.splits) != 1 or names != [TRAIN_SPLIT, EVAL_SPLIT]:
      raise ValueError(
        f"a time split reads one input pattern into {TRAIN_SPLIT!r} and {EVAL_SPLIT!r}, "
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
      | "Cutoff" >> beam.Map(lambda _, lo, hi: (lo, hi - share * (hi - lo)), lo=low, hi=high)
    )
    train, evaluation = records | "SplitByTime" >> beam.Partition(
      _time_partition, 2, column, bounds
    )
    return {TRAIN_SPLIT: train, EVAL_SPLIT: evaluation}
