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
complete. The check and the push happen under an exclusive lock on the base
directory (a hidden sibling, `.<model>.push.lock`, on local filesystems: the
base directory itself holds version directories only), so two pipelines pushing
the same model at once push it once. A push that fails (a full disk) removes
its staging directory; one left by a killed push is removed by the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Any, Dict, Iterator, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

FINGERPRINT_FILE = "fingerprint.pb"
ALREADY_PUSHED_PROPERTY = "already_pushed_as_version"
PUSH_LOCK_SUFFIX = ".push.lock"
STAGING_PREFIX = ".staging-"


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


def push_lock_path(base_directory: str) -> str:
  """`<serving dir>/.<model>.push.lock`, beside the model's base directory."""
  base = os.path.abspath(base_directory.rstrip("/"))
  return os.path.join(os.path.dirname(base), f".{os.path.basename(base)}{PUSH_LOCK_SUFFIX}")


@contextlib.contextmanager
def push_lock(base_directory: str) -> Iterator[None]:
  """Exclusive while pushing into `base_directory`. Only a local directory can
  be flocked; on an object store (gs://, s3://) pushes are not serialised."""
  if "://" in base_directory:
    yield
    return
  os.makedirs(base_directory, exist_ok=True)
  fd = os.open(push_lock_path(base_directory), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)


def remove_stale_staging(base_directory: str) -> List[str]:
  """Removes staging directories a killed push left (call under `push_lock`)."""
  if not fileio.exists(base_directory):
    return []
  stale = [
    os.path.join(base_directory, name.rstrip("/"))
    for name in fileio.listdir(base_directory)
    if name.startswith(STAGING_PREFIX)
  ]
  for path in stale:
    fileio.rmtree(path)
  return stale


def push_atomically(model_dir: str, base_directory: str) -> int:
  """Copies a SavedModel to `<base>/<version>` via a hidden temporary dir,
  which a failed copy removes."""
  existing = numeric_versions(base_directory)
  version = max(int(time.time()), existing[-1] + 1 if existing else 0)
  staging = os.path.join(base_directory, f"{STAGING_PREFIX}{version}")
  fileio.makedirs(base_directory)
  if fileio.exists(staging):
    fileio.rmtree(staging)
  try:
    io_utils.copy_dir(model_dir, staging)
    fileio.rename(staging, os.path.join(base_directory, str(version)))
  except BaseException:
    if fileio.exists(staging):
      fileio.rmtree(staging)
    raise
  return version


def push_if_new(model_dir: str, base_directory: str) -> tuple[int, bool]:
  """(version, pushed): pushes unless the same SavedModel is already pushed,
  in which case `pushed` is False and `version` is the one holding it."""
  with push_lock(base_directory):
    for path in remove_stale_staging(base_directory):
      logging.warning("Removed %s, left by an earlier push that did not finish.", path)
    already = find_pushed_version(model_dir, base_directory)
    if already is not None:
      return already, False
    return push_atomically(model_dir, base_directory), True


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

    version, pushed = push_if_new(model_path, base_directory)
    if not pushed:
      logging.info(
        "Model %s is already pushed as version %d; not pushing again.", model_path, version
      )
      self._MarkNotPushed(model_push)
      model_push.set_int_custom_property(ALREADY_PUSHED_PROPERTY, version)
      return
    serving_path = os.path.join(base_directory, str(version))
    logging.info("Model pushed to %s.", serving_path)
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
