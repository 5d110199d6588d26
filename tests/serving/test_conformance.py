"""Every PredictionService and ModelService method, over gRPC and REST, gives
the numbers of an in-process call of the same SavedModel version."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  inference_pb2,
  model_management_pb2,
  regression_pb2,
)

from serving.client import GrpcClient, RestClient, examples_request, ranked
from tests.serving.fakes import (
  CLASSIFY_SIGNATURE,
  REGRESS_SIGNATURE,
  SYNTHETIC_COLUMNS,
  SYNTHETIC_TASKS,
  TRANSFORM_SIGNATURE,
)
from tests.serving.helpers import AVAILABLE, assert_close

OUTPUTS = sorted(SYNTHETIC_TASKS + ("score",))


def rest(endpoint, method: str, path: str, body=None):
  """(HTTP status, decoded JSON) of a REST call."""
  data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
  request = urllib.request.Request(endpoint.rest_url + path, data=data, method=method)
  try:
    with urllib.request.urlopen(request, timeout=30) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as error:
    return error.code, json.loads(error.read())


def example_protos(examples):
  return [tf.train.Example.FromString(e) for e in examples]


def examples_input_request(request_class, endpoint, signature: str, examples=()):
  """A Classify or Regress request for `signature` over the examples."""
  request = request_class()
  request.model_spec.name = endpoint.model_name
  request.model_spec.signature_name = signature
  if examples:
    request.input.example_list.examples.extend(example_protos(examples))
  return request


def test_grpc_predict_matches_in_process_call(endpoint, examples):
  version = endpoint.serving_version()
  response = endpoint.prediction.Predict(examples_request(examples, endpoint.model_name), 10)
  assert response.model_spec.name == endpoint.model_name
  assert response.model_spec.version.value == version
  assert response.model_spec.signature_name == "serving_default"
  actual = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
  assert_close(actual, endpoint.reference(version, examples))
  assert all(actual[name].shape == (len(examples),) for name in OUTPUTS)


def test_grpc_predict_batch_of_one_and_explicit_version(endpoint, examples):
  version = endpoint.serving_version()
  request = examples_request(examples[:1], endpoint.model_name, version=version)
  response = endpoint.prediction.Predict(request, 10)
  assert_close(
    {k: tf.make_ndarray(v) for k, v in response.outputs.items()},
    endpoint.reference(version, examples[:1]),
  )


def test_grpc_predict_output_filter(endpoint, examples):
  request = examples_request(examples, endpoint.model_name)
  request.output_filter.extend(["score"])
  response = endpoint.prediction.Predict(request, 10)
  assert list(response.outputs) == ["score"]


def test_grpc_predict_transform_features_signature(endpoint, examples):
  version = endpoint.serving_version()
  request = examples_request(examples, endpoint.model_name, signature_name=TRANSFORM_SIGNATURE)
  response = endpoint.prediction.Predict(request, 10)
  assert_close(
    {k: tf.make_ndarray(v) for k, v in response.outputs.items()},
    endpoint.reference(version, examples, TRANSFORM_SIGNATURE),
  )


def test_grpc_classify(endpoint, examples):
  version = endpoint.serving_version()
  request = examples_input_request(
    classification_pb2.ClassificationRequest, endpoint, CLASSIFY_SIGNATURE, examples
  )
  response = endpoint.prediction.Classify(request, 10)
  expected = endpoint.reference(version, examples, CLASSIFY_SIGNATURE)
  assert response.model_spec.version.value == version
  assert len(response.result.classifications) == len(examples)
  for got, scores in zip(response.result.classifications, expected["scores"]):
    assert [c.label for c in got.classes] == ["0", "1"]
    np.testing.assert_allclose([c.score for c in got.classes], scores, rtol=1e-5)


def test_grpc_classify_merges_context_features(endpoint, rows, examples):
  version = endpoint.serving_version()
  context = tf.train.Example()
  context.features.feature["device"].bytes_list.value.append(b"tablet")
  partial = [tf.train.Example() for _ in examples]
  for proto, full in zip(partial, example_protos(examples)):
    for name, feature in full.features.feature.items():
      if name != "device":
        proto.features.feature[name].CopyFrom(feature)
  request = examples_input_request(
    classification_pb2.ClassificationRequest, endpoint, CLASSIFY_SIGNATURE
  )
  request.input.example_list_with_context.context.CopyFrom(context)
  request.input.example_list_with_context.examples.extend(partial)
  response = endpoint.prediction.Classify(request, 10)
  merged = []
  for proto in partial:
    full = tf.train.Example()
    full.CopyFrom(proto)
    full.features.feature["device"].CopyFrom(context.features.feature["device"])
    merged.append(full.SerializeToString())
  expected = endpoint.reference(version, merged, CLASSIFY_SIGNATURE)["scores"]
  got = [[c.score for c in r.classes] for r in response.result.classifications]
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_grpc_regress(endpoint, examples):
  version = endpoint.serving_version()
  request = examples_input_request(
    regression_pb2.RegressionRequest, endpoint, REGRESS_SIGNATURE, examples
  )
  response = endpoint.prediction.Regress(request, 10)
  np.testing.assert_allclose(
    [r.value for r in response.result.regressions],
    endpoint.reference(version, examples, REGRESS_SIGNATURE)["outputs"],
    rtol=1e-5,
  )


def test_grpc_multi_inference(endpoint, examples):
  version = endpoint.serving_version()
  request = inference_pb2.MultiInferenceRequest()
  for signature, method in (
    (CLASSIFY_SIGNATURE, "tensorflow/serving/classify"),
    (REGRESS_SIGNATURE, "tensorflow/serving/regress"),
  ):
    task = request.tasks.add()
    task.model_spec.name = endpoint.model_name
    task.model_spec.signature_name = signature
    task.method_name = method
  request.input.example_list.examples.extend(example_protos(examples))
  response = endpoint.prediction.MultiInference(request, 10)
  classification, regression = response.results
  assert classification.model_spec.signature_name == CLASSIFY_SIGNATURE
  np.testing.assert_allclose(
    [[c.score for c in r.classes] for r in classification.classification_result.classifications],
    endpoint.reference(version, examples, CLASSIFY_SIGNATURE)["scores"],
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    [r.value for r in regression.regression_result.regressions],
    endpoint.reference(version, examples, REGRESS_SIGNATURE)["outputs"],
    rtol=1e-5,
  )


def test_grpc_get_model_metadata(endpoint):
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = endpoint.model_name
  response = endpoint.prediction.GetModelMetadata(request, 10)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  response.metadata["signature_def"].Unpack(signature_map)
  serving_default = signature_map.signature_def["serving_default"]
  assert list(serving_default.inputs) == ["examples"]
  assert sorted(serving_default.outputs) == OUTPUTS
  assert (
    signature_map.signature_def[CLASSIFY_SIGNATURE].method_name == "tensorflow/serving/classify"
  )
  assert response.model_spec.version.value == endpoint.serving_version()


def test_grpc_get_model_status(endpoint):
  version = endpoint.serving_version()
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = endpoint.model_name
  request.model_spec.version.value = version
  (status,) = endpoint.models.GetModelStatus(request, timeout=10).model_version_status
  assert (status.version, status.state, status.status.error_code) == (version, AVAILABLE, 0)


def test_version_labels_via_reload_config(endpoint, examples):
  version = endpoint.serving_version()
  request = model_management_pb2.ReloadConfigRequest()
  model = request.config.model_config_list.config.add(
    name=endpoint.model_name, base_path=endpoint.server_model_dir, model_platform="tensorflow"
  )
  model.version_labels["stable"] = version
  endpoint.models.HandleReloadConfigRequest(request, timeout=60)
  labelled = examples_request(examples[:2], endpoint.model_name)
  labelled.model_spec.version_label = "stable"
  response = endpoint.prediction.Predict(labelled, 10)
  assert response.model_spec.version.value == version
  status, body = rest(endpoint, "GET", f"/v1/models/{endpoint.model_name}/labels/stable")
  assert status == 200 and body["model_version_status"][0]["version"] == str(version)
  status, body = rest(
    endpoint,
    "POST",
    f"/v1/models/{endpoint.model_name}/labels/stable:predict",
    {"inputs": {"examples": [{"b64": base64.b64encode(e).decode()} for e in examples[:2]]}},
  )
  assert status == 200
  assert_close(body["outputs"], endpoint.reference(version, examples[:2]))


# --- REST ------------------------------------------------------------------------------


def b64(examples):
  return [{"b64": base64.b64encode(e).decode()} for e in examples]


def test_rest_model_status(endpoint):
  version = endpoint.serving_version()
  status, body = rest(endpoint, "GET", f"/v1/models/{endpoint.model_name}/versions/{version}")
  assert status == 200
  assert body == {
    "model_version_status": [
      {
        "version": str(version),
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
      }
    ]
  }


def test_rest_metadata(endpoint):
  status, body = rest(endpoint, "GET", f"/v1/models/{endpoint.model_name}/metadata")
  assert status == 200
  assert body["model_spec"]["name"] == endpoint.model_name
  signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
  assert signature["inputs"]["examples"]["dtype"] == "DT_STRING"
  assert sorted(signature["outputs"]) == OUTPUTS


def test_rest_predict_rows_match_in_process_call(endpoint, examples):
  version = endpoint.serving_version()
  status, body = rest(
    endpoint, "POST", f"/v1/models/{endpoint.model_name}:predict", {"instances": b64(examples)}
  )
  assert status == 200
  predictions = body["predictions"]
  assert len(predictions) == len(examples)
  assert_close(
    {name: [p[name] for p in predictions] for name in OUTPUTS},
    endpoint.reference(version, examples),
  )


def test_rest_predict_named_rows_and_columns_agree(endpoint, examples):
  path = f"/v1/models/{endpoint.model_name}:predict"
  _, rows = rest(endpoint, "POST", path, {"instances": [{"examples": e} for e in b64(examples)]})
  _, columns = rest(endpoint, "POST", path, {"inputs": {"examples": b64(examples)}})
  _, single = rest(endpoint, "POST", path, {"inputs": b64(examples)})
  assert columns["outputs"] == single["outputs"]
  for name in OUTPUTS:
    assert [row[name] for row in rows["predictions"]] == columns["outputs"][name]


def test_rest_predict_signature_name_and_version(endpoint, examples):
  version = endpoint.serving_version()
  status, body = rest(
    endpoint,
    "POST",
    f"/v1/models/{endpoint.model_name}/versions/{version}:predict",
    {"signature_name": TRANSFORM_SIGNATURE, "inputs": b64(examples)},
  )
  assert status == 200
  assert_close(body["outputs"], endpoint.reference(version, examples, TRANSFORM_SIGNATURE))


def test_rest_classify_and_regress(endpoint, rows, examples):
  version = endpoint.serving_version()
  json_examples = [dict(row) for row in rows]
  for row in json_examples:
    row["item_price"] = float(row["item_price"])
  path = f"/v1/models/{endpoint.model_name}"
  status, body = rest(
    endpoint,
    "POST",
    path + ":classify",
    {"signature_name": CLASSIFY_SIGNATURE, "examples": json_examples},
  )
  assert status == 200
  expected = endpoint.reference(version, examples, CLASSIFY_SIGNATURE)["scores"]
  assert [[label for label, _ in r] for r in body["results"]] == [["0", "1"]] * len(rows)
  np.testing.assert_allclose([[s for _, s in r] for r in body["results"]], expected, rtol=1e-5)
  status, body = rest(
    endpoint,
    "POST",
    path + ":regress",
    {"signature_name": REGRESS_SIGNATURE, "examples": json_examples},
  )
  assert status == 200
  np.testing.assert_allclose(
    body["results"], endpoint.reference(version, examples, REGRESS_SIGNATURE)["outputs"], rtol=1e-5
  )


def test_rest_errors_have_tf_serving_shape(endpoint):
  status, body = rest(endpoint, "GET", "/v1/models/no_such_model")
  assert status == 404 and set(body) == {"error"}
  status, body = rest(endpoint, "POST", f"/v1/models/{endpoint.model_name}:predict", b"{not json")
  assert status == 400 and set(body) == {"error"}


# --- The client --------------------------------------------------------------------


def test_clients_return_the_same_per_task_scores(endpoint, rows, examples):
  version = endpoint.serving_version()
  grpc_client = GrpcClient(endpoint.grpc_target, endpoint.model_name, SYNTHETIC_COLUMNS)
  rest_client = RestClient(endpoint.rest_address, endpoint.model_name, SYNTHETIC_COLUMNS)
  try:
    by_grpc, by_rest = grpc_client.predict_rows(rows), rest_client.predict_rows(rows)
  finally:
    grpc_client.close()
    rest_client.close()
  expected = endpoint.reference(version, examples)
  assert_close(by_grpc, expected)
  assert_close(by_rest, expected)
  order = [r["row"] for r in ranked(by_grpc, "score")]
  assert order == list(np.argsort(-expected["score"], kind="stable"))


def test_rest_keeps_connections_alive_and_honours_expect_continue(endpoint, examples):
  host, _, port = endpoint.rest_address.rpartition(":")
  connection = http.client.HTTPConnection(host, int(port), timeout=30)
  path = f"/v1/models/{endpoint.model_name}:predict"
  body = json.dumps({"inputs": b64(examples)}).encode()
  try:
    for headers in ({}, {"Expect": "100-continue"}, {}):
      connection.request("POST", path, body, {"Content-Type": "application/json", **headers})
      response = connection.getresponse()
      assert response.status == 200
      assert len(json.loads(response.read())["outputs"]["score"]) == len(examples)
    connection.request("GET", f"/v1/models/{endpoint.model_name}")
    assert connection.getresponse().status == 200
  finally:
    connection.close()
