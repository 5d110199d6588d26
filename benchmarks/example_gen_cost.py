"""ExampleGen's cost: the files source (TFX's CsvExampleGen, the Parquet
executor) against the copying ExampleGen of the bundled sources, in one run.

The synthetic spec's simulator draws one span of `--rows` rows (100,000: one
of the spec's spans) and writes the same rows three
ways: the GZIP TFRecords of train and eval the copying ExampleGen
(`components/example_gen.py`) ingests, one CSV file with a header and one
Parquet file, which the files source reads with a hash split on `request_id`
(`pipeline.data.files`: the input, output and custom configs the pipeline
passes).

Each case runs the executor's `Do` in a fresh Python process (the pipeline's
Beam arguments: the in-memory FnApiRunner), which reports its wall time, its
CPU seconds (user + system: what the shared machine's load does not inflate)
and its peak resident memory (`getrusage` high-water mark, the Beam workers
included: they are threads of that process) before and after `Do`. The copy
path's full cost is the adapter's TFRecord writing in prepare-data (timed
here, after TensorFlow's import) plus the copy: each files case is printed
against the copy's `Do` alone (bare) and against the writing plus the copy
(end to end). More CSV sizes (`--large-rows`, CSV only) tell whether the
memory grows with the span. The machine is shared: the 1-minute load average
is printed with each case, and the ratios are within this one run.

    uv run --frozen python -m benchmarks.example_gen_cost [--rows 100000] [--large-rows 300000 1000000]

Figures: docs/files.md ("What ingestion costs").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from models.spec import DataSpec, RankingSpec, SplitSpec, load_spec

SPLIT_COLUMN = "request_id"
CASES = ("copy", "csv", "parquet")


def files_spec(base: RankingSpec, root: Path, file_format: str) -> RankingSpec:
  """The synthetic spec reading `root` through the files source, hash split on the request."""
  return base.replace(
    data=DataSpec(
      source="files",
      format=file_format,
      root=str(root),
      pattern=f"*.{file_format}",
      split=SplitSpec(kind="hash", column=SPLIT_COLUMN, eval_percent=20),
    )
  )


def write_rows(spec: RankingSpec, rows: int, out: Path, formats: List[str]) -> Dict[str, Any]:
  """One simulated span of `rows` rows written as TFRecords (train/eval), CSV and Parquet."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  from pipeline.data import io
  from pipeline.data.simulator import _check_columns, simulate_spec_span
  from pipeline.data.world import SimParams, make_world

  params = SimParams.from_spec(spec)
  slate = params.slate_size
  params = SimParams(**{**params.__dict__, "num_spans": 1, "requests_per_span": rows // slate})
  columns_spec = _check_columns(spec)
  data = simulate_spec_span(spec, make_world(params), params, 1)
  columns = {name: data["columns"][name] for name in columns_spec}
  is_eval = data["is_eval"]
  written, cost = {}, {}
  if "copy" in formats:
    # What the copy path pays before its ExampleGen: the adapter's TFRecord
    # writing in prepare-data (the simulator's `io.write_examples`), timed
    # after TensorFlow's import.
    import tensorflow  # noqa: F401  pylint: disable=unused-import,g-import-not-at-top

    started, cpu = time.perf_counter(), time.process_time()
    for split, mask in (("train", ~is_eval), ("eval", is_eval)):
      part = {
        k: (v.filter(pa.array(mask)) if isinstance(v, pa.Array) else v[mask])
        for k, v in columns.items()
      }
      io.write_examples(part, columns_spec, out / "copy" / split / io.DATA_FILE)
    cost["tfrecords"] = {
      "seconds": time.perf_counter() - started,
      "cpu_seconds": time.process_time() - cpu,
    }
    written["copy"] = out / "copy"
  table = pa.table(dict(columns))
  if "csv" in formats:
    (out / "csv").mkdir(parents=True, exist_ok=True)
    # pandas quotes nothing here; pyarrow's writer quotes every string, the
    # header's too, and TFX's CSV reading keeps those quotes in the column names.
    table.to_pandas().to_csv(out / "csv" / "span.csv", index=False)
    written["csv"] = out / "csv"
  if "parquet" in formats:
    (out / "parquet").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "parquet" / "span.parquet")
    written["parquet"] = out / "parquet"
  return {
    "rows": int(table.num_rows),
    "dirs": {k: str(v) for k, v in written.items()},
    "cost": cost,
  }


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def run_case(case: str, source: str, output: str, beam_args: List[str] = ()) -> Dict[str, Any]:
  """Runs one ExampleGen executor's Do in this process; time and peak memory."""
  from tfx.dsl.components.base import base_beam_executor
  from tfx.proto import example_gen_pb2
  from tfx.types import standard_artifacts, standard_component_specs
  from tfx.utils import proto_utils

  from components import example_gen, file_example_gen
  from pipeline import config
  from pipeline.data import files

  spec = load_spec("synthetic")
  props: Dict[str, Any] = {
    standard_component_specs.INPUT_BASE_KEY: source,
    standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
  }
  if case == "copy":
    executor_class = example_gen.Executor
    split_input = example_gen_pb2.Input(
      splits=[example_gen_pb2.Input.Split(name=s, pattern=f"{s}/*.gz") for s in ("train", "eval")]
    )
    props[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(split_input)
    props[standard_component_specs.OUTPUT_CONFIG_KEY] = "{}"
  else:
    from tfx.components.example_gen.csv_example_gen import executor as csv_executor

    fspec = files_spec(spec, Path(source), case)
    executor_class = csv_executor.Executor if case == "csv" else file_example_gen.ParquetExecutor
    props[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(
      files.input_config(fspec)
    )
    props[standard_component_specs.OUTPUT_CONFIG_KEY] = proto_utils.proto_to_json(
      files.output_config(fspec)
    )
    props[standard_component_specs.CUSTOM_CONFIG_KEY] = proto_utils.proto_to_json(
      files.custom_config(fspec)
    )
  examples = standard_artifacts.Examples()
  examples.uri = output
  context = base_beam_executor.BaseBeamExecutor.Context(
    beam_pipeline_args=[*config.BEAM_PIPELINE_ARGS, *beam_args], tmp_dir=output + "-tmp"
  )
  executor = executor_class(context) if case != "copy" else executor_class()
  before, cpu = _peak_rss_mb(), _cpu_seconds()
  started = time.perf_counter()
  executor.Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, props)
  seconds = time.perf_counter() - started
  return {
    "case": case,
    "seconds": seconds,
    "cpu_seconds": _cpu_seconds() - cpu,
    "rss_before_mb": before,
    "peak_rss_mb": _peak_rss_mb(),
  }


def measure(case: str, source: str, work: Path, beam_args: List[str] = ()) -> Dict[str, Any]:
  """`run_case` in a fresh process, with the load average around it."""
  output = tempfile.mkdtemp(prefix=f"{case}-", dir=work)
  load = os.getloadavg()[0]
  done = subprocess.run(
    [sys.executable, "-m", "benchmarks.example_gen_cost", "--case", case, source, output]
    + [f"--beam-arg={a}" for a in beam_args],
    capture_output=True,
    text=True,
  )
  if done.returncode:
    raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
  result = json.loads(done.stdout.strip().splitlines()[-1])
  result["load_before"], result["load_after"] = load, os.getloadavg()[0]
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rows", type=int, default=100_000)
  parser.add_argument(
    "--large-rows",
    type=int,
    nargs="*",
    default=[300_000, 1_000_000],
    help="CSV-only sizes (memory growth)",
  )
  parser.add_argument("--work", default="", help="a directory for the data (default: a temp dir)")
  parser.add_argument(
    "--case", nargs=3, metavar=("CASE", "SOURCE", "OUTPUT"), help=argparse.SUPPRESS
  )
  parser.add_argument(
    "--beam-arg",
    action="append",
    default=[],
    help="a Beam argument after the pipeline's (e.g. --beam-arg=--direct_num_workers=2)",
  )
  args = parser.parse_args()
  if args.case:
    print(json.dumps(run_case(*args.case, beam_args=args.beam_arg)))
    return
  work = Path(args.work or tempfile.mkdtemp(prefix="example_gen_cost-"))
  spec = load_spec("synthetic")
  started = time.time()
  small = write_rows(spec, args.rows, work / "small", list(CASES))
  larges = [write_rows(spec, n, work / f"csv-{n}", ["csv"]) for n in args.large_rows]
  sizes = ", ".join(f"{large['rows']:,}" for large in larges)
  print(
    f"wrote {small['rows']:,} rows (and CSV of {sizes}) "
    f"under {work} in {time.time() - started:.0f} s",
    flush=True,
  )
  results = []
  for case in CASES:
    results.append(
      {**measure(case, small["dirs"][case], work, args.beam_arg), "rows": small["rows"]}
    )
  for large in larges:
    result = measure("csv", large["dirs"]["csv"], work, args.beam_arg)
    results.append({**result, "case": f"csv {large['rows']:,}", "rows": large["rows"]})
  write = small["cost"]["tfrecords"]
  print(
    f"\n{'case':<14} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'CPU s':>7} {'rows/CPU s':>10} "
    f"{'RSS before Do':>14} {'peak RSS':>9} {'growth':>8} {'load':>10}"
  )
  print(
    f"{'(TFRecords)':<14} {small['rows']:>10,} {write['seconds']:>8.1f} "
    f"{small['rows'] / write['seconds']:>9,.0f} {write['cpu_seconds']:>7.1f} "
    f"{small['rows'] / write['cpu_seconds']:>10,.0f}   (prepare-data's writing, in the parent)"
  )
  for r in results:
    n = r["rows"]
    print(
      f"{r['case']:<14} {n:>10,} {r['seconds']:>8.1f} {n / r['seconds']:>9,.0f} "
      f"{r['cpu_seconds']:>7.1f} {n / max(r['cpu_seconds'], 1e-9):>10,.0f} "
      f"{r['rss_before_mb']:>11.0f} MB {r['peak_rss_mb']:>6.0f} MB "
      f"{r['peak_rss_mb'] - r['rss_before_mb']:>5.0f} MB "
      f"{r['load_before']:>4.1f}-{r['load_after']:.1f}"
    )
  by = {r["case"]: r for r in results}
  copy = by["copy"]
  for case in ("csv", "parquet"):
    bare = [by[case][k] / copy[k] for k in ("seconds", "cpu_seconds")]
    end = [by[case][k] / (copy[k] + write[k]) for k in ("seconds", "cpu_seconds")]
    print(
      f"{case} / copy: bare (Do / copy's Do) {bare[0]:.0f}x wall, {bare[1]:.0f}x CPU; "
      f"end to end (Do / (TFRecord writing + copy's Do)) {end[0]:.2f}x wall, {end[1]:.2f}x CPU; "
      f"peak RSS {by[case]['peak_rss_mb'] / copy['peak_rss_mb']:.2f}x"
    )
  base = by["csv"]
  for large in larges:
    r = by[f"csv {large['rows']:,}"]
    print(
      f"csv {large['rows']:,} / {small['rows']:,} rows: wall {r['seconds'] / base['seconds']:.2f}x, "
      f"CPU {r['cpu_seconds'] / base['cpu_seconds']:.2f}x, peak RSS "
      f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x (growth during Do: "
      f"{base['peak_rss_mb'] - base['rss_before_mb']:.0f} MB -> "
      f"{r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB)"
    )


if __name__ == "__main__":
  main()
