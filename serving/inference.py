"""The PredictionService and ModelService methods on protos, shared by the
gRPC and REST front ends and by warm-up replay."""

from __future__ import annotations

from typing import Callable, Dict, List, TypeVar

import numpy as np
from google.protobuf.message import Message
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  inference_pb2,
  input_pb2,
  model_pb2,
  predict_pb2,
  prediction_log_pb2,
  regression_pb2,
)

from contract import (
  CLASSIFY_METHOD,
  CLASSIFY_OUTPUT_CLASSES,
  CLASSIFY_OUTPUT_SCORES,
  REGRESS_METHOD,
  REGRESS_OUTPUTS,
  SERVING_SIGNATURE,
)
from contract.warmup import read_warmup_requests
from serving.constants import SIGNATURE_DEF_METADATA_FIELD
from serving.errors import invalid_argument
from serving.manager import ServerCore
from serving.servable import Servable, Signature
from serving.tensors import fill_proto, to_ndarray


def signature_name(model_spec: model_pb2.ModelSpec) -> str:
  return model_spec.signature_name or SERVING_SIGNATURE


def resolve(core: ServerCore, model_spec: model_pb2.ModelSpec) -> Servable:
  """The loaded version a ModelSpec names; NOT_FOUND if there is none."""
  choice = model_spec.WhichOneof("version_choice")
  version = model_spec.version.value if choice == "version" else None
  label = model_spec.version_label if choice == "version_label" else None
  return core.model(model_spec.name).servable(version, label)


def fill_model_spec(target: model_pb2.ModelSpec, servable: Servable, signature: str) -> None:
  target.name = servable.name
  target.version.value = servable.version
  target.signature_name = signature


# --- Predict -----------------------------------------------------------------------


def predict_on(
  servable: Servable, request: predict_pb2.PredictRequest
) -> predict_pb2.PredictResponse:
  key = signature_name(request.model_spec)
  signature = servable.signature(key)
  inputs = {name: to_ndarray(tensor) for name, tensor in request.inputs.items()}
  outputs = signature(inputs)
  response = predict_pb2.PredictResponse()
  for name in selected_outputs(signature, request.output_filter):
    fill_proto(outputs[name], response.outputs[name])
  fill_model_spec(response.model_spec, servable, key)
  return response


def selected_outputs(signature: Signature, output_filter) -> List[str]:
  if not output_filter:
    return list(signature.output_names)
  unknown = sorted(set(output_filter) - set(signature.output_names))
  if unknown:
    raise invalid_argument(
      f"output tensor alias(es) {unknown} not found in signature "
      f"'{signature.key}'; outputs: {list(signature.output_names)}"
    )
  return list(dict.fromkeys(output_filter))


# --- Classify and Regress ------------------------------------------------------------


def serialized_examples(input_proto: input_pb2.Input) -> np.ndarray:
  """The Input's examples as one serialized tf.Example each. Context features
  are merged in by concatenating serializations: for a feature in both, the
  example's value wins, as in TF Serving."""
  kind = input_proto.WhichOneof("kind")
  if kind == "example_list":
    serialized = [e.SerializeToString() for e in input_proto.example_list.examples]
  elif kind == "example_list_with_context":
    with_context = input_proto.example_list_with_context
    context = with_context.context.SerializeToString()
    serialized = [context + e.SerializeToString() for e in with_context.examples]
  else:
    raise invalid_argument("Input is empty: it has no example_list or example_list_with_context")
  if not serialized:
    raise invalid_argument("Input is empty: it has no examples")
  array = np.empty(len(serialized), dtype=object)
  array[:] = serialized
  return array


def _method_signature(servable: Servable, key: str, method: str) -> Signature:
  signature = servable.signature(key)
  if signature.method_name != method:
    raise invalid_argument(
      f"Expected {method} signature for '{key}'; its method_name is {signature.method_name!r}"
    )
  if len(signature.input_names) != 1:
    raise invalid_argument(f"signature '{key}' must have exactly one input to serve {method}")
  return signature


def _run_on_examples(signature: Signature, examples: np.ndarray) -> Dict[str, np.ndarray]:
  outputs = signature({signature.input_names[0]: examples})
  for name, value in outputs.items():
    if value.ndim == 0 or value.shape[0] != len(examples):
      raise invalid_argument(
        f"output '{name}' of '{signature.key}' has shape "
        f"{list(value.shape)}; expected a batch of {len(examples)}"
      )
  return outputs


def classification_result(
  signature: Signature, examples: np.ndarray
) -> classification_pb2.ClassificationResult:
  outputs = _run_on_examples(signature, examples)
  classes = outputs.get(CLASSIFY_OUTPUT_CLASSES)
  scores = outputs.get(CLASSIFY_OUTPUT_SCORES)
  if classes is None and scores is None:
    raise invalid_argument(
      f"classification signature '{signature.key}' has neither "
      f"'{CLASSIFY_OUTPUT_CLASSES}' nor '{CLASSIFY_OUTPUT_SCORES}'"
    )
  if scores is not None and scores.ndim == 1:
    scores = scores[:, None]
  if classes is not None and classes.ndim == 1:
    classes = classes[:, None]
  result = classification_pb2.ClassificationResult()
  for i in range(len(examples)):
    classification = result.classifications.add()
    width = (classes if classes is not None else scores).shape[1]
    for k in range(width):
      entry = classification.classes.add()
      if classes is not None:
        entry.label = classes[i, k].decode()
      if scores is not None:
        entry.score = float(scores[i, k])
  return result


def regression_result(
  signature: Signature, examples: np.ndarray
) -> regression_pb2.RegressionResult:
  outputs = _run_on_examples(signature, examples)
  values = outputs.get(REGRESS_OUTPUTS)
  if values is None:
    raise invalid_argument(
      f"regression signature '{signature.key}' has no '{REGRESS_OUTPUTS}' output"
    )
  values = values.reshape(len(examples), -1)
  if values.shape[1] != 1:
    raise invalid_argument(
      f"regression output of '{signature.key}' must have one value "
      f"per example, not {values.shape[1]}"
    )
  result = regression_pb2.RegressionResult()
  for value in values[:, 0]:
    result.regressions.add().value = float(value)
  return result


ExamplesResponse = TypeVar(
  "ExamplesResponse", classification_pb2.ClassificationResponse, regression_pb2.RegressionResponse
)


def _answer_on_examples(
  servable: Servable,
  request,
  method: str,
  result: Callable[[Signature, np.ndarray], Message],
  response: ExamplesResponse,
) -> ExamplesResponse:
  """Classify or Regress: runs the request's signature of that method on its
  examples and fills `response`."""
  key = signature_name(request.model_spec)
  signature = _method_signature(servable, key, method)
  response.result.CopyFrom(result(signature, serialized_examples(request.input)))
  fill_model_spec(response.model_spec, servable, key)
  return response


def classify_on(
  servable: Servable, request: classification_pb2.ClassificationRequest
) -> classification_pb2.ClassificationResponse:
  return _answer_on_examples(
    servable,
    request,
    CLASSIFY_METHOD,
    classification_result,
    classification_pb2.ClassificationResponse(),
  )


def regress_on(
  servable: Servable, request: regression_pb2.RegressionRequest
) -> regression_pb2.RegressionResponse:
  return _answer_on_examples(
    servable, request, REGRESS_METHOD, regression_result, regression_pb2.RegressionResponse()
  )


def _check_multi_inference_tasks(request: inference_pb2.MultiInferenceRequest) -> None:
  if not request.tasks:
    raise invalid_argument("MultiInferenceRequest has no tasks")
  names = {t.model_spec.name for t in request.tasks}
  if len(names) != 1:
    raise invalid_argument("all MultiInference tasks must name the same model")
  signatures = [signature_name(t.model_spec) for t in request.tasks]
  if len(set(signatures)) != len(signatures):
    raise invalid_argument("MultiInference tasks must use distinct signatures")
  for task in request.tasks:
    if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
      raise invalid_argument(f"unsupported MultiInference method_name {task.method_name!r}")


def multi_inference_on(
  servable: Servable, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
  _check_multi_inference_tasks(request)
  examples = serialized_examples(request.input)
  response = inference_pb2.MultiInferenceResponse()
  for task in request.tasks:
    key = signature_name(task.model_spec)
    signature = _method_signature(servable, key, task.method_name)
    result = response.results.add()
    fill_model_spec(result.model_spec, servable, key)
    if task.method_name == CLASSIFY_METHOD:
      result.classification_result.CopyFrom(classification_result(signature, examples))
    else:
      result.regression_result.CopyFrom(regression_result(signature, examples))
  return response


# --- Metadata and status ----------------------------------------------------------------


def metadata_on(
  servable: Servable, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
  fields = list(request.metadata_field)
  if fields != [SIGNATURE_DEF_METADATA_FIELD]:
    raise invalid_argument(
      f"metadata_field must be exactly ['{SIGNATURE_DEF_METADATA_FIELD}'], got {fields}"
    )
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for key, signature in servable.signatures.items():
    signature_map.signature_def[key].CopyFrom(signature.signature_def)
  response = get_model_metadata_pb2.GetModelMetadataResponse()
  response.model_spec.name = servable.name
  response.model_spec.version.value = servable.version
  response.metadata[SIGNATURE_DEF_METADATA_FIELD].Pack(signature_map)
  return response


def model_status(
  core: ServerCore, request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
  spec = request.model_spec
  manager = core.model(spec.name)
  choice = spec.WhichOneof("version_choice")
  version: int | None = None
  if choice == "version":
    version = spec.version.value
  elif choice == "version_label":
    version = manager.servable(label=spec.version_label).version
  return get_model_status_pb2.GetModelStatusResponse(model_version_status=manager.statuses(version))


# --- Warm-up ----------------------------------------------------------------------


def replay(servable: Servable, log: prediction_log_pb2.PredictionLog) -> None:
  """Runs one warm-up record against a version that is not serving yet."""
  kind = log.WhichOneof("log_type")
  if kind == "predict_log":
    predict_on(servable, log.predict_log.request)
  elif kind == "classify_log":
    classify_on(servable, log.classify_log.request)
  elif kind == "regress_log":
    regress_on(servable, log.regress_log.request)
  elif kind == "multi_inference_log":
    multi_inference_on(servable, log.multi_inference_log.request)
  else:
    raise invalid_argument(f"unsupported warm-up record type {kind!r}")


def warm_up(servable: Servable) -> None:
  """Replays the version's warm-up file (TF Serving's format); any failure
  fails the load."""
  for log in read_warmup_requests(servable.path):
    replay(servable, log)
