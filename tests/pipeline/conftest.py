"""Fixtures for the pipeline tests: small real data in the spans layout."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from models.spec import RankingSpec, Threshold, load_spec
from pipeline.config import REPO_ROOT

CENSUS_FILE = REPO_ROOT.parent / "shared" / "data" / "census-income.test.gz"
SAMPLE_ROWS = 5000


@pytest.fixture(scope="session")
def census_sample(tmp_path_factory) -> Path:
  """The first rows of the real census file, as the same gzip CSV."""
  if not CENSUS_FILE.exists():
    pytest.fail(f"{CENSUS_FILE} is missing: the tests need ../shared/data beside the repo")
  path = tmp_path_factory.mktemp("census") / "census-sample.gz"
  with gzip.open(CENSUS_FILE, "rt") as source, gzip.open(path, "wt") as sample:
    for index, line in enumerate(source):
      if index == SAMPLE_ROWS:
        break
      sample.write(line)
  return path


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
