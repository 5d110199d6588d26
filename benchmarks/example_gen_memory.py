"""What holds the span in CsvExampleGen's memory: TFX's own CSV graph (read,
parse, type inference as a side input, tf.Example conversion, hash split on
`request_id`, serialize, Reshuffle, write) rebuilt from TFX's pieces on the
pipeline's Beam runner, with parts removed, one variant per fresh process:

  A  TFX's graph as CsvExampleGen's `Do` runs it;
  B  A without the `Reshuffle` before the write (TFX's `WriteSplit`);
  C  B with the column types fixed (inferred once from the first 1000 rows,
     outside Beam) instead of the type-inference side input.

    uv run --frozen python -m benchmarks.example_gen_memory CSV_DIR OUT_DIR [--variants C B A]

CSV_DIR holds CSV files with a header and a `request_id` column (e.g. one
written by `benchmarks.example_gen_cost --work`). Prints each variant's
seconds and peak RSS added during the pipeline. Figures: docs/files.md
("What ingestion costs").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time


def run(variant: str, source: str, out: str) -> dict:
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from tfx.components.example_gen import base_example_gen_executor as base
  from tfx.components.example_gen import write_split
  from tfx.components.example_gen.csv_example_gen import executor as csv_executor
  from tfx.proto import example_gen_pb2
  from tfx.utils import io_utils
  from tfx_bsl.coders import csv_decoder

  from pipeline.config import BEAM_PIPELINE_ARGS

  files = sorted(os.path.join(source, f) for f in os.listdir(source))
  names = io_utils.load_csv_column_names(files[0])
  split = example_gen_pb2.SplitConfig(
    splits=[
      example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=80),
      example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=20),
    ],
    partition_feature_name="request_id",
  )
  inferrer = csv_decoder.ColumnTypeInferrer(names, skip_blank_lines=True)

  def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

  before, started = rss_mb(), time.perf_counter()
  with beam.Pipeline(options=PipelineOptions(BEAM_PIPELINE_ARGS)) as pipeline:
    parsed = (
      pipeline
      | beam.Create(files)
      | beam.ParDo(csv_executor._ReadCsvRecordsFromTextFile())  # pylint: disable=protected-access
      | beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
      | beam.Keys()
    )
    if variant == "C":
      with open(files[0], encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        accumulator = inferrer.create_accumulator()
        for _, row in zip(range(1000), reader):
          accumulator = inferrer.add_input(accumulator, [c.encode() for c in row])
      infos = inferrer.extract_output(accumulator)
    else:
      infos = beam.pvalue.AsSingleton(parsed | beam.CombineGlobally(inferrer))
    examples = parsed | beam.ParDo(csv_executor._ParsedCsvToTfExample(), infos)  # pylint: disable=protected-access
    parts = examples | beam.Partition(base._PartitionFn, 2, [80, 100], split)  # pylint: disable=protected-access
    for i, part in enumerate(parts):
      records = part | f"Serialize{i}" >> beam.ParDo(write_split.MaybeSerialize())
      if variant == "A":
        records = records | f"Shuffle{i}" >> beam.Reshuffle()
      _ = records | f"Write{i}" >> beam.io.WriteToTFRecord(
        os.path.join(out, f"split{i}", "data"), file_name_suffix=".gz"
      )
  return {
    "variant": variant,
    "seconds": time.perf_counter() - started,
    "added_mb": rss_mb() - before,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("source")
  parser.add_argument("out")
  parser.add_argument("--variants", nargs="+", default=["C", "B", "A"])
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(run(args.variants[0], args.source, args.out)))
    return
  for variant in args.variants:
    load = os.getloadavg()[0]
    done = subprocess.run(
      [
        sys.executable,
        "-m",
        "benchmarks.example_gen_memory",
        args.source,
        os.path.join(args.out, variant),
        "--variants",
        variant,
        "--child",
      ],
      check=True,
      capture_output=True,
      text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
      f"{variant}: {result['seconds']:.1f} s, added {result['added_mb']:.0f} MB, "
      f"load {load:.1f}-{os.getloadavg()[0]:.1f}",
      flush=True,
    )


if __name__ == "__main__":
  main()
