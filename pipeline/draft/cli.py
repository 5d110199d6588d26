"""`mtlrank init`: drafts a spec from the user's files, prints each decision
and its reason, and writes the YAML (`mtlrank run --spec` runs it as it is)."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import List

import yaml


def _names(text: str) -> List[str]:
  names = [n.strip() for n in text.split(",") if n.strip()]
  if not names:
    raise argparse.ArgumentTypeError("give at least one name, comma-separated")
  return names


def _init(args: argparse.Namespace) -> int:
  from pipeline.draft import compose, layout, render, sample

  try:
    drafted = compose.draft_spec(
      args.data,
      args.labels,
      columns=args.columns or (),
      file_format=args.format,
      name=args.name,
      sample_rows=args.sample_rows,
      num_spans=args.num_spans,
    )
  except (compose.DraftError, layout.LayoutError, sample.SampleError) as e:
    print(f"mtlrank init: {e}", file=sys.stderr)
    return 2
  out = Path(args.out or f"{drafted.raw['name']}.yaml")
  command = (
    " ".join(["mtlrank init", *sys.argv[2:]]) if sys.argv[1:2] == ["init"] else "mtlrank init"
  )
  header = [
    f"Drafted by `{command}`",
    f"on {datetime.date.today()} from {drafted.sample.rows} rows sampled from "
    f"{len(drafted.layout.files)} file(s). Each choice's reason is the comment above it;",
    "review them, then run: mtlrank run --spec " + str(out),
  ]
  text = render.render(drafted.raw, drafted.draft, header)
  if yaml.safe_load(text) != drafted.raw:
    raise AssertionError("the rendered YAML does not load back to the drafted spec")
  if out.exists() and not args.force:
    print(f"mtlrank init: {out} exists (--force overwrites it)", file=sys.stderr)
    return 2
  for decision in drafted.draft.decisions:
    print(f"[init] {decision.line()}")
  out.write_text(text)
  print(f"spec: {out}")
  print(f"next: mtlrank run --spec {out}")
  return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # pylint: disable=protected-access
  """Adds the `init` subcommand to the `mtlrank` parser."""
  parser = subparsers.add_parser(
    "init", help="draft a spec from your CSV, Parquet or TFRecord files (prints why)"
  )
  parser.add_argument(
    "--data",
    required=True,
    help="a file, a directory, a glob or a TFX pattern ({SPAN}, {YYYY}{MM}{DD}) of your logs",
  )
  parser.add_argument(
    "--labels", required=True, type=_names, help="the label columns, comma-separated"
  )
  parser.add_argument("--out", help="the spec file to write (default: NAME.yaml)")
  parser.add_argument(
    "--columns", type=_names, help="a headerless CSV's field names, in order, comma-separated"
  )
  parser.add_argument(
    "--format", choices=("csv", "parquet", "tfrecord"), help="default: by the files' suffix"
  )
  parser.add_argument("--name", help="the spec's name (default: the data directory's name)")
  parser.add_argument(
    "--num-spans", type=int, help="spans to train on (default: all found, at most 7)"
  )
  parser.add_argument(
    "--sample-rows", type=int, default=10_000, help="rows to sample (default: %(default)s)"
  )
  parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
  parser.set_defaults(func=_init)
