"""The serving room's own constants: TF Serving's defaults, status codes and
their HTTP equivalents. Names shared with other rooms (signatures, methods,
the directory layout) are in `contract`."""

from __future__ import annotations

import grpc

DEFAULT_HOST = "127.0.0.1"
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_POLL_WAIT_SECONDS = 1.0
# Requests in flight at once; batches can only gather that many requests.
DEFAULT_GRPC_MAX_THREADS = 64
DEFAULT_REST_NUM_THREADS = 64
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_REST_TIMEOUT_MS = 30000  # TF Serving's --rest_api_timeout_in_ms
# mtlrank's own REST connection limits (TF Serving has no such flags).
DEFAULT_REST_MAX_CONNECTIONS = 1000
DEFAULT_REST_IDLE_TIMEOUT_SECONDS = 60.0  # a kept-alive connection with no request
DEFAULT_REST_HEADER_TIMEOUT_SECONDS = 10.0  # a request's head, or a pause in its body
# The batching defaults of TF Serving's `BatchingParameters`.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_NUM_BATCH_THREADS = 2
DEFAULT_MAX_ENQUEUED_BATCHES = 100

SIGNATURE_DEF_METADATA_FIELD = "signature_def"

# REST: TF Serving base64-encodes the values of outputs whose name ends so.
BYTES_OUTPUT_SUFFIX = "_bytes"
B64_KEY = "b64"

# HTTP status for each gRPC status, as TF Serving's REST API maps them.
HTTP_STATUS_FOR_CODE = {
  grpc.StatusCode.OK: 200,
  grpc.StatusCode.CANCELLED: 499,
  grpc.StatusCode.UNKNOWN: 500,
  grpc.StatusCode.INVALID_ARGUMENT: 400,
  grpc.StatusCode.DEADLINE_EXCEEDED: 504,
  grpc.StatusCode.NOT_FOUND: 404,
  grpc.StatusCode.ALREADY_EXISTS: 409,
  grpc.StatusCode.PERMISSION_DENIED: 403,
  grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
  grpc.StatusCode.FAILED_PRECONDITION: 400,
  grpc.StatusCode.ABORTED: 409,
  grpc.StatusCode.OUT_OF_RANGE: 400,
  grpc.StatusCode.UNIMPLEMENTED: 501,
  grpc.StatusCode.INTERNAL: 500,
  grpc.StatusCode.UNAVAILABLE: 503,
  grpc.StatusCode.DATA_LOSS: 500,
  grpc.StatusCode.UNAUTHENTICATED: 401,
}
# gRPC status codes by the numeric value TensorFlow's errors and
# `tensorflow.serving.StatusProto.error_code` carry.
CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# How the CLI reads the per-task rows it prints.
PREDICT_FILE_FORMATS = ("csv", "json")
