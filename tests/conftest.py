"""Shared test setup: tf-keras before TensorFlow, quiet TF logs, a census sample."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

CENSUS_FILE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / \
    "census-income.test.gz"
CENSUS_SAMPLE_ROWS = 5000


@pytest.fixture(scope="session")
def census_sample(tmp_path_factory) -> Path:
  """The first rows of the real census file, as the same gzip CSV."""
  if not CENSUS_FILE.exists():
    pytest.fail(f"{CENSUS_FILE} is missing: the tests need ../shared/data beside the repo")
  path = tmp_path_factory.mktemp("census") / "census-sample.gz"
  with gzip.open(CENSUS_FILE, "rt") as source, gzip.open(path, "wt") as sample:
    for index, line in enumerate(source):
      if index == CENSUS_SAMPLE_ROWS:
        break
      sample.write(line)
  return path
