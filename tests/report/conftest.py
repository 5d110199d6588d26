"""The report tests render the shared census session's third run (tests/conftest.py):
a model trained for a few steps against the blessed first model, not blessed,
with failed no-regression gates to show and a single-task baseline beside it."""

from __future__ import annotations

import pytest

from models.spec import RankingSpec
from pipeline import runner


@pytest.fixture(scope="session")
def report_spec(regressed_census_spec: RankingSpec) -> RankingSpec:
  return regressed_census_spec


@pytest.fixture(scope="session")
def report_run(regressed_census_run) -> runner.RunSummary:
  """The summary of the run the report shows; its root is `summary.pipeline_root`."""
  return regressed_census_run.summary
