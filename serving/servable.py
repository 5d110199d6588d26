"""One loaded model version: its signatures as ConcreteFunctions with their
input specs resolved once at load, so a request only checks and calls."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Dict

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from contract.signature_defs import read_signature_defs
from serving.batching import Batcher, BatchingOptions, Tensors
from serving.errors import from_tf_error, invalid_argument, not_found


@dataclasses.dataclass(frozen=True)
class InputSpec:
  name: str
  dtype: tf.DType
  numpy_kind: str
  shape: tuple | None

  def check(self, value: np.ndarray) -> None:
    if value.dtype.kind != self.numpy_kind or (
      self.numpy_kind != "O" and value.dtype != self.dtype.as_numpy_dtype
    ):
      raise invalid_argument(
        f"input '{self.name}' expects {self.dtype.name} but got {value.dtype.name}"
      )
    if self.shape is None:
      return
    if value.ndim != len(self.shape) or any(
      want is not None and want != got for want, got in zip(self.shape, value.shape)
    ):
      shape = ["?" if d is None else d for d in self.shape]
      raise invalid_argument(
        f"input '{self.name}' expects shape {shape} but got {list(value.shape)}"
      )


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
      missing = sorted(self.input_specs.keys() - inputs.keys())
      extra = sorted(inputs.keys() - self.input_specs.keys())
      raise invalid_argument(
        f"signature '{self.key}' takes inputs {sorted(self.input_specs)}; "
        f"missing {missing}, unexpected {extra}"
      )
    for name, value in inputs.items():
      self.input_specs[name].check(value)

  def _run(self, inputs: Tensors) -> Tensors:
    try:
      outputs = self._function._call_flat(
        [tf.constant(inputs[name]) for name in self._flat_order], self._captured
      )
    except tf.errors.OpError as error:
      raise from_tf_error(error) from None
    except (TypeError, ValueError) as error:
      raise invalid_argument(str(error)) from None
    return {k: v.numpy() for k, v in outputs.items()}


class Servable:
  """A model version loaded from `<base_path>/<version>`."""

  def __init__(self, name: str, version: int, path: Path, loaded, signatures: Dict[str, Signature]):
    self.name = name
    self.version = version
    self.path = path
    self._loaded = loaded  # owns the variables the signatures read
    self.signatures = signatures

  @classmethod
  def load(
    cls, name: str, version: int, path: str | os.PathLike, batching: BatchingOptions | None = None
  ) -> Servable:
    signature_defs = read_signature_defs(path)
    loaded = tf.saved_model.load(str(path), tags=["serve"])
    signatures = {
      key: Signature(key, function, signature_defs[key], batching)
      for key, function in loaded.signatures.items()
    }
    return cls(name, version, Path(path), loaded, signatures)

  def signature(self, key: str) -> Signature:
    try:
      return self.signatures[key]
    except KeyError:
      raise not_found(
        f"Serving signature key \"{key}\" not found in model '{self.name}' version {self.version}"
      ) from None
