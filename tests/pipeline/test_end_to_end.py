"""End to end: the real pipeline (LocalDagRunner, Beam, TFT, TFMA, MLMD) on a
census sample pushes a blessed model whose `serving_default` answers raw
tf.Examples per task, and evaluates a single-task baseline beside it; a second
run reuses the cache and pushes nothing new; a third, with a far smaller
training budget against the blessed model, is not blessed, pushes nothing and
names the failing tasks. The runs are session fixtures (tests/conftest.py)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from contract import SINGLE_TASK_MODEL_NAME
from pipeline.data import split_files
from pipeline.results import slice_metrics
from serving.client import GrpcClient
from serving.config import ServerOptions
from serving.server import ModelServer

# Runs the real TFX pipeline: left out of `make test-fast`.
pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def first_run(first_census_run):
  """`(paths, summary)` of the first, blessed and pushed run."""
  return first_census_run


def test_first_run_pushes_a_blessed_model(first_run, small_census_spec):
  paths, summary = first_run
  assert summary.blessed, summary.not_blessed_reasons
  assert summary.pushed_model_dir is not None
  pushed = Path(summary.pushed_model_dir)
  assert pushed.parent == paths.model_base_path(small_census_spec.name)
  assert pushed.name.isdigit()
  assert (pushed / "saved_model.pb").exists()
  assert summary.training_spans == [1]
  for task in small_census_spec.task_names:
    assert 0.7 < summary.metrics[task]["auc"] <= 1.0
    assert summary.metrics[task]["example_count"] == 1000
  for task in small_census_spec.task_names:
    assert 0 <= summary.metrics[task]["expected_calibration_error"] < 0.5
  for component in (
    "ExampleGen",
    "StatisticsGen",
    "DataGate",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
    "SingleTaskTrainer",
  ):
    assert summary.component_seconds[component] > 0
  # One TFMA pass evaluates the multi-task model and its single-task baseline.
  assert "SingleTaskEvaluator" not in summary.component_seconds


def test_single_task_baseline_is_evaluated_beside_the_multi_task_model(
  first_run, small_census_spec
):
  _, summary = first_run
  rows = {(r["task"], r["metric"]): r for r in summary.single_task_baseline}
  for task in small_census_spec.task_names:
    for metric in ("auc", "binary_crossentropy", "expected_calibration_error"):
      row = rows[(task, metric)]
      assert row["multi_task"] == pytest.approx(summary.metrics[task][metric])
      assert row["delta"] == pytest.approx(row["multi_task"] - row["single_task"])
      # The paired bootstrap interval holds the difference; "tie" when it holds zero.
      assert row["delta_lower"] <= row["delta"] <= row["delta_upper"]
      straddles = row["delta_lower"] <= 0 <= row["delta_upper"]
      assert (row["verdict"] == "tie") == straddles
      # Two different networks: their metrics differ.
      assert row["single_task"] != row["multi_task"]
    assert 0.7 < rows[(task, "auc")]["single_task"] <= 1.0
  auc = rows[("income", "auc")]
  if not auc["delta_lower"] <= 0 <= auc["delta_upper"]:
    assert auc["verdict"] == ("MTL better" if auc["delta"] > 0 else "STL better")
  assert "MTL - STL" in summary.render()
  # TFMA evaluated the candidate alone: the single-task values are the bootstrap's.
  assert slice_metrics(small_census_spec, summary.evaluation_uri)
  assert not slice_metrics(small_census_spec, summary.evaluation_uri, model=SINGLE_TASK_MODEL_NAME)


def test_summary_gives_each_trainers_kept_epoch_and_each_tasks_best(first_run, small_census_spec):
  _, summary = first_run
  epochs = small_census_spec.training.epochs
  joint, single = summary.selection["Trainer"], summary.selection["SingleTaskTrainer"]
  # The MMoE shares its experts: one epoch for both tasks, each task's trade-off given.
  assert not joint["per_task"] and 1 <= joint["kept_epoch"] <= joint["epochs_run"] <= epochs
  assert len(joint["epochs"]) == joint["epochs_run"]
  for task in small_census_spec.task_names:
    t = joint["tasks"][task]
    assert t["metric"] == "auc" and 1 <= t["best_epoch"] <= joint["epochs_run"]
    assert t["best"] == max(e[f"val_{task}_auc"] for e in joint["epochs"])
    assert t["given_up"] == pytest.approx(t["best"] - t["kept"])
  # The single-task networks share nothing: each task keeps its own best epoch.
  assert single["per_task"] == small_census_spec.training.per_task_selection
  if single["per_task"]:
    assert all(t["kept_epoch"] == t["best_epoch"] for t in single["tasks"].values())
  assert "SingleTaskTrainer: selected on validation" in summary.render()


def test_trainer_writes_gate_and_task_gradient_telemetry(first_run, small_census_spec):
  paths, _ = first_run
  # Later runs share the pipeline root: read the first run's Trainer execution.
  model_run = min(paths.pipeline_root.glob("Trainer/model_run/*"), key=lambda d: int(d.name))
  event_files = list(model_run.glob("logs/train/events.out.*"))
  assert event_files, "the Trainer wrote no TensorBoard train events"
  scalars = collections.defaultdict(list)
  for path in event_files:
    for event in EventFileLoader(str(path)).Load():
      for value in event.summary.value:
        scalars[value.tag].append(float(tf.make_ndarray(value.tensor)))
  tasks, num_experts = small_census_spec.task_names, small_census_spec.model.num_experts
  for task in tasks:
    gate = f"gate/gate_{task}"
    expert_means = np.array([scalars[f"{gate}/expert_{i}"] for i in range(num_experts)])
    assert expert_means.shape[1] > 0, f"no {gate} weights written"
    np.testing.assert_allclose(expert_means.sum(axis=0), 1.0, atol=1e-4)
    entropy = np.array(scalars[f"{gate}/entropy"])
    assert entropy.size and np.all((entropy >= 0) & (entropy <= np.log(num_experts) + 1e-5))
  cosine = np.array(scalars[f"gradient/cosine/{tasks[0]}__{tasks[1]}"])
  assert cosine.size and np.all(np.abs(cosine) <= 1 + 1e-5)
  assert np.all(np.array(scalars[f"gradient/norm/{tasks[0]}"]) > 0)


def test_serving_default_answers_raw_examples_per_task(first_run, small_census_spec):
  _, summary = first_run
  model = tf.saved_model.load(summary.pushed_model_dir)
  serve = model.signatures["serving_default"]
  assert "transform_features" in model.signatures
  paths, _ = first_run
  records = [
    r
    for r in tf.data.TFRecordDataset(
      [str(f) for f in split_files(paths.data_dir, 1, "eval")], compression_type="GZIP"
    )
    .take(16)
    .as_numpy_iterator()
  ]
  # A served request carries no labels: strip them from the raw examples.
  requests = []
  for record in records:
    example = tf.train.Example.FromString(record)
    for task in small_census_spec.tasks:
      del example.features.feature[task.label]
    requests.append(example.SerializeToString())
  outputs = serve(examples=tf.constant(requests))
  assert set(outputs) == set(small_census_spec.task_names) | {"score"}
  for task in small_census_spec.task_names:
    values = outputs[task].numpy()
    assert values.shape == (16,) and values.dtype == np.float32
    assert np.all((values >= 0) & (values <= 1))
  np.testing.assert_allclose(outputs["score"].numpy(), outputs["income"].numpy(), rtol=1e-5)


def test_second_run_is_cached_and_pushes_nothing_new(
  first_run, second_census_run, small_census_spec
):
  paths, first = first_run
  second = second_census_run.summary
  assert {"ExampleGen", "Transform", "Trainer", "SingleTaskTrainer"} <= set(
    second.cached_components
  )
  assert second.pushed_model_dir is None
  assert second.already_pushed_version == int(Path(first.pushed_model_dir).name)
  versions = [p.name for p in paths.model_base_path(small_census_spec.name).iterdir()]
  assert versions == [Path(first.pushed_model_dir).name]


def test_server_answers_grpc_predict_on_the_pushed_model_as_in_process(
  first_run, small_census_spec
):
  paths, summary = first_run
  name = small_census_spec.name
  records = [
    r
    for r in tf.data.TFRecordDataset(
      [str(f) for f in split_files(paths.data_dir, 1, "eval")], compression_type="GZIP"
    )
    .take(8)
    .as_numpy_iterator()
  ]
  labels = {task.label for task in small_census_spec.tasks}
  requests = []
  for record in records:
    example = tf.train.Example.FromString(record)
    for label in labels:
      del example.features.feature[label]
    requests.append(example.SerializeToString())
  function = tf.saved_model.load(summary.pushed_model_dir).signatures["serving_default"]
  expected = {k: v.numpy() for k, v in function(examples=tf.constant(requests)).items()}

  options = ServerOptions(
    port=0,
    rest_api_port=0,
    model_name=name,
    model_base_path=str(paths.model_base_path(name)),
    file_system_poll_wait_seconds=0,
  )
  with ModelServer(options) as server:
    client = GrpcClient(f"127.0.0.1:{server.grpc_port}", name, {})
    try:
      served = client.predict_examples(requests)
    finally:
      client.close()
  assert sorted(served) == sorted(expected)
  for output, values in expected.items():
    assert served[output].shape == values.shape == (len(requests),)
    np.testing.assert_allclose(served[output], values, rtol=1e-6, err_msg=output)


def test_a_regressed_model_is_not_blessed_nor_pushed_and_the_task_is_named(
  first_run, regressed_census_run, small_census_spec
):
  paths, first = first_run
  regressed = regressed_census_run.summary
  # A training-budget change re-trains on the same Transform output.
  assert "Transform" in regressed.cached_components
  assert "Trainer" not in regressed.cached_components
  assert not regressed.blessed
  assert regressed.pushed_model_dir is None and regressed.already_pushed_version is None
  versions = [p.name for p in paths.model_base_path(small_census_spec.name).iterdir()]
  assert versions == [Path(first.pushed_model_dir).name]
  regressions = [r for r in regressed.not_blessed_reasons if "change vs blessed baseline" in r]
  assert regressions, regressed.not_blessed_reasons
  failing = {
    task
    for task in small_census_spec.task_names
    if any(r.startswith(f"task {task}, slice overall: auc") for r in regressions)
  }
  assert failing, regressions
  for task in failing:
    drop = regressed.metrics[task]["auc"] - first.metrics[task]["auc"]
    assert drop < -0.05, (task, drop)
    assert regressed.metrics[task]["auc_diff"] == pytest.approx(drop, abs=1e-6)
  assert "blessed: NO" in regressed.render()
