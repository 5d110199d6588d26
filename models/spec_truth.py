"""Release thresholds on the truth-based ranking metrics
(`pipeline.tfma_truth_metrics`): `evaluation.thresholds.<task or score>` may
name `truth_ndcg@<k>`, `truth_agreement` and their `_share` (of the oracle's
lift over random) when a ground-truth feature is the `truth_of` that task or
the fused `score`, and the spec has a `query_key`. All are higher-is-better
and lie in [0, 1] for a model at least as good as random."""

from __future__ import annotations

import re
from typing import Sequence

TRUTH_METRIC = re.compile(r"^truth_(ndcg@(?P<k>\d+)|agreement)(_share)?$")
TRUTH_METRIC_EXAMPLES = ("truth_ndcg@10_share", "truth_agreement", "truth_agreement_share")


def is_truth_metric(metric: str) -> bool:
  return TRUTH_METRIC.match(metric) is not None


def truth_metric_error(metric: str, cutoffs: Sequence[int], query_key: str | None) -> str | None:
  """Why a truth metric cannot be gated, or None."""
  match = TRUTH_METRIC.match(metric)
  if match is None:
    return f"{metric!r} is not a truth metric (e.g. {', '.join(TRUTH_METRIC_EXAMPLES)})"
  if query_key is None:
    return f"{metric!r} is computed per request: it needs evaluation.query_key"
  if match.group("k") is not None and int(match.group("k")) not in cutoffs:
    return f"{metric!r}: {match.group('k')} is not in evaluation.ndcg_cutoffs {list(cutoffs)}"
  return None
