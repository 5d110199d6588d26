"""Retention: what a finished run removes, by the spec's `retention` section.

Two stores grow with every daily run: the serving directory (one version per
push) and the pipeline root (every component's artifacts, every run). After a
run, holding the run lock, `apply` keeps

  * in the serving directory, the newest `keep_pushed_versions` versions, and
    always the one being served (the highest version holding a SavedModel, or
    the versions a TF Serving model config pins) and the one holding the latest
    blessed model;
  * under the pipeline root, the artifacts of the newest `keep_runs` runs (a
    run: one `mtlrank run`, i.e. the full TFX run and the ingest-only runs that
    backfilled its window), every artifact such a run read (a cached
    component's outputs, the window's older spans), and the latest blessed
    model with its blessing (the next run's baseline and warm start).

A removed artifact is marked in ML Metadata as TFX's garbage collection does:
MARKED_FOR_DELETION before its files go, DELETED after. TFX's cache lookup
(tfx/orchestration/portable/cache_utils.py) skips an execution whose outputs are
not LIVE, and input resolution reads LIVE artifacts only, so a later run
recomputes what was removed instead of reading a missing directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import pusher as pusher_lib
from contract import EVALUATOR_NODE, PUSHER_NODE, SAVED_MODEL_FILENAME, TRAINER_NODE, TRANSFORM_NODE
from models.spec import RankingSpec
from models.spec_ops import RetentionSpec
from pipeline import config

# A TFX run with one of these nodes is a full run; the runs before it that have
# none (ingest-only backfills, a run the DataGate stopped) belong to it.
FULL_RUN_NODES = (TRANSFORM_NODE, TRAINER_NODE, EVALUATOR_NODE, PUSHER_NODE)
_LIVE = metadata_store_pb2.Artifact.LIVE
_MARKED = metadata_store_pb2.Artifact.MARKED_FOR_DELETION
_DELETED = metadata_store_pb2.Artifact.DELETED
_REMOVING_PREFIX = ".removing-"


@dataclasses.dataclass
class RetentionReport:
  """What one application removed; the run summary's `retention`."""

  removed_versions: List[int] = dataclasses.field(default_factory=list)
  kept_versions: List[int] = dataclasses.field(default_factory=list)
  removed_artifacts: List[Dict[str, object]] = dataclasses.field(default_factory=list)
  kept_runs: List[str] = dataclasses.field(default_factory=list)

  def to_dict(self) -> Dict[str, object]:
    return dataclasses.asdict(self)


# --- Selection: plain values in, plain values out -------------------------------------


def versions_to_remove(versions: Sequence[int], keep: int, protected: Iterable[int]) -> List[int]:
  """The versions beyond the newest `keep`, except the protected ones, oldest first."""
  newest = set(sorted(versions)[-keep:]) if keep > 0 else set()
  return sorted(v for v in versions if v not in newest and v not in set(protected))


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """One TFX pipeline run as retention sees it."""

  name: str
  order: tuple  # (create time, context id): oldest first
  full: bool


def group_runs(runs: Sequence[RunRecord]) -> List[List[str]]:
  """TFX runs grouped into `mtlrank run`s, oldest first: each group ends at a
  full run; trailing runs without one form the newest group."""
  groups: List[List[str]] = []
  current: List[str] = []
  for run in sorted(runs, key=lambda r: r.order):
    current.append(run.name)
    if run.full:
      groups.append(current)
      current = []
  if current:
    groups.append(current)
  return groups


def kept_run_names(runs: Sequence[RunRecord], keep: int) -> Set[str]:
  """The TFX run names of the newest `keep` groups (`group_runs`)."""
  return {name for group in group_runs(runs)[-keep:] for name in group}


def artifacts_to_remove(
  artifacts: Iterable[metadata_store_pb2.Artifact], keep_ids: Set[int], pipeline_root: str
) -> List[metadata_store_pb2.Artifact]:
  """LIVE artifacts stored under the pipeline root that no kept run touched and
  nothing protects. Artifacts elsewhere (a user's files) are never removed."""
  root = os.path.abspath(pipeline_root).rstrip("/") + "/"
  return [
    a
    for a in artifacts
    if a.state == _LIVE
    and a.id not in keep_ids
    and a.uri
    and os.path.abspath(a.uri).startswith(root)
  ]


def latest_blessed_ids(store: metadata_store.MetadataStore) -> Set[int]:
  """The latest blessed model and its blessings, as TFX's
  LatestBlessedModelStrategy picks it: the newest model a LIVE blessing marks
  `blessed` for."""
  blessings = [
    b
    for b in store.get_artifacts_by_type("ModelBlessing")
    if b.state == _LIVE and b.custom_properties.get("blessed", _NO).int_value == 1
  ]
  model_ids = {b.custom_properties.get("current_model_id", _NO).int_value for b in blessings}
  if not model_ids - {0}:
    return set()
  latest = max(model_ids - {0})
  chosen = {
    b.id for b in blessings if b.custom_properties.get("current_model_id", _NO).int_value == latest
  }
  return chosen | {latest}


_NO = metadata_store_pb2.Value()


def served_versions(base_directory: Path, model_config: str = "") -> Set[int]:
  """The highest version holding a SavedModel (what TF Serving's default
  policy serves), and the versions a model config's `specific` policy pins."""
  valid = [
    v
    for v in pusher_lib.numeric_versions(str(base_directory))
    if (base_directory / str(v) / SAVED_MODEL_FILENAME).is_file()
  ]
  served = {valid[-1]} if valid else set()
  if model_config:
    served |= pinned_versions(Path(model_config), base_directory)
  return served


def pinned_versions(model_config: Path, base_directory: Path) -> Set[int]:
  """Versions pinned by `model_version_policy.specific` for the model whose
  base_path is `base_directory`, in a ModelServerConfig text proto."""
  from tensorflow_serving.config import model_server_config_pb2

  from serving.config import parse_text_proto

  parsed = parse_text_proto(model_config, model_server_config_pb2.ModelServerConfig)
  pinned: Set[int] = set()
  for model in parsed.model_config_list.config:
    if os.path.abspath(model.base_path) != os.path.abspath(base_directory):
      continue
    if model.model_version_policy.WhichOneof("policy_choice") == "specific":
      pinned |= set(model.model_version_policy.specific.versions)
  return pinned


# --- Application -------------------------------------------------------------------------


def open_writable_store(metadata_path: Path) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = str(metadata_path)
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
  return metadata_store.MetadataStore(connection)


def run_records(store: metadata_store.MetadataStore) -> List[RunRecord]:
  full_executions: Set[int] = set()
  for node in store.get_contexts_by_type("node"):
    if node.name.split(".", 1)[-1] in FULL_RUN_NODES:
      full_executions |= {e.id for e in store.get_executions_by_context(node.id)}
  return [
    RunRecord(
      name=run.name,
      order=(run.create_time_since_epoch, run.id),
      full=any(e.id in full_executions for e in store.get_executions_by_context(run.id)),
    )
    for run in store.get_contexts_by_type("pipeline_run")
  ]


def _touched_by(store: metadata_store.MetadataStore, run_names: Set[str]) -> Set[int]:
  """Every artifact an execution of these runs read or wrote."""
  execution_ids = [
    e.id
    for run in store.get_contexts_by_type("pipeline_run")
    if run.name in run_names
    for e in store.get_executions_by_context(run.id)
  ]
  return {event.artifact_id for event in store.get_events_by_execution_ids(execution_ids)}


def _remove_path(path: str) -> None:
  if os.path.isdir(path):
    shutil.rmtree(path)
  elif os.path.exists(path):
    os.remove(path)


def prune_artifacts(
  store: metadata_store.MetadataStore, pipeline_root: Path, keep_runs: int, report: RetentionReport
) -> None:
  runs = run_records(store)
  kept = kept_run_names(runs, keep_runs)
  report.kept_runs = sorted(kept)
  keep_ids = _touched_by(store, kept) | latest_blessed_ids(store)
  type_names = {t.id: t.name for t in store.get_artifact_types()}
  doomed = artifacts_to_remove(store.get_artifacts(), keep_ids, str(pipeline_root))
  if not doomed:
    return
  for artifact in doomed:
    artifact.state = _MARKED
  store.put_artifacts(doomed)
  for artifact in doomed:
    _remove_path(artifact.uri)
    artifact.state = _DELETED
    report.removed_artifacts.append(
      {"id": artifact.id, "type": type_names.get(artifact.type_id, ""), "uri": artifact.uri}
    )
  store.put_artifacts(doomed)


def _blessed_version(store: metadata_store.MetadataStore, base_directory: Path) -> Set[int]:
  """The pushed version holding the latest blessed model, if it was pushed."""
  from tfx.utils import path_utils

  model_ids = [i for i in latest_blessed_ids(store) if i]
  for model in store.get_artifacts_by_id(model_ids):
    if store.get_artifact_types_by_id([model.type_id])[0].name != "Model":
      continue
    version = pusher_lib.find_pushed_version(
      path_utils.serving_model_path(model.uri), str(base_directory)
    )
    if version is not None:
      return {version}
  return set()


def prune_versions(
  base_directory: Path, keep: int, protected: Set[int], report: RetentionReport
) -> None:
  """Removes old versions under the Pusher's lock; each is first renamed to a
  hidden name, so a polling server sees it go at once, never half-deleted."""
  with pusher_lib.push_lock(str(base_directory)):
    versions = pusher_lib.numeric_versions(str(base_directory))
    doomed = versions_to_remove(versions, keep, protected)
    for version in doomed:
      hidden = base_directory / f"{_REMOVING_PREFIX}{version}"
      os.rename(base_directory / str(version), hidden)
      shutil.rmtree(hidden)
    report.removed_versions = doomed
    report.kept_versions = [v for v in versions if v not in doomed]


def apply(
  spec: RankingSpec, paths: config.PipelinePaths, retention: RetentionSpec | None = None
) -> RetentionReport | None:
  """Applies the spec's retention (or `retention`) after a run; None without one."""
  retention = retention or spec.retention
  if retention is None or not paths.metadata_path.exists():
    return None
  report = RetentionReport()
  store = open_writable_store(paths.metadata_path)
  base_directory = paths.model_base_path(spec.name)
  if base_directory.is_dir():
    protected = served_versions(base_directory, retention.serving_model_config)
    protected |= _blessed_version(store, base_directory)
    prune_versions(base_directory, retention.keep_pushed_versions, protected, report)
  prune_artifacts(store, paths.pipeline_root, retention.keep_runs, report)
  return report
