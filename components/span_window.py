"""The training window: each span once, in its newest ingestion.

TFX's `SpanRangeStrategy` returns every Examples artifact whose span lies in
the window. A span ingested twice (a `--no-cache` rerun, a backfill repeated)
then counts twice: Transform reads both copies and every row of that span is
trained on twice. This strategy keeps, per span, only the newest artifact
(highest `version`, then the latest ingested), so a re-ingested span replaces
the old copy and an unchanged one is not doubled.
"""

from __future__ import annotations

from typing import Dict, List

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver

SPAN_PROPERTY = "span"
VERSION_PROPERTY = "version"


def _int_property(artifact: types.Artifact, name: str) -> int:
  """A span or version: ExampleGen records them as custom properties, TFX's
  other artifacts (statistics) as properties."""
  if artifact.has_custom_property(name):
    text = artifact.get_string_custom_property(name)  # older TFX stored spans as strings
    return int(text) if text else artifact.get_int_custom_property(name)
  if name in (type(artifact).PROPERTIES or {}):
    return int(getattr(artifact, name) or 0)
  return 0


def _has_span(artifact: types.Artifact) -> bool:
  return artifact.has_custom_property(SPAN_PROPERTY) or SPAN_PROPERTY in (
    type(artifact).PROPERTIES or {}
  )


def latest_spans(artifacts: List[types.Artifact], num_spans: int) -> List[types.Artifact]:
  """The newest artifact of each of the latest `num_spans` spans, newest span
  first (Examples of the training window; statistics of the previous span)."""
  newest: Dict[int, types.Artifact] = {}
  for artifact in artifacts:
    if not _has_span(artifact):
      raise RuntimeError(f"artifact {artifact.id} ({artifact.uri}) has no span")
    span = _int_property(artifact, SPAN_PROPERTY)
    key = (_int_property(artifact, VERSION_PROPERTY), artifact.id)
    held = newest.get(span)
    if held is None or key > (_int_property(held, VERSION_PROPERTY), held.id):
      newest[span] = artifact
  if not newest:
    return []
  latest = max(newest)
  return [newest[s] for s in sorted(newest, reverse=True) if s > latest - num_spans]


class LatestSpansStrategy(resolver.ResolverStrategy):
  """Resolver strategy: `latest_spans` of every input channel."""

  def __init__(self, num_spans: int, allow_empty: bool = False):
    """`allow_empty`: resolve to empty lists instead of nothing, for an
    optional input (the first span has no earlier span to compare with)."""
    if num_spans < 1:
      raise ValueError(f"num_spans must be >= 1, got {num_spans}")
    self.num_spans = int(num_spans)
    self.allow_empty = bool(allow_empty)

  def resolve_artifacts(
    self, store: mlmd.MetadataStore, input_dict: Dict[str, List[types.Artifact]]
  ) -> Dict[str, List[types.Artifact]] | None:
    resolved = {
      key: latest_spans(artifacts, self.num_spans) for key, artifacts in input_dict.items()
    }
    return resolved if self.allow_empty or all(resolved.values()) else None
