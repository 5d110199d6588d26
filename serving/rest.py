"""TF Serving's REST API on the standard library's HTTP server: model status
and metadata, `:predict` (row and columnar), `:classify` and `:regress`, with
TF Serving's JSON shapes and `{"error": ...}` failures."""

from __future__ import annotations

import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, input_pb2, model_pb2, regression_pb2)

from serving import inference, rest_json
from serving.constants import DEFAULT_SIGNATURE, SIGNATURE_DEF_METADATA_FIELD
from serving.errors import ServingError, invalid_argument, not_found
from serving.manager import ServerCore

log = logging.getLogger(__name__)

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?/?$")
_JSON_HEADER = b"Content-Type: application/json\r\n"
Body = Dict[str, Any]


def _model_spec(match: re.Match, signature: str = "") -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=match["name"], signature_name=signature)
  if match["version"]:
    spec.version.value = int(match["version"])
  elif match["label"]:
    spec.version_label = match["label"]
  return spec


def _message_dict(message) -> Body:
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   including_default_value_fields=True)


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
    signature = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature, str):
      raise invalid_argument("'signature_name' must be a string")
    spec = _model_spec(match, signature)
    servable = inference.resolve(self._core, spec)
    if verb == "predict":
      return self._predict(servable, signature, body)
    examples = self._input(body)
    if verb == "classify":
      response = inference.classify_on(
          servable, classification_pb2.ClassificationRequest(model_spec=spec, input=examples))
      return {"results": [[[c.label, c.score] for c in classification.classes]
                          for classification in response.result.classifications]}
    response = inference.regress_on(
        servable, regression_pb2.RegressionRequest(model_spec=spec, input=examples))
    return {"results": [r.value for r in response.result.regressions]}

  def _metadata(self, match: re.Match) -> Body:
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=_model_spec(match), metadata_field=[SIGNATURE_DEF_METADATA_FIELD])
    response = inference.metadata_on(inference.resolve(self._core, request.model_spec), request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_METADATA_FIELD].Unpack(signature_map)
    return {"model_spec": _message_dict(response.model_spec),
            "metadata": {SIGNATURE_DEF_METADATA_FIELD: _message_dict(signature_map)}}

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
    return input_pb2.Input(example_list_with_context=input_pb2.ExampleListWithContext(
        examples=converted, context=rest_json.example(body["context"])))


class _Handler(BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  disable_nagle_algorithm = True
  server: "RestServer"

  def do_GET(self) -> None:
    self._handle(lambda match: self.server.api.get(match))

  def do_POST(self) -> None:
    length = self._content_length()
    if length is None:
      return
    body = self.rfile.read(length)
    self._handle(lambda match: self.server.api.post(match, self._json(body)))

  def _content_length(self) -> Optional[int]:
    try:
      length = int(self.headers.get("Content-Length", "0"))
    except ValueError:
      length = -1
    if length < 0:
      self.close_connection = True
      self._send(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"})
      return None
    if length > self.server.max_request_bytes:
      self.close_connection = True  # the unread body must not be taken for a request
      self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                 {"error": f"request body of {length} bytes exceeds the limit of "
                           f"{self.server.max_request_bytes}"})
      return None
    return length

  @staticmethod
  def _json(body: bytes) -> Any:
    try:
      return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
      raise invalid_argument(f"JSON Parse error: {error}") from None

  def _handle(self, respond) -> None:
    match = _ROUTE.match(self.path)
    try:
      if match is None:
        raise not_found(f"Malformed request: {self.command} {self.path}")
      status, body = HTTPStatus.OK, respond(match)
    except ServingError as error:
      status, body = error.http_status, {"error": error.message}
    except Exception as error:  # a request must never take the server down
      log.exception("REST request failed unexpectedly")
      status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"}
    self._send(status, body)

  def _send(self, status: int, body: Body) -> None:
    payload = json.dumps(body).encode()
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    connection = b"Connection: close\r\n" if self.close_connection else b""
    self.wfile.write(b"HTTP/1.1 %d %s\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
        status, reason.encode(), _JSON_HEADER, connection, len(payload), payload))

  def log_message(self, format: str, *args: Any) -> None:
    log.debug("%s %s", self.address_string(), format % args)


class RestServer(ThreadingHTTPServer):
  """One thread per connection, at most `num_threads` connections at once."""

  daemon_threads = True

  def __init__(self, address: Tuple[str, int], api: RestApi, num_threads: int,
               max_request_bytes: int):
    super().__init__(address, _Handler)
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

