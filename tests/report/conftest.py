"""One small real census pipeline run shared by every report test.

The run trains for two epochs on the first rows of the real census file, with
a never_married AUC gate no model reaches, so the report has a failed gate to
show. A pipeline run costs minutes: it runs once per session.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from models.spec import RankingSpec, Threshold, load_spec
from pipeline import config, runner

CENSUS_FILE = config.REPO_ROOT.parent / "shared" / "data" / "census-income.test.gz"
SAMPLE_ROWS = 5000
UNREACHABLE_AUC = 0.9999


@pytest.fixture(scope="session")
def report_spec(tmp_path_factory) -> RankingSpec:
  """The census spec on a sample, with a small budget and one unreachable gate."""
  if not CENSUS_FILE.exists():
    pytest.fail(f"{CENSUS_FILE} is missing: the tests need ../shared/data beside the repo")
  sample = tmp_path_factory.mktemp("census") / "census-sample.gz"
  with gzip.open(CENSUS_FILE, "rt") as source, gzip.open(sample, "wt") as target:
    for index, line in enumerate(source):
      if index == SAMPLE_ROWS:
        break
      target.write(line)
  return load_spec("census").replace(
      data={"params": {"path": str(sample), "eval_every": 5}},
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
