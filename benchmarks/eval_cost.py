"""Where the Evaluator's time goes: TFMA on a finished run's eval split, A/B in one process.

Takes the latest Evaluator execution recorded under a pipeline root (its eval
split and candidate model, copied to a work directory), and runs TFMA the way
TFX's Evaluator does (tfx_bsl's TFExampleRecord into
`tfma.ExtractEvaluateAndWriteResults`, on the Beam runner of
`pipeline.config.BEAM_PIPELINE_ARGS`) once per variant of the EvalConfig
derived from the spec (`pipeline.eval_config.eval_config_from_spec`, no
gates, no baseline model):

  spec          the config the pipeline uses
  auc_1000      AUC and PR-AUC on 1,000 thresholds instead of TFMA's 10,000
  plot_100      the calibration plot with 100 buckets instead of 1,000
  no_plot       no calibration plot (ECE keeps the calibration histogram)
  overall_only  the overall slice only (no spec slices): the slices' share
  count_only    ExampleCount only, overall slice: reading + inference + Beam
  two_workers   the spec's config on 2 in-memory FnApiRunner workers (threads)

Each variant's metric values are compared with the first variant's on every
task and slice they share (max |difference| per metric), so a cheaper variant
can be adopted only if it changes nothing that matters. The wall time of each
variant is printed with the 1-minute load average before and after it; the
machine is shared, so read the ratios to the `spec` variant, and repeat the
list (`--rounds 2`) to see the drift.

    uv run --frozen python -m benchmarks.eval_cost \\
        --pipeline-root /work/main/.mtlrank/pipelines/census --spec census \\
        --variants spec auc_1000 plot_100 no_plot overall_only count_only two_workers spec

Figures and the profile: docs/evaluation.md ("Where the Evaluator's time goes").
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import apache_beam as beam
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions
from ml_metadata.proto import metadata_store_pb2
from tfx_bsl.public import tfxio

from contract import EVAL_SPLIT
from models.spec import RankingSpec, load_spec
from pipeline import config, eval_config, results

COMPARED = (
  "auc",
  "auc_precision_recall",
  "binary_crossentropy",
  "calibration",
  "expected_calibration_error",
  "mean_squared_error",
  "example_count",
)


def _set_metric_config(
  cfg: tfma.EvalConfig, class_names: Tuple[str, ...], values: Dict[str, object]
) -> tfma.EvalConfig:
  for metrics_spec in cfg.metrics_specs:
    for metric in metrics_spec.metrics:
      if metric.class_name in class_names:
        metric.config = json.dumps({**json.loads(metric.config or "{}"), **values})
  return cfg


def _drop_metrics(cfg: tfma.EvalConfig, keep: Callable[[str], bool]) -> tfma.EvalConfig:
  for metrics_spec in cfg.metrics_specs:
    kept = [m for m in metrics_spec.metrics if keep(m.class_name)]
    del metrics_spec.metrics[:]
    metrics_spec.metrics.extend(kept)
  return cfg


def _overall_only(cfg: tfma.EvalConfig) -> tfma.EvalConfig:
  del cfg.slicing_specs[:]
  cfg.slicing_specs.append(tfma.SlicingSpec())
  return cfg


VARIANTS: Dict[str, Callable[[tfma.EvalConfig], tfma.EvalConfig]] = {
  "spec": lambda cfg: cfg,
  "auc_1000": lambda cfg: _set_metric_config(
    cfg, ("AUC", "AUCPrecisionRecall"), {"num_thresholds": 1000}
  ),
  "plot_100": lambda cfg: _set_metric_config(cfg, ("CalibrationPlot",), {"num_buckets": 100}),
  "no_plot": lambda cfg: _drop_metrics(cfg, lambda name: name != "CalibrationPlot"),
  "overall_only": _overall_only,
  "count_only": lambda cfg: _overall_only(_drop_metrics(cfg, lambda name: name == "ExampleCount")),
  "two_workers": lambda cfg: cfg,
}
BEAM_ARGS = {
  "two_workers": [a for a in config.BEAM_PIPELINE_ARGS if not a.startswith("--direct_num_workers")]
  + ["--direct_num_workers=2"]
}


def load_average() -> float:
  return os.getloadavg()[0]


def evaluator_inputs(pipeline_root: Path, workdir: Path) -> Tuple[Path, Path]:
  """Copies the eval split and the candidate model of the latest Evaluator
  execution under `pipeline_root` to `workdir`: (eval split dir, model dir)."""
  store = results.open_store(pipeline_root / config.METADATA_FILE)
  node = next(c for c in store.get_contexts_by_type("node") if c.name.endswith(".Evaluator"))
  execution = max(store.get_executions_by_context(node.id), key=lambda e: e.id)
  events = [
    e
    for e in store.get_events_by_execution_ids([execution.id])
    if e.type == metadata_store_pb2.Event.INPUT
  ]
  # get_artifacts_by_id does not keep the order of the ids it is given.
  uris = {a.id: a.uri for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  paths = {e.path.steps[0].key: uris[e.artifact_id] for e in events}
  split, model = workdir / "Split-eval", workdir / "Format-Serving"
  if not split.exists():
    shutil.copytree(Path(paths["examples"]) / f"Split-{EVAL_SPLIT}", split)
  if not model.exists():
    shutil.copytree(Path(paths["model"]) / "Format-Serving", model)
  return split, model


def run_tfma(
  cfg: tfma.EvalConfig, split: Path, model: Path, out: Path, beam_args: List[str]
) -> None:
  """TFMA as TFX's Evaluator runs it (no schema: raw records, batched input)."""
  shared_model = tfma.default_eval_shared_model(eval_saved_model_path=str(model), eval_config=cfg)
  source = tfxio.TFExampleRecord(
    file_pattern=str(split / "*"), raw_record_column_name=tfma.ARROW_INPUT_COLUMN
  )
  with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
    _ = (
      pipeline
      | "Read" >> source.BeamSource()
      | "Evaluate"
      >> tfma.ExtractEvaluateAndWriteResults(
        eval_shared_model=shared_model, eval_config=cfg, output_path=str(out)
      )
    )


def compare(spec: RankingSpec, reference: Path, other: Path) -> Dict[str, float]:
  """Max |difference| per metric over the tasks and slices both outputs have."""
  ref, new = (results.slice_metrics(spec, str(p)) for p in (reference, other))
  worst: Dict[str, float] = {}
  for key, values in new.items():
    for metric in COMPARED:
      if metric in values and metric in ref.get(key, {}):
        diff = abs(values[metric] - ref[key][metric])
        worst[metric] = max(worst.get(metric, 0.0), diff)
  return worst


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--pipeline-root", required=True, type=Path, help="a finished run's pipeline root (read only)"
  )
  parser.add_argument("--spec", required=True)
  parser.add_argument(
    "--variants", nargs="+", default=["spec", "auc_1000", "spec"], choices=sorted(VARIANTS)
  )
  parser.add_argument(
    "--profile",
    type=int,
    metavar="N",
    default=0,
    help="profile each variant (cProfile; the in-memory runner works in "
    "this thread) and print its N functions of most own time",
  )
  parser.add_argument(
    "--workdir", type=Path, help="copies and TFMA outputs go here (default: a temp dir)"
  )
  args = parser.parse_args(argv)

  spec = load_spec(args.spec)
  workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eval_cost-"))
  workdir.mkdir(parents=True, exist_ok=True)
  split, model = evaluator_inputs(args.pipeline_root, workdir)
  print(f"eval split {split}, model {model}; load {load_average():.2f}", flush=True)
  timings: List[Tuple[str, float]] = []
  outputs: Dict[str, Path] = {}
  for index, name in enumerate(args.variants):
    cfg = VARIANTS[name](copy.deepcopy(eval_config.eval_config_from_spec(spec, with_gates=False)))
    out = workdir / f"{index:02d}-{name}"
    before = load_average()
    started = time.perf_counter()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
      profiler.enable()
    run_tfma(cfg, split, model, out, BEAM_ARGS.get(name, config.BEAM_PIPELINE_ARGS))
    seconds = time.perf_counter() - started
    if profiler:
      profiler.disable()
      pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    timings.append((name, seconds))
    outputs.setdefault(name, out)
    print(f"{name:<14}{seconds:>8.1f} s  load {before:.2f} -> {load_average():.2f}", flush=True)
  reference_name, reference_seconds = timings[0]
  reference = outputs[reference_name]
  print(
    f"\nratios to the first {reference_name!r} ({reference_seconds:.1f} s), and the "
    "largest |difference| of each metric over every task and slice:"
  )
  for (name, seconds), index in zip(timings, range(len(timings))):
    diffs = compare(spec, reference, workdir / f"{index:02d}-{name}")
    shown = ", ".join(f"{m} {d:.2g}" for m, d in sorted(diffs.items()))
    print(f"  {name:<14}{seconds / reference_seconds:>6.2f}x  {shown}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
