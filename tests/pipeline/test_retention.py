"""Retention without a pipeline: the spec sections, which versions and runs go,
and what a removal leaves in a real ML Metadata store and TFX's cache lookup.
(The real pipeline's retention is checked in test_training_window.py.)"""

from __future__ import annotations

import copy

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.portable import cache_utils

from models.spec import SPECS_DIR, SpecError, parse_spec, spec_from_json
from models.spec_ops import RetentionSpec
from pipeline import retention
from pipeline.runner import BeamOptions, beam_pipeline_args

LIVE, DELETED = metadata_store_pb2.Artifact.LIVE, metadata_store_pb2.Artifact.DELETED


def _raw() -> dict:
  return yaml.safe_load((SPECS_DIR / "synthetic.yaml").read_text())


def test_the_sections_load_with_defaults_and_leave_the_learning_caches_alone():
  raw = _raw()
  assert parse_spec(copy.deepcopy(raw)).retention is None  # absent: nothing is removed
  raw["retention"] = {"keep_runs": 3}
  raw["beam"] = {"args": ["--direct_num_workers=2"]}
  spec = parse_spec(raw)
  assert spec.retention == RetentionSpec(keep_pushed_versions=5, keep_runs=3)
  assert spec.beam.args == ("--direct_num_workers=2",)
  assert spec_from_json(spec.to_json()) == spec
  plain = parse_spec(_raw())
  assert spec.transform_view().to_json() == plain.transform_view().to_json()
  assert spec.trainer_view().to_json() == plain.trainer_view().to_json()


@pytest.mark.parametrize(
  "section, field",
  [
    ({"retention": {"keep_runs": 0}}, "retention.keep_runs: must be >= 1"),
    ({"retention": {"keep_pushed_versions": "all"}}, "retention.keep_pushed_versions: must be int"),
    ({"retention": {"keep_days": 3}}, "retention: unknown field(s) keep_days"),
    ({"beam": {"args": ["direct_num_workers=2"]}}, "beam.args[0]: must be a flag"),
    ({"beam": {"runner": "flink"}}, "beam: unknown field(s) runner"),
  ],
  ids=[
    "keep-runs-zero",
    "versions-not-int",
    "unknown-retention-field",
    "arg-no-dashes",
    "unknown-beam-field",
  ],
)
def test_bad_sections_name_the_field(section, field):
  raw = _raw()
  raw.update(section)
  with pytest.raises(
    SpecError,
    match=field.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
  ):
    parse_spec(raw)


def test_beam_arguments_are_the_mode_defaults_then_the_spec_then_the_command_line():
  raw = _raw()
  raw["beam"] = {"args": ["--direct_num_workers=2"]}
  spec = parse_spec(raw)
  args = beam_pipeline_args(spec, BeamOptions(args=("--direct_num_workers=1",)))
  assert args[0].startswith("--runner=") and args[-2:] == [
    "--direct_num_workers=2",
    "--direct_num_workers=1",
  ]
  portable = beam_pipeline_args(spec, BeamOptions(mode="portable"))
  assert portable[0] == "--runner=PortableRunner" and "--environment_type=EXTERNAL" in portable


def test_old_versions_go_but_never_the_served_nor_the_blessed_one():
  versions = [10, 20, 30, 40, 50]
  assert retention.versions_to_remove(versions, keep=2, protected=set()) == [10, 20, 30]
  assert retention.versions_to_remove(versions, keep=2, protected={10}) == [20, 30]
  assert retention.versions_to_remove(versions, keep=9, protected=set()) == []


def _version(base, number: int, valid: bool = True) -> None:
  (base / str(number)).mkdir(parents=True)
  if valid:
    (base / str(number) / "saved_model.pb").write_bytes(b"")


def test_the_served_version_is_the_highest_valid_one_or_the_pinned_ones(tmp_path):
  base = tmp_path / "serving" / "tiny"
  for number, valid in ((1, True), (2, True), (3, False)):
    _version(base, number, valid)
  assert retention.served_versions(base) == {2}  # 3 holds no SavedModel
  config = tmp_path / "models.config"
  config.write_text(
    f"model_config_list {{ config {{ name: 'tiny' base_path: '{base}' "
    "model_platform: 'tensorflow' model_version_policy { specific { versions: 1 } } } }"
  )
  assert retention.served_versions(base, str(config)) == {1, 2}
  report = retention.RetentionReport()
  retention.prune_versions(base, keep=1, protected={1, 2}, report=report)
  assert report.removed_versions == [] and sorted(p.name for p in base.iterdir()) == ["1", "2", "3"]
  retention.prune_versions(base, keep=1, protected={2}, report=report)
  assert report.removed_versions == [1] and sorted(p.name for p in base.iterdir()) == ["2", "3"]


def test_runs_group_into_mtlrank_runs_and_the_newest_are_kept():
  runs = [
    retention.RunRecord("a-ingest", (1, 1), full=False),
    retention.RunRecord("a", (2, 2), full=True),
    retention.RunRecord("b-ingest", (3, 3), full=False),
    retention.RunRecord("b", (4, 4), full=True),
    retention.RunRecord("c-stopped-at-gate", (5, 5), full=False),
  ]
  assert retention.group_runs(runs) == [["a-ingest", "a"], ["b-ingest", "b"], ["c-stopped-at-gate"]]
  assert retention.kept_run_names(runs, 2) == {"b-ingest", "b", "c-stopped-at-gate"}


class _Store:
  """A real MLMD store (SQLite) with TFX-shaped runs, executions and artifacts."""

  def __init__(self, tmp_path):
    self.root = tmp_path / "root"
    self.path = tmp_path / "metadata.sqlite"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(self.path)
    self.handle = metadata.Metadata(config).__enter__()
    self.store = self.handle.store
    self.types = {
      name: self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=name))
      for name in ("Examples", "Model", "ModelBlessing")
    }
    self.exec_type = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name="x"))
    self.nodes = {}

  def artifact(self, kind: str, name: str, **ints) -> metadata_store_pb2.Artifact:
    uri = self.root / name
    uri.mkdir(parents=True)
    (uri / "data").write_text(name)
    artifact = metadata_store_pb2.Artifact(type_id=self.types[kind], uri=str(uri), state=LIVE)
    for key, value in ints.items():
      artifact.custom_properties[key].int_value = value
    artifact.id = self.store.put_artifacts([artifact])[0]
    return artifact

  def context(self, type_name: str, name: str) -> metadata_store_pb2.Context:
    found = self.store.get_context_by_type_and_name(type_name, name)
    if found is not None:
      return found
    type_id = self.store.put_context_type(metadata_store_pb2.ContextType(name=type_name))
    context = metadata_store_pb2.Context(type_id=type_id, name=name)
    context.id = self.store.put_contexts([context])[0]
    return context

  def execution(self, run: str, node: str, inputs=(), outputs=(), extra_context=None) -> int:
    """One COMPLETE execution of `node` in `run`, with its input and output events."""
    contexts = [self.context("pipeline_run", run), self.context("node", f"pipe.{node}")]
    events = []
    for artifacts, kind in (
      (inputs, metadata_store_pb2.Event.INPUT),
      (outputs, metadata_store_pb2.Event.OUTPUT),
    ):
      for artifact in artifacts:
        event = metadata_store_pb2.Event(type=kind)
        event.path.steps.add().key = "out"
        events.append((artifact, event))
    execution = metadata_store_pb2.Execution(
      type_id=self.exec_type, last_known_state=metadata_store_pb2.Execution.COMPLETE
    )
    execution_id, _, _ = self.store.put_execution(
      execution, events, contexts + ([extra_context] if extra_context else [])
    )
    return execution_id

  def state(self, artifact) -> int:
    return self.store.get_artifacts_by_id([artifact.id])[0].state


def test_a_removed_artifact_is_deleted_in_mlmd_and_the_cache_no_longer_serves_it(tmp_path):
  db = _Store(tmp_path)
  old_examples = db.artifact("Examples", "old-examples")
  old_model = db.artifact("Model", "old-model")
  blessed_model = db.artifact("Model", "blessed-model")
  blessing = db.artifact("ModelBlessing", "blessing", blessed=1, current_model_id=blessed_model.id)
  new_examples = db.artifact("Examples", "new-examples")
  outside = metadata_store_pb2.Artifact(
    type_id=db.types["Examples"], uri=str(tmp_path / "user"), state=LIVE
  )
  outside.id = db.store.put_artifacts([outside])[0]
  cache_context = db.context("execution_cache", "key")
  db.execution("run-1", "ExampleGen", outputs=[old_examples], extra_context=cache_context)
  db.execution("run-1", "Trainer", inputs=[old_examples], outputs=[old_model])
  db.execution("run-2", "Trainer", outputs=[blessed_model])
  db.execution("run-2", "Evaluator", inputs=[blessed_model], outputs=[blessing])
  db.execution("run-3", "Trainer", inputs=[new_examples])
  assert cache_utils.get_cached_outputs(db.handle, cache_context) is not None

  report = retention.RetentionReport()
  retention.prune_artifacts(db.store, db.root, keep_runs=1, report=report)

  removed = {a["id"] for a in report.removed_artifacts}
  assert removed == {old_examples.id, old_model.id}
  assert db.state(old_examples) == DELETED and not (db.root / "old-examples").exists()
  # The latest blessed model and its blessing outlive their run; run-3's input
  # and an artifact outside the pipeline root stay.
  for kept in (blessed_model, blessing, new_examples, outside):
    assert db.state(kept) == LIVE
  assert (db.root / "blessed-model").is_dir()
  # TFX's cache lookup skips an execution whose outputs are not LIVE.
  assert cache_utils.get_cached_outputs(db.handle, cache_context) is None
