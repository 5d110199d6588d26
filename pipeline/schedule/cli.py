"""`mtlrank schedule airflow|kubeflow`: hand the pipeline to an orchestrator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.spec import load_spec
from pipeline import config


def _airflow(args: argparse.Namespace) -> int:
  from pipeline.schedule import airflow

  spec = load_spec(args.spec)
  path = airflow.write_dag(
    spec,
    Path(args.home),
    Path(args.out),
    data_dir=args.data_dir,
    pipeline_root=args.pipeline_root,
    serving_dir=args.serving_dir,
  )
  s = spec.schedule
  print(
    f"DAG {airflow.dag_id(spec)!r} ({s.interval} from {s.start_date}, {s.retries} retries, "
    f"catchup {'on' if s.catchup else 'off'}): {path}"
  )
  return 0


def _kubeflow(args: argparse.Namespace) -> int:
  try:
    import kfp.pipeline_spec.pipeline_spec_pb2  # noqa: F401
  except ImportError:
    print(
      "mtlrank schedule kubeflow: needs the `kubeflow` extra "
      "(uv sync --extra kubeflow: kfp-pipeline-spec)",
      file=sys.stderr,
    )
    return 2
  from pipeline.schedule import kubeflow

  spec = load_spec(args.spec)
  paths = kubeflow.uri_paths(spec, args.home, args.data_dir, args.pipeline_root, args.serving_dir)
  if spec.data.num_spans > 1:
    print(
      f"mtlrank schedule kubeflow: note: each run trains on the span it ingests; "
      f"data.num_spans={spec.data.num_spans} is the local runner's window only "
      "(Kubeflow's compiler has no multi-span resolver)",
      file=sys.stderr,
    )
  out = kubeflow.compile_pipeline(
    spec, paths, args.image, Path(args.out), write_schema=not args.no_schema
  )
  print(f"pipeline {spec.name!r} for image {args.image}: {out}")
  if not args.no_schema:
    print(f"schema: {paths.curated_schema_path}")
  return 0


def _locations(parser: argparse.ArgumentParser, uris: bool) -> None:
  what = "path or URI" if uris else "path"
  parser.add_argument(
    "--spec", required=True, help="a spec YAML file or a bundled spec name (census, synthetic)"
  )
  parser.add_argument(
    "--home",
    default=str(config.DEFAULT_HOME),
    help=f"working directory ({what}) for data, pipelines and pushed models (default: %(default)s)",
  )
  parser.add_argument("--data-dir", help=f"span directory {what} (default: HOME/data/SPEC)")
  parser.add_argument(
    "--pipeline-root", help=f"TFX pipeline root {what} (default: HOME/pipelines/SPEC)"
  )
  parser.add_argument(
    "--serving-dir",
    help=f"pushed models go to SERVING_DIR/<spec name>/<version> ({what}; default: HOME/serving)",
  )


def register(subparsers: argparse._SubParsersAction) -> None:  # pylint: disable=protected-access
  """Adds `schedule airflow|kubeflow` to the `mtlrank` parser."""
  schedule = subparsers.add_parser(
    "schedule", help="write an Airflow DAG or compile a Kubeflow/Vertex pipeline for a spec"
  )
  targets = schedule.add_subparsers(dest="target", required=True)

  airflow = targets.add_parser(
    "airflow", help="write a DAG file running the pipeline on the spec's schedule"
  )
  _locations(airflow, uris=False)
  airflow.add_argument("--out", required=True, help="the DAG folder to write <dag id>.py to")
  airflow.set_defaults(func=_airflow)

  kubeflow = targets.add_parser(
    "kubeflow", help="compile the pipeline for Kubeflow Pipelines v2 / Vertex AI (PipelineJob JSON)"
  )
  _locations(kubeflow, uris=True)
  kubeflow.add_argument(
    "--image", required=True, help="the container image: this repository installed over TFX 1.16"
  )
  kubeflow.add_argument("--out", required=True, help="the PipelineJob JSON file to write")
  kubeflow.add_argument(
    "--no-schema",
    action="store_true",
    help="do not write the spec's schema to PIPELINE_ROOT/curated_schema (default: write it)",
  )
  kubeflow.set_defaults(func=_kubeflow)
