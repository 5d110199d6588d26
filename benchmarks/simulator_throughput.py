"""Simulator throughput: generates and writes rows for a spec and prints rows/s.

python -m benchmarks.simulator_throughput --rows 1000000
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import List

from pipeline.data.simulator import simulate


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m benchmarks.simulator_throughput",
    description="Simulate impression logs for a spec and print the throughput.",
  )
  parser.add_argument("--spec", default="synthetic", help="spec name or YAML path")
  parser.add_argument(
    "--rows", type=int, default=None, help="total rows to write (overrides requests_per_span)"
  )
  parser.add_argument(
    "--spans", type=int, default=None, help="number of spans (default: the spec's; 1 with --rows)"
  )
  parser.add_argument(
    "--out", default=None, help="output directory (default: a temporary one, deleted after)"
  )
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)

  from models.spec import load_spec  # pylint: disable=g-import-not-at-top

  spec = load_spec(args.spec)
  params = dict(spec.data.params)
  num_spans = args.spans or (1 if args.rows else spec.data.num_spans)
  params["num_spans"] = num_spans
  if args.rows:
    params["requests_per_span"] = max(1, math.ceil(args.rows / (num_spans * params["slate_size"])))
  spec = spec.replace(data={"params": params, "num_spans": num_spans})
  out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mtlrank-sim-"))
  try:
    summary = simulate(spec, out, overwrite=args.overwrite)
  finally:
    if not args.out:
      shutil.rmtree(out, ignore_errors=True)
  total = sum(summary["rows"].values())
  rate = summary["rows_per_second"]
  print(
    f"simulator: {total:,} rows in {summary['seconds']:.1f} s"
    + (f" = {rate:,.0f} rows/s (generate + encode + write)" if rate else " (all skipped)")
    + f"; CTR {100 * summary['ctr']:.2f} %, CVR|click {100 * summary['cvr_given_click']:.2f} %"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
