"""The spec's validation: reads a parsed YAML document section by section into
the typed objects of `models.spec`, naming the file and the field path in
every error, refusing unknown fields, and checking the rules that span
sections (labels are never features, conditional tasks form no cycle, the
architecture's options and task rules)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from contract import FUSED_SCORE_OUTPUT
from models import options
from models.spec import (
  BALANCING_STRATEGIES,
  CATEGORICAL_ENCODINGS,
  DTYPES,
  FEATURE_KINDS,
  INTERACTION_KINDS,
  NUMERIC_TRANSFORMS,
  REGRESSION_LABEL_TRANSFORMS,
  REGRESSION_LOSSES,
  TASK_TYPES,
  WITHOUT_PARENT_CHOICES,
  EvaluationSpec,
  FeatureSpec,
  InteractionSpec,
  ModelSpec,
  RankingSpec,
  ServingSpec,
  SpecError,
  TaskSpec,
  Threshold,
  TrainingSpec,
)
from models.spec_data import parse_data as _parse_data
from models.spec_fields import Fields as _Fields
from models.spec_truth import is_truth_metric, truth_metric_error


def parse(raw: Any, origin: str = "<spec>", source_path: str = "") -> RankingSpec:
  """Validates a parsed YAML document into a `RankingSpec`."""
  top = _Fields(raw, "", origin)
  name = top.get("name", str, required=True)
  description = top.get("description", str, default="")
  schedule = _parse_schedule(top, origin)
  retention, beam = _parse_ops(top, origin)

  features = []
  raw_features = top.get("features", list, required=True)
  for i, rf in enumerate(raw_features):
    features.append(_parse_feature(_Fields(rf, f"features[{i}]", origin)))
  _unique([f.name for f in features], "features", origin)

  tasks = []
  for i, rt in enumerate(top.get("tasks", list, required=True)):
    tasks.append(_parse_task(_Fields(rt, f"tasks[{i}]", origin)))
  if not tasks:
    raise SpecError(f"{origin}: tasks: at least one task is required")
  _unique([t.name for t in tasks], "tasks", origin)
  task_names = [t.name for t in tasks]
  feature_names = {f.name for f in features}
  for i, t in enumerate(tasks):
    if t.parent is not None:
      if t.parent not in task_names:
        raise SpecError(
          f"{origin}: tasks[{i}].parent: {t.parent!r} is not a task "
          f"(tasks: {', '.join(task_names)})"
        )
      if t.parent == t.name or not tasks[task_names.index(t.parent)].is_binary:
        raise SpecError(f"{origin}: tasks[{i}].parent: must name another, binary task")
    if t.label in feature_names:
      raise SpecError(
        f"{origin}: tasks[{i}].label: {t.label!r} is also declared as "
        "a feature; a label is never a model input"
      )
  _check_acyclic(tasks, origin)
  _check_truths(features, task_names, origin)
  # An unconditional task is its own task on every row, its declared parent
  # checked above: no mask, no TFMA weight, no ESMM product.
  tasks = [
    dataclasses.replace(t, parent=None) if t.without_parent == "unconditional" else t for t in tasks
  ]

  model = _parse_model(
    _Fields(top.get("model", dict, default={}), "model", origin), task_names, features
  )
  training = _parse_training(_Fields(top.get("training", dict, default={}), "training", origin))
  evaluation = _parse_evaluation(
    _Fields(top.get("evaluation", dict, default={}), "evaluation", origin),
    tasks,
    {f.name: f for f in features},
    {f.truth_of for f in features if f.truth_of is not None},
  )
  raw_columns = {f.column: f.dtype for f in features}
  raw_columns.update({t.label: "int" if t.is_binary else "float" for t in tasks})
  data = _parse_data(_Fields(top.get("data", dict, required=True), "data", origin), raw_columns)
  serving = _parse_serving(_Fields(top.get("serving", dict, default={}), "serving", origin), tasks)
  top.done()
  if training.early_stopping_task and training.early_stopping_task not in task_names:
    raise SpecError(
      f"{origin}: training.early_stopping_task: {training.early_stopping_task!r} is not a task "
      f"(tasks: {', '.join(task_names)})"
    )
  training = dataclasses.replace(
    training, selection=_parse_selection(training.selection, tasks, origin)
  )
  if model.position_bias and not any(f.kind == "position" for f in features):
    raise SpecError(f"{origin}: model.position_bias: needs a feature of kind 'position'")
  spec = RankingSpec(
    name=name,
    description=description,
    features=tuple(features),
    tasks=tuple(tasks),
    model=model,
    training=training,
    evaluation=evaluation,
    data=data,
    serving=serving,
    source_path=source_path,
    schedule=schedule,
    retention=retention,
    beam=beam,
  )
  try:
    # The architecture's and balancer's typed options, and ESMM's and AITM's
    # task rules: at load, before any component runs.
    options.check(spec)
  except ValueError as e:
    raise SpecError(f"{origin}: {e}") from None
  return spec


def _parse_schedule(top: _Fields, origin: str):
  """The optional `schedule` section (models/spec_schedule.py)."""
  from models.spec_schedule import parse_schedule

  raw = top.get("schedule", dict)
  return None if raw is None else parse_schedule(_Fields(raw, "schedule", origin))


def _parse_ops(top: _Fields, origin: str):
  """The optional `retention` and `beam` sections (models/spec_ops.py)."""
  from models.spec_ops import BeamSpec, parse_beam, parse_retention

  raw_retention, raw_beam = top.get("retention", dict), top.get("beam", dict)
  retention = (
    None if raw_retention is None else parse_retention(_Fields(raw_retention, "retention", origin))
  )
  beam = BeamSpec() if raw_beam is None else parse_beam(_Fields(raw_beam, "beam", origin))
  return retention, beam


def _unique(names: List[str], where: str, origin: str) -> None:
  seen = set()
  for i, n in enumerate(names):
    if n in seen:
      raise SpecError(f"{origin}: {where}[{i}].name: {n!r} is declared twice")
    seen.add(n)


def _check_acyclic(tasks: List[TaskSpec], origin: str) -> None:
  parents = {t.name: t.parent for t in tasks}
  for t in tasks:
    seen, node = set(), t.name
    while node is not None:
      if node in seen:
        raise SpecError(f"{origin}: tasks: parent chain of {t.name!r} is a cycle")
      seen.add(node)
      node = parents[node]


def _check_truths(features: List[FeatureSpec], task_names: List[str], origin: str) -> None:
  """Each `truth_of` names a task or the fused score, once."""
  targets = [*task_names, FUSED_SCORE_OUTPUT]
  seen: Dict[str, str] = {}
  for i, f in enumerate(features):
    if f.truth_of is None:
      continue
    if f.truth_of not in targets:
      raise SpecError(
        f"{origin}: features[{i}].truth_of: {f.truth_of!r} is not a task or "
        f"{FUSED_SCORE_OUTPUT!r} (tasks: {', '.join(task_names)})"
      )
    if f.truth_of in seen:
      raise SpecError(
        f"{origin}: features[{i}].truth_of: {f.truth_of!r} is already the truth of {seen[f.truth_of]!r}"
      )
    seen[f.truth_of] = f.name


# Feature fields read only for some kinds (or encodings, transforms): given for
# another, they would be silently ignored, so they are an error at load.
_FEATURE_FIELD_USE = {
  "encoding": lambda s: s.kind == "categorical",
  "top_k": lambda s: s.kind == "categorical" and s.encoding == "vocabulary",
  "num_oov_buckets": lambda s: s.kind == "categorical" and s.encoding == "vocabulary",
  "hash_buckets": lambda s: s.kind == "categorical" and s.encoding == "hash",
  "transform": lambda s: s.kind == "numeric",
  "num_buckets": lambda s: s.kind == "numeric" and s.transform == "bucketize",
  "embedding_dim": lambda s: s.is_model_input and s.is_embedded,
  "max_value": lambda s: s.kind == "position",
  "truth_of": lambda s: s.kind == "ground_truth",
}
_FEATURE_FIELD_USERS = {
  "encoding": "categorical features",
  "top_k": "vocabulary-encoded categorical features",
  "num_oov_buckets": "vocabulary-encoded categorical features",
  "hash_buckets": "hash-encoded categorical features",
  "transform": "numeric features",
  "num_buckets": "numeric features with transform bucketize",
  "embedding_dim": "embedded features (categorical, bucketized numeric)",
  "max_value": "the position feature",
  "truth_of": "ground_truth features",
}


def _parse_feature(f: _Fields) -> FeatureSpec:
  name = f.get("name", str, required=True)
  kind = f.get("kind", str, required=True, choices=FEATURE_KINDS)
  dtype = f.get(
    "dtype",
    str,
    default="int"
    if kind == "position"
    else ("float" if kind in ("numeric", "ground_truth") else "string"),
    choices=DTYPES,
  )
  spec = FeatureSpec(
    name=name,
    kind=kind,
    dtype=dtype,
    column=f.get("column", str, default=name),
    encoding=f.get("encoding", str, default="vocabulary", choices=CATEGORICAL_ENCODINGS),
    top_k=f.get("top_k", int),
    num_oov_buckets=f.get("num_oov_buckets", int, default=1),
    hash_buckets=f.get("hash_buckets", int, default=0),
    num_buckets=f.get("num_buckets", int, default=0),
    transform=f.get("transform", str, default="zscore", choices=NUMERIC_TRANSFORMS),
    embedding_dim=f.get("embedding_dim", int),
    max_value=f.get("max_value", int, default=0),
    fill=f.get("fill", float),
    drift=f.get("drift", float),
    truth_of=f.get("truth_of", str),
    description=f.get("description", str, default=""),
  )
  f.done()
  for key, used in _FEATURE_FIELD_USE.items():
    if key in f.raw and not used(spec):
      f.fail(f"only {_FEATURE_FIELD_USERS[key]} read {key}; this one is {kind}", key)
  if spec.fill is not None and (kind != "numeric" or not math.isfinite(spec.fill)):
    f.fail("fill is for numeric features and must be a finite number", "fill")
  if spec.drift is not None and (kind not in ("categorical", "numeric") or not 0 < spec.drift <= 1):
    f.fail("drift is a threshold in (0, 1] on a categorical or numeric feature", "drift")
  if kind == "categorical" and spec.encoding == "hash" and spec.hash_buckets < 1:
    f.fail("a hashed categorical feature needs hash_buckets >= 1", "hash_buckets")
  if kind == "numeric" and dtype == "string":
    f.fail("a numeric feature must have dtype int or float", "dtype")
  if kind == "numeric" and spec.transform == "bucketize" and spec.num_buckets < 2:
    f.fail("transform bucketize needs num_buckets >= 2", "num_buckets")
  if kind == "position" and (dtype != "int" or spec.max_value < 1):
    f.fail(
      "a position feature must have dtype int and max_value >= 1 (the slate size)", "max_value"
    )
  return spec


def _parse_task(f: _Fields) -> TaskSpec:
  task_type = f.get("type", str, default="binary", choices=TASK_TYPES)
  spec = TaskSpec(
    name=f.get("name", str, required=True),
    label=f.get("label", str, required=True),
    type=task_type,
    parent=f.get("parent", str),
    loss_weight=f.get("loss_weight", float, default=1.0),
    label_transform=f.get(
      "label_transform", str, default="none", choices=REGRESSION_LABEL_TRANSFORMS
    ),
    loss=f.get(
      "loss",
      str,
      default="bce" if task_type == "binary" else "mse",
      choices=("bce",) if task_type == "binary" else REGRESSION_LOSSES,
    ),
    min_positives=f.get("min_positives", int, default=1),
    without_parent=f.get("without_parent", str, default="stop", choices=WITHOUT_PARENT_CHOICES),
    description=f.get("description", str, default=""),
  )
  f.done()
  if spec.without_parent != "stop" and spec.parent is None:
    f.fail("only a task with a parent takes without_parent", "without_parent")

  if spec.loss_weight < 0 or not math.isfinite(spec.loss_weight):
    f.fail("must be a finite number >= 0", "loss_weight")
  if spec.is_binary and spec.label_transform != "none":
    f.fail("only regression tasks take a label_transform", "label_transform")
  if spec.min_positives < 0:
    f.fail("must be >= 0", "min_positives")
  return spec


def _parse_interaction(
  f: _Fields, features: Sequence[FeatureSpec], embedding_dim: int
) -> InteractionSpec:
  kind = f.get("kind", str, default="none", choices=INTERACTION_KINDS)
  raw_pairs = f.get("pairs", list, default=[])
  spec = InteractionSpec(
    kind=kind,
    layers=f.get("layers", int, default=1),
    pairs=tuple(tuple(p) if isinstance(p, list) else p for p in raw_pairs),
  )
  f.done()
  embedded = {
    x.name: x.embedding_dim or embedding_dim for x in features if x.is_model_input and x.is_embedded
  }
  if kind == "dot" and not spec.pairs:
    f.fail("kind dot needs at least one pair of embedded features", "pairs")
  if kind != "dot" and spec.pairs:
    f.fail(f"only kind dot takes pairs (kind is {kind!r})", "pairs")
  for i, pair in enumerate(spec.pairs):
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(n, str) for n in pair)):
      f.fail(f"must be a pair of feature names, got {pair!r}", f"pairs[{i}]")
    unknown = [n for n in pair if n not in embedded]
    if unknown:
      f.fail(
        f"{unknown[0]!r} is not an embedded model feature (embedded: {', '.join(embedded)})",
        f"pairs[{i}]",
      )
    if embedded[pair[0]] != embedded[pair[1]]:
      f.fail(
        f"the embeddings of {pair[0]!r} ({embedded[pair[0]]}) and {pair[1]!r} "
        f"({embedded[pair[1]]}) differ in width; a dot product needs equal widths",
        f"pairs[{i}]",
      )
  if kind == "cross" and spec.layers < 1:
    f.fail("must be >= 1", "layers")
  return spec


def _parse_model(
  f: _Fields, task_names: List[str], features: Sequence[FeatureSpec] = ()
) -> ModelSpec:
  def units(key: str, default: Tuple[int, ...]) -> Tuple[int, ...]:
    value = f.get(key, list, default=list(default))
    if not value or not all(isinstance(u, int) and u > 0 for u in value):
      f.fail("must be a non-empty list of positive integers", key)
    return tuple(value)

  spec = ModelSpec(
    architecture=f.get(
      "architecture", str, default="mmoe", choices=tuple(options.ARCHITECTURE_OPTIONS)
    ),
    embedding_dim=f.get("embedding_dim", int, default=8),
    num_experts=f.get("num_experts", int, default=4),
    expert_units=units("expert_units", (32,)),
    tower_units=units("tower_units", (16,)),
    shared_experts=f.get("shared_experts", int, default=1),
    task_experts=f.get("task_experts", int, default=1),
    levels=f.get("levels", int, default=2),
    dropout=f.get("dropout", float, default=0.0),
    position_bias=f.get("position_bias", bool, default=False),
    position_dropout=f.get("position_dropout", float, default=0.1),
    position_bias_task=f.get("position_bias_task", str),
    interaction=_parse_interaction(
      _Fields(f.get("interaction", dict, default={}), f"{f.where}.interaction", f.origin),
      features,
      f.get("embedding_dim", int, default=8),
    ),
    balancing=f.get("balancing", str, default="fixed", choices=BALANCING_STRATEGIES),
    balancing_params=f.get("balancing_params", dict, default={}),
    params=f.get("params", dict, default={}),
  )
  f.done()
  for key, readers in options.ARCHITECTURE_FIELDS.items():
    if key in f.raw and spec.architecture not in readers:
      f.fail(
        f"only architecture {' or '.join(readers)} reads {key} (this one is {spec.architecture!r})",
        key,
      )
  for key in ("position_bias_task", "position_dropout"):
    if key in f.raw and not spec.position_bias:
      f.fail("is read only with position_bias: true", key)
  if spec.position_bias_task is not None and spec.position_bias_task not in task_names:
    f.fail(f"{spec.position_bias_task!r} is not a task", "position_bias_task")
  return spec


def _parse_selection(
  raw: Mapping[str, Any], tasks: Sequence[TaskSpec], origin: str
) -> Dict[str, Dict[str, Any]]:
  """`training.selection` as {task: {metric, weight}}, every name checked."""
  by_name = {t.name: t for t in tasks}
  result = {}
  for task_name, term in raw.items():
    where = f"{origin}: training.selection.{task_name}"
    if task_name not in by_name:
      raise SpecError(f"{where}: not a task (tasks: {', '.join(by_name)})")
    term = {"metric": term} if isinstance(term, str) else term
    if not isinstance(term, Mapping) or set(term) - {"metric", "weight"} or "metric" not in term:
      raise SpecError(f"{where}: must be a metric name or {{metric: M, weight: W}}, got {term!r}")
    allowed = by_name[task_name].validation_metrics
    if term["metric"] not in allowed:
      raise SpecError(
        f"{where}: metric {term['metric']!r} is not one of this task's ({', '.join(allowed)})"
      )
    weight = term.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
      raise SpecError(f"{where}: weight must be a number > 0, got {weight!r}")
    result[task_name] = {"metric": term["metric"], "weight": float(weight)}
  return result


def _parse_training(f: _Fields) -> TrainingSpec:
  defaults = TrainingSpec()
  values = {}
  for field in dataclasses.fields(TrainingSpec):
    kind = type(getattr(defaults, field.name))
    values[field.name] = f.get(field.name, kind, default=getattr(defaults, field.name))
  f.done()
  for key in ("batch_size", "epochs", "eval_batch_size"):
    if values[key] < 1:
      f.fail("must be >= 1", key)
  if not (values["weight_decay"] >= 0 and math.isfinite(values["weight_decay"])):
    f.fail("must be a finite number >= 0", "weight_decay")
  if not (math.isfinite(values["learning_rate"]) and values["learning_rate"] > 0):
    f.fail(f"must be a finite number > 0, got {values['learning_rate']!r}", "learning_rate")
  for key in ("early_stopping_patience", "shuffle_buffer", "telemetry_every_n_steps"):
    if values[key] < (0 if key == "early_stopping_patience" else 1):
      f.fail("must be >= " + ("0" if key == "early_stopping_patience" else "1"), key)
  if "early_stopping_task" in f.raw and values["early_stopping_patience"] == 0:
    f.fail("is read only with early_stopping_patience > 0", "early_stopping_task")
  if values["selection"] and values["early_stopping_task"]:
    f.fail(
      "is read only without a selection monitor (selection names the tasks)", "early_stopping_task"
    )
  return TrainingSpec(**values)


def _check_sliceable(f: _Fields, feature: FeatureSpec, where: str) -> None:
  """TFMA slices on raw columns by name, and on model features derived from a
  column (bucketized, renamed) through the export's `slice_features`
  signature; an identifier or ground truth reading a column of another name is
  neither."""
  if feature.name == feature.column or feature.is_model_input:
    return
  f.fail(
    f"{feature.name!r} reads column {feature.column!r} and is no model input ({feature.kind}): "
    "TFMA slices on raw columns by their name, and on model features through the export; "
    f"declare it with name {feature.column!r} to slice on it",
    where,
  )


def _parse_evaluation(
  f: _Fields,
  tasks: List[TaskSpec],
  feature_names: Mapping[str, FeatureSpec],
  truth_targets: set = frozenset(),
) -> EvaluationSpec:
  def slices(key: str) -> Tuple[Tuple[str, ...], ...]:
    result = []
    for i, s in enumerate(f.get(key, list, default=[])):
      columns = [s] if isinstance(s, str) else s
      if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        f.fail("each slice is a column name or a list of column names", f"{key}[{i}]")
      for c in columns:
        if c not in feature_names:
          f.fail(f"{c!r} is not a declared feature", f"{key}[{i}]")
        _check_sliceable(f, feature_names[c], f"{key}[{i}]")
      result.append(tuple(columns))
    return tuple(result)

  all_slices = slices("slices")
  gated = slices("gated_slices")
  for s in gated:
    if s not in all_slices:
      f.fail(f"{list(s)} must also be listed in evaluation.slices", "gated_slices")
  by_name = {t.name: t for t in tasks}
  thresholds = []
  raw_thresholds = f.get("thresholds", dict, default={})
  truth_gates = []
  for task_name, metrics in raw_thresholds.items():
    if task_name not in by_name and task_name not in truth_targets:
      f.fail(
        f"{task_name!r} is not a task (tasks: {', '.join(by_name)})", f"thresholds.{task_name}"
      )
    if not isinstance(metrics, Mapping):
      f.fail("must map metric names to {value, max_regression}", f"thresholds.{task_name}")
    allowed = ()
    if task_name in by_name:
      allowed = ("auc", "pr_auc", "log_loss") if by_name[task_name].is_binary else ("mse", "mae")
    for metric, bounds in metrics.items():
      where = f"thresholds.{task_name}.{metric}"
      if task_name in truth_targets and is_truth_metric(metric):
        truth_gates.append((metric, where))
      elif task_name not in by_name:
        f.fail(f"{metric!r}: the fused score gates only truth metrics", where)
      elif metric not in allowed:
        f.fail(
          f"{metric!r} is not a gateable metric for a "
          f"{by_name[task_name].type} task (use: {', '.join(allowed)})",
          where,
        )
      inner = _Fields(bounds, f"{f.where}.{where}", f.origin)
      threshold = Threshold(
        task=task_name,
        metric=metric,
        value=inner.get("value", float),
        max_regression=inner.get("max_regression", float),
      )
      inner.done()
      if threshold.value is None and threshold.max_regression is None:
        f.fail("give value and/or max_regression", where)
      if threshold.value is not None:
        bounded = metric in ("auc", "pr_auc") or is_truth_metric(metric)
        if (
          not math.isfinite(threshold.value)
          or threshold.value < 0
          or (bounded and threshold.value > 1)
        ):
          valid = "in [0, 1]" if bounded else "a finite number >= 0"
          f.fail(f"{metric} is {valid}, got {threshold.value!r}", f"{where}.value")
      if threshold.max_regression is not None and not (
        math.isfinite(threshold.max_regression) and threshold.max_regression >= 0
      ):
        f.fail(
          f"must be a finite number >= 0, got {threshold.max_regression!r}",
          f"{where}.max_regression",
        )
      thresholds.append(threshold)
  query_key = f.get("query_key", str)
  if query_key is not None and query_key not in feature_names:
    f.fail(f"{query_key!r} is not a declared feature", "query_key")
  cutoffs = f.get("ndcg_cutoffs", list, default=[5, 10])
  if not cutoffs or not all(
    isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in cutoffs
  ):
    f.fail("must be a non-empty list of positive integers", "ndcg_cutoffs")
  for metric, where in truth_gates:
    error = truth_metric_error(metric, cutoffs, query_key)
    if error:
      f.fail(error, where)
  gain_task = f.get("gain_task", str)
  if gain_task is not None and (gain_task not in by_name or not by_name[gain_task].is_binary):
    binary = ", ".join(t.name for t in tasks if t.is_binary)
    f.fail(f"{gain_task!r} is not a binary task (binary tasks: {binary})", "gain_task")
  spec = EvaluationSpec(
    slices=all_slices,
    gated_slices=gated,
    thresholds=tuple(thresholds),
    min_slice_size=f.get("min_slice_size", int, default=200),
    query_key=query_key,
    ndcg_cutoffs=tuple(cutoffs),
    gain_task=gain_task,
    confidence_intervals=f.get("confidence_intervals", bool, default=False),
    single_task_baseline=f.get("single_task_baseline", bool, default=False),
    comparison_max_rows=f.get("comparison_max_rows", int, default=200_000),
  )
  if spec.comparison_max_rows < 1:
    f.fail("must be a positive number of rows", "comparison_max_rows")
  f.done()
  return spec


# TFX's file pattern placeholders (tfx.components.example_gen.utils).
def _parse_serving(f: _Fields, tasks: List[TaskSpec]) -> ServingSpec:
  names = [t.name for t in tasks]
  score = f.get("score", dict, default={})
  for task_name, exponent in score.items():
    if task_name not in names:
      f.fail(f"{task_name!r} is not a task (tasks: {', '.join(names)})", f"score.{task_name}")
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
      f.fail("an exponent must be a number", f"score.{task_name}")
  if not score:
    score = {names[0]: 1.0}
  classify_task = f.get("classify_task", str, default=names[0])
  if classify_task not in names:
    f.fail(f"{classify_task!r} is not a task", "classify_task")
  f.done()
  return ServingSpec(score={k: float(v) for k, v in score.items()}, classify_task=classify_task)
