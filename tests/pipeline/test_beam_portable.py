"""Portable Beam without a pipeline: what a bad endpoint or flag does. (A real
run through the PortableRunner is in test_training_window.py.)"""

from __future__ import annotations

import os

import pytest

from pipeline import beam_portable, cli


def test_an_endpoint_nobody_answers_fails_naming_it_and_restores_the_environment(tmp_path):
  port = beam_portable._free_port()
  beam = beam_portable.PortableBeam(
    tmp_path, job_endpoint=f"localhost:{port}", worker_pool=f"localhost:{port}", ready_timeout=1
  )
  with pytest.raises(beam_portable.BeamServiceError, match=f"nothing answers at localhost:{port}"):
    with beam:
      pass
  assert beam_portable.JOB_ENDPOINT_ENV not in os.environ
  assert not list(tmp_path.iterdir())  # connecting starts nothing, so logs nothing


def test_endpoints_need_the_portable_mode(capsys, tmp_path):
  code = cli.main(
    ["run", "--spec", "synthetic", "--home", str(tmp_path), "--beam-job-endpoint", "localhost:8099"]
  )
  assert code == 2 and "need --beam portable" in capsys.readouterr().err
  assert not (tmp_path / "pipelines").exists()


def test_endpoints_are_placeholders_resolved_from_the_environment_when_a_component_runs(
  monkeypatch,
):
  from tfx.dsl.compiler import placeholder_utils
  from tfx.orchestration.portable import data_types

  args = beam_portable.with_placeholders(beam_portable.portable_pipeline_args())
  assert args[0] == "--runner=PortableRunner"  # plain flags stay strings
  endpoint = args[1]
  assert not isinstance(endpoint, str)  # the same compiled value whatever the port
  monkeypatch.setenv(beam_portable.JOB_ENDPOINT_ENV, "localhost:12345")
  resolved = placeholder_utils.resolve_placeholder_expression(
    endpoint.encode(), placeholder_utils.ResolutionContext(exec_info=data_types.ExecutionInfo())
  )
  assert resolved == "--job_endpoint=localhost:12345"
