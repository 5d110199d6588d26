"""Clients of a TF Serving endpoint (mtlrank's server or TF Serving itself),
over gRPC or REST: raw rows in, per-task scores out."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any, Dict, List, Mapping, Sequence

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from contract import EXAMPLES_INPUT, SERVING_SIGNATURE
from serving.constants import B64_KEY, DEFAULT_MAX_REQUEST_BYTES
from serving.examples import serialize_rows
from serving.tensors import to_ndarray

Scores = Dict[str, np.ndarray]


class ServingClientError(RuntimeError):
  """The endpoint refused or failed a request."""


def examples_request(
  serialized: Sequence[bytes],
  model_name: str,
  signature_name: str = SERVING_SIGNATURE,
  version: int | None = None,
) -> predict_pb2.PredictRequest:
  """A PredictRequest feeding serialized tf.Examples to the `examples` input."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  tensor = request.inputs[EXAMPLES_INPUT]
  tensor.dtype = types_pb2.DT_STRING
  tensor.tensor_shape.dim.add(size=len(serialized))
  tensor.string_val.extend(serialized)
  return request


class GrpcClient:
  """Predict over TF Serving's gRPC API."""

  def __init__(
    self,
    target: str,
    model_name: str,
    columns: Mapping[str, str],
    *,
    signature_name: str = SERVING_SIGNATURE,
    version: int | None = None,
    timeout: float = 10.0,
    credentials: grpc.ChannelCredentials | None = None,
  ):
    self.model_name = model_name
    self.columns = dict(columns)
    self.signature_name = signature_name
    self.version = version
    self.timeout = timeout
    options = [
      ("grpc.max_send_message_length", DEFAULT_MAX_REQUEST_BYTES),
      ("grpc.max_receive_message_length", DEFAULT_MAX_REQUEST_BYTES),
    ]
    self._channel = (
      grpc.secure_channel(target, credentials, options)
      if credentials
      else grpc.insecure_channel(target, options)
    )
    self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

  def predict_examples(self, serialized: Sequence[bytes]) -> Scores:
    request = examples_request(serialized, self.model_name, self.signature_name, self.version)
    try:
      response = self.stub.Predict(request, timeout=self.timeout)
    except grpc.RpcError as error:
      raise ServingClientError(f"{error.code().name}: {error.details()}") from None
    return {name: to_ndarray(tensor) for name, tensor in response.outputs.items()}

  def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> Scores:
    return self.predict_examples(serialize_rows(rows, self.columns))

  def close(self) -> None:
    self._channel.close()


class RestClient:
  """Predict over TF Serving's REST API, on one kept-alive connection."""

  def __init__(
    self,
    address: str,
    model_name: str,
    columns: Mapping[str, str],
    *,
    signature_name: str = SERVING_SIGNATURE,
    version: int | None = None,
    timeout: float = 10.0,
  ):
    host, _, port = address.rpartition(":")
    self.model_name = model_name
    self.columns = dict(columns)
    self.signature_name = signature_name
    self.version = version
    self._connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

  @property
  def model_path(self) -> str:
    version = f"/versions/{self.version}" if self.version is not None else ""
    return f"/v1/models/{self.model_name}{version}"

  def request(self, method: str, path: str, body: Any | None = None) -> Any:
    """The decoded JSON answer; raises ServingClientError for an error status."""
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
      self._connection.request(method, path, payload, headers)
      response = self._connection.getresponse()
      answer = json.loads(response.read() or b"null")
    except (OSError, http.client.HTTPException) as error:
      self._connection.close()
      raise ServingClientError(f"{method} {path}: {error}") from None
    if response.status != 200:
      message = answer.get("error") if isinstance(answer, dict) else answer
      raise ServingClientError(f"HTTP {response.status}: {message}")
    return answer

  def predict_examples(self, serialized: Sequence[bytes]) -> Scores:
    body = {
      "signature_name": self.signature_name,
      "inputs": {EXAMPLES_INPUT: [{B64_KEY: base64.b64encode(e).decode()} for e in serialized]},
    }
    outputs = self.request("POST", f"{self.model_path}:predict", body)["outputs"]
    if not isinstance(outputs, dict):
      raise ServingClientError("the signature has a single output; expected one per task")
    return {name: np.asarray(values, dtype=np.float32) for name, values in outputs.items()}

  def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> Scores:
    return self.predict_examples(serialize_rows(rows, self.columns))

  def close(self) -> None:
    self._connection.close()


def ranked(scores: Scores, score_key: str) -> List[Dict[str, float]]:
  """One dict per row (its `row` index and every output), best `score_key`
  first."""
  if score_key not in scores:
    raise ServingClientError(f"the response has no '{score_key}' output; outputs: {sorted(scores)}")
  rows = [
    {"row": i, **{name: float(values[i]) for name, values in scores.items()}}
    for i in range(len(scores[score_key]))
  ]
  return sorted(rows, key=lambda row: row[score_key], reverse=True)
