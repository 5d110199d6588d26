"""The ranking spec: the single declaration of features, tasks, slices and gates.

A spec is a YAML file (see `specs/`). `load_spec` parses and validates it into
plain frozen dataclasses; every other part of mtlrank (the TFT
`preprocessing_fn`, the model's heads and losses, the TFMA `EvalConfig`, the
serving signatures, the data schema and the docs) is derived from these objects.
A task's `name` is the contract end to end: the model's output key, TFMA's
`output_name` and the served response key.

Errors raised on load are `SpecError`s whose message names the file and the
field at fault (for example `census.yaml: tasks[1].parent`) and what would be
valid.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import yaml

from models import options

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

FEATURE_KINDS = ("categorical", "numeric", "identifier", "position", "ground_truth")
DTYPES = ("string", "int", "float")
CATEGORICAL_ENCODINGS = ("vocabulary", "hash")
NUMERIC_TRANSFORMS = ("zscore", "log_zscore", "bucketize", "identity")
TASK_TYPES = ("binary", "regression")
REGRESSION_LABEL_TRANSFORMS = ("none", "log1p")
REGRESSION_LOSSES = ("mse", "huber")
BALANCING_STRATEGIES = ("fixed", "uncertainty", "gradnorm", "dwa", "pcgrad")
INTERACTION_KINDS = ("none", "dot", "cross")
DATA_SOURCES = ("census", "simulator", "files")
THRESHOLD_DIRECTIONS = {
  "auc": "higher",
  "pr_auc": "higher",
  "log_loss": "lower",
  "mse": "lower",
  "mae": "lower",
}


class SpecError(ValueError):
  """A spec file is invalid; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """One raw input column.

  kind:
    categorical: embedded; `encoding` is `vocabulary` (TFT vocabulary, top_k
      most frequent plus OOV buckets) or `hash` (`hash_buckets` buckets).
    numeric: `transform` is `zscore`, `log_zscore` (log1p then z-score, for
      heavy tails), `bucketize` (`num_buckets` quantiles, then embedded) or
      `identity`.
    identifier: passed through untouched (request ids for ranking metrics);
      never a model input.
    position: the displayed position; only the position-bias tower reads it,
      in training. Served scores never depend on it.
    ground_truth: a simulator's true probability (float), kept for evaluation
      against the truth; never a model input, never served.

  `column` is the raw column read (default: `name`), so one column can feed
  two features (age as a number and as buckets).
  """

  name: str
  kind: str
  dtype: str
  column: str = ""
  encoding: str = "vocabulary"
  top_k: int | None = None
  num_oov_buckets: int = 1
  hash_buckets: int = 0
  num_buckets: int = 0
  transform: str = "zscore"
  embedding_dim: int | None = None
  max_value: int = 0
  description: str = ""

  @property
  def is_model_input(self) -> bool:
    return self.kind in ("categorical", "numeric")

  @property
  def is_embedded(self) -> bool:
    return self.kind == "categorical" or (self.kind == "numeric" and self.transform == "bucketize")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One objective. A task with `parent` is conditional: its label exists only
  where the parent task's label is positive (conversion given click)."""

  name: str
  label: str
  type: str = "binary"
  parent: str | None = None
  loss_weight: float = 1.0
  label_transform: str = "none"
  loss: str = "bce"
  description: str = ""

  @property
  def is_binary(self) -> bool:
    return self.type == "binary"


@dataclasses.dataclass(frozen=True)
class InteractionSpec:
  """Explicit feature interactions appended to the model input, whatever the
  architecture (`layers.FeatureEmbedding`):

    none:  the embeddings and numeric features as they are;
    dot:   plus the dot product of the embeddings of each pair in `pairs`
           (user_id x item_id: the matrix-factorisation term an MLP on
           concatenated embeddings learns poorly);
    cross: `layers` DCN-v2 cross layers (Wang et al., 2021) on the whole input.
  """

  kind: str = "none"
  pairs: Tuple[Tuple[str, str], ...] = ()
  layers: int = 1


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  architecture: str = "mmoe"
  embedding_dim: int = 8
  num_experts: int = 4
  expert_units: Tuple[int, ...] = (32,)
  tower_units: Tuple[int, ...] = (16,)
  shared_experts: int = 1
  task_experts: int = 1
  levels: int = 2
  dropout: float = 0.0
  position_bias: bool = False
  position_dropout: float = 0.1
  position_bias_task: str | None = None
  interaction: InteractionSpec = InteractionSpec()
  balancing: str = "fixed"
  balancing_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
  batch_size: int = 512
  epochs: int = 10
  learning_rate: float = 1e-3
  seed: int = 42
  jit_compile: bool = False
  mixed_precision: bool = False
  early_stopping_patience: int = 2
  weight_decay: float = 0.0
  shuffle_buffer: int = 100_000
  telemetry_every_n_steps: int = 100
  eval_batch_size: int = 4096


@dataclasses.dataclass(frozen=True)
class Threshold:
  """A per-task release threshold on one metric.

  `value` is an absolute bound (a floor for higher-is-better metrics, a
  ceiling for lower-is-better ones); `max_regression` bounds how much worse
  than the latest blessed model the candidate may be.
  """

  task: str
  metric: str
  value: float | None = None
  max_regression: float | None = None

  @property
  def higher_is_better(self) -> bool:
    return THRESHOLD_DIRECTIONS[self.metric] == "higher"


@dataclasses.dataclass(frozen=True)
class EvaluationSpec:
  slices: Tuple[Tuple[str, ...], ...] = ()
  gated_slices: Tuple[Tuple[str, ...], ...] = ()
  thresholds: Tuple[Threshold, ...] = ()
  # Slices with fewer examples are left out of summaries and the report; the
  # release gate still checks the gated slices whatever their size.
  min_slice_size: int = 200
  # Ranking quality of the fused score, per request: NDCG@k and grouped AUC
  # against the label of `gain_task` (default: the first binary task of the
  # score without a parent, the click).
  query_key: str | None = None
  ndcg_cutoffs: Tuple[int, ...] = (5, 10)
  gain_task: str | None = None
  # TFMA's bootstrap intervals on every metric: several times the Evaluator's cost.
  confidence_intervals: bool = False
  # Also train and evaluate one single-task network per task, same features and
  # budget, to report MTL - STL per task and slice. Never gated nor pushed.
  single_task_baseline: bool = False


@dataclasses.dataclass(frozen=True)
class DataSpec:
  source: str
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  num_spans: int = 1


@dataclasses.dataclass(frozen=True)
class ServingSpec:
  """`score` declares the fused ranking score as a product of task outputs
  raised to exponents: {click: 1, conversion: 1} means pCTR * pCVR."""

  score: Mapping[str, float] = dataclasses.field(default_factory=dict)
  classify_task: str | None = None


@dataclasses.dataclass(frozen=True)
class RankingSpec:
  name: str
  description: str
  features: Tuple[FeatureSpec, ...]
  tasks: Tuple[TaskSpec, ...]
  model: ModelSpec
  training: TrainingSpec
  evaluation: EvaluationSpec
  data: DataSpec
  serving: ServingSpec
  source_path: str = ""

  # Derived views, so callers never re-derive names.
  @property
  def model_features(self) -> Tuple[FeatureSpec, ...]:
    return tuple(f for f in self.features if f.is_model_input)

  @property
  def position_feature(self) -> FeatureSpec | None:
    return next((f for f in self.features if f.kind == "position"), None)

  @property
  def task_names(self) -> Tuple[str, ...]:
    return tuple(t.name for t in self.tasks)

  @property
  def label_columns(self) -> Tuple[str, ...]:
    return tuple(t.label for t in self.tasks)

  def task(self, name: str) -> TaskSpec:
    for t in self.tasks:
      if t.name == name:
        return t
    raise KeyError(f"no task {name!r}; tasks: {', '.join(self.task_names)}")

  def feature(self, name: str) -> FeatureSpec:
    for f in self.features:
      if f.name == name:
        return f
    raise KeyError(f"no feature {name!r}")

  def parent_label(self, task: TaskSpec) -> str | None:
    return self.task(task.parent).label if task.parent else None

  @property
  def raw_columns(self) -> Dict[str, str]:
    """Every column the pipeline reads, with its dtype: features and labels."""
    columns = {f.column: f.dtype for f in self.features}
    for t in self.tasks:
      columns[t.label] = "int" if t.is_binary else "float"
    return columns

  @property
  def gain_task(self) -> TaskSpec:
    """The task whose label is the gain of the ranking metrics: the spec's
    `evaluation.gain_task`, else the first binary, parentless task of the fused
    score (the click), else the first binary task."""
    if self.evaluation.gain_task:
      return self.task(self.evaluation.gain_task)
    scored = [self.task(name) for name in self.serving.score] or list(self.tasks)
    for candidates in (scored, self.tasks):
      for t in candidates:
        if t.is_binary and t.parent is None:
          return t
    return next((t for t in self.tasks if t.is_binary), self.tasks[0])

  def transform_view(self) -> RankingSpec:
    """The parts of the spec the Transform reads (features, tasks, data): a change
    to the model, training, serving or evaluation sections keeps its cache."""
    return self.replace(
      model=ModelSpec(), training=TrainingSpec(), serving=ServingSpec(), evaluation=EvaluationSpec()
    )

  def trainer_view(self, architecture: str | None = None) -> RankingSpec:
    """The parts of the spec a Trainer reads: all but the evaluation section,
    whose changes keep the Trainer's cache; `architecture` overrides the model's."""
    view = self.replace(evaluation=EvaluationSpec())
    if architecture is not None:
      # Keep only the options the other architecture declares (e.g. the
      # single-task baseline of an ESMM spec has no ESMM task option).
      known = {f.name for f in dataclasses.fields(options.ARCHITECTURE_OPTIONS[architecture])}
      params = {k: v for k, v in self.model.params.items() if k in known}
      view = view.replace(model={"architecture": architecture, "params": params})
    return view

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    """A canonical JSON form; passed to TFX components as `custom_config`, so
    that any change to the spec changes their cache keys."""
    return json.dumps(self.to_dict(), sort_keys=True)

  def replace(self, **sections: Any) -> RankingSpec:
    """A copy with whole sections or fields of sections replaced, e.g.
    `spec.replace(training={"epochs": 1})`."""
    updates = {}
    for key, value in sections.items():
      current = getattr(self, key)
      if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
        updates[key] = dataclasses.replace(current, **value)
      else:
        updates[key] = value
    return dataclasses.replace(self, **updates)


def spec_from_json(text: str) -> RankingSpec:
  """Inverse of `RankingSpec.to_json` (used inside TFX executors)."""
  raw = json.loads(text)
  return RankingSpec(
    name=raw["name"],
    description=raw["description"],
    features=tuple(FeatureSpec(**f) for f in raw["features"]),
    tasks=tuple(TaskSpec(**t) for t in raw["tasks"]),
    model=ModelSpec(
      **{
        **raw["model"],
        "expert_units": tuple(raw["model"]["expert_units"]),
        "tower_units": tuple(raw["model"]["tower_units"]),
        "interaction": _interaction_from_json(raw["model"].get("interaction", {})),
      }
    ),
    training=TrainingSpec(**raw["training"]),
    evaluation=EvaluationSpec(
      slices=tuple(tuple(s) for s in raw["evaluation"]["slices"]),
      gated_slices=tuple(tuple(s) for s in raw["evaluation"]["gated_slices"]),
      thresholds=tuple(Threshold(**t) for t in raw["evaluation"]["thresholds"]),
      min_slice_size=raw["evaluation"]["min_slice_size"],
      query_key=raw["evaluation"]["query_key"],
      ndcg_cutoffs=tuple(raw["evaluation"]["ndcg_cutoffs"]),
      gain_task=raw["evaluation"].get("gain_task"),
      confidence_intervals=raw["evaluation"].get("confidence_intervals", False),
      single_task_baseline=raw["evaluation"].get("single_task_baseline", False),
    ),
    data=DataSpec(**raw["data"]),
    serving=ServingSpec(**raw["serving"]),
    source_path=raw.get("source_path", ""),
  )


def _interaction_from_json(raw: Mapping[str, Any]) -> InteractionSpec:
  return InteractionSpec(**{**raw, "pairs": tuple(tuple(p) for p in raw.get("pairs", ()))})


def resolve_spec_path(spec: str) -> Path:
  """A path to a YAML file, or the name of a bundled spec (`census`)."""
  path = Path(spec)
  if path.suffix in (".yaml", ".yml") or path.exists():
    if not path.exists():
      raise SpecError(f"{spec}: no such spec file")
    return path
  bundled = SPECS_DIR / f"{spec}.yaml"
  if not bundled.exists():
    names = sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))
    raise SpecError(
      f"unknown spec {spec!r}: give a path to a YAML file or one "
      f"of the bundled specs: {', '.join(names)}"
    )
  return bundled


def load_spec(spec: str | Path) -> RankingSpec:
  """Loads and validates a spec from a path or a bundled spec name."""
  path = resolve_spec_path(str(spec))
  try:
    raw = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise SpecError(f"{path.name}: not valid YAML: {e}") from e
  return parse_spec(raw, origin=path.name, source_path=str(path.resolve()))


class _Fields:
  """Reads one mapping of a spec, naming the field path in every error."""

  def __init__(self, raw: Any, where: str, origin: str):
    self.where, self.origin = where, origin
    if raw is None:
      raw = {}
    if not isinstance(raw, Mapping):
      self.fail(f"must be a mapping, got {type(raw).__name__}")
    self.raw = dict(raw)
    self.used: set = set()

  def fail(self, message: str, key: str | None = None) -> None:
    field = f"{self.where}.{key}" if key and self.where else (key or self.where)
    raise SpecError(f"{self.origin}: {field}: {message}")

  def get(
    self,
    key: str,
    kind: type | Tuple[type, ...],
    default: Any = None,
    required: bool = False,
    choices: Sequence[Any] = (),
  ) -> Any:
    self.used.add(key)
    if key not in self.raw or self.raw[key] is None:
      if required:
        self.fail("is required", key)
      return default
    value = self.raw[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
      names = " or ".join(k.__name__ for k in kinds)
      self.fail(f"must be {names}, got {value!r}", key)
    if choices and value not in choices:
      self.fail(f"{value!r} is not one of: {', '.join(map(str, choices))}", key)
    return value

  def done(self) -> None:
    unknown = sorted(set(self.raw) - self.used)
    if unknown:
      self.fail(f"unknown field(s) {', '.join(unknown)}")


def parse_spec(raw: Any, origin: str = "<spec>", source_path: str = "") -> RankingSpec:
  """Validates a parsed YAML document into a `RankingSpec`."""
  top = _Fields(raw, "", origin)
  name = top.get("name", str, required=True)
  description = top.get("description", str, default="")

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

  model = _parse_model(
    _Fields(top.get("model", dict, default={}), "model", origin), task_names, features
  )
  training = _parse_training(_Fields(top.get("training", dict, default={}), "training", origin))
  evaluation = _parse_evaluation(
    _Fields(top.get("evaluation", dict, default={}), "evaluation", origin), tasks, feature_names
  )
  data = _parse_data(_Fields(top.get("data", dict, required=True), "data", origin))
  serving = _parse_serving(_Fields(top.get("serving", dict, default={}), "serving", origin), tasks)
  top.done()
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
  )
  try:
    # The architecture's and balancer's typed options, and ESMM's and AITM's
    # task rules: at load, before any component runs.
    options.check(spec)
  except ValueError as e:
    raise SpecError(f"{origin}: {e}") from None
  return spec


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
    description=f.get("description", str, default=""),
  )
  f.done()
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
    description=f.get("description", str, default=""),
  )
  f.done()
  if spec.loss_weight < 0 or not math.isfinite(spec.loss_weight):
    f.fail("must be a finite number >= 0", "loss_weight")
  if spec.is_binary and spec.label_transform != "none":
    f.fail("only regression tasks take a label_transform", "label_transform")
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
  if spec.position_bias_task is not None and spec.position_bias_task not in task_names:
    f.fail(f"{spec.position_bias_task!r} is not a task", "position_bias_task")
  return spec


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
  return TrainingSpec(**values)


def _parse_evaluation(f: _Fields, tasks: List[TaskSpec], feature_names: set) -> EvaluationSpec:
  def slices(key: str) -> Tuple[Tuple[str, ...], ...]:
    result = []
    for i, s in enumerate(f.get(key, list, default=[])):
      columns = [s] if isinstance(s, str) else s
      if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        f.fail("each slice is a column name or a list of column names", f"{key}[{i}]")
      for c in columns:
        if c not in feature_names:
          f.fail(f"{c!r} is not a declared feature", f"{key}[{i}]")
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
  for task_name, metrics in raw_thresholds.items():
    if task_name not in by_name:
      f.fail(
        f"{task_name!r} is not a task (tasks: {', '.join(by_name)})", f"thresholds.{task_name}"
      )
    if not isinstance(metrics, Mapping):
      f.fail("must map metric names to {value, max_regression}", f"thresholds.{task_name}")
    allowed = ("auc", "pr_auc", "log_loss") if by_name[task_name].is_binary else ("mse", "mae")
    for metric, bounds in metrics.items():
      where = f"thresholds.{task_name}.{metric}"
      if metric not in allowed:
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
        bounded = metric in ("auc", "pr_auc")
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
  )
  f.done()
  return spec


def _parse_data(f: _Fields) -> DataSpec:
  spec = DataSpec(
    source=f.get("source", str, required=True, choices=DATA_SOURCES),
    params=f.get("params", dict, default={}),
    num_spans=f.get("num_spans", int, default=1),
  )
  f.done()
  if spec.num_spans < 1:
    f.fail("must be >= 1", "num_spans")
  return spec


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
