"""The bundled server under hostile or careless clients, on a real server:
idle keep-alive connections hold no thread and are closed after
--rest_api_idle_timeout_seconds; a request that trickles in (slowloris) gets
408 after --rest_api_header_timeout_seconds; connections beyond
--rest_api_max_connections get 503; the Host header is checked against the
bound address (DNS rebinding); deleting the serving version's directory
rolls back to the newest remaining version; and malformed requests of every
kind, over gRPC and REST, get INVALID_ARGUMENT/4xx, never INTERNAL/500."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import socket
import threading
import time
from typing import Iterator, List

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  inference_pb2,
  predict_pb2,
  regression_pb2,
)

from serving.client import examples_request
from serving.rest import HostCheck
from serving.server import ModelServer
from tests.serving.fakes import CLASSIFY_SIGNATURE, REGRESS_SIGNATURE
from tests.serving.helpers import (
  AVAILABLE,
  END,
  MODEL_NAME,
  Endpoint,
  closed_by_server,
  connect,
  http_bytes,
  local_server,
  push_corrupt_version,
  push_version,
  read_response,
  wait_until,
)

pytestmark = [
  pytest.mark.skipif(
    os.environ.get("MTLRANK_TFSERVING_TARGET") is not None,
    reason="starts bundled servers with mtlrank's own REST flags",
  ),
]

MAX_CONNECTIONS = 24
IDLE_SECONDS = 3.0
HEADER_SECONDS = 1.0
WORKERS = 2  # far fewer REST threads than the connections the tests hold open


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[tuple]:
  """A server with small REST limits, its endpoint and the ModelServer."""
  model_dir = tmp_path_factory.mktemp("hostile") / MODEL_NAME
  model_dir.mkdir()
  push_version(model_dir, MODEL_NAME, 1, seed=1)
  with local_server(
    model_dir,
    rest_api_num_threads=WORKERS,
    rest_api_max_connections=MAX_CONNECTIONS,
    rest_api_idle_timeout_seconds=IDLE_SECONDS,
    rest_api_header_timeout_seconds=HEADER_SECONDS,
    rest_api_allowed_hosts="serving.example,.corp.example",
  ) as (endpoint, server):
    yield endpoint, server


def _no_open_connections(server: ModelServer) -> None:
  wait_until(lambda: server.rest_server.open_connections == 0, 10, "REST connections to close")


def _status_request(endpoint: Endpoint) -> bytes:
  return http_bytes("GET", f"/v1/models/{endpoint.model_name}", endpoint.rest_address)


def _predict_body(examples) -> bytes:
  return json.dumps(
    {"instances": [{"b64": base64.b64encode(e).decode()} for e in examples[:2]]}
  ).encode()


# --- connections --------------------------------------------------------------------


def test_idle_keep_alive_connections_hold_no_thread(hostile, examples):
  """More kept-alive connections than REST threads stay open, and fresh
  clients are still answered at once."""
  endpoint, server = hostile
  _no_open_connections(server)
  held: List[socket.socket] = []
  try:
    for index in range(WORKERS * 8):
      sock = connect(endpoint.rest_address)
      held.append(sock)
      if index % 2 == 0:  # half after a request, half before any
        sock.sendall(_status_request(endpoint))
        assert read_response(sock)[0] == 200
    wait_until(
      lambda: server.rest_server.open_connections == len(held), 10, "the server to accept all"
    )
    started = time.monotonic()
    for _ in range(3):
      fresh = connect(endpoint.rest_address)
      fresh.sendall(
        http_bytes(
          "POST",
          f"/v1/models/{MODEL_NAME}:predict",
          endpoint.rest_address,
          _predict_body(examples),
        )
      )
      status, _, body = read_response(fresh)
      assert status == 200 and "predictions" in json.loads(body)
      fresh.close()
    assert time.monotonic() - started < IDLE_SECONDS, "fresh clients waited on idle connections"
    # The connections kept alive still serve their next request.
    held[0].sendall(_status_request(endpoint))
    assert read_response(held[0])[0] == 200
  finally:
    for sock in held:
      sock.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(hostile):
  endpoint, server = hostile
  sock = connect(endpoint.rest_address)
  sock.sendall(_status_request(endpoint))
  assert read_response(sock)[0] == 200
  started = time.monotonic()
  assert closed_by_server(sock, IDLE_SECONDS + 5)
  assert time.monotonic() - started >= IDLE_SECONDS - 0.5
  sock.close()


def test_a_slowloris_client_gets_408_and_others_are_served_meanwhile(hostile):
  endpoint, server = hostile
  slow = connect(endpoint.rest_address)
  slow.sendall(
    f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: {endpoint.rest_address}\r\n".encode()
  )
  started = time.monotonic()
  answer = []

  def dribble():
    try:
      for index in range(int(HEADER_SECONDS * 20)):
        slow.sendall(f"X-Slow-{index}: a\r\n".encode())
        time.sleep(0.2)
    except OSError:
      answer.append(time.monotonic() - started)  # the server closed it

  thread = threading.Thread(target=dribble)
  thread.start()
  other = connect(endpoint.rest_address)
  other.sendall(_status_request(endpoint))
  assert read_response(other)[0] == 200, "a slow client must not block others"
  other.close()
  response = read_response(slow)
  elapsed = time.monotonic() - started
  thread.join()
  slow.close()
  assert response is not None and response[0] == 408
  assert HEADER_SECONDS - 0.3 <= elapsed < HEADER_SECONDS + 3


def test_a_body_that_stalls_gets_408(hostile):
  endpoint, _ = hostile
  sock = connect(endpoint.rest_address)
  request = http_bytes(
    "POST", f"/v1/models/{MODEL_NAME}:predict", endpoint.rest_address, b"x" * 100
  )
  sock.sendall(request[:-90])  # headers and 10 of the 100 body bytes
  started = time.monotonic()
  response = read_response(sock)
  assert response is not None and response[0] == 408
  assert time.monotonic() - started < HEADER_SECONDS + 3
  sock.close()


def test_connections_beyond_the_limit_get_503(hostile):
  endpoint, server = hostile
  _no_open_connections(server)
  held = [connect(endpoint.rest_address) for _ in range(MAX_CONNECTIONS)]
  try:
    wait_until(
      lambda: server.rest_server.open_connections == MAX_CONNECTIONS, 10, "all to be accepted"
    )
    extra = connect(endpoint.rest_address)
    extra.sendall(_status_request(endpoint))
    status, headers, body = read_response(extra)
    assert status == 503 and headers.get("connection") == "close"
    assert "--rest_api_max_connections" in json.loads(body)["error"]
    extra.close()
    held.pop().close()
    wait_until(lambda: server.rest_server.open_connections < MAX_CONNECTIONS, 10, "a slot to free")
    again = connect(endpoint.rest_address)
    again.sendall(_status_request(endpoint))
    assert read_response(again)[0] == 200
    again.close()
  finally:
    for sock in held:
      sock.close()


# --- the Host header ------------------------------------------------------------------


@pytest.mark.parametrize(
  "host, status",
  [
    ("{address}", 200),
    ("localhost:{port}", 200),
    ("LOCALHOST.:{port}", 200),
    ("[::1]:{port}", 200),
    ("127.0.0.2", 200),  # any loopback address: the server is bound to loopback
    ("serving.example:8501", 200),  # --rest_api_allowed_hosts
    ("api.corp.example", 200),  # .corp.example: its subdomains
    ("evil.example:{port}", 403),  # a rebound name
    ("127.0.0.1.evil.example", 403),
    ("corp.example", 403),
    ("10.1.2.3:{port}", 403),  # not the bound address
    ("a b", 403),
    ("", 403),
  ],
)
def test_the_host_header_is_checked_against_the_bound_address(hostile, host, status):
  endpoint, _ = hostile
  port = endpoint.rest_address.rpartition(":")[2]
  sock = connect(endpoint.rest_address)
  sock.sendall(
    http_bytes(
      "GET", f"/v1/models/{MODEL_NAME}", host.format(address=endpoint.rest_address, port=port)
    )
  )
  answered, _, body = read_response(sock)
  sock.close()
  assert answered == status, body
  if status == 403:
    assert "--rest_api_allowed_hosts" in json.loads(body)["error"]


def test_a_request_without_host_is_400_on_http_1_1_and_served_on_http_1_0(hostile):
  endpoint, _ = hostile
  for version, status in (("HTTP/1.1", 400), ("HTTP/1.0", 200)):
    sock = connect(endpoint.rest_address)
    sock.sendall(http_bytes("GET", f"/v1/models/{MODEL_NAME}", None, version=version))
    assert read_response(sock)[0] == status
    sock.close()


def test_host_check_when_bound_to_all_interfaces_or_a_name():
  anywhere = HostCheck("0.0.0.0")
  assert anywhere.allows("10.1.2.3:8501") and anywhere.allows("[fe80::1]:8501")
  assert anywhere.allows("localhost") and anywhere.allows(socket.gethostname())
  assert not anywhere.allows("evil.example")
  named = HostCheck("10.0.0.5", ["models.internal"])
  assert named.allows("10.0.0.5:8501") and named.allows("models.internal")
  assert not named.allows("localhost") and not named.allows("10.0.0.6")
  assert HostCheck("127.0.0.1", ["*"]).allows("anything.example")


# --- version rollback ---------------------------------------------------------------------


def test_deleting_the_serving_version_rolls_back_to_the_newest_remaining(tmp_path, examples):
  model_dir = tmp_path / MODEL_NAME
  model_dir.mkdir()
  for version in (1, 2):
    push_version(model_dir, MODEL_NAME, version, seed=version)
  with local_server(model_dir) as (endpoint, _):
    assert endpoint.statuses()[2].state == AVAILABLE
    expected = endpoint.reference(1, examples[:2])
    push_version(model_dir, MODEL_NAME, 3, seed=3)
    endpoint.wait_for_state(3, AVAILABLE)
    endpoint.wait_for_state(2, END)
    shutil.rmtree(model_dir / "3")

    def served_by(version: int):
      def answered():
        response = endpoint.prediction.Predict(examples_request(examples[:2], MODEL_NAME), 10)
        return response if response.model_spec.version.value == version else None

      return answered

    wait_until(served_by(2), 30, "version 2 to serve again")
    shutil.rmtree(model_dir / "2")
    response = wait_until(served_by(1), 30, "version 1 to serve")
    np.testing.assert_allclose(
      tf.make_ndarray(response.outputs["score"]), expected["score"], rtol=1e-5
    )
    # The deleted versions leave GetModelStatus (TF Serving would list them as END).
    statuses = wait_until(
      lambda: found if set(found := endpoint.statuses()) == {1} else None,
      5,
      "the deleted versions to leave GetModelStatus",
    )
    assert statuses[1].state == AVAILABLE
    assert all(s.status.error_code == 0 for s in statuses.values())
    # A corrupt push next fails alone; version 1 keeps serving.
    push_corrupt_version(model_dir, 4)
    failed = endpoint.wait_for_state(4, END)
    assert failed.status.error_code != 0
    assert endpoint.serving_version() == 1
    endpoint.channel.close()


# --- malformed requests ------------------------------------------------------------------

# NOT_FOUND for a model name the fuzz garbles; UNIMPLEMENTED is TF Serving's
# answer to a MultiInference task of an unknown method name.
ACCEPTABLE = {
  grpc.StatusCode.INVALID_ARGUMENT,
  grpc.StatusCode.NOT_FOUND,
  grpc.StatusCode.UNIMPLEMENTED,
}


def _random_tensor(rng: random.Random) -> tensor_pb2.TensorProto:
  proto = tensor_pb2.TensorProto(
    dtype=rng.choice([*types_pb2.DataType.values(), 9999, 150]),
  )
  for _ in range(rng.choice([0, 1, 1, 2, 3, 40])):
    proto.tensor_shape.dim.add().size = rng.choice([-1, 0, 1, 2, 7, 2**31, 2**62, 2**63 - 1])
  proto.tensor_shape.unknown_rank = rng.random() < 0.05
  kind = rng.randrange(6)
  if kind == 0:
    proto.tensor_content = rng.randbytes(rng.choice([0, 1, 3, 8, 64]))
  elif kind == 1:
    proto.string_val.extend(rng.randbytes(rng.randrange(20)) for _ in range(rng.randrange(4)))
  elif kind == 2:
    proto.float_val.extend(rng.random() for _ in range(rng.randrange(4)))
  elif kind == 3:
    proto.int64_val.extend(rng.randrange(-(2**63), 2**63) for _ in range(rng.randrange(4)))
  elif kind == 4:
    proto.half_val.extend(rng.randrange(2**16) for _ in range(rng.randrange(4)))
  return proto


def test_fuzzed_grpc_requests_never_fail_internal(hostile, examples):
  endpoint, _ = hostile
  rng = random.Random(7)
  channel, name = endpoint.channel, endpoint.model_name
  methods = {
    "Predict": predict_pb2.PredictResponse,
    "Classify": classification_pb2.ClassificationResponse,
    "Regress": regression_pb2.RegressionResponse,
    "MultiInference": inference_pb2.MultiInferenceResponse,
    "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataResponse,
  }
  raw = {
    method: channel.unary_unary(
      f"/tensorflow.serving.PredictionService/{method}",
      request_serializer=lambda b: b,
      response_deserializer=response.FromString,
    )
    for method, response in methods.items()
  }
  raw["GetModelStatus"] = channel.unary_unary(
    "/tensorflow.serving.ModelService/GetModelStatus",
    request_serializer=lambda b: b,
    response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
  )
  payloads = []
  for _ in range(60):  # junk bytes, empty bodies and truncated requests to every method
    good = examples_request(examples[:2], name).SerializeToString()
    payloads.append(
      (
        rng.choice(list(raw)),
        rng.choice([b"", rng.randbytes(rng.randrange(1, 200)), good[: rng.randrange(len(good))]]),
      )
    )
  for _ in range(120):  # well-framed PredictRequests with hostile tensors
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["examples"].CopyFrom(_random_tensor(rng))
    if rng.random() < 0.3:
      request.inputs[rng.choice(["x", "examples2", ""])].CopyFrom(_random_tensor(rng))
    payloads.append(("Predict", request.SerializeToString()))
  for _ in range(40):  # Classify/Regress/MultiInference on hostile Examples
    examples_proto = [tf.train.Example() for _ in range(rng.randrange(3))]
    for example in examples_proto:
      feature = example.features.feature[rng.choice(["user_id", "hour", "item_price", "zz"])]
      choice = rng.randrange(3)
      if choice == 0:
        feature.int64_list.value.extend([rng.randrange(-(2**63), 2**63)] * rng.randrange(3))
      elif choice == 1:
        feature.float_list.value.extend([rng.random()] * rng.randrange(3))
      else:
        feature.bytes_list.value.extend([rng.randbytes(5)] * rng.randrange(3))
    method = rng.choice(["Classify", "Regress", "MultiInference"])
    if method == "MultiInference":
      request = inference_pb2.MultiInferenceRequest()
      task = request.tasks.add(method_name=rng.choice(["tensorflow/serving/classify", "bogus"]))
      task.model_spec.name = name
      task.model_spec.signature_name = CLASSIFY_SIGNATURE
    else:
      request = (
        classification_pb2.ClassificationRequest
        if method == "Classify"
        else regression_pb2.RegressionRequest
      )()
      request.model_spec.name = name
      request.model_spec.signature_name = rng.choice([CLASSIFY_SIGNATURE, REGRESS_SIGNATURE, ""])
    request.input.example_list.examples.extend(examples_proto)
    payloads.append((method, request.SerializeToString()))
  wrong = []
  for method, payload in payloads:
    try:
      raw[method](payload, timeout=20)
    except grpc.RpcError as error:
      if error.code() not in ACCEPTABLE:
        wrong.append(f"{method} {payload[:40]!r}: {error.code().name} {error.details()[:200]}")
  assert wrong == []
  # Junk that is not even HTTP/2 on the gRPC port, then a good request.
  junk = connect(endpoint.grpc_target)
  junk.sendall(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 4)
  junk.close()
  response = endpoint.prediction.Predict(examples_request(examples[:2], name), 10)
  assert set(response.outputs) >= {"score"}


def _rest_fuzz_bodies(rng: random.Random, examples) -> List[tuple]:
  encoded = base64.b64encode(examples[0]).decode()
  deep = "[" * 5000 + "]" * 5000
  cases = [
    ("predict", b""),
    ("predict", b"\x00\xff\xfe junk"),
    ("predict", b"\xef\xbb\xbf{}"),
    ("predict", b'{"instances": '),
    ("predict", deep.encode()),
    ("predict", json.dumps({"instances": json.loads("[" * 900 + "]" * 900)}).encode()),
    ("predict", json.dumps({"inputs": {"examples": json.loads("[" * 900 + "]" * 900)}}).encode()),
    ("predict", b'{"instances": [1e999]}'),
    ("predict", b'{"instances": [NaN, Infinity]}'),
    ("predict", json.dumps({"instances": [10**400]}).encode()),
    ("predict", json.dumps({"instances": "examples"}).encode()),
    ("predict", json.dumps({"instances": None}).encode()),
    ("predict", json.dumps({"instances": [{}]}).encode()),
    ("predict", json.dumps({"instances": [{"b64": 5}]}).encode()),
    ("predict", json.dumps({"instances": [{"b64": "%%%"}]}).encode()),
    ("predict", json.dumps({"instances": [{"b64": encoded, "x": 1}]}).encode()),
    ("predict", json.dumps({"instances": [{"examples": {"b64": encoded}, "x": 1}]}).encode()),
    ("predict", json.dumps({"inputs": {"nope": [1]}}).encode()),
    ("predict", json.dumps({"inputs": 5}).encode()),
    ("predict", json.dumps({"inputs": [True, False]}).encode()),
    ("predict", json.dumps({"signature_name": 5, "instances": [encoded]}).encode()),
    ("predict", json.dumps({"signature_name": None, "instances": [encoded]}).encode()),
    ("predict", json.dumps({"signature_name": CLASSIFY_SIGNATURE, "inputs": [[encoded]]}).encode()),
    ("predict", json.dumps([{"instances": []}]).encode()),
    ("predict", json.dumps("a string").encode()),
    ("classify", json.dumps({"signature_name": CLASSIFY_SIGNATURE, "examples": "x"}).encode()),
    ("classify", json.dumps({"signature_name": CLASSIFY_SIGNATURE, "examples": [5]}).encode()),
    (
      "classify",
      json.dumps({"signature_name": CLASSIFY_SIGNATURE, "examples": [{"hour": [[1]]}]}).encode(),
    ),
    (
      "classify",
      json.dumps({"signature_name": CLASSIFY_SIGNATURE, "examples": [{"hour": 2**70}]}).encode(),
    ),
    (
      "classify",
      json.dumps(
        {"signature_name": CLASSIFY_SIGNATURE, "examples": [{"hour": {"b64": "!!"}}]}
      ).encode(),
    ),
    (
      "classify",
      json.dumps({"signature_name": CLASSIFY_SIGNATURE, "examples": [{"hour": [1, "a"]}]}).encode(),
    ),
    (
      "classify",
      json.dumps(
        {"signature_name": CLASSIFY_SIGNATURE, "examples": [{"user_id": 3.5}], "context": 7}
      ).encode(),
    ),
    (
      "regress",
      json.dumps({"signature_name": REGRESS_SIGNATURE, "examples": [{"item_price": "x"}]}).encode(),
    ),
    ("regress", json.dumps({"signature_name": "serving_default", "examples": [{"a": 1}]}).encode()),
    ("regress", json.dumps({"examples": [{"hour": None}]}).encode()),
  ]
  for _ in range(30):  # random bytes, and JSON with random leaves
    cases.append(
      (rng.choice(["predict", "classify", "regress"]), rng.randbytes(rng.randrange(1, 300)))
    )
    leaf = rng.choice([None, True, -1, 2**64, 1.5, "s", {"b64": "QUJD"}, {"b64": None}, [], {}])
    cases.append(("predict", json.dumps({"instances": [leaf] * rng.randrange(1, 4)}).encode()))
  return cases


def test_fuzzed_rest_requests_never_fail_500(hostile, examples):
  endpoint, _ = hostile
  rng = random.Random(11)
  wrong = []
  for verb, body in _rest_fuzz_bodies(rng, examples):
    sock = connect(endpoint.rest_address, timeout=30)
    sock.sendall(http_bytes("POST", f"/v1/models/{MODEL_NAME}:{verb}", endpoint.rest_address, body))
    status, _, answer = read_response(sock)
    sock.close()
    if status == 200:
      continue  # junk that happens to be a valid request
    if not 400 <= status < 500 or set(json.loads(answer)) != {"error"}:
      wrong.append(f"{verb} {body[:60]!r}: {status} {answer[:200]!r}")
  assert wrong == []


@pytest.mark.parametrize(
  "raw, status",
  [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n", 400),  # TLS hello
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),  # an HTTP/2 preface
    (b"GET /v1/models/rank\r\n\r\n", 400),  # HTTP/0.9-style
    (b"GET /v1/models/rank HTTP/1.1\r\nHost: {h}\r\nbad header\r\n\r\n", 400),
    (b"POST /v1/models/rank:predict HTTP/1.1\r\nHost: {h}\r\nContent-Length: -5\r\n\r\n", 400),
    (
      b"POST /v1/models/rank:predict HTTP/1.1\r\nHost: {h}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      400,
    ),
    (
      b"POST /v1/models/rank:predict HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      411,
    ),
    (
      b"POST /v1/models/rank:predict HTTP/1.1\r\nHost: {h}\r\nContent-Length: 99999999999\r\n\r\n",
      413,
    ),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 431),
    (b"GET /v1/models/rank HTTP/1.1\r\nHost: {h}\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431),
  ],
)
def test_junk_on_the_rest_port_gets_4xx(hostile, raw, status):
  endpoint, _ = hostile
  sock = connect(endpoint.rest_address)
  sock.sendall(raw.replace(b"{h}", endpoint.rest_address.encode()))
  response = read_response(sock)
  sock.close()
  assert response is not None and response[0] == status, response
