"""Census-Income (KDD): held-out AUC per task of single_task, shared_bottom, mmoe,
ple, stem and mmoe with MGDA-UB, mean ± std over seeds, beside the published
figures.

One Transform output serves every model: the latest `transformed_examples` and
`transform_graph` recorded in a census pipeline root (run the pipeline first,
`uv run mtlrank run --spec census --home H`, or pass `--run` to have this
script run it). Each architecture then trains exactly as the Trainer does
(`models.inputs.make_input`, `architectures.build_model`, the spec's budget:
8 epochs, batch 1024, Adam 0.002) on the 80 % train split written by
`pipeline.data.census.prepare_census`, and is scored on the 20 % eval split
with sklearn's exact AUC. Early stopping is off: the eval split is the test
set here, so it must not pick the epoch.

    uv run python -m benchmarks.census_benchmark --pipeline-root H/pipelines/census \
        --seeds 0 1 2 --out /tmp/census.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from ml_metadata.proto import metadata_store_pb2
from sklearn.metrics import roc_auc_score

from models import architectures, telemetry
from models.features import vocab_sizes
from models.inputs import make_input
from models.spec import RankingSpec, load_spec
from pipeline import config, results

# A row is an architecture, or `<architecture>+<balancing>` (mmoe+mgda).
ARCHITECTURES = ("single_task", "shared_bottom", "mmoe", "ple", "stem", "mmoe+mgda")
# /work/shared/data/README.md: MMoE trained on the 199,523-row train split, and
# a per-task logistic regression on an even/odd split of the test file.
PUBLISHED = {
  "MMoE, PaddleRec (mean of runs)": {"income": 0.9447, "never_married": 0.9932},
  "MMoE, torch-rechub": {"income": 0.9579, "never_married": 0.9950},
  "logistic regression per task (even/odd split)": {"income": 0.934, "never_married": 0.990},
}


def transform_output(pipeline_root: Path) -> Tuple[str, str]:
  """(transformed examples uri, transform graph uri) of the latest Transform run."""
  store = results.open_store(pipeline_root / config.METADATA_FILE)
  live = metadata_store_pb2.Artifact.LIVE
  graphs = [a for a in store.get_artifacts_by_type("TransformGraph") if a.state == live]
  examples = [
    a for a in store.get_artifacts_by_type("Examples") if "/Transform/" in a.uri and a.state == live
  ]
  if not graphs or not examples:
    raise SystemExit(
      f"{pipeline_root} records no Transform output: run the census pipeline first (or pass --run)"
    )
  return max(examples, key=lambda a: a.id).uri, max(graphs, key=lambda a: a.id).uri


def split_pattern(examples_uri: str, split: str) -> List[str]:
  return [os.path.join(examples_uri, f"Split-{split}", "*")]


def with_known_size(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """The dataset with its number of batches declared: Keras needs it to run
  several steps per call (`steps_per_execution`) on a file-backed dataset."""
  batches = int(dataset.reduce(0, lambda count, _: count + 1))
  return dataset.apply(tf.data.experimental.assert_cardinality(batches))


def train_and_score(
  spec: RankingSpec, tft_output: tft.TFTransformOutput, examples_uri: str
) -> Dict[str, float]:
  """Held-out AUC per task of one model trained on the train split."""
  keras.utils.set_random_seed(spec.training.seed)
  feature_spec = tft_output.transformed_feature_spec()
  train_ds = with_known_size(
    make_input(
      split_pattern(examples_uri, "train"),
      feature_spec,
      spec,
      spec.training.batch_size,
      shuffle=True,
    ).dataset
  )
  eval_ds = make_input(
    split_pattern(examples_uri, "eval"),
    feature_spec,
    spec,
    spec.training.eval_batch_size,
    shuffle=False,
  ).dataset
  model = architectures.build_model(spec, vocab_sizes(spec, tft_output))
  architectures.compile_model(model, spec)
  with tempfile.TemporaryDirectory() as log_dir:
    model.fit(
      train_ds,
      epochs=spec.training.epochs,
      verbose=0,
      callbacks=telemetry.callbacks(spec, log_dir, early_stopping=False),
    )
  labels: Dict[str, List[np.ndarray]] = {t: [] for t in spec.task_names}
  scores: Dict[str, List[np.ndarray]] = {t: [] for t in spec.task_names}
  for features, batch_labels in eval_ds:
    outputs = model(features, training=False)
    for task in spec.task_names:
      labels[task].append(batch_labels[task].numpy().reshape(-1))
      scores[task].append(outputs[task].numpy().reshape(-1))
  return {
    task: float(roc_auc_score(np.concatenate(labels[task]), np.concatenate(scores[task])))
    for task in spec.task_names
  }


def summarize(runs: Sequence[Dict[str, float]]) -> Dict[str, Tuple[float, float]]:
  return {
    task: (
      float(np.mean([r[task] for r in runs])),
      float(np.std([r[task] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
    )
    for task in runs[0]
  }


def markdown(summary: Dict[str, Dict[str, Tuple[float, float]]], seeds: int) -> str:
  tasks = list(next(iter(summary.values())))
  lines = [f"| model | {' | '.join(f'{t} AUC' for t in tasks)} |", "|---|" + "---|" * len(tasks)]
  for name, per_task in summary.items():
    lines.append(
      f"| {name} (ours, {seeds} seeds) | "
      + " | ".join(f"{per_task[t][0]:.4f} ± {per_task[t][1]:.4f}" for t in tasks)
      + " |"
    )
  for name, per_task in PUBLISHED.items():
    lines.append(
      f"| {name} (published) | " + " | ".join(f"{per_task[t]:.4f}" for t in tasks) + " |"
    )
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--pipeline-root", required=True, help="a census pipeline root holding a finished Transform"
  )
  parser.add_argument(
    "--run", action="store_true", help="first run the census pipeline into the pipeline root's home"
  )
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
  parser.add_argument("--epochs", type=int, help="a smaller budget than the spec's (quick checks)")
  parser.add_argument("--out", help="write the full result as JSON here")
  args = parser.parse_args(argv)
  started = time.perf_counter()
  spec = load_spec("census")
  pipeline_root = Path(args.pipeline_root).resolve()
  if args.run:
    from pipeline import runner

    home = pipeline_root.parent.parent
    runner.run(spec, config.PipelinePaths.for_spec(spec.name, home))
  examples_uri, graph_uri = transform_output(pipeline_root)
  tft_output = tft.TFTransformOutput(graph_uri)

  runs: Dict[str, List[Dict[str, float]]] = {}
  for architecture in args.architectures:
    for seed in args.seeds:
      name, _, balancing = architecture.partition("+")
      model_spec = spec.replace(
        model={"architecture": name, "balancing": balancing or "fixed"},
        training={"seed": seed, "epochs": args.epochs or spec.training.epochs},
      )
      begun = time.perf_counter()
      auc = train_and_score(model_spec, tft_output, examples_uri)
      runs.setdefault(architecture, []).append(auc)
      print(
        f"{architecture:>13} seed {seed}: "
        + ", ".join(f"{t} AUC {v:.4f}" for t, v in auc.items())
        + f" ({time.perf_counter() - begun:.0f} s)",
        flush=True,
      )
  summary = {name: summarize(r) for name, r in runs.items()}
  print(markdown(summary, len(args.seeds)))
  if args.out:
    Path(args.out).write_text(
      json.dumps(
        {
          "transformed_examples": examples_uri,
          "seeds": args.seeds,
          "runs": runs,
          "summary": summary,
          "published": PUBLISHED,
          "seconds": time.perf_counter() - started,
        },
        indent=2,
      )
    )
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
