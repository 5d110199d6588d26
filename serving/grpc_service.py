"""TF Serving's gRPC services, `tensorflow.serving.PredictionService` and
`tensorflow.serving.ModelService`, on the servicer base classes of
tensorflow-serving-api.

The services are registered as the generated `add_*_to_server` functions do,
except that a request that does not parse reaches the servicer as a
`MalformedRequest` and fails INVALID_ARGUMENT (gRPC itself would answer
INTERNAL and log a traceback)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Tuple, Type, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  inference_pb2,
  model_management_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
  regression_pb2,
)

from serving import inference, metrics
from serving.errors import ServingError, invalid_argument
from serving.manager import ServerCore

log = logging.getLogger(__name__)
Response = TypeVar("Response")


class MalformedRequest:
  """Request bytes that did not parse as the method's request message."""

  def __init__(self, message_class: Type[Message], error: DecodeError):
    self.description = f"cannot parse the request as {message_class.DESCRIPTOR.name}: {error}"


def _model_name(request: Any) -> str:
  if isinstance(request, MalformedRequest):
    return ""
  if isinstance(request, inference_pb2.MultiInferenceRequest):
    return request.tasks[0].model_spec.name if request.tasks else ""
  spec = getattr(request, "model_spec", None)
  return spec.name if spec is not None else ""


def answer(
  context: grpc.ServicerContext, request: Any, call: Callable[[], Response], api: str = ""
) -> Response:
  """The call's response, or the call's failure as a gRPC status; counted in
  the metrics either way."""
  started = time.perf_counter()
  try:
    if isinstance(request, MalformedRequest):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, request.description)
    response = call()
    metrics.record_request(
      _model_name(request), api, "GRPC", "OK", (time.perf_counter() - started) * 1e6
    )
    return response
  except ServingError as error:
    failure = error
  except Exception as error:  # a request must never take the server down
    log.exception("request failed unexpectedly")
    failure = ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
  metrics.record_request(_model_name(request), api, "GRPC", failure.code.name, 0)
  context.abort(failure.code, failure.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  def __init__(self, core: ServerCore):
    self._core = core

  def Predict(self, request, context):
    return answer(
      context,
      request,
      lambda: inference.predict_on(inference.resolve(self._core, request.model_spec), request),
      "Predict",
    )

  def Classify(self, request, context):
    return answer(
      context,
      request,
      lambda: inference.classify_on(inference.resolve(self._core, request.model_spec), request),
      "Classify",
    )

  def Regress(self, request, context):
    return answer(
      context,
      request,
      lambda: inference.regress_on(inference.resolve(self._core, request.model_spec), request),
      "Regress",
    )

  def MultiInference(self, request, context):
    def call():
      if not request.tasks:
        raise invalid_argument("MultiInferenceRequest has no tasks")
      servable = inference.resolve(self._core, request.tasks[0].model_spec)
      return inference.multi_inference_on(servable, request)

    return answer(context, request, call, "MultiInference")

  def GetModelMetadata(self, request, context):
    return answer(
      context,
      request,
      lambda: inference.metadata_on(inference.resolve(self._core, request.model_spec), request),
      "GetModelMetadata",
    )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  def __init__(self, core: ServerCore):
    self._core = core

  def GetModelStatus(self, request, context):
    return answer(
      context, request, lambda: inference.model_status(self._core, request), "GetModelStatus"
    )

  def HandleReloadConfigRequest(self, request, context):
    def call():
      self._core.reload_config(request.config)
      return model_management_pb2.ReloadConfigResponse()

    return answer(context, request, call, "HandleReloadConfigRequest")


_PREDICTION_METHODS: Dict[str, Tuple[Type[Message], Type[Message]]] = {
  "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
  "Classify": (classification_pb2.ClassificationRequest, classification_pb2.ClassificationResponse),
  "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
  "MultiInference": (inference_pb2.MultiInferenceRequest, inference_pb2.MultiInferenceResponse),
  "GetModelMetadata": (
    get_model_metadata_pb2.GetModelMetadataRequest,
    get_model_metadata_pb2.GetModelMetadataResponse,
  ),
}
_MODEL_METHODS: Dict[str, Tuple[Type[Message], Type[Message]]] = {
  "GetModelStatus": (
    get_model_status_pb2.GetModelStatusRequest,
    get_model_status_pb2.GetModelStatusResponse,
  ),
  "HandleReloadConfigRequest": (
    model_management_pb2.ReloadConfigRequest,
    model_management_pb2.ReloadConfigResponse,
  ),
}


def _tolerant_parser(message_class: Type[Message]) -> Callable[[bytes], Any]:
  def parse(data: bytes) -> Any:
    try:
      return message_class.FromString(data)
    except DecodeError as error:
      return MalformedRequest(message_class, error)

  return parse


def _handler(
  service: str, servicer: Any, methods: Dict[str, Tuple[Type[Message], Type[Message]]]
) -> grpc.GenericRpcHandler:
  return grpc.method_handlers_generic_handler(
    service,
    {
      name: grpc.unary_unary_rpc_method_handler(
        getattr(servicer, name),
        request_deserializer=_tolerant_parser(request),
        response_serializer=response.SerializeToString,
      )
      for name, (request, response) in methods.items()
    },
  )


def add_services(server: grpc.Server, core: ServerCore) -> None:
  server.add_generic_rpc_handlers(
    (
      _handler(
        "tensorflow.serving.PredictionService", PredictionService(core), _PREDICTION_METHODS
      ),
      _handler("tensorflow.serving.ModelService", ModelService(core), _MODEL_METHODS),
    )
  )
