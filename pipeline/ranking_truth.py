"""Per-request ranking quality against a known truth (the simulator's
position-free ground truth), as plain numpy: the math behind
`pipeline.tfma_truth_metrics.TruthRanking`, also used by the benchmarks.

Within one request of n items with true gains g >= 0 (the true utility, or a
task's truth) and scores s:

* NDCG@k: DCG@k(s) / DCG@k(g), DCG@k(s) = sum over the k items ranked first
  by s of g / log2(1 + rank); linear gains, since the truths are expected
  values (a probability, seconds), not relevance grades. Ties in s are broken
  against the model (the lower-gain item first), so a constant score earns no
  credit from the order the rows happen to arrive in.
* pairwise agreement: over the pairs of items whose truths differ, the share
  the score orders as the truth does (a tie in s counts one half). For a binary
  truth it is the request's AUC; it is (1 + Kendall's tau-b-like) / 2 otherwise.
* the random order's expected values: NDCG@k = mean(g) * sum_{r<=k} 1/log2(1+r)
  / DCG@k(g) exactly (every item is equally likely at every rank), agreement 1/2.
* the oracle (the truth itself): 1 for both, by definition.

`oracle_share(model, random)` = (model - random) / (1 - random): the share of
the oracle's lift over random that a score reaches (0 = random, 1 = the truth).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

# What `request_metrics` returns per request, besides the scores' names.
NDCG = "ndcg"
AGREEMENT = "agreement"
# The metric names TFMA reports (pipeline.tfma_truth_metrics) and the console
# and report read (pipeline.truth_table): here, beside the math, so readers
# need neither Beam nor TFMA.
TRUTH_RANKING_NAME = "truth"
TRUTH_REQUESTS = "truth_requests"
BASELINES = ("position", "random", "oracle")


def metric_names(cutoffs: Sequence[int]) -> List[str]:
  """The ranking metrics per score: `ndcg@k` for each cutoff, then `agreement`."""
  return [f"{NDCG}@{k}" for k in cutoffs] + [AGREEMENT]


def result_name(metric: str, score: str = "model", share: bool = False) -> str:
  """`truth_<metric>` for the model, `truth_<metric>_<baseline>` otherwise, `_share` after."""
  name = f"{TRUTH_RANKING_NAME}_{metric}" + ("" if score == "model" else f"_{score}")
  return name + ("_share" if share else "")


def _discounts(n: int) -> np.ndarray:
  return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def ndcg_at_k(gains: np.ndarray, scores: np.ndarray, k: int) -> float | None:
  """NDCG@k of `scores` against nonnegative `gains`; None when every gain is 0
  (no ordering can be right or wrong there)."""
  gains = np.asarray(gains, np.float64)
  scores = np.asarray(scores, np.float64)
  ideal = np.sort(gains)[::-1][:k]
  best = float(ideal @ _discounts(len(ideal)))
  if best <= 0:
    return None
  # lexsort: last key first; ties in the score put the smaller gain first.
  order = np.lexsort((gains, -scores))[:k]
  return float(gains[order] @ _discounts(len(order))) / best


def random_ndcg_at_k(gains: np.ndarray, k: int) -> float | None:
  """The expected NDCG@k of a uniformly random order."""
  gains = np.asarray(gains, np.float64)
  ideal = np.sort(gains)[::-1][:k]
  best = float(ideal @ _discounts(len(ideal)))
  if best <= 0:
    return None
  return float(gains.mean() * _discounts(min(k, len(gains))).sum()) / best


def pairwise_agreement(truth: np.ndarray, scores: np.ndarray) -> Tuple[float, int] | None:
  """(share of truth-ordered pairs the score orders the same way, ties one
  half; number of such pairs), or None when no pair has distinct truths."""
  truth = np.asarray(truth, np.float64)
  scores = np.asarray(scores, np.float64)
  dt = np.sign(truth[:, None] - truth[None, :])
  ds = np.sign(scores[:, None] - scores[None, :])
  upper = np.triu(np.ones(dt.shape, bool), 1) & (dt != 0)
  pairs = int(upper.sum())
  if pairs == 0:
    return None
  product = (dt * ds)[upper]
  return float(((product > 0).sum() + 0.5 * (product == 0).sum()) / pairs), pairs


def oracle_share(model: float, random: float) -> float:
  """(model - random) / (oracle - random) with the oracle at 1."""
  return (model - random) / (1.0 - random) if random < 1.0 else float("nan")


def request_metrics(
  truth: np.ndarray, scores: Dict[str, np.ndarray], cutoffs: Iterable[int]
) -> Dict[Tuple[str, str], float]:
  """One request's {(score name, metric): value} for every score of `scores`,
  plus `random` (expected) and `oracle` (the truth); metric `ndcg@k` per
  cutoff and `agreement`. A metric undefined for the request is left out."""
  out: Dict[Tuple[str, str], float] = {}
  for k in cutoffs:
    name = f"{NDCG}@{k}"
    random = random_ndcg_at_k(truth, k)
    if random is None:
      continue
    out[("random", name)] = random
    out[("oracle", name)] = 1.0
    for score_name, values in scores.items():
      out[(score_name, name)] = ndcg_at_k(truth, values, k)
  agreement = {n: pairwise_agreement(truth, v) for n, v in scores.items()}
  if any(a is not None for a in agreement.values()):
    out[("random", AGREEMENT)] = 0.5
    out[("oracle", AGREEMENT)] = 1.0
    for score_name, value in agreement.items():
      if value is not None:
        out[(score_name, AGREEMENT)] = value[0]
  return out


def grouped_means(
  groups: np.ndarray,
  truth: np.ndarray,
  scores: Dict[str, np.ndarray],
  cutoffs: Iterable[int] = (10,),
) -> Dict[Tuple[str, str], float]:
  """Mean over requests (rows of a request contiguous) of `request_metrics`."""
  cutoffs = tuple(cutoffs)
  starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
  bounds = np.r_[starts, len(groups)]
  sums: Dict[Tuple[str, str], float] = {}
  counts: Dict[Tuple[str, str], int] = {}
  for begin, end in zip(bounds[:-1], bounds[1:]):
    one = request_metrics(truth[begin:end], {n: v[begin:end] for n, v in scores.items()}, cutoffs)
    for key, value in one.items():
      sums[key] = sums.get(key, 0.0) + value
      counts[key] = counts.get(key, 0) + 1
  return {key: sums[key] / counts[key] for key in sums}
