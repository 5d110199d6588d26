"""The drafting decisions of `mtlrank init`, from a sample's statistics: each
column's kind, the tasks, the split, the slices, and small-data training
defaults. Every decision is a `Decision` whose `why` is printed, one line
each, and written beside it in the drafted YAML.

The spec's schema requires every declared column in every row with one value
of its type, and positions in 1..max_value (pipeline/schema.py): a column
missing in some sampled rows is left out rather than declared, so that the
drafted spec runs as it is."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from pipeline.draft.sample import ColumnStats, Sample, label_values

# At most this many distinct values in the sample: a TFT vocabulary; more: hashing.
VOCABULARY_MAX_DISTINCT = 100
# An integer column with at most this many distinct values is a category (hour, level).
INT_CATEGORY_MAX_DISTINCT = 32
# A numeric column whose 99th percentile lies this many interquartile ranges
# above the median has a heavy tail (a normal: 1.7; a lognormal of sigma 0.8: 4.8).
HEAVY_TAIL_IQRS = 3.0
# Categorical features with 2..SLICE_MAX_DISTINCT values are slice candidates.
SLICE_MAX_DISTINCT = 10
MAX_SLICES = 3
EVAL_PERCENT = 20
# The split's share in validation (early stopping): a tenth of the rest.
VALIDATION_PERCENT = 8

_REQUEST = re.compile(
  r"(?i)^(request|req|query|search|session|impression|imp|event|page_?view|pv)_?id$"
)
_USER = re.compile(r"(?i)^(user|uid|customer|member|account)(_?id)?$|^uid$")
_ID = re.compile(r"(?i)(^id$|_?id$|^uid$)")
_TIME = re.compile(r"(?i)(time|timestamp|^ts$|_ts$|^ts_|epoch|datetime)")
_POSITION = re.compile(r"(?i)^(position|pos|rank|slot|display_position|display_rank)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Epoch seconds of 2001-09-09 .. 2096-10-02, or the same in milliseconds.
_EPOCH_SECONDS = (1e9, 4e9)
_EPOCH_MILLIS = (1e12, 4e12)


@dataclasses.dataclass(frozen=True)
class Decision:
  """One choice of the draft: what (`field`), the choice, and why."""

  field: str
  choice: str
  why: str

  def line(self) -> str:
    return f"{self.field}: {self.choice} - {self.why}"


@dataclasses.dataclass
class Draft:
  """The drafted spec as YAML-ready sections, with the decisions behind it."""

  features: List[Dict[str, Any]]
  tasks: List[Dict[str, Any]]
  split: Dict[str, Any]
  evaluation: Dict[str, Any]
  model: Dict[str, Any]
  training: Dict[str, Any]
  serving: Dict[str, Any]
  # Commented suggestions for the release thresholds: task -> metric -> bounds.
  suggested_thresholds: Dict[str, Dict[str, Dict[str, float]]]
  decisions: List[Decision]
  # Why each feature (by name) was chosen, written beside it in the YAML.
  feature_reasons: Dict[str, str]


def feature_name(column: str) -> str:
  """The feature name of a column: the column, or an identifier made of it
  (Ali-CCP's `101` becomes `f_101`, its column kept)."""
  if _NAME.match(column):
    return column
  return "f_" + re.sub(r"\W", "_", column)


def is_request_id(column: str) -> bool:
  """A request (query, search, session, impression) id, by its name: the
  rows of one ranked list."""
  return bool(_REQUEST.match(column))


def _is_epoch(stats: ColumnStats) -> bool:
  low, high = stats.min, stats.max
  return any(lo <= low and high <= hi for lo, hi in (_EPOCH_SECONDS, _EPOCH_MILLIS))


def is_timestamp(stats: ColumnStats) -> bool:
  """A numeric column of epoch seconds or milliseconds, named like a time or
  with almost one value per row."""
  if stats.dtype == "string" or not stats.present or not _is_epoch(stats):
    return False
  return bool(_TIME.search(stats.name)) or stats.distinct >= 0.5 * stats.present


def _tail_iqrs(stats: ColumnStats) -> Tuple[float, float]:
  """How far the 99th and 1st percentiles lie from the median, in IQRs (or
  standard deviations where the IQR is 0)."""
  spread = stats.percentile(75) - stats.percentile(25)
  if spread <= 0:
    spread = stats.std
  if spread <= 0:
    return 0.0, 0.0
  median = stats.percentile(50)
  return (stats.percentile(99) - median) / spread, (median - stats.percentile(1)) / spread


def column_feature(stats: ColumnStats) -> Tuple[Dict[str, Any] | None, str]:
  """The feature declaration of one non-label column (None: left out), and why."""
  name, column = feature_name(stats.name), stats.name
  base: Dict[str, Any] = {"name": name} if name == column else {"name": name, "column": column}
  n, distinct = stats.present, stats.distinct
  if n == 0:
    return None, "no value in the sample"
  if stats.missing:
    share = stats.missing / stats.rows
    return None, (
      f"missing in {stats.missing} of {stats.rows} rows ({share:.0%}); the spec requires every "
      "declared column in every row: fill it upstream to use it"
    )
  if distinct == 1:
    value = stats.top_values[0] if stats.top_values else f"{stats.min:g}"
    return None, f"constant ({value}): no signal"
  if is_request_id(column):
    return {**base, "kind": "identifier", "dtype": stats.dtype}, (
      f"a request id ({distinct} distinct in {n} rows): carried for the split and the "
      "per-request ranking metrics, never a model input"
    )
  if is_timestamp(stats):
    return {**base, "kind": "identifier", "dtype": stats.dtype}, (
      f"a timestamp (epoch {'ms' if stats.min >= _EPOCH_MILLIS[0] else 's'}, "
      f"{int(stats.min)}..{int(stats.max)}): carried, never a model input"
    )
  if _POSITION.match(column) and stats.dtype == "int":
    if stats.min >= 1 and stats.max <= 1000:
      return {**base, "kind": "position", "dtype": "int", "max_value": int(stats.max)}, (
        f"the display position (1..{int(stats.max)}): read only by the position-bias tower "
        "in training, never by served scores"
      )
    return {**base, "kind": "identifier", "dtype": "int"}, (
      f"a position named so but in {int(stats.min)}..{int(stats.max)}; the spec's positions are "
      "1..max_value: carried only (shift it by one upstream to use it)"
    )
  if stats.dtype == "string" and distinct >= 0.95 * n:
    return {**base, "kind": "identifier", "dtype": "string"}, (
      f"unique per row ({distinct} distinct in {n} rows): a row id, nothing to learn"
    )
  if stats.dtype == "string" or (
    stats.dtype == "int"
    and (distinct <= INT_CATEGORY_MAX_DISTINCT or _ID.search(column) or is_label_encoded(stats))
  ):
    return _categorical(base, stats)
  return _numeric(base, stats)


def is_label_encoded(stats: ColumnStats) -> bool:
  """Integer codes of a category (Ali-CCP's and AliExpress's fields): from 0
  or 1 up, nearly every code in the range present."""
  codes = stats.max - stats.min + 1
  return stats.dtype == "int" and stats.min in (0, 1) and stats.distinct >= 0.9 * codes


def _categorical(base: Dict[str, Any], stats: ColumnStats) -> Tuple[Dict[str, Any], str]:
  declared = {**base, "kind": "categorical"}
  if stats.dtype != "string":
    declared["dtype"] = stats.dtype
  what = (
    "an id"
    if _ID.search(stats.name)
    else "strings"
    if stats.dtype == "string"
    else f"integer codes {stats.min:g}..{stats.max:g}, nearly all present"
    if stats.distinct > INT_CATEGORY_MAX_DISTINCT
    else "integers"
  )
  if stats.distinct <= VOCABULARY_MAX_DISTINCT:
    return declared, (
      f"{what}, {stats.distinct} distinct in {stats.present} rows (<= "
      f"{VOCABULARY_MAX_DISTINCT}): a vocabulary"
    )
  buckets = int(min(max(4 * stats.distinct, 100), 100_000))
  return {**declared, "encoding": "hash", "hash_buckets": buckets}, (
    f"{what}, {stats.distinct} distinct in {stats.present} rows (> {VOCABULARY_MAX_DISTINCT}; "
    f"more will come): hashed into {buckets} buckets (4x the distinct values seen)"
  )


def _numeric(base: Dict[str, Any], stats: ColumnStats) -> Tuple[Dict[str, Any], str]:
  declared = {**base, "kind": "numeric", "dtype": stats.dtype}
  if stats.non_finite:
    declared["fill"] = round(stats.percentile(50), 6)
  upper, lower = _tail_iqrs(stats)
  shape = f"median {stats.percentile(50):.4g}, p99 {stats.percentile(99):.4g}"
  filled = f"; {stats.non_finite} NaN/inf filled with the median" if stats.non_finite else ""
  if upper > HEAVY_TAIL_IQRS and stats.min >= 0:
    return {**declared, "transform": "log_zscore"}, (
      f"heavy right tail ({shape}: p99 {upper:.1f} IQRs above the median, no negative): "
      f"log1p then z-score{filled}"
    )
  if max(upper, lower) > HEAVY_TAIL_IQRS:
    return {**declared, "transform": "bucketize", "num_buckets": 10}, (
      f"heavy tails on a signed column ({shape}, p1 {stats.percentile(1):.4g}): 10 quantile "
      f"buckets{filled}"
    )
  return {**declared, "transform": "zscore"}, (
    f"{stats.distinct} distinct values, no heavy tail ({shape}): z-score{filled}"
  )


def detect_tasks(
  sample: Sample, labels: Sequence[str]
) -> Tuple[List[Dict[str, Any]], List[Decision]]:
  """Binary or regression by each label's values; a parent where a label is
  positive (non-zero) only where a binary label is (the narrowest such)."""
  values = {label: label_values(sample, label) for label in labels}
  kinds: Dict[str, str] = {}
  decisions = []
  for label in labels:
    stats = sample.stats[label]
    v = values[label][~np.isnan(values[label])]
    if stats.dtype == "int" and set(np.unique(v)) <= {0.0, 1.0}:
      kinds[label] = "binary"
      why = f"values in {{0, 1}}, positive rate {v.mean():.3f} over {len(v)} rows"
    else:
      kinds[label] = "regression"
      why = f"{stats.distinct} distinct {stats.dtype} values in {v.min():g}..{v.max():g}"
      if stats.dtype == "int":
        why += (
          "; WARNING: the files hold integers, a regression label is read as float: "
          "write it with a decimal point or DataGate will stop the run on its type"
        )
      if v.min() < 0:
        why += "; WARNING: negative values, the spec's regression labels are >= 0"
    if stats.missing:
      why += f"; WARNING: missing in {stats.missing} rows (every row needs a label)"
    decisions.append(Decision(f"task {label!r}", kinds[label], why))
  tasks = []
  for label in labels:
    task: Dict[str, Any] = {"name": feature_name(label), "label": label, "type": kinds[label]}
    parent, why = _parent(label, values, kinds)
    if parent:
      task["parent"] = feature_name(parent)
      decisions.append(Decision(f"task {label!r}", f"conditional on {parent!r}", why))
    if kinds[label] == "regression":
      stats = sample.stats[label]
      upper, _ = _tail_iqrs(stats)
      if stats.min >= 0 and upper > HEAVY_TAIL_IQRS:
        task["label_transform"] = "log1p"
        task["loss"] = "huber"
        decisions.append(
          Decision(
            f"task {label!r}",
            "label_transform log1p, huber loss",
            f"heavy right tail (p99 {upper:.1f} IQRs above the median)",
          )
        )
    tasks.append(task)
  return tasks, decisions


def _parent(label: str, values: Mapping[str, np.ndarray], kinds: Mapping[str, str]):
  """The binary label this one is conditional on: positive wherever this one
  is, and negative on some rows (a proper superset); the one with the fewest
  positives (purchase given cart, not given click)."""
  mine = np.nan_to_num(values[label]) != 0
  if not mine.any():
    return None, ""
  best, best_count = None, math.inf
  for other, kind in kinds.items():
    if other == label or kind != "binary":
      continue
    theirs = np.nan_to_num(values[other]) == 1
    if not (mine <= theirs).all():
      continue
    if kinds[label] == "binary" and theirs.sum() <= mine.sum():
      continue  # the same label twice: neither is the other's parent
    if theirs.sum() < best_count:
      best, best_count = other, int(theirs.sum())
  if best is None:
    return None, ""
  return best, (
    f"{label} is non-zero in {int(mine.sum())} rows, all of them among the {best_count} where "
    f"{best} is 1: its label exists only after a {best}"
  )


_VALIDATION = {"validation_percent": VALIDATION_PERCENT}


def choose_split(
  features: Sequence[Dict[str, Any]], stats: Mapping[str, ColumnStats]
) -> Tuple[Dict[str, Any], Decision]:
  """A hash split on a request id, else on a user id; else a time split on a
  timestamp (validation the slice just before eval); else a hash split on
  the column with the most distinct values."""
  columns = [f.get("column", f["name"]) for f in features]
  request = next((c for c in columns if is_request_id(c)), None)
  if request:
    return {
      "kind": "hash",
      "column": request,
      "eval_percent": EVAL_PERCENT,
      **_VALIDATION,
    }, Decision(
      "split",
      f"hash on {request!r}, {EVAL_PERCENT}% eval, {VALIDATION_PERCENT}% validation",
      "a request id: all impressions of one request on one side",
    )
  user = next((c for c in columns if _USER.match(c)), None)
  if user:
    return {"kind": "hash", "column": user, "eval_percent": EVAL_PERCENT, **_VALIDATION}, Decision(
      "split",
      f"hash on {user!r}, {EVAL_PERCENT}% eval, {VALIDATION_PERCENT}% validation",
      "no request id; a user id: all rows of one user on one side",
    )
  timestamp = next((c for c in columns if is_timestamp(stats[c])), None)
  if timestamp:
    return {
      "kind": "time",
      "column": timestamp,
      "eval_percent": EVAL_PERCENT,
      **_VALIDATION,
    }, Decision(
      "split",
      f"time on {timestamp!r}, the latest {EVAL_PERCENT}% eval, the {VALIDATION_PERCENT}% "
      "before it validation",
      "no request or user id; a timestamp: eval on the span's latest rows",
    )
  widest = max(columns, key=lambda c: stats[c].distinct)
  return {"kind": "hash", "column": widest, "eval_percent": EVAL_PERCENT, **_VALIDATION}, Decision(
    "split",
    f"hash on {widest!r}, {EVAL_PERCENT}% eval, {VALIDATION_PERCENT}% validation",
    f"no request id, user id or timestamp; {widest!r} has the most distinct values "
    f"({stats[widest].distinct}): check that rows sharing it belong together",
  )


def choose_slices(
  features: Sequence[Dict[str, Any]], stats: Mapping[str, ColumnStats]
) -> Tuple[List[str], Decision]:
  """Up to MAX_SLICES categorical features with 2..SLICE_MAX_DISTINCT values,
  fewest values first (each slice large enough to measure)."""
  candidates = [
    f
    for f in features
    if f["kind"] == "categorical"
    and not _ID.search(f.get("column", f["name"]))
    and 2 <= stats[f.get("column", f["name"])].distinct <= SLICE_MAX_DISTINCT
  ]
  candidates.sort(key=lambda f: (stats[f.get("column", f["name"])].distinct, f["name"]))
  chosen = [f["name"] for f in candidates[:MAX_SLICES]]
  if not chosen:
    return [], Decision(
      "slices", "none", f"no categorical feature with 2..{SLICE_MAX_DISTINCT} values"
    )
  counts = ", ".join(f"{n} ({stats[_column(features, n)].distinct} values)" for n in chosen)
  return chosen, Decision("slices", ", ".join(chosen), f"low-cardinality categoricals: {counts}")


def _column(features: Sequence[Dict[str, Any]], name: str) -> str:
  return next(f.get("column", f["name"]) for f in features if f["name"] == name)
