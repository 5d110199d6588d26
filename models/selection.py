"""Which epoch the Trainer keeps, and what each task gives up for it.

A multi-task model is selected once for all tasks, yet each task's validation
curve peaks at its own epoch (a sparse conversion head overfits before the
click head has converged). The spec's `training.selection` declares the
monitor: per task a validation metric and a weight; the kept epoch maximises

    sum over tasks of weight * metric   (a loss or an error counts negatively).

Without it the monitor is the validation loss (`training.early_stopping_task`).
Either way `SelectionRecorder` records every task's validation metrics per
epoch and each task's own best epoch, and the report (written beside the
model, read into the run summary) says, per task, how far the kept epoch is
from that task's best: the trade-off one shared backbone forces.

With `training.per_task_selection` and an architecture that shares nothing
between tasks (`single_task`, the STL baseline), each task's weights are
instead taken from its own best epoch: its embeddings whole, and its slice
(axis 0) of the stacked per-task networks.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tf_keras as keras

from contract import SELECTION_REPORT_FILENAME
from models.spec import RankingSpec, TaskSpec

# The log key the combined monitor is written to, for EarlyStopping to read.
SELECTION_LOG_KEY = "val_selection"
# Validation metrics a task's head reports (models.heads), higher is better?
METRIC_HIGHER_IS_BETTER = {"auc": True, "loss": False, "mse": False}


def log_key(task: str, metric: str) -> str:
  return f"val_{task}_{metric}"


def monitor_key(spec: RankingSpec) -> str:
  """The log key early stopping watches: `val_selection` with a declared
  monitor, else `val_loss` (the spec-weighted sum), or `val_<task>_loss` with
  `training.early_stopping_task`: one task's loss, when another task's head
  overfits epochs before it (the synthetic spec's conversion before its click)."""
  if spec.training.selection:
    return SELECTION_LOG_KEY
  task = spec.training.early_stopping_task
  return log_key(task, "loss") if task else "val_loss"


def monitor_terms(spec: RankingSpec) -> List[Tuple[str, str, float]]:
  """(task, metric, weight) of the declared monitor; [] for the loss monitor."""
  return [
    (task, term["metric"], float(term["weight"])) for task, term in spec.training.selection.items()
  ]


def combined(terms: Sequence[Tuple[str, str, float]], logs: Mapping[str, Any]) -> float | None:
  """The monitor's value (higher is better), None if a term is missing."""
  total = 0.0
  for task, metric, weight in terms:
    value = logs.get(log_key(task, metric))
    if value is None:
      return None
    sign = 1.0 if METRIC_HIGHER_IS_BETTER[metric] else -1.0
    total += sign * weight * float(value)
  return total


def task_selection_metric(spec: RankingSpec, task: TaskSpec) -> str:
  """The metric a task's own best epoch is judged by: its monitor term's, else
  its head metric (AUC or MSE)."""
  term = spec.training.selection.get(task.name)
  return term["metric"] if term else task.validation_metrics[1]


class SelectionRecorder(keras.callbacks.Callback):
  """Records each task's validation metrics per epoch, writes the declared
  monitor into the epoch's logs (listed before EarlyStopping, which reads it),
  and with `per_task` keeps each task's weights at its own best epoch."""

  def __init__(self, spec: RankingSpec, per_task: bool = False):
    super().__init__()
    self.spec = spec
    self.terms = monitor_terms(spec)
    self.per_task = per_task
    self.epochs: List[Dict[str, float]] = []
    self._best: Dict[str, Tuple[float, int]] = {}
    # Per task index, with `per_task`: its best epoch's (own, stacked rows) values.
    self._task_weights: Dict[int, Tuple[List[np.ndarray], List[np.ndarray]]] = {}

  def on_epoch_end(self, epoch: int, logs: Dict[str, Any] | None = None) -> None:
    logs = logs if logs is not None else {}
    if self.terms:
      value = combined(self.terms, logs)
      if value is not None:
        logs[SELECTION_LOG_KEY] = value
    record = {
      log_key(t.name, m): float(logs[log_key(t.name, m)])
      for t in self.spec.tasks
      for m in t.validation_metrics
      if log_key(t.name, m) in logs
    }
    if SELECTION_LOG_KEY in logs:
      record[SELECTION_LOG_KEY] = float(logs[SELECTION_LOG_KEY])
    self.epochs.append(record)
    for index, task in enumerate(self.spec.tasks):
      metric = task_selection_metric(self.spec, task)
      value = record.get(log_key(task.name, metric))
      if value is None:
        continue
      score = value if METRIC_HIGHER_IS_BETTER[metric] else -value
      if task.name not in self._best or score > self._best[task.name][0]:
        self._best[task.name] = (score, epoch)
        if self.per_task:
          owned, stacked = self.model.task_variables(index)
          self._task_weights[index] = (
            [v.numpy() for v in owned],
            [v[index].numpy() for v in stacked],
          )

  def on_train_end(self, logs: Dict[str, Any] | None = None) -> None:
    """With `per_task`: each task's own variables, and its row (axis 0) of
    the stacked ones, back to its best epoch's values."""
    for index, (owned_values, rows) in self._task_weights.items():
      owned, stacked = self.model.task_variables(index)
      for variable, value in zip(owned, owned_values):
        variable.assign(value)
      for variable, row in zip(stacked, rows):
        variable[index].assign(row)

  def report(self, kept_epoch: int | None) -> Dict[str, Any]:
    """What the run summary shows: the monitor, the epochs' validation
    metrics, the kept epoch and each task's best one (1-based), and per task
    what the kept epoch gives up against its own best."""
    per_task = self.per_task and bool(self._task_weights)
    tasks = {}
    for task in self.spec.tasks:
      metric = task_selection_metric(self.spec, task)
      key = log_key(task.name, metric)
      if task.name not in self._best:
        continue
      best_epoch = self._best[task.name][1]
      kept = best_epoch if per_task else kept_epoch
      best_value = self.epochs[best_epoch][key]
      kept_value = self.epochs[kept][key] if kept is not None and key in self.epochs[kept] else None
      tasks[task.name] = {
        "metric": metric,
        "best_epoch": best_epoch + 1,
        "best": best_value,
        "kept_epoch": None if kept is None else kept + 1,
        "kept": kept_value,
        # How much worse the kept epoch is than the task's best (>= 0).
        "given_up": None if kept_value is None else abs(best_value - kept_value),
      }
    return {
      "monitor": _monitor_text(self.terms, self.spec),
      "per_task": per_task,
      "epochs_run": len(self.epochs),
      "kept_epoch": None if per_task or kept_epoch is None else kept_epoch + 1,
      "tasks": tasks,
      "epochs": self.epochs,
    }


def _monitor_text(terms: Sequence[Tuple[str, str, float]], spec: RankingSpec) -> str:
  if terms:
    return " + ".join(
      f"{weight:g} * {'' if METRIC_HIGHER_IS_BETTER[metric] else '-'}{log_key(task, metric)}"
      for task, metric, weight in terms
    )
  return f"-{monitor_key(spec)}"


def shares_nothing(model: keras.Model) -> bool:
  """Whether every weight belongs to one task (what per-task selection needs)."""
  return hasattr(model, "task_variables") and not model.shared_layers


def kept_epoch(callbacks: Sequence[keras.callbacks.Callback], epochs_run: int) -> int | None:
  """The epoch (0-based) whose weights the model ends with: EarlyStopping's
  best when it restores them, else the last one run."""
  for callback in callbacks:
    if isinstance(callback, keras.callbacks.EarlyStopping) and callback.best_weights is not None:
      return callback.best_epoch
  return epochs_run - 1 if epochs_run else None


def write_report(report: Mapping[str, Any], directory: str) -> str:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, SELECTION_REPORT_FILENAME)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, sort_keys=True)
  return path
