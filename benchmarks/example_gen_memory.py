"""Whether the files source's CSV ExampleGen (`ArrowFileExecutor`) holds the
span in memory: its `Do` on one simulated synthetic span of each size
(default 100,000, 300,000 and 1,000,000 rows, one CSV file with a header,
hash split on `request_id`), each in a fresh process, with the largest
resident memory sampled during `Do` minus the resident memory just before it.
A streaming executor's growth stays flat as the span grows.

    uv run --frozen python -m benchmarks.example_gen_memory [--rows 100000 300000 1000000] [--work DIR]

The cases run through `benchmarks.example_gen_cost` (its data writing and
its measuring child process). Figures: docs/files.md ("What ingestion costs").
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.example_gen_cost import measure, write_rows
from models.spec import load_spec


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
  parser.add_argument("--work", default="", help="a directory for the data (default: a temp dir)")
  args = parser.parse_args()
  work = Path(args.work or tempfile.mkdtemp(prefix="example_gen_memory-"))
  spec = load_spec("synthetic")
  results = []
  for n in args.rows:
    written = write_rows(spec, n, work / f"csv-{n}", ["csv"])
    r = measure("csv", written["dirs"]["csv"], work)
    results.append(r)
    print(
      f"{n:>10,} rows: {r['cpu_seconds']:.1f} CPU s, {r['seconds']:.1f} s, "
      f"growth during Do {r['growth_mb']:.0f} MB, peak RSS {r['peak_rss_mb']:.0f} MB "
      f"(before Do {r['rss_before_mb']:.0f} MB), load {r['load_before']:.1f}-{r['load_after']:.1f}",
      flush=True,
    )
  first, last = results[0], results[-1]
  print(
    f"{args.rows[-1] / args.rows[0]:.0f}x the rows: growth {first['growth_mb']:.0f} -> "
    f"{last['growth_mb']:.0f} MB; executor {last['executor']}"
  )


if __name__ == "__main__":
  main()
