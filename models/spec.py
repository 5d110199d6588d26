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

import collections.abc
import dataclasses
import datetime
import json
import types
import typing
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import yaml

from models import options
from models.spec_ops import BeamSpec, RetentionSpec

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

FEATURE_KINDS = ("categorical", "numeric", "identifier", "position", "ground_truth")
DTYPES = ("string", "int", "float")
CATEGORICAL_ENCODINGS = ("vocabulary", "hash")
NUMERIC_TRANSFORMS = ("zscore", "log_zscore", "bucketize", "identity")
TASK_TYPES = ("binary", "regression")
# What a conditional task does with rows whose label is set while its parent's
# is 0 (a purchase logged without a click): see TaskSpec.
WITHOUT_PARENT_CHOICES = ("stop", "drop", "unconditional")
REGRESSION_LABEL_TRANSFORMS = ("none", "log1p")
REGRESSION_LOSSES = ("mse", "huber")
BALANCING_STRATEGIES = ("fixed", "uncertainty", "gradnorm", "dwa", "pcgrad", "mgda")
INTERACTION_KINDS = ("none", "dot", "cross")
DATA_SOURCES = ("census", "simulator", "files")
# The `data.params` each bundled source reads (pipeline/data/census.py,
# pipeline/data/world.py); any other key is an error at load.
SOURCE_PARAMS = {
  "census": ("path", "eval_every", "validation_every"),
  "simulator": (
    "num_spans",
    "requests_per_span",
    "slate_size",
    "num_users",
    "num_items",
    "latent_dim",
    "seed",
    "eval_fraction",
    "validation_fraction",
    "intent_strength",
    "conversion_bias",
    "conversion_click_match",
  ),
}
# The split settings of the bundled sources (docs/spec.md renders them): every
# source writes train, validation and eval; a spec without the validation
# setting gets about a tenth of the rows outside eval.
SOURCE_PARAM_NOTES = {
  ("census", "eval_every"): "row i goes to eval when i % eval_every == eval_every - 1 (default 5)",
  ("census", "validation_every"): (
    "of the rows not in eval, every validation_every-th (in file order) goes to validation "
    "(default 10: a tenth of them)"
  ),
  ("simulator", "eval_fraction"): "the share of requests in eval (whole requests)",
  ("simulator", "validation_fraction"): (
    "the share of requests in validation, drawn after eval's so eval does not move "
    "(default 0.1 * (1 - eval_fraction))"
  ),
}
FILE_FORMATS = ("csv", "parquet", "tfrecord")
SPLIT_KINDS = ("patterns", "hash", "time")
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
    ground_truth: a simulator's true value (float), kept for evaluation
      against the truth; never a model input, never served. `truth_of` names
      the task (or `score`, the fused score) whose position-free truth it is:
      with `evaluation.query_key`, TFMA ranks each request's served output by
      it (`pipeline.tfma_truth_metrics`).

  `column` is the raw column read (default: `name`), so one column can feed
  two features (age as a number and as buckets).

  `drift`: DataGate stops a span whose distribution of this column moved
  further than this from the previous span's (TFDV's L-infinity distance for
  a categorical feature, its approximate Jensen-Shannon divergence for a
  numeric one; both in [0, 1]). None: not checked.

  `fill` (numeric only): the value that NaN and +-inf of the column become
  before the transform, in training and serving alike (it is part of the
  transform graph). Without it, DataGate stops a span holding such values.
  """

  name: str  # the feature's name: its transformed key and the model input's
  kind: str  # what the column is (see above)
  dtype: str  # the raw column's type (string, int, float)
  column: str = ""
  encoding: str = "vocabulary"  # categorical only: vocabulary or hash
  top_k: int | None = None  # vocabulary only: keep the k most frequent values (none: all)
  num_oov_buckets: int = 1  # vocabulary only: ids for values outside the vocabulary
  hash_buckets: int = 0  # hash only: the number of buckets
  num_buckets: int = 0  # bucketize only: the number of quantile buckets
  transform: str = "zscore"  # numeric only: the transform (see above)
  # embedded features: this feature's width (none: model.embedding_dim)
  embedding_dim: int | None = None
  max_value: int = 0  # position only: the slate size (positions clip to 1..max_value)
  fill: float | None = None
  drift: float | None = None
  # ground_truth only: the task (or `score`, the fused score) whose position-free truth it is
  truth_of: str | None = None
  description: str = ""  # free text (reports)

  @property
  def is_model_input(self) -> bool:
    return self.kind in ("categorical", "numeric")

  @property
  def is_embedded(self) -> bool:
    return self.kind == "categorical" or (self.kind == "numeric" and self.transform == "bucketize")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One objective. A task with `parent` is conditional: its label exists only
  where the parent task's label is positive (conversion given click).

  `without_parent` says what rows whose label is set (non-zero) while the
  parent's label is 0 mean (a purchase logged without its click):
    stop:          DataGate stops the span before Transform, naming the rows
                   (the default: the logs contradict the spec);
    drop:          those rows' label of this task is dropped: the task's loss
                   and metrics (Trainer and TFMA) cover the parent's positive
                   rows only, as for every conditional task, and ESMM/AITM's
                   product label is 0 there (the parent's 0); the rows stay
                   for every other task. DataGate logs and records their count;
    unconditional: the label is a task of its own, trained and judged on every
                   row: the parent relation is dropped at load (`parent`
                   becomes None: no mask, no TFMA weight, no ESMM product).
  """

  name: str  # the task's name: the model output, TFMA's output_name, the served key
  label: str  # the label column
  type: str = "binary"  # binary (sigmoid, BCE) or regression
  # the task whose positive label this one's exists under (a conditional task)
  parent: str | None = None
  loss_weight: float = 1.0  # the task's weight in the summed loss (fixed balancing)
  label_transform: str = "none"  # regression only: log1p trains on log(1 + label)
  loss: str = "bce"  # bce (binary); mse or huber (regression)
  # A binary task's train split needs at least this many positive labels (and
  # one negative): below it DataGate stops the span before Transform; 0 turns
  # the check off (a tiny sample).
  min_positives: int = 1
  without_parent: str = "stop"
  description: str = ""  # free text (reports)

  @property
  def is_binary(self) -> bool:
    return self.type == "binary"

  @property
  def validation_metrics(self) -> Tuple[str, ...]:
    """What its head reports on validation (models.heads): loss and AUC or MSE."""
    return ("loss", "auc") if self.is_binary else ("loss", "mse")


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

  kind: str = "none"  # none, dot or cross (see above)
  pairs: Tuple[Tuple[str, str], ...] = ()  # dot only: pairs of embedded features
  layers: int = 1  # cross only: DCN-v2 layers


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  architecture: str = "mmoe"  # the network (docs/models.md)
  embedding_dim: int = 8  # the width of every embedding without its own
  num_experts: int = 4  # MMoE: experts shared by the task gates
  expert_units: Tuple[int, ...] = (32,)  # each expert's (shared bottom's) hidden layer widths
  tower_units: Tuple[int, ...] = (16,)  # each task tower's hidden layer widths
  shared_experts: int = 1  # PLE, STEM: shared experts per level
  task_experts: int = 1  # PLE, STEM: experts of each task per level
  levels: int = 2  # PLE: extraction levels; STEM: STEM levels
  dropout: float = 0.0  # dropout rate in experts and towers
  position_bias: bool = False  # train a position-bias tower (needs a position feature)
  position_dropout: float = 0.1  # position_bias: rate the position is dropped at in training
  position_bias_task: str | None = None  # position_bias: the task it biases (none: the first)
  interaction: InteractionSpec = InteractionSpec()  # explicit interactions (below)
  balancing: str = "fixed"  # how task losses are weighted (docs/models.md)
  # the balancing strategy's options (below)
  balancing_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # the architecture's options (below)
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
  batch_size: int = 512  # examples per training step
  epochs: int = 10  # passes over the training window
  learning_rate: float = 1e-3  # Adam's (AdamW's) learning rate
  seed: int = 42  # seeds the weights and the shuffle
  jit_compile: bool = False  # XLA-compile the training step
  mixed_precision: bool = False  # float16 compute, float32 variables
  early_stopping_patience: int = 2  # epochs without eval improvement before stopping (0: off)
  # the validation loss early stopping watches: "" the spec-weighted sum of the
  # task losses, else this task's (models.selection.monitor_key)
  early_stopping_task: str = ""
  # the validation monitor that picks the kept epoch (models/selection.py), e.g.
  # {income: auc, never_married: {metric: auc, weight: 0.5}}: per task `loss`,
  # `auc` (binary) or `mse` (regression), weight 1 unless given; the kept epoch
  # maximises the weighted sum, a loss counting negatively. {}: the validation
  # loss (early_stopping_task)
  selection: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # keep each task's weights from its own best validation epoch where the
  # architecture shares nothing between tasks (single_task, the STL baseline);
  # with a shared backbone one epoch is kept and the run summary gives each
  # task's trade-off
  per_task_selection: bool = False
  weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay
  shuffle_buffer: int = 100_000  # examples in tf.data's shuffle buffer
  telemetry_every_n_steps: int = 100  # steps between gate and gradient telemetry summaries
  eval_batch_size: int = 4096  # examples per eval step in the Trainer
  # Start from the latest blessed model (models/warm_start.py): matching
  # weights are loaded, embedding rows carried over by token.
  warm_start: bool = False


@dataclasses.dataclass(frozen=True)
class Threshold:
  """A per-task release threshold on one metric.

  `value` is an absolute bound (a floor for higher-is-better metrics, a
  ceiling for lower-is-better ones); `max_regression` bounds how much worse
  than the latest blessed model the candidate may be.

  Besides auc, pr_auc, log_loss (binary) and mse, mae (regression), a task or
  the fused `score` with a ground-truth feature (`truth_of`) and a `query_key`
  may gate the truth-based ranking metrics: `truth_ndcg@<k>` (k in
  `ndcg_cutoffs`), `truth_agreement` and their `_share` (models/spec_truth.py).
  """

  task: str
  metric: str
  value: float | None = None
  max_regression: float | None = None

  @property
  def higher_is_better(self) -> bool:
    # The truth-based ranking metrics (models/spec_truth.py) are all higher-is-better.
    return THRESHOLD_DIRECTIONS.get(self.metric, "higher") == "higher"


@dataclasses.dataclass(frozen=True)
class EvaluationSpec:
  slices: Tuple[Tuple[str, ...], ...] = ()  # TFMA slices: a column or a list of columns each
  # the slices (of `slices`) the thresholds are also checked on
  gated_slices: Tuple[Tuple[str, ...], ...] = ()
  thresholds: Tuple[Threshold, ...] = ()  # per task and metric: {value, max_regression} (below)
  # Slices with fewer examples are left out of summaries and the report; the
  # release gate still checks the gated slices whatever their size.
  min_slice_size: int = 200
  # Ranking quality of the fused score, per request: NDCG@k and grouped AUC
  # against the label of `gain_task` (default: the first binary task of the
  # score without a parent, the click).
  query_key: str | None = None
  ndcg_cutoffs: Tuple[int, ...] = (5, 10)  # the k of NDCG@k
  gain_task: str | None = None  # the ranking metrics' gain task (default: see query_key)
  # TFMA's bootstrap intervals on every metric: several times the Evaluator's cost.
  confidence_intervals: bool = False
  # Also train and evaluate one single-task network per task, same features and
  # budget, to report MTL - STL per task and slice. Never gated nor pushed.
  single_task_baseline: bool = False
  # MTL - STL intervals use at most this many eval rows (whole requests, a
  # deterministic draw), so the Evaluator's memory does not grow with the span.
  comparison_max_rows: int = 200_000


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  """How the files source divides a span into the train, validation and eval
  splits. The Trainer fits on train and early-stops (and restores its best
  epoch) on validation; TFMA reports and gates on eval alone.

  patterns: `train`, `validation` and `eval` are file patterns (relative to
    `data.root`, with the same placeholders), one per split. Without
    `validation`, `validation_percent` (default 10) of the train files' rows
    go to validation, by a hash of `column` when given (all rows of one
    request on one side), else of the whole row;
  hash:     one `data.pattern`, split by a hash of `column` (TFX's
    `partition_feature_name`): all rows with one value (a request, a user)
    fall on one side; `eval_percent` of the hash buckets go to eval,
    `validation_percent` (default: a tenth of the rest, rounded) to validation;
  time:     one `data.pattern`; the rows of the latest `eval_percent` of the
    span's time range on `column` (a numeric timestamp) go to eval, those of
    the `validation_percent` just before it (default: a tenth of the rest,
    rounded) to validation.
  """

  kind: str = ""  # patterns, hash or time (see above)
  train: str = ""  # patterns: the train split's file pattern
  # patterns: the validation split's file pattern (none: carved out of train)
  validation: str = ""
  eval: str = ""  # patterns: the eval split's file pattern
  # hash, time: the column hashed / the numeric timestamp column; patterns
  # without validation: the column hashed to carve validation out of train
  column: str = ""
  eval_percent: int = 20  # hash, time: the share of the span (hash buckets, time) in eval
  # hash, time: the share of the span in validation (default round(0.1 * (100 -
  # eval_percent))); patterns without validation: the share of train's rows (default 10)
  validation_percent: int = 8


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """`source` is `census` or `simulator` (bundled adapters, configured by
  `params`) or `files`: the user's own CSV, Parquet or TFRecord (tf.Example)
  files under `root`, read by TFX's ExampleGens inside the pipeline. A file
  `pattern` takes TFX's placeholders: `{SPAN}` or `{YYYY}{MM}{DD}` (a daily
  span) and optionally `{VERSION}`. `columns` names the fields of a headerless
  CSV in order."""

  source: str  # census, simulator (bundled adapters) or files (your own logs)
  # a bundled source's settings (below); none for files
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  num_spans: int = 1  # train on the latest N spans
  format: str = ""  # files only: how the files are written
  root: str = ""  # files only: the directory the patterns are under (relative: to the repository)
  pattern: str = ""  # files only: the file pattern, with TFX's span/date/version placeholders
  columns: Tuple[str, ...] = ()  # files only: a headerless CSV's field names, in order
  split: SplitSpec = SplitSpec()  # files only: train/validation/eval rule (`data.split`)


@dataclasses.dataclass(frozen=True)
class ServingSpec:
  """`score` declares the fused ranking score as a product of task outputs
  raised to exponents: {click: 1, conversion: 1} means pCTR * pCVR."""

  score: Mapping[str, float] = dataclasses.field(
    default_factory=dict
  )  # the fused score's exponent per task
  classify_task: str | None = None  # the task TF Serving's Classify/Regress API serves


SCHEDULE_PRESETS = ("@daily", "@weekly", "@monthly")


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """When an orchestrator runs the pipeline (`mtlrank schedule airflow`).

  `interval` is an Airflow preset (`@daily`, `@weekly`, `@monthly`) or a
  five-field cron expression. Spans are days: a run whose logical date is D
  trains up to span (D - start_date).days + 1, so `start_date` (an ISO date)
  is the day of span 1. A failed run is retried `retries` times,
  `retry_delay_minutes` apart; `catchup` also runs the missed intervals
  since `start_date` (off by default: only the latest one runs).
  """

  start_date: str  # the day of span 1 (an ISO date)
  interval: str = "@daily"  # an Airflow preset or a five-field cron expression
  retries: int = 2  # retries of a failed run
  retry_delay_minutes: int = 5  # minutes between retries
  catchup: bool = False  # also run the missed intervals since start_date

  def span_for(self, logical_date: datetime.date) -> int:
    """The span a run of `logical_date` trains up to: days since start_date, plus 1."""
    return (logical_date - datetime.date.fromisoformat(self.start_date)).days + 1


@dataclasses.dataclass(frozen=True)
class RankingSpec:
  name: str  # the spec's name: the served model's name, the pipeline's and the data's directory
  description: str  # one line on the use case (reports)
  features: Tuple[FeatureSpec, ...]
  tasks: Tuple[TaskSpec, ...]
  model: ModelSpec
  training: TrainingSpec
  evaluation: EvaluationSpec
  data: DataSpec
  serving: ServingSpec
  source_path: str = ""
  schedule: ScheduleSpec | None = None  # when an orchestrator runs it (`schedule` below)
  retention: RetentionSpec | None = None  # what a run may delete (`retention` below)
  beam: BeamSpec = dataclasses.field(default_factory=BeamSpec)  # how Beam components run

  # Derived views, so callers never re-derive names.
  @property
  def model_features(self) -> Tuple[FeatureSpec, ...]:
    return tuple(f for f in self.features if f.is_model_input)

  @property
  def position_feature(self) -> FeatureSpec | None:
    return next((f for f in self.features if f.kind == "position"), None)

  @property
  def truth_features(self) -> Dict[str, FeatureSpec]:
    """{task or `score`: the ground-truth feature holding its position-free truth}."""
    return {f.truth_of: f for f in self.features if f.truth_of is not None}

  @property
  def derived_features(self) -> Tuple[str, ...]:
    """Model features whose slice value is not a raw column of their name:
    bucketized numeric ones (sliced by bucket) and those reading a column of
    another name (sliced by that column's value). TFMA reads both from the
    export's `slice_features` signature."""
    return tuple(
      f.name
      for f in self.model_features
      if (f.kind == "numeric" and f.transform == "bucketize") or f.column != f.name
    )

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
      model=ModelSpec(),
      training=TrainingSpec(),
      serving=ServingSpec(),
      evaluation=EvaluationSpec(),
      schedule=None,
      retention=None,
      beam=BeamSpec(),
    )

  def trainer_view(self, architecture: str | None = None) -> RankingSpec:
    """The parts of the spec a Trainer reads: all but the evaluation section,
    whose changes keep the Trainer's cache; `architecture` overrides the model's."""
    view = self.replace(evaluation=EvaluationSpec(), schedule=None, retention=None, beam=BeamSpec())
    if architecture is not None:
      # Keep only the options the other architecture declares (e.g. the
      # single-task baseline of an ESMM spec has no ESMM task option).
      known = {f.name for f in dataclasses.fields(options.ARCHITECTURE_OPTIONS[architecture])}
      params = {k: v for k, v in self.model.params.items() if k in known}
      # The baseline trains from scratch: it has no blessed model of its own.
      view = view.replace(
        model={"architecture": architecture, "params": params}, training={"warm_start": False}
      )
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
  """Inverse of `RankingSpec.to_json` (used inside TFX executors): generic over
  the typed sections, so a new field round-trips without code here."""
  return _from_plain(RankingSpec, json.loads(text))


def _from_plain(kind: Any, value: Any) -> Any:
  """`value` (JSON's lists, dicts and scalars) as the annotated type `kind`."""
  if value is None:
    return None
  if dataclasses.is_dataclass(kind):
    hints = typing.get_type_hints(kind)
    return kind(
      **{
        f.name: _from_plain(hints[f.name], value[f.name])
        for f in dataclasses.fields(kind)
        if f.name in value
      }
    )
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (typing.Union, types.UnionType):
    inner = [a for a in args if a is not type(None)]
    return _from_plain(inner[0], value) if len(inner) == 1 else value
  if origin is tuple:
    item = args[0] if args else Any
    return tuple(_from_plain(item, v) for v in value)
  if origin in (dict, Mapping, collections.abc.Mapping):
    return dict(value)
  return value


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


def parse_spec(raw: Any, origin: str = "<spec>", source_path: str = "") -> RankingSpec:
  """Validates a parsed YAML document into a `RankingSpec`; SpecError names the
  file and the field (the rules are in models/spec_parsing.py)."""
  from models.spec_parsing import parse

  return parse(raw, origin=origin, source_path=source_path)
