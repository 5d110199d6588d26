"""Pushing versions while 8 clients keep predicting: no request fails, the
answers move to the new version, and a corrupt version pushed next leaves
that one serving while GetModelStatus reports the failure.

The default run lasts ~10 s; MTLRANK_SERVING_SOAK_SECONDS=30 runs longer."""

from __future__ import annotations

import os
import threading
import time
from typing import List, Tuple

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.client import examples_request
from tests.serving.helpers import AVAILABLE, END, wait_until

# A 10 s soak: left out of `make test-fast`.
pytestmark = pytest.mark.slow

CLIENTS = 8
DURATION_SECONDS = float(os.environ.get("MTLRANK_SERVING_SOAK_SECONDS", "10"))


def push_corrupt(endpoint, version: int) -> None:
  staging = endpoint.model_dir / f".staging-{version}"
  (staging / "variables").mkdir(parents=True)
  (staging / "saved_model.pb").write_bytes(b"\x0a\x03bad" * 64)
  (staging / "variables" / "variables.index").write_bytes(b"truncated")
  staging.rename(endpoint.model_dir / str(version))


def test_push_during_sustained_load(endpoint, examples):
  old = endpoint.serving_version()
  new, corrupt = old + 1, old + 2
  stop = threading.Event()
  results: List[List[Tuple[float, int]]] = [[] for _ in range(CLIENTS)]
  failures: List[str] = []

  def client(index: int) -> None:
    channel = grpc.insecure_channel(endpoint.grpc_target)
    request = examples_request(examples[index % len(examples) :][:1], endpoint.model_name)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    deadline = time.monotonic() + DURATION_SECONDS * 3
    while not stop.is_set() and time.monotonic() < deadline:
      try:
        response = stub.Predict(request, timeout=10)
        results[index].append((time.monotonic(), response.model_spec.version.value))
      except grpc.RpcError as error:
        failures.append(f"{error.code().name}: {error.details()}")
    channel.close()

  threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
  started = time.monotonic()
  for thread in threads:
    thread.start()
  try:
    time.sleep(DURATION_SECONDS * 0.2)
    endpoint.push(new, seed=2)
    endpoint.wait_for_state(new, AVAILABLE, timeout=max(30, DURATION_SECONDS))
    wait_until(
      lambda: all(r and r[-1][1] == new for r in results),
      30,
      "every client to be answered by the new version",
    )
    push_corrupt(endpoint, corrupt)
    failed = endpoint.wait_for_state(corrupt, END, timeout=30)
    remaining = DURATION_SECONDS - (time.monotonic() - started)
    time.sleep(max(remaining, 1.0))
  finally:
    stop.set()
    for thread in threads:
      thread.join()

  assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:3]}"
  assert failed.status.error_code != 0 and failed.status.error_message
  statuses = endpoint.statuses()
  assert statuses[new].state == AVAILABLE
  assert statuses[old].state == END and statuses[old].status.error_code == 0
  for answers in results:
    versions = [version for _, version in answers]
    assert versions[0] == old and versions[-1] == new
    switch = versions.index(new)
    assert set(versions[switch:]) == {new}, "a client went back to the old version"
  assert sum(len(r) for r in results) > CLIENTS * 10
