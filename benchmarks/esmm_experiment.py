"""ESMM against a naive CVR model, on the entire impression space, against the truth.

The ESMM paper (Ma et al., SIGIR 2018) trains pCVR through pCTCVR = pCTR * pCVR
on every impression, where a naive CVR model only sees clicked impressions
(sample selection bias, and ~1/14 of the data here). At serving time pCVR is
needed for every impression, so the right test is over the entire impression
space -- which real logs cannot label, and the simulator can: it writes the
true `p_conv_given_click` of every impression.

Protocol (everything outside TFX, documented so it can be checked):
  * data: `pipeline.data.simulator.simulate` with the synthetic spec (world seed
    7, 3 spans, 100k impressions each) into a temp dir; train = the train splits
    of all spans minus the requests whose id hashes to validation (10 %); test =
    the eval splits of all spans (whole requests, never seen in training).
  * features: the spec's transforms without TFT (`FeatureMapping`): hash
    buckets with the same hash TFT uses, vocabularies from the train split,
    signed-log z-scores with train statistics, position clipped to 1..max.
  * ESMM: `architectures.build_model` on the synthetic spec with tasks click and
    conversion (dwell dropped), `model.architecture: esmm`, the spec's
    position-bias tower on the click logit (training only).
  * naive: the same embedding size and network sizes, architecture
    single_task, one task (conversion, no parent), trained on clicked rows only.
  * both: Adam at the spec's learning rate, batch 512, up to MAX_EPOCHS epochs
    with early stopping on the validation loss (patience 2, best weights), so
    neither is under-trained; 3 seeds (model initialisation and shuffling; the
    simulated world stays the same).
  * metrics of pCVR on EVERY test impression (clicked or not):
      - AUC against conversion-given-click outcomes sampled once per impression
        from Bernoulli(p_conv_given_click) (one fixed draw shared by all models);
      - expected AUC under the truth (each row is a positive with weight p and a
        negative with weight 1 - p: the sampled AUC without the sampling noise);
      - Spearman rank correlation with the true p_conv_given_click;
    and, for reference, the usual biased offline AUC: clicked test rows only,
    against the observed conversion label.
  * references: the truth itself, and the best pCVR a model of the logged
    features can have (the simulator's hidden intent integrated out,
    `benchmarks.simulator_truth.x_only_conversion_targets`): P(conv | click, x), which both
    models estimate, and E_z p_conv(x, z), the entire-space target; per model,
    how well pCVR (and ESMM's position-free pCTR) rank those.

    uv run python -m benchmarks.esmm_experiment --seeds 0 1 2 --out /tmp/esmm.json
    uv run python -m benchmarks.esmm_report /tmp/esmm.json --out esmm.html
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from benchmarks import simulator_truth
from models import architectures
from models.spec import RankingSpec, load_spec
from pipeline.data import read_examples, simulator, split_files

CLICK, CONVERSION = "click", "conversion"
TRUTH = "p_conv_given_click"
VALIDATION_BUCKETS = 10  # 1 in 10 train requests validates early stopping
MAX_EPOCHS = 15
PATIENCE = 2
OUTCOME_SEED = 2018  # the one Bernoulli draw of entire-space outcomes
PAPER = {"naive": 0.6600, "esmm": 0.6856}  # Ali-CCP CVR AUC, ESMM paper table 2


# ----------------------------------------------------------------------------
# Data


def x_only_oracles(spec: RankingSpec, test: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """The simulator's best pCVR from the logged features, per test row (see
  `benchmarks.simulator_truth.x_only_conversion_targets`): the spans regenerated in memory, the
  eval rows taken in the order they were written."""
  params = simulator.SimParams.from_spec(spec)
  world = simulator.make_world(params)
  hidden: Dict[str, List[np.ndarray]] = {}
  truth = []
  for span in range(1, params.num_spans + 1):
    data = simulator.simulate_span(world, params, span)
    for name, values in data["hidden"].items():
      hidden.setdefault(name, []).append(values[data["is_eval"]])
    truth.append(data["columns"][TRUTH][data["is_eval"]])
  if not np.array_equal(np.concatenate(truth), test[TRUTH]):
    raise RuntimeError("regenerated eval rows do not match the written ones")
  return simulator_truth.x_only_conversion_targets(
    {name: np.concatenate(parts) for name, parts in hidden.items()}, params.intent_strength
  )


def read_split(spec: RankingSpec, data_dir: Path, split: str) -> Dict[str, np.ndarray]:
  """Every span's `split` rows, concatenated."""
  files = [
    f for span in range(1, spec.data.num_spans + 1) for f in split_files(data_dir, span, split)
  ]
  return read_examples(files, spec.raw_columns)


def take(columns: Mapping[str, np.ndarray], mask: np.ndarray) -> Dict[str, np.ndarray]:
  return {name: values[mask] for name, values in columns.items()}


def validation_mask(request_ids: np.ndarray) -> np.ndarray:
  """Whole requests, chosen by a stable hash of the request id."""
  buckets = tf.strings.to_hash_bucket_fast(request_ids, VALIDATION_BUCKETS).numpy()
  return buckets == 0


@dataclasses.dataclass
class FeatureMapping:
  """The spec's feature transforms without TFT, fitted on the train split."""

  spec: RankingSpec
  vocabularies: Dict[str, Dict[bytes, int]]
  moments: Dict[str, tuple]

  @staticmethod
  def _as_bytes(values: np.ndarray) -> np.ndarray:
    return (
      values
      if values.dtype == object
      else np.array([str(v).encode() for v in values], dtype=object)
    )

  @staticmethod
  def _signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))

  @classmethod
  def fit(cls, spec: RankingSpec, train: Mapping[str, np.ndarray]) -> FeatureMapping:
    vocabularies, moments = {}, {}
    for f in spec.model_features:
      values = train[f.column or f.name]
      if f.kind == "categorical" and f.encoding == "vocabulary":
        distinct, counts = np.unique(cls._as_bytes(values), return_counts=True)
        by_frequency = distinct[np.argsort(-counts, kind="stable")][: f.top_k]
        vocabularies[f.name] = {v: i for i, v in enumerate(by_frequency)}
      elif f.kind == "numeric":
        x = cls._signed_log(values) if f.transform == "log_zscore" else values
        moments[f.name] = (float(np.mean(x)), float(np.std(x)) or 1.0)
    return cls(spec, vocabularies, moments)

  def vocab_sizes(self) -> Dict[str, int]:
    sizes = {}
    for f in self.spec.model_features:
      if f.kind == "categorical":
        sizes[f.name] = (
          f.hash_buckets
          if f.encoding == "hash"
          else len(self.vocabularies[f.name]) + f.num_oov_buckets
        )
    position = self.spec.position_feature
    if position is not None:
      sizes[position.name] = position.max_value + 1
    return sizes

  def transform(self, columns: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    features = {}
    for f in self.spec.model_features:
      values = columns[f.column or f.name]
      if f.kind == "categorical" and f.encoding == "hash":
        ids = tf.strings.to_hash_bucket_fast(self._as_bytes(values), f.hash_buckets).numpy()
      elif f.kind == "categorical":
        vocabulary = self.vocabularies[f.name]
        ids = np.array([vocabulary.get(v, len(vocabulary)) for v in self._as_bytes(values)])
      elif f.transform in ("zscore", "log_zscore"):
        x = self._signed_log(values) if f.transform == "log_zscore" else values
        mean, std = self.moments[f.name]
        features[f.name] = ((x - mean) / std).astype(np.float32).reshape(-1, 1)
        continue
      else:
        raise ValueError(f"feature {f.name}: transform {f.transform!r} is not mapped here")
      features[f.name] = ids.astype(np.int64).reshape(-1, 1)
    position = self.spec.position_feature
    if position is not None:
      features[position.name] = (
        np.clip(columns[position.name], 1, position.max_value).astype(np.int64).reshape(-1, 1)
      )
    return features


# ----------------------------------------------------------------------------
# Models


def esmm_spec(spec: RankingSpec) -> RankingSpec:
  """The synthetic spec's click and conversion tasks, as ESMM."""
  tasks = tuple(t for t in spec.tasks if t.name in (CLICK, CONVERSION))
  return spec.replace(
    tasks=tasks,
    model={"architecture": "esmm"},
    serving={"score": {CLICK: 1.0}, "classify_task": CLICK},
  )


def naive_spec(spec: RankingSpec) -> RankingSpec:
  """One task, conversion without a parent: trained on clicked rows only."""
  conversion = dataclasses.replace(spec.task(CONVERSION), parent=None)
  return spec.replace(
    tasks=(conversion,),
    model={"architecture": "single_task", "position_bias": False, "position_bias_task": None},
    serving={"score": {CONVERSION: 1.0}, "classify_task": CONVERSION},
  )


def labels_of(spec: RankingSpec, columns: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  return {t.name: columns[t.label].astype(np.float32).reshape(-1, 1) for t in spec.tasks}


def dataset(features, labels, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
  data = tf.data.Dataset.from_tensor_slices((features, labels))
  if shuffle:
    data = data.shuffle(len(next(iter(labels.values()))), seed=seed, reshuffle_each_iteration=True)
  return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train(
  spec: RankingSpec, vocab_sizes, train_data, validation_data, seed: int, monitor: str = "val_loss"
) -> Tuple[architectures.MultiTaskModel, int]:
  """The model with the best validation loss, and the epochs it ran."""
  keras.utils.set_random_seed(seed)
  spec = spec.replace(training={"seed": seed})
  model = architectures.build_model(spec, vocab_sizes)
  architectures.compile_model(model, spec)
  batch = spec.training.batch_size
  history = model.fit(
    dataset(*train_data, batch, True, seed),
    validation_data=dataset(*validation_data, 4096, False, seed),
    epochs=MAX_EPOCHS,
    verbose=0,
    callbacks=[
      keras.callbacks.EarlyStopping(monitor=monitor, patience=PATIENCE, restore_best_weights=True)
    ],
  )
  return model, len(history.epoch)


def predict(model: architectures.MultiTaskModel, features) -> Dict[str, np.ndarray]:
  """Position-free predictions per task, flattened."""
  outputs = model.predict(features, batch_size=8192, verbose=0)
  return {task: np.asarray(values).reshape(-1) for task, values in outputs.items()}


# ----------------------------------------------------------------------------
# Metrics


def expected_auc(truth: np.ndarray, prediction: np.ndarray) -> float:
  """AUC when row i is a positive with weight p_i and a negative with 1 - p_i."""
  n = len(truth)
  return float(
    roc_auc_score(
      np.r_[np.ones(n), np.zeros(n)],
      np.r_[prediction, prediction],
      sample_weight=np.r_[truth, 1.0 - truth],
    )
  )


def cvr_metrics(
  prediction: np.ndarray, test: Mapping[str, np.ndarray], outcomes: np.ndarray
) -> Dict[str, float]:
  clicked = test[CLICK] == 1
  return {
    "entire_space_auc": float(roc_auc_score(outcomes, prediction)),
    "entire_space_expected_auc": expected_auc(test[TRUTH], prediction),
    "entire_space_spearman": float(spearmanr(prediction, test[TRUTH]).correlation),
    "clicked_auc": float(roc_auc_score(test[CONVERSION][clicked], prediction[clicked])),
    "mean_prediction": float(prediction.mean()),
  }


def _logit(p: np.ndarray) -> np.ndarray:
  p = np.clip(p, 1e-6, 1 - 1e-6)
  return np.log(p / (1 - p))


def diagnostics(
  predictions: Mapping[str, np.ndarray], oracles: Mapping[str, np.ndarray]
) -> Dict[str, float]:
  """How far pCVR is from what x can give, and, for ESMM, whether its pCVR
  errors mirror its pCTR errors (pCVR is identified only as pCTCVR / pCTR)."""
  cvr_error = _logit(predictions[CONVERSION]) - _logit(oracles["click_space"])
  result = {
    "spearman_vs_x_only_click_space": float(
      spearmanr(predictions[CONVERSION], oracles["click_space"]).correlation
    ),
    "cvr_logit_error_std": float(np.std(cvr_error)),
  }
  if CLICK in predictions:
    ctr_error = _logit(predictions[CLICK]) - _logit(oracles["attraction"])
    result["ctr_spearman_vs_x_only_attraction"] = float(
      spearmanr(predictions[CLICK], oracles["attraction"]).correlation
    )
    result["cvr_error_ctr_error_correlation"] = float(np.corrcoef(cvr_error, ctr_error)[0, 1])
  return result


def summarize(runs: Sequence[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
  return {
    key: {
      "mean": float(np.mean([r[key] for r in runs])),
      "std": float(np.std([r[key] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
    }
    for key in runs[0]
  }


def markdown(result: Dict[str, object]) -> str:
  rows = [
    ("entire_space_auc", "entire-space AUC (sampled outcomes)"),
    ("entire_space_expected_auc", "entire-space AUC (expected under the truth)"),
    ("entire_space_spearman", "Spearman with true p_conv_given_click"),
    ("clicked_auc", "AUC on clicked test rows (observed conversions)"),
    ("mean_prediction", "mean pCVR over all impressions"),
    ("epochs", "epochs trained (early stopping)"),
    ("spearman_vs_x_only_click_space", "Spearman with x-only P(conv given click, x)"),
    ("cvr_logit_error_std", "std of logit(pCVR) - logit(x-only P(conv given click, x))"),
    ("ctr_spearman_vs_x_only_attraction", "pCTR (position-free): Spearman with x-only E_z a"),
    ("cvr_error_ctr_error_correlation", "correlation of pCVR and pCTR logit errors"),
  ]
  summary = result["summary"]
  references = [
    result["oracles"]["x_only_click_space"],
    result["oracles"]["x_only_entire_space"],
    result["truth"],
  ]
  lines = [
    f"world: intent strength {result['intent_strength']:g}, conversion bias "
    f"{result.get('conversion_bias', -2.95):g}, conversion click match "
    f"{result.get('conversion_click_match', 0.3):g}, {result['requests_per_span']} requests "
    f"per span; train {result['train_rows']} rows, {result['train_clicks']} clicks, "
    f"{result['train_conversions']} conversions "
    f"(CVR given click {result['train_conversions'] / max(result['train_clicks'], 1):.3f})",
    "",
    f"| metric (mean ± std, {len(result['seeds'])} seeds) | naive CVR | ESMM | "
    "ESMM − naive | x-only P(conv given click, x) | x-only E_z p_conv(x, z) | truth |",
    "|---|---|---|---|---|---|---|",
  ]
  for key, label in rows:
    naive, esmm = summary["naive"].get(key), summary["esmm"].get(key)
    cell = lambda m: "" if m is None else f"{m['mean']:.4f} ± {m['std']:.4f}"
    gap = "" if naive is None or esmm is None else f"{esmm['mean'] - naive['mean']:+.4f}"
    references_cells = [f"{r[key]:.4f}" if key in r else "" for r in references]
    lines.append(
      f"| {label} | {cell(naive)} | {cell(esmm)} | {gap} | " + " | ".join(references_cells) + " |"
    )
  return "\n".join(lines)


def oracle_sweep(spec: RankingSpec, strengths: Sequence[float]) -> str:
  """Without training: per intent strength, the x-only oracles on the eval rows
  of every span (what selection bias alone can cost a perfect model)."""
  lines = [
    "| intent strength | CTR | CVR given click | mean truth, all / clicked | "
    "x-only P(conv given click, x): entire-space AUC / mean | x-only E_z p_conv: "
    "entire-space AUC / mean | truth AUC | Spearman of the two x-only targets |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for strength in strengths:
    swept = spec.replace(data={"params": {**spec.data.params, "intent_strength": strength}})
    params = simulator.SimParams.from_spec(swept)
    world = simulator.make_world(params)
    parts = [
      simulator.simulate_span(world, params, span) for span in range(1, params.num_spans + 1)
    ]
    column = lambda name: np.concatenate(
      [np.asarray(p["columns"][name])[p["is_eval"]] for p in parts]
    ).astype(np.float64)
    targets = simulator_truth.x_only_conversion_targets(
      {
        name: np.concatenate([p["hidden"][name][p["is_eval"]] for p in parts])
        for name in parts[0]["hidden"]
      },
      strength,
    )
    truth, click = column(TRUTH), column(CLICK) == 1
    outcomes = np.random.default_rng(OUTCOME_SEED).random(len(truth)) < truth
    auc = lambda prediction: roc_auc_score(outcomes, prediction)
    lines.append(
      f"| {strength:g} | {click.mean():.4f} | {column(CONVERSION)[click].mean():.4f} | "
      f"{truth.mean():.4f} / {truth[click].mean():.4f} | "
      f"{auc(targets['click_space']):.4f} / {targets['click_space'].mean():.4f} | "
      f"{auc(targets['entire_space']):.4f} / {targets['entire_space'].mean():.4f} | "
      f"{auc(truth):.4f} | "
      f"{spearmanr(targets['click_space'], targets['entire_space']).correlation:.4f} |"
    )
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--requests-per-span", type=int, default=10000)
  parser.add_argument(
    "--intent-strength",
    type=float,
    help="the simulator's hidden intent strength (default: the spec's)",
  )
  parser.add_argument(
    "--conversion-bias",
    type=float,
    help="the simulator's conversion bias gamma (default -2.95: CVR given click about 10 %%); "
    "lower makes conversions sparse",
  )
  parser.add_argument(
    "--conversion-click-match",
    type=float,
    help="the simulator's weight w1 of the click's user-item match in the conversion "
    "logit (default 0.3); higher makes conversion share the click's factors",
  )
  parser.add_argument(
    "--esmm-monitor",
    default="val_loss",
    help="ESMM's early-stopping quantity: val_loss (the spec-weighted "
    "sum, dominated by the click loss) or val_conversion_loss (its pCTCVR "
    "loss); the naive model's val_loss is its conversion loss",
  )
  parser.add_argument(
    "--out",
    help="write the full result as JSON here (rendered by "
    "python -m benchmarks.esmm_report FILE --out page.html)",
  )
  parser.add_argument(
    "--oracle-sweep",
    type=float,
    nargs="+",
    metavar="STRENGTH",
    help="print the x-only oracles at these intent strengths, no training",
  )
  args = parser.parse_args(argv)
  started = time.perf_counter()
  if args.oracle_sweep:
    print(oracle_sweep(load_spec("synthetic"), args.oracle_sweep))
    return 0

  spec = load_spec("synthetic")
  params = {**spec.data.params, "requests_per_span": args.requests_per_span}
  for knob in ("intent_strength", "conversion_bias", "conversion_click_match"):
    if getattr(args, knob) is not None:
      params[knob] = getattr(args, knob)
  spec = spec.replace(data={"params": params})
  with tempfile.TemporaryDirectory(prefix="esmm-") as data_dir:
    simulator.simulate(spec, data_dir)
    train_rows = read_split(spec, Path(data_dir), "train")
    test = read_split(spec, Path(data_dir), "eval")
  holdout = validation_mask(train_rows["request_id"])
  fit_rows, validation_rows = take(train_rows, ~holdout), take(train_rows, holdout)
  mapping = FeatureMapping.fit(spec, fit_rows)
  test_features = mapping.transform(test)
  oracle_targets = x_only_oracles(spec, test)
  outcomes = np.random.default_rng(OUTCOME_SEED).random(len(test[TRUTH])) < test[TRUTH]

  models = {
    "esmm": (esmm_spec(spec), lambda rows: np.ones(len(rows[CLICK]), bool)),
    "naive": (naive_spec(spec), lambda rows: rows[CLICK] == 1),
  }
  runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in models}
  for seed in args.seeds:
    for name, (model_spec, rows_of) in models.items():
      fit = take(fit_rows, rows_of(fit_rows))
      validation = take(validation_rows, rows_of(validation_rows))
      model, epochs = train(
        model_spec,
        mapping.vocab_sizes(),
        (mapping.transform(fit), labels_of(model_spec, fit)),
        (mapping.transform(validation), labels_of(model_spec, validation)),
        seed,
        args.esmm_monitor if name == "esmm" else "val_loss",
      )
      predictions = predict(model, test_features)
      metrics = {
        **cvr_metrics(predictions[CONVERSION], test, outcomes),
        **diagnostics(predictions, oracle_targets),
      }
      metrics["epochs"] = float(epochs)
      runs[name].append(metrics)
      print(
        f"seed {seed} {name:>5}: trained on {len(fit[CLICK])} rows, "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
        flush=True,
      )

  truth = cvr_metrics(test[TRUTH].astype(np.float64), test, outcomes)
  oracles = {
    f"x_only_{name}": cvr_metrics(oracle_targets[name], test, outcomes)
    for name in ("click_space", "entire_space")
  }
  result = {
    "intent_strength": simulator.SimParams.from_spec(spec).intent_strength,
    "conversion_bias": simulator.SimParams.from_spec(spec).conversion_bias,
    "conversion_click_match": simulator.SimParams.from_spec(spec).conversion_click_match,
    "requests_per_span": args.requests_per_span,
    "esmm_monitor": args.esmm_monitor,
    "oracles": oracles,
    "seeds": args.seeds,
    "train_rows": int(len(fit_rows[CLICK])),
    "train_clicks": int(fit_rows[CLICK].sum()),
    "train_conversions": int(fit_rows[CONVERSION].sum()),
    "test_rows": int(len(test[CLICK])),
    "test_clicks": int(test[CLICK].sum()),
    "truth": truth,
    "runs": runs,
    "summary": {name: summarize(r) for name, r in runs.items()},
    "paper_ali_ccp_cvr_auc": PAPER,
    "seconds": time.perf_counter() - started,
  }
  print(markdown(result))
  if args.out:
    Path(args.out).write_text(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
