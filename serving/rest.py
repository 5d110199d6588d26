"""TF Serving's REST API on the standard library's HTTP server: model status
and metadata, `:predict` (row and columnar), `:classify` and `:regress`, with
TF Serving's JSON shapes and `{"error": ...}` failures."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socketserver
import threading
import time
import urllib.parse
from concurrent import futures
from http import HTTPStatus
from typing import Any, Callable, Dict, Tuple

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
from serving import inference, metrics, rest_json
from serving.constants import SIGNATURE_DEF_METADATA_FIELD
from serving.errors import ServingError, invalid_argument
from serving.manager import ServerCore

log = logging.getLogger(__name__)

# TF Serving's routes (http_rest_api_util.cc), matched whole and ignoring
# case; any other path under /v1/ is a malformed request (400).
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_PREDICTION_ROUTE = re.compile(
  r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
  re.IGNORECASE,
)
_STATUS_ROUTE = re.compile(
  r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
  re.IGNORECASE,
)
_VERBS = ("classify", "regress", "predict")
INT64_MAX = 2**63 - 1
Body = Dict[str, Any]
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_REASONS[499] = "Client Closed Request"
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
# An idle kept-alive connection is closed after this long, freeing its thread.
KEEP_ALIVE_SECONDS = 300


@dataclasses.dataclass(frozen=True)
class Route:
  """What a request path names."""

  name: str
  version: int | None
  label: str | None
  action: str  # classify, regress, predict, metadata or status

  def model_spec(self, signature: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=self.name, signature_name=signature)
    if self.version is not None:
      spec.version.value = self.version
    elif self.label is not None:
      spec.version_label = self.label
    return spec


def parse_route(http_method: str, path: str) -> Route:
  """The route of a /v1/ path, with TF Serving's errors (ParseModelInfo)."""
  malformed = invalid_argument(f"Malformed request: {http_method} {path}")
  pattern = {"POST": _PREDICTION_ROUTE, "GET": _STATUS_ROUTE}.get(http_method)
  match = pattern.fullmatch(path) if pattern else None
  if match is None:
    raise malformed
  name, version_text, label, tail = match.groups()
  version = None
  if version_text:
    version = int(version_text)
    if version > INT64_MAX:
      raise invalid_argument(f"Failed to convert version: {version_text} to numeric.")
  label = urllib.parse.unquote(label) if label else None
  name = urllib.parse.unquote(name or "")
  if http_method == "POST":
    if tail not in _VERBS:  # the pattern ignores case, the dispatch does not
      raise malformed
    return Route(name, version, label, tail)
  if not name:
    raise invalid_argument("Missing model name in request.")
  return Route(name, version, label, "metadata" if tail == "metadata" else "status")


def _message_dict(message) -> Body:
  return json_format.MessageToDict(
    message, preserving_proto_field_name=True, including_default_value_fields=True
  )


class RestApi:
  """The REST methods as functions of a route match and a JSON body."""

  def __init__(self, core: ServerCore):
    self._core = core

  def handle(self, http_method: str, path: str, body: bytes) -> Body:
    """The answer to a request under /v1/; raises ServingError."""
    route = parse_route(http_method, path)
    if route.action == "status":
      request = get_model_status_pb2.GetModelStatusRequest(model_spec=route.model_spec())
      return _message_dict(inference.model_status(self._core, request))
    if route.action == "metadata":
      return self._metadata(route)
    return self._post(route, _json(body))

  def _post(self, route: Route, body: Any) -> Body:
    if not isinstance(body, dict):
      raise invalid_argument("the request body must be a JSON object")
    signature = body.get("signature_name", SERVING_SIGNATURE)
    if not isinstance(signature, str):
      raise invalid_argument("'signature_name' must be a string")
    spec = route.model_spec(signature)
    servable = inference.resolve(self._core, spec)
    if route.action == "predict":
      return self._predict(servable, signature or SERVING_SIGNATURE, body)
    examples = self._input(body)
    if route.action == "classify":
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

  def _metadata(self, route: Route) -> Body:
    request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=route.model_spec(), metadata_field=[SIGNATURE_DEF_METADATA_FIELD]
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
    signature = servable.signatures.get(signature_key)
    if signature is None:  # TF Serving's REST handler looks it up first (GetInfoMap)
      raise invalid_argument(
        f'Serving signature name: "{signature_key}" not found in signature def'
      )
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
      method, path, keep_alive, body, headers = self._read_request(line)
    except _HttpError as error:
      self._send(error.status, {"error": str(error)}, keep_alive=False)
      return False
    status, answer = self._answer(method, path.partition("?")[0], body, headers)
    self._send(status, answer, keep_alive)
    return keep_alive

  def _read_request(self, line: bytes) -> Tuple[str, str, bool, bytes, Dict[str, str]]:
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
    return method, path, keep_alive, body, headers

  def _read_headers(self) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for _ in range(MAX_HEADERS):
      line = self.rfile.readline(MAX_LINE_BYTES + 1)
      if line in (b"\r\n", b"\n", b""):
        return headers
      name, _, value = line.decode("latin-1").partition(":")
      headers[name.strip().lower()] = value.strip()
    raise _HttpError(431, "too many header lines")

  def _answer(
    self, method: str, path: str, body: bytes, headers: Dict[str, str]
  ) -> Tuple[int, Body | str]:
    """TF Serving's dispatch (http_server.cc): the Prometheus page at its
    path, the API under /v1/, 404 elsewhere; counted in the metrics."""
    server = self.server
    if server.prometheus_path is not None and path == server.prometheus_path:
      return 200, metrics.prometheus_page()
    if not _API_PATH.fullmatch(path):
      return 404, {"error": f"Not Found: {method} {path}"}
    if method == "OPTIONS":  # a CORS preflight
      if re.search(r"https?://", headers.get("origin", "")):
        return 200, ""
      return 400, {"error": "Origin header is missing in CORS preflight"}
    started = time.perf_counter()
    model_name, api = _request_labels(method, path)
    try:
      answer = server.run(lambda: server.api.handle(method, path, body))
    except ServingError as error:
      metrics.record_request(model_name, api, "REST", error.code.name, 0)
      return error.http_status, {"error": error.message}
    except Exception as error:  # a request must never take the server down
      log.exception("REST request failed unexpectedly")
      metrics.record_request(model_name, api, "REST", grpc.StatusCode.INTERNAL.name, 0)
      return 500, {"error": f"{type(error).__name__}: {error}"}
    metrics.record_request(model_name, api, "REST", "OK", (time.perf_counter() - started) * 1e6)
    return 200, answer

  def _send(self, status: int, body: Body | str, keep_alive: bool) -> None:
    if isinstance(body, str):
      payload, content_type = body.encode(), b"text/plain"
    else:
      payload, content_type = json.dumps(body).encode(), b"application/json"
    reason = _REASONS.get(status, "")
    connection = b"" if keep_alive else b"Connection: close\r\n"
    self.wfile.write(
      b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s"
      b"Content-Length: %d\r\n\r\n%s"
      % (status, reason.encode(), content_type, connection, len(payload), payload)
    )


def _request_labels(method: str, path: str) -> Tuple[str, str]:
  """The model name and method a path names, for the metrics' labels."""
  match = (_PREDICTION_ROUTE if method == "POST" else _STATUS_ROUTE).fullmatch(path)
  if match is None:
    return "", ""
  tail = match.group(4) or ""
  return urllib.parse.unquote(match.group(1) or ""), tail


def _json(body: bytes) -> Any:
  try:
    return json.loads(body)
  except (ValueError, UnicodeDecodeError) as error:
    raise invalid_argument(f"JSON Parse error: {error}") from None
  except RecursionError:
    raise invalid_argument("JSON Parse error: the body is nested too deeply") from None


class RestServer(socketserver.ThreadingTCPServer):
  """One thread per connection, at most `num_threads` connections at once.
  With a timeout (--rest_api_timeout_in_ms) requests run on a pool of as
  many threads, and one still running when the time is up is answered 504
  (DEADLINE_EXCEEDED) while its computation finishes unseen."""

  allow_reuse_address = True
  daemon_threads = True

  def __init__(
    self,
    address: Tuple[str, int],
    api: RestApi,
    num_threads: int,
    max_request_bytes: int,
    timeout_seconds: float = 0,
    prometheus_path: str | None = None,
  ):
    self._executor: futures.ThreadPoolExecutor | None = (
      None  # server_close needs it on a failed bind
    )
    super().__init__(address, _Connection)
    self.api = api
    self.max_request_bytes = max_request_bytes
    self.prometheus_path = prometheus_path
    self._timeout = timeout_seconds
    if timeout_seconds > 0:
      self._executor = futures.ThreadPoolExecutor(num_threads, thread_name_prefix="rest-request")
    self._slots = threading.BoundedSemaphore(num_threads)

  def run(self, call: Callable[[], Body]) -> Body:
    if self._executor is None:
      return call()
    future = self._executor.submit(call)
    try:
      return future.result(self._timeout)
    except futures.TimeoutError:
      raise ServingError(
        grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out waiting for notification"
      ) from None

  def server_close(self) -> None:
    super().server_close()
    if self._executor is not None:
      self._executor.shutdown(wait=False)

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
