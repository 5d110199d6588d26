"""Training telemetry to TensorBoard, cheap enough to leave on.

The model's `train_step` records, into a few float32 variables of a
`TelemetryState` layer:
  * per gate, the batch-mean weight of each expert and the mean per-row
    entropy of the gate (every step: a reduce_mean over [B, E]);
  * every `spec.training.telemetry_every_n_steps` steps, the norm of each
    task's gradient on the shared parameters (of the task's balanced
    objective) and the cosine similarity of every pair of those gradients
    (one extra backward pass per task, only on those steps).
`callbacks(spec, log_dir)` returns the callbacks that write them, together with
the per-task losses and metrics and the balancer's loss weights, every N steps,
and warn when a gate collapses onto one expert.

Under a distribution strategy the gate statistics are the first replica's;
with more than one replica the task-gradient statistics are not measured.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from models import balancing, losses, selection
from models.spec import RankingSpec

log = logging.getLogger(__name__)


def gate_statistics(weights: tf.Tensor) -> Dict[str, tf.Tensor]:
  """weights [B, E] (rows sum to 1) -> mean weight per expert [E] and the
  mean per-row entropy (nats; log(E) for a uniform gate, 0 for a hard one)."""
  weights = tf.cast(weights, tf.float32)
  entropy = -tf.reduce_sum(weights * tf.math.log(tf.maximum(weights, 1e-12)), axis=-1)
  return {"mean_weights": tf.reduce_mean(weights, axis=0), "entropy": tf.reduce_mean(entropy)}


def gradient_statistics(task_gradients: tf.Tensor) -> Dict[str, tf.Tensor]:
  """task_gradients [T, P] -> norms [T] and pairwise cosine similarities [T, T]."""
  norms = tf.norm(task_gradients, axis=1)
  unit = task_gradients / tf.maximum(norms, 1e-12)[:, None]
  return {"norms": norms, "cosines": tf.matmul(unit, unit, transpose_b=True)}


class TelemetryState(keras.layers.Layer):
  """The variables `train_step` writes and the telemetry callback reads."""

  def __init__(self, task_names: Sequence[str], gate_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(dtype="float32", trainable=False, **kwargs)
    self.task_names = list(task_names)
    self.gate_sizes = dict(gate_sizes)
    num_tasks = len(self.task_names)
    self.gate_mean_weights = {
      gate: self._state(f"{gate}_mean_weights", [size]) for gate, size in self.gate_sizes.items()
    }
    self.gate_entropy = {gate: self._state(f"{gate}_entropy", []) for gate in self.gate_sizes}
    self.gradient_norms = self._state("task_gradient_norms", [num_tasks])
    self.gradient_cosines = self._state("task_gradient_cosines", [num_tasks, num_tasks])

  def _state(self, name: str, shape: List[int]) -> tf.Variable:
    # Each replica writes its own copy (no cross-replica sync, which would not
    # be allowed inside the every-N-steps tf.cond); reads see the first one.
    return self.add_weight(
      name=name,
      shape=shape,
      initializer="zeros",
      trainable=False,
      synchronization=tf.VariableSynchronization.ON_READ,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )

  def record_gates(self, gates: Mapping[str, tf.Tensor]) -> None:
    for gate, weights in gates.items():
      stats = gate_statistics(weights)
      self.gate_mean_weights[gate].assign(stats["mean_weights"])
      self.gate_entropy[gate].assign(stats["entropy"])

  def record_step(
    self,
    gates: Mapping[str, tf.Tensor],
    request: balancing.GradientRequest,
    every_n_steps: int,
  ) -> None:
    """Called by `train_step` while its tape is alive: the gate statistics
    every step; the task-gradient statistics, which need T extra backward
    passes, every `every_n_steps` steps under a tf.cond. TF cannot
    differentiate through the loss's cross-replica sums inside a cond, so with
    several replicas the gradients are not measured."""
    self.record_gates(gates)
    if request.shared_variables and losses.num_replicas() == 1:
      tf.cond(
        request.step % every_n_steps == 0,
        lambda: self._record_task_gradients(request),
        tf.no_op,
      )

  def _record_task_gradients(self, request: balancing.GradientRequest) -> tf.Operation:
    task_gradients = tf.stack(
      [
        balancing.flatten(request.gradient(objective, request.shared_variables))
        for objective in request.task_objectives
      ]
    )
    self.record_gradients(task_gradients)
    return tf.no_op()

  def record_gradients(self, task_gradients: tf.Tensor) -> None:
    stats = gradient_statistics(task_gradients)
    self.gradient_norms.assign(stats["norms"])
    self.gradient_cosines.assign(stats["cosines"])

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "task_names": self.task_names, "gate_sizes": self.gate_sizes}


class NonFiniteLossError(RuntimeError):
  """Training reached a NaN or infinite task loss; the message names the task."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
  """Fails training (and so the Trainer, before any export) the first time a
  task's loss is NaN or infinite, naming the task, the step and its last
  finite value. Keras' TerminateOnNaN would stop quietly and let the model
  be exported."""

  def __init__(self, task_names: Sequence[str]):
    super().__init__()
    self.task_names = list(task_names)
    self._last: Dict[str, float] = {}
    self._supports_tf_logs = True  # read only the task losses

  def _check(self, logs: Dict[str, Any] | None, where: str) -> None:
    for task in self.task_names:
      for key in (f"{task}_loss", f"val_{task}_loss"):
        if not logs or key not in logs:
          continue
        value = float(logs[key])
        if not math.isfinite(value):
          last = self._last.get(key)
          raise NonFiniteLossError(
            f"task {task!r}: {key} became {value} at {where}"
            + (f" (last finite value {last:.4g})" if last is not None else " (from the start)")
            + "; check the task's label and the numeric columns for NaN or huge values, "
            "and training.learning_rate"
          )
        self._last[key] = value

  def on_train_batch_end(self, batch: int, logs: Dict[str, Any] | None = None) -> None:
    self._check(logs, f"step {int(self.model.optimizer.iterations.numpy())}")

  def on_epoch_end(self, epoch: int, logs: Dict[str, Any] | None = None) -> None:
    self._check(logs, f"the end of epoch {epoch + 1}")


class TelemetryCallback(keras.callbacks.Callback):
  """Writes step-level telemetry every `every_n_steps` optimizer steps to
  `<log_dir>/train` and warns once when a gate collapses (one expert's mean
  weight >= `collapse_threshold`; re-armed when it recovers)."""

  def __init__(self, log_dir: str, every_n_steps: int, collapse_threshold: float = 0.9):
    super().__init__()
    self.log_dir = str(Path(log_dir) / "train")
    self.every_n_steps = max(1, int(every_n_steps))
    self.collapse_threshold = float(collapse_threshold)
    self.collapsed: set = set()
    self._writer: tf.summary.SummaryWriter | None = None
    self._last_logged = -1
    # Logs stay tensors: converting them every batch would sync the host.
    self._supports_tf_logs = True

  def on_train_begin(self, logs: Dict[str, Any] | None = None) -> None:
    self._writer = tf.summary.create_file_writer(self.log_dir)

  def on_train_batch_end(self, batch: int, logs: Dict[str, Any] | None = None) -> None:
    step = int(self.model.optimizer.iterations.numpy())
    if step // self.every_n_steps == self._last_logged // self.every_n_steps:
      return
    self._last_logged = step
    with self._writer.as_default(step=step):
      for name, value in (logs or {}).items():
        tf.summary.scalar(f"step/{name}", value)
      self.write_model_telemetry()
    self._writer.flush()

  def write_model_telemetry(self) -> None:
    model = self.model
    tasks = [t.name for t in model.tasks]
    for name, weight in zip(tasks, model.balancer.loss_weights().numpy()):
      tf.summary.scalar(f"loss_weight/{name}", weight)
    state: TelemetryState = model.telemetry
    for gate in state.gate_sizes:
      weights = state.gate_mean_weights[gate].numpy()
      for i, w in enumerate(weights):
        tf.summary.scalar(f"gate/{gate}/expert_{i}", w)
      tf.summary.scalar(f"gate/{gate}/entropy", state.gate_entropy[gate].numpy())
      self.check_collapse(gate, weights)
    norms, cosines = state.gradient_norms.numpy(), state.gradient_cosines.numpy()
    if not norms.any():  # not measured yet (or nothing shared)
      return
    for i, a in enumerate(tasks):
      tf.summary.scalar(f"gradient/norm/{a}", norms[i])
      for j in range(i + 1, len(tasks)):
        b = tasks[j]
        tf.summary.scalar(f"gradient/cosine/{a}__{b}", cosines[i, j])
        tf.summary.scalar(f"gradient/norm_ratio/{a}__{b}", norms[i] / max(norms[j], 1e-12))

  def check_collapse(self, gate: str, mean_weights: Sequence[float]) -> None:
    top = max(mean_weights)
    if top >= self.collapse_threshold and gate not in self.collapsed:
      self.collapsed.add(gate)
      log.warning(
        "gate %s collapsed: expert %d takes %.1f%% of the weight on average",
        gate,
        list(mean_weights).index(top),
        100 * top,
      )
    elif top < self.collapse_threshold:
      self.collapsed.discard(gate)

  def on_train_end(self, logs: Dict[str, Any] | None = None) -> None:
    if self._writer is not None:
      self._writer.close()


def early_stopping_monitor(spec: RankingSpec) -> str:
  """The log key early stopping watches (models.selection.monitor_key)."""
  return selection.monitor_key(spec)


def callbacks(
  spec: RankingSpec,
  log_dir: str,
  early_stopping: bool = True,
  collapse_threshold: float = 0.9,
  recorder: selection.SelectionRecorder | None = None,
) -> List[keras.callbacks.Callback]:
  """The training callbacks: a stop on a non-finite task loss, step telemetry every
  `spec.training.telemetry_every_n_steps` steps, epoch curves (train and
  validation) through Keras' TensorBoard callback, the epoch `recorder`
  (models.selection; it writes the declared monitor into the epoch's logs, so
  it comes before early stopping), and, with `early_stopping` and
  `spec.training.early_stopping_patience` > 0, early stopping on
  `early_stopping_monitor(spec)` restoring the best weights (unless the
  recorder keeps each task's own best epoch)."""
  result: List[keras.callbacks.Callback] = [
    StopOnNonFiniteLoss([t.name for t in spec.tasks]),
    TelemetryCallback(log_dir, spec.training.telemetry_every_n_steps, collapse_threshold),
    keras.callbacks.TensorBoard(log_dir, update_freq="epoch", write_graph=False, profile_batch=0),
  ]
  if recorder is not None:
    result.append(recorder)
  if early_stopping and spec.training.early_stopping_patience > 0:
    result.append(
      keras.callbacks.EarlyStopping(
        monitor=early_stopping_monitor(spec),
        mode="max" if spec.training.selection else "min",
        patience=spec.training.early_stopping_patience,
        restore_best_weights=not (recorder is not None and recorder.per_task),
      )
    )
  return result
