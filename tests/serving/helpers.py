"""Helpers for conformance tests of a TF Serving endpoint (mtlrank's server or
TF Serving itself): the endpoint with its model directory, in-process
reference outputs, waiting for version states, and float comparison.
tests/serving/conftest.py explains how to point the tests at an endpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_status_pb2,
  model_service_pb2_grpc,
  prediction_service_pb2_grpc,
)

from serving.config import ServerOptions
from serving.server import ModelServer
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


@contextlib.contextmanager
def local_server(
  model_dir: Path, poll_seconds: float = 0.2, **options: Any
) -> Iterator[Tuple[Endpoint, ModelServer]]:
  """mtlrank's server on loopback polling `model_dir` (versions pushed
  before or after it starts), and the Endpoint that talks to it; `options`
  are further ServerOptions fields."""
  server_options = ServerOptions(
    port=0,
    rest_api_port=free_port(),
    model_name=model_dir.name,
    model_base_path=str(model_dir),
    file_system_poll_wait_seconds=poll_seconds,
    **options,
  )
  with ModelServer(server_options) as server:
    endpoint = Endpoint(
      f"127.0.0.1:{server.grpc_port}",
      f"127.0.0.1:{server.rest_port}",
      model_dir.name,
      model_dir,
      str(model_dir),
    )
    try:
      yield endpoint, server
    finally:
      endpoint.channel.close()


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


# --- raw HTTP/1.1 over a socket: what a careless or hostile client sends -------------


def http_bytes(
  method: str,
  path: str,
  host: str | None,
  body: bytes = b"",
  headers: Dict[str, str] | None = None,
  version: str = "HTTP/1.1",
) -> bytes:
  """One request as bytes; `host` None sends no Host header."""
  lines = [f"{method} {path} {version}"]
  if host is not None:
    lines.append(f"Host: {host}")
  if body or method == "POST":
    lines.append(f"Content-Length: {len(body)}")
  lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
  return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connect(address: str, timeout: float = 10) -> socket.socket:
  host, _, port = address.rpartition(":")
  sock = socket.create_connection((host, int(port)), timeout=timeout)
  sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
  return sock


def read_response(sock: socket.socket) -> Tuple[int, Dict[str, str], bytes] | None:
  """(status, headers, body) of the next response, or None when the server
  closed the connection first."""
  data = b""
  while b"\r\n\r\n" not in data:
    try:
      chunk = sock.recv(65536)
    except ConnectionResetError:
      chunk = b""
    if not chunk:
      if data:
        raise AssertionError(f"the connection closed mid-response: {data[:200]!r}")
      return None
    data += chunk
  head, _, body = data.partition(b"\r\n\r\n")
  status_line, *header_lines = head.decode("latin-1").split("\r\n")
  headers = {}
  for line in header_lines:
    name, _, value = line.partition(":")
    headers[name.strip().lower()] = value.strip()
  length = int(headers.get("content-length", "0"))
  while len(body) < length:
    chunk = sock.recv(65536)
    if not chunk:
      raise AssertionError("the connection closed mid-body")
    body += chunk
  return int(status_line.split()[1]), headers, body[:length]


def closed_by_server(sock: socket.socket, within: float) -> bool:
  """True when the server closes the connection within `within` seconds
  (any bytes it sends first are read and dropped)."""
  sock.settimeout(within)
  try:
    while True:
      if not sock.recv(65536):
        return True
  except ConnectionResetError:
    return True
  except TimeoutError:
    return False


def push_corrupt_version(model_dir: Path, version: int) -> Path:
  """A complete-looking version whose saved_model.pb is broken: it must fail
  to load and leave the serving version serving."""
  staging = model_dir / f".staging-{version}"
  (staging / "variables").mkdir(parents=True)
  (staging / "saved_model.pb").write_bytes(b"\x0a\x03bad" * 64)
  (staging / "variables" / "variables.index").write_bytes(b"truncated")
  target = model_dir / str(version)
  staging.rename(target)
  return target
