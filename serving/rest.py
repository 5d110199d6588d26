"""TF Serving's REST API on the standard library's HTTP server: model status
and metadata, `:predict` (row and columnar), `:classify` and `:regress`, with
TF Serving's JSON shapes and `{"error": ...}` failures."""

from __future__ import annotations

import json
import logging
import re
import socketserver
import threading
from http import HTTPStatus
from typing import Any, Dict, Tuple

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  input_pb2,
  model_pb2,
  regression_pb2,
)

from contract import SERVING_SIGNATURE
from serving import inference, rest_json
from serving.constants import SIGNATURE_DEF_METADATA_FIELD
from serving.errors import ServingError, invalid_argument, not_found
from serving.manager import ServerCore

log = logging.getLogger(__name__)

_ROUTE = re.compile(
  r"^/v1/models/(?P<name>[^/:]+)"
  r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
  r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?/?$"
)
Body = Dict[str, Any]
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_REASONS[499] = "Client Closed Request"
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
# An idle kept-alive connection is closed after this long, freeing its thread.
KEEP_ALIVE_SECONDS = 300


def _model_spec(match: re.Match, signature: str = "") -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=match["name"], signature_name=signature)
  if match["version"]:
    spec.version.value = int(match["version"])
  elif match["label"]:
    spec.version_label = match["label"]
  return spec


def _message_dict(message) -> Body:
  return json_format.MessageToDict(
    message, preserving_proto_field_name=True, including_default_value_fields=True
  )


class RestApi:
  """The REST methods as functions of a route match and a JSON body."""

  def __init__(self, core: ServerCore):
    self._core = core

  def get(self, match: re.Match) -> Body:
    if match["verb"]:
      raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f":{match['verb']} needs POST")
    if match["metadata"]:
      return self._metadata(match)
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=_model_spec(match))
    return _message_dict(inference.model_status(self._core, request))

  def post(self, match: re.Match, body: Body) -> Body:
    verb = match["verb"]
    if not verb:
      raise not_found("POST needs :predict, :classify or :regress")
    if not isinstance(body, dict):
      raise invalid_argument("the request body must be a JSON object")
    signature = body.get("signature_name", SERVING_SIGNATURE)
    if not isinstance(signature, str):
      raise invalid_argument("'signature_name' must be a string")
    spec = _model_spec(match, signature)
    servable = inference.resolve(self._core, spec)
    if verb == "predict":
      return self._predict(servable, signature, body)
    examples = self._input(body)
    if verb == "classify":
      response = inference.classify_on(
        servable, classification_pb2.ClassificationRequest(model_spec=spec, input=examples)
      )
      return {
        "results": [
          [[c.label, c.score] for c in classification.classes]
          for classification in response.result.classifications
        ]
      }
    response = inference.regress_on(
      servable, regression_pb2.RegressionRequest(model_spec=spec, input=examples)
    )
    return {"results": [r.value for r in response.result.regressions]}

  def _metadata(self, match: re.Match) -> Body:
    request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=_model_spec(match), metadata_field=[SIGNATURE_DEF_METADATA_FIELD]
    )
    response = inference.metadata_on(inference.resolve(self._core, request.model_spec), request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_METADATA_FIELD].Unpack(signature_map)
    return {
      "model_spec": _message_dict(response.model_spec),
      "metadata": {SIGNATURE_DEF_METADATA_FIELD: _message_dict(signature_map)},
    }

  @staticmethod
  def _predict(servable, signature_key: str, body: Body) -> Body:
    signature = servable.signature(signature_key)
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
      raise invalid_argument("the body needs exactly one of 'instances' or 'inputs'")
    if has_rows:
      outputs = signature(rest_json.row_inputs(body["instances"], signature))
      return {"predictions": rest_json.row_outputs(outputs)}
    outputs = signature(rest_json.columnar_inputs(body["inputs"], signature))
    return {"outputs": rest_json.columnar_outputs(outputs)}

  @staticmethod
  def _input(body: Body) -> input_pb2.Input:
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
      raise invalid_argument("'examples' must be a non-empty list of objects")
    converted = [rest_json.example(e) for e in examples]
    if "context" not in body:
      return input_pb2.Input(example_list=input_pb2.ExampleList(examples=converted))
    return input_pb2.Input(
      example_list_with_context=input_pb2.ExampleListWithContext(
        examples=converted, context=rest_json.example(body["context"])
      )
    )


class _HttpError(Exception):
  """A request that cannot be read; answered, then the connection closes."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class _Connection(socketserver.StreamRequestHandler):
  """One kept-alive HTTP/1.1 connection. A minimal reader (request line,
  headers, Content-Length body) replaces http.server's, whose header parsing
  through the email package costs more than a whole prediction's JSON work."""

  disable_nagle_algorithm = True
  timeout = KEEP_ALIVE_SECONDS
  server: RestServer

  def handle(self) -> None:
    try:
      while self._serve_one():
        pass
    except (ConnectionError, TimeoutError, OSError):
      pass  # the client went away or idled out

  def _serve_one(self) -> bool:
    """Answers one request; False when the connection should close."""
    line = self.rfile.readline(MAX_LINE_BYTES + 1)
    if not line:
      return False
    try:
      method, path, keep_alive, body = self._read_request(line)
    except _HttpError as error:
      self._send(error.status, {"error": str(error)}, keep_alive=False)
      return False
    status, answer = self._answer(method, path, body)
    self._send(status, answer, keep_alive)
    return keep_alive

  def _read_request(self, line: bytes) -> Tuple[str, str, bool, bytes]:
    parts = line.decode("latin-1").split()
    if len(line) > MAX_LINE_BYTES or len(parts) != 3 or not parts[2].startswith("HTTP/1."):
      raise _HttpError(400, "malformed request line")
    method, path, version = parts
    headers = self._read_headers()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    if "chunked" in headers.get("transfer-encoding", "").lower():
      raise _HttpError(411, "chunked request bodies are not supported; send Content-Length")
    try:
      length = int(headers.get("content-length", "0"))
    except ValueError:
      length = -1
    if length < 0:
      raise _HttpError(400, "invalid Content-Length")
    if length > self.server.max_request_bytes:
      raise _HttpError(
        413, f"request body of {length} bytes exceeds the limit of {self.server.max_request_bytes}"
      )
    if headers.get("expect", "").lower() == "100-continue":
      self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = self.rfile.read(length)
    if len(body) != length:
      raise ConnectionError("the body ended early")
    return method, path, keep_alive, body

  def _read_headers(self) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for _ in range(MAX_HEADERS):
      line = self.rfile.readline(MAX_LINE_BYTES + 1)
      if line in (b"\r\n", b"\n", b""):
        return headers
      name, _, value = line.decode("latin-1").partition(":")
      headers[name.strip().lower()] = value.strip()
    raise _HttpError(431, "too many header lines")

  def _answer(self, method: str, path: str, body: bytes) -> Tuple[int, Body]:
    match = _ROUTE.match(path)
    try:
      if match is None:
        raise not_found(f"Malformed request: {method} {path}")
      if method == "GET":
        return 200, self.server.api.get(match)
      if method == "POST":
        return 200, self.server.api.post(match, _json(body))
      return 405, {"error": f"{method} is not supported; use GET or POST"}
    except ServingError as error:
      return error.http_status, {"error": error.message}
    except Exception as error:  # a request must never take the server down
      log.exception("REST request failed unexpectedly")
      return 500, {"error": f"{type(error).__name__}: {error}"}

  def _send(self, status: int, body: Body, keep_alive: bool) -> None:
    payload = json.dumps(body).encode()
    reason = _REASONS.get(status, "")
    connection = b"" if keep_alive else b"Connection: close\r\n"
    self.wfile.write(
      b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s"
      b"Content-Length: %d\r\n\r\n%s" % (status, reason.encode(), connection, len(payload), payload)
    )


def _json(body: bytes) -> Any:
  try:
    return json.loads(body)
  except (ValueError, UnicodeDecodeError) as error:
    raise invalid_argument(f"JSON Parse error: {error}") from None


class RestServer(socketserver.ThreadingTCPServer):
  """One thread per connection, at most `num_threads` connections at once."""

  allow_reuse_address = True
  daemon_threads = True

  def __init__(
    self, address: Tuple[str, int], api: RestApi, num_threads: int, max_request_bytes: int
  ):
    super().__init__(address, _Connection)
    self.api = api
    self.max_request_bytes = max_request_bytes
    self._slots = threading.BoundedSemaphore(num_threads)

  def process_request(self, request, client_address) -> None:
    self._slots.acquire()
    try:
      super().process_request(request, client_address)
    except Exception:
      self._slots.release()
      raise

  def process_request_thread(self, request, client_address) -> None:
    try:
      super().process_request_thread(request, client_address)
    finally:
      self._slots.release()
