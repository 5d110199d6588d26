"""The bundled multi-task ranking architectures, each registered by name.

    model = build_model(spec, vocab_sizes)
    model.compile_for_spec(spec)          # optimizer, jit_compile, loss scaling
    model.fit(train_ds, validation_data=eval_ds, epochs=..., callbacks=...)
    outputs = model(features, training=False)   # {task_name: [B, 1] float32}

Every architecture is a `MultiTaskModel` (models/multitask.py): a subclass only
says how features become one logit per task (`task_logits`), which layers the
tasks share, and (ESMM, AITM) which task gets an entire-space head
(`make_task_heads`, models/heads.py); it registers itself with
`register_architecture`.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

import tensorflow as tf
import tf_keras as keras

from models import heads, layers, options
from models.multitask import (  # noqa: F401  (re-exported: the architectures' public API)
  ARCHITECTURES,
  DEFAULT_STEPS_PER_EXECUTION,
  MultiTaskModel,
  Tensors,
  _expert_levels,
  _split_tasks,
  _towers,
  build_model,
  compile_model,
  feature_embedding,
  register_architecture,
)
from models.spec import RankingSpec


@register_architecture("single_task")
class SingleTaskModel(MultiTaskModel):
  """The baseline: an independent network per task (own embeddings, bottom and
  tower); nothing is shared, so the tasks cannot help or hurt each other."""

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    self.embeddings = [
      feature_embedding(spec, vocab_sizes, f"embedding_{t.name}") for t in spec.tasks
    ]
    self.networks = layers.ParallelMLP(
      len(spec.tasks),
      (*spec.model.expert_units, *spec.model.tower_units, 1),
      last_activation=None,
      dropout=spec.model.dropout,
      name="networks",
    )

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    inputs = tf.stack([e(features) for e in self.embeddings], axis=1)  # [B, T, D]
    return _split_tasks(self.tasks, self.networks(inputs, training=training)), {}

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return []

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return []

  def task_variables(self, index: int) -> Tuple[List[tf.Variable], List[tf.Variable]]:
    """Task `index`'s weights: its embedding's variables (its own), and the
    per-task networks' stacked variables, whose row `index` is its
    (`models.selection` keeps each task's weights from its own best epoch)."""
    return list(self.embeddings[index].weights), list(self.networks.weights)


@register_architecture("shared_bottom")
class SharedBottomModel(MultiTaskModel):
  """Hard parameter sharing: one bottom MLP, one tower per task."""

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    self.embedding = feature_embedding(spec, vocab_sizes)
    self.bottom = layers.ParallelMLP(
      1, spec.model.expert_units, dropout=spec.model.dropout, name="bottom"
    )
    self.towers = _towers(spec)

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    shared = self.bottom(self.embedding(features), training=training)[:, 0]
    self.record_representation(shared)
    return _split_tasks(self.tasks, self.towers(shared, training=training)), {}

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return [self.embedding, self.bottom]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return [self.bottom.kernels[-1]]


@register_architecture("mmoe")
class MMoEModel(MultiTaskModel):
  """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): shared experts, one
  softmax gate per task over the experts, one tower per task. The experts are
  one fused `ParallelMLP`, the gates one `ExpertGates` whose logits come out
  of the experts' first matmul, the towers one `ParallelMLP`."""

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    m, num_tasks = spec.model, len(spec.tasks)
    self.embedding = feature_embedding(spec, vocab_sizes)
    self.experts = layers.ParallelMLP(
      m.num_experts, m.expert_units, dropout=m.dropout, name="experts"
    )
    self.gates = layers.ExpertGates(
      num_tasks, [list(range(m.num_experts))] * num_tasks, name="gates"
    )
    self.towers = _towers(spec)
    # task_logits reads the experts' and gates' kernels before calling them.
    with tf.name_scope(self.name):
      for sublayer in (self.experts, self.gates):
        layers.build_sublayer(sublayer, (None, self.embedding.output_dim))

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    x = self.embedding(features)
    # The gate logits come out of the experts' first matmul (docs/models.md).
    first_layer, gate_logits = layers.fused_matmul(
      x, [self.experts.first_kernel, self.gates.kernel]
    )
    experts = self.experts(x, training=training, first_matmul=first_layer)
    # The shared variables reach the tasks through the experts and the gate logits.
    self.record_representation(experts, gate_logits)
    mixtures, weights = self.gates(x, experts, logits=gate_logits)
    logits = _split_tasks(self.tasks, self.towers(mixtures, training=training))
    return logits, {f"gate_{t.name}": weights[:, i] for i, t in enumerate(self.tasks)}

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return [self.embedding, self.experts]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return [self.experts.kernels[-1]]


@register_architecture("ple")
class PLEModel(MultiTaskModel):
  """Progressive Layered Extraction (Tang et al., RecSys 2020): `levels`
  stacked CGC levels with shared and task-specific experts, one tower per
  task on the last level's task outputs."""

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    self.embedding = feature_embedding(spec, vocab_sizes)
    self.levels = _expert_levels(spec, layers.CGCLayer, "cgc")
    self.towers = _towers(spec)

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    x = self.embedding(features)
    task_inputs, shared_input, gates = x, None, {}
    for level, cgc in enumerate(self.levels):
      out = cgc(task_inputs, shared_input, training=training)
      task_inputs = out["tasks"]
      for i, t in enumerate(self.tasks):
        gates[f"level{level}_gate_{t.name}"] = out["task_gates"][:, i]
      if "shared" in out:
        shared_input = out["shared"]
        gates[f"level{level}_gate_shared"] = out["shared_gate"][:, 0]
    return _split_tasks(self.tasks, self.towers(task_inputs, training=training)), gates

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return [self.embedding] + [s for cgc in self.levels for s in cgc.shared_sublayers]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return [self.levels[-1].shared_expert_networks.kernels[-1]]


@register_architecture("esmm", options.ESMMOptions)
class ESMMModel(MultiTaskModel):
  """Entire Space Multi-task Model (Ma et al., SIGIR 2018).

  A pCTR and a pCVR tower on a shared embedding; pCTCVR = pCTR * pCVR. CTR and
  CTCVR (label click * conversion) are supervised on every impression, which
  removes the sample-selection bias of training pCVR on clicks only; pCVR is
  the conversion task's output and `<conversion>_ctcvr` an extra output.
  The conversion task is `model.params.esmm_conversion_task` or the first
  binary task whose parent is a binary root task (the CTR task). Other tasks
  get their own tower on the shared embedding and their usual (masked) loss.
  """

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    self.embedding = feature_embedding(spec, vocab_sizes)
    self.towers = layers.ParallelMLP(
      len(spec.tasks),
      (*spec.model.expert_units, *spec.model.tower_units, 1),
      last_activation=None,
      dropout=spec.model.dropout,
      name="towers",
    )

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    x = self.embedding(features)
    self.record_representation(x)
    return _split_tasks(self.tasks, self.towers(x, training=training)), {}

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return [self.embedding]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return list(self.embedding.trainable_variables)

  def make_task_heads(self) -> List[heads.TaskHead]:
    """The conversion task is trained as pCTCVR on every impression."""
    cvr = esmm_conversion_task(self.spec)
    return [
      heads.EntireSpaceHead(t, (cvr.parent, cvr.name), f"{cvr.name}_ctcvr")
      if t.name == cvr.name
      else heads.for_task(self.spec, t, self.huber_delta)
      for t in self.spec.tasks
    ]


esmm_conversion_task = options.esmm_conversion_task


@register_architecture("aitm", options.AITMOptions)
class AITMModel(MultiTaskModel):
  """Adaptive Information Transfer Multi-task (Xi et al., KDD 2021) for a chain
  of binary tasks such as click -> cart -> purchase.

  Each chain task has its own tower on a shared embedding; from the second
  task on, an `AdaptiveInformationTransfer` mixes the previous task's
  representation into the task's own. Each chain task's output stays its
  conditional probability (cart given click), as every other architecture's;
  the end-to-end probabilities (`<task>_entire`: the product along the chain,
  so never above the parent's) are supervised on every impression, ESM2
  style. The product makes AITM's behavioural-expectation calibrator
  (penalising p(purchase) > p(cart)) unnecessary: the ordering holds by
  construction.

  The chain is `model.params.aitm_chain` (task names, root first) or the
  longest chain of binary tasks following parents. Other tasks get their own
  tower on the shared embedding and their usual (masked) loss.
  """

  def __init__(self, spec: RankingSpec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    m = spec.model
    self.chain = aitm_chain(spec)
    chain_names = {t.name for t in self.chain}
    self.other_tasks = [t for t in spec.tasks if t.name not in chain_names]
    self.embedding = feature_embedding(spec, vocab_sizes)
    self.chain_towers = layers.ParallelMLP(
      len(self.chain), m.expert_units, dropout=m.dropout, name="chain_towers"
    )
    self.transfers = [
      layers.AdaptiveInformationTransfer(m.expert_units[-1], name=f"ait_{t.name}")
      for t in self.chain[1:]
    ]
    self.chain_heads = layers.ParallelMLP(
      len(self.chain),
      (*m.tower_units, 1),
      last_activation=None,
      dropout=m.dropout,
      name="chain_heads",
    )
    self.other_towers = (
      layers.ParallelMLP(
        len(self.other_tasks),
        (*m.expert_units, *m.tower_units, 1),
        last_activation=None,
        dropout=m.dropout,
        name="other_towers",
      )
      if self.other_tasks
      else None
    )

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    x = self.embedding(features)
    own = self.chain_towers(x, training=training)  # [B, C, U]
    representations, gates = [own[:, 0]], {}
    for k, transfer in enumerate(self.transfers, start=1):
      mixed, weights = transfer(representations[-1], own[:, k])
      representations.append(mixed)
      gates[f"ait_{self.chain[k].name}"] = weights
    logits = _split_tasks(
      self.chain, self.chain_heads(tf.stack(representations, axis=1), training=training)
    )
    if self.other_towers is not None:
      logits.update(_split_tasks(self.other_tasks, self.other_towers(x, training=training)))
    return logits, gates

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return [self.embedding, self.chain_towers, *self.transfers]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return list(self.embedding.trainable_variables)

  def make_task_heads(self) -> List[heads.TaskHead]:
    """From the second chain task on, each is trained end to end (the product
    of the chain's probabilities) on every impression."""
    chain = [t.name for t in aitm_chain(self.spec)]
    position = {name: k for k, name in enumerate(chain)}
    return [
      heads.EntireSpaceHead(t, chain[: position[t.name] + 1], f"{t.name}_entire")
      if position.get(t.name, 0) > 0
      else heads.for_task(self.spec, t, self.huber_delta)
      for t in self.spec.tasks
    ]


aitm_chain = options.aitm_chain


# STEM-Net lives in its own module; importing it registers `stem`.
from models.stem import STEMModel  # noqa: E402, F401
