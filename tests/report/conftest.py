"""One small real census pipeline run shared by every report test.

The run trains for two epochs on the first rows of the real census file, with
a never_married AUC gate no model reaches, so the report has a failed gate to
show. A pipeline run costs minutes: it runs once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.spec import RankingSpec, Threshold, load_spec
from pipeline import config, runner

UNREACHABLE_AUC = 0.9999


@pytest.fixture(scope="session")
def report_spec(census_sample: Path) -> RankingSpec:
  """The census spec on a sample, with a small budget and one unreachable gate."""
  return load_spec("census").replace(
      data={"params": {"path": str(census_sample), "eval_every": 5}},
      training={"epochs": 2, "batch_size": 256},
      evaluation={"thresholds": (
          Threshold(task="income", metric="auc", value=0.7),
          Threshold(task="never_married", metric="auc", value=UNREACHABLE_AUC)),
          "slices": (("sex",),), "gated_slices": (("sex",),), "min_slice_size": 100})


@pytest.fixture(scope="session")
def report_run(tmp_path_factory, report_spec: RankingSpec) -> runner.RunSummary:
  """The summary of one finished run; its pipeline root is `summary.pipeline_root`."""
  home = tmp_path_factory.mktemp("home")
  paths = config.PipelinePaths.for_spec(report_spec.name, home)
  return runner.run(report_spec, paths)
