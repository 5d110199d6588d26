"""Helpers for conformance tests of a TF Serving endpoint (mtlrank's server or
TF Serving itself): the endpoint with its model directory, in-process
reference outputs, waiting for version states, and float comparison.
tests/serving/conftest.py explains how to point the tests at an endpoint."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_status_pb2,
  model_service_pb2_grpc,
  prediction_service_pb2_grpc,
)

from tests.serving.fakes import build_ranking_model

MODEL_NAME = "rank"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(interval)
  raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def push_version(model_dir: Path, model_name: str, version: int, seed: int) -> Path:
  """Writes a fixture version as the pipeline does: into a temporary
  directory, then a rename."""
  staging = model_dir / f".staging-{version}"
  build_ranking_model(staging, model_name, seed=seed)
  target = model_dir / str(version)
  staging.rename(target)
  return target


@dataclasses.dataclass
class Endpoint:
  """A TF Serving endpoint and the model directory it polls."""

  grpc_target: str
  rest_address: str
  model_name: str
  model_dir: Path
  server_model_dir: str
  _references: Dict[int, object] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.channel = grpc.insecure_channel(self.grpc_target)
    self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

  @property
  def rest_url(self) -> str:
    return f"http://{self.rest_address}"

  def statuses(
    self, model_name: str | None = None
  ) -> Dict[int, get_model_status_pb2.ModelVersionStatus]:
    """The versions of the endpoint's model (or `model_name`) by number."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name or self.model_name
    try:
      response = self.models.GetModelStatus(request, timeout=10)
    except grpc.RpcError:
      return {}
    return {s.version: s for s in response.model_version_status}

  def serving_version(self) -> int:
    """The newest AVAILABLE version."""
    available = [v for v, s in self.statuses().items() if s.state == AVAILABLE]
    assert available, "no version is available"
    return max(available)

  def wait_for_state(self, version: int, state: int, timeout: float = 60):
    def reached():
      status = self.statuses().get(version)
      return status if status is not None and status.state == state else None

    return wait_until(reached, timeout, f"version {version} to reach state {state}")

  def push(self, version: int, seed: int) -> Path:
    return push_version(self.model_dir, self.model_name, version, seed)

  def reference(self, version: int, examples, signature: str = "serving_default"):
    """The outputs of an in-process call of the same version's signature."""
    if version not in self._references:
      self._references[version] = tf.saved_model.load(str(self.model_dir / str(version)))
    function = self._references[version].signatures[signature]
    return {
      k: v.numpy()
      for k, v in function(
        **{next(iter(function.structured_input_signature[1])): tf.constant(examples)}
      ).items()
    }


def assert_close(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray]) -> None:
  assert sorted(actual) == sorted(expected)
  for name in expected:
    np.testing.assert_allclose(
      np.asarray(actual[name], dtype=np.float64),
      np.asarray(expected[name], dtype=np.float64),
      rtol=1e-5,
      atol=1e-6,
      err_msg=name,
    )


def http(address: str, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
  """(HTTP status, decoded JSON or text) of a call to a REST address."""
  data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
  request = urllib.request.Request(f"http://{address}{path}", data=data, method=method)
  try:
    with urllib.request.urlopen(request, timeout=30) as response:
      status, payload = response.status, response.read()
  except urllib.error.HTTPError as error:
    status, payload = error.code, error.read()
  try:
    return status, json.loads(payload)
  except ValueError:
    return status, payload.decode("utf-8", "replace")
