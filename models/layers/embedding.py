"""The input layer: every transformed feature of a row into one dense vector,
with the spec's optional explicit interactions (dot products, DCN-v2 cross).
All the embedding tables of one width are one table read with a single gather.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras


@keras.utils.register_keras_serializable(package="mtlrank")
class FeatureEmbedding(keras.layers.Layer):
  """Turns the dict of transformed features into one dense vector per row.

  `embedded` lists (name, vocab_size, dim) of the id features (categorical and
  bucketized numeric), `numeric` the names of the float features. The tables of
  all features of one width are stored as one table with row offsets, so that
  the lookup is one gather per width instead of one per feature.

  `interaction` (the spec's `model.interaction` as a dict) adds explicit feature
  interactions to the output: kind `dot` appends one `DotInteraction` column per
  pair of embedded features, kind `cross` passes the vector through a
  `CrossNetwork` of `layers` layers; `none` (default) leaves it as it is.

  `embeddings_initializer` and `embeddings_regularizer` apply to every table
  (Keras' `Embedding` arguments and defaults: uniform in [-0.05, 0.05], none).

  Output: [B, output_dim] in the layer's compute dtype.
  """

  def __init__(
    self,
    embedded: Sequence[Sequence[Any]],
    numeric: Sequence[str],
    interaction: Dict[str, Any] | None = None,
    embeddings_initializer: Any = "uniform",
    embeddings_regularizer: Any = None,
    **kwargs: Any,
  ):
    super().__init__(**kwargs)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
    self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
    self.embedded = [(str(n), int(v), int(d)) for n, v, d in embedded]
    self.numeric = [str(n) for n in numeric]
    if not self.embedded and not self.numeric:
      raise ValueError("FeatureEmbedding needs at least one feature")
    groups: Dict[int, List[Tuple[str, int]]] = {}
    for name, vocab_size, dim in self.embedded:
      groups.setdefault(dim, []).append((name, vocab_size))
    # (dim, feature names, row offsets, vocab sizes), one per table.
    self._groups = tuple(
      (
        dim,
        tuple(n for n, _ in members),
        tuple(sum(v for _, v in members[:i]) for i in range(len(members))),
        tuple(v for _, v in members),
      )
      for dim, members in groups.items()
    )
    self.interaction = _interaction_config(interaction)
    self._interaction_layer = self._make_interaction()

  def _make_interaction(self) -> keras.layers.Layer | None:
    kind = self.interaction["kind"]
    if kind == "dot":
      columns = self.embedding_columns()
      for pair in self.interaction["pairs"]:
        for name in pair:
          if name not in columns:
            raise ValueError(f"interaction pair {pair}: {name!r} is not an embedded feature")
      return DotInteraction(
        [(columns[a][0], columns[b][0], columns[a][1]) for a, b in self.interaction["pairs"]],
        name="dot_interaction",
      )
    if kind == "cross":
      return CrossNetwork(self.interaction["layers"], name="cross_network")
    return None

  def embedding_columns(self) -> Dict[str, Tuple[int, int]]:
    """{embedded feature: (first column, width)} in the concatenated embeddings."""
    columns, start = {}, 0
    for dim, names, _, _ in self._groups:
      for name in names:
        columns[name] = (start, dim)
        start += dim
    return columns

  def build(self, input_shape: Any) -> None:
    self._tables = [
      self.add_weight(
        name=f"table_{dim}",
        shape=(sum(sizes), dim),
        initializer=self.embeddings_initializer,
        regularizer=self.embeddings_regularizer,
      )
      for dim, _, _, sizes in self._groups
    ]
    if self._interaction_layer is not None:
      self._interaction_layer.build(tf.TensorShape([None, self._input_dim]))
    super().build(input_shape)

  def feature_rows(self) -> Dict[str, Tuple[tf.Variable, int, int]]:
    """{embedded feature: (its table, first row, number of rows)}: where each
    feature's rows live in the shared tables (warm start copies them)."""
    return {
      name: (table, offset, size)
      for (_, names, offsets, sizes), table in zip(self._groups, self._tables)
      for name, offset, size in zip(names, offsets, sizes)
    }

  @property
  def decayed_weights(self) -> List[tf.Variable]:
    """The embedding tables: what weight decay shrinks (see `decayed_variables`)."""
    return list(self._tables)

  @property
  def _input_dim(self) -> int:
    return sum(d for _, _, d in self.embedded) + len(self.numeric)

  @property
  def output_dim(self) -> int:
    if self.interaction["kind"] == "dot":
      return self._input_dim + len(self.interaction["pairs"])
    return self._input_dim

  def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    parts = []
    for (dim, names, offsets, sizes), table in zip(self._groups, self._tables):
      ids = tf.concat(
        [tf.reshape(tf.cast(features[name], tf.int64), [-1, 1]) for name in names], axis=1
      )
      # Serving must not crash on an id outside the vocabulary (a skewed
      # transform graph): such ids read the feature's last (OOV) row.
      ids = tf.clip_by_value(ids, 0, tf.constant(sizes, tf.int64) - 1) + tf.constant(
        offsets, tf.int64
      )
      vectors = tf.gather(table, ids)  # [B, F, dim]
      parts.append(tf.reshape(tf.cast(vectors, self.compute_dtype), [-1, len(names) * dim]))
    if self.numeric:
      parts.append(
        tf.concat(
          [
            tf.reshape(tf.cast(features[name], self.compute_dtype), [-1, 1])
            for name in self.numeric
          ],
          axis=1,
        )
      )
    x = tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    return self._interaction_layer(x) if self._interaction_layer is not None else x

  def get_config(self) -> Dict[str, Any]:
    return {
      **super().get_config(),
      "embedded": [list(e) for e in self.embedded],
      "numeric": list(self.numeric),
      "interaction": {
        "kind": self.interaction["kind"],
        "pairs": [list(p) for p in self.interaction["pairs"]],
        "layers": self.interaction["layers"],
      },
      "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
      "embeddings_regularizer": (
        keras.regularizers.serialize(self.embeddings_regularizer)
        if self.embeddings_regularizer
        else None
      ),
    }


def _interaction_config(interaction: Dict[str, Any] | None) -> Dict[str, Any]:
  raw = dict(interaction or {})
  return {
    "kind": str(raw.get("kind", "none")),
    "pairs": [[str(a), str(b)] for a, b in raw.get("pairs", ())],
    "layers": int(raw.get("layers", 1)),
  }


@keras.utils.register_keras_serializable(package="mtlrank")
class DotInteraction(keras.layers.Layer):
  """Appends the dot product of pairs of column blocks of its input: the
  factorisation-machine term <e_user, e_item> of two embeddings, which an MLP
  on the concatenation has to approximate with many units.

  `pairs` lists (first column of a, first column of b, width).
  call(x [B, U]) -> [B, U + len(pairs)].
  """

  def __init__(self, pairs: Sequence[Sequence[int]], **kwargs: Any):
    super().__init__(**kwargs)
    self.pairs = [(int(a), int(b), int(w)) for a, b, w in pairs]
    if not self.pairs:
      raise ValueError("DotInteraction needs at least one pair")

  def call(self, x: tf.Tensor) -> tf.Tensor:
    dots = [
      tf.reduce_sum(x[:, a : a + w] * x[:, b : b + w], axis=1, keepdims=True)
      for a, b, w in self.pairs
    ]
    return tf.concat([x, *dots], axis=1)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "pairs": [list(p) for p in self.pairs]}


@keras.utils.register_keras_serializable(package="mtlrank")
class CrossNetwork(keras.layers.Layer):
  """DCN-v2 cross layers (Wang et al., WWW 2021), a stack of
  `tfrs.layers.dcn.Cross` (full rank): x_{l+1} = x_0 * (W_l x_l + b_l) + x_l,
  so layer l holds every feature product up to degree l + 1 with learned
  weights.

  call(x [B, U]) -> [B, U].
  """

  def __init__(self, num_layers: int = 1, **kwargs: Any):
    super().__init__(**kwargs)
    self.num_layers = int(num_layers)
    if self.num_layers < 1:
      raise ValueError("CrossNetwork needs num_layers >= 1")
    self._crosses: List[keras.layers.Layer] = []

  def build(self, input_shape: Any) -> None:
    width = int(tf.TensorShape(input_shape)[-1])
    # Small kernels: the layers start close to the identity (x_{l+1} ~ x_l).
    initializer = keras.initializers.TruncatedNormal(stddev=0.1 / width**0.5)
    self._crosses = [
      tfrs.layers.dcn.Cross(kernel_initializer=initializer, name=f"cross_{i}")
      for i in range(self.num_layers)
    ]
    super().build(input_shape)

  def call(self, x0: tf.Tensor) -> tf.Tensor:
    x = x0
    for cross in self._crosses:
      x = cross(x0, x)
    return x

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_layers": self.num_layers}
