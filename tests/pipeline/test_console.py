"""The console shows the project's progress; the libraries' log goes to the
run log unless `--verbose`. A one-component TFX pipeline on LocalDagRunner."""

from __future__ import annotations

import io
import logging

import pytest
from tfx import v1 as tfx
from tfx.dsl.component.experimental.decorators import component

from pipeline import console, runner


@component
def NoisyLibrary():  # TFX refuses a `-> None` annotation
  logging.getLogger("some.library").warning("library noise from inside a component")
  logging.getLogger("tensorflow").warning("tensorflow noise from inside a component")


def _pipeline(root) -> tfx.dsl.Pipeline:
  return tfx.dsl.Pipeline(
    pipeline_name="noise",
    pipeline_root=str(root),
    components=[NoisyLibrary()],
    metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(root / "metadata.sqlite")
    ),
  )


@pytest.mark.slow  # two LocalDagRunner runs
@pytest.mark.parametrize("verbose", [False, True])
def test_library_log_goes_to_the_run_log_and_progress_to_the_console(tmp_path, capfd, verbose):
  stream = io.StringIO()
  log_file = tmp_path / "logs" / "run.log"
  runner._run_tfx(_pipeline(tmp_path), log_file, console.Progress(stream=stream), verbose)
  progress = stream.getvalue()
  assert "[mtlrank] NoisyLibrary ..." in progress and "NoisyLibrary done in" in progress
  logged = log_file.read_text()
  assert "library noise from inside a component" in logged
  assert "tensorflow noise from inside a component" in logged
  shown = capfd.readouterr()
  assert ("library noise" in shown.err + shown.out) == verbose
  assert ("tensorflow noise" in shown.err + shown.out) == verbose
