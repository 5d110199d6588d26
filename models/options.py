"""Typed options of each architecture and each balancing strategy.

The spec's `model.params` and `model.balancing_params` are mappings in YAML;
each architecture and each balancer declares here the options it reads, with
their types and defaults, so that a misspelt key is an error at load naming the
valid ones, not a silently ignored setting found out after Transform has run.
Cross-field rules that need the tasks (ESMM needs a conditional task, AITM a
chain of them) are checked at load too. TensorFlow-free: the spec loads
without it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Tuple, Type

if TYPE_CHECKING:
  from models.spec import RankingSpec, TaskSpec

# Training steps per tf.function call (docs/models.md has the measurements).
DEFAULT_STEPS_PER_EXECUTION = 16


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  """Options every architecture reads."""

  steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION  # training steps per tf.function call
  # Huber loss delta of the regression tasks, in the transformed label's units.
  huber_delta: float = 1.0


@dataclasses.dataclass(frozen=True)
class ESMMOptions(ModelOptions):
  # The task ESMM models as pCVR; default: the first binary task conditional on
  # a binary root task.
  esmm_conversion_task: str | None = None


@dataclasses.dataclass(frozen=True)
class AITMOptions(ModelOptions):
  # The chain of binary tasks, root first; default: the longest chain.
  aitm_chain: Tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class NoBalancerOptions:
  """A strategy without options (fixed weights, PCGrad)."""


@dataclasses.dataclass(frozen=True)
class UncertaintyOptions:
  initial_log_variance: float = 0.0  # each task's starting log variance


@dataclasses.dataclass(frozen=True)
class DWAOptions:
  window_steps: int = 100  # steps averaged per loss-rate window
  temperature: float = 2.0  # softmax temperature of the weights


@dataclasses.dataclass(frozen=True)
class GradNormOptions:
  alpha: float = 1.5  # restoring force towards equal training rates
  learning_rate: float = 0.025  # learning rate of the task weights


MGDA_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@dataclasses.dataclass(frozen=True)
class MGDAOptions:
  # How each task gradient is divided before the min-norm problem (the
  # authors' code's choices): none, l2 (its norm), loss, loss+ (loss * norm).
  normalization: str = "none"
  # Frank-Wolfe iterations for more than two tasks (two: closed form).
  max_iterations: int = 50


# `model` fields only some architectures read (every architecture reads
# embedding_dim, expert_units, tower_units, dropout, interaction, position_*,
# balancing): given to another, they are an error at load.
ARCHITECTURE_FIELDS: Dict[str, Tuple[str, ...]] = {
  "num_experts": ("mmoe",),
  "shared_experts": ("ple", "stem"),
  "task_experts": ("ple", "stem"),
  "levels": ("ple", "stem"),
}
ARCHITECTURE_OPTIONS: Dict[str, Type[Any]] = {
  "single_task": ModelOptions,
  "shared_bottom": ModelOptions,
  "mmoe": ModelOptions,
  "ple": ModelOptions,
  "esmm": ESMMOptions,
  "aitm": AITMOptions,
  "stem": ModelOptions,
}
# The architectures this package ships: the reference page (docs/spec.md)
# documents these, not ones a user or a test registers at run time.
BUILTIN_ARCHITECTURES: Tuple[str, ...] = tuple(ARCHITECTURE_OPTIONS)
BALANCER_OPTIONS: Dict[str, Type[Any]] = {
  "fixed": NoBalancerOptions,
  "pcgrad": NoBalancerOptions,
  "uncertainty": UncertaintyOptions,
  "dwa": DWAOptions,
  "gradnorm": GradNormOptions,
  "mgda": MGDAOptions,
}
_POSITIVE = {
  "steps_per_execution",
  "huber_delta",
  "window_steps",
  "temperature",
  "learning_rate",
  "max_iterations",
}


def register_architecture_options(name: str, options: Type[Any] = ModelOptions) -> None:
  """Declares the options of an architecture registered outside this package."""
  ARCHITECTURE_OPTIONS[name] = options


def parse_options(options: Type[Any], raw: Mapping[str, Any], where: str) -> Any:
  """`raw` as an instance of the dataclass `options`; ValueError naming the
  field (`where.key`) for an unknown key, a wrong type or a value out of range."""
  fields = {f.name: f for f in dataclasses.fields(options)}
  unknown = sorted(set(raw) - set(fields))
  if unknown:
    valid = ", ".join(sorted(fields)) or "none"
    raise ValueError(f"{where}.{unknown[0]}: unknown option (valid: {valid})")
  defaults = options()
  values = {}
  for key, value in raw.items():
    default = getattr(defaults, key)
    if key in ("esmm_conversion_task",):
      ok = isinstance(value, str)
    elif key == "normalization":
      ok = value in MGDA_NORMALIZATIONS
    elif key == "aitm_chain":
      ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
      value = tuple(value) if ok else value
    elif isinstance(default, bool):
      ok = isinstance(value, bool)
    elif isinstance(default, int):
      ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
      value = float(value) if ok else value
      ok = ok and math.isfinite(value)
    else:
      ok = True
    if not ok:
      raise ValueError(f"{where}.{key}: {value!r} is not a valid {type(default).__name__}")
    if key in _POSITIVE and not value > 0:
      raise ValueError(f"{where}.{key}: must be > 0, got {value!r}")
    values[key] = value
  return options(**values)


def model_options(spec: RankingSpec) -> Any:
  """The architecture's typed options from `model.params`."""
  options = ARCHITECTURE_OPTIONS.get(spec.model.architecture, ModelOptions)
  return parse_options(options, spec.model.params, "model.params")


def balancer_options(spec: RankingSpec) -> Any:
  """The balancing strategy's typed options from `model.balancing_params`."""
  options = BALANCER_OPTIONS.get(spec.model.balancing, NoBalancerOptions)
  return parse_options(options, spec.model.balancing_params, "model.balancing_params")


def esmm_conversion_task(spec: RankingSpec) -> TaskSpec:
  """The task ESMM models as pCVR: binary, conditional on a binary task."""
  name = getattr(model_options(spec), "esmm_conversion_task", None)
  if name is not None:
    task = next((t for t in spec.tasks if t.name == name), None)
  else:
    task = next(
      (
        t
        for t in spec.tasks
        if t.is_binary and t.parent is not None and spec.task(t.parent).parent is None
      ),
      None,
    )
  if (
    task is None
    or not task.is_binary
    or task.parent is None
    or not spec.task(task.parent).is_binary
  ):
    raise ValueError(
      "esmm needs a binary task conditional on a binary task (conversion "
      "given click); set model.params.esmm_conversion_task"
    )
  return task


def aitm_chain(spec: RankingSpec) -> List[TaskSpec]:
  """The chain of binary tasks AITM links, root first."""
  names = getattr(model_options(spec), "aitm_chain", None)
  by_name = {t.name: t for t in spec.tasks}
  if names is not None:
    missing = [n for n in names if n not in by_name]
    if missing:
      raise ValueError(f"model.params.aitm_chain: {missing[0]!r} is not a task")
    chain = [by_name[n] for n in names]
  else:
    chain = []
    for root in (t for t in spec.tasks if t.parent is None and t.is_binary):
      candidate = [root]
      while True:
        child = next(
          (t for t in spec.tasks if t.parent == candidate[-1].name and t.is_binary), None
        )
        if child is None:
          break
        candidate.append(child)
      if len(candidate) > len(chain):
        chain = candidate
  if (
    len(chain) < 2
    or not all(t.is_binary for t in chain)
    or any(chain[k].parent != chain[k - 1].name for k in range(1, len(chain)))
  ):
    raise ValueError(
      "aitm needs a chain of >= 2 binary tasks, each the parent of the "
      "next (click -> cart -> purchase); set model.params.aitm_chain"
    )
  return chain


def check(spec: RankingSpec) -> None:
  """Every load-time rule of the typed options; ValueError naming the field."""
  model_options(spec)
  balancer_options(spec)
  try:
    if spec.model.architecture == "esmm":
      esmm_conversion_task(spec)
    elif spec.model.architecture == "aitm":
      aitm_chain(spec)
  except ValueError as e:
    raise ValueError(f"model.architecture: {e}") from None
