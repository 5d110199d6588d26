"""`mtlrank report`: the HTML report of the latest run under a pipeline root."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.spec import RankingSpec, load_spec


def render(pipeline_root: Path, out: Path, spec: RankingSpec | None = None) -> int:
  """Writes the report of the latest run under `pipeline_root` to `out` and prints
  its path; the exit code (1 with the reason on stderr if it cannot be rendered)."""
  from pipeline import report

  try:
    written = report.write_report(pipeline_root, out, spec)
  except (FileNotFoundError, RuntimeError, ValueError) as e:
    print(f"mtlrank report: {e}", file=sys.stderr)
    return 1
  print(f"report: {written}")
  return 0


def _report(args: argparse.Namespace) -> int:
  return render(
    Path(args.pipeline_root),
    Path(args.out),
    load_spec(args.spec) if args.spec else None,
  )


def register(subparsers: argparse._SubParsersAction) -> None:  # pylint: disable=protected-access
  """Adds the `report` subcommand to the `mtlrank` parser."""
  parser = subparsers.add_parser(
    "report", help="render an HTML report of the latest run under a pipeline root"
  )
  parser.add_argument(
    "--pipeline-root",
    required=True,
    help="the TFX pipeline root of the run (holds metadata.sqlite)",
  )
  parser.add_argument("--out", required=True, help="the HTML file to write")
  parser.add_argument(
    "--spec",
    help="a spec YAML file or bundled spec name (default: the spec the run's Trainer was given)",
  )
  parser.set_defaults(func=_report)
