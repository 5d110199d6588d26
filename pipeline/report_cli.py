"""`mtlrank report`: the HTML report of the latest run under a pipeline root."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
  from models.spec import load_spec
  from pipeline import report

  spec = load_spec(args.spec) if args.spec else None
  try:
    out = report.write_report(Path(args.pipeline_root), Path(args.out), spec,
                              Path(args.esmm_results) if args.esmm_results else None)
  except (FileNotFoundError, RuntimeError, ValueError) as e:
    print(f"mtlrank report: {e}", file=sys.stderr)
    return 1
  print(f"report: {out}")
  return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # pylint: disable=protected-access
  """Adds the `report` subcommand to the `mtlrank` parser."""
  parser = subparsers.add_parser(
      "report", help="render an HTML report of the latest run under a pipeline root")
  parser.add_argument("--pipeline-root", required=True,
                      help="the TFX pipeline root of the run (holds metadata.sqlite)")
  parser.add_argument("--out", required=True, help="the HTML file to write")
  parser.add_argument("--spec", help="a spec YAML file or bundled spec name (default: the "
                                     "spec the run's Trainer was given)")
  parser.add_argument("--esmm-results", help="the JSON file of benchmarks/esmm_experiment.py "
                                             "--out: adds the 'ESMM experiment' section")
  parser.set_defaults(func=_report)
