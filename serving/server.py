"""mtlrank's model server: TF Serving's gRPC and REST APIs over TF Serving's
model directory layout, configured by `tensorflow_model_server`'s flags."""

from __future__ import annotations

import logging
import os
import stat
import threading
from concurrent import futures

import grpc
import tensorflow as tf

from serving import inference
from serving.config import ConfigError, ServerOptions
from serving.errors import ServingError
from serving.grpc_service import add_services
from serving.manager import ServerCore
from serving.rest import RestApi, RestServer

log = logging.getLogger(__name__)


def _grpc_credentials(options: ServerOptions) -> grpc.ServerCredentials | None:
  ssl = options.ssl_config()
  if ssl is None:
    return None
  return grpc.ssl_server_credentials(
    [(ssl.server_key.encode(), ssl.server_cert.encode())],
    root_certificates=ssl.custom_ca.encode() if ssl.custom_ca else None,
    require_client_auth=ssl.client_verify,
  )


_THREADING = {
  "tensorflow_intra_op_parallelism": (
    tf.config.threading.get_intra_op_parallelism_threads,
    tf.config.threading.set_intra_op_parallelism_threads,
  ),
  "tensorflow_inter_op_parallelism": (
    tf.config.threading.get_inter_op_parallelism_threads,
    tf.config.threading.set_inter_op_parallelism_threads,
  ),
}


def configure_tensorflow_threads(options: ServerOptions) -> None:
  """Sizes TensorFlow's thread pools as TF Serving's flags of the same names
  do. TensorFlow fixes them when its runtime starts, so a server sharing a
  process that already ran TensorFlow ops cannot change them."""
  for flag, value in options.tensorflow_threads().items():
    get, set_ = _THREADING[flag]
    if get() == value:
      continue
    try:
      set_(value)
    except RuntimeError:
      raise ConfigError(
        f"--{flag}={value}: TensorFlow already runs in this process with "
        f"{get() or 'its default'}; the flag takes effect only before "
        "TensorFlow's first op"
      ) from None


class ModelServer:
  """Loads the configured models, then serves gRPC (and REST unless its port
  is 0). Ports given as 0 for gRPC are picked free; `grpc_port` and
  `rest_port` tell the bound ones."""

  def __init__(self, options: ServerOptions):
    self.options = options
    if options.prefer_tflite_model:
      log.warning(
        "--prefer_tflite_model: this server has no TensorFlow Lite runtime; "
        "it serves the SavedModel (saved_model.pb) of every version"
      )
    configure_tensorflow_threads(options)
    self._prometheus_path = options.prometheus_path()
    self._rest_limits = options.rest_limits()
    self._grpc_options = options.grpc_options()
    self._config = options.model_server_config()
    self.core = ServerCore(
      self._config,
      options.file_system_poll_wait_seconds,
      batching=options.batching(),
      warm_up=inference.warm_up if options.enable_model_warmup else None,
      request_options=options.request_options(),
    )
    self._stop_config_poll = threading.Event()
    self._config_thread: threading.Thread | None = None
    self.grpc_port: int | None = None
    self.rest_port: int | None = None
    self._grpc: grpc.Server | None = None
    self._rest: RestServer | None = None
    self._rest_thread: threading.Thread | None = None

  def start(self) -> ModelServer:
    self.core.start()
    if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
      self._config_thread = threading.Thread(
        target=self._poll_config_file, name="config-poller", daemon=True
      )
      self._config_thread.start()
    try:
      self._start_grpc()
      if self.options.rest_api_port:
        self._start_rest()
    except OSError:
      self.stop()  # nothing half-started keeps the process alive
      raise
    log.info(
      "serving gRPC on %s:%s, REST on %s",
      self.options.host,
      self.grpc_port,
      self.rest_port or "(disabled)",
    )
    return self

  def _start_grpc(self) -> None:
    limit = self.options.max_request_bytes
    self._grpc = grpc.server(
      futures.ThreadPoolExecutor(
        max_workers=self.options.grpc_max_threads, thread_name_prefix="grpc"
      ),
      options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
        *self._grpc_options,  # later ones win, as in TF Serving
      ],
    )
    add_services(self._grpc, self.core)
    address = f"{self.options.host}:{self.options.port}"
    credentials = _grpc_credentials(self.options)
    try:
      self.grpc_port = (
        self._grpc.add_secure_port(address, credentials)
        if credentials
        else self._grpc.add_insecure_port(address)
      )
    except RuntimeError as error:  # grpc reports a failed bind as RuntimeError
      raise OSError(
        f"gRPC port {address} is already in use or cannot be bound (--port): {error}"
      ) from None
    if self.options.grpc_socket_path:
      self._add_socket(credentials)
    self._grpc.start()

  def _add_socket(self, credentials: grpc.ServerCredentials | None) -> None:
    """--grpc_socket_path: the same services on a UNIX socket."""
    path = self.options.grpc_socket_path
    try:
      if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
        os.unlink(path)  # a previous server's socket
      uri = f"unix:{path}"
      bound = (
        self._grpc.add_secure_port(uri, credentials)
        if credentials
        else self._grpc.add_insecure_port(uri)
      )
    except (RuntimeError, OSError) as error:
      raise OSError(f"cannot listen on UNIX socket {path} (--grpc_socket_path): {error}") from None
    if not bound:
      raise OSError(f"cannot listen on UNIX socket {path} (--grpc_socket_path)")
    log.info("serving gRPC on UNIX socket %s", path)

  def _poll_config_file(self) -> None:
    """--model_config_file_poll_wait_seconds: re-reads the model config and
    applies it when it changed; a config that does not parse or validate is
    logged and the served models stay, as in TF Serving."""
    while not self._stop_config_poll.wait(self.options.model_config_file_poll_wait_seconds):
      try:
        config = self.options.model_server_config()
      except ConfigError as error:
        log.error("Failed to read ModelServerConfig file: %s", error)
        continue
      if config == self._config:
        continue
      try:
        self.core.reload_config(config)
      except ServingError as error:
        log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", error.message)
        continue
      self._config = config
      log.info("applied the changed model config from %s", self.options.model_config_file)

  def _start_rest(self) -> None:
    try:
      self._rest = RestServer(
        (self.options.host, self.options.rest_api_port),
        RestApi(self.core),
        self.options.rest_api_num_threads,
        self.options.max_request_bytes,
        timeout_seconds=self.options.rest_api_timeout_in_ms / 1000,
        prometheus_path=self._prometheus_path,
        limits=self._rest_limits,
      )
    except OSError as error:
      raise OSError(
        f"REST port {self.options.host}:{self.options.rest_api_port} is already in use or "
        f"cannot be bound (--rest_api_port): {error.strerror or error}"
      ) from None
    self.rest_port = self._rest.server_address[1]
    self._rest_thread = threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True)
    self._rest_thread.start()

  @property
  def rest_server(self) -> RestServer | None:
    """The REST front end (None when REST is off), for its counters."""
    return self._rest

  def wait(self) -> None:
    self._grpc.wait_for_termination()

  def stop(self) -> None:
    self._stop_config_poll.set()
    if self._config_thread is not None:
      self._config_thread.join()
    if self._rest is not None:
      self._rest.shutdown()
      self._rest.server_close()
    if self._grpc is not None:
      self._grpc.stop(grace=1).wait()
    self.core.stop()

  def __enter__(self) -> ModelServer:
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()
