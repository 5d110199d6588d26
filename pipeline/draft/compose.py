"""`mtlrank init`'s drafting: the data's layout, a sample and its TFDV
statistics, then the decisions (pipeline/draft/decide.py) assembled into the
spec's sections, checked by the spec's own loader and TFX's span matching
before anything is written."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Dict, List, Sequence

import numpy as np

from models.spec import RankingSpec, parse_spec
from pipeline.draft import decide, layout, sample
from pipeline.draft.decide import Decision, Draft

# Sampled rows from which the data counts as large: wider model, more epochs.
LARGE_DATA_ROWS = 50_000
# A drafted training window: at most a week of daily spans.
MAX_NUM_SPANS = 7


class DraftError(ValueError):
  """The data cannot be drafted from; the message says what to give instead."""


@dataclasses.dataclass(frozen=True)
class Drafted:
  """The drafted spec (YAML-ready dict), the loaded spec, and the decisions."""

  raw: Dict[str, Any]
  spec: RankingSpec
  draft: Draft
  layout: layout.Layout
  sample: sample.Sample


def draft_spec(
  data: str,
  labels: Sequence[str],
  columns: Sequence[str] = (),
  file_format: str | None = None,
  name: str | None = None,
  sample_rows: int = sample.DEFAULT_SAMPLE_ROWS,
  num_spans: int | None = None,
) -> Drafted:
  """Drafts a spec for the files `data` names, with `labels` as the tasks'
  labels; raises DraftError (or LayoutError, SampleError) naming what is wrong."""
  found = layout.find_layout(data, file_format)
  if columns and found.format != "csv":
    raise DraftError(f"--columns names a headerless CSV's fields; the data is {found.format}")
  if found.format == "csv" and not columns and sample.looks_like_data(found.files[0]):
    raise DraftError(
      f"{found.files[0]}: the first line looks like data, not a header: give the fields' "
      "names in order with --columns a,b,c"
    )
  rows = sample.read_sample(found.files, found.format, columns, sample_rows)
  missing = [label for label in labels if label not in rows.columns]
  if missing:
    raise DraftError(
      f"label(s) {', '.join(missing)} not in the data; its columns: {', '.join(rows.columns)}"
    )
  strings = [label for label in labels if rows.stats[label].dtype == "string"]
  if strings:
    raise DraftError(
      f"label(s) {', '.join(strings)} hold text; a label is a number (0/1 or a value)"
    )
  drafted = assemble(found, rows, list(labels), name=name, columns=columns)
  raw = drafted.raw
  spec = _load(raw)
  spans = _count_spans(spec)
  if num_spans is not None and not 1 <= num_spans <= len(spans):
    raise DraftError(f"--num-spans {num_spans}: the files hold {len(spans)} span(s)")
  window = num_spans or min(len(spans), MAX_NUM_SPANS)
  if spans != [0] and window > 1:
    # Beside the pattern, before the split, as the bundled specs write it.
    data_section = raw["data"]
    split = data_section.pop("split")
    data_section["num_spans"] = window
    data_section["split"] = split
  drafted.draft.decisions.insert(
    0,
    Decision(
      "data",
      f"{found.format} files under {raw['data']['root']}"
      + (f", pattern {raw['data']['pattern']!r}" if "pattern" in raw["data"] else ""),
      _spans_why(found, spans, window),
    ),
  )
  return Drafted(raw, _load(raw), drafted.draft, found, rows)


def _load(raw: Dict[str, Any]) -> RankingSpec:
  """The spec's own loader on the draft: a draft it refuses is a bug here."""
  return parse_spec(raw, origin="drafted spec")


def _count_spans(spec: RankingSpec) -> List[int]:
  """The spans TFX's driver will find (span 0: a pattern without a span)."""
  from pipeline.data import files as files_source

  return sorted(next(iter(files_source.span_files(spec).values())))


def _spans_why(found: layout.Layout, spans: List[int], window: int) -> str:
  files = f"{len(found.files)} file(s)"
  if spans == [0]:
    return f"{files}, no day or span in their paths: one span"
  first, last = spans[0], spans[-1]
  unit = "days since 1970-01-01" if found.placeholder == "{YYYY}{MM}{DD}" else "spans"
  return (
    f"{files} in {len(spans)} span(s) ({unit} {first}..{last}) by {found.placeholder}; "
    f"trains on the latest {window}"
  )


@dataclasses.dataclass(frozen=True)
class _Assembled:
  raw: Dict[str, Any]
  draft: Draft


def assemble(
  found: layout.Layout,
  rows: sample.Sample,
  labels: List[str],
  name: str | None = None,
  columns: Sequence[str] = (),
) -> _Assembled:
  """The spec's sections from the sample: features, tasks, split, evaluation,
  model, training and serving, with every decision and its reason."""
  decisions: List[Decision] = []
  features, reasons = [], {}
  for column, stats in rows.stats.items():
    if column in labels:
      continue
    feature, why = decide.column_feature(stats)
    if feature is None:
      decisions.append(Decision(f"column {column!r}", "left out", why))
      continue
    features.append(feature)
    reasons[feature["name"]] = why
    decisions.append(Decision(f"column {column!r}", _kind_text(feature), why))
  if not any(f["kind"] in ("categorical", "numeric") for f in features):
    raise DraftError("no column can be a model input (see the reasons above)")
  tasks, task_decisions = decide.detect_tasks(rows, labels)
  decisions += task_decisions
  split, split_decision = decide.choose_split(features, rows.stats)
  if found.split_patterns:
    patterns = dict(found.split_patterns)
    split = {"kind": "patterns", **patterns}
    split_decision = Decision(
      "split",
      "patterns: " + ", ".join(f"{name} {pattern!r}" for name, pattern in patterns.items()),
      "the files are already split by name"
      + ("" if "validation" in patterns else "; validation: 10% of the train rows, by hash"),
    )
  decisions.append(split_decision)
  slices, slice_decision = decide.choose_slices(features, rows.stats)
  decisions.append(slice_decision)
  large = rows.rows >= LARGE_DATA_ROWS
  root_task = _root_binary_task(tasks)
  model, model_decision = _model(tasks, features, root_task, large)
  decisions.append(model_decision)
  training = (
    {"batch_size": 512, "epochs": 5, "early_stopping_patience": 2}
    if large
    else {"batch_size": 128, "epochs": 2, "early_stopping_patience": 0}
  )
  decisions.append(
    Decision(
      "training",
      f"batch {training['batch_size']}, {training['epochs']} epochs",
      f"{rows.rows} rows sampled" + ("" if large else ": small data, a short budget"),
    )
  )
  evaluation, suggested, eval_decisions = _evaluation(
    rows, tasks, features, slices, root_task, large
  )
  decisions += eval_decisions
  binary = [t["name"] for t in tasks if t["type"] == "binary"]
  # The spec's serving.score field (keyword form: "score" as a literal key is
  # the fused output's name, which tests/house keeps in contract/).
  exponents = {t: 1.0 for t in binary} or {tasks[0]["name"]: 1.0}
  serving = dict(score=exponents, classify_task=root_task or tasks[0]["name"])
  decisions.append(
    Decision(
      "serving",
      "score = " + " * ".join(exponents),
      "the product of the binary tasks' probabilities (a conditional task's is given its parent)"
      if binary
      else "the only task",
    )
  )
  raw = {
    "name": name or _spec_name(found),
    "description": f"Drafted by mtlrank init from {rows.rows} sampled rows; review before use.",
    "data": {
      "source": "files",
      "format": found.format,
      "root": str(found.root),
      **({} if found.split_patterns else {"pattern": found.pattern}),
      "split": split,
    },
    "features": features,
    "tasks": tasks,
    "model": model,
    "training": training,
    "evaluation": evaluation,
    "serving": serving,
  }
  if columns:
    raw["data"]["columns"] = list(columns)
  draft = Draft(
    features, tasks, split, evaluation, model, training, serving, suggested, decisions, reasons
  )
  return _Assembled(raw, draft)


def _kind_text(feature: Dict[str, Any]) -> str:
  kind = feature["kind"]
  if kind == "categorical":
    return f"categorical, {feature.get('encoding', 'vocabulary')}"
  if kind == "numeric":
    return f"numeric {feature['dtype']}, {feature['transform']}"
  return kind


def _root_binary_task(tasks: List[Dict[str, Any]]) -> str | None:
  return next((t["name"] for t in tasks if t["type"] == "binary" and "parent" not in t), None)


def _model(tasks, features, root_task, large: bool):
  model: Dict[str, Any] = {
    "architecture": "single_task" if len(tasks) == 1 else ("mmoe" if large else "shared_bottom"),
    "embedding_dim": 8 if large else 4,
    "expert_units": [64] if large else [16],
    "tower_units": [32] if large else [8],
  }
  if model["architecture"] == "mmoe":
    model["num_experts"] = 4
  why = (
    "one task"
    if len(tasks) == 1
    else (
      f"{len(tasks)} tasks, large data: experts per task"
      if large
      else f"{len(tasks)} tasks, small data: one shared bottom (try mmoe, ple or esmm with more)"
    )
  )
  if any(f["kind"] == "position" for f in features) and root_task:
    model["position_bias"] = True
    model["position_bias_task"] = root_task
    why += f"; a position-bias tower on {root_task} (training only)"
  return model, Decision("model", model["architecture"], why)


def _evaluation(rows, tasks, features, slices, root_task, large: bool):
  """Slices, the query key, the one active sanity threshold (TFMA blesses no
  model without a threshold) and the suggested release thresholds."""
  decisions = []
  evaluation: Dict[str, Any] = {
    "slices": slices,
    "min_slice_size": 200 if large else max(10, rows.rows // 100),
  }
  request = next(
    (
      f["name"]
      for f in features
      if f["kind"] == "identifier" and decide.is_request_id(f.get("column", f["name"]))
    ),
    None,
  )
  if request:
    evaluation["query_key"] = request
    decisions.append(
      Decision("evaluation.query_key", request, "NDCG and grouped AUC of the score per request")
    )
  suggested: Dict[str, Dict[str, Dict[str, float]]] = {}
  for task in tasks:
    values = sample.label_values(rows, task["label"])
    if task.get("parent"):
      parent = next(t for t in tasks if t["name"] == task["parent"])
      values = values[sample.label_values(rows, parent["label"]) == 1]
    values = values[~np.isnan(values)]
    if task["type"] == "binary":
      rate = float(values.mean()) if len(values) else 0.5
      suggested[task["name"]] = {
        "auc": {"value": 0.6, "max_regression": 0.01},
        "log_loss": {"value": round(_entropy(rate), 4)},
      }
    else:
      variance = float(values.var()) if len(values) else 1.0
      suggested[task["name"]] = {
        "mse": {"value": round(variance, 6), "max_regression": round(0.05 * variance, 6)}
      }
  if root_task:
    evaluation["thresholds"] = {root_task: {"auc": {"value": 0.0}}}
  else:
    first = tasks[0]["name"]
    ceiling = suggested[first]["mse"]["value"]
    evaluation["thresholds"] = {first: {"mse": {"value": round(100 * max(ceiling, 1e-6), 6)}}}
  decisions.append(
    Decision(
      "evaluation.thresholds",
      "a sanity floor only; release thresholds suggested as comments",
      "TFMA blesses no model without a threshold; suggested: AUC 0.6, log loss at the base "
      "rate's entropy, MSE at the label's variance (what predicting the mean scores)",
    )
  )
  return evaluation, suggested, decisions


def _entropy(rate: float) -> float:
  """The log loss of always predicting the base rate: a model must beat it."""
  rate = min(max(rate, 1e-6), 1 - 1e-6)
  return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


def _spec_name(found: layout.Layout) -> str:
  name = re.sub(r"\W+", "_", found.root.name).strip("_").lower()
  return name or "drafted"
