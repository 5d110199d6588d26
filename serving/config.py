"""The server's configuration: TF Serving's flags as a dataclass, the model
config (a `ModelServerConfig` text proto or --model_name/--model_base_path),
and the BatchingParameters and SSLConfig text protos.

tensorflow-serving-api ships no Python classes for BatchingParameters or
SSLConfig, so they are declared here with TF Serving's field names and types,
which makes the same text files parse for both servers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Tuple, Type

from google.protobuf import (
  descriptor_pb2,
  descriptor_pool,
  message,
  message_factory,
  text_format,
  wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import BatchingOptions
from serving.constants import (
  DEFAULT_BATCH_TIMEOUT_MICROS,
  DEFAULT_GRPC_MAX_THREADS,
  DEFAULT_GRPC_PORT,
  DEFAULT_HOST,
  DEFAULT_MAX_BATCH_SIZE,
  DEFAULT_MAX_ENQUEUED_BATCHES,
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_NUM_BATCH_THREADS,
  DEFAULT_POLL_WAIT_SECONDS,
  DEFAULT_REST_HEADER_TIMEOUT_SECONDS,
  DEFAULT_REST_IDLE_TIMEOUT_SECONDS,
  DEFAULT_REST_MAX_CONNECTIONS,
  DEFAULT_REST_NUM_THREADS,
  DEFAULT_REST_PORT,
  DEFAULT_REST_TIMEOUT_MS,
)

_FILE_NAME = "mtlrank/serving/tf_serving_flags.proto"
_PACKAGE = "mtlrank.serving"
_F = descriptor_pb2.FieldDescriptorProto
# (field, type, wrapper message or None, repeated), as in TF Serving's protos.
_BATCHING_FIELDS = (
  ("max_batch_size", _F.TYPE_MESSAGE, "Int64Value", False),
  ("batch_timeout_micros", _F.TYPE_MESSAGE, "Int64Value", False),
  ("max_enqueued_batches", _F.TYPE_MESSAGE, "Int64Value", False),
  ("num_batch_threads", _F.TYPE_MESSAGE, "Int64Value", False),
  ("thread_pool_name", _F.TYPE_MESSAGE, "StringValue", False),
  ("allowed_batch_sizes", _F.TYPE_INT64, None, True),
  ("pad_variable_length_inputs", _F.TYPE_BOOL, None, False),
  ("enable_large_batch_splitting", _F.TYPE_MESSAGE, "BoolValue", False),
  ("max_execution_batch_size", _F.TYPE_MESSAGE, "Int64Value", False),
)
_PROMETHEUS_FIELDS = (
  ("enable", _F.TYPE_BOOL, None, False),
  ("path", _F.TYPE_STRING, None, False),
)
_MONITORING_FIELDS = (
  ("prometheus_config", _F.TYPE_MESSAGE, f".{_PACKAGE}.PrometheusConfig", False),
)
_SSL_FIELDS = (
  ("server_key", _F.TYPE_STRING, None, False),
  ("server_cert", _F.TYPE_STRING, None, False),
  ("custom_ca", _F.TYPE_STRING, None, False),
  ("client_verify", _F.TYPE_BOOL, None, False),
)


def _declare(file_proto: descriptor_pb2.FileDescriptorProto, name: str, fields) -> None:
  message_proto = file_proto.message_type.add(name=name)
  for number, (field, field_type, wrapper, repeated) in enumerate(fields, start=1):
    message_proto.field.add(
      name=field,
      number=number,
      type=field_type,
      type_name=(wrapper if wrapper.startswith(".") else f".google.protobuf.{wrapper}")
      if wrapper
      else None,
      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
    )


def _message_classes() -> tuple:
  pool = descriptor_pool.Default()
  try:
    pool.FindFileByName(_FILE_NAME)
  except KeyError:
    file_proto = descriptor_pb2.FileDescriptorProto(
      name=_FILE_NAME, package=_PACKAGE, syntax="proto3", dependency=[wrappers_pb2.DESCRIPTOR.name]
    )
    _declare(file_proto, "BatchingParameters", _BATCHING_FIELDS)
    _declare(file_proto, "SSLConfig", _SSL_FIELDS)
    _declare(file_proto, "PrometheusConfig", _PROMETHEUS_FIELDS)
    _declare(file_proto, "MonitoringConfig", _MONITORING_FIELDS)
    pool.Add(file_proto)
  factory = message_factory.MessageFactory(pool)
  return tuple(
    factory.GetPrototype(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
    for name in ("BatchingParameters", "SSLConfig", "MonitoringConfig")
  )


BatchingParameters, SSLConfig, MonitoringConfig = _message_classes()
# Where TF Serving serves Prometheus metrics when the config gives no path.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


@dataclasses.dataclass(frozen=True)
class RequestOptions:
  """Server flags that change how requests on a version are answered."""

  # --enable_signature_method_name_check: Classify and Regress then need
  # signatures of their method name, as TF1 exports have (TF Serving's default
  # is off, which lets TF2 exports, all saved as Predict, serve them).
  check_method_name: bool = False
  # --enable_serialization_as_tensor_content: Predict outputs as packed
  # tensor_content instead of the typed value fields (float_val, ...).
  tensor_content: bool = False


@dataclasses.dataclass(frozen=True)
class RestLimits:
  """How the REST front end bounds its connections (mtlrank's own flags)."""

  # --rest_api_max_connections: connections open at once; more get 503.
  max_connections: int = DEFAULT_REST_MAX_CONNECTIONS
  # --rest_api_idle_timeout_seconds: a kept-alive connection that sends no
  # new request (or does not read its response) for this long is closed.
  idle_timeout_seconds: float = DEFAULT_REST_IDLE_TIMEOUT_SECONDS
  # --rest_api_header_timeout_seconds: a request whose line and headers take
  # longer to arrive, or whose body pauses longer, gets 408 (slowloris).
  header_timeout_seconds: float = DEFAULT_REST_HEADER_TIMEOUT_SECONDS
  # --rest_api_allowed_hosts: Host names accepted beyond the bound address's.
  allowed_hosts: Tuple[str, ...] = ()


class ConfigError(ValueError):
  """A flag or configuration file is invalid; the message says which."""


def parse_text_proto(path: str | Path, message_class: Type[message.Message]) -> message.Message:
  try:
    text = Path(path).read_text()
  except OSError as error:
    raise ConfigError(f"cannot read {path}: {error}") from None
  try:
    return text_format.Parse(text, message_class())
  except text_format.ParseError as error:
    # TF Serving's words: protobuf's parse error, then ParseProtoTextFile's.
    name = f"tensorflow.serving.{message_class.DESCRIPTOR.name}"
    raise ConfigError(
      f"Error parsing text-format {name}: {error}\nInvalid protobuf file: '{path}'"
    ) from None


def batching_options(path: str | None) -> BatchingOptions:
  """BatchingOptions from a BatchingParameters file; TF Serving's defaults
  for unset fields or without a file."""
  if not path:
    return BatchingOptions()
  params = parse_text_proto(path, BatchingParameters)

  def value(field: str, default: int) -> int:
    return getattr(params, field).value if params.HasField(field) else default

  options = BatchingOptions(
    max_batch_size=value("max_batch_size", DEFAULT_MAX_BATCH_SIZE),
    batch_timeout_micros=value("batch_timeout_micros", DEFAULT_BATCH_TIMEOUT_MICROS),
    num_batch_threads=value("num_batch_threads", DEFAULT_NUM_BATCH_THREADS),
    max_enqueued_batches=value("max_enqueued_batches", DEFAULT_MAX_ENQUEUED_BATCHES),
  )
  for field in dataclasses.fields(options):
    if getattr(options, field.name) < (0 if field.name == "batch_timeout_micros" else 1):
      raise ConfigError(f"{path}: {field.name} must be positive")
  return options


@dataclasses.dataclass(frozen=True)
class ServerOptions:
  """The flags of `tensorflow_model_server` that mtlrank's server honours."""

  port: int = DEFAULT_GRPC_PORT
  rest_api_port: int = DEFAULT_REST_PORT
  host: str = DEFAULT_HOST
  model_name: str = ""
  model_base_path: str = ""
  model_config_file: str = ""
  file_system_poll_wait_seconds: float = DEFAULT_POLL_WAIT_SECONDS
  enable_batching: bool = False
  batching_parameters_file: str = ""
  enable_model_warmup: bool = True
  rest_api_num_threads: int = DEFAULT_REST_NUM_THREADS
  grpc_max_threads: int = DEFAULT_GRPC_MAX_THREADS
  ssl_config_file: str = ""
  max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
  # TensorFlow's thread pools; 0 lets TensorFlow pick (one thread per core).
  tensorflow_intra_op_parallelism: int = 0
  tensorflow_inter_op_parallelism: int = 0
  grpc_socket_path: str = ""  # also serve gRPC on this UNIX socket
  grpc_channel_arguments: str = ""  # "key=value,..." for the gRPC server
  # A REST request still running after this long fails DEADLINE_EXCEEDED.
  rest_api_timeout_in_ms: int = DEFAULT_REST_TIMEOUT_MS
  # Seconds between re-reads of --model_config_file; 0 reads it once.
  model_config_file_poll_wait_seconds: float = 0
  monitoring_config_file: str = ""  # a MonitoringConfig: Prometheus metrics
  prefer_tflite_model: bool = False  # accepted; there is no TFLite runtime here
  enable_signature_method_name_check: bool = False
  enable_serialization_as_tensor_content: bool = False
  rest_api_max_connections: int = DEFAULT_REST_MAX_CONNECTIONS
  rest_api_idle_timeout_seconds: float = DEFAULT_REST_IDLE_TIMEOUT_SECONDS
  rest_api_header_timeout_seconds: float = DEFAULT_REST_HEADER_TIMEOUT_SECONDS
  rest_api_allowed_hosts: str = ""  # comma-separated Host names; "*" disables the check

  def model_server_config(self) -> model_server_config_pb2.ModelServerConfig:
    if self.model_config_file:
      if self.model_name or self.model_base_path:
        raise ConfigError("give either --model_config_file or --model_name/--model_base_path")
      return parse_text_proto(self.model_config_file, model_server_config_pb2.ModelServerConfig)
    if not self.model_base_path:
      raise ConfigError("give --model_base_path (with --model_name) or --model_config_file")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = self.model_name or "default"
    model.base_path = str(Path(self.model_base_path).resolve())
    model.model_platform = "tensorflow"
    return config

  def batching(self) -> BatchingOptions | None:
    if self.batching_parameters_file and not self.enable_batching:
      raise ConfigError(
        "server_options.batching_parameters_file is set without setting "
        "server_options.enable_batching to true."
      )
    return batching_options(self.batching_parameters_file) if self.enable_batching else None

  def grpc_options(self) -> List[Tuple[str, int | str]]:
    """--grpc_channel_arguments as gRPC server options: integer values as
    integers, others as strings, as TF Serving passes them."""
    options: List[Tuple[str, int | str]] = []
    for argument in filter(None, self.grpc_channel_arguments.split(",")):
      key, equals, value = argument.partition("=")
      if not equals or not key:
        raise ConfigError(
          f"--grpc_channel_arguments: {argument!r} is not key=value "
          "(e.g. grpc.max_connection_age_ms=2000)"
        )
      try:
        number = int(value)
      except ValueError:
        options.append((key, value))
        continue
      options.append((key, number if -(2**31) <= number < 2**31 else value))
    return options

  def prometheus_path(self) -> str | None:
    """The path Prometheus metrics are served at, or None when off."""
    if not self.monitoring_config_file:
      return None
    config = parse_text_proto(self.monitoring_config_file, MonitoringConfig)
    if not config.prometheus_config.enable:
      return None
    return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH

  def request_options(self) -> RequestOptions:
    return RequestOptions(
      check_method_name=self.enable_signature_method_name_check,
      tensor_content=self.enable_serialization_as_tensor_content,
    )

  def rest_limits(self) -> RestLimits:
    if self.rest_api_max_connections < 1:
      raise ConfigError("--rest_api_max_connections must be positive")
    for flag in ("rest_api_idle_timeout_seconds", "rest_api_header_timeout_seconds"):
      if getattr(self, flag) < 0:
        raise ConfigError(f"--{flag} must be 0 (no limit) or positive")
    return RestLimits(
      max_connections=self.rest_api_max_connections,
      idle_timeout_seconds=self.rest_api_idle_timeout_seconds,
      header_timeout_seconds=self.rest_api_header_timeout_seconds,
      allowed_hosts=tuple(h.strip() for h in self.rest_api_allowed_hosts.split(",") if h.strip()),
    )

  def tensorflow_threads(self) -> Dict[str, int]:
    """The thread-pool flags that are set, by flag name."""
    flags = {
      "tensorflow_intra_op_parallelism": self.tensorflow_intra_op_parallelism,
      "tensorflow_inter_op_parallelism": self.tensorflow_inter_op_parallelism,
    }
    for flag, value in flags.items():
      if value < 0:
        raise ConfigError(f"--{flag} must be 0 (TensorFlow's choice) or positive, not {value}")
    return {flag: value for flag, value in flags.items() if value}

  def ssl_config(self) -> message.Message | None:
    return parse_text_proto(self.ssl_config_file, SSLConfig) if self.ssl_config_file else None
