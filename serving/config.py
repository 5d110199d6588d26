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
from typing import Dict, Type

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
  DEFAULT_REST_NUM_THREADS,
  DEFAULT_REST_PORT,
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
      type_name=f".google.protobuf.{wrapper}" if wrapper else None,
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
    pool.Add(file_proto)
  factory = message_factory.MessageFactory(pool)
  return tuple(
    factory.GetPrototype(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
    for name in ("BatchingParameters", "SSLConfig")
  )


BatchingParameters, SSLConfig = _message_classes()


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
    raise ConfigError(f"{path}: {error}") from None


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
    return batching_options(self.batching_parameters_file) if self.enable_batching else None

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
