"""Pusher executor that writes a version atomically and never pushes a model twice.

TFX's own Pusher copies a blessed model into `<base>/<unix seconds>` file by
file. Two behaviours make that unfit for a scheduled pipeline:
  * a cached rerun re-evaluates the same model against itself (now the latest
    blessed baseline), blesses it again, and the stock Pusher writes the same
    SavedModel as a new version;
  * a model server polling the base directory can see a half-copied version.
This executor compares the candidate's SavedModel fingerprint with the
versions already pushed and skips a model that is already there (recording
which version holds it); otherwise it copies into a hidden temporary directory
and renames it into place, so a numeric version directory only ever appears
complete.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

FINGERPRINT_FILE = "fingerprint.pb"
ALREADY_PUSHED_PROPERTY = "already_pushed_as_version"


def numeric_versions(base_directory: str) -> List[int]:
  """The version directories under a model base path, oldest first."""
  if not fileio.exists(base_directory):
    return []
  return sorted(
    int(name.rstrip("/")) for name in fileio.listdir(base_directory) if name.rstrip("/").isdigit()
  )


def _fingerprint(model_dir: str) -> bytes | None:
  path = os.path.join(model_dir, FINGERPRINT_FILE)
  if not fileio.exists(path):
    return None
  with fileio.open(path, "rb") as f:
    return f.read()


def find_pushed_version(model_dir: str, base_directory: str) -> int | None:
  """The pushed version holding the very same SavedModel, if any."""
  candidate = _fingerprint(model_dir)
  if candidate is None:
    return None
  for version in reversed(numeric_versions(base_directory)):
    if _fingerprint(os.path.join(base_directory, str(version))) == candidate:
      return version
  return None


def push_atomically(model_dir: str, base_directory: str) -> int:
  """Copies a SavedModel to `<base>/<version>` via a hidden temporary dir."""
  existing = numeric_versions(base_directory)
  version = max(int(time.time()), existing[-1] + 1 if existing else 0)
  staging = os.path.join(base_directory, f".staging-{version}")
  fileio.makedirs(base_directory)
  if fileio.exists(staging):
    fileio.rmtree(staging)
  io_utils.copy_dir(model_dir, staging)
  fileio.rename(staging, os.path.join(base_directory, str(version)))
  return version


class Executor(pusher_executor.Executor):
  """Drop-in executor for `tfx.components.Pusher` (filesystem destinations)."""

  def Do(
    self,
    input_dict: Dict[str, List[types.Artifact]],
    output_dict: Dict[str, List[types.Artifact]],
    exec_properties: Dict[str, Any],
  ) -> None:
    model_push = artifact_utils.get_single_instance(
      output_dict[standard_component_specs.PUSHED_MODEL_KEY]
    )
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
    )
    base_directory = destination.filesystem.base_directory

    already = find_pushed_version(model_path, base_directory)
    if already is not None:
      logging.info(
        "Model %s is already pushed as version %d; not pushing again.", model_path, already
      )
      self._MarkNotPushed(model_push)
      model_push.set_int_custom_property(ALREADY_PUSHED_PROPERTY, already)
      return

    version = push_atomically(model_path, base_directory)
    serving_path = os.path.join(base_directory, str(version))
    logging.info("Model pushed to %s.", serving_path)
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
