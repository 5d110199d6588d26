"""STEM-Net (Su et al., AAAI 2024) as a registered architecture.

Every task gets its own embedding tables beside one shared set (the paper's
Shared and Task-specific EMbeddings), so a task's rows are not pulled around
by the other tasks' gradients; `levels` STEM levels (`layers.STEMLayer`) mix
task-specific and shared experts with all-forward task-specific backward
gates; one tower per task. Imported by `models.architectures`, which
registers it as `model.architecture: stem`.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

import tensorflow as tf
import tf_keras as keras

from models.layers.stem import STEMLayer
from models.multitask import (
  MultiTaskModel,
  Tensors,
  _expert_levels,
  _split_tasks,
  _towers,
  feature_embedding,
  register_architecture,
)
from models.spec import RankingSpec


@register_architecture("stem")
class STEMModel(MultiTaskModel):
  """STEM-Net: T task embeddings and one shared embedding of every feature
  (each `model.embedding_dim` wide, or the feature's own width), `levels`
  STEM levels of `task_experts` experts per task and `shared_experts` shared
  experts of `expert_units`, one `tower_units` tower per task on its branch of
  the last level."""

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    self.task_embeddings = [
      feature_embedding(spec, vocab_sizes, f"embedding_{t.name}") for t in spec.tasks
    ]
    self.embedding = feature_embedding(spec, vocab_sizes, "embedding_shared")
    self.levels = _expert_levels(spec, STEMLayer, "stem")
    self.towers = _towers(spec)

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    # Branches [task 0, ..., task T-1, shared]: [B, T + 1, D].
    x = tf.stack([e(features) for e in (*self.task_embeddings, self.embedding)], axis=1)
    gates = {}
    for level, stem in enumerate(self.levels):
      out = stem(x, training=training)
      x = out["outputs"]
      for i, t in enumerate(self.tasks):
        gates[f"level{level}_gate_{t.name}"] = out["gates"][:, i]
      if not stem.is_last:
        gates[f"level{level}_gate_shared"] = out["gates"][:, len(self.tasks)]
    return _split_tasks(self.tasks, self.towers(x, training=training)), gates

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    # With one level, task t's embedding and experts reach only task t's loss
    # (AFTB); with more, the shared gates carry every branch of the levels
    # below the last one to every task.
    below_last = [
      s
      for stem in self.levels[:-1]
      for s in (stem.task_expert_networks, stem.shared_expert_networks, stem.gates)
    ]
    task_embeddings = self.task_embeddings if len(self.levels) > 1 else []
    return [self.embedding, *task_embeddings, *below_last, *self.levels[-1].shared_sublayers]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return [self.levels[-1].shared_expert_networks.kernels[-1]]
