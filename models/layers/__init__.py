"""Keras layers of the multi-task ranking models.

Every layer is small, configured by plain values (`get_config` round-trips),
takes its initializers and regularizers as arguments (Keras' convention), and
is written in the "fused" form that keeps CPU training fast.

  embedding.py     FeatureEmbedding, DotInteraction, CrossNetwork
  experts.py       ParallelMLP, ExpertGates, fused_matmul, CGCLayer,
                   AdaptiveInformationTransfer
  position.py      PositionBiasTower
  stem.py          STEMLayer, aftb_mask
  weight_decay.py  decayed_variables
"""

from models.layers.embedding import CrossNetwork, DotInteraction, FeatureEmbedding
from models.layers.experts import (
  AdaptiveInformationTransfer,
  CGCLayer,
  ExpertGates,
  ParallelMLP,
  build_sublayer,
  fused_matmul,
)
from models.layers.position import PositionBiasTower
from models.layers.stem import STEMLayer, aftb_mask
from models.layers.weight_decay import decayed_variables

__all__ = [
  "AdaptiveInformationTransfer",
  "CGCLayer",
  "CrossNetwork",
  "DotInteraction",
  "ExpertGates",
  "FeatureEmbedding",
  "ParallelMLP",
  "PositionBiasTower",
  "STEMLayer",
  "aftb_mask",
  "build_sublayer",
  "decayed_variables",
  "fused_matmul",
]
