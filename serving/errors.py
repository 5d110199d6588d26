"""The one exception the serving code raises for a failed request: a gRPC status
code plus a message, mapped to an HTTP status by the REST API."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from serving.constants import CODE_BY_NUMBER, HTTP_STATUS_FOR_CODE

if TYPE_CHECKING:
  import tensorflow as tf


class ServingError(Exception):
  """A request failed with a TF Serving status code."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  @property
  def http_status(self) -> int:
    return HTTP_STATUS_FOR_CODE.get(self.code, 500)

  @property
  def code_number(self) -> int:
    return self.code.value[0]


def invalid_argument(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def from_tf_error(error: tf.errors.OpError) -> ServingError:
  """TensorFlow's error codes are gRPC's, by number."""
  code = CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN)
  return ServingError(code, error.message)
