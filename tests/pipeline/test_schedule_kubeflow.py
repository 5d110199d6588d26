"""`mtlrank schedule kubeflow`: the local pipeline compiled by KubeflowV2DagRunner
into a PipelineJob whose spec holds every component, wired as the local one."""

from __future__ import annotations

import json

import pytest

from contract import (
  DATA_GATE_NODE,
  EVALUATOR_NODE,
  EXAMPLE_GEN_NODE,
  EXAMPLE_VALIDATOR_NODE,
  PUSHER_NODE,
  SINGLE_TASK_TRAINER_NODE,
  STATISTICS_GEN_NODE,
  TRAINER_NODE,
  TRANSFORM_NODE,
)
from models.spec import load_spec
from pipeline import cli, config

pipeline_spec_pb2 = pytest.importorskip(
  "kfp.pipeline_spec.pipeline_spec_pb2", reason="needs the kubeflow extra"
)

# Compiling imports TensorFlow and TFX (tens of seconds): left out of `make test-fast`.
pytestmark = pytest.mark.slow

IMAGE = "europe-docker.pkg.dev/project/mtlrank/mtlrank:test"


def _compile(tmp_path, spec="census"):
  from google.protobuf import json_format

  out = tmp_path / "pipeline.json"
  home = tmp_path / "home"
  assert (
    cli.main(
      [
        "schedule",
        "kubeflow",
        "--spec",
        spec,
        "--home",
        str(home),
        "--image",
        IMAGE,
        "--out",
        str(out),
      ]
    )
    == 0
  )
  job = json.loads(out.read_text())
  spec_pb = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
  return job, spec_pb, home


def _inputs(task) -> dict:
  return {
    key: (a.task_output_artifact.producer_task, a.task_output_artifact.output_artifact_key)
    for key, a in task.inputs.artifacts.items()
  }


def test_the_census_pipeline_compiles_with_every_component_wired_as_locally(tmp_path):
  from pipeline.pipeline import create_pipeline

  job, spec_pb, home = _compile(tmp_path)
  tasks = spec_pb.root.dag.tasks
  # Every node of the local pipeline is a task, but the latest-spans resolver
  # (the window is the run's span on Kubeflow); the latest-blessed-model
  # resolver becomes the compiler's two query tasks.
  paths = config.PipelinePaths.for_spec("census", home)
  local = {n.id for n in create_pipeline(load_spec("census"), paths).components}
  assert local - set(tasks) == {"latest_spans_resolver", "latest_blessed_model_resolver"}
  assert {
    "latest_blessed_model_resolver-model-blessing-resolver",
    "latest_blessed_model_resolver-model-resolver",
  } <= set(tasks)
  for node in (
    EXAMPLE_GEN_NODE,
    STATISTICS_GEN_NODE,
    EXAMPLE_VALIDATOR_NODE,
    DATA_GATE_NODE,
    TRANSFORM_NODE,
    TRAINER_NODE,
    EVALUATOR_NODE,
    PUSHER_NODE,
    SINGLE_TASK_TRAINER_NODE,
  ):
    assert node in tasks, node

  # The wiring: the gate reads the span and its checks; Transform the window's
  # (this run's) examples, after the gate passed; the Evaluator the Trainer's
  # model against the latest blessed one; the Pusher the model and its blessing.
  assert _inputs(tasks[DATA_GATE_NODE]) == {
    "examples": (EXAMPLE_GEN_NODE, "examples"),
    "statistics": (STATISTICS_GEN_NODE, "statistics"),
    "anomalies": (EXAMPLE_VALIDATOR_NODE, "anomalies"),
  }
  assert _inputs(tasks[TRANSFORM_NODE])["examples"] == (EXAMPLE_GEN_NODE, "examples")
  assert DATA_GATE_NODE in tasks[TRANSFORM_NODE].dependent_tasks
  assert _inputs(tasks[TRAINER_NODE])["examples"] == (TRANSFORM_NODE, "transformed_examples")
  assert _inputs(tasks[TRAINER_NODE])["transform_graph"] == (TRANSFORM_NODE, "transform_graph")
  evaluator = _inputs(tasks[EVALUATOR_NODE])
  assert evaluator["model"] == (TRAINER_NODE, "model")
  assert evaluator["examples"] == (EXAMPLE_GEN_NODE, "examples")
  assert evaluator["baseline_model"] == ("latest_blessed_model_resolver-model-resolver", "model")
  assert _inputs(tasks[PUSHER_NODE]) == {
    "model": (TRAINER_NODE, "model"),
    "model_blessing": (EVALUATOR_NODE, "blessing"),
  }
  # The single-task baseline is evaluated in the Evaluator's own TFMA pass.
  assert evaluator["single_task_model"] == (SINGLE_TASK_TRAINER_NODE, "model")

  # The custom pieces run in the given image, by their module paths; DataGate's
  # artifact type is declared under its `ns.Title` name.
  executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
  assert executors[f"{DATA_GATE_NODE}_executor"]["container"]["image"] == IMAGE
  args = {
    node: executors[f"{node}_executor"]["container"]["args"]
    for node in tasks
    if f"{node}_executor" in executors and "container" in executors[f"{node}_executor"]
  }
  assert "components.data_gate.Executor" in args[DATA_GATE_NODE]
  assert "components.example_gen.Executor" in args[EXAMPLE_GEN_NODE]
  assert "components.pusher.Executor" in args[PUSHER_NODE]
  gate_output = spec_pb.components[DATA_GATE_NODE].output_definitions.artifacts["result"]
  assert "title: mtlrank.DataGateResult" in gate_output.artifact_type.instance_schema
  # The schema ImportSchemaGen reads at run time was written to the pipeline root.
  assert (home / "pipelines" / "census" / "curated_schema" / "schema.pbtxt").is_file()


def test_uri_locations_stay_uris():
  from pipeline.schedule import kubeflow

  spec = load_spec("synthetic")
  paths = kubeflow.uri_paths(spec, "gs://bucket/mtlrank/")
  assert paths.data_dir == "gs://bucket/mtlrank/data/synthetic"
  assert (
    paths.curated_schema_path
    == "gs://bucket/mtlrank/pipelines/synthetic/curated_schema/schema.pbtxt"
  )
  assert paths.model_base_path("synthetic") == "gs://bucket/mtlrank/serving/synthetic"
