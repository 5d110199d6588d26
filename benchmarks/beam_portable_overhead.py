"""What Beam's PortableRunner costs against the in-memory FnApiRunner, within one run.

`mtlrank run --beam portable` pays once for starting a job server and a worker
pool (pipeline/beam_portable.py) and, per Beam job, for submitting it and
starting an SDK worker process. This runs the same small job (Create, a Map, a
GroupByKey, a CombinePerKey over `--elements` numbers) `--jobs` times on each
runner, alternating, for each worker pool (`--workers`: SDK workers as threads
of one pool process, or one process per job), and prints the startup seconds,
each runner's median job seconds, the per-job ratio and the load average (the
machine is shared).

    uv run python -m benchmarks.beam_portable_overhead --jobs 3 --elements 20000 --workers threads processes
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import List

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import beam_portable, config


def _job(args: List[str], elements: int) -> float:
  started = time.perf_counter()
  with beam.Pipeline(options=PipelineOptions(args)) as p:
    _ = (
      p
      | "Numbers" >> beam.Create(range(elements))
      | "Key" >> beam.Map(lambda x: (x % 97, x * x))
      | "Sum" >> beam.CombinePerKey(sum)
      | "Count" >> beam.combiners.Count.Globally()
    )
  return time.perf_counter() - started


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--jobs", type=int, default=3)
  parser.add_argument("--elements", type=int, default=20000)
  parser.add_argument(
    "--workers", nargs="+", default=["threads", "processes"], choices=["threads", "processes"]
  )
  args = parser.parse_args()
  for workers in args.workers:
    _measure(workers, args.jobs, args.elements)


def _measure(workers: str, jobs: int, elements: int) -> None:
  print(f"--- worker pool: {workers}; load average before: {os.getloadavg()}")
  with tempfile.TemporaryDirectory() as logs:
    started = time.perf_counter()
    with beam_portable.PortableBeam(Path(logs), workers=workers) as portable:
      startup = time.perf_counter() - started
      portable_args = [
        "--runner=PortableRunner",
        f"--job_endpoint={portable.job_endpoint}",
        "--environment_type=EXTERNAL",
        f"--environment_config={portable.worker_pool}",
        "--sdk_worker_parallelism=1",
        "--experiments=disable_logging_submission_environment",
      ]
      in_memory, through_portable = [], []
      for _ in range(jobs):
        in_memory.append(_job(list(config.BEAM_PIPELINE_ARGS), elements))
        through_portable.append(_job(portable_args, elements))
      seen = portable.jobs()
  memory_median, portable_median = statistics.median(in_memory), statistics.median(through_portable)
  print(f"job server + worker pool startup: {startup:.1f} s")
  print(
    f"in-memory job (s):  {', '.join(f'{s:.1f}' for s in in_memory)}  median {memory_median:.1f}"
  )
  print(
    f"portable job (s):   {', '.join(f'{s:.1f}' for s in through_portable)}  median {portable_median:.1f}"
  )
  print(f"portable / in-memory, per job: {portable_median / memory_median:.1f}x")
  print(f"job server saw {len(seen)} job(s), states {sorted({j['state'] for j in seen})}")
  print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
  main()
