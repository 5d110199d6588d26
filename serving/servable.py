"""One loaded model version: its signatures as ConcreteFunctions with their
input specs resolved once at load, so a request only checks and calls."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable, Dict

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow.python.eager import record
from tensorflow.python.saved_model import load_v1_in_v2

from contract import SERVE_TAG
from contract.signature_defs import read_saved_model, serving_meta_graph
from serving.batching import Batcher, BatchingOptions, Tensors
from serving.config import RequestOptions
from serving.errors import ServingError, from_tf_error, invalid_argument


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What a request value of one input must be. Only the dtype is checked:
  TF Serving hands a tensor of any shape to the session and lets TensorFlow
  refuse what it cannot run (signatures often declare shapes the graph does
  not need, e.g. [None, 1] for an input sent as [1])."""

  name: str
  dtype: tf.DType
  numpy_kind: str
  shape: tuple | None  # as the signature declares it; never enforced

  def check(self, value: np.ndarray) -> None:
    if value.dtype.kind != self.numpy_kind or (
      self.numpy_kind != "O" and value.dtype != self.dtype.as_numpy_dtype
    ):
      raise invalid_argument(
        f"input '{self.name}' expects {self.dtype.name} but got {_dtype_name(value)}"
      )


def _dtype_name(value: np.ndarray) -> str:
  return "string" if value.dtype.kind in "OSU" else value.dtype.name


def _input_spec(name: str, spec: tf.TensorSpec) -> InputSpec:
  kind = "O" if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype).kind
  shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
  return InputSpec(name, spec.dtype, kind, shape)


class Signature:
  """A signature of a loaded version: validates and runs requests."""

  def __init__(
    self,
    key: str,
    function,
    signature_def: meta_graph_pb2.SignatureDef,
    batching: BatchingOptions | None,
  ):
    self.key = key
    self.method_name = signature_def.method_name
    self.signature_def = signature_def
    self._function = function
    self.input_specs = {
      name: _input_spec(name, spec) for name, spec in function.structured_input_signature[1].items()
    }
    # Calling with keywords re-binds the arguments in Python on every request
    # (a fifth of a millisecond); the flat call takes the inputs in the order
    # tf.nest flattens the keyword dict, i.e. sorted by name.
    self._flat_order = sorted(self.input_specs)
    self._captured = list(function.captured_inputs)
    self._call_flat = _flat_caller(function, self._captured)
    self.output_names = tuple(sorted(signature_def.outputs))
    self._call = Batcher(self._run, batching) if batching is not None else self._run

  @property
  def input_names(self) -> tuple:
    return tuple(sorted(self.input_specs))

  def __call__(self, inputs: Tensors) -> Tensors:
    """Runs the signature on numpy inputs; raises ServingError."""
    self._check(inputs)
    return self._call(inputs)

  def _check(self, inputs: Tensors) -> None:
    if inputs.keys() != self.input_specs.keys():
      # TF Serving's words (predict_util.cc VerifyRequestInputsSize).
      sent, wanted = sorted(inputs), sorted(self.input_specs)
      extra = sorted(inputs.keys() - self.input_specs.keys())
      missing = sorted(self.input_specs.keys() - inputs.keys())
      raise invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(wanted)} "
        f"len({{{','.join(sent)}}}) != len({{{','.join(wanted)}}}). "
        f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
      )
    for name, value in inputs.items():
      self.input_specs[name].check(value)

  def _run(self, inputs: Tensors) -> Tensors:
    try:
      outputs = self._call_flat([tf.constant(inputs[name]) for name in self._flat_order])
    except tf.errors.OpError as error:
      raise from_tf_error(error) from None
    except (TypeError, ValueError) as error:
      raise invalid_argument(str(error)) from None
    return {k: v.numpy() for k, v in outputs.items()}


def _flat_caller(function, captured: list) -> Callable[[list], dict]:
  """How to call `function` with flat tensor inputs and get its structured
  outputs. The SavedModel loader's `_WrapperFunction._call_flat` resolves each
  captured input for tf.distribute on every call, and ConcreteFunction's
  checks whether a gradient tape watches them; neither applies to a server
  calling eagerly outside any strategy, and together they cost a fifth of an
  unbatched call. So the traced function (the AtomicFunction) is called with
  the captured inputs (the loaded variables' handles) resolved once, here.
  Falls back to the normal call if TensorFlow's private API differs, and per
  call under a tape, a graph or a strategy."""
  atomic = getattr(function, "_inference_function", None)
  if atomic is None or not callable(getattr(atomic, "call_preflattened", None)):
    return lambda tensors: function._call_flat(tensors, captured)

  def call(tensors: list) -> dict:
    if record.could_possibly_record() or not tf.executing_eagerly() or tf.distribute.has_strategy():
      return function._call_flat(tensors, captured)
    return atomic.call_preflattened(tensors + captured)

  return call


# GraphDefs up to this producer version wrote an unknown shape as the scalar
# shape, in Placeholder nodes (TensorFlow reads them so: array_ops.cc) and in
# their SignatureDefs' TensorInfos (TF 1.0 wrote none).
LEGACY_SHAPE_PRODUCER = 21


def _is_legacy_scalar_placeholder(node) -> bool:
  # Reading a missing map key would add it: test membership first.
  if node.op != "Placeholder" or "shape" not in node.attr:
    return False
  shape = node.attr["shape"].shape
  return not shape.dim and not shape.unknown_rank


def _legacy_scalar_infos(meta_graph: meta_graph_pb2.MetaGraphDef) -> list:
  infos = [
    info
    for signature in meta_graph.signature_def.values()
    for info in (*signature.inputs.values(), *signature.outputs.values())
  ]
  return [i for i in infos if not i.tensor_shape.dim and not i.tensor_shape.unknown_rank]


def _has_legacy_shapes(meta_graph: meta_graph_pb2.MetaGraphDef) -> bool:
  return meta_graph.graph_def.versions.producer <= LEGACY_SHAPE_PRODUCER and bool(
    _legacy_scalar_infos(meta_graph)
    or any(_is_legacy_scalar_placeholder(node) for node in meta_graph.graph_def.node)
  )


class _LegacyGraphLoader(load_v1_in_v2._EagerSavedModelLoader):
  """TF2's loader of TF1 SavedModels, for graphs old enough that a scalar
  shape means "unknown". The loader copies each signature into a new graph
  and gives its tensors the shapes the SignatureDef declares: a placeholder or
  tensor of such a graph would become a real scalar there and break the ops
  it feeds (ParseExample needs a vector), so the copy is told the shape is
  unknown, as TF Serving's session (which feeds by tensor name) reads it."""

  def get_meta_graph_def_from_tags(self, tags):
    meta_graph = super().get_meta_graph_def_from_tags(tags)
    for node in meta_graph.graph_def.node:
      if _is_legacy_scalar_placeholder(node):
        node.attr["shape"].shape.unknown_rank = True
    for info in _legacy_scalar_infos(meta_graph):
      info.tensor_shape.unknown_rank = True
    return meta_graph


@functools.cache
def register_op_libraries() -> tuple:
  """Registers the custom op libraries TF Serving's model server links in
  (TF Text: tokenizers, normalisers, sentence breakers) so that a model using
  them loads here as it does there. Returns the libraries found; one that is
  not installed is skipped, and a model needing it fails to load naming the op."""
  found = []
  try:
    import tensorflow_text  # noqa: F401  (importing registers its kernels)

    found.append("tensorflow_text")
  except ImportError:
    pass
  return tuple(found)


def _load_saved_model(path: str, saved_model: saved_model_pb2.SavedModel):
  register_op_libraries()
  meta_graph = serving_meta_graph(saved_model)
  if not meta_graph.object_graph_def.nodes and _has_legacy_shapes(meta_graph):
    return _LegacyGraphLoader(path).load(tags=list(meta_graph.meta_info_def.tags))
  return tf.saved_model.load(path, tags=[SERVE_TAG])


class Servable:
  """A model version loaded from `<base_path>/<version>`."""

  def __init__(
    self,
    name: str,
    version: int,
    path: Path,
    loaded,
    signatures: Dict[str, Signature],
    options: RequestOptions = RequestOptions(),
  ):
    self.name = name
    self.version = version
    self.path = path
    self._loaded = loaded  # owns the variables the signatures read
    self.signatures = signatures
    self.options = options

  @classmethod
  def load(
    cls,
    name: str,
    version: int,
    path: str | os.PathLike,
    batching: BatchingOptions | None = None,
    options: RequestOptions = RequestOptions(),
  ) -> Servable:
    saved_model = read_saved_model(path)
    signature_defs = dict(serving_meta_graph(saved_model).signature_def)
    loaded = _load_saved_model(str(path), saved_model)
    signatures = {
      key: Signature(key, function, signature_defs[key], batching)
      for key, function in loaded.signatures.items()
    }
    return cls(name, version, Path(path), loaded, signatures, options)

  def signature(self, key: str) -> Signature:
    """The signature Predict names; FAILED_PRECONDITION as in TF Serving."""
    try:
      return self.signatures[key]
    except KeyError:
      raise ServingError(
        grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
      ) from None
