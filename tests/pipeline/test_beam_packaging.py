"""TFX's Beam executors build a package of TFX for remote workers unless a
dependency flag is given; the pipeline's local modes give one, a cluster's
arguments are left alone. Checked on TFX's own executor constructor."""

from __future__ import annotations

import tempfile

import pytest
from tfx.components.statistics_gen import executor as statistics_gen
from tfx.dsl.components.base import base_beam_executor

from pipeline import beam_portable, config


def _executor_args(args, tmp_path, monkeypatch):
  """The Beam arguments a TFX Beam executor (StatisticsGen's) ends with, and
  what its constructor left in the temp dir."""
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(args))
  executor = statistics_gen.Executor(context)
  return executor._beam_pipeline_args, sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize(
  "base",
  [config.BEAM_PIPELINE_ARGS, beam_portable.portable_pipeline_args()],
  ids=["in_memory", "portable"],
)
def test_local_modes_build_no_tfx_package(base, tmp_path, monkeypatch):
  args, left = _executor_args(config.with_local_workers(base), tmp_path, monkeypatch)
  assert not [a for a in args if a.startswith("--extra_package")]
  assert config.LOCAL_WORKERS_FLAG in args and left == []


def test_without_the_flag_tfx_builds_and_leaves_its_package(tmp_path, monkeypatch):
  # What the flag saves: the check above can fail.
  args, left = _executor_args(config.BEAM_PIPELINE_ARGS, tmp_path, monkeypatch)
  assert any(a.startswith("--extra_package=") and "tfx_ephemeral" in a for a in args)
  assert len(left) == 1 and (tmp_path / left[0] / "build" / "tfx" / "setup.py").exists()


@pytest.mark.parametrize(
  "args",
  [
    ["--runner=DataflowRunner", "--project=p", "--region=r"],
    [*config.BEAM_PIPELINE_ARGS, "--runner=FlinkRunner", "--flink_master=host:8081"],
    [*config.BEAM_PIPELINE_ARGS, "--setup_file=./setup.py"],
    ["--runner=PortableRunner", "--job_endpoint=host:8099", "--environment_type=DOCKER"],
  ],
  ids=["dataflow", "flink_after_defaults", "own_setup_file", "portable_docker"],
)
def test_cluster_arguments_are_left_as_given(args):
  assert config.with_local_workers(args) == args
