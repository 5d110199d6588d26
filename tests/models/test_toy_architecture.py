"""Adding an architecture is one class: a toy registered here, with no other
edit to the product, trains through TFX's real Trainer executor (`run_fn` on
the census run's real Transform output) and exports a SavedModel whose
serving_default returns every task's output and the fused score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Mapping, Tuple

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from ml_metadata.proto import metadata_store_pb2
from tfx.components.trainer import executor as trainer_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as keys

from contract import FUSED_SCORE_OUTPUT, SERVING_SIGNATURE, TRANSFORM_NODE
from models import architectures
from models.features import SPEC_CONFIG_KEY
from pipeline import results

# Uses the session's census pipeline run: left out of `make test-fast`.
pytestmark = pytest.mark.pipeline


@architectures.register_architecture("toy_linear")
class ToyLinearModel(architectures.MultiTaskModel):
  """One linear logit per task over the shared embedding."""

  def __init__(self, spec, vocab_sizes: Mapping[str, int], **kwargs: Any):
    super().__init__(spec, vocab_sizes, **kwargs)
    self.embedding = architectures.feature_embedding(spec, vocab_sizes)
    self.logit = keras.layers.Dense(len(spec.tasks), name="toy_logits")

  def task_logits(self, features, training) -> Tuple[dict, dict]:
    logits = self.logit(self.embedding(features))
    return {t.name: logits[:, i : i + 1] for i, t in enumerate(self.tasks)}, {}

  @property
  def shared_layers(self) -> List[keras.layers.Layer]:
    return [self.embedding]

  @property
  def last_shared_variables(self) -> List[tf.Variable]:
    return []


def _transform_outputs(metadata_path: Path) -> Tuple[Any, Any]:
  """The (latest) Transform execution's transformed examples and transform graph."""
  store = results.open_store(metadata_path)
  types = {t.id: t.name for t in store.get_artifact_types()}
  node = next(
    c for c in store.get_contexts_by_type("node") if c.name.endswith(f".{TRANSFORM_NODE}")
  )
  execution = max(store.get_executions_by_context(node.id), key=lambda e: e.id)
  events = store.get_events_by_execution_ids([execution.id])
  outputs = store.get_artifacts_by_id(
    [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
  )
  by_type = {types[a.type_id]: a for a in outputs}
  return by_type["Examples"], by_type["TransformGraph"]


def _artifact(cls, mlmd_artifact=None, uri: str = ""):
  artifact = cls()
  if mlmd_artifact is not None:
    artifact.set_mlmd_artifact(mlmd_artifact)
  else:
    artifact.uri = uri
  return artifact


def test_a_registered_toy_architecture_trains_in_the_trainer_and_serves(
  first_census_run, small_census_spec, tmp_path
):
  paths, _ = first_census_run
  examples, graph = _transform_outputs(paths.metadata_path)
  spec = small_census_spec.replace(model={"architecture": "toy_linear"}, training={"epochs": 1})
  model = _artifact(standard_artifacts.Model, uri=str(tmp_path / "model"))
  model_run = _artifact(standard_artifacts.ModelRun, uri=str(tmp_path / "model_run"))
  schema = _artifact(standard_artifacts.Schema, uri=str(paths.curated_schema_path.parent))
  trainer_executor.GenericExecutor().Do(
    input_dict={
      keys.EXAMPLES_KEY: [_artifact(standard_artifacts.Examples, examples)],
      keys.TRANSFORM_GRAPH_KEY: [_artifact(standard_artifacts.TransformGraph, graph)],
      keys.SCHEMA_KEY: [schema],
    },
    output_dict={keys.MODEL_KEY: [model], keys.MODEL_RUN_KEY: [model_run]},
    exec_properties={
      keys.RUN_FN_KEY: "models.trainer.run_fn",
      keys.TRAIN_ARGS_KEY: json.dumps({"splits": ["train"]}),
      keys.EVAL_ARGS_KEY: json.dumps({"splits": ["validation"]}),
      keys.CUSTOM_CONFIG_KEY: json.dumps({SPEC_CONFIG_KEY: spec.trainer_view().to_json()}),
    },
  )
  served = tf.saved_model.load(artifact_utils.get_single_uri([model]) + "/Format-Serving")
  files = [str(f) for f in (paths.data_dir / "span-1" / "eval").glob("*.tfrecord*")]
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(16)
  serialized = [record.numpy() for record in dataset]
  outputs = served.signatures[SERVING_SIGNATURE](examples=tf.constant(serialized))
  assert set(outputs) >= {*spec.task_names, FUSED_SCORE_OUTPUT}
  for task in spec.task_names:
    values = outputs[task].numpy()
    assert values.shape == (16,) and np.all((values > 0) & (values < 1)), task
