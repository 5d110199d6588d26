"""Conversions at the edges: TensorProtos, REST JSON, tf.Examples from raw
rows, signature method names and warm-up files."""

from __future__ import annotations

import base64

import grpc
import numpy as np
import pytest
import tensorflow as tf

from contract.signature_defs import read_signature_defs, set_signature_method_names
from contract.warmup import read_warmup_requests, write_warmup_requests
from serving import rest_json
from serving.errors import ServingError
from serving.examples import make_example
from serving.servable import InputSpec, Servable
from serving.tensors import fill_proto, to_ndarray
from tests.serving.fakes import CLASSIFY_SIGNATURE, build_ranking_model


@pytest.mark.parametrize(
  "value",
  [
    np.array([b"a", b"bc"], dtype=object),
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.arange(4, dtype=np.int64),
    np.array([1.5, 2.5], dtype=np.float64),
    np.array([True, False]),
  ],
)
def test_tensor_protos_round_trip(value):
  proto = tf.make_tensor_proto(value)
  array = to_ndarray(proto)
  np.testing.assert_array_equal(array, tf.make_ndarray(proto))
  back = type(proto)()
  fill_proto(array, back)
  np.testing.assert_array_equal(tf.make_ndarray(back), value)


def test_a_shape_its_values_do_not_fill_is_invalid():
  proto = tf.make_tensor_proto(np.ones(3, np.float32))
  proto.tensor_shape.dim[0].size = 1000
  with pytest.raises(ServingError) as error:
    to_ndarray(proto)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_rest_json_values():
  strings = InputSpec("examples", tf.string, "O", (None,))
  floats = InputSpec("x", tf.float32, "f", (None, 2))
  ints = InputSpec("n", tf.int64, "i", (None,))
  encoded = base64.b64encode(b"\x00\xff").decode()
  assert list(rest_json.to_array(["a", {"b64": encoded}], strings)) == [b"a", b"\x00\xff"]
  assert rest_json.to_array([[1, 2.5]], floats).dtype == np.float32
  for bad, spec in ([1.5], ints), ([[1], [2, 3]], floats), ([1], strings), ([True], ints):
    with pytest.raises(ServingError):
      rest_json.to_array(bad, spec)


def test_rest_json_outputs():
  outputs = {
    "score": np.array([0.5, 0.25], np.float32),
    "id_bytes": np.array([b"\x01", b"\x02"], dtype=object),
  }
  rows = rest_json.row_outputs(outputs)
  assert rows[0] == {"score": 0.5, "id_bytes": {"b64": base64.b64encode(b"\x01").decode()}}
  assert rest_json.columnar_outputs({"score": outputs["score"]}) == [0.5, 0.25]


def test_rest_json_examples_follow_tf_serving_typing():
  example = rest_json.example({"n": 3, "x": [1, 2.5], "s": "a", "b": {"b64": "AP8="}})
  features = example.features.feature
  assert list(features["n"].int64_list.value) == [3]
  assert list(features["x"].float_list.value) == [1.0, 2.5]
  assert list(features["s"].bytes_list.value) == [b"a"]
  assert list(features["b"].bytes_list.value) == [b"\x00\xff"]


def test_examples_from_raw_rows():
  columns = {"user": "string", "hour": "int", "price": "float", "absent": "float"}
  example = make_example(
    {"user": 42, "hour": "7", "price": "1.5", "absent": "", "other": 1}, columns
  )
  features = example.features.feature
  assert features["user"].bytes_list.value == [b"42"]
  assert features["hour"].int64_list.value == [7]
  assert features["price"].float_list.value == [1.5]
  assert "absent" not in features and "other" not in features
  with pytest.raises(ValueError, match="hour"):
    make_example({"hour": "seven"}, columns)


def test_set_signature_method_names_and_warm_up_file(tmp_path):
  export_dir = build_ranking_model(tmp_path / "model", "rank")
  assert read_signature_defs(export_dir)[CLASSIFY_SIGNATURE].method_name == (
    "tensorflow/serving/classify"
  )
  set_signature_method_names(export_dir, {CLASSIFY_SIGNATURE: "tensorflow/serving/predict"})
  assert read_signature_defs(export_dir)[CLASSIFY_SIGNATURE].method_name == (
    "tensorflow/serving/predict"
  )
  with pytest.raises(KeyError, match="nope"):
    set_signature_method_names(export_dir, {"nope": "tensorflow/serving/regress"})
  write_warmup_requests(export_dir, [b"one", b"two"], "rank", "transform_features")
  logs = read_warmup_requests(export_dir)
  assert len(logs) == 2
  request = logs[1].predict_log.request
  assert (request.model_spec.name, request.model_spec.signature_name) == (
    "rank",
    "transform_features",
  )
  assert list(request.inputs["examples"].string_val) == [b"two"]


def test_signatures_with_several_inputs_get_each_input_by_name(tmp_path):
  class TwoInputs(tf.Module):
    @tf.function(
      input_signature=[
        tf.TensorSpec([None], tf.float32, name="b"),
        tf.TensorSpec([None], tf.float32, name="a"),
      ]
    )
    def difference(self, b, a):
      return {"b_minus_a": b - a}

  module = TwoInputs()
  tf.saved_model.save(
    module, str(tmp_path / "1"), signatures={"serving_default": module.difference}
  )
  signature = Servable.load("m", 1, tmp_path / "1").signature("serving_default")
  outputs = signature({"a": np.array([1.0], np.float32), "b": np.array([10.0], np.float32)})
  np.testing.assert_array_equal(outputs["b_minus_a"], [9.0])


def test_the_fast_flat_call_returns_what_the_loaded_function_returns(
  tmp_path, examples, monkeypatch
):
  """Signature._run skips the loader's per-call resolving of captured
  variables; it must still read the loaded variables."""
  export_dir = build_ranking_model(tmp_path / "model", "rank")
  servable = Servable.load("m", 1, export_dir)  # owns the variables
  signature = servable.signature("serving_default")
  function = signature._function
  slow_calls = []
  call_flat = function._call_flat
  monkeypatch.setattr(
    function, "_call_flat", lambda *args: slow_calls.append(1) or call_flat(*args)
  )
  batch = np.array(examples[:3], dtype=object)
  fast = signature({"examples": batch})
  assert not slow_calls  # the fast path was taken
  normal = function(examples=tf.constant(batch))
  assert fast.keys() == normal.keys()
  for name, value in normal.items():
    np.testing.assert_array_equal(fast[name], value.numpy())
  with tf.GradientTape():  # under a tape the normal call is taken
    taped = signature({"examples": batch})
  assert slow_calls
  for name, value in normal.items():
    np.testing.assert_array_equal(taped[name], value.numpy())
