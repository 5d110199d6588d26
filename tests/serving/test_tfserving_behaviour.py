"""TF Serving's own test cases (tensorflow_model_server_test.py), on models
built here in the shapes of its test data: half_plus_two (y = 0.5x + 2) as a
TF1 export and a TF2 export, and a model of two versions in leading-zero
directories (00000123, 00000124) with version labels.

The models are served next to the endpoint's model, by HandleReloadConfig,
so these tests run against a real TF Serving too (tests/serving/conftest.py
tells how); the tests of server flags start bundled servers and skip there.
Error texts asserted here are TF Serving's, from its sources."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_status_pb2,
  inference_pb2,
  model_management_pb2,
  predict_pb2,
  prediction_service_pb2_grpc,
  regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from contract import CLASSIFY_METHOD, PREDICT_METHOD, REGRESS_METHOD
from serving import cli
from serving.config import ServerOptions
from serving.rest import RestServer
from serving.server import ModelServer
from tests.serving.fakes import (
  SlowRestApi,
  build_half_plus_two_tf1,
  build_half_plus_two_tf2,
  build_tf_text_model,
)
from tests.serving.helpers import AVAILABLE, free_port, http, wait_until

EXTERNAL = os.environ.get("MTLRANK_TFSERVING_TARGET") is not None
bundled_only = pytest.mark.skipif(EXTERNAL, reason="starts bundled servers with other flags")
TF1, TF2, VERSIONS = "half_plus_two_tf1", "half_plus_two_tf2", "half_plus_two_versions"
TF_TEXT = "tf_text_tokens"
# Not a number: the endpoint's own model ignores this directory in its base path.
MODELS_DIR = "_tfserving_models"
LABELS = {"stable": 123, "canary": 124}
Y_OF_2 = {123: 3.0, 124: 4.0}  # version 124 is half_plus_three


def _stage(target: Path, build, **kwargs) -> None:
  staging = target.with_name(f".staging-{target.name}")
  build(staging, **kwargs)
  staging.rename(target)


def _config(endpoint, labels: bool) -> model_server_config_pb2.ModelServerConfig:
  """The endpoint's model plus the half_plus_two models, as the server sees them."""
  config = model_server_config_pb2.ModelServerConfig()
  models = config.model_config_list.config
  models.add(
    name=endpoint.model_name, base_path=endpoint.server_model_dir, model_platform="tensorflow"
  )
  for name in (TF1, TF2, VERSIONS, TF_TEXT):
    model = models.add(
      name=name,
      base_path=f"{endpoint.server_model_dir}/{MODELS_DIR}/{name}",
      model_platform="tensorflow",
    )
    if name == VERSIONS:
      model.model_version_policy.all.SetInParent()
      if labels:
        model.version_labels.update(LABELS)
  return config


def _reload(endpoint, config) -> None:
  request = model_management_pb2.ReloadConfigRequest(config=config)
  endpoint.models.HandleReloadConfigRequest(request, timeout=120)


@pytest.fixture(scope="module")
def served(endpoint) -> Iterator[object]:
  """The endpoint, also serving the half_plus_two models; labels are set once
  their versions are available, as TF Serving requires."""
  root = endpoint.model_dir / MODELS_DIR
  shutil.rmtree(root, ignore_errors=True)
  for name in (TF1, TF2, VERSIONS, TF_TEXT):
    (root / name).mkdir(parents=True)
  _stage(root / TF1 / "00000123", build_half_plus_two_tf1)
  _stage(root / TF2 / "00000123", build_half_plus_two_tf2)
  _stage(root / VERSIONS / "00000123", build_half_plus_two_tf2)
  _stage(root / VERSIONS / "00000124", build_half_plus_two_tf2, offset=3.0)
  _stage(root / TF_TEXT / "00000001", build_tf_text_model)
  _reload(endpoint, _config(endpoint, labels=False))
  for name, versions in ((TF1, [123]), (TF2, [123]), (VERSIONS, [123, 124]), (TF_TEXT, [1])):
    wait_until(
      lambda: all(
        (s := endpoint.statuses(name).get(v)) is not None and s.state == AVAILABLE for v in versions
      ),
      120,
      f"{name} versions {versions} to be available",
    )
  _reload(endpoint, _config(endpoint, labels=True))
  yield endpoint
  only_own = model_server_config_pb2.ModelServerConfig()
  only_own.model_config_list.config.add(
    name=endpoint.model_name, base_path=endpoint.server_model_dir, model_platform="tensorflow"
  )
  _reload(endpoint, only_own)
  shutil.rmtree(root, ignore_errors=True)


def predict_request(model: str, x, signature: str = "", **spec) -> predict_pb2.PredictRequest:
  """TF Serving's VerifyPredictRequest: x = [2.0] as a float tensor of shape [1]."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  for key, value in spec.items():
    if key == "version":
      request.model_spec.version.value = value
    else:
      setattr(request.model_spec, key, value)
  request.inputs["x"].CopyFrom(tf.make_tensor_proto(x, dtype=tf.float32))
  return request


def examples_input(request, model: str, signature: str = "", x: float = 2.0):
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
  return request


# --- Predict, Classify, Regress, MultiInference over gRPC --------------------------------


@pytest.mark.parametrize("model", [TF1, TF2])
def test_predict_hands_the_tensor_to_the_graph_and_answers_in_value_fields(served, model):
  for output_filter in (["y"], []):
    request = predict_request(model, [2.0])
    request.output_filter.extend(output_filter)
    response = served.prediction.Predict(request, 20)
    assert response.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(response.outputs["y"].float_val) == [3.0]  # not tensor_content
    spec = response.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == (model, "serving_default", 123)


def test_predict_runs_shapes_the_signature_does_not_declare(served):
  """The TF1 signature declares x as [None, 1]; TF Serving feeds [3] and [1, 1]
  to the session as they are."""
  response = served.prediction.Predict(predict_request(TF1, [2.0, 3.0, 4.0]), 20)
  assert tf.make_ndarray(response.outputs["y"]).tolist() == [3.0, 3.5, 4.0]
  response = served.prediction.Predict(predict_request(TF1, [[2.0]]), 20)
  assert tf.make_ndarray(response.outputs["y"]).tolist() == [[3.0]]


def test_predict_what_the_graph_cannot_run_is_invalid_argument(served):
  request = predict_request(TF1, [2.0])
  request.inputs["x"].CopyFrom(tf.make_tensor_proto([b"two"]))
  with pytest.raises(grpc.RpcError) as error:
    served.prediction.Predict(request, 20)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_model_using_tf_text_ops_loads_and_answers(served):
  """TF Serving links TF Text's kernels in (its test_tf_text case); the
  server registers them before loading, so such a model serves."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = TF_TEXT
  request.inputs["text"].CopyFrom(tf.make_tensor_proto(["Hello TF Serving", "ONE"]))
  response = served.prediction.Predict(request, 20)
  assert tf.make_ndarray(response.outputs["tokens"]).tolist() == [3, 1]
  assert tf.make_ndarray(response.outputs["folded"]).tolist() == [b"hello tf serving", b"one"]


@pytest.mark.parametrize("model", [TF1, TF2])
def test_classify_and_regress_whatever_the_method_name(served, model):
  """TF1's signatures carry the Classify/Regress method names, TF2's all say
  Predict: TF Serving serves both (its method-name check is off by default)."""
  request = examples_input(classification_pb2.ClassificationRequest(), model, "classify_x_to_y")
  response = served.prediction.Classify(request, 20)
  ((entry,),) = [list(c.classes) for c in response.result.classifications]
  assert (entry.label, entry.score) == ("", 3.0)
  assert response.model_spec.signature_name == "classify_x_to_y"
  assert response.model_spec.version.value == 123
  request = examples_input(regression_pb2.RegressionRequest(), model, "regress_x_to_y")
  response = served.prediction.Regress(request, 20)
  assert [r.value for r in response.result.regressions] == [3.0]
  assert response.model_spec.signature_name == "regress_x_to_y"


@pytest.mark.parametrize("model", [TF1, TF2])
def test_multi_inference(served, model):
  request = inference_pb2.MultiInferenceRequest()
  for signature, method in (
    ("regress_x_to_y", REGRESS_METHOD),
    ("classify_x_to_y", CLASSIFY_METHOD),
  ):
    task = request.tasks.add(method_name=method)
    task.model_spec.name = model
    task.model_spec.signature_name = signature
  request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
  response = served.prediction.MultiInference(request, 20)
  regression, classification = response.results
  assert regression.regression_result.regressions[0].value == 3.0
  assert classification.classification_result.classifications[0].classes[0].score == 3.0
  assert [r.model_spec.signature_name for r in response.results] == [
    "regress_x_to_y",
    "classify_x_to_y",
  ]
  assert all(r.model_spec.version.value == 123 for r in response.results)


@pytest.mark.parametrize("model", [TF1, TF2])
def test_regress_on_a_signature_without_serialized_examples_fails(served, model):
  """regress_x2_to_y3 takes a float: the serialized examples cannot feed it."""
  request = examples_input(regression_pb2.RegressionRequest(), model, "regress_x2_to_y3")
  with pytest.raises(grpc.RpcError) as error:
    served.prediction.Regress(request, 20)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_classify_and_predict_signature_errors_in_tf_servings_words(served):
  request = examples_input(classification_pb2.ClassificationRequest(), TF2, "nope")
  with pytest.raises(grpc.RpcError) as error:
    served.prediction.Classify(request, 20)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "No signature was found with the name: nope" in error.value.details()
  request = examples_input(classification_pb2.ClassificationRequest(), TF2, "serving_default")
  with pytest.raises(grpc.RpcError) as error:
    served.prediction.Classify(request, 20)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "No classification inputs found in SignatureDef" in error.value.details()
  with pytest.raises(grpc.RpcError) as error:
    served.prediction.Predict(predict_request(TF2, [2.0], signature="nope"), 20)
  assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
  assert 'Serving signature key "nope" not found.' in error.value.details()


# --- Versions in leading-zero directories and labels ------------------------------------


def test_leading_zero_version_directories_serve_by_number(served):
  assert sorted(served.statuses(VERSIONS)) == [123, 124]
  latest = served.prediction.Predict(predict_request(VERSIONS, [2.0]), 20)
  assert (latest.model_spec.version.value, latest.outputs["y"].float_val[0]) == (124, 4.0)
  for version, expected in Y_OF_2.items():
    response = served.prediction.Predict(predict_request(VERSIONS, [2.0], version=version), 20)
    assert response.outputs["y"].float_val[0] == expected


def test_version_labels(served):
  for label, version in LABELS.items():
    response = served.prediction.Predict(predict_request(VERSIONS, [2.0], version_label=label), 20)
    assert response.model_spec.version.value == version
    status, body = http(
      served.rest_address,
      "POST",
      f"/v1/models/{VERSIONS}/labels/{label}:predict",
      {"instances": [2.0]},
    )
    assert (status, body) == (200, {"predictions": [Y_OF_2[version]]})
  with pytest.raises(grpc.RpcError) as error:
    served.prediction.Predict(predict_request(VERSIONS, [2.0], version_label="nope"), 20)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "Unrecognized servable version label: nope" in error.value.details()


def test_a_bad_model_config_is_refused_and_the_old_one_serves_on(served):
  duplicate = _config(served, labels=False)
  duplicate.model_config_list.config.add().CopyFrom(duplicate.model_config_list.config[1])
  relative = _config(served, labels=False)
  relative.model_config_list.config[1].base_path = "relative/path"
  for config, words in (
    (duplicate, f"Illegal to list model {TF1} multiple times in config list"),
    (
      relative,
      f"Expected model {TF1} to have an absolute path or URI; got base_path()=relative/path",
    ),
  ):
    with pytest.raises(grpc.RpcError) as error:
      _reload(served, config)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.value.details()
  response = served.prediction.Predict(predict_request(TF1, [2.0]), 20)
  assert response.outputs["y"].float_val[0] == 3.0


# --- REST -----------------------------------------------------------------------------


def test_rest_predict_classify_regress_status_and_metadata(served):
  address = served.rest_address
  assert http(address, "POST", f"/v1/models/{TF1}:predict", {"instances": [2.0, 3.0, 4.0]}) == (
    200,
    {"predictions": [3.0, 3.5, 4.0]},
  )
  assert http(address, "POST", f"/v1/models/{TF1}:predict", {"inputs": [2.0, 3.0, 4.0]}) == (
    200,
    {"outputs": [3.0, 3.5, 4.0]},
  )
  for model in (TF1, TF2):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert http(address, "POST", f"/v1/models/{model}:classify", body) == (
      200,
      {"results": [[["", 3.0]]]},
    )
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert http(address, "POST", f"/v1/models/{model}:regress", body) == (200, {"results": [3.0]})
  status, body = http(address, "GET", f"/v1/models/{TF1}")
  assert (status, body) == (
    200,
    {
      "model_version_status": [
        {
          "version": "123",
          "state": "AVAILABLE",
          "status": {"error_code": "OK", "error_message": ""},
        }
      ]
    },
  )
  status, body = http(address, "GET", f"/v1/models/{TF1}/metadata")
  assert status == 200
  assert body["model_spec"] == {"name": TF1, "signature_name": "", "version": "123"}
  signatures = body["metadata"]["signature_def"]["signature_def"]
  assert {k: v["method_name"] for k, v in signatures.items()} == {
    "serving_default": PREDICT_METHOD,
    "classify_x_to_y": CLASSIFY_METHOD,
    "regress_x_to_y": REGRESS_METHOD,
    "regress_x2_to_y3": REGRESS_METHOD,
  }


def test_rest_errors_have_tf_servings_status_and_words(served):
  address = served.rest_address
  cases = [
    (
      "GET",
      f"/v1/models/{TF1}:predict",
      None,
      400,
      f"Malformed request: GET /v1/models/{TF1}:predict",
    ),
    ("POST", f"/v1/models/{TF1}", {}, 400, f"Malformed request: POST /v1/models/{TF1}"),
    ("POST", f"/v1/models/{TF1}:explain", {}, 400, "Malformed request"),
    ("GET", f"/v1/models/{TF1}/versions/x", None, 400, "Malformed request"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    (
      "POST",
      f"/v1/models/{TF1}:predict",
      {"signature_name": "nope", "instances": [2.0]},
      400,
      'Serving signature name: "nope" not found in signature def',
    ),
    (
      "GET",
      "/v1/models/no_such_model",
      None,
      404,
      "Could not find any versions of model no_such_model",
    ),
    (
      "POST",
      f"/v1/models/{TF1}/versions/7:predict",
      {"instances": [2.0]},
      404,
      f"Servable not found for request: Specific({TF1}, 7)",
    ),
    (
      "POST",
      "/v1/models/no_such_model:predict",
      {"instances": [2.0]},
      404,
      "Servable not found for request: Latest(no_such_model)",
    ),
  ]
  wrong = []
  for method, path, body, want_status, words in cases:
    status, answer = http(address, method, path, body)
    if (
      status != want_status or not isinstance(answer, dict) or words not in answer.get("error", "")
    ):
      wrong.append(f"{method} {path}: {status} {answer}")
  assert wrong == []
  status, _ = http(address, "GET", "/v2/models/x")
  assert status == 404


# --- Server flags (bundled server only) ----------------------------------------------------


def test_the_flags_of_tf_servings_test_harness_are_accepted():
  """tensorflow_model_server_test_base.py passes these on every launch."""
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command"))
  args = parser.parse_args(
    [
      "serve",
      "--port=9000",
      "--rest_api_port=9001",
      "--rest_api_timeout_in_ms=5000",
      "--grpc_socket_path=/tmp/tf-serving.sock",
      "--model_config_file=/models.config",
      "--model_config_file_poll_wait_seconds=1",
      "--monitoring_config_file=/monitoring.config",
      "--prefer_tflite_model=true",
      "--enable_batching",
      "--batching_parameters_file=/batching.config",
      "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
    ]
  )
  options = cli.server_options(args)
  assert options.rest_api_timeout_in_ms == 5000
  assert options.grpc_socket_path == "/tmp/tf-serving.sock"
  assert options.model_config_file_poll_wait_seconds == 1
  assert options.prefer_tflite_model and options.enable_batching
  assert options.grpc_options() == [
    ("grpc.max_connection_age_ms", 2000),
    ("grpc.lb_policy_name", "grpclb"),
  ]


@pytest.fixture(scope="module")
def half_plus_two_dir(tmp_path_factory) -> Path:
  base = tmp_path_factory.mktemp("half_plus_two")
  build_half_plus_two_tf1(base / "00000123")
  return base


@bundled_only
def test_unix_socket_prometheus_metrics_and_tflite_warning(half_plus_two_dir, tmp_path, caplog):
  socket_dir = tempfile.mkdtemp(prefix="tfs-", dir="/tmp")  # a short path: sun_path is 108 bytes
  socket_path = os.path.join(socket_dir, "grpc.sock")
  monitoring = tmp_path / "monitoring_config.txt"
  monitoring.write_text(
    'prometheus_config: { enable: true, path: "/monitoring/prometheus/metrics" }'
  )
  options = ServerOptions(
    port=0,
    rest_api_port=free_port(),
    model_name="default",
    model_base_path=str(half_plus_two_dir),
    grpc_socket_path=socket_path,
    grpc_channel_arguments="grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
    monitoring_config_file=str(monitoring),
    prefer_tflite_model=True,
  )
  try:
    with ModelServer(options) as server:
      assert "no TensorFlow Lite runtime" in caplog.text
      with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request("default", [2.0]), 20)
      assert response.outputs["y"].float_val[0] == 3.0
      rest = f"127.0.0.1:{server.rest_port}"
      assert http(rest, "POST", "/v1/models/default:predict", {"instances": [2.0]})[0] == 200
      status, page = http(rest, "GET", "/monitoring/prometheus/metrics")
      assert status == 200 and isinstance(page, str)
      assert "# TYPE :tensorflow:serving:request_count counter" in page
      assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in page
      assert "# TYPE :tensorflow:serving:request_latency histogram" in page
  finally:
    shutil.rmtree(socket_dir, ignore_errors=True)


@bundled_only
def test_a_rest_request_past_its_timeout_is_deadline_exceeded():
  server = RestServer(("127.0.0.1", 0), SlowRestApi(3.0), 4, 1 << 20, timeout_seconds=0.2)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    started = time.monotonic()
    status, body = http(f"127.0.0.1:{server.server_address[1]}", "GET", "/v1/models/x")
    assert time.monotonic() - started < 2.5
    assert (status, body) == (504, {"error": "Timed out waiting for notification"})
  finally:
    server.shutdown()
    server.server_close()


def _config_text(name: str, base_path: Path) -> str:
  return (
    f'model_config_list: {{ config: {{ name: "{name}", base_path: "{base_path}", '
    'model_platform: "tensorflow" } }'
  )


@bundled_only
@pytest.mark.parametrize("poll_seconds", [0.3, 0])
def test_the_model_config_file_is_polled(half_plus_two_dir, tmp_path, poll_seconds):
  """With --model_config_file_poll_wait_seconds the server applies a changed
  config file; with 0 it read the file once."""
  config = tmp_path / "models.config"
  config.write_text(_config_text("half_plus_two", half_plus_two_dir))
  options = ServerOptions(
    port=0,
    rest_api_port=0,
    model_config_file=str(config),
    model_config_file_poll_wait_seconds=poll_seconds,
  )
  with ModelServer(options) as server:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
      grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    )
    assert (
      stub.Predict(predict_request("half_plus_two", [2.0]), 20).outputs["y"].float_val[0] == 3.0
    )
    config.write_text(_config_text("renamed", half_plus_two_dir))
    if poll_seconds:

      def answered():
        try:
          return stub.Predict(predict_request("renamed", [2.0]), 20).outputs["y"].float_val[0]
        except grpc.RpcError:
          return None

      assert wait_until(answered, 60, "the model of the new config") == 3.0
      assert server.core.model_names == ["renamed"]
    else:
      time.sleep(1)
      assert server.core.model_names == ["half_plus_two"]


@bundled_only
def test_a_config_file_that_does_not_parse_fails_in_tf_servings_words(tmp_path, capsys):
  config = tmp_path / "bad_model_config.txt"
  config.write_text("improperly formatted file")
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command"))
  args = parser.parse_args(
    ["serve", "--port=0", "--rest_api_port=0", f"--model_config_file={config}"]
  )
  assert args.func(args) == 2
  err = capsys.readouterr().err
  assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in err
  assert f"Invalid protobuf file: '{config}'" in err


def test_get_model_status_of_a_leading_zero_version(served):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = VERSIONS
  request.model_spec.version.value = 123
  (status,) = served.models.GetModelStatus(request, timeout=20).model_version_status
  assert (status.version, status.state, status.status.error_code) == (123, AVAILABLE, 0)
