"""Shared test setup: tf-keras before TensorFlow, quiet TF logs, a census sample,
and the census pipeline runs the pipeline and report tests share.

A census pipeline run costs minutes, so one session makes three, in order, in
one pipeline root: `first_census_run` (blessed, pushed), `second_census_run`
(same inputs: every component cached, nothing new pushed) and
`regressed_census_run` (a budget of a few training steps against the blessed
first model, with the no-regression gates: not blessed, nothing pushed, the
failing tasks named). The small spec turns the single-task baseline on, so
runs 1 and 3 also train and evaluate it.
"""

import os

import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import gzip
from pathlib import Path

import pytest

from models.spec import RankingSpec, Threshold, load_spec
from pipeline import config, runner

CENSUS_FILE = (
  Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "census-income.test.gz"
)
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


@pytest.fixture(scope="session")
def small_census_spec(census_sample: Path) -> RankingSpec:
  """The census spec on a sample, with a small budget, loose value gates and the
  single-task baseline on."""
  spec = load_spec("census")
  return spec.replace(
    data={"params": {"path": str(census_sample), "eval_every": 5}},
    training={"epochs": 2, "batch_size": 256},
    evaluation={
      "thresholds": (
        Threshold(task="income", metric="auc", value=0.7, max_regression=0.05),
        Threshold(task="never_married", metric="auc", value=0.8, max_regression=0.05),
      ),
      # age_bucket: a bucketized feature, sliced per bucket (tests/pipeline/test_bucket_slices.py).
      "slices": (("sex",), ("age_bucket",)),
      "gated_slices": (("sex",),),
      "min_slice_size": 100,
      "single_task_baseline": True,
    },
  )


@pytest.fixture(scope="session")
def regressed_census_spec(small_census_spec: RankingSpec) -> RankingSpec:
  """The same spec with a far smaller training budget: one epoch of 4 steps."""
  return small_census_spec.replace(training={"epochs": 1, "batch_size": 1024})


@dataclasses.dataclass(frozen=True)
class CensusRun:
  paths: config.PipelinePaths
  summary: runner.RunSummary

  def __iter__(self):
    """Unpacks as `(paths, summary)`."""
    return iter((self.paths, self.summary))


@pytest.fixture(scope="session")
def census_paths(tmp_path_factory, small_census_spec: RankingSpec) -> config.PipelinePaths:
  return config.PipelinePaths.for_spec(small_census_spec.name, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def first_census_run(census_paths, small_census_spec) -> CensusRun:
  return CensusRun(census_paths, runner.run(small_census_spec, census_paths))


@pytest.fixture(scope="session")
def second_census_run(first_census_run, small_census_spec) -> CensusRun:
  paths = first_census_run.paths
  return CensusRun(paths, runner.run(small_census_spec, paths))


@pytest.fixture(scope="session")
def regressed_census_run(second_census_run, regressed_census_spec) -> CensusRun:
  paths = second_census_run.paths
  return CensusRun(paths, runner.run(regressed_census_spec, paths))


# Session fixtures that run a whole pipeline: under `pytest -n` (pytest-xdist,
# as `make test` runs) every test that needs one goes to the same worker, so
# each pipeline runs once per session, not once per worker.
_PIPELINE_FIXTURES = {
  "first_census_run",
  "second_census_run",
  "regressed_census_run",
  "census_paths",
}


def pytest_collection_modifyitems(config, items):
  for item in items:
    if _PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.xdist_group("census_pipeline"))
