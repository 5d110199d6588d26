"""The synthetic spec's click model outside TFX, against the simulator's oracles:
does it learn the user x item attraction, not only the position?

Data: `simulator.simulate` with the synthetic spec (all spans); train = every
span's train split, test = every span's eval split (whole requests). Features
mapped as the Trainer sees them (`esmm_experiment.FeatureMapping`: TFT's hash,
train-split vocabularies and moments). Each variant is the spec with overrides
(`--variant NAME:SECTION.FIELD=VALUE;...`, values parsed as YAML), trained as
the Trainer trains it (`build_model`, the spec's budget, labels as TFT writes
them, early stopping on the spec-weighted validation loss restoring the best
epoch; a tenth of the train requests validates, so the test rows never pick
the epoch).

Printed per model and per oracle, on the test rows:
  * click AUC position-free (pCTR as served) and position-aware (pCTR's logit
    plus the learned position logit, what TFMA's `evaluation` signature scores);
  * within-request grouped AUC (mean over requests with a click and a non-click
    of the AUC inside the request; the user is fixed there, so it measures
    item x user attraction) of pCTR alone and of the fused `serving.score`;
  * the learned position logits.
Oracles: the position alone; the best position-free pCTR of the logged
features, E_z a (the hidden intent integrated out), and e(p) E_z a; the same
without the user x item match u.v (the ceiling with the true examination
curve and no collaborative signal);
the truth p_click. Results and the command: docs/evaluation.md.

    uv run --frozen python -m benchmarks.synthetic_click_check
    uv run --frozen python -m benchmarks.synthetic_click_check \\
        --variant 'no dot:model.interaction={kind: none}' \\
        --variant 'old budget:training.epochs=3;training.learning_rate=0.002'
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
import yaml
from sklearn.metrics import roc_auc_score

from benchmarks import esmm_experiment as experiment
from benchmarks import simulator_truth
from models import architectures, export, telemetry
from models.spec import RankingSpec, load_spec, parse_spec, resolve_spec_path
from pipeline import ranking_truth
from pipeline.data import simulator, world
from pipeline.tfma_metrics import request_auc

CLICK = "click"


def grouped_auc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> Tuple[float, int]:
  """Mean over groups holding both classes of the AUC inside the group (the
  TFMA metric's `request_auc`), and the number of such groups. Rows of a group
  are contiguous."""
  starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
  bounds = np.r_[starts, len(groups)]
  aucs = [
    auc
    for auc in (
      request_auc(labels[begin:end], scores[begin:end])
      for begin, end in zip(bounds[:-1], bounds[1:])
    )
    if auc is not None
  ]
  return float(np.mean(aucs)), len(aucs)


def true_attraction(test: Mapping[str, np.ndarray]) -> np.ndarray:
  """The row's true attraction a = p_click / e(p) (the click probability if examined)."""
  return test["p_click"] / test["position"].astype(np.float64) ** -world.EXAMINATION_DECAY


def agreement_with_attraction(test: Mapping[str, np.ndarray], free: np.ndarray) -> float:
  """Mean per-request pairwise agreement of a position-free score with the true a."""
  means = ranking_truth.grouped_means(test["request_id"], true_attraction(test), {"s": free}, ())
  return means[("s", ranking_truth.AGREEMENT)]


def parse_variant(text: str) -> Tuple[str, Dict[str, Dict[str, object]]]:
  """'name:model.embedding_dim=16;training.epochs=10' -> (name, {section: {field: value}})."""
  name, _, assignments = text.partition(":")
  overrides: Dict[str, Dict[str, object]] = {}
  for assignment in filter(None, assignments.split(";")):
    key, _, value = assignment.partition("=")
    section, _, field = key.strip().partition(".")
    if not field or not value:
      raise SystemExit(f"--variant {text!r}: expected SECTION.FIELD=VALUE, got {assignment!r}")
    overrides.setdefault(section, {})[field] = yaml.safe_load(value)
  return name, overrides


def variant_spec(spec_name: str, overrides: Mapping[str, Mapping[str, object]]) -> RankingSpec:
  """The spec file with the overrides, validated as a spec file is."""
  path = resolve_spec_path(spec_name)
  raw = yaml.safe_load(path.read_text())
  for section, fields in overrides.items():
    if section == "features":  # features.<name>.<field>=value
      by_name = {f["name"]: f for f in raw["features"]}
      for key, value in fields.items():
        name, _, field = key.partition(".")
        if name not in by_name or not field:
          raise SystemExit(f"--variant: features.{key}: expected features.<feature>.<field>")
        by_name[name][field] = value
      continue
    raw[section] = {**(raw.get(section) or {}), **fields}
  return parse_spec(raw, origin=f"{path.name} with {dict(overrides)}")


def attraction_oracles(spec: RankingSpec, test: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Per test row, the best position-free pCTR of the logged features, E_z a
  (`benchmarks.simulator_truth.x_only_conversion_targets`), and the same without the user x
  item match u.v: what a model that learns no collaborative signal (item
  bias, segment, device, hour, category) can reach at best."""
  params = simulator.SimParams.from_spec(spec)
  sim_world = simulator.make_world(params)
  hidden = {"attraction_logit_x": [], "intent": []}
  for span in range(1, params.num_spans + 1):
    data = simulator.simulate_span(sim_world, params, span)
    for name in hidden:
      hidden[name].append(data["hidden"][name][data["is_eval"]])
  logit = np.concatenate(hidden["attraction_logit_x"])
  users = np.array([int(u[1:]) for u in test["user_id"]])
  items = np.array([int(i[1:]) for i in test["item_id"]])
  match = np.einsum("nd,nd->n", sim_world.user_click[users], sim_world.item_click[items])

  def integrated(attraction_logit: np.ndarray) -> np.ndarray:
    return simulator_truth.x_only_conversion_targets(
      {"attraction_logit_x": attraction_logit, "conv_logit_x": np.zeros_like(logit)},
      params.intent_strength,
    )["attraction"]

  return {"features": integrated(logit), "features_without_match": integrated(logit - match)}


def labels_of(spec: RankingSpec, rows: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Labels as TFT writes them (`models.features`): log1p where the spec says."""
  labels = experiment.labels_of(spec, rows)
  for task in spec.tasks:
    if task.label_transform == "log1p":
      labels[task.name] = np.log1p(np.maximum(labels[task.name], 0.0))
  return labels


def train(
  spec: RankingSpec, mapping: experiment.FeatureMapping, train_rows: Mapping[str, np.ndarray]
) -> Tuple[architectures.MultiTaskModel, int, int]:
  """The spec's model trained on `train_rows` as the Trainer trains it: up to
  `training.epochs` epochs, early stopping on the validation loss (the
  spec-weighted sum) restoring the best epoch's weights. The Trainer validates
  on the eval split; here a tenth of the train requests validates, so the test
  rows never choose the epoch."""
  keras.utils.set_random_seed(spec.training.seed)
  model = architectures.build_model(spec, mapping.vocab_sizes())
  architectures.compile_model(model, spec)
  batch = spec.training.batch_size
  held_out = experiment.validation_mask(train_rows["request_id"])
  fit_rows, val_rows = (
    experiment.take(train_rows, ~held_out),
    experiment.take(train_rows, held_out),
  )
  history = model.fit(
    experiment.dataset(mapping.transform(fit_rows), labels_of(spec, fit_rows), batch, True, 0),
    validation_data=experiment.dataset(
      mapping.transform(val_rows), labels_of(spec, val_rows), 4096, False, 0
    ),
    epochs=spec.training.epochs,
    verbose=0,
    callbacks=[
      keras.callbacks.EarlyStopping(
        monitor=telemetry.early_stopping_monitor(spec),
        patience=spec.training.early_stopping_patience,
        restore_best_weights=True,
      )
    ],
  )
  curves = {
    k: [round(v, 4) for v in history.history[k]]
    for k in history.history
    if k.startswith("val_") and k.endswith("_loss")
  }
  print(f"  validation losses per epoch: {curves}", flush=True)
  monitored = history.history[telemetry.early_stopping_monitor(spec)]
  return model, int(np.argmin(monitored)) + 1, len(history.epoch)


def scores(
  model: architectures.MultiTaskModel, spec: RankingSpec, features: Mapping[str, np.ndarray]
) -> Dict[str, np.ndarray]:
  """Position-free pCTR, position-aware pCTR and the fused score, per row."""
  tensors = {k: tf.constant(v) for k, v in features.items()}
  free_logits, _ = model.forward(tensors, training=False, use_position=False)
  aware_logits, _ = model.forward(tensors, training=False, use_position=True)
  outputs = model.heads(free_logits)
  return {
    "pctr": outputs[CLICK].numpy().reshape(-1),
    "pctr_with_position": tf.sigmoid(aware_logits[CLICK]).numpy().reshape(-1),
    "score": export.fused_score(spec, outputs).numpy().reshape(-1),
  }


def report_row(
  name: str,
  test: Mapping[str, np.ndarray],
  free: np.ndarray,
  aware: np.ndarray,
  fused: np.ndarray | None,
  note: str = "",
) -> str:
  clicks, requests = test[CLICK], test["request_id"]
  cells = [
    f"{roc_auc_score(clicks, free):.4f}",
    f"{roc_auc_score(clicks, aware):.4f}",
    f"{grouped_auc(requests, clicks, free)[0]:.4f}",
    f"{grouped_auc(requests, clicks, aware)[0]:.4f}",
    f"{grouped_auc(requests, clicks, fused)[0]:.4f}" if fused is not None else "",
    f"{agreement_with_attraction(test, free):.4f}",
  ]
  return f"| {name} | " + " | ".join(cells) + f" | {note} |"


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--spec", default="synthetic")
  parser.add_argument(
    "--variant",
    action="append",
    default=[],
    help="NAME:SECTION.FIELD=VALUE;... (values are YAML); repeatable",
  )
  parser.add_argument("--no-baseline", action="store_true", help="skip the spec as it is")
  args = parser.parse_args(argv)
  spec = load_spec(args.spec)
  variants = ([] if args.no_baseline else [("spec", {})]) + [parse_variant(v) for v in args.variant]
  print(
    "load average:",
    subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    flush=True,
  )
  with tempfile.TemporaryDirectory() as data_dir:
    simulator.simulate(spec, data_dir, progress=False)
    train_rows = experiment.read_split(spec, Path(data_dir), "train")
    test = experiment.read_split(spec, Path(data_dir), "eval")
  oracles = attraction_oracles(spec, test)
  attraction = oracles["features"]
  examination = test["position"].astype(np.float64) ** -world.EXAMINATION_DECAY
  print(
    f"{len(train_rows[CLICK]):,} train rows, {len(test[CLICK]):,} test rows "
    f"({len(np.unique(test['request_id'])):,} requests), test CTR {test[CLICK].mean():.4f}"
  )
  header = (
    "| model | AUC position-free | AUC position-aware | grouped AUC pCTR | "
    "grouped AUC pCTR+position | grouped AUC fused score | pairwise agreement pCTR, true a | notes |\n"
    "|---|---|---|---|---|---|---|---|"
  )
  rows = [
    report_row("oracle: position alone", test, -test["position"], -test["position"], None),
    report_row(
      "oracle: features, E_z a / e(p) E_z a", test, attraction, examination * attraction, None
    ),
    report_row(
      "oracle: features without u.v",
      test,
      oracles["features_without_match"],
      examination * oracles["features_without_match"],
      None,
    ),
    report_row("oracle: truth p_click", test, test["p_click"], test["p_click"], None),
  ]
  print(header, *rows, sep="\n", flush=True)
  for name, overrides in variants:
    variant = variant_spec(args.spec, overrides)
    started = time.time()
    # Fitted per variant: a variant may change the features' transforms.
    mapping = experiment.FeatureMapping.fit(variant, train_rows)
    model, best_epoch, epochs = train(variant, mapping, train_rows)
    seconds = time.time() - started
    out = scores(model, variant, mapping.transform(test))
    positions = (
      [round(float(x), 2) for x in model.position_tower.bias_by_position.numpy()[1:]]
      if model.position_tower is not None
      else []
    )
    load = os.getloadavg()[0]
    rows.append(
      report_row(
        name,
        test,
        out["pctr"],
        out["pctr_with_position"],
        out["score"],
        f"best epoch {best_epoch} of {epochs}, {seconds:.0f} s (load {load:.1f}); "
        f"position logits {positions}",
      )
    )
    print(rows[-1], flush=True)
  print("\n" + header, *rows, sep="\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
