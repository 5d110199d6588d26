"""The PredictionService and ModelService methods on protos, shared by the
gRPC and REST front ends and by warm-up replay."""

from __future__ import annotations

from typing import Callable, Dict, List, TypeVar

import grpc
import numpy as np
import tensorflow as tf
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
  CLASSIFY_INPUT,
  CLASSIFY_METHOD,
  CLASSIFY_OUTPUT_CLASSES,
  CLASSIFY_OUTPUT_SCORES,
  REGRESS_METHOD,
  REGRESS_OUTPUTS,
  SERVING_SIGNATURE,
)
from contract.warmup import read_warmup_requests
from serving import metrics
from serving.constants import SIGNATURE_DEF_METADATA_FIELD
from serving.errors import ServingError, invalid_argument
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
  if not model_spec.name:
    raise invalid_argument("ModelSpec has no name specified.")
  missing = (
    f"Servable not found for request: Specific({model_spec.name}, {version})"
    if version is not None
    else None
  )
  return core.model(model_spec.name, missing).servable(version, label)


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
    fill_proto(outputs[name], response.outputs[name], servable.options.tensor_content)
  fill_model_spec(response.model_spec, servable, key)
  return response


def selected_outputs(signature: Signature, output_filter) -> List[str]:
  """The outputs a request asks for, checked in TF Serving's words."""
  if not output_filter:
    return list(signature.output_names)
  seen: List[str] = []
  for alias in output_filter:
    if alias not in signature.output_names:
      raise invalid_argument(
        f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
        f"set {{{','.join(signature.output_names)}}}."
      )
    if alias in seen:
      raise invalid_argument(f"duplicate output tensor alias: {alias}")
    seen.append(alias)
  return seen


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
    serialized = []
  if not serialized:
    raise invalid_argument("Input is empty.")
  array = np.empty(len(serialized), dtype=object)
  array[:] = serialized
  return array


# --- TF Serving's rules for Classify and Regress signatures (classifier.cc,
# regressor.cc): the method name counts only with
# --enable_signature_method_name_check, so TF2 signatures, all saved with the
# Predict method name, serve Classify and Regress when their shape fits.


def _examples_signature(
  servable: Servable, key: str, method: str, check_method_name: bool
) -> Signature:
  """The signature `key` if it fits `method`; INVALID_ARGUMENT in TF
  Serving's words if not."""
  signature = servable.signatures.get(key)
  if signature is None:
    raise invalid_argument(f"No signature was found with the name: {key}")
  check_examples_signature(signature, method, check_method_name)
  return signature


def check_examples_signature(signature: Signature, method: str, check_method_name: bool) -> None:
  """PreProcessClassification/PreProcessRegression: one `inputs` input, and
  `classes`/`scores` (one or both) or `outputs` as the outputs."""
  kind = "classification" if method == CLASSIFY_METHOD else "regression"
  if check_method_name and signature.method_name != method:
    raise invalid_argument(
      f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}"
    )
  definition = signature.signature_def
  if len(definition.inputs) != 1:
    raise invalid_argument("Expected one input Tensor.")
  outputs = len(definition.outputs)
  if method == CLASSIFY_METHOD and outputs not in (1, 2):
    raise invalid_argument(f"Expected one or two output Tensors, found {outputs}")
  if method == REGRESS_METHOD and outputs != 1:
    raise invalid_argument("Expected one output Tensor.")
  if CLASSIFY_INPUT not in definition.inputs:
    raise invalid_argument(f"No {kind} inputs found in SignatureDef: {definition}")
  if method == CLASSIFY_METHOD:
    if not {CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES} & set(definition.outputs):
      raise invalid_argument(
        "Expected classification signature outputs to contain at least one of "
        f'"{CLASSIFY_OUTPUT_CLASSES}" or "{CLASSIFY_OUTPUT_SCORES}". Signature was: {definition}'
      )
  elif REGRESS_OUTPUTS not in definition.outputs:
    raise invalid_argument(f"No regression outputs found in SignatureDef: {definition}")


def _run_on_examples(signature: Signature, examples: np.ndarray) -> Dict[str, np.ndarray]:
  return signature({CLASSIFY_INPUT: examples})


def _class_matrix(value: np.ndarray | None, what: str, dtype: str, batch: int) -> np.ndarray | None:
  """A classify output checked as PostProcessClassificationResult does."""
  if value is None:
    return None
  if value.ndim != 2:
    raise invalid_argument(
      f"Expected Tensor shape: [batch_size num_classes] but got {list(value.shape)}"
    )
  is_string = value.dtype == object or value.dtype.kind in "SU"
  if (dtype == "DT_STRING") != is_string or (dtype == "DT_FLOAT" and value.dtype != np.float32):
    got = "DT_STRING" if is_string else tensor_dtype_name(value)
    raise invalid_argument(f"Expected {what} Tensor of {dtype}. Got: {got}")
  if value.shape[0] != batch:
    raise invalid_argument(f"Expected {what} output batch size of {batch}. Got: {value.shape[0]}")
  return value


def classification_result(
  signature: Signature, examples: np.ndarray
) -> classification_pb2.ClassificationResult:
  outputs = _run_on_examples(signature, examples)
  batch = len(examples)
  classes = _class_matrix(outputs.get(CLASSIFY_OUTPUT_CLASSES), "classes", "DT_STRING", batch)
  scores = _class_matrix(outputs.get(CLASSIFY_OUTPUT_SCORES), "scores", "DT_FLOAT", batch)
  if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
    raise invalid_argument(
      "Tensors class and score should match in dim_size(1). Got "
      f"{classes.shape[1]} vs. {scores.shape[1]}"
    )
  width = (classes if classes is not None else scores).shape[1]
  result = classification_pb2.ClassificationResult()
  for i in range(batch):
    classification = result.classifications.add()
    for k in range(width):
      entry = classification.classes.add()
      if classes is not None:
        entry.label = _as_text(classes[i, k])
      if scores is not None:
        entry.score = float(scores[i, k])
  return result


def _as_text(value) -> str:
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def tensor_dtype_name(value: np.ndarray) -> str:
  """TF's DataType name of an array, as TF Serving's messages spell it."""
  return "DT_" + tf.as_dtype(value.dtype).name.upper()


def regression_result(
  signature: Signature, examples: np.ndarray
) -> regression_pb2.RegressionResult:
  values = _run_on_examples(signature, examples)[REGRESS_OUTPUTS]
  batch = len(examples)
  if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
    raise invalid_argument(
      "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
      f"but got {list(values.shape)}"
    )
  if values.shape[0] != batch:
    raise invalid_argument(
      f"Input batch size did not match output batch size: {batch} vs. {values.shape[0]}"
    )
  if values.dtype != np.float32:
    raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {tensor_dtype_name(values)}")
  result = regression_pb2.RegressionResult()
  for value in values.reshape(batch):
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
  signature = _examples_signature(servable, key, method, servable.options.check_method_name)
  examples = serialized_examples(request.input)
  metrics.EXAMPLE_COUNT_TOTAL.increment(servable.name, by=len(examples))
  response.result.CopyFrom(result(signature, examples))
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


def _multi_inference_signatures(
  servable: Servable, request: inference_pb2.MultiInferenceRequest
) -> List[Signature]:
  """Each task's signature, checked as TF Serving's multi_inference.cc does."""
  if not request.tasks:
    raise invalid_argument("MultiInferenceRequest has no tasks")
  model_name = ""
  seen: set = set()
  signatures = []
  for task in request.tasks:
    if not task.model_spec.name:
      raise invalid_argument("Found ModelSpec with an empty model name.")
    if model_name and task.model_spec.name != model_name:
      raise invalid_argument(
        "All ModelSpecs in a MultiInferenceRequest must access the same model name."
      )
    model_name = task.model_spec.name
    key = signature_name(task.model_spec)
    if key in seen:
      raise invalid_argument(f"Duplicate evaluation of signature: {key}")
    seen.add(key)
    signature = servable.signatures.get(key)
    if signature is None:
      raise invalid_argument(f"Requested signature not found in model graph: {key}")
    if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
      raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}"
      )
    check_examples_signature(signature, task.method_name, servable.options.check_method_name)
    signatures.append(signature)
  return signatures


def multi_inference_on(
  servable: Servable, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
  signatures = _multi_inference_signatures(servable, request)
  examples = serialized_examples(request.input)
  metrics.EXAMPLE_COUNT_TOTAL.increment(servable.name, by=len(examples))
  response = inference_pb2.MultiInferenceResponse()
  for task, signature in zip(request.tasks, signatures):
    result = response.results.add()
    fill_model_spec(result.model_spec, servable, signature.key)
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
  manager = core.model(spec.name, f"Could not find any versions of model {spec.name}")
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
