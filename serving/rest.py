"""TF Serving's REST API: model status and metadata, `:predict` (row and
columnar), `:classify` and `:regress`, with TF Serving's JSON shapes and
`{"error": ...}` failures, served by an asyncio event loop that hands
complete requests to a worker pool (no thread waits on a connection)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from concurrent import futures
from http import HTTPStatus
from typing import Any, Callable, Dict, List, Sequence, Tuple

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
from serving.config import RestLimits
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


# --- The HTTP front end -------------------------------------------------------------
# One event-loop thread owns every connection: it reads requests (request
# line, headers, Content-Length body) without a thread per connection, and
# hands each complete request to a pool of `--rest_api_num_threads` workers.
# An idle kept-alive connection costs a socket and a few objects, never a
# thread; idle, slow and surplus connections are bounded by RestLimits.


class _HttpError(Exception):
  """A request that cannot be read; answered, then the connection closes."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


_IDLE, _READING, _WRITING = "idle", "reading", "writing"
# A refused or timed-out connection gets this long to take its answer.
_LINGER_SECONDS = 1.0
_LISTEN_BACKLOG = 1024
_MAX_LEADING_BLANK_LINES = 4
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _response(status: int, payload: bytes, content_type: bytes, keep_alive: bool) -> bytes:
  reason = _REASONS.get(status, "")
  connection = b"" if keep_alive else b"Connection: close\r\n"
  return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
    status,
    reason.encode(),
    content_type,
    connection,
    len(payload),
    payload,
  )


def _error_response(status: int, message: str, keep_alive: bool = False) -> bytes:
  return _response(status, json.dumps({"error": message}).encode(), b"application/json", keep_alive)


def _host_name(value: str) -> str | None:
  """The host of a Host header (`name`, `name:port`, `[v6]:port`),
  lower-cased, or None when it is not a plausible host."""
  value = value.strip().lower()
  if value.startswith("["):
    host, bracket, rest = value[1:].partition("]")
    if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
      return None
  else:
    host, colon, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if colon and not port.isdigit():
      return None
    host = host if colon else value
  host = host.rstrip(".")
  if not host or any(c in host for c in " /\\@?#%"):
    return None
  return host


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
  try:
    return ipaddress.ip_address(host)
  except ValueError:
    return None


class HostCheck:
  """DNS-rebinding protection: which Host headers REST answers.

  Allowed are the bound address itself; loopback names and addresses
  (`localhost`, `*.localhost`, 127.0.0.0/8, ::1) when bound to loopback or
  to all interfaces; any IP address and this machine's host name when bound
  to all interfaces (an IP literal cannot be rebound); and the names of
  `--rest_api_allowed_hosts` (`.example.com` allows its subdomains too, `*`
  turns the check off)."""

  def __init__(self, bound_host: str, allowed: Sequence[str] = ()):
    allowed = [a.strip().lower() for a in allowed if a.strip()]
    self._any = "*" in allowed
    self._names = {a.rstrip(".") for a in allowed if not a.startswith(".") and a != "*"}
    self._suffixes = tuple(a.rstrip(".") for a in allowed if a.startswith("."))
    bound = bound_host.strip().strip("[]").lower()
    self._bound_ip = _ip(bound)
    self._wildcard = bound in ("", "0.0.0.0", "::")
    self._loopback = (
      self._wildcard
      or bound == "localhost"
      or (self._bound_ip is not None and self._bound_ip.is_loopback)
    )
    if not self._wildcard:
      self._names.add(bound)
    if not self._loopback or self._wildcard:
      machine = socket.gethostname().lower()
      self._names |= {machine, machine.partition(".")[0]}

  def allows(self, header: str | None) -> bool:
    if self._any:
      return True
    if header is None:
      return False
    host = _host_name(header)
    if host is None:
      return False
    if host in self._names or (self._suffixes and host.endswith(self._suffixes)):
      return True
    ip = _ip(host)
    if ip is not None:
      return self._wildcard or ip == self._bound_ip or (self._loopback and ip.is_loopback)
    return self._loopback and (host == "localhost" or host.endswith(".localhost"))


class _Connection:
  """One HTTP/1.1 connection, served by the event loop. A single timer
  watches it: the keep-alive timeout while it waits for a request, the
  header timeout while a request is arriving (re-armed per body chunk), the
  keep-alive timeout again while a response waits for the client to read."""

  def __init__(self, server: RestServer, reader: asyncio.StreamReader, writer):
    self.server = server
    self.reader = reader
    self.writer = writer
    self.transport = writer.transport
    self.state = _IDLE
    self._timer: asyncio.TimerHandle | None = None
    self._loop = asyncio.get_running_loop()

  def _arm(self, seconds: float, state: str) -> None:
    self.state = state
    if self._timer is not None:
      self._timer.cancel()
    self._timer = self._loop.call_later(seconds, self._expire) if seconds > 0 else None

  def _disarm(self) -> None:
    if self._timer is not None:
      self._timer.cancel()
      self._timer = None

  def _expire(self) -> None:
    """The timer ran out: an idle connection closes quietly, a request too
    slow to arrive (slowloris) gets 408 first."""
    self._timer = None
    if self.transport.is_closing():
      return
    if self.state == _READING:
      self.server.timed_out += 1
      self.transport.write(_error_response(408, "the request did not arrive in time"))
    self.transport.close()  # the reader sees EOF, and the handler ends
    # A client that reads nothing would keep a closing transport (and a
    # waiting drain) forever: drop it after a moment.
    self._loop.call_later(_LINGER_SECONDS, self.transport.abort)

  async def serve(self) -> None:
    limits = self.server.limits
    try:
      while True:
        self._arm(limits.idle_timeout_seconds, _IDLE)
        first = await self.reader.read(1)
        if not first:
          return
        self._arm(limits.header_timeout_seconds, _READING)
        try:
          request = await self._read_request(first)
        except _HttpError as error:
          self._disarm()
          self.writer.write(_error_response(error.status, str(error)))
          return
        except asyncio.LimitOverrunError:
          self._disarm()
          self.writer.write(_error_response(431, "a request or header line is too long"))
          return
        self._disarm()
        keep_alive = await self._serve_one(*request)
        if not keep_alive:
          return
    finally:
      self._disarm()

  async def _line(self) -> bytes:
    return await self.reader.readuntil(b"\n")

  async def _read_request(self, first: bytes) -> Tuple[str, str, str, Dict[str, str], bytes]:
    line = first if first == b"\n" else first + await self._line()
    for _ in range(_MAX_LEADING_BLANK_LINES):
      if line not in (b"\r\n", b"\n"):
        break
      line = await self._line()
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
      raise _HttpError(400, "malformed request line")
    method, path, version = parts
    headers = await self._read_headers()
    if version == "HTTP/1.1" and "host" not in headers:
      raise _HttpError(400, "an HTTP/1.1 request needs a Host header")
    if "transfer-encoding" in headers:
      if "chunked" in headers["transfer-encoding"].lower():
        raise _HttpError(411, "chunked request bodies are not supported; send Content-Length")
      raise _HttpError(400, "unsupported Transfer-Encoding")
    text = headers.get("content-length", "0")
    length = int(text) if text.isascii() and text.isdigit() else -1
    if length < 0:
      raise _HttpError(400, "invalid Content-Length")
    if length > self.server.max_request_bytes:
      raise _HttpError(
        413, f"request body of {length} bytes exceeds the limit of {self.server.max_request_bytes}"
      )
    if length and headers.get("expect", "").lower() == "100-continue":
      self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return method, path, version, headers, await self._read_body(length)

  async def _read_headers(self) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for _ in range(MAX_HEADERS):
      line = await self._line()
      if line in (b"\r\n", b"\n"):
        return headers
      name, colon, value = line.decode("latin-1").partition(":")
      if not colon or not _HEADER_NAME.fullmatch(name):
        raise _HttpError(400, "malformed header line")
      name, value = name.lower(), value.strip()
      if name in headers and name in ("content-length", "host") and headers[name] != value:
        raise _HttpError(400, f"conflicting {name} headers")
      headers[name] = value
    raise _HttpError(431, "too many header lines")

  async def _read_body(self, length: int) -> bytes:
    chunks: List[bytes] = []
    remaining = length
    while remaining:
      chunk = await self.reader.read(min(remaining, 1 << 20))
      if not chunk:
        raise ConnectionError("the body ended early")
      chunks.append(chunk)
      remaining -= len(chunk)
      self._arm(self.server.limits.header_timeout_seconds, _READING)
    return b"".join(chunks)

  async def _serve_one(
    self, method: str, path: str, version: str, headers: Dict[str, str], body: bytes
  ) -> bool:
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    server = self.server
    if not server.hosts.allows(headers.get("host")) and not (
      version == "HTTP/1.0" and "host" not in headers
    ):
      server.refused_hosts += 1
      payload = _error_response(
        403,
        f"Host {headers.get('host')!r} is not allowed (DNS-rebinding protection); "
        "list it in --rest_api_allowed_hosts",
        keep_alive,
      )
    else:
      payload = await server.answer(method, path.partition("?")[0], body, headers, keep_alive)
    if self.transport.is_closing():
      return False
    self.writer.write(payload)
    if self.transport.get_write_buffer_size() > _WRITE_BUFFER_BYTES:
      self._arm(server.limits.idle_timeout_seconds, _WRITING)
      await self.writer.drain()
      self._disarm()
    return keep_alive


# A response larger than this waits for the client to read it (bounded by
# the keep-alive timeout) before the next request is read.
_WRITE_BUFFER_BYTES = 1 << 20


class RestServer:
  """TF Serving's REST API on an asyncio event loop (`serve_forever` runs it
  in the calling thread; `shutdown` stops it from another). Requests run on
  a pool of `num_threads` threads; with `timeout_seconds`
  (--rest_api_timeout_in_ms) one still running then is answered 504
  (DEADLINE_EXCEEDED) while its computation finishes unseen. Beyond
  `limits.max_connections` open connections new ones are answered 503."""

  def __init__(
    self,
    address: Tuple[str, int],
    api: RestApi,
    num_threads: int,
    max_request_bytes: int,
    timeout_seconds: float = 0,
    prometheus_path: str | None = None,
    limits: RestLimits = RestLimits(),
  ):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    self._socket = socket.create_server(address, family=family, backlog=_LISTEN_BACKLOG)
    self.server_address = self._socket.getsockname()
    self.api = api
    self.max_request_bytes = max_request_bytes
    self.prometheus_path = prometheus_path
    self.limits = limits
    self.hosts = HostCheck(address[0], limits.allowed_hosts)
    self._timeout = timeout_seconds
    self._executor = futures.ThreadPoolExecutor(num_threads, thread_name_prefix="rest-request")
    self._loop: asyncio.AbstractEventLoop | None = None
    self._stop: asyncio.Future | None = None
    self._lock = threading.Lock()
    self._shutdown = False
    self._stopped = threading.Event()
    self._connections: set = set()
    # Counters for tests and the load benchmark (read without a lock).
    self.open_connections = 0
    self.refused_connections = 0
    self.timed_out = 0
    self.refused_hosts = 0
    self._refusing = 0

  # --- running -----------------------------------------------------------------

  def serve_forever(self) -> None:
    loop = asyncio.new_event_loop()
    with self._lock:
      if self._shutdown:
        loop.close()
        self._stopped.set()
        return
      self._loop = loop
      self._stop = loop.create_future()
    try:
      loop.run_until_complete(self._serve())
    finally:
      loop.close()
      self._stopped.set()

  async def _serve(self) -> None:
    server = await asyncio.start_server(
      self._on_connection, sock=self._socket, limit=MAX_LINE_BYTES, backlog=_LISTEN_BACKLOG
    )
    async with server:
      await self._stop
    for writer in list(self._connections):
      writer.transport.abort()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if tasks:
      await asyncio.wait(tasks, timeout=1)

  def shutdown(self) -> None:
    """Stops serving; returns once the event loop has stopped."""
    with self._lock:
      self._shutdown = True
      loop, stop = self._loop, self._stop
    if loop is None:
      return
    try:
      loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
    except RuntimeError:  # the loop already closed
      return
    self._stopped.wait()

  def server_close(self) -> None:
    self._socket.close()
    self._executor.shutdown(wait=False)

  # --- connections ---------------------------------------------------------------

  async def _on_connection(self, reader: asyncio.StreamReader, writer) -> None:
    if self.open_connections >= self.limits.max_connections:
      await self._refuse(reader, writer)
      return
    self.open_connections += 1
    self._connections.add(writer)
    try:
      await _Connection(self, reader, writer).serve()
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
      pass  # the client went away, or a timer closed the connection
    except asyncio.CancelledError:
      raise
    except Exception:  # a connection must never take the loop down
      log.exception("REST connection failed unexpectedly")
    finally:
      self.open_connections -= 1
      self._connections.discard(writer)
      if not writer.transport.is_closing():
        writer.transport.close()

  async def _refuse(self, reader: asyncio.StreamReader, writer) -> None:
    """503 for a connection beyond --rest_api_max_connections: answered at
    once, then the connection lingers a moment so that the client reads the
    answer instead of a reset; beyond twice the limit it is dropped."""
    self.refused_connections += 1
    transport = writer.transport
    if self._refusing >= self.limits.max_connections:
      transport.abort()
      return
    self._refusing += 1
    loop = asyncio.get_running_loop()
    timer = loop.call_later(_LINGER_SECONDS, transport.abort)
    try:
      writer.write(
        _error_response(
          503,
          f"the server has {self.open_connections} open REST connections, its limit "
          "(--rest_api_max_connections); retry later",
        )
      )
      writer.write_eof()
      while await reader.read(1 << 16):
        pass
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
      pass
    finally:
      timer.cancel()
      self._refusing -= 1
      transport.close()

  # --- requests --------------------------------------------------------------------

  def _submit(self, call: Callable[[], Any]) -> asyncio.Future:
    """`call` on a worker thread, as a future of this loop; the worker posts
    its result to the loop itself (one thread hand-off each way)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
      if future.done():  # timed out meanwhile
        return
      if error is None:
        future.set_result(value)
      else:
        future.set_exception(error)

    def work() -> None:
      value, error = None, None
      try:
        value = call()
      except BaseException as failure:  # handed to the loop, raised there
        error = failure
      try:
        loop.call_soon_threadsafe(settle, value, error)
      except RuntimeError:  # the loop closed: the server is shutting down
        pass

    try:
      self._executor.submit(work)
    except RuntimeError:
      raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down") from None
    return future

  async def run(self, call: Callable[[], Any]) -> Any:
    future = self._submit(call)
    if self._timeout <= 0:
      return await future
    # A timer instead of asyncio.wait_for, which costs a task per request.
    timer = asyncio.get_running_loop().call_later(
      self._timeout,
      lambda: (
        future.done()
        or future.set_exception(
          ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out waiting for notification")
        )
      ),
    )
    try:
      return await future
    finally:
      timer.cancel()

  async def answer(
    self, method: str, path: str, body: bytes, headers: Dict[str, str], keep_alive: bool
  ) -> bytes:
    """TF Serving's dispatch (http_server.cc): the Prometheus page at its
    path, the API under /v1/, 404 elsewhere; counted in the metrics. The
    response bytes, with the work and the JSON encoding done by a worker."""
    if self.prometheus_path is not None and path == self.prometheus_path:
      page = await self.run(lambda: metrics.prometheus_page().encode())
      return _response(200, page, b"text/plain", keep_alive)
    if not _API_PATH.fullmatch(path):
      return _error_response(404, f"Not Found: {method} {path}", keep_alive)
    if method == "OPTIONS":  # a CORS preflight
      if re.search(r"https?://", headers.get("origin", "")):
        return _response(200, b"", b"text/plain", keep_alive)
      return _error_response(400, "Origin header is missing in CORS preflight", keep_alive)
    started = time.perf_counter()
    model_name, api = _request_labels(method, path)
    try:
      payload = await self.run(lambda: json.dumps(self.api.handle(method, path, body)).encode())
    except ServingError as error:
      metrics.record_request(model_name, api, "REST", error.code.name, 0)
      return _error_response(error.http_status, error.message, keep_alive)
    except Exception as error:  # a request must never take the server down
      log.exception("REST request failed unexpectedly")
      metrics.record_request(model_name, api, "REST", grpc.StatusCode.INTERNAL.name, 0)
      return _error_response(500, f"{type(error).__name__}: {error}", keep_alive)
    metrics.record_request(model_name, api, "REST", "OK", (time.perf_counter() - started) * 1e6)
    return _response(200, payload, b"application/json", keep_alive)
