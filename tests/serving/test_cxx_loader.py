"""The exported SavedModels load in TensorFlow's C++ runtime, the one TF Serving
embeds, without Docker: tests/serving/cxx/saved_model_check.cc is compiled
against the tensorflow wheel's headers and libraries, loads an export with
`tensorflow::LoadSavedModel` (tag `serve`, as TF Serving's SavedModel source
does), runs a signature on serialized tf.Examples and prints its outputs, which
must equal the in-process outputs and, for `serving_default`, mtlrank's server's.

Every signature with a single string input is checked (`serving_default`,
`classification` or `regression`, `transform_features`, `evaluation`); the
served ones get label-free requests, the others logged examples.

Models: the census model the session's first pipeline run pushed
(`first_census_run`, a pipeline test); a synthetic-spec model exported by
`models.export.export_serving_model` over a TFT Beam analysis of a few rows
(untrained weights: there is no session fixture of a synthetic run that pushes,
and loadability does not depend on training); the conformance tests' fake
ranking model (tests/serving/fakes.py).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import pytest
import tensorflow as tf

from contract import EVAL_SIGNATURE, SERVING_SIGNATURE, TRANSFORM_SIGNATURE
from serving.client import GrpcClient
from serving.config import ServerOptions
from serving.examples import serialize_rows
from serving.server import ModelServer
from tests.serving.fakes import SYNTHETIC_COLUMNS, build_ranking_model, random_rows

# Compiling against TensorFlow's headers takes 30-90 s, the synthetic export
# runs a TFT Beam analysis: left out of `make test-fast`.
pytestmark = pytest.mark.slow

SOURCE = Path(__file__).resolve().parent / "cxx" / "saved_model_check.cc"
# Signatures that read logged examples (labels, position) rather than requests.
LOGGED_SIGNATURES = (TRANSFORM_SIGNATURE, EVAL_SIGNATURE)
Outputs = Dict[str, np.ndarray]


def compile_command(source: Path, binary: Path) -> List[str]:
  """g++ against the wheel: its compile flags (headers, ABI, C++17, Eigen
  alignment), libtensorflow_framework (the SavedModel loader, sessions' API) and
  libtensorflow_cc, linked even though no symbol of it is referenced: it
  registers the DirectSession factory and the kernels."""
  lib = tf.sysconfig.get_lib()
  return [
    "g++",
    *tf.sysconfig.get_compile_flags(),
    "-O1",
    str(source),
    "-o",
    str(binary),
    *tf.sysconfig.get_link_flags(),
    "-Wl,--no-as-needed",
    "-l:libtensorflow_cc.so.2",
    "-Wl,--as-needed",
    f"-Wl,-rpath,{lib}",
  ]


@pytest.fixture(scope="session")
def saved_model_check(tmp_path_factory) -> Path:
  """The compiled checker (30-90 s of compiling TensorFlow headers)."""
  if shutil.which("g++") is None:
    pytest.skip("g++ is not installed: cannot build the C++ SavedModel loader check")
  lib = Path(tf.sysconfig.get_lib())
  for name in ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2"):
    assert (lib / name).exists(), f"the tensorflow wheel has no {name} in {lib}"
  binary = tmp_path_factory.mktemp("cxx") / "saved_model_check"
  command = compile_command(SOURCE, binary)
  started = time.monotonic()
  result = subprocess.run(command, capture_output=True, text=True)
  assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr[-5000:]}"
  print(f"compiled {binary.name} in {time.monotonic() - started:.1f}s")
  return binary


def run_check(
  binary: Path, export_dir: str | os.PathLike, examples: Sequence[bytes], signature: str
) -> Outputs:
  """The outputs the C++ loader computes, flattened."""
  with tempfile.NamedTemporaryFile("w", suffix=".b64", delete=False) as file:
    file.writelines(base64.b64encode(e).decode() + "\n" for e in examples)
  try:
    result = subprocess.run(
      [str(binary), str(export_dir), file.name, signature],
      capture_output=True,
      text=True,
      timeout=300,
    )
  finally:
    os.unlink(file.name)
  assert result.returncode == 0, f"{signature}: exit {result.returncode}\n{result.stderr[-5000:]}"
  return {name: np.asarray(values) for name, values in json.loads(result.stdout).items()}


def string_input_signatures(loaded) -> Dict[str, str]:
  """signature -> its input's name, for each signature with one string input."""
  found = {}
  for name, function in loaded.signatures.items():
    inputs = function.structured_input_signature[1]
    if len(inputs) == 1 and next(iter(inputs.values())).dtype == tf.string:
      found[name] = next(iter(inputs))
  return found


def in_process(function, input_name: str, examples: Sequence[bytes]) -> Outputs:
  outputs = {}
  for name, tensor in function(**{input_name: tf.constant(examples)}).items():
    value = tensor.numpy().reshape(-1)
    if value.dtype == object:
      value = np.array([v.decode("latin-1") for v in value])
    outputs[name] = value
  return outputs


def assert_same(actual: Outputs, expected: Outputs, what: str) -> None:
  assert sorted(actual) == sorted(expected), what
  for name, values in expected.items():
    if values.dtype.kind == "U":
      np.testing.assert_array_equal(actual[name], values, err_msg=f"{what}: {name}")
    else:
      np.testing.assert_allclose(
        actual[name].astype(np.float64),
        values.astype(np.float64),
        rtol=1e-5,
        err_msg=f"{what}: {name}",
      )


def served(model_base_path: Path, model_name: str, requests: Sequence[bytes]) -> Outputs:
  """`serving_default` as mtlrank's server answers it over gRPC Predict."""
  options = ServerOptions(
    port=0,
    rest_api_port=0,
    model_name=model_name,
    model_base_path=str(model_base_path),
    file_system_poll_wait_seconds=0,
  )
  with ModelServer(options) as server:
    client = GrpcClient(f"127.0.0.1:{server.grpc_port}", model_name, {})
    try:
      return {k: v.reshape(-1) for k, v in client.predict_examples(requests).items()}
    finally:
      client.close()


def check_model(
  binary: Path,
  export_dir: Path,
  model_name: str,
  requests: Sequence[bytes],
  logged: Sequence[bytes],
) -> List[str]:
  """Runs every single-string-input signature through the C++ loader and
  compares it with the in-process call and, for `serving_default`, with the
  server. Returns the signatures checked."""
  loaded = tf.saved_model.load(str(export_dir))
  signatures = string_input_signatures(loaded)
  assert SERVING_SIGNATURE in signatures
  for signature, input_name in sorted(signatures.items()):
    examples = logged if signature in LOGGED_SIGNATURES else requests
    expected = in_process(loaded.signatures[signature], input_name, examples)
    actual = run_check(binary, export_dir, examples, signature)
    assert all(v.shape[0] % len(examples) == 0 for v in actual.values()), signature
    assert_same(actual, expected, f"C++ vs in-process, {signature}")
  from_server = served(export_dir.parent, model_name, requests)
  assert_same(
    run_check(binary, export_dir, requests, SERVING_SIGNATURE),
    from_server,
    "C++ vs mtlrank's server, serving_default",
  )
  return sorted(signatures)


def test_checker_reports_a_missing_signature_and_a_bad_model_dir(saved_model_check, tmp_path):
  export_dir = build_ranking_model(tmp_path / "rank" / "1", "rank", seed=1)
  examples = tmp_path / "examples.b64"
  (request,) = serialize_rows(random_rows(SYNTHETIC_COLUMNS, 1), SYNTHETIC_COLUMNS)
  examples.write_text(base64.b64encode(request).decode() + "\n")
  for args, message in (
    ([str(export_dir), str(examples), "no_such_signature"], "no SignatureDef no_such_signature"),
    ([str(tmp_path / "nothing"), str(examples)], "LoadSavedModel"),
  ):
    result = subprocess.run([str(saved_model_check), *args], capture_output=True, text=True)
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_fake_ranking_model_loads_in_the_cxx_runtime(saved_model_check, tmp_path):
  export_dir = build_ranking_model(tmp_path / "rank" / "1", "rank", seed=1)
  requests = serialize_rows(random_rows(SYNTHETIC_COLUMNS, 8, seed=3), SYNTHETIC_COLUMNS)
  checked = check_model(saved_model_check, export_dir, "rank", requests, requests)
  assert checked == ["classification", "regression", "serving_default", "transform_features"]


def _synthetic_rows(spec, n: int) -> List[Dict[str, object]]:
  """Plausible raw rows of every column of the synthetic spec."""
  rng = np.random.default_rng(5)
  values = {
    "string": lambda column, i: f"{column[:4]}{rng.integers(0, 7 if column != 'device' else 2)}",
    "int": lambda column, i: int(rng.integers(1, 11 if column == "position" else 24)),
    "float": lambda column, i: float(rng.uniform(0, 100)),
  }
  rows = []
  for i in range(n):
    row = {column: values[dtype](column, i) for column, dtype in spec.raw_columns.items()}
    click = int(rng.random() < 0.3)
    row.update(
      click=click,
      conversion=click * int(rng.random() < 0.3),
      dwell_seconds=click * float(rng.uniform(1, 100)),
      p_click=0.3,
      p_conv_given_click=0.1,
    )
    rows.append(row)
  return rows


@pytest.fixture(scope="module")
def synthetic_export(tmp_path_factory):
  """(spec, export dir, rows): the synthetic spec's model, untrained, exported
  with its TFT graph by the pipeline's own export code."""
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import metadata_io

  from models import architectures, export
  from models.features import SPEC_CONFIG_KEY, preprocessing_fn, vocab_sizes
  from models.spec import load_spec
  from pipeline.schema import schema_from_spec

  spec = load_spec("synthetic")
  rows = _synthetic_rows(spec, 120)
  raw_metadata = tft.DatasetMetadata(schema_from_spec(spec))
  work = tmp_path_factory.mktemp("synthetic")
  with tft_beam.Context(temp_dir=str(work / "tmp"), force_tf_compat_v1=False):
    transform_fn = (
      [{k: [v] for k, v in row.items()} for row in rows],
      raw_metadata,
    ) | tft_beam.AnalyzeDataset(
      lambda inputs: preprocessing_fn(inputs, {SPEC_CONFIG_KEY: spec.to_json()})
    )
    _ = transform_fn | tft_beam.WriteTransformFn(str(work / "transform"))
  metadata_io.write_metadata(
    raw_metadata, str(work / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR)
  )
  tft_output = tft.TFTransformOutput(str(work / "transform"))
  model = architectures.build_model(spec, vocab_sizes(spec, tft_output))
  export_dir = work / spec.name / "1"
  export.export_serving_model(model, spec, tft_output, str(export_dir))
  return spec, export_dir, rows


def test_synthetic_spec_model_loads_in_the_cxx_runtime(saved_model_check, synthetic_export):
  from models.features import serving_raw_columns

  spec, export_dir, rows = synthetic_export
  requests = serialize_rows(rows[:16], serving_raw_columns(spec))
  logged = serialize_rows(rows[:16], spec.raw_columns)
  checked = check_model(saved_model_check, export_dir, spec.name, requests, logged)
  assert checked == ["classification", "evaluation", "serving_default", "transform_features"]


def _census_examples(paths, count: int) -> List[bytes]:
  from pipeline.data import split_files

  return [
    record
    for record in tf.data.TFRecordDataset(
      [str(f) for f in split_files(paths.data_dir, 1, "eval")], compression_type="GZIP"
    )
    .take(count)
    .as_numpy_iterator()
  ]


def _without(records: Sequence[bytes], columns: Mapping[str, object]) -> List[bytes]:
  stripped = []
  for record in records:
    example = tf.train.Example.FromString(record)
    for column in columns:
      if column in example.features.feature:
        del example.features.feature[column]
    stripped.append(example.SerializeToString())
  return stripped


@pytest.mark.pipeline
def test_pushed_census_model_loads_in_the_cxx_runtime(
  saved_model_check, first_census_run, small_census_spec
):
  from models.features import serving_raw_columns

  paths, summary = first_census_run
  assert summary.pushed_model_dir is not None
  export_dir = Path(summary.pushed_model_dir)
  logged = _census_examples(paths, 16)
  served_columns = serving_raw_columns(small_census_spec)
  requests = _without(
    logged, {c: None for c in small_census_spec.raw_columns if c not in served_columns}
  )
  checked = check_model(saved_model_check, export_dir, small_census_spec.name, requests, logged)
  assert SERVING_SIGNATURE in checked
