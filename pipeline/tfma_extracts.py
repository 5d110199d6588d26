"""TFMA's default extractors with the extracts trimmed before they are unbatched.

TFMA carries every extract key through to the metrics: the raw serialized
example and every feature column, split per example by its UnbatchExtractor,
copied per slice, and, with a `query_key`, held in memory for the whole split
by the group-by-request step (on the in-memory Beam runner). The metrics read
only the labels, predictions, example weights and a few columns
(`eval_config.evaluated_feature_columns`). This extractor, placed just before
TFMA's UnbatchExtractor, drops the raw records and the other columns from each
batch, so that unbatching, slicing and grouping handle only what is measured.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import apache_beam as beam
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.extractors import unbatch_extractor

TRIM_STAGE_NAME = "TrimExtracts"
# Raw inputs no metric reads: the serialized examples and their Arrow batch.
_RAW_KEYS = (tfma.constants.INPUT_KEY, tfma.constants.ARROW_RECORD_BATCH_KEY)


def trim(extracts: Dict[str, Any], keep_features: frozenset) -> Dict[str, Any]:
  """A batch's extracts without the raw inputs and without the feature
  columns outside `keep_features`."""
  out = {k: v for k, v in extracts.items() if k not in _RAW_KEYS}
  features = out.get(tfma.constants.FEATURES_KEY)
  if isinstance(features, dict):
    out[tfma.constants.FEATURES_KEY] = {k: v for k, v in features.items() if k in keep_features}
  return out


def trim_extractor(keep_features: Sequence[str]) -> tfma.extractors.Extractor:
  keep = frozenset(keep_features)
  return tfma.extractors.Extractor(
    stage_name=TRIM_STAGE_NAME, ptransform=beam.Map(trim, keep_features=keep)
  )


def trimmed_extractors(
  eval_shared_model, eval_config: tfma.EvalConfig, keep_features: Sequence[str]
) -> List[tfma.extractors.Extractor]:
  """`tfma.default_extractors` with `trim_extractor` before the unbatching."""
  extractors = tfma.default_extractors(eval_shared_model=eval_shared_model, eval_config=eval_config)
  names = [e.stage_name for e in extractors]
  index = names.index(unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME)
  return extractors[:index] + [trim_extractor(keep_features)] + extractors[index:]
