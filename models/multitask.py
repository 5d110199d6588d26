"""The multi-task model every architecture builds on, and the registry that
builds an architecture by name from the spec.

    model = build_model(spec, vocab_sizes)
    model.compile_for_spec(spec)          # optimizer, jit_compile, loss scaling
    model.fit(train_ds, validation_data=eval_ds, epochs=..., callbacks=...)
    outputs = model(features, training=False)   # {task_name: [B, 1] float32}

Every architecture is a `MultiTaskModel`: a subclass only says how features
become one logit per task (`task_logits`), which layers the tasks share, and,
when a task's loss means something else there, which head a task gets
(`task_heads`). The base class composes the parts: the task heads
(`models.heads`: output transform, masked loss and metrics of each task), the
position-bias tower, the loss balancer (`models.balancing`) and the telemetry
state (`models.telemetry`), and runs the training step over them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from models import balancing, heads, layers, losses, options, telemetry
from models.spec import RankingSpec, TaskSpec, spec_from_json

Tensors = Dict[str, tf.Tensor]

# Training steps per tf.function call: on CPU, Keras' per-call overhead
# dominates a small ranking model's step (docs/models.md).
DEFAULT_STEPS_PER_EXECUTION = options.DEFAULT_STEPS_PER_EXECUTION


def feature_embedding(
  spec: RankingSpec, vocab_sizes: Mapping[str, int], name: str = "embedding"
) -> layers.FeatureEmbedding:
  """The input layer of the spec's model features."""
  embedded, numeric = [], []
  for f in spec.model_features:
    if f.is_embedded:
      if f.name not in vocab_sizes:
        raise ValueError(f"vocab_sizes has no entry for embedded feature {f.name!r}")
      embedded.append(
        (f.name, int(vocab_sizes[f.name]), f.embedding_dim or spec.model.embedding_dim)
      )
    else:
      numeric.append(f.name)
  interaction = spec.model.interaction
  return layers.FeatureEmbedding(
    embedded,
    numeric,
    name=name,
    interaction={
      "kind": interaction.kind,
      "pairs": [list(p) for p in interaction.pairs],
      "layers": interaction.layers,
    },
  )


class MultiTaskModel(keras.Model):
  """Base of all architectures: composes task heads, position bias, loss
  balancer and telemetry around the architecture's logits."""

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(name=kwargs.pop("name", spec.model.architecture), **kwargs)
    self.spec = spec
    self.vocab_sizes = {k: int(v) for k, v in vocab_sizes.items()}
    self.tasks: Tuple[TaskSpec, ...] = spec.tasks
    self.huber_delta = options.model_options(spec).huber_delta
    self.position_feature = spec.position_feature.name if (spec.model.position_bias) else None
    self.position_task = spec.model.position_bias_task or spec.tasks[0].name
    self.position_tower = (
      layers.PositionBiasTower(
        spec.position_feature.max_value, spec.model.position_dropout, name="position_bias"
      )
      if spec.model.position_bias
      else None
    )
    if self.position_tower is not None:
      # Built now: serving calls never reach it, yet it must exist (and be
      # saved) before the first training step lists the trainable variables.
      self.position_tower.build(tf.TensorShape([None, 1]))
    self.balancer = balancing.create(spec)
    self.task_heads: List[heads.TaskHead] = self.make_task_heads()
    if [h.name for h in self.task_heads] != [t.name for t in spec.tasks]:
      raise ValueError(
        f"{type(self).__name__}.make_task_heads must give one head per task, in order"
      )
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.telemetry_every_n_steps = max(1, spec.training.telemetry_every_n_steps)
    self.telemetry: telemetry.TelemetryState | None = None
    self.dense_gradients = False
    # Set by train_step while it runs the forward pass (not tracked by Keras).
    object.__setattr__(self, "_representation_sink", None)

  def build_variables(self) -> None:
    """Creates every variable now, in the caller's distribution scope, by
    running the model on a one-row batch; then the telemetry state, whose
    shapes that run reveals. `build_model` calls it."""
    features: Tensors = {}
    for f in self.spec.model_features:
      features[f.name] = (
        tf.zeros([1, 1], tf.int64) if f.is_embedded else tf.zeros([1, 1], tf.float32)
      )
    self(features, training=False)
    _, gates = self.forward(features, training=False)
    self.telemetry = telemetry.TelemetryState(
      [t.name for t in self.tasks],
      {name: int(w.shape[-1]) for name, w in gates.items()},
      name="telemetry",
    )

  # --- What an architecture defines. ---------------------------------------

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    """({task: logit [B, 1] float32}, {gate name: weights [B, num_experts]})."""
    raise NotImplementedError

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    """Layers whose variables more than one task's loss reaches."""
    raise NotImplementedError

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    """The last shared layer's kernel(s): GradNorm's W (empty: nothing shared)."""
    raise NotImplementedError

  def make_task_heads(self) -> List[heads.TaskHead]:
    """One head per task, in the spec's order: binary or regression by default.
    An architecture whose loss means something else for a task (ESMM, AITM)
    gives that task another head here."""
    return heads.default_heads(self.spec, self.huber_delta)

  def record_representation(self, *tensors: tf.Tensor) -> None:
    """Called by `task_logits` with the shared representation: tensors through
    which every shared variable reaches every task's loss (MGDA-UB takes the
    task gradients w.r.t. them). Kept only during a training step."""
    if self._representation_sink is not None:
      self._representation_sink.extend(tensors)

  # --- Common. ---------------------------------------------------------------

  @property
  def shared_variables(self) -> List[tf.Variable]:
    return [v for layer in self.shared_layers for v in layer.trainable_variables]

  def forward(
    self, features: Tensors, training: bool | None = None, use_position: bool = False
  ) -> Tuple[Tensors, Tensors]:
    """Task logits (with the position-bias logit when `use_position` and the
    position is present) and gate weights."""
    logits, gates = self.task_logits(features, training)
    if self.position_tower is not None and use_position and (self.position_feature in features):
      logits = dict(logits)
      logits[self.position_task] = logits[self.position_task] + self.position_tower(
        features[self.position_feature], training=training
      )
    return logits, gates

  def heads(self, logits: Tensors) -> Tensors:
    """Every task's outputs (and the heads' extra outputs) from the logits."""
    return heads.outputs(self.task_heads, logits)

  @tf.autograph.experimental.do_not_convert
  def call(self, features: Tensors, training: bool | None = None) -> Tensors:
    """Position-free predictions: {task: [B, 1] float32}, plus any extra outputs
    of the architecture."""
    logits, _ = self.forward(features, training=training, use_position=False)
    return self.heads(logits)

  def task_losses(
    self, labels: Tensors, logits: Tensors
  ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor | None]]:
    """([T] this replica's shares of the global task losses, the rows each
    loss averages over)."""
    return heads.task_losses(self.task_heads, labels, logits)

  def compile_for_spec(self, spec: RankingSpec | None = None, **kwargs: Any) -> None:
    """compile() with the spec's training options: Adam at the spec's learning
    rate, `jit_compile`, and dynamic loss scaling under a mixed_float16 policy.
    `steps_per_execution` (training steps per tf.function call) comes from
    `spec.model.params` (default `DEFAULT_STEPS_PER_EXECUTION`, see
    docs/models.md for the measurements). Keyword arguments override."""
    spec = spec or self.spec
    # The optimizer's own per-variable XLA clusters cost more to launch than
    # they save on CPU; under jit_compile the whole step is one cluster anyway.
    optimizer = _optimizer(spec)
    if spec.training.weight_decay:
      decayed = {id(v) for v in layers.decayed_variables(self)}
      optimizer.exclude_from_weight_decay(
        var_list=[v for v in self.trainable_variables if id(v) not in decayed]
      )
    if keras.mixed_precision.global_policy().name == "mixed_float16":
      optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    compile_options = {
      "jit_compile": spec.training.jit_compile,
      "steps_per_execution": options.model_options(spec).steps_per_execution,
    }
    compile_options.update(kwargs)
    self.compile(optimizer=optimizer, **compile_options)
    # XLA turns sparse embedding updates into scatters over dynamically sized
    # unique ids, which run ~10x slower on CPU than updating the (small)
    # tables densely; without XLA the sparse path is the fast one.
    self.dense_gradients = bool(compile_options["jit_compile"])

  def _gradient_fn(self, tape: tf.GradientTape) -> balancing.GradientFn:
    def gradient(
      target: tf.Tensor,
      variables: Sequence[tf.Variable],
      output_gradients: tf.Tensor | None = None,
    ) -> List[tf.Tensor]:
      scale_loss = isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)
      # Seeding backprop with the loss scale is scaling the loss, without an
      # op outside the tape.
      if scale_loss:
        scale = tf.cast(self.optimizer.loss_scale, target.dtype)
        output_gradients = scale if output_gradients is None else output_gradients * scale
      gradients = tape.gradient(
        target,
        variables,
        output_gradients=output_gradients,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
      )
      if scale_loss:
        gradients = self.optimizer.get_unscaled_gradients(gradients)
      if self.dense_gradients:
        gradients = [tf.convert_to_tensor(g) for g in gradients]
      return gradients

    return gradient

  # No data-dependent Python control flow below: skipping AutoGraph's source
  # conversion of every function reached cuts the first step's trace from
  # tens of seconds to a few.
  @tf.autograph.experimental.do_not_convert
  def train_step(self, data: Any) -> Dict[str, tf.Tensor]:
    features, labels = data[0], losses.label_dict(self.spec, data[1])
    with tf.GradientTape(persistent=True) as tape:
      object.__setattr__(self, "_representation_sink", [])
      logits, gates = self.forward(features, training=True, use_position=True)
      representations = tuple(self._representation_sink)
      object.__setattr__(self, "_representation_sink", None)
      task_losses, _ = self.task_losses(labels, logits)
      # Listed after the forward pass: an unbuilt model creates them there.
      variables = self.trainable_variables
      # Everything a balancer may differentiate is computed while recording.
      objectives = self.balancer.task_objectives(task_losses)
      request = balancing.GradientRequest(
        task_losses=task_losses,
        task_loss_terms=tf.unstack(task_losses),
        task_objectives=tf.unstack(objectives),
        total_objective=tf.reduce_sum(objectives),
        gradient=self._gradient_fn(tape),
        variables=variables,
        shared_variables=self.shared_variables,
        last_shared_variables=self.last_shared_variables,
        step=self.optimizer.iterations,
        representations=representations,
      )
      # Layers' own losses (kernel regularizers, activity losses): Keras adds
      # them to the training loss, and so does this step, whatever the balancer.
      regularization = tf.add_n(self.losses) if self.losses else None
    gradients = self.balancer.gradients(request)
    if regularization is not None:
      gradients = [
        g + r for g, r in zip(gradients, self._gradient_fn(tape)(regularization, variables))
      ]
    self.telemetry.record_step(gates, request, self.telemetry_every_n_steps)
    del tape
    self.optimizer.apply_gradients(zip(gradients, variables))
    return self._update_metrics(labels, logits, task_losses)

  @tf.autograph.experimental.do_not_convert
  def test_step(self, data: Any) -> Dict[str, tf.Tensor]:
    # Validation losses include the position bias: they measure the training
    # objective, so early stopping watches what training optimises.
    features, labels = data[0], losses.label_dict(self.spec, data[1])
    logits, _ = self.forward(features, training=False, use_position=True)
    task_losses, _ = self.task_losses(labels, logits)
    return self._update_metrics(labels, logits, task_losses)

  def _update_metrics(
    self,
    labels: Tensors,
    logits: Tensors,
    task_losses: tf.Tensor,
  ) -> Dict[str, tf.Tensor]:
    global_losses = losses.replica_sum(task_losses)
    # `loss` is always the spec-weighted sum, whatever the balancer, so that
    # runs with different strategies (and early stopping) compare.
    self.loss_tracker.update_state(tf.reduce_sum(self.balancer.initial_weights * global_losses))
    outputs = self.heads(logits)
    for i, head in enumerate(self.task_heads):
      head.update_metrics(labels, outputs, global_losses[i])
    return {m.name: m.result() for m in self.metrics}

  @property
  def metrics(self) -> List[keras.metrics.Metric]:
    # Ordered as the logs read: the total, each task's loss, each task's metric.
    return [
      self.loss_tracker,
      *(h.loss_tracker for h in self.task_heads),
      *(h.metric for h in self.task_heads),
    ]

  def get_config(self) -> Dict[str, Any]:
    return {"spec": self.spec.to_json(), "vocab_sizes": dict(self.vocab_sizes)}

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects: Any = None) -> MultiTaskModel:
    return build_model(spec_from_json(config["spec"]), config["vocab_sizes"])


def _optimizer(spec: RankingSpec) -> keras.optimizers.Optimizer:
  """Adam, or AdamW (decoupled weight decay) when `training.weight_decay` > 0."""
  if spec.training.weight_decay:
    return keras.optimizers.AdamW(
      spec.training.learning_rate, weight_decay=spec.training.weight_decay, jit_compile=False
    )
  return keras.optimizers.Adam(spec.training.learning_rate, jit_compile=False)


def _split_tasks(tasks: Sequence[TaskSpec], stacked: tf.Tensor) -> Tensors:
  """[B, T, 1] -> {task: [B, 1] float32}."""
  return {t.name: tf.cast(stacked[:, i], tf.float32) for i, t in enumerate(tasks)}


def _towers(spec: RankingSpec, name: str = "towers") -> layers.ParallelMLP:
  return layers.ParallelMLP(
    len(spec.tasks),
    (*spec.model.tower_units, 1),
    last_activation=None,
    dropout=spec.model.dropout,
    name=name,
  )


def _expert_levels(spec: RankingSpec, level_cls: type, prefix: str) -> List[keras.layers.Layer]:
  """`model.levels` stacked levels of task and shared experts (PLE's CGC,
  STEM's level), the last one without a shared branch onwards."""
  m = spec.model
  if m.levels < 1:
    raise ValueError(f"{spec.model.architecture} needs model.levels >= 1")
  return [
    level_cls(
      len(spec.tasks),
      m.shared_experts,
      m.task_experts,
      m.expert_units,
      is_last=level == m.levels - 1,
      dropout=m.dropout,
      name=f"{prefix}_{level}",
    )
    for level in range(m.levels)
  ]


# Architecture name -> its MultiTaskModel subclass (`register_architecture`).
ARCHITECTURES: Dict[str, type] = {}


def register_architecture(name: str, model_options: type = options.ModelOptions):
  """Class decorator: makes `model.architecture: <name>` build this
  `MultiTaskModel` subclass, with `model_options` as its typed `model.params`.
  Adding an architecture is one class and this line; the spec accepts the name
  once the module defining it is imported."""

  def register(model_class: type) -> type:
    ARCHITECTURES[name] = model_class
    options.register_architecture_options(name, model_options)
    return model_class

  return register


def build_model(spec: RankingSpec, vocab_sizes: Mapping[str, int]) -> MultiTaskModel:
  """The architecture `spec.model.architecture` with all its variables
  created (in the current distribution scope), uncompiled: call
  `model.compile_for_spec(spec)` before `fit`."""
  try:
    model_class = ARCHITECTURES[spec.model.architecture]
  except KeyError:
    raise ValueError(
      f"architecture {spec.model.architecture!r} is not built yet; "
      f"available: {', '.join(ARCHITECTURES)}"
    ) from None
  model = model_class(spec, vocab_sizes)
  model.build_variables()
  return model


def compile_model(model: MultiTaskModel, spec: RankingSpec) -> MultiTaskModel:
  """Same as `model.compile_for_spec(spec)`; returns the model."""
  model.compile_for_spec(spec)
  return model
