"""Server-side batching: merging concurrent requests, splitting results,
isolating a bad request, and the batching-parameters file."""

from __future__ import annotations

import threading
import time
from typing import Dict, List

import grpc
import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions
from serving.config import ConfigError, batching_options
from serving.errors import ServingError, invalid_argument


class RecordingModel:
  """Doubles its input; records the batch sizes it was called with; refuses
  negative values, as a model refuses a malformed example."""

  def __init__(self):
    self.calls: List[int] = []
    self.gate = threading.Event()

  def __call__(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    self.gate.wait(5)
    self.calls.append(len(inputs["x"]))
    if (inputs["x"] < 0).any():
      raise invalid_argument("negative input")
    return {"y": inputs["x"] * 2, "n": np.full(len(inputs["x"]), len(inputs["x"]))}


def run_concurrently(batcher: Batcher, values: List[np.ndarray]):
  results: List[object] = [None] * len(values)

  def call(index: int) -> None:
    try:
      results[index] = batcher({"x": values[index]})
    except ServingError as error:
      results[index] = error

  threads = [threading.Thread(target=call, args=(i,)) for i in range(len(values))]
  for thread in threads:
    thread.start()
  return threads, results


def test_concurrent_requests_are_merged_and_split_back():
  model = RecordingModel()
  batcher = Batcher(
    model, BatchingOptions(max_batch_size=16, batch_timeout_micros=200_000, num_batch_threads=1)
  )
  values = [np.array([i, i + 100], dtype=np.float32) for i in range(6)]
  threads, results = run_concurrently(batcher, values)
  model.gate.set()
  for thread in threads:
    thread.join(10)
  for value, result in zip(values, results):
    np.testing.assert_array_equal(result["y"], value * 2)
  assert sum(model.calls) == 12 and len(model.calls) < 6, model.calls


def test_batches_never_exceed_the_maximum_size():
  model = RecordingModel()
  batcher = Batcher(
    model, BatchingOptions(max_batch_size=4, batch_timeout_micros=100_000, num_batch_threads=1)
  )
  threads, results = run_concurrently(batcher, [np.ones(3, np.float32)] * 5)
  model.gate.set()
  for thread in threads:
    thread.join(10)
  assert max(model.calls) <= 4 and all(r["y"].shape == (3,) for r in results)


def test_a_bad_request_fails_alone():
  model = RecordingModel()
  batcher = Batcher(
    model, BatchingOptions(max_batch_size=16, batch_timeout_micros=200_000, num_batch_threads=1)
  )
  values = [np.ones(2, np.float32), -np.ones(2, np.float32), np.full(2, 3, np.float32)]
  threads, results = run_concurrently(batcher, values)
  model.gate.set()
  for thread in threads:
    thread.join(10)
  assert isinstance(results[1], ServingError)
  assert results[1].code == grpc.StatusCode.INVALID_ARGUMENT
  np.testing.assert_array_equal(results[0]["y"], values[0] * 2)
  np.testing.assert_array_equal(results[2]["y"], values[2] * 2)


def test_a_full_queue_answers_unavailable():
  model = RecordingModel()
  batcher = Batcher(
    model,
    BatchingOptions(
      max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1
    ),
  )
  threads, results = run_concurrently(batcher, [np.ones(1, np.float32)] * 4)
  time.sleep(0.5)
  model.gate.set()
  for thread in threads:
    thread.join(10)
  refused = [r for r in results if isinstance(r, ServingError)]
  assert refused and all(r.code == grpc.StatusCode.UNAVAILABLE for r in refused)


def test_a_lone_request_runs_at_once_in_its_own_thread():
  model = RecordingModel()
  model.gate.set()
  batcher = Batcher(model, BatchingOptions(max_batch_size=8, batch_timeout_micros=500_000))
  started = time.monotonic()
  np.testing.assert_array_equal(batcher({"x": np.ones(2, np.float32)})["y"], [2, 2])
  assert time.monotonic() - started < 0.5
  assert model.calls == [2]


def test_a_request_soon_after_another_waits_out_the_timeout():
  model = RecordingModel()
  model.gate.set()
  batcher = Batcher(model, BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000))
  batcher({"x": np.ones(1, np.float32)})  # idle batcher: runs at once
  started = time.monotonic()
  np.testing.assert_array_equal(batcher({"x": np.ones(2, np.float32)})["y"], [2, 2])
  assert 0.2 <= time.monotonic() - started < 2.0
  assert model.calls == [1, 2]


def test_a_lone_request_failure_is_raised_and_frees_its_slot():
  model = RecordingModel()
  model.gate.set()
  batcher = Batcher(model, BatchingOptions(max_batch_size=8, num_batch_threads=1))
  with pytest.raises(ServingError):
    batcher({"x": -np.ones(1, np.float32)})
  time.sleep(0.01)
  np.testing.assert_array_equal(batcher({"x": np.ones(1, np.float32)})["y"], [2])


def test_a_waiting_batch_keeps_gathering_requests():
  model = RecordingModel()
  batcher = Batcher(
    model, BatchingOptions(max_batch_size=64, batch_timeout_micros=0, num_batch_threads=1)
  )
  threads, results = run_concurrently(batcher, [np.ones(1, np.float32)] * 10)
  time.sleep(0.3)  # the first batch runs (blocked on the gate); the rest queue
  model.gate.set()
  for thread in threads:
    thread.join(10)
  assert all(r["y"].shape == (1,) for r in results)
  assert len(model.calls) < 10 and sum(model.calls) == 10, model.calls


def test_batching_parameters_file(tmp_path):
  path = tmp_path / "batching.txt"
  path.write_text(
    "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n"
    "num_batch_threads { value: 3 }\nmax_enqueued_batches { value: 9 }\n"
    "pad_variable_length_inputs: true\n"
  )
  assert batching_options(str(path)) == BatchingOptions(64, 2000, 3, 9)
  path.write_text("max_batch_size { value: 0 }")
  with pytest.raises(ConfigError, match="max_batch_size"):
    batching_options(str(path))
  path.write_text("max_batch_sizes: 3")
  with pytest.raises(ConfigError):
    batching_options(str(path))
