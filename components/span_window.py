"""The training window: each span once, in its newest ingestion.

TFX's `SpanRangeStrategy` returns every Examples artifact whose span lies in
the window. A span ingested twice (a `--no-cache` rerun, a backfill repeated)
then counts twice: Transform reads both copies and every row of that span is
trained on twice. This strategy keeps, per span, only the newest artifact
(highest `version`, then the latest ingested), so a re-ingested span replaces
the old copy and an unchanged one is not doubled. An ingestion that carries
all three splits (train, validation, eval) wins over one that does not (a
span ingested before the validation split existed), whatever their order.
"""

from __future__ import annotations

from typing import Dict, List

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver
from tfx.types import artifact_utils

from contract import SPLITS

SPAN_PROPERTY = "span"
VERSION_PROPERTY = "version"


def _int_property(artifact: types.Artifact, name: str) -> int:
  """A span or version, as ExampleGen records them: custom properties."""
  if not artifact.has_custom_property(name):
    return 0
  text = artifact.get_string_custom_property(name)  # older TFX stored spans as strings
  return int(text) if text else artifact.get_int_custom_property(name)


def has_all_splits(artifact: types.Artifact) -> bool:
  """Whether an Examples artifact holds train, validation and eval."""
  try:
    names = artifact_utils.decode_split_names(artifact.split_names)
  except (AttributeError, ValueError):
    return False
  return all(split in names for split in SPLITS)


def latest_spans(artifacts: List[types.Artifact], num_spans: int) -> List[types.Artifact]:
  """The newest artifact of each of the latest `num_spans` spans, newest span first."""
  newest: Dict[int, types.Artifact] = {}
  for artifact in artifacts:
    if not artifact.has_custom_property(SPAN_PROPERTY):
      raise RuntimeError(f"artifact {artifact.id} ({artifact.uri}) has no span")
    span = _int_property(artifact, SPAN_PROPERTY)
    key = (has_all_splits(artifact), _int_property(artifact, VERSION_PROPERTY), artifact.id)
    held = newest.get(span)
    if held is None or key > (
      has_all_splits(held),
      _int_property(held, VERSION_PROPERTY),
      held.id,
    ):
      newest[span] = artifact
  if not newest:
    return []
  latest = max(newest)
  return [newest[s] for s in sorted(newest, reverse=True) if s > latest - num_spans]


class LatestSpansStrategy(resolver.ResolverStrategy):
  """Resolver strategy: `latest_spans` of every input channel."""

  def __init__(self, num_spans: int):
    if num_spans < 1:
      raise ValueError(f"num_spans must be >= 1, got {num_spans}")
    self.num_spans = int(num_spans)

  def resolve_artifacts(
    self, store: mlmd.MetadataStore, input_dict: Dict[str, List[types.Artifact]]
  ) -> Dict[str, List[types.Artifact]] | None:
    resolved = {
      key: latest_spans(artifacts, self.num_spans) for key, artifacts in input_dict.items()
    }
    return resolved if all(resolved.values()) else None
