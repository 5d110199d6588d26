"""ExampleGen's cost: the files source's executor (`ArrowFileExecutor`,
what `pipeline.data.files` builds for CSV and Parquet) against the copying ExampleGen of
the bundled sources, in one run.

The synthetic spec's simulator draws one span of `--rows` rows (300,000: the
spec's three spans of 100,000) and writes the same rows twice: the GZIP
TFRecords of train and eval the copying ExampleGen (`components/example_gen.py`)
ingests, and one CSV file with a header, which the files source reads with a
hash split on `request_id` (`pipeline.data.files`: the executor, input,
output and custom configs the pipeline uses). `--large-rows` sizes (default
1,000,000) are written and measured both ways too; `--cases` adds `parquet`
(the same `ArrowFileExecutor` reading one Parquet file by record batches) at
the first size.

Each case runs the executor's `Do` in a fresh Python process (the pipeline's
Beam arguments: the in-memory FnApiRunner), which reports its wall time, its
CPU seconds (user + system: what the shared machine's load does not inflate)
and two memory figures: the process's peak resident memory (`getrusage`
high-water mark, the Beam workers included: they are threads of that
process), and the largest resident memory sampled every 20 ms during `Do`
minus the resident memory just before it (`growth`: what the import's
high-water mark does not hide). The copy path's full cost is the adapter's
TFRecord writing in prepare-data (timed here in the parent, after
TensorFlow's import) plus the copy: each files case is printed against the
copy's `Do` alone (bare) and against the writing plus the copy (end to end),
at each size. The machine is shared: the 1-minute load average is printed with
each case, and the ratios are within this one run.

    uv run --frozen python -m benchmarks.example_gen_cost [--rows 300000] [--large-rows 1000000]

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
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from models.spec import DataSpec, RankingSpec, SplitSpec, load_spec

SPLIT_COLUMN = "request_id"
CASES = ("copy", "csv")
SAMPLE_SECONDS = 0.02


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


def _rss_mb() -> float:
  """The process's resident memory now (Linux /proc)."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _RssSampler(threading.Thread):
  """The largest resident memory seen every SAMPLE_SECONDS until stopped."""

  def __init__(self):
    super().__init__(daemon=True)
    self.peak, self._done = _rss_mb(), threading.Event()

  def run(self):
    while not self._done.wait(SAMPLE_SECONDS):
      self.peak = max(self.peak, _rss_mb())

  def stop(self) -> float:
    self._done.set()
    self.join()
    return max(self.peak, _rss_mb())


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def run_case(case: str, source: str, output: str, beam_args: List[str] = ()) -> Dict[str, Any]:
  """Runs one ExampleGen executor's Do in this process; time and peak memory."""
  from tfx.dsl.components.base import base_beam_executor
  from tfx.proto import example_gen_pb2
  from tfx.types import standard_artifacts, standard_component_specs
  from tfx.utils import proto_utils

  from components import example_gen
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
    fspec = files_spec(spec, Path(source), case)
    # The executor the pipeline's ExampleGen for this spec runs.
    executor_class = files.example_gen(fspec).executor_spec.executor_class
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
    beam_pipeline_args=config.with_local_workers([*config.BEAM_PIPELINE_ARGS, *beam_args]),
    tmp_dir=output + "-tmp",
  )
  executor = executor_class(context) if case != "copy" else executor_class()
  before, cpu, rss = _peak_rss_mb(), _cpu_seconds(), _rss_mb()
  sampler = _RssSampler()
  sampler.start()
  started = time.perf_counter()
  executor.Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, props)
  seconds = time.perf_counter() - started
  peak_during = sampler.stop()
  return {
    "case": case,
    "executor": f"{executor_class.__module__}.{executor_class.__name__}",
    "seconds": seconds,
    "cpu_seconds": _cpu_seconds() - cpu,
    "rss_before_mb": before,
    "peak_rss_mb": _peak_rss_mb(),
    "growth_mb": peak_during - rss,
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
  parser.add_argument("--rows", type=int, default=300_000)
  parser.add_argument(
    "--large-rows", type=int, nargs="*", default=[1_000_000], help="more sizes, copy and CSV"
  )
  parser.add_argument(
    "--cases", nargs="+", default=list(CASES), help="at --rows: copy, csv, parquet"
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
  sizes = [(args.rows, args.cases)] + [(n, ["copy", "csv"]) for n in args.large_rows]
  written = [write_rows(spec, n, work / f"rows-{n}", cases) for n, cases in sizes]
  counts = ", ".join(f"{w['rows']:,}" for w in written)
  print(
    f"wrote {counts} rows under {work} in {time.time() - started:.0f} s",
    flush=True,
  )
  results = []
  for w, (_, cases) in zip(written, sizes):
    for case in cases:
      result = measure(case, w["dirs"][case], work, args.beam_arg)
      results.append({**result, "rows": w["rows"]})
  by = {(r["case"], r["rows"]): r for r in results}
  for r in results:
    if r["case"] != "copy":
      print(f"{r['case']}: {r['executor']}")
  print(
    f"\n{'case':<12} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'CPU s':>7} {'rows/CPU s':>10} "
    f"{'RSS before Do':>14} {'peak RSS':>9} {'growth':>8} {'load':>10}"
  )
  for w in written:
    write = w["cost"]["tfrecords"]
    print(
      f"{'(TFRecords)':<12} {w['rows']:>10,} {write['seconds']:>8.1f} "
      f"{w['rows'] / write['seconds']:>9,.0f} {write['cpu_seconds']:>7.1f} "
      f"{w['rows'] / write['cpu_seconds']:>10,.0f}   (prepare-data's writing, in the parent)"
    )
    for r in (r for r in results if r["rows"] == w["rows"]):
      n = r["rows"]
      print(
        f"{r['case']:<12} {n:>10,} {r['seconds']:>8.1f} {n / r['seconds']:>9,.0f} "
        f"{r['cpu_seconds']:>7.1f} {n / max(r['cpu_seconds'], 1e-9):>10,.0f} "
        f"{r['rss_before_mb']:>11.0f} MB {r['peak_rss_mb']:>6.0f} MB "
        f"{r['growth_mb']:>5.0f} MB "
        f"{r['load_before']:>4.1f}-{r['load_after']:.1f}"
      )
  print()
  for w in written:
    n, write = w["rows"], w["cost"]["tfrecords"]
    copy = by[("copy", n)]
    for r in (r for r in results if r["rows"] == n and r["case"] != "copy"):
      bare = [r[k] / max(copy[k], 1e-9) for k in ("seconds", "cpu_seconds")]
      end = [r[k] / (copy[k] + write[k]) for k in ("seconds", "cpu_seconds")]
      print(
        f"{r['case']} / copy at {n:,} rows: end to end (Do / (TFRecord writing + copy's Do)) "
        f"{end[0]:.2f}x wall, {end[1]:.2f}x CPU; bare (Do / copy's Do) {bare[0]:.0f}x wall, "
        f"{bare[1]:.0f}x CPU; growth during Do {r['growth_mb']:.0f} MB "
        f"(copy {copy['growth_mb']:.0f} MB)"
      )


if __name__ == "__main__":
  main()
