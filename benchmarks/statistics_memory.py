"""StatisticsGen's memory as the span grows: TFDV's exact top-k/uniques
against its sketch-based generator, in one run.

python -m benchmarks.statistics_memory --sizes 100000 1000000

Writes, once per size, a TFRecord span shaped like the synthetic spec's (a
request id shared by a slate of 10 impressions, user and item ids, a few
low-cardinality categoricals, floats), then for each generator runs TFDV's
`GenerateStatistics` on the pipeline's own Beam runner (the in-memory
FnApiRunner, pipeline.config.BEAM_PIPELINE_ARGS) in a child process and
prints its seconds and the peak RSS it added above the process's RSS after the
imports. The exact generator counts every distinct string value (the request
id has one per slate) in one combine, so its memory grows with the span; the
sketch keeps a fixed-size Misra-Gries / KMV summary per feature. Ends with each
generator's growth exponent (log-log slope) and the sketch/exact ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np

SLATE = 10
GENERATORS = ("exact", "sketch")


def write_span(path: Path, rows: int, seed: int = 7) -> None:
  """`rows` tf.Examples with the synthetic spec's column cardinalities."""
  import tensorflow as tf

  rng = np.random.default_rng(seed)
  with tf.io.TFRecordWriter(str(path)) as writer:
    for start in range(0, rows, 10_000):
      n = min(10_000, rows - start)
      index = np.arange(start, start + n)
      users = rng.integers(0, 5000, n)
      items = rng.integers(0, 2000, n)
      prices = rng.lognormal(3.0, 1.0, n)
      for i in range(n):
        features = {
          "request_id": [f"r{index[i] // SLATE}".encode()],
          "user_id": [f"u{users[i]}".encode()],
          "item_id": [f"i{items[i]}".encode()],
          "device": [(b"mobile", b"desktop", b"tablet")[items[i] % 3]],
          "item_category": [f"c{items[i] % 20}".encode()],
        }
        example = tf.train.Example()
        for name, value in features.items():
          example.features.feature[name].bytes_list.value.extend(value)
        example.features.feature["position"].int64_list.value.append(int(index[i] % SLATE) + 1)
        example.features.feature["item_price"].float_list.value.append(float(prices[i]))
        example.features.feature["click"].int64_list.value.append(int(users[i] % 7 == 0))
        writer.write(example.SerializeToString())


def measure(path: str, generator: str) -> Dict[str, float]:
  """Run in the child: seconds and added peak RSS of one GenerateStatistics."""
  import resource
  import time

  import apache_beam as beam
  import tensorflow_data_validation as tfdv
  from apache_beam.options.pipeline_options import PipelineOptions
  from tfx_bsl.public import tfxio

  from pipeline.config import BEAM_PIPELINE_ARGS

  def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
    return float("nan")

  before = rss_mb()
  options = tfdv.StatsOptions(use_sketch_based_topk_uniques=generator == "sketch")
  start = time.perf_counter()
  with beam.Pipeline(options=PipelineOptions(BEAM_PIPELINE_ARGS)) as pipeline:
    _ = (
      pipeline
      | tfxio.TFExampleRecord(path).BeamSource()
      | tfdv.GenerateStatistics(options)
      | beam.Map(lambda stats: len(stats.datasets[0].features))
    )
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"seconds": seconds, "added_mb": peak - before, "peak_mb": peak}


def exponent(sizes: List[int], values: List[float]) -> float:
  """The log-log slope between the smallest and the largest size."""
  lo, hi = values[0], values[-1]
  if lo <= 0 or hi <= 0:
    return float("nan")
  return math.log(hi / lo) / math.log(sizes[-1] / sizes[0])


def main(argv: List[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
  parser.add_argument("--child", nargs=2, metavar=("PATH", "GENERATOR"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(measure(*args.child)))
    return
  results: Dict[str, List[Dict[str, float]]] = {g: [] for g in GENERATORS}
  with tempfile.TemporaryDirectory() as tmp:
    for size in args.sizes:
      span = Path(tmp) / f"span_{size}.tfrecord"
      write_span(span, size)
      for generator in GENERATORS:
        out = subprocess.run(
          [sys.executable, "-m", "benchmarks.statistics_memory", "--child", str(span), generator],
          check=True,
          capture_output=True,
          text=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results[generator].append(result)
        print(
          f"{size:>9,} rows  {generator:<6}  {result['seconds']:7.1f} s  "
          f"added {result['added_mb']:7.1f} MB  peak {result['peak_mb']:7.1f} MB",
          flush=True,
        )
  print()
  print(
    "| generator | "
    + " | ".join(f"{s:,}: s / added MB" for s in args.sizes)
    + " | exp. s | exp. MB |"
  )
  print("|---|" + "---:|" * (len(args.sizes) + 2))
  for generator in GENERATORS:
    cells = [f"{r['seconds']:.1f} / {r['added_mb']:.0f}" for r in results[generator]]
    seconds = exponent(args.sizes, [r["seconds"] for r in results[generator]])
    memory = exponent(args.sizes, [r["added_mb"] for r in results[generator]])
    print(f"| {generator} | " + " | ".join(cells) + f" | {seconds:.2f} | {memory:.2f} |")
  for size, exact, sketch in zip(args.sizes, results["exact"], results["sketch"]):
    print(
      f"{size:,} rows: sketch/exact seconds {sketch['seconds'] / exact['seconds']:.2f}x, "
      f"added memory {sketch['added_mb'] / max(exact['added_mb'], 1e-9):.2f}x"
    )


if __name__ == "__main__":
  main()
