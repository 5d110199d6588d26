"""A Beam worker pool whose SDK workers are threads of this one process.

Beam's `worker_pool_main` starts one `python` process per job's SDK worker:
each imports Beam, TensorFlow, TFX, TFT and TFMA again (about a minute per job
on the shared two-core machine, benchmarks/beam_portable_overhead.py). This
pool, the same `BeamFnExternalWorkerPoolServicer` with `use_process=False`,
imports them once and serves every job of a run; it is still a process apart
from the pipeline's and the job server's (`pipeline/beam_portable.py`,
`--beam-workers threads`, the default).

    python -m pipeline.beam_thread_pool --service_port PORT
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import List

import contract  # noqa: F401  (tf-keras before TensorFlow is touched)


def main(argv: List[str] | None = None) -> None:
  from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--service_port", type=int, required=True)
  args = parser.parse_args(argv)
  address, server = BeamFnExternalWorkerPoolServicer.start(
    use_process=False, port=args.service_port
  )
  logging.basicConfig(level=logging.INFO)
  logging.info("Beam worker pool (threads) at %s", address)
  try:
    while True:
      time.sleep(3600)
  finally:
    server.stop(0)


if __name__ == "__main__":
  main()
