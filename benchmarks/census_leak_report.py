"""The census file's household-status leak, measured: the never-married rate
per value of the household-status columns, single-column AUCs (target
encoding fitted on train, measured on eval) for both tasks, and a
logistic-regression ablation (docs/data.md).

    python -m benchmarks.census_leak_report [--spec census] [--no-logistic]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

import numpy as np

from models.spec import RankingSpec, load_spec
from pipeline.data.census import (
  LABELS,
  eval_mask,
  parse_census,
  resolve_path,
)

LEAK_COLUMNS = ("det_hh_summ", "det_hh_fam_stat", "tax_filer_stat")


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC with ties counted as one half (exact for few distinct scores)."""
  labels = np.asarray(labels).astype(bool)
  values, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
  pos = np.bincount(inverse, weights=labels, minlength=len(values))
  neg = np.bincount(inverse, weights=~labels, minlength=len(values))
  neg_below = np.cumsum(neg) - neg
  n_pos, n_neg = pos.sum(), neg.sum()
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  return float((pos * neg_below).sum() + 0.5 * (pos * neg).sum()) / (n_pos * n_neg)


def _target_encoding(keys: np.ndarray, labels: np.ndarray, train: np.ndarray) -> np.ndarray:
  """Each row's score: the label rate of its key among the training rows (the
  overall training rate for a key unseen in training)."""
  values, inverse = np.unique(keys, return_inverse=True)
  counts = np.bincount(inverse[train], minlength=len(values))
  positives = np.bincount(inverse[train], weights=labels[train], minlength=len(values))
  prior = labels[train].mean()
  rate = np.where(counts > 0, positives / np.maximum(counts, 1), prior)
  return rate[inverse]


def leak_report(spec: RankingSpec, path: str | Path | None = None, logistic: bool = True) -> str:
  """Markdown tables: the never-married rate per value of the household-status
  columns, and single-column AUCs (target encoding fitted on train, measured on
  eval) for both tasks; with `logistic`, a logistic-regression ablation.
  `python -m benchmarks.census_leak_report` prints it."""
  path = resolve_path(path or spec.data.params["path"])
  eval_every = int(spec.data.params.get("eval_every", 5))
  wanted = {c: "string" for c in LEAK_COLUMNS + ("education", "sex", "class_worker")}
  wanted.update({"age": "float", "income_50k": "int", "is_never_married": "int"})
  columns = parse_census(path, wanted)
  never = columns["is_never_married"]
  income = columns["income_50k"]
  n = len(never)
  train = ~eval_mask(n, eval_every)
  strings = {
    c: np.array(columns[c].to_pylist(), dtype=object) for c in wanted if wanted[c] == "string"
  }
  age = columns["age"]
  lines = [
    f"Census-Income (KDD) test file, {n:,} rows; overall never-married rate "
    f"{100 * never.mean():.2f} %, income > 50K {100 * income.mean():.2f} %.",
    "",
  ]

  def rate_table(column: str, top: int | None = None) -> None:
    values, inverse = np.unique(strings[column], return_inverse=True)
    counts = np.bincount(inverse)
    rates = np.bincount(inverse, weights=never) / counts
    income_rates = np.bincount(inverse, weights=income) / counts
    order = np.argsort(-counts)
    shown = order if top is None else order[:top]
    lines.extend(
      [
        f"`{column}` ({len(values)} values"
        + (f", the {top} most frequent shown" if top and top < len(values) else "")
        + "):",
        "",
        f"| {column} | rows | never married | income > 50K |",
        "|---|---:|---:|---:|",
      ]
    )
    for i in shown:
      lines.append(
        f"| {values[i]} | {counts[i]:,} | {100 * rates[i]:.1f} % | {100 * income_rates[i]:.1f} % |"
      )
    lines.append("")

  rate_table("det_hh_summ")
  rate_table("det_hh_fam_stat", top=12)
  rate_table("tax_filer_stat")

  age_key = age.astype(np.int64).astype(str).astype(object)
  candidates = [
    ("age (each year a value)", age_key),
    ("det_hh_summ", strings["det_hh_summ"]),
    ("det_hh_fam_stat", strings["det_hh_fam_stat"]),
    ("tax_filer_stat", strings["tax_filer_stat"]),
    ("education", strings["education"]),
    ("age x det_hh_summ", age_key + "|" + strings["det_hh_summ"]),
    ("age x det_hh_fam_stat", age_key + "|" + strings["det_hh_fam_stat"]),
    ("age x tax_filer_stat", age_key + "|" + strings["tax_filer_stat"]),
  ]
  lines.extend(
    [
      "Single-column (and pair) AUCs on the eval split (rows i % "
      f"{eval_every} == {eval_every - 1}), each value scored by its label rate "
      "on the train split:",
      "",
      "| column(s) | never_married AUC | income AUC |",
      "|---|---:|---:|",
    ]
  )
  is_eval = ~train
  for name, keys in candidates:
    scores = {
      label: _target_encoding(keys, values, train)
      for label, values in (("never", never), ("income", income))
    }
    lines.append(
      f"| {name} | {auc(scores['never'][is_eval], never[is_eval]):.4f} | "
      f"{auc(scores['income'][is_eval], income[is_eval]):.4f} |"
    )
  lines.append("")
  if logistic:
    lines.extend(_logistic_ablation(spec, path, eval_every))
  return "\n".join(lines)


def _logistic_ablation(spec: RankingSpec, path: Path, eval_every: int) -> List[str]:
  """Per-task logistic regression on all the spec's features (one-hot
  categoricals, standardized log1p numerics), then without the household
  columns, then also without tax_filer_stat. Needs scikit-learn (installed
  with TFX's dependencies, not a dependency of mtlrank)."""
  try:
    # pylint: disable=g-import-not-at-top
    import scipy.sparse as sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder
  except ImportError:
    return ["(scikit-learn is not installed: no logistic-regression ablation)", ""]
  columns = parse_census(path, spec.raw_columns)
  labels = [c for c in spec.raw_columns if c in LABELS]
  is_eval = eval_mask(len(columns[labels[0]]), eval_every)
  train = ~is_eval
  features = [c for c in spec.raw_columns if c not in LABELS]
  variants = [
    ("all the spec's features", ()),
    ("without det_hh_summ, det_hh_fam_stat", ("det_hh_summ", "det_hh_fam_stat")),
    ("without those and tax_filer_stat", ("det_hh_summ", "det_hh_fam_stat", "tax_filer_stat")),
  ]
  out = [
    "Per-task logistic regression (one-hot categoricals, standardized log1p numerics; "
    "train split -> eval split AUC):",
    "",
    "| features | " + " | ".join(f"{label} AUC" for label in labels) + " |",
    "|---|" + "---:|" * len(labels),
  ]
  for name, excluded in variants:
    kept = [c for c in features if c not in excluded]
    cats = [c for c in kept if spec.raw_columns[c] == "string"]
    nums = [c for c in kept if spec.raw_columns[c] != "string"]
    cat_values = np.stack([np.array(columns[c].to_pylist(), dtype=object) for c in cats], 1)
    onehot = OneHotEncoder(handle_unknown="ignore").fit(cat_values[train])
    numbers = np.stack([np.log1p(columns[c].astype(np.float64)) for c in nums], 1)
    numbers = (numbers - numbers[train].mean(0)) / numbers[train].std(0)
    x = sparse.hstack([onehot.transform(cat_values), sparse.csr_matrix(numbers)]).tocsr()
    aucs = []
    for label in labels:
      y = columns[label]
      model = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], y[train])
      aucs.append(auc(model.predict_proba(x[is_eval])[:, 1], y[is_eval]))
    out.append(f"| {name} | " + " | ".join(f"{a:.4f}" for a in aucs) + " |")
  out.append("")
  return out


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.census_leak_report")
  parser.add_argument("--spec", default="census")
  parser.add_argument("--no-logistic", action="store_true", help="skip the logistic ablation")
  args = parser.parse_args(argv)
  print(leak_report(load_spec(args.spec), logistic=not args.no_logistic))
  return 0


if __name__ == "__main__":
  sys.exit(main())
