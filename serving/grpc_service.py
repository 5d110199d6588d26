"""TF Serving's gRPC services, `tensorflow.serving.PredictionService` and
`tensorflow.serving.ModelService`, on the servicer base classes of
tensorflow-serving-api."""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

import grpc
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from serving import inference
from serving.errors import ServingError
from serving.manager import ServerCore

log = logging.getLogger(__name__)
Response = TypeVar("Response")


def answer(context: grpc.ServicerContext, call: Callable[[], Response]) -> Response:
  """The call's response, or the call's failure as a gRPC status."""
  try:
    return call()
  except ServingError as error:
    failure = error
  except Exception as error:  # a request must never take the server down
    log.exception("request failed unexpectedly")
    failure = ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
  context.abort(failure.code, failure.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, core: ServerCore):
    self._core = core

  def Predict(self, request, context):
    return answer(context, lambda: inference.predict_on(
        inference.resolve(self._core, request.model_spec), request))

  def Classify(self, request, context):
    return answer(context, lambda: inference.classify_on(
        inference.resolve(self._core, request.model_spec), request))

  def Regress(self, request, context):
    return answer(context, lambda: inference.regress_on(
        inference.resolve(self._core, request.model_spec), request))

  def MultiInference(self, request, context):
    def call():
      if not request.tasks:
        raise inference.invalid_argument("MultiInferenceRequest has no tasks")
      servable = inference.resolve(self._core, request.tasks[0].model_spec)
      return inference.multi_inference_on(servable, request)
    return answer(context, call)

  def GetModelMetadata(self, request, context):
    return answer(context, lambda: inference.metadata_on(
        inference.resolve(self._core, request.model_spec), request))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, core: ServerCore):
    self._core = core

  def GetModelStatus(self, request, context):
    return answer(context, lambda: inference.model_status(self._core, request))

  def HandleReloadConfigRequest(self, request, context):
    def call():
      self._core.reload_config(request.config)
      return model_management_pb2.ReloadConfigResponse()
    return answer(context, call)


def add_services(server: grpc.Server, core: ServerCore) -> None:
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(core), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
