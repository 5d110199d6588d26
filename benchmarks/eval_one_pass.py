"""The Evaluator's two levers, A/B in one process: one TFMA pass for the
multi-task model and its single-task baseline, and calibration from the shared
histogram.

Takes a finished census run's eval split, multi-task and single-task models
(copied to a work directory; `--rows N` keeps the first N eval records, for a
loaded machine) and runs, in the order given:

  two_passes_legacy  what main ran before: one TFMA pass per model, with TFMA's
                     Calibration/MeanLabel/MeanPrediction and WeightedExampleCount
  two_passes         one pass per model, the pipeline's metric set now
  one_pass           both models in one TFMA pass, the single-task one ungated
                     (what main ran before 2026-12-04)
  candidate_only     the multi-task model alone, what the Evaluator's TFMA pass runs
                     now (the single-task model is left to the bootstrap)
  bootstrap          the Evaluator's MTL - STL paired bootstrap (pipeline.model_comparison)

and prints each variant's seconds with the load average before and after, the
ratios to the first variant, and the largest |difference| of each metric
between a variant's outputs and the first's (both models, every task and slice).

    uv run --frozen python -m benchmarks.eval_one_pass --pipeline-root HOME/pipelines/census \\
        --spec census --variants one_pass candidate_only bootstrap one_pass candidate_only
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import tensorflow_model_analysis as tfma

from benchmarks import eval_cost
from contract import SINGLE_TASK_MODEL_NAME, SINGLE_TASK_TRAINER_NODE
from models.spec import RankingSpec, load_spec
from pipeline import config, eval_config, model_comparison, results

LEGACY_BINARY = ("Calibration", "MeanLabel", "MeanPrediction")


def legacy_metrics(cfg: tfma.EvalConfig) -> tfma.EvalConfig:
  """The metric set before HistogramCalibration: TFMA's own calibration metrics
  and the weighted example count on every task."""
  for metrics_spec in cfg.metrics_specs:
    names = [m.class_name for m in metrics_spec.metrics]
    if "HistogramCalibration" in names:
      kept = [m for m in metrics_spec.metrics if m.class_name != "HistogramCalibration"]
      kept += [tfma.MetricConfig(class_name=n) for n in LEGACY_BINARY]
      del metrics_spec.metrics[:]
      metrics_spec.metrics.extend(kept)
    if "ExampleCount" in names and "WeightedExampleCount" not in names:
      metrics_spec.metrics.append(tfma.MetricConfig(class_name="WeightedExampleCount"))
  return cfg


def single_task_model(pipeline_root: Path, workdir: Path) -> Path:
  """The latest SingleTaskTrainer model under the root, copied to `workdir`."""
  store = results.open_store(pipeline_root / config.METADATA_FILE)
  node = next(
    c for c in store.get_contexts_by_type("node") if c.name.endswith(SINGLE_TASK_TRAINER_NODE)
  )
  # The Trainer's outputs: <node>/model/<id> (the model) and <node>/model_run/<id>.
  models = [
    a for a in store.get_artifacts_by_context(node.id) if Path(a.uri).parent.name == "model"
  ]
  model = max(models, key=lambda a: a.id)
  out = workdir / "single-task-Format-Serving"
  if not out.exists():
    shutil.copytree(Path(model.uri) / "Format-Serving", out)
  return out


def subsample(split: Path, rows: int, workdir: Path) -> Path:
  """The first `rows` records of the split, in one gzipped TFRecord file."""
  out = workdir / f"Split-eval-{rows}"
  if out.exists():
    return out
  out.mkdir()
  import tensorflow as tf

  with tf.io.TFRecordWriter(str(out / "data.gz"), options="GZIP") as writer:
    for record in model_comparison.dataset([str(split)]).take(rows):
      writer.write(record.numpy())
  return out


def run_multi(cfg: tfma.EvalConfig, split: Path, models: Dict[str, Path], out: Path) -> None:
  """One TFMA pass over several named models, as pipeline.evaluator runs it."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from tfx_bsl.public import tfxio

  shared = [
    tfma.default_eval_shared_model(eval_saved_model_path=str(p), model_name=n, eval_config=cfg)
    for n, p in models.items()
  ]
  source = tfxio.TFExampleRecord(
    file_pattern=str(split / "*"), raw_record_column_name=tfma.ARROW_INPUT_COLUMN
  )
  with beam.Pipeline(options=PipelineOptions(config.BEAM_PIPELINE_ARGS)) as pipeline:
    _ = (
      pipeline
      | "Read" >> source.BeamSource()
      | "Evaluate"
      >> tfma.ExtractEvaluateAndWriteResults(
        eval_shared_model=shared, eval_config=cfg, output_path=str(out)
      )
    )


def with_single_task_model(spec: RankingSpec, cfg: tfma.EvalConfig) -> tfma.EvalConfig:
  """The candidate's config with the single-task model beside it, its
  per-task metrics ungated: the one TFMA pass main ran before 2026-12-04."""
  cfg = copy.deepcopy(cfg)
  candidate = cfg.model_specs[0]
  candidate.name = tfma.CANDIDATE_KEY
  single = cfg.model_specs.add()
  single.CopyFrom(candidate)
  single.name = SINGLE_TASK_MODEL_NAME
  for metrics_spec in list(cfg.metrics_specs):
    metrics_spec.model_names[:] = [tfma.CANDIDATE_KEY]
    if metrics_spec.query_key or list(metrics_spec.output_names) not in (
      [t] for t in spec.task_names
    ):
      continue
    copied = cfg.metrics_specs.add()
    copied.CopyFrom(metrics_spec)
    copied.model_names[:] = [SINGLE_TASK_MODEL_NAME]
    for metric in copied.metrics:
      metric.ClearField("per_slice_thresholds")
  return cfg


def run_variant(name: str, spec: RankingSpec, split: Path, mtl: Path, stl: Path, out: Path):
  """{model: output dir} of one variant's evaluation."""
  base = eval_config.eval_config_from_spec(spec, with_gates=False)
  if name in ("two_passes_legacy", "two_passes"):
    cfg = legacy_metrics(copy.deepcopy(base)) if name == "two_passes_legacy" else base
    for model_name, model in ((tfma.CANDIDATE_KEY, mtl), (SINGLE_TASK_MODEL_NAME, stl)):
      eval_cost.run_tfma(cfg, split, model, out / model_name, config.BEAM_PIPELINE_ARGS)
    return {m: (out / m, "") for m in (tfma.CANDIDATE_KEY, SINGLE_TASK_MODEL_NAME)}
  if name == "one_pass":
    cfg = with_single_task_model(spec, base)
    run_multi(cfg, split, {tfma.CANDIDATE_KEY: mtl, SINGLE_TASK_MODEL_NAME: stl}, out)
    return {m: (out, m) for m in (tfma.CANDIDATE_KEY, SINGLE_TASK_MODEL_NAME)}
  if name == "candidate_only":
    eval_cost.run_tfma(base, split, mtl, out / tfma.CANDIDATE_KEY, config.BEAM_PIPELINE_ARGS)
    return {tfma.CANDIDATE_KEY: (out / tfma.CANDIDATE_KEY, "")}
  if name == "bootstrap":
    models = {"multi": str(mtl), "single": str(stl)}
    rows = model_comparison.sample_and_predict(
      spec, [str(split)], models, "serving_default", spec.evaluation.comparison_max_rows
    )
    model_comparison.compare(
      spec, rows.values, rows.predictions["multi"], rows.predictions["single"]
    )
    return {}
  raise ValueError(name)


def largest_differences(spec, reference, other) -> Dict[str, float]:
  worst: Dict[str, float] = {}
  for model, (ref_dir, ref_name) in reference.items():
    if model not in other:
      continue
    new_dir, new_name = other[model]
    ref = results.slice_metrics(spec, str(ref_dir), model=ref_name or tfma.CANDIDATE_KEY)
    new = results.slice_metrics(spec, str(new_dir), model=new_name or tfma.CANDIDATE_KEY)
    for key, values in new.items():
      for metric in eval_cost.COMPARED + ("mean_label", "mean_prediction"):
        if metric in values and metric in ref.get(key, {}):
          worst[metric] = max(worst.get(metric, 0.0), abs(values[metric] - ref[key][metric]))
  return worst


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--pipeline-root", required=True, type=Path)
  parser.add_argument("--spec", default="census")
  parser.add_argument("--rows", type=int, default=0, help="first N eval records only (0: all)")
  parser.add_argument(
    "--variants",
    nargs="+",
    default=["one_pass", "candidate_only", "bootstrap", "one_pass", "candidate_only"],
    choices=["two_passes_legacy", "two_passes", "one_pass", "candidate_only", "bootstrap"],
  )
  parser.add_argument("--workdir", type=Path)
  args = parser.parse_args(argv)
  spec = load_spec(args.spec)
  workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eval_one_pass-"))
  workdir.mkdir(parents=True, exist_ok=True)
  split, mtl = eval_cost.evaluator_inputs(args.pipeline_root, workdir)
  stl = single_task_model(args.pipeline_root, workdir)
  if args.rows:
    split = subsample(split, args.rows, workdir)
  count = model_comparison.count_records([str(split)])
  print(f"eval split {split}: {count} rows; load {eval_cost.load_average():.2f}", flush=True)
  timings: List[Tuple[str, float]] = []
  outputs: List[Dict[str, Tuple[Path, str]]] = []
  for index, name in enumerate(args.variants):
    before = eval_cost.load_average()
    started = time.perf_counter()
    outputs.append(run_variant(name, spec, split, mtl, stl, workdir / f"{index:02d}-{name}"))
    seconds = time.perf_counter() - started
    timings.append((name, seconds))
    print(f"{name:<18}{seconds:>8.1f} s  load {before:.2f} -> {eval_cost.load_average():.2f}",
          flush=True)  # fmt: skip
  first_name, first_seconds = timings[0]
  print(f"\nratios to the first {first_name!r} ({first_seconds:.1f} s); largest |difference|:")
  for (name, seconds), out in zip(timings, outputs):
    diffs = largest_differences(spec, outputs[0], out) if out and outputs[0] else {}
    shown = ", ".join(f"{m} {d:.2g}" for m, d in sorted(diffs.items()))
    print(f"  {name:<18}{seconds / first_seconds:>6.2f}x  {shown}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
