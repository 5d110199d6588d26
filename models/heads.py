"""Task heads: what one task makes of its logit, in the spirit of
`tfrs.tasks.Ranking`. A head owns the task's output transform (sigmoid for a
binary task, identity for regression), its per-row loss with the label mask of
a conditional task, and its metrics.

    head = heads.for_task(spec, task)
    outputs = head.outputs(logits)             # {task: [B, 1]} (+ extra outputs)
    per_row, mask = head.per_row_loss(labels, logits)
    head.update_metrics(labels, outputs, task_loss)

Architectures produce logits only; an architecture that changes what a task's
loss means (ESMM's pCTCVR, AITM's end-to-end chain) does it by choosing a
head variant (`EntireSpaceHead`) for that task, not by overriding the model.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from models import losses
from models.spec import RankingSpec, TaskSpec

Tensors = Dict[str, tf.Tensor]


class TaskHead:
  """One task's output, loss and metrics. Subclasses set `metric`."""

  def __init__(self, task: TaskSpec):
    self.task = task
    self.name = task.name
    self.loss_tracker = keras.metrics.Mean(name=f"{task.name}_loss")
    self.metric: keras.metrics.Metric

  def outputs(self, logits: Tensors) -> Tensors:
    """This task's served outputs, from every task's logit."""
    raise NotImplementedError

  def per_row_loss(self, labels: Tensors, logits: Tensors) -> tf.Tensor:
    raise NotImplementedError

  def mask(self, labels: Tensors) -> tf.Tensor | None:
    """1.0 where the task's label exists (its parent's label is positive);
    None when every row counts."""
    if self.task.parent is None:
      return None
    return tf.cast(tf.cast(labels[self.task.parent], tf.float32) > 0.0, tf.float32)

  def loss_mask(self, labels: Tensors) -> tf.Tensor | None:
    """The rows the loss is averaged over (the label mask by default)."""
    return self.mask(labels)

  def loss(self, labels: Tensors, logits: Tensors) -> tf.Tensor:
    """This replica's share of the task's loss over the global batch."""
    return losses.global_masked_mean(self.per_row_loss(labels, logits), self.loss_mask(labels))

  def update_metrics(self, labels: Tensors, outputs: Tensors, global_loss: tf.Tensor) -> None:
    self.loss_tracker.update_state(global_loss)
    self.metric.update_state(labels[self.name], outputs[self.name], sample_weight=self.mask(labels))

  @property
  def metrics(self) -> List[keras.metrics.Metric]:
    return [self.loss_tracker, self.metric]


class BinaryHead(TaskHead):
  """Sigmoid output, binary cross-entropy on the logit, AUC."""

  def __init__(self, task: TaskSpec):
    super().__init__(task)
    self.metric = keras.metrics.AUC(name=f"{task.name}_auc")

  def outputs(self, logits: Tensors) -> Tensors:
    return {self.name: tf.sigmoid(logits[self.name])}

  def per_row_loss(self, labels: Tensors, logits: Tensors) -> tf.Tensor:
    return losses.binary_cross_entropy_from_logits(labels[self.name], logits[self.name])


class RegressionHead(TaskHead):
  """Identity output, squared error or Huber (`model.params.huber_delta`), MSE."""

  def __init__(self, task: TaskSpec, huber_delta: float = 1.0):
    super().__init__(task)
    self.huber_delta = float(huber_delta)
    self.metric = keras.metrics.MeanSquaredError(name=f"{task.name}_mse")

  def outputs(self, logits: Tensors) -> Tensors:
    return {self.name: logits[self.name]}

  def per_row_loss(self, labels: Tensors, logits: Tensors) -> tf.Tensor:
    return losses.regression_loss(self.task, labels[self.name], logits[self.name], self.huber_delta)


class EntireSpaceHead(BinaryHead):
  """A conditional binary task trained on the entire impression space, as
  ESMM (pCTCVR = pCTR x pCVR) and AITM/ESM2 (the product along a chain) do.

  `chain` names the tasks from the root to this one. The task's own output
  stays its conditional probability (pCVR); `entire_output` is the product of
  the chain's probabilities (pCTCVR), supervised on every row with the product
  of the chain's labels. That removes the sample-selection bias of training the
  conditional task on its parent's positives only. Its metric (AUC of the
  conditional output) is still taken on the rows where the label exists."""

  def __init__(self, task: TaskSpec, chain: Sequence[str], entire_output: str):
    super().__init__(task)
    if len(chain) < 2 or chain[-1] != task.name:
      raise ValueError(f"the chain of {task.name!r} must end with it and have a parent: {chain}")
    self.chain = tuple(chain)
    self.entire_output = entire_output

  def log_entire(self, logits: Tensors) -> tf.Tensor:
    """log of the end-to-end probability: stays finite where the product underflows."""
    return tf.add_n([tf.math.log_sigmoid(logits[name]) for name in self.chain])

  def outputs(self, logits: Tensors) -> Tensors:
    return {**super().outputs(logits), self.entire_output: tf.exp(self.log_entire(logits))}

  def per_row_loss(self, labels: Tensors, logits: Tensors) -> tf.Tensor:
    entire_labels = tf.math.reduce_prod(tf.stack([labels[n] for n in self.chain]), axis=0)
    return losses.binary_cross_entropy_from_log_probability(entire_labels, self.log_entire(logits))

  def loss_mask(self, labels: Tensors) -> tf.Tensor | None:
    return None  # every impression


def for_task(spec: RankingSpec, task: TaskSpec, huber_delta: float = 1.0) -> TaskHead:
  """The default head of a task: binary or regression."""
  return BinaryHead(task) if task.is_binary else RegressionHead(task, huber_delta)


def default_heads(spec: RankingSpec, huber_delta: float = 1.0) -> List[TaskHead]:
  return [for_task(spec, t, huber_delta) for t in spec.tasks]


def outputs(task_heads: Sequence[TaskHead], logits: Tensors) -> Tensors:
  """Every head's outputs, in task order."""
  result: Tensors = {}
  for head in task_heads:
    result.update(head.outputs(logits))
  return result


def task_losses(
  task_heads: Sequence[TaskHead], labels: Tensors, logits: Tensors
) -> Tuple[tf.Tensor, Dict[str, tf.Tensor | None]]:
  """([T] this replica's shares of the global task losses, the rows each loss
  averages over: None for every row)."""
  shares = [head.loss(labels, logits) for head in task_heads]
  return tf.stack(shares), {head.name: head.loss_mask(labels) for head in task_heads}
