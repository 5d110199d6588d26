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
from typing import Any, Callable, Dict, List, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from models import losses as losses_lib
from models import min_norm, options
from models.spec import RankingSpec, TaskSpec

# gradient(target, variables, output_gradients=None); output_gradients seeds
# the backward pass as in `tf.GradientTape.gradient`.
GradientFn = Callable[..., List[tf.Tensor]]


@dataclasses.dataclass
class GradientRequest:
  """What a balancer gets in one training step.

  task_losses: [T] float32, this replica's shares of the tasks' losses
    (recorded on the tape one by one in `task_loss_terms`).
  task_objectives: the T outputs of `task_objectives`, one scalar per task,
    recorded on the tape; `total_objective` is their sum, also recorded.
  gradient: gradient(target, variables, output_gradients=None) ->
    dense-or-sparse gradients of a recorded target, loss scaling (mixed
    precision) already undone; may be called several times. It runs after the
    tape stopped recording, so a target computed in `gradients` itself is
    unconnected (zero gradients): a weighted sum of recorded targets is taken
    as `gradient(stacked_targets, variables, output_gradients=weights)`.
  variables: every trainable variable, in the order gradients are returned.
  shared_variables: the variables shared by more than one task.
  last_shared_variables: the last shared layer's kernel(s) (GradNorm's W).
  step: the optimizer's iteration count.
  representations: the shared representation, when the architecture records
    one (`MultiTaskModel.record_representation`): tensors through which every
    shared variable reaches every task loss (MGDA-UB differentiates them).
  """

  task_losses: tf.Tensor
  task_loss_terms: Sequence[tf.Tensor]
  task_objectives: Sequence[tf.Tensor]
  total_objective: tf.Tensor
  gradient: GradientFn
  variables: Sequence[tf.Variable]
  shared_variables: Sequence[tf.Variable]
  last_shared_variables: Sequence[tf.Variable]
  step: tf.Tensor
  representations: Sequence[tf.Tensor] = ()


class LossBalancer(keras.layers.Layer):
  """Base strategy: subclasses override `gradients` and `loss_weights`."""

  def __init__(self, tasks: Sequence[TaskSpec], params: Mapping[str, Any], **kwargs: Any):
    # Weights and statistics stay float32 under a mixed precision policy.
    super().__init__(dtype="float32", **kwargs)
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


class UncertaintyWeighting(LossBalancer):
  """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

  A trainable s_t = log(sigma_t^2) per task; the objective is
  c_t * exp(-s_t) * w_t * L_t + s_t / 2 with c_t = 1 for a classification and
  1/2 for a regression task (w_t: the spec's loss_weight).
  """

  def __init__(self, tasks: Sequence[TaskSpec], params: Mapping[str, Any], **kwargs: Any):
    super().__init__(tasks, params, **kwargs)
    self.type_factors = tf.constant([1.0 if t.is_binary else 0.5 for t in tasks])
    self.log_variances = self.add_weight(
      name="log_variances",
      shape=(len(tasks),),
      trainable=True,
      initializer=keras.initializers.Constant(
        options.parse_options(
          options.UncertaintyOptions, params, "model.balancing_params"
        ).initial_log_variance
      ),
    )

  def loss_weights(self) -> tf.Tensor:
    return self.initial_weights * self.type_factors * tf.exp(-self.log_variances)

  def task_objectives(self, task_losses: tf.Tensor) -> tf.Tensor:
    # The regulariser is split across replicas, whose objectives are summed.
    return self.loss_weights() * task_losses + 0.5 * self.log_variances / losses_lib.num_replicas()


def _state(layer: keras.layers.Layer, name: str, value: Any) -> tf.Variable:
  """A non-trainable statistic. Every replica computes the same update from
  all-reduced values and writes its own copy, without a sync point."""
  value = tf.constant(value, tf.float32)
  return layer.add_weight(
    name=name,
    shape=value.shape,
    trainable=False,
    initializer=keras.initializers.Constant(value.numpy()),
    synchronization=tf.VariableSynchronization.ON_READ,
    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
  )


class DynamicWeightAverage(LossBalancer):
  """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

  w_t = T * softmax(r_t / temperature) * loss_weight_t with r_t the ratio of
  task t's mean loss over the last two windows: a task whose loss falls slower
  gets more weight. The paper's windows are epochs; ours are
  `balancing_params.window_steps` steps (default 100), so that the strategy
  lives inside `train_step`. Until two windows have passed, w = loss_weight.
  """

  def __init__(self, tasks: Sequence[TaskSpec], params: Mapping[str, Any], **kwargs: Any):
    super().__init__(tasks, params, **kwargs)
    typed = options.parse_options(options.DWAOptions, params, "model.balancing_params")
    self.window_steps, self.temperature = typed.window_steps, typed.temperature
    num_tasks = len(tasks)
    self.window_sum = _state(self, "window_sum", [0.0] * num_tasks)
    self.window_count = _state(self, "window_count", 0.0)
    self.previous_mean = _state(self, "previous_mean", [0.0] * num_tasks)
    self.earlier_mean = _state(self, "earlier_mean", [0.0] * num_tasks)

  def loss_weights(self) -> tf.Tensor:
    ready = tf.reduce_all(self.earlier_mean > 0.0)
    ratio = self.previous_mean / tf.maximum(self.earlier_mean, 1e-12)
    num_tasks = tf.cast(tf.size(ratio), tf.float32)
    dynamic = num_tasks * tf.nn.softmax(ratio / self.temperature)
    return self.initial_weights * tf.where(ready, dynamic, tf.ones_like(dynamic))

  def task_objectives(self, task_losses: tf.Tensor) -> tf.Tensor:
    return tf.stop_gradient(self.loss_weights()) * task_losses

  def gradients(self, request: GradientRequest) -> List[tf.Tensor]:
    gradients = super().gradients(request)
    window_sum = self.window_sum + losses_lib.replica_sum(request.task_losses)
    count = self.window_count + 1.0
    full = count >= self.window_steps
    self.earlier_mean.assign(tf.where(full, self.previous_mean, self.earlier_mean))
    self.previous_mean.assign(tf.where(full, window_sum / count, self.previous_mean))
    self.window_sum.assign(tf.where(full, tf.zeros_like(window_sum), window_sum))
    self.window_count.assign(tf.where(full, 0.0, count))
    return gradients


class GradNorm(LossBalancer):
  """GradNorm (Chen et al., ICML 2018).

  Task weights w_t (starting at loss_weight, renormalised to keep their sum)
  move so that the norm of each weighted task's gradient on the last shared
  layer W, G_t = w_t * ||dL_t/dW||, approaches mean(G) * r_t^alpha, where r_t
  is task t's loss relative to its first-step loss, over the mean of those.
  Since G_t is linear in w_t, d|G_t - target_t|/dw_t = sign(G_t - target_t) *
  ||dL_t/dW||: the weights take a plain gradient step of
  `balancing_params.learning_rate` (default 0.025) without second-order
  gradients. `alpha` defaults to 1.5.
  """

  def __init__(self, tasks: Sequence[TaskSpec], params: Mapping[str, Any], **kwargs: Any):
    super().__init__(tasks, params, **kwargs)
    typed = options.parse_options(options.GradNormOptions, params, "model.balancing_params")
    self.alpha, self.learning_rate = typed.alpha, typed.learning_rate
    self.task_weights = _state(self, "task_weights", [t.loss_weight for t in tasks])
    self.first_losses = _state(self, "first_losses", [0.0] * len(tasks))

  def loss_weights(self) -> tf.Tensor:
    return tf.convert_to_tensor(self.task_weights)

  def task_objectives(self, task_losses: tf.Tensor) -> tf.Tensor:
    return tf.stop_gradient(self.loss_weights()) * task_losses

  def gradients(self, request: GradientRequest) -> List[tf.Tensor]:
    if not request.last_shared_variables:
      raise ValueError("gradnorm needs shared parameters; this architecture has none")
    gradients = super().gradients(request)
    norms = tf.stack(
      [
        tf.norm(
          losses_lib.replica_sum(flatten(request.gradient(loss, request.last_shared_variables)))
        )
        for loss in request.task_loss_terms
      ]
    )
    global_losses = losses_lib.replica_sum(request.task_losses)
    first = tf.where(self.first_losses > 0.0, self.first_losses, global_losses)
    self.first_losses.assign(first)
    ratio = global_losses / tf.maximum(first, 1e-12)
    relative = ratio / tf.maximum(tf.reduce_mean(ratio), 1e-12)
    weighted_norms = self.task_weights * norms
    target = tf.reduce_mean(weighted_norms) * relative**self.alpha
    step = self.learning_rate * tf.sign(weighted_norms - target) * norms
    updated = tf.maximum(self.task_weights - step, 1e-3)
    self.task_weights.assign(updated * tf.reduce_sum(self.initial_weights) / tf.reduce_sum(updated))
    return gradients


class PCGrad(LossBalancer):
  """Gradient surgery (Yu et al., NeurIPS 2020) on the shared parameters.

  Each task's gradient on the shared variables is projected off the normal
  plane of every other task's gradient it conflicts with (negative inner
  product), in a random order drawn per step; the projected gradients are
  summed. Task-specific variables get the plain weighted-sum gradient.
  Under a distribution strategy the task gradients are all-reduced first, so
  that the surgery sees the global batch's gradients.
  """

  def gradients(self, request: GradientRequest) -> List[tf.Tensor]:
    shared_ids = {id(v) for v in request.shared_variables}
    own = [v for v in request.variables if id(v) not in shared_ids]
    own_gradients = dict(zip(map(id, own), request.gradient(request.total_objective, own)))
    if not request.shared_variables:
      return [own_gradients[id(v)] for v in request.variables]
    task_gradients = tf.stack(
      [
        flatten(request.gradient(objective, request.shared_variables))
        for objective in request.task_objectives
      ]
    )
    task_gradients = losses_lib.replica_sum(task_gradients)
    # A permutation as the argsort of uniform noise (XLA has no shuffle op),
    # seeded by the step so that every replica draws the same order.
    order = tf.argsort(
      tf.random.stateless_uniform(
        [len(request.task_objectives)], seed=tf.stack([tf.cast(request.step, tf.int32), 17])
      )
    )
    # Every replica now holds the same global update; the optimizer sums
    # replicas' gradients, hence the division.
    combined = tf.reduce_sum(project_conflicting(task_gradients, order), axis=0) / float(
      losses_lib.num_replicas()
    )
    shared_gradients = dict(
      zip(map(id, request.shared_variables), unflatten(combined, request.shared_variables))
    )
    return [own_gradients.get(id(v), shared_gradients.get(id(v))) for v in request.variables]


class MGDA(LossBalancer):
  """MGDA-UB (Sener & Koltun, NeurIPS 2018): the shared variables step along
  the min-norm point of the convex hull of the task gradients, a direction
  that lowers no task's loss less than |d|^2 to first order.

  With a recorded shared representation Z (`request.representations`) the
  task gradients are taken w.r.t. Z (the paper's upper-bound approximation:
  one backward pass per task over the towers only); without one (PLE, AITM,
  STEM) w.r.t. the shared variables (exact MGDA). Their [T, T] Gram matrix
  (optionally normalised, `balancing_params.normalization`: none, l2, loss,
  loss+ as in the authors' code) gives alpha on the simplex
  (`models.min_norm`); the shared variables get the gradient of
  sum_t c_t L_t, c_t = alpha_t / n_t * sum(loss_weight) (so that the step
  compares with fixed weights; one backward pass of the recorded task losses
  seeded with c), the task-specific ones their plain loss-weighted gradient. Under a strategy the Gram matrix (UB) or the task
  gradients (exact) are all-reduced, so every replica solves the same problem.
  """

  def __init__(self, tasks: Sequence[TaskSpec], params: Mapping[str, Any], **kwargs: Any):
    super().__init__(tasks, params, **kwargs)
    typed = options.parse_options(options.MGDAOptions, params, "model.balancing_params")
    self.normalization, self.max_iterations = typed.normalization, typed.max_iterations
    self.coefficients = _state(self, "coefficients", [t.loss_weight for t in tasks])
    self.alphas = _state(self, "alphas", [1.0 / len(tasks)] * len(tasks))

  def loss_weights(self) -> tf.Tensor:
    """The last step's c_t on the shared variables (telemetry)."""
    return tf.convert_to_tensor(self.coefficients)

  def task_objectives(self, task_losses: tf.Tensor) -> tf.Tensor:
    return self.initial_weights * task_losses

  def gradients(self, request: GradientRequest) -> List[tf.Tensor]:
    shared_ids = {id(v) for v in request.shared_variables}
    own = [v for v in request.variables if id(v) not in shared_ids]
    by_id = dict(zip(map(id, own), request.gradient(request.total_objective, own)))
    if not request.shared_variables:
      return [by_id[id(v)] for v in request.variables]
    if request.representations:
      task_gradients = tf.stack(
        [
          flatten(request.gradient(loss, request.representations))
          for loss in request.task_loss_terms
        ]
      )
      gram = losses_lib.replica_sum(tf.matmul(task_gradients, task_gradients, transpose_b=True))
    else:
      task_gradients = losses_lib.replica_sum(
        tf.stack(
          [
            flatten(request.gradient(loss, request.shared_variables))
            for loss in request.task_loss_terms
          ]
        )
      )
      gram = tf.matmul(task_gradients, task_gradients, transpose_b=True)
    scale = self._normalizers(gram, losses_lib.replica_sum(request.task_losses))
    alpha = min_norm.min_norm_weights(gram / (scale[:, None] * scale[None, :]), self.max_iterations)
    coefficients = tf.stop_gradient(alpha / scale * tf.reduce_sum(self.initial_weights))
    self.alphas.assign(alpha)
    self.coefficients.assign(coefficients)
    # sum_t c_t dL_t/dshared: the recorded losses' backward pass seeded with c
    # (a sum built here, after the tape stopped, would be unconnected: zero).
    by_id.update(
      zip(
        map(id, request.shared_variables),
        request.gradient(
          request.task_losses,
          request.shared_variables,
          output_gradients=tf.cast(coefficients, request.task_losses.dtype),
        ),
      )
    )
    return [by_id[id(v)] for v in request.variables]

  def _normalizers(self, gram: tf.Tensor, losses: tf.Tensor) -> tf.Tensor:
    """[T] n_t dividing each task gradient before the min-norm problem."""
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
    scale = {
      "none": tf.ones_like(losses),
      "l2": norms,
      "loss": losses,
      "loss+": losses * norms,
    }[self.normalization]
    return tf.stop_gradient(tf.maximum(scale, 1e-12))


def project_conflicting(task_gradients: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
  """PCGrad's projection: [T, P] task gradients -> [T, P] projected ones.
  g_i loses its component along every original g_j (taken in `order`) with
  which it has a negative inner product."""
  num_tasks = task_gradients.shape[0]
  squared_norms = tf.reduce_sum(tf.square(task_gradients), axis=1)
  projected = []
  for i in range(num_tasks):
    g = task_gradients[i]
    for k in range(num_tasks):
      j = order[k]
      other = tf.gather(task_gradients, j)
      dot = tf.reduce_sum(g * other)
      conflict = tf.logical_and(dot < 0.0, tf.not_equal(j, i))
      g = g - tf.where(conflict, dot / tf.maximum(tf.gather(squared_norms, j), 1e-20), 0.0) * other
    projected.append(g)
  return tf.stack(projected)


def flatten(gradients: Sequence[Any]) -> tf.Tensor:
  """Gradients (dense or IndexedSlices) as one float32 vector."""
  return tf.concat(
    [tf.reshape(tf.cast(tf.convert_to_tensor(g), tf.float32), [-1]) for g in gradients], axis=0
  )


def unflatten(vector: tf.Tensor, variables: Sequence[tf.Variable]) -> List[tf.Tensor]:
  sizes = [v.shape.num_elements() for v in variables]
  return [
    tf.reshape(tf.cast(part, v.dtype), v.shape)
    for part, v in zip(tf.split(vector, sizes), variables)
  ]


STRATEGIES: Dict[str, type] = {
  "fixed": FixedWeights,
  "uncertainty": UncertaintyWeighting,
  "gradnorm": GradNorm,
  "dwa": DynamicWeightAverage,
  "pcgrad": PCGrad,
  "mgda": MGDA,
}


def create(spec: RankingSpec) -> LossBalancer:
  return STRATEGIES[spec.model.balancing](
    spec.tasks, spec.model.balancing_params, name=f"balancing_{spec.model.balancing}"
  )
