"""The training window holds each span once, in its newest ingestion."""

from __future__ import annotations

import pytest
from tfx.types import artifact_utils, standard_artifacts

from components.span_window import LatestSpansStrategy, latest_spans


def _examples(artifact_id: int, span: int, version: int | None = None, splits=None):
  artifact = standard_artifacts.Examples()
  artifact.id = artifact_id
  artifact.uri = f"/examples/{artifact_id}"
  artifact.set_int_custom_property("span", span)
  if splits is not None:
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
  if version is not None:
    artifact.set_int_custom_property("version", version)
  return artifact


def test_a_re_ingested_span_replaces_its_older_copy():
  artifacts = [_examples(1, 1), _examples(2, 2), _examples(3, 1), _examples(4, 3)]
  assert [a.id for a in latest_spans(artifacts, num_spans=3)] == [4, 2, 3]
  assert [a.id for a in latest_spans(artifacts, num_spans=2)] == [4, 2]


def test_a_higher_version_wins_over_a_later_ingestion():
  artifacts = [_examples(5, 1, version=2), _examples(6, 1, version=1)]
  assert [a.id for a in latest_spans(artifacts, num_spans=1)] == [5]


def test_an_ingestion_with_all_three_splits_wins_over_a_two_split_one():
  """A span ingested before the validation split existed is never trained on
  beside (or instead of) its three-split ingestion."""
  three = ["train", "validation", "eval"]
  artifacts = [
    _examples(7, 1, splits=three),
    _examples(8, 1, splits=["train", "eval"]),
    _examples(9, 2, splits=["train", "eval"]),
    _examples(10, 2, splits=three),
  ]
  assert [a.id for a in latest_spans(artifacts, num_spans=2)] == [10, 7]


def test_no_examples_resolves_nothing_and_a_window_must_hold_a_span():
  assert LatestSpansStrategy(2).resolve_artifacts(None, {"examples": []}) is None
  with pytest.raises(ValueError, match="num_spans"):
    LatestSpansStrategy(0)
