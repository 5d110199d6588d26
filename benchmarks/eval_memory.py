"""How the Evaluator's TFMA pass grows in memory with the eval split, with and
without the trimmed extracts (pipeline/tfma_extracts.py).

Takes the latest Evaluator execution under a pipeline root (its eval split
and candidate model, as benchmarks/eval_cost.py does) and runs the spec's
EvalConfig (no gates, no baseline) once per variant and size in a process of
its own: `default` is TFMA's default extractors, `trim` the Evaluator's. A
size of N reads the split N times over (a span N times larger; request ids
repeat, so requests grow N times too). It prints seconds and peak RSS, and per
variant the memory added per extra eval row between the smallest and the
largest size: what grows with the span.

    uv run --frozen python -m benchmarks.eval_memory \\
        --pipeline-root .mtlrank/pipelines/synthetic --spec synthetic --copies 1 3
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import contract  # noqa: F401  (tf-keras before TensorFlow is touched)

VARIANTS = ("default", "trim")


def run_one(pipeline_root: Path, spec_name: str, variant: str, copies: int, workdir: Path) -> None:
  import apache_beam as beam
  import tensorflow_model_analysis as tfma
  from apache_beam.options.pipeline_options import PipelineOptions
  from tfx_bsl.public import tfxio

  from benchmarks import eval_cost
  from models.spec import load_spec
  from pipeline import config, eval_config
  from pipeline.model_comparison import count_records
  from pipeline.tfma_extracts import trimmed_extractors

  spec = load_spec(spec_name)
  split, model = eval_cost.evaluator_inputs(pipeline_root, workdir)
  cfg = eval_config.eval_config_from_spec(spec, with_gates=False)
  shared = tfma.default_eval_shared_model(eval_saved_model_path=str(model), eval_config=cfg)
  keep = eval_config.evaluated_feature_columns(spec)
  extractors = trimmed_extractors(shared, cfg, keep) if variant == "trim" else None
  source = tfxio.TFExampleRecord(
    file_pattern=str(split / "*"), raw_record_column_name=tfma.ARROW_INPUT_COLUMN
  )
  rows = count_records([str(split)]) * copies
  started = time.perf_counter()
  with beam.Pipeline(options=PipelineOptions(config.BEAM_PIPELINE_ARGS)) as pipeline:
    reads = [pipeline | f"Read{i}" >> source.BeamSource() for i in range(copies)]
    _ = (
      reads
      | beam.Flatten()
      | "Evaluate"
      >> tfma.ExtractEvaluateAndWriteResults(
        eval_shared_model=shared,
        eval_config=cfg,
        extractors=extractors,
        output_path=str(workdir / f"out-{variant}-{copies}-{time.time():.0f}"),
      )
    )
  seconds = time.perf_counter() - started
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"RESULT {variant} {copies} {rows} {seconds:.1f} {peak:.0f}", flush=True)


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--pipeline-root", required=True, type=Path)
  parser.add_argument("--spec", default="synthetic")
  parser.add_argument("--copies", type=int, nargs="+", default=[1, 3])
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
  parser.add_argument("--workdir", type=Path, default=Path("/tmp/eval_memory"))
  parser.add_argument("--one", nargs=2, metavar=("VARIANT", "COPIES"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.workdir.mkdir(parents=True, exist_ok=True)
  if args.one:
    run_one(args.pipeline_root, args.spec, args.one[0], int(args.one[1]), args.workdir)
    return 0
  from benchmarks.eval_cost import load_average

  found = {}
  print(f"{'variant':8} {'copies':>6} {'rows':>9} {'seconds':>8} {'peak MB':>8}  load")
  for copies in args.copies:
    for variant in args.variants:
      command = [sys.executable, "-m", "benchmarks.eval_memory", "--pipeline-root",
                 str(args.pipeline_root), "--spec", args.spec, "--workdir", str(args.workdir),
                 "--one", variant, str(copies)]  # fmt: skip
      out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
      _, _, _, rows, seconds, peak = next(
        line for line in out.splitlines() if line.startswith("RESULT")
      ).split()
      found[variant, copies] = (int(rows), float(seconds), float(peak))
      print(f"{variant:8} {copies:>6} {rows:>9} {seconds:>8} {peak:>8}  {load_average():.2f}")
  low, high = min(args.copies), max(args.copies)
  if low != high:
    for variant in args.variants:
      (rows_a, _, peak_a), (rows_b, _, peak_b) = found[variant, low], found[variant, high]
      per_row = (peak_b - peak_a) * 1024 / (rows_b - rows_a)
      print(f"{variant}: {per_row:.1f} KB of peak RSS per extra eval row")
  return 0


if __name__ == "__main__":
  sys.exit(main())
