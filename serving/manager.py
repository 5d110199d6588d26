"""The version lifecycle of TF Serving, over the same directory layout.

Each model's base path is polled for numeric version directories. A version
becomes a load candidate once its directory is complete and unchanged since
the previous poll (a directory still being copied keeps changing). The model's
version policy (latest N, all, specific) picks the versions to serve; a picked
version loads, replays its warm-up requests and only then takes traffic.
Versions that are no longer picked unload only after their replacements are
available, so a version that fails to load (a corrupt directory) never
replaces a serving one; its failure shows in GetModelStatus until its
directory changes, when it is tried again. A version whose directory is
deleted leaves GetModelStatus once it no longer serves (TF Serving keeps it
as END; see docs/serving.md, Version lifecycle).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Set, Tuple

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from contract import SAVED_MODEL_FILENAME, VARIABLES_DIRNAME, VARIABLES_INDEX_FILENAME
from serving import metrics
from serving.batching import BatchingOptions
from serving.config import RequestOptions
from serving.errors import ServingError, from_tf_error, invalid_argument, not_found
from serving.servable import Servable

State = get_model_status_pb2.ModelVersionStatus.State
Fingerprint = Tuple[Tuple[str, int, int], ...]
WarmUp = Callable[[Servable], None]
# A just-started server compares two scans this far apart before loading.
INITIAL_SETTLE_SECONDS = 0.2

log = logging.getLogger(__name__)


@dataclasses.dataclass
class VersionRecord:
  version: int
  state: int
  fingerprint: Fingerprint | None = None
  error: ServingError | None = None


def fingerprint(version_dir: Path) -> Fingerprint | None:
  """Every file's path, size and mtime, or None while the directory lacks
  saved_model.pb or its variables index."""
  if not (version_dir / SAVED_MODEL_FILENAME).is_file():
    return None
  variables = version_dir / VARIABLES_DIRNAME
  if variables.is_dir() and not (variables / VARIABLES_INDEX_FILENAME).is_file():
    return None
  entries = []
  for root, _, files in os.walk(version_dir):
    for name in files:
      path = Path(root) / name
      try:
        stat = path.stat()
      except FileNotFoundError:
        return None
      entries.append((str(path.relative_to(version_dir)), stat.st_size, stat.st_mtime_ns))
  return tuple(sorted(entries))


def version_dirs(base_path: Path) -> Dict[int, Path]:
  """The version directories under a base path by version number. As in TF
  Serving, a directory's name is parsed as a number (`00000123` is version
  123) but the directory keeps its own name; of two names for one number the
  first in sorted order wins."""
  try:
    entries = sorted(os.scandir(base_path), key=lambda e: e.name)
  except (FileNotFoundError, NotADirectoryError):
    return {}
  dirs: Dict[int, Path] = {}
  for entry in entries:
    if not (entry.name.isascii() and entry.name.isdigit() and entry.is_dir()):
      continue
    version = int(entry.name)
    if version in dirs:
      log.warning(
        "%s and %s are both version %d; serving %s",
        dirs[version],
        entry.path,
        version,
        dirs[version].name,
      )
      continue
    dirs[version] = Path(entry.path)
  return dirs


def scan_versions(dirs: Dict[int, Path]) -> Dict[int, Fingerprint | None]:
  """Each version's fingerprint, led by its directory's name so that renaming
  `0123` to `123` counts as a change."""
  scan: Dict[int, Fingerprint | None] = {}
  for version, path in dirs.items():
    contents = fingerprint(path)
    scan[version] = None if contents is None else ((path.name, 0, 0),) + contents
  return scan


def _load_error(error: Exception, path: Path) -> ServingError:
  if isinstance(error, ServingError):
    return ServingError(error.code, f"warm-up of {path} failed: {error.message}")
  if isinstance(error, tf.errors.OpError):
    return from_tf_error(error)
  return ServingError(grpc.StatusCode.UNKNOWN, f"cannot load {path}: {error}")


class ModelManager:
  """Serves the versions of one model that its version policy picks."""

  def __init__(
    self,
    config: model_server_config_pb2.ModelConfig,
    batching: BatchingOptions | None,
    warm_up: WarmUp | None,
    request_options: RequestOptions = RequestOptions(),
  ):
    self.config = config
    self._batching = batching
    self._warm_up = warm_up
    self._request_options = request_options
    self._available: Dict[int, Servable] = {}  # replaced, never mutated: lock-free reads
    self._records: Dict[int, VersionRecord] = {}
    self._previous_scan: Dict[int, Fingerprint | None] = {}
    self._dirs: Dict[int, Path] = {}  # the version directories of the last scan
    self._lock = threading.Lock()

  @property
  def name(self) -> str:
    return self.config.name

  # --- requests --------------------------------------------------------------

  def servable(self, version: int | None = None, label: str | None = None) -> Servable:
    """The version a request names (by number or label) or the newest one."""
    available = self._available
    if label:
      if label not in self.config.version_labels:
        raise invalid_argument(f"Unrecognized servable version label: {label}")
      version = self.config.version_labels[label]
    if version is None:
      if not available:
        raise not_found(f"Servable not found for request: Latest({self.name})")
      return available[max(available)]
    servable = available.get(version)
    if servable is None:
      raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
    return servable

  def statuses(self, version: int | None = None) -> List[get_model_status_pb2.ModelVersionStatus]:
    with self._lock:
      records = sorted(self._records.values(), key=lambda r: r.version, reverse=True)
    if version is not None:
      records = [r for r in records if r.version == version]
      if not records:
        raise not_found(f"Could not find version {version} of model {self.name}")
    if not records:
      raise not_found(f"Could not find any versions of model {self.name}")
    return [_status_proto(r) for r in records]

  # --- lifecycle ---------------------------------------------------------------

  def poll(self) -> bool:
    """One reconciliation of the served versions with the base path; True
    if a version was loaded or unloaded."""
    self._dirs = version_dirs(Path(self.config.base_path))
    scan = scan_versions(self._dirs)
    settled = {v for v, fp in scan.items() if fp is not None and self._previous_scan.get(v) == fp}
    self._previous_scan = scan
    # Only a failed load keeps a version out until its directory changes; a
    # version unloaded because a newer one replaced it comes back if that one
    # is deleted (TF Serving's rollback: the newest remaining version serves).
    failed_before = {
      v: r for v, r in self._records.items() if r.state == State.END and r.error is not None
    }
    candidates = {
      v for v in settled if v not in failed_before or failed_before[v].fingerprint != scan[v]
    }
    candidates |= set(self._available) & set(scan)
    failed: Set[int] = set()
    available_before = dict(self._available)
    while True:  # a version that fails to load hands its place to the next candidate
      wanted = self._desired(candidates - failed) - set(self._available)
      if not wanted:
        break
      for version in sorted(wanted, reverse=True):
        if not self._load(version, scan[version]):
          failed.add(version)
    keep = self._desired(candidates - failed)
    for version in sorted(set(self._available) - keep):
      self._unload(version)
    self._forget_deleted(scan)
    self._mark_aspired(scan, settled, candidates - failed)
    return self._available != available_before

  def _forget_deleted(self, scan: Dict[int, Fingerprint | None]) -> None:
    """Drops from GetModelStatus the versions whose directory is gone and
    that no longer serve. TF Serving's ServableStateMonitor keeps them as END
    forever; a deleted (rolled back) version is not coming back, and listing it
    tells an operator it might. Versions the policy unloaded keep their END."""
    with self._lock:
      for version in [v for v in self._records if v not in scan and v not in self._available]:
        del self._records[version]

  def _mark_aspired(
    self, scan: Dict[int, Fingerprint | None], settled: Set[int], candidates: Set[int]
  ) -> None:
    """Reports as START the versions the policy will pick once their
    directories settle, as TF Serving reports the versions it aspires to."""
    unsettled = {v for v, fp in scan.items() if fp is not None and v not in settled}
    aspired = self._desired(candidates | unsettled) & unsettled
    with self._lock:
      for version, record in list(self._records.items()):
        if record.state == State.START and version not in aspired:
          del self._records[version]
      for version in aspired - set(self._records):
        self._records[version] = VersionRecord(version, State.START, scan[version])

  def _desired(self, candidates: Set[int]) -> Set[int]:
    policy = self.config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
      return set(candidates)
    if choice == "specific":
      return candidates & set(policy.specific.versions)
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(sorted(candidates)[-count:])

  def _set_record(self, record: VersionRecord) -> None:
    with self._lock:
      self._records[record.version] = record

  def _load(self, version: int, version_fingerprint: Fingerprint) -> bool:
    """Loads and warms up a version; False if it failed."""
    path = self._dirs[version]
    self._set_record(VersionRecord(version, State.LOADING, version_fingerprint))
    log.info("loading %s version %d from %s", self.name, version, path)
    try:
      servable = Servable.load(self.name, version, path, self._batching, self._request_options)
      if self._warm_up is not None:
        self._warm_up(servable)
    except Exception as error:  # a corrupt version must never stop the server
      failure = _load_error(error, path)
      metrics.LOAD_ATTEMPT_COUNT.increment(str(path), "fail")
      log.error("%s version %d failed to load: %s", self.name, version, failure.message)
      self._set_record(VersionRecord(version, State.END, version_fingerprint, failure))
      return False
    metrics.LOAD_ATTEMPT_COUNT.increment(str(path), "success")
    self._available = {**self._available, version: servable}
    self._set_record(VersionRecord(version, State.AVAILABLE, version_fingerprint))
    log.info("%s version %d is available", self.name, version)
    return True

  def _unload(self, version: int) -> None:
    record = self._records[version]
    self._set_record(dataclasses.replace(record, state=State.UNLOADING))
    # Requests holding the version finish on it; it is freed with the last one.
    self._available = {v: s for v, s in self._available.items() if v != version}
    self._set_record(dataclasses.replace(record, state=State.END))
    log.info("%s version %d is unloaded", self.name, version)

  def unload_all(self) -> bool:
    versions = sorted(self._available)
    for version in versions:
      self._unload(version)
    return bool(versions)


def _status_proto(record: VersionRecord) -> get_model_status_pb2.ModelVersionStatus:
  status = get_model_status_pb2.ModelVersionStatus(version=record.version, state=record.state)
  status.status.SetInParent()  # TF Serving always reports a status, OK included
  if record.error is not None:
    status.status.error_code = record.error.code_number
    status.status.error_message = record.error.message
  return status


class ServerCore:
  """The models a server serves, kept current by a polling thread."""

  def __init__(
    self,
    config: model_server_config_pb2.ModelServerConfig,
    poll_wait_seconds: float,
    batching: BatchingOptions | None = None,
    warm_up: WarmUp | None = None,
    request_options: RequestOptions = RequestOptions(),
  ):
    self._poll_wait = poll_wait_seconds
    self._batching = batching
    self._warm_up = warm_up
    self._request_options = request_options
    self._models: Dict[str, ModelManager] = {}
    self._poll_lock = threading.Lock()
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._refreeze_pending = False
    self._apply_config(config)

  def model(self, name: str, missing: str | None = None) -> ModelManager:
    """The named model's manager; NOT_FOUND (with `missing` as the message,
    if given, else TF Serving's for a Latest request) if none is configured."""
    manager = self._models.get(name)
    if manager is None:
      raise not_found(missing or f"Servable not found for request: Latest({name})")
    return manager

  @property
  def model_names(self) -> List[str]:
    return sorted(self._models)

  def start(self) -> None:
    """Loads what is on disk now, then keeps polling in the background."""
    self.poll_all()
    time.sleep(INITIAL_SETTLE_SECONDS)
    self.poll_all()
    if self._poll_wait > 0:
      self._thread = threading.Thread(target=self._poll_forever, name="version-poller", daemon=True)
      self._thread.start()

  def poll_all(self) -> None:
    with self._poll_lock:
      changed = False
      for manager in list(self._models.values()):
        changed = manager.poll() or changed
      self._refreeze_after(changed)

  def _refreeze_after(self, changed: bool) -> None:
    """Keeps the loaded versions' objects out of the cyclic garbage
    collector's way. A loaded SavedModel is hundreds of thousands of
    long-lived Python objects; without this, every full collection (which
    request garbage triggers every few hundred requests) walks them all:
    perf put ~10% of a busy server's CPU in the collector. So after a poll
    that loaded or unloaded a version, one full collection (freeing what
    an unloaded version left in cycles) and `gc.freeze()`, which moves every
    live object to the permanent generation the collector never scans. An
    unloaded version still held by a request in flight is frozen with the
    rest; the collection at the next poll frees it."""
    if not (changed or self._refreeze_pending):
      return
    self._refreeze_pending = changed
    gc.unfreeze()
    gc.collect()
    gc.freeze()

  def _poll_forever(self) -> None:
    while not self._stop.wait(self._poll_wait):
      try:
        self.poll_all()
      except Exception:  # the poller must outlive any one bad scan
        log.exception("polling the model directories failed")

  def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
    """Replaces the served models, as HandleReloadConfigRequest does; returns
    once the new configuration's versions are loaded."""
    validate_config(config)
    with self._poll_lock:
      self._apply_config(config)
    self.poll_all()
    time.sleep(INITIAL_SETTLE_SECONDS)
    self.poll_all()

  def _apply_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
    validate_config(config)
    configs = {c.name: c for c in config.model_config_list.config}
    for name in set(self._models) - set(configs):
      self._refreeze_pending = self._models.pop(name).unload_all() or self._refreeze_pending
    for name, model_config in configs.items():
      current = self._models.get(name)
      if current is not None and current.config.base_path == model_config.base_path:
        current.config = model_config
        continue
      if current is not None:
        self._refreeze_pending = current.unload_all() or self._refreeze_pending
      self._models[name] = ModelManager(
        model_config, self._batching, self._warm_up, self._request_options
      )

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    with self._poll_lock:
      for manager in self._models.values():
        manager.unload_all()


def validate_config(config: model_server_config_pb2.ModelServerConfig) -> None:
  """Raises INVALID_ARGUMENT for a configuration TF Serving would refuse, in
  its words (server_core.cc ValidateModelConfigList)."""
  if config.WhichOneof("config") != "model_config_list":
    raise ServingError(
      grpc.StatusCode.INVALID_ARGUMENT, "the model config must be a model_config_list"
    )
  seen: Set[str] = set()
  for model_config in config.model_config_list.config:
    if not model_config.name:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "every model config needs a name")
    if model_config.name in seen:
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Illegal to list model {model_config.name} multiple times in config list",
      )
    seen.add(model_config.name)
  for model_config in config.model_config_list.config:
    if not os.path.isabs(model_config.base_path):
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Expected model {model_config.name} to have an absolute path or URI; "
        f"got base_path()={model_config.base_path}",
      )
