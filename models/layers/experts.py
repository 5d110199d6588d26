"""Experts, gates and towers in their fused form: many parallel networks
(MMoE/PLE experts, per-task towers and bottoms) are one batched matmul instead
of a Python loop of Dense layers; PLE's CGC level and AITM's transfer module
are built from them.

Shapes: B is the batch, N the number of parallel networks, E the number of
experts, G the number of gates, U a width.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="mtlrank")
class ParallelMLP(keras.layers.Layer):
  """N independent MLPs evaluated as batched matmuls (fused experts/towers).

  Input is either [B, U] (every network reads the same vector: the experts of
  an MMoE) or [B, M, U] with N = M * networks_per_input (network n reads input
  n // networks_per_input: per-task experts of a CGC level, per-task towers).
  Output: [B, N, units[-1]]. `last_activation` applies to the last layer only
  (None: linear, for a tower whose last unit is a logit).
  """

  def __init__(
    self,
    num_networks: int,
    units: Sequence[int],
    activation: str = "relu",
    last_activation: str | None = "relu",
    dropout: float = 0.0,
    networks_per_input: int = 1,
    kernel_initializer: Any = None,
    kernel_regularizer: Any = None,
    **kwargs: Any,
  ):
    """`kernel_initializer` None: Glorot-uniform by one network's fan-in and
    fan-out (not the fused shape's); `kernel_regularizer` adds to `self.losses`,
    which the model's training step trains on."""
    super().__init__(**kwargs)
    self.kernel_initializer = (
      keras.initializers.get(kernel_initializer) if kernel_initializer is not None else None
    )
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self.num_networks = int(num_networks)
    self.units = [int(u) for u in units]
    self.activation = activation
    self.last_activation = last_activation
    self.dropout = float(dropout)
    self.networks_per_input = int(networks_per_input)
    if self.num_networks % self.networks_per_input:
      raise ValueError("num_networks must be a multiple of networks_per_input")
    self._activations = [keras.activations.get(activation)] * (len(self.units) - 1) + [
      keras.activations.get(last_activation)
    ]
    self._dropout = keras.layers.Dropout(self.dropout) if self.dropout else None

  def build(self, input_shape: tf.TensorShape) -> None:
    input_shape = tf.TensorShape(input_shape)
    self._shared_input = input_shape.rank == 2
    fan_in = int(input_shape[-1])
    self.kernels, self.biases = [], []
    for i, width in enumerate(self.units):
      if i == 0 and self._shared_input:
        # One [U, N * width] matmul computes the first layer of every network.
        shape = (fan_in, self.num_networks * width)
      else:
        shape = (self.num_networks, fan_in, width)
      self.kernels.append(
        self.add_weight(
          name=f"kernel_{i}",
          shape=shape,
          initializer=self.kernel_initializer or _glorot_per_network(fan_in, width),
          regularizer=self.kernel_regularizer,
        )
      )
      self.biases.append(
        self.add_weight(name=f"bias_{i}", shape=(self.num_networks, width), initializer="zeros")
      )
      fan_in = width
    super().build(input_shape)

  @property
  def decayed_weights(self) -> List[tf.Variable]:
    """The weight matrices; never the biases."""
    return list(self.kernels)

  @property
  def first_kernel(self) -> tf.Variable:
    """[U, N * width] for a shared input: what `fused_matmul` fuses."""
    return self.kernels[0]

  def call(
    self, inputs: tf.Tensor, training: bool | None = None, first_matmul: tf.Tensor | None = None
  ) -> tf.Tensor:
    """`first_matmul`: `inputs @ first_kernel`, when the caller computed it
    in one matmul with other projections of the same shared input."""
    # Computed network-major ([N, B, U]) so that every per-network layer is one
    # BatchMatMul whose gradients are batched matmuls too; the equivalent
    # einsum("bnu,nuv->bnv") transposes in its backward pass and made the
    # towers' backward ~2x slower (docs/models.md).
    x = inputs
    for i, (kernel, bias, activation) in enumerate(
      zip(self.kernels, self.biases, self._activations)
    ):
      if i == 0 and self._shared_input:
        x = tf.transpose(
          tf.reshape(
            tf.matmul(x, kernel) if first_matmul is None else first_matmul,
            [-1, self.num_networks, self.units[0]],
          ),
          [1, 0, 2],
        )
      else:
        if i == 0:
          if self.networks_per_input > 1:
            x = tf.repeat(x, self.networks_per_input, axis=1)
          x = tf.transpose(x, [1, 0, 2])
        x = tf.matmul(x, kernel)
      x = activation(x + bias[:, None, :])
      if self._dropout is not None and i < len(self.units) - 1:
        x = self._dropout(x, training=training)
    return tf.transpose(x, [1, 0, 2])

  def get_config(self) -> Dict[str, Any]:
    return {
      **super().get_config(),
      "num_networks": self.num_networks,
      "units": list(self.units),
      "activation": self.activation,
      "last_activation": self.last_activation,
      "dropout": self.dropout,
      "networks_per_input": self.networks_per_input,
      "kernel_initializer": (
        keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None
      ),
      "kernel_regularizer": (
        keras.regularizers.serialize(self.kernel_regularizer) if self.kernel_regularizer else None
      ),
    }


def _glorot_per_network(fan_in: int, fan_out: int) -> keras.initializers.Initializer:
  """Glorot-uniform scaled by one network's fan-in/out, not the fused shape's."""
  limit = (6.0 / (fan_in + fan_out)) ** 0.5
  return keras.initializers.RandomUniform(-limit, limit)


def build_sublayer(layer: keras.layers.Layer, input_shape: Sequence[int | None]) -> None:
  """Builds `layer` for `input_shape` ahead of its first call (its parent
  reads its kernels for `fused_matmul`), its variables named under its name."""
  if not layer.built:
    with tf.name_scope(layer.name):
      layer.build(tf.TensorShape(input_shape))


def fused_matmul(inputs: tf.Tensor, kernels: Sequence[tf.Variable]) -> List[tf.Tensor]:
  """[inputs @ k for k in kernels] as one matmul of the kernels concatenated
  along their outputs, then split. The experts' first layer and the gate
  logits read the same input: one wide matmul (and one kernel gradient) runs
  faster on CPU than a wide one plus a skinny gate one (docs/models.md). The
  variables stay separate, so every layer keeps its own weights."""
  widths = [int(k.shape[-1]) for k in kernels]
  # Cast: outside the owning layers' call, mixed-precision variables read as float32.
  kernel = tf.cast(tf.concat([tf.convert_to_tensor(k) for k in kernels], axis=1), inputs.dtype)
  return tf.split(tf.matmul(inputs, kernel), widths, axis=1)


@keras.utils.register_keras_serializable(package="mtlrank")
class ExpertGates(keras.layers.Layer):
  """G softmax gates, each mixing its own subset of the experts.

  call(gate_inputs, expert_outputs) with gate_inputs [B, U] (all gates read the
  same vector, MMoE) or [B, G, U] (gate g reads its own, CGC), expert_outputs
  [B, E, V]. `expert_indices[g]` lists the experts gate g mixes (default: all);
  every gate mixes the same number of experts.
  Returns (mixtures [B, G, V], weights [B, G, C]); weights sum to 1 over C.
  """

  def __init__(
    self,
    num_gates: int,
    expert_indices: Sequence[Sequence[int]],
    kernel_initializer: Any = None,
    kernel_regularizer: Any = None,
    **kwargs: Any,
  ):
    """`kernel_initializer` None: Glorot-uniform by one gate's fan-in and
    fan-out; `kernel_regularizer` adds to `self.losses`."""
    super().__init__(**kwargs)
    self.kernel_initializer = (
      keras.initializers.get(kernel_initializer) if kernel_initializer is not None else None
    )
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self.num_gates = int(num_gates)
    self.expert_indices = [[int(i) for i in row] for row in expert_indices]
    if (
      len(self.expert_indices) != self.num_gates
      or len({len(row) for row in self.expert_indices}) != 1
    ):
      raise ValueError("expert_indices needs one equally long row per gate")
    self.num_choices = len(self.expert_indices[0])
    self._selects_all = all(row == list(range(self.num_choices)) for row in self.expert_indices)

  def build(self, input_shape: Any) -> None:
    gate_shape = tf.TensorShape(input_shape)  # Keras passes the first argument's shape
    self._shared_input = gate_shape.rank == 2
    fan_in = int(gate_shape[-1])
    shape = (
      (fan_in, self.num_gates * self.num_choices)
      if self._shared_input
      else (self.num_gates, fan_in, self.num_choices)
    )
    self.kernel = self.add_weight(
      name="kernel",
      shape=shape,
      initializer=self.kernel_initializer or _glorot_per_network(fan_in, self.num_choices),
      regularizer=self.kernel_regularizer,
    )
    self.bias = self.add_weight(
      name="bias", shape=(self.num_gates, self.num_choices), initializer="zeros"
    )
    super().build(input_shape)

  @property
  def decayed_weights(self) -> List[tf.Variable]:
    """The gate kernel; never the bias."""
    return [self.kernel]

  def call(
    self, gate_inputs: tf.Tensor, expert_outputs: tf.Tensor, logits: tf.Tensor | None = None
  ) -> Tuple[tf.Tensor, tf.Tensor]:
    """`logits`: `gate_inputs @ kernel` ([B, G * C], shared input only), when
    the caller computed it in one matmul with the experts' first layer."""
    if self._shared_input:
      logits = tf.reshape(
        tf.matmul(gate_inputs, self.kernel) if logits is None else logits,
        [-1, self.num_gates, self.num_choices],
      )
    else:
      logits = tf.transpose(tf.matmul(tf.transpose(gate_inputs, [1, 0, 2]), self.kernel), [1, 0, 2])
    # Softmax in float32: under mixed precision the weights feed telemetry and
    # float16 rounding would show a collapsed gate as sums != 1.
    weights = tf.nn.softmax(tf.cast(logits + self.bias, tf.float32), axis=-1)
    if self._selects_all:
      mixtures = tf.matmul(tf.cast(weights, expert_outputs.dtype), expert_outputs)
    else:
      chosen = tf.gather(expert_outputs, self.expert_indices, axis=1)  # [B, G, C, V]
      mixtures = tf.matmul(tf.cast(weights, expert_outputs.dtype)[:, :, None, :], chosen)[:, :, 0]
    return mixtures, weights

  def get_config(self) -> Dict[str, Any]:
    return {
      **super().get_config(),
      "num_gates": self.num_gates,
      "expert_indices": self.expert_indices,
      "kernel_initializer": (
        keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None
      ),
      "kernel_regularizer": (
        keras.regularizers.serialize(self.kernel_regularizer) if self.kernel_regularizer else None
      ),
    }


class ExpertLevel(keras.layers.Layer):
  """What a level of task and shared experts is configured by (PLE's CGC and
  STEM's level): T tasks with `task_experts` each, `shared_experts` shared,
  one MLP shape, and whether a shared branch goes on to a next level."""

  kind = "expert level"

  def __init__(
    self,
    num_tasks: int,
    shared_experts: int,
    task_experts: int,
    units: Sequence[int],
    is_last: bool,
    dropout: float = 0.0,
    **kwargs: Any,
  ):
    super().__init__(**kwargs)
    self.num_tasks = int(num_tasks)
    self.shared_experts = int(shared_experts)
    self.task_experts = int(task_experts)
    self.units = [int(u) for u in units]
    self.is_last = bool(is_last)
    self.dropout = float(dropout)
    if self.shared_experts < 1 or self.task_experts < 1:
      raise ValueError(f"{self.kind} needs at least one shared and one task expert")

  def get_config(self) -> Dict[str, Any]:
    return {
      **super().get_config(),
      "num_tasks": self.num_tasks,
      "shared_experts": self.shared_experts,
      "task_experts": self.task_experts,
      "units": list(self.units),
      "is_last": self.is_last,
      "dropout": self.dropout,
    }


@keras.utils.register_keras_serializable(package="mtlrank")
class CGCLayer(ExpertLevel):
  """One Customized Gate Control level of PLE (Tang et al., RecSys 2020).

  Each task has `task_experts` experts of its own, all tasks share
  `shared_experts`; task t's gate mixes its own and the shared experts. Below
  the last level a shared gate mixes every expert into the next level's shared
  input.

  call(task_inputs, shared_input=None): at the first level task_inputs is
  [B, U] and shared_input None: every branch reads task_inputs (the
  embedding), so all experts' first layers and all gate logits are one
  matmul; above it task_inputs is [B, T, U] and shared_input [B, U].
  Returns {"tasks": [B, T, V], "task_gates": [B, T, task_experts +
  shared_experts]} and, below the last level, {"shared": [B, V],
  "shared_gate": [B, 1, T * task_experts + shared_experts]}.
  """

  kind = "CGC"

  def __init__(self, *args: Any, **kwargs: Any):
    super().__init__(*args, **kwargs)
    num_task_experts = self.num_tasks * self.task_experts
    self.task_expert_networks = ParallelMLP(
      num_task_experts,
      self.units,
      dropout=self.dropout,
      networks_per_input=self.task_experts,
      name="task_experts",
    )
    self.shared_expert_networks = ParallelMLP(
      self.shared_experts, self.units, dropout=self.dropout, name="shared_experts"
    )
    # Experts are concatenated [task experts of task 0, 1, ..., shared experts].
    shared_ids = list(range(num_task_experts, num_task_experts + self.shared_experts))
    self.task_gates = ExpertGates(
      self.num_tasks,
      [
        list(range(t * self.task_experts, (t + 1) * self.task_experts)) + shared_ids
        for t in range(self.num_tasks)
      ],
      name="task_gates",
    )
    self.shared_gate = (
      None
      if self.is_last
      else ExpertGates(1, [list(range(num_task_experts + self.shared_experts))], name="shared_gate")
    )

  def build(self, input_shape: Any) -> None:
    task_shape = tf.TensorShape(input_shape)  # Keras passes the first argument's shape
    if task_shape.rank == 2:
      # The first level reads the kernels of all four sublayers for one matmul.
      for sublayer in self._first_level_sublayers:
        build_sublayer(sublayer, task_shape)
    super().build(input_shape)

  @property
  def _first_level_sublayers(self) -> List[keras.layers.Layer]:
    return [self.task_expert_networks, self.shared_expert_networks, self.task_gates] + (
      [self.shared_gate] if self.shared_gate is not None else []
    )

  def call(
    self,
    task_inputs: tf.Tensor,
    shared_input: tf.Tensor | None = None,
    training: bool | None = None,
  ) -> Dict[str, tf.Tensor]:
    if shared_input is None:
      shared_input = task_inputs
      task_first, shared_first, *gate_logits = fused_matmul(
        task_inputs,
        [
          self.task_expert_networks.first_kernel,
          self.shared_expert_networks.first_kernel,
          self.task_gates.kernel,
        ]
        + ([self.shared_gate.kernel] if self.shared_gate is not None else []),
      )
    else:
      task_first = shared_first = None
      gate_logits = [None, None]
    experts = tf.concat(
      [
        self.task_expert_networks(task_inputs, training=training, first_matmul=task_first),
        self.shared_expert_networks(shared_input, training=training, first_matmul=shared_first),
      ],
      axis=1,
    )
    task_outputs, task_weights = self.task_gates(task_inputs, experts, logits=gate_logits[0])
    result = {"tasks": task_outputs, "task_gates": task_weights}
    if self.shared_gate is not None:
      shared_output, shared_weights = self.shared_gate(shared_input, experts, logits=gate_logits[1])
      result.update(shared=shared_output[:, 0], shared_gate=shared_weights)
    return result

  @property
  def shared_sublayers(self) -> List[keras.layers.Layer]:
    """The sublayers every task's loss reaches."""
    return [self.shared_expert_networks] + (
      [self.shared_gate] if self.shared_gate is not None else []
    )


@keras.utils.register_keras_serializable(package="mtlrank")
class AdaptiveInformationTransfer(keras.layers.Layer):
  """AITM's AIT module (Xi et al., KDD 2021): what the previous task of a
  chain (click -> cart -> purchase) passes to the next.

  call(previous, current), both [B, U]: the previous task's representation is
  transferred through a ReLU layer, then self-attention over the two items
  {transferred, current} decides how much of each the task uses.
  Returns (representation [B, U], attention weights [B, 2]: transferred, own).
  """

  def __init__(self, units: int, **kwargs: Any):
    super().__init__(**kwargs)
    self.units = int(units)
    self.transfer = keras.layers.Dense(self.units, activation="relu", name="transfer")
    self.query = keras.layers.Dense(self.units, name="query")
    self.key = keras.layers.Dense(self.units, name="key")
    self.value = keras.layers.Dense(self.units, name="value")

  def call(self, previous: tf.Tensor, current: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    items = tf.stack([self.transfer(previous), current], axis=1)  # [B, 2, U]
    scores = tf.reduce_sum(self.query(items) * self.key(items), axis=-1) / (self.units**0.5)
    weights = tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1)  # [B, 2]
    mixed = tf.matmul(tf.cast(weights, items.dtype)[:, None, :], self.value(items))[:, 0]
    return mixed, weights

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "units": self.units}
