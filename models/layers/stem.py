"""STEM-Net's layer (Su et al., "STEM: Unleashing the Power of Embeddings for
Multi-task Recommendation", AAAI 2024): task-specific and shared experts, each
reading its own embedding, mixed by gates with all-forward task-specific
backward (AFTB) stop-gradients.

Shapes: B is the batch, T the number of tasks, E = T * task_experts +
shared_experts the number of experts, U and V widths. Branch T (the last) is
the shared one.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
import tf_keras as keras

from models.layers.experts import ExpertGates, ExpertLevel, ParallelMLP


def aftb_mask(
  num_tasks: int, task_experts: int, shared_experts: int, shared_gate: bool
) -> np.ndarray:
  """[G, E] 1 where gate g's loss may reach expert e: task t's gate reaches its
  own task experts and the shared experts (every other task's experts are
  read forward only); the shared gate reaches every expert."""
  num_experts = num_tasks * task_experts + shared_experts
  rows = []
  for t in range(num_tasks):
    row = np.zeros(num_experts, np.float32)
    row[t * task_experts : (t + 1) * task_experts] = 1.0
    row[num_tasks * task_experts :] = 1.0
    rows.append(row)
  if shared_gate:
    rows.append(np.ones(num_experts, np.float32))
  return np.stack(rows)


@keras.utils.register_keras_serializable(package="mtlrank")
class STEMLayer(ExpertLevel):
  """One STEM level.

  call(inputs [B, T + 1, U]): branch t < T is task t's input (its own
  embedding at the first level), branch T the shared one. Task t's
  `task_experts` experts read branch t, the `shared_experts` shared experts
  read branch T. Task t's gate reads branch t + branch T (the reference
  implementation's gate input) and mixes *every* expert: forward, it sees the
  other tasks' experts, but its loss's gradient reaches only its own and the
  shared experts (AFTB: `stop_gradient` on the others). Below the last level a
  shared gate, reading branch T, mixes every expert without stop-gradient
  into the next level's shared branch.

  Returns {"outputs": [B, T (+ 1 below the last level), V], "gates": [B, G, E]}.
  """

  kind = "STEM"

  def __init__(self, *args: Any, **kwargs: Any):
    super().__init__(*args, **kwargs)
    num_experts = self.num_tasks * self.task_experts + self.shared_experts
    self.task_expert_networks = ParallelMLP(
      self.num_tasks * self.task_experts,
      self.units,
      dropout=self.dropout,
      networks_per_input=self.task_experts,
      name="task_experts",
    )
    self.shared_expert_networks = ParallelMLP(
      self.shared_experts, self.units, dropout=self.dropout, name="shared_experts"
    )
    self.num_gates = self.num_tasks + (0 if self.is_last else 1)
    self.gates = ExpertGates(
      self.num_gates, [list(range(num_experts))] * self.num_gates, name="gates"
    )
    self._mask = tf.constant(
      aftb_mask(self.num_tasks, self.task_experts, self.shared_experts, not self.is_last)
    )

  def call(self, inputs: tf.Tensor, training: bool | None = None) -> Dict[str, tf.Tensor]:
    task_inputs, shared_input = inputs[:, : self.num_tasks], inputs[:, self.num_tasks]
    experts = tf.concat(
      [
        self.task_expert_networks(task_inputs, training=training),
        self.shared_expert_networks(shared_input, training=training),
      ],
      axis=1,
    )  # [B, E, V]
    gate_inputs = task_inputs + shared_input[:, None]
    if not self.is_last:
      gate_inputs = tf.concat([gate_inputs, shared_input[:, None]], axis=1)
    # Forward: every gate mixes every expert. Backward: the mixture of the
    # stopped experts carries no expert gradient; the second term is zero in
    # value and carries it for the experts the gate's mask allows.
    stopped = tf.stop_gradient(experts)
    mixtures, weights = self.gates(gate_inputs, stopped)
    allowed = tf.cast(weights, experts.dtype) * tf.cast(self._mask, experts.dtype)
    mixtures = mixtures + tf.matmul(allowed, experts - stopped)
    return {"outputs": mixtures, "gates": weights}

  @property
  def aftb_mask_rows(self) -> np.ndarray:
    """[G, E] which experts each gate's gradient reaches (`aftb_mask`)."""
    return self._mask.numpy()

  @property
  def shared_sublayers(self) -> List[keras.layers.Layer]:
    """The sublayers every task's loss reaches."""
    return [self.shared_expert_networks] + ([] if self.is_last else [self.gates])
