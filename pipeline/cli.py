"""The `mtlrank` command line: a thin layer over the pipeline, data and serving rooms."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import warnings
from pathlib import Path
from typing import List, Mapping, Tuple

from models.spec import SpecError, load_spec
from pipeline import config, report_cli
from pipeline.data.errors import DataError
from pipeline.draft import cli as draft_cli
from pipeline.schedule import cli as schedule_cli
from pipeline.schedule import dates
from serving import cli as serving_cli


def _paths(args: argparse.Namespace, spec_name: str) -> config.PipelinePaths:
  paths = config.PipelinePaths.for_spec(spec_name, Path(args.home))
  return config.PipelinePaths(
    data_dir=Path(args.data_dir).resolve() if args.data_dir else paths.data_dir,
    pipeline_root=Path(args.pipeline_root).resolve() if args.pipeline_root else paths.pipeline_root,
    serving_dir=Path(args.serving_dir).resolve() if args.serving_dir else paths.serving_dir,
  )


def _add_location_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--spec",
    required=True,
    help="a spec YAML file or a bundled spec name (census, synthetic, ali_ccp_sample, aliexpress_sample)",
  )
  parser.add_argument(
    "--home",
    default=str(config.DEFAULT_HOME),
    help="working directory for data, pipelines and pushed models (default: %(default)s)",
  )
  parser.add_argument("--data-dir", help="span directory (default: HOME/data/SPEC)")
  parser.add_argument("--pipeline-root", help="TFX pipeline root (default: HOME/pipelines/SPEC)")
  parser.add_argument(
    "--serving-dir",
    help="pushed models go to SERVING_DIR/<spec name>/<version> (default: HOME/serving)",
  )


def _run(args: argparse.Namespace) -> int:
  from pipeline import runner

  spec = load_spec(args.spec)
  paths = _paths(args, spec.name)
  span = args.span
  if args.beam != "portable" and (args.beam_job_endpoint or args.beam_worker_pool):
    print(
      "mtlrank run: --beam-job-endpoint and --beam-worker-pool need --beam portable",
      file=sys.stderr,
    )
    return 2
  if args.date is not None:
    try:
      span = dates.span_for_date(spec, args.date)
    except ValueError as e:
      print(f"mtlrank run: --date {args.date}: {e}", file=sys.stderr)
      return 2
    print(f"[mtlrank] {args.date} is span {span}", flush=True)
  try:
    summary = runner.run(
      spec,
      paths,
      span=span,
      enable_cache=not args.no_cache,
      verbose=args.verbose,
      wait=args.wait,
      beam=_beam_options(args),
    )
  except runner.RunError as e:
    print(f"mtlrank run: {e}", file=sys.stderr)
    return 1
  print(summary.render())
  if args.summary_json:
    Path(args.summary_json).write_text(summary.to_json())
    print(f"summary: {args.summary_json}")
  if args.report:
    # In this process: TensorFlow and TFMA are already imported by the run.
    return report_cli.render(paths.pipeline_root, Path(args.report), spec)
  return 0


def _beam_options(args: argparse.Namespace):
  from pipeline import runner

  return runner.BeamOptions(
    mode=args.beam,
    args=tuple(args.beam_arg or ()),
    job_endpoint=args.beam_job_endpoint,
    worker_pool=args.beam_worker_pool,
    workers=args.beam_workers,
  )


def _add_beam_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--beam",
    choices=("in_memory", "portable"),
    default="in_memory",
    help="in_memory: Beam's FnApiRunner in this process (default); portable: "
    "PortableRunner through a job server and a worker pool on loopback (docs/pipeline.md)",
  )
  parser.add_argument(
    "--beam-arg",
    action="append",
    metavar="FLAG",
    help="a Beam pipeline argument, after the spec's beam.args (repeat it; a later flag wins), "
    "e.g. --beam-arg=--direct_num_workers=2",
  )
  parser.add_argument(
    "--beam-job-endpoint",
    metavar="HOST:PORT",
    help="with --beam portable: use this job server instead of starting one",
  )
  parser.add_argument(
    "--beam-workers",
    choices=("threads", "processes"),
    default="threads",
    help="with --beam portable, the started worker pool's SDK workers: threads of one "
    "pool process (default: imports TensorFlow once) or one process per job (Beam's worker_pool_main)",
  )
  parser.add_argument(
    "--beam-worker-pool",
    metavar="HOST:PORT",
    help="with --beam portable: use this worker pool instead of starting one",
  )


def _backfill(args: argparse.Namespace) -> int:
  """Runs the dates from --from to --to in order, as that many `run --date`;
  stops at the first failure."""
  spec = load_spec(args.spec)
  try:
    spans = [(day, dates.span_for_date(spec, day)) for day in dates.days(args.first, args.last)]
  except ValueError as e:
    print(f"mtlrank backfill: {e}", file=sys.stderr)
    return 2
  for day, span in spans:
    print(f"[mtlrank] backfill {day} (span {span})", flush=True)
    code = _run(
      argparse.Namespace(**{**vars(args), "date": None, "span": span, "summary_json": None})
    )
    if code != 0:
      print(f"mtlrank backfill: stopped at {day}", file=sys.stderr)
      return code
  return 0


def _iso_date(text: str) -> datetime.date:
  try:
    return datetime.date.fromisoformat(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a date as YYYY-MM-DD, got {text!r}") from None


def _prepare_data(args: argparse.Namespace) -> int:
  from pipeline import runner
  from pipeline.data import prepare_data

  spec = load_spec(args.spec)
  paths = _paths(args, spec.name)
  prepare_data(spec, paths.data_dir)
  print(
    f"data for {spec.name!r} in {paths.data_dir}: spans {runner.available_spans(paths.data_dir)}"
  )
  return 0


def _span_number(text: str) -> int:
  """`--span`: spans are numbered from 1, as TFX's {SPAN} placeholder."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"spans are numbered from 1, got {value}")
  return value


def _spec_columns(spec_arg: str) -> Tuple[str, Mapping[str, str]]:
  """`mtlrank predict --spec`: the served model's default name and raw columns."""
  try:
    spec = load_spec(spec_arg)
  except SpecError as e:
    raise ValueError(f"invalid spec: {e}") from None
  return spec.name, spec.raw_columns


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="mtlrank", description="Multi-task ranking pipeline on TensorFlow Extended."
  )
  commands = parser.add_subparsers(dest="command", required=True)

  run = commands.add_parser("run", help="run the pipeline end to end for a spec")
  _add_location_flags(run)
  when = run.add_mutually_exclusive_group()
  when.add_argument("--span", type=_span_number, help="train up to this span (default: the latest)")
  when.add_argument(
    "--date",
    type=_iso_date,
    help="the run of this day (YYYY-MM-DD): its span by the files' date placeholders, "
    "or days since the spec's schedule.start_date",
  )
  run.add_argument("--summary-json", help="also write the run summary as JSON here")
  run.add_argument("--no-cache", action="store_true", help="rerun every component")
  run.add_argument(
    "--wait",
    action="store_true",
    help="if another run holds this pipeline root, wait for it (default: stop at once)",
  )
  run.add_argument(
    "--verbose",
    action="store_true",
    help="also show TFX's and the libraries' log on the console (default: the run log only)",
  )
  run.add_argument(
    "--report", metavar="FILE", help="also render the run's HTML report here (as `mtlrank report`)"
  )
  _add_beam_flags(run)
  run.set_defaults(func=_run)

  backfill = commands.add_parser(
    "backfill", help="run the pipeline for every date from --from to --to, in order"
  )
  _add_location_flags(backfill)
  backfill.add_argument("--from", dest="first", type=_iso_date, required=True)
  backfill.add_argument("--to", dest="last", type=_iso_date, required=True)
  backfill.add_argument("--no-cache", action="store_true", help="rerun every component")
  backfill.add_argument("--wait", action="store_true", help="wait for a run holding the root")
  backfill.add_argument("--verbose", action="store_true", help="also show the libraries' log")
  _add_beam_flags(backfill)
  backfill.set_defaults(func=_backfill, report=None, summary_json=None)

  prepare = commands.add_parser("prepare-data", help="write the spec's bundled data as spans")
  _add_location_flags(prepare)
  prepare.set_defaults(func=_prepare_data)
  draft_cli.register(commands)
  report_cli.register(commands)
  schedule_cli.register(commands)
  serving_cli.register(commands, spec_columns=_spec_columns)
  return parser


def main(argv: List[str] | None = None) -> int:
  # google-cloud packages pulled in by TFX warn that Python 3.10 is old; TFX 1.16 pins it.
  warnings.filterwarnings(
    "ignore", message="You are using a non-supported Python version", category=FutureWarning
  )
  args = build_parser().parse_args(argv)
  if not getattr(args, "verbose", False):
    # TensorFlow's C++ INFO/WARNING lines; read when TensorFlow loads.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    return args.func(args)
  except SpecError as e:
    print(f"mtlrank: invalid spec: {e}", file=sys.stderr)
    return 2
  except DataError as e:
    print(f"mtlrank: bad input data: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
