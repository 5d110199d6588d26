"""Server flags beyond the defaults: TLS for gRPC (SSLConfig, as TF Serving
reads it) and request size limits on both APIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_status_pb2,
  model_service_pb2_grpc,
  prediction_service_pb2_grpc,
)

from serving.client import examples_request
from serving.config import ConfigError, ServerOptions
from serving.server import ModelServer
from tests.serving.helpers import free_port

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = [
  pytest.mark.skipif(
    os.environ.get("MTLRANK_TFSERVING_TARGET") is not None,
    reason="starts bundled servers with other flags",
  ),
  # Fresh server processes, ~10 s each: left out of `make test-fast`.
  pytest.mark.slow,
]


def status_request(name: str) -> get_model_status_pb2.GetModelStatusRequest:
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = name
  return request


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Path:
  """A self-signed certificate for 127.0.0.1 that also serves as its CA."""
  if shutil.which("openssl") is None:
    pytest.skip("needs the openssl command")
  directory = tmp_path_factory.mktemp("tls")
  subprocess.run(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-keyout",
      str(directory / "key.pem"),
      "-out",
      str(directory / "cert.pem"),
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    check=True,
    capture_output=True,
  )
  return directory


def ssl_config(directory: Path, client_verify: bool) -> Path:
  key, cert = (directory / "key.pem").read_text(), (directory / "cert.pem").read_text()
  path = directory / f"ssl_{client_verify}.txt"
  path.write_text(
    f"server_key: {json.dumps(key)}\nserver_cert: {json.dumps(cert)}\n"
    f"custom_ca: {json.dumps(cert)}\nclient_verify: {str(client_verify).lower()}\n"
  )
  return path


def test_grpc_over_tls_with_client_verification(endpoint, certificate):
  options = ServerOptions(
    port=0,
    rest_api_port=0,
    model_name=endpoint.model_name,
    model_base_path=str(endpoint.model_dir),
    file_system_poll_wait_seconds=0,
    ssl_config_file=str(ssl_config(certificate, client_verify=True)),
  )
  cert = (certificate / "cert.pem").read_bytes()
  key = (certificate / "key.pem").read_bytes()
  with ModelServer(options) as server:
    target = f"127.0.0.1:{server.grpc_port}"
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(cert, key, cert)) as channel:
      statuses = (
        model_service_pb2_grpc.ModelServiceStub(channel)
        .GetModelStatus(status_request(endpoint.model_name), timeout=30)
        .model_version_status
      )
      assert statuses
    for credentials in (grpc.ssl_channel_credentials(cert), None):
      channel = (
        grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
      )
      with channel, pytest.raises(grpc.RpcError) as error:
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
          status_request(endpoint.model_name), timeout=5
        )
      assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_oversized_requests_are_refused_and_serving_goes_on(endpoint, examples):
  limit = 64 * 1024
  options = ServerOptions(
    port=0,
    rest_api_port=free_port(),
    model_name=endpoint.model_name,
    model_base_path=str(endpoint.model_dir),
    file_system_poll_wait_seconds=0,
    max_request_bytes=limit,
  )
  with ModelServer(options) as server:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as error:
      stub.Predict(examples_request([b"x" * (2 * limit)], endpoint.model_name), timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    body = json.dumps({"inputs": ["x" * (2 * limit)]}).encode()
    request = urllib.request.Request(
      f"http://127.0.0.1:{server.rest_port}/v1/models/{endpoint.model_name}:predict", body
    )
    with pytest.raises(urllib.error.HTTPError) as http_error:
      urllib.request.urlopen(request, timeout=30)
    assert http_error.value.code == 413
    assert set(json.loads(http_error.value.read())) == {"error"}
    response = stub.Predict(examples_request(examples[:1], endpoint.model_name), timeout=30)
    assert "score" in response.outputs
    channel.close()


def test_tensorflow_thread_flags_size_the_pools_of_a_fresh_process():
  script = (
    "from serving.config import ServerOptions\n"
    "from serving.server import configure_tensorflow_threads\n"
    "import tensorflow as tf\n"
    "configure_tensorflow_threads(ServerOptions(tensorflow_intra_op_parallelism=1,"
    " tensorflow_inter_op_parallelism=3))\n"
    "tf.constant(1.0) + 1.0\n"
    "print(tf.config.threading.get_intra_op_parallelism_threads(),"
    " tf.config.threading.get_inter_op_parallelism_threads())\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["1", "3"]


def test_tensorflow_thread_flags_name_themselves_when_they_cannot_act(endpoint):
  base = dict(
    port=0,
    rest_api_port=0,
    model_name=endpoint.model_name,
    model_base_path=str(endpoint.model_dir),
    file_system_poll_wait_seconds=0,
  )
  with pytest.raises(ConfigError, match="--tensorflow_inter_op_parallelism must be 0"):
    ModelServer(ServerOptions(**base, tensorflow_inter_op_parallelism=-1))
  # This process has run TensorFlow ops already: its pools are fixed.
  running = tf.config.threading.get_intra_op_parallelism_threads()
  with pytest.raises(ConfigError, match="--tensorflow_intra_op_parallelism=.*already runs"):
    ModelServer(ServerOptions(**base, tensorflow_intra_op_parallelism=running + 7))
