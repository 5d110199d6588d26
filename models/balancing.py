"""Loss balancing strategies: how the per-task losses become one update.

`spec.model.balancing` names the strategy; `create(spec)` builds it. A
`LossBalancer` is a Keras layer (so its variables are tracked, saved and
mirrored with the model's) with two steps, both called by the model's
`train_step`: `task_objectives` turns the task losses into per-task objectives
(inside the gradient tape, so that they can be differentiated), and
`gradients` turns those into the gradient of every trainable variable.
Architectures never know which strategy runs.

Under a distribution strategy the task losses a balancer receives are this
replica's shares (they sum over replicas to the global losses) and the
gradients it returns are summed across replicas by the optimizer.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from typing import Any, Callable, Dict, List, Mapping, Sequence  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from models import losses as losses_lib  # noqa: E402
from models.spec import RankingSpec, TaskSpec  # noqa: E402

GradientFn = Callable[[tf.Tensor, Sequence[tf.Variable]], List[tf.Tensor]]


@dataclasses.dataclass
class GradientRequest:
  """What a balancer gets in one training step.

  task_losses: [T] float32, this replica's shares of the tasks' losses
    (recorded on the tape one by one in `task_loss_terms`).
  task_objectives: the T outputs of `task_objectives`, one scalar per task,
    recorded on the tape; `total_objective` is their sum, also recorded.
  gradient: gradient(target, variables) -> dense-or-sparse gradients of a
    recorded target, loss scaling (mixed precision) already undone; may be
    called several times.
  variables: every trainable variable, in the order gradients are returned.
  shared_variables: the variables shared by more than one task.
  """
  task_losses: tf.Tensor
  task_loss_terms: Sequence[tf.Tensor]
  task_objectives: Sequence[tf.Tensor]
  total_objective: tf.Tensor
  gradient: GradientFn
  variables: Sequence[tf.Variable]
  shared_variables: Sequence[tf.Variable]


class LossBalancer(keras.layers.Layer):
  """Base strategy: subclasses override `gradients` and `loss_weights`."""

  def __init__(self, tasks: Sequence[TaskSpec], params: Mapping[str, Any],
               **kwargs: Any):
    super().__init__(**kwargs)
    self.task_names = [t.name for t in tasks]
    self.params = dict(params)
    self.initial_weights = tf.constant([t.loss_weight for t in tasks], tf.float32)

  def loss_weights(self) -> tf.Tensor:
    """[T] the weights currently multiplying the task losses (telemetry)."""
    return self.initial_weights

  def task_objectives(self, task_losses: tf.Tensor) -> tf.Tensor:
    """[T] what each task contributes to the objective (default w_t * L_t)."""
    return self.loss_weights() * task_losses

  def gradients(self, request: GradientRequest) -> List[tf.Tensor]:
    """Gradients of every variable in `request.variables` (default: of the
    total objective)."""
    return request.gradient(request.total_objective, request.variables)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "params": self.params}


class FixedWeights(LossBalancer):
  """sum_t loss_weight_t * L_t: the base behaviour."""


STRATEGIES: Dict[str, type] = {"fixed": FixedWeights}


def create(spec: RankingSpec) -> LossBalancer:
  return STRATEGIES[spec.model.balancing](spec.tasks, spec.model.balancing_params,
                                          name=f"balancing_{spec.model.balancing}")

