"""Fixtures for the pipeline tests: the census spec on a small sample (`census_sample`
is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.spec import RankingSpec, Threshold, load_spec


@pytest.fixture(scope="session")
def small_census_spec(census_sample: Path) -> RankingSpec:
  """The census spec on a sample, with a small budget and loose gates."""
  spec = load_spec("census")
  return spec.replace(
      data={"params": {"path": str(census_sample), "eval_every": 5}},
      training={"epochs": 2, "batch_size": 256},
      evaluation={"thresholds": (
          Threshold(task="income", metric="auc", value=0.7, max_regression=0.05),
          Threshold(task="never_married", metric="auc", value=0.8, max_regression=0.05)),
          "slices": (("sex",),), "gated_slices": (("sex",),), "min_slice_size": 100})
