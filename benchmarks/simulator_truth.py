"""The ground truth a model of the simulator's logged features can reach at
best: the hidden intent integrated out (used by the ESMM experiment and the
synthetic click check)."""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from pipeline.data.world import _sigmoid


def x_only_conversion_targets(
  hidden: Mapping[str, np.ndarray], strength: float, nodes: int = 40
) -> Dict[str, np.ndarray]:
  """The best pCVR a model of the logged features x can have, two ways, per row
  of `simulate_span(...)["hidden"]` (the intent z ~ N(0, 1) integrated out by
  Gauss-Hermite quadrature):

  - `entire_space`: E_z[p_conv(x, z)], the conversion probability if this
    impression were clicked, over the intents of all impressions like it;
  - `click_space`: P(conversion | click, x) = E_z[a(x, z) p_conv(x, z)] / E_z[a(x, z)],
    over the intents of the impressions like it that were clicked: what a
    model trained on clicked rows estimates, and what ESMM's pCTCVR / pCTR
    estimates too (the examination does not depend on z);
  - `attraction`: E_z[a(x, z)], the best position-free pCTR up to the
    examination factor.
  """
  z, weights = np.polynomial.hermite_e.hermegauss(nodes)
  weights = weights / weights.sum()
  attraction = _sigmoid(hidden["attraction_logit_x"][:, None] + strength * z)
  conversion = _sigmoid(hidden["conv_logit_x"][:, None] + strength * z)
  return {
    "entire_space": conversion @ weights,
    "click_space": (attraction * conversion) @ weights / (attraction @ weights),
    "attraction": attraction @ weights,
  }
