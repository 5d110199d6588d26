"""Distributed training: MirroredStrategy over two CPU devices and a two-worker
MultiWorkerMirroredStrategy on localhost, each in fresh subprocesses (logical
devices and collective servers must be set up before TensorFlow starts)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Fresh TensorFlow processes per test (~10-40 s each): left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
mode, out = sys.argv[1], sys.argv[2]
import tensorflow as tf
if mode == "mirrored":
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
  from models import distribute
  strategy = distribute.strategy_from_environment()
import numpy as np
import tf_keras as keras
import conftest as tiny
from models import architectures

from models import inputs

result = {"replicas": strategy.num_replicas_in_sync}
for balancing in sys.argv[3].split(","):
  keras.utils.set_random_seed(0)
  spec = tiny.make_spec("mmoe", balancing=balancing)
  with strategy.scope():
    model = architectures.build_model(spec, tiny.VOCAB_SIZES)
    model.compile_for_spec(spec, steps_per_execution=1)
  reference = architectures.build_model(spec, tiny.VOCAB_SIZES)
  reference.compile_for_spec(spec, steps_per_execution=1)
  reference.set_weights(model.get_weights())
  if sys.argv[4] == "records":
    # The Trainer's input: TFRecords parsed once into memory, reshuffled per epoch.
    records_dir = f"{out}.records_{balancing}"
    os.makedirs(records_dir, exist_ok=True)
    pattern, feature_spec = tiny.write_transformed_records(spec, records_dir, n=256)
    step_data = inputs.make_input([pattern], feature_spec, spec, 64, shuffle=False)
    train = inputs.make_input([pattern], feature_spec, spec, 64, shuffle=True)
    assert step_data.in_memory and train.in_memory
    step_data, data = step_data.dataset, train.dataset
  else:
    step_data = data = tiny.make_dataset(spec, n=256, batch_size=64)
  # One step on the same global batch: the replicas' summed update must be
  # the single-device update (masked means over the global batch).
  model.fit(step_data.take(1), epochs=1, verbose=0)
  reference.fit(step_data.take(1), epochs=1, verbose=0)
  diff = max(float(np.abs(a.numpy() - b.numpy()).max())
             for a, b in zip(model.trainable_weights, reference.trainable_weights))
  history = model.fit(data, epochs=2, verbose=0)
  result[balancing] = {
      "max_weight_difference": diff, "loss": history.history["loss"],
      "checksum": float(sum(np.sum(w.numpy()) for w in model.trainable_weights))}
with open(out, "w") as f:
  json.dump(result, f)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(
  tmp_path: Path,
  mode: str,
  balancings: str,
  index: int = 0,
  tf_config: dict | None = None,
  data: str = "tiny",
) -> subprocess.Popen:
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests" / "models")]),
  }
  env.pop("TF_CONFIG", None)
  if tf_config is not None:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen(
    [sys.executable, str(script), mode, str(tmp_path / f"result_{index}.json"), balancings, data],
    env=env,
    cwd=str(REPO),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _result(process: subprocess.Popen, tmp_path: Path, index: int) -> dict:
  output, _ = process.communicate(timeout=400)
  assert process.returncode == 0, output[-4000:]
  return json.loads((tmp_path / f"result_{index}.json").read_text())


def _check_training(result: dict, balancing: str) -> None:
  run = result[balancing]
  assert run["max_weight_difference"] < 1e-5, (balancing, run)
  assert run["loss"][-1] < run["loss"][0], (balancing, run)


def test_mirrored_strategy_update_equals_the_single_device_update(tmp_path):
  result = _result(_launch(tmp_path, "mirrored", "fixed,pcgrad"), tmp_path, 0)
  assert result["replicas"] == 2
  for balancing in ("fixed", "pcgrad"):
    _check_training(result, balancing)


def test_mirrored_strategy_trains_from_the_in_memory_records_input(tmp_path):
  result = _result(_launch(tmp_path, "mirrored", "fixed", data="records"), tmp_path, 0)
  assert result["replicas"] == 2
  _check_training(result, "fixed")


# The in-memory records input (the Trainer's): the tiny in-process dataset
# adds nothing a second two-worker launch would show.
@pytest.mark.parametrize("data", ["records"])
def test_two_worker_multi_worker_mirrored_fit_on_localhost(tmp_path, data):
  workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
  processes = [
    _launch(
      tmp_path,
      "multi_worker",
      "uncertainty",
      index=i,
      tf_config={"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}},
      data=data,
    )
    for i in range(2)
  ]
  results = [_result(p, tmp_path, i) for i, p in enumerate(processes)]
  for result in results:
    assert result["replicas"] == 2
    _check_training(result, "uncertainty")
  assert results[0]["uncertainty"]["checksum"] == pytest.approx(
    results[1]["uncertainty"]["checksum"], rel=1e-6
  )
