"""TF Serving's REST JSON formats: request values to numpy by the signature's
input specs, outputs to `predictions`/`outputs`, and tf.Examples for
`:classify`/`:regress` (`{"b64": ...}` marks bytes throughout)."""

from __future__ import annotations

import base64
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import tensorflow as tf

from serving.constants import B64_KEY, BYTES_OUTPUT_SUFFIX
from serving.errors import invalid_argument
from serving.servable import InputSpec, Signature

Tensors = Dict[str, np.ndarray]


def _b64(value: Mapping[str, Any]) -> bytes:
  if set(value) != {B64_KEY} or not isinstance(value[B64_KEY], str):
    raise invalid_argument(f'an object value must be {{"{B64_KEY}": "<base64>"}}')
  try:
    return base64.b64decode(value[B64_KEY], validate=True)
  except ValueError as error:  # binascii.Error, or a non-ASCII string
    raise invalid_argument(f"invalid base64: {error}") from None


def _flatten(value: Any, leaves: List[Any]) -> Tuple[int, ...]:
  """Appends the leaves of a nested list to `leaves`; returns its shape and
  refuses ragged nesting."""
  if not isinstance(value, list):
    leaves.append(value)
    return ()
  shapes = {_flatten(item, leaves) for item in value}
  if len(shapes) > 1:
    raise invalid_argument("a JSON tensor must not be ragged: its lists differ in length")
  inner = shapes.pop() if shapes else ()
  return (len(value),) + inner


def _string_leaf(value: Any, name: str) -> bytes:
  if isinstance(value, str):
    return value.encode()
  if isinstance(value, dict):
    return _b64(value)
  raise invalid_argument(f"input '{name}' expects strings, got {type(value).__name__}")


def _number_leaf(value: Any, spec: InputSpec) -> Any:
  if isinstance(value, bool) and spec.numpy_kind != "b":
    raise invalid_argument(f"input '{spec.name}' expects {spec.dtype.name}, got a boolean")
  if not isinstance(value, (int, float)):
    raise invalid_argument(
      f"input '{spec.name}' expects {spec.dtype.name}, got {type(value).__name__}"
    )
  if spec.numpy_kind in "iu" and isinstance(value, float):
    raise invalid_argument(f"input '{spec.name}' expects {spec.dtype.name}, got {value}")
  return value


def to_array(value: Any, spec: InputSpec) -> np.ndarray:
  """A JSON value as the numpy array for one signature input."""
  leaves: List[Any] = []
  try:
    shape = _flatten(value, leaves)
  except RecursionError:
    raise invalid_argument(f"input '{spec.name}' is nested too deeply") from None
  if spec.numpy_kind == "O":
    array = np.empty(len(leaves), dtype=object)
    array[:] = [_string_leaf(v, spec.name) for v in leaves]
    return array.reshape(shape)
  values = [_number_leaf(v, spec) for v in leaves]
  try:
    return np.array(values, dtype=spec.dtype.as_numpy_dtype).reshape(shape)
  except OverflowError as error:
    raise invalid_argument(f"input '{spec.name}': {error}") from None


def row_inputs(instances: Any, signature: Signature) -> Tensors:
  """The `instances` (row) format: a list of objects keyed by input name, or
  of plain values when the signature has a single input."""
  if not isinstance(instances, list) or not instances:
    raise invalid_argument("'instances' must be a non-empty list")
  specs = signature.input_specs
  named = all(isinstance(row, dict) and B64_KEY not in row for row in instances)
  if not named:
    if len(specs) != 1:
      raise invalid_argument(
        f"signature '{signature.key}' has inputs {sorted(specs)}: "
        "each instance must be an object keyed by input name"
      )
    (spec,) = specs.values()
    return {spec.name: to_array(instances, spec)}
  columns: Dict[str, List[Any]] = {}
  for row in instances:
    if row.keys() != specs.keys():
      raise invalid_argument(
        f"every instance must have exactly the inputs {sorted(specs)}; got {sorted(row)}"
      )
    for name, value in row.items():
      columns.setdefault(name, []).append(value)
  return {name: to_array(values, specs[name]) for name, values in columns.items()}


def columnar_inputs(inputs: Any, signature: Signature) -> Tensors:
  """The `inputs` (columnar) format: an object keyed by input name, or a
  plain value when the signature has a single input."""
  specs = signature.input_specs
  if isinstance(inputs, dict) and B64_KEY not in inputs:
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
      raise invalid_argument(f"unknown input(s) {unknown}; inputs: {sorted(specs)}")
    return {name: to_array(value, specs[name]) for name, value in inputs.items()}
  if len(specs) != 1:
    raise invalid_argument(
      f"signature '{signature.key}' has inputs {sorted(specs)}: "
      "'inputs' must be an object keyed by input name"
    )
  (spec,) = specs.values()
  return {spec.name: to_array(inputs, spec)}


def _json_value(array: np.ndarray, name: str) -> Any:
  if array.dtype != object:
    return array.tolist()
  if name.endswith(BYTES_OUTPUT_SUFFIX):
    encode = lambda v: {B64_KEY: base64.b64encode(v).decode()}
  else:
    encode = lambda v: v.decode("utf-8", "replace")
  return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()


def row_outputs(outputs: Tensors) -> List[Any]:
  """`predictions`: one entry per row; a value, or an object when there are
  several outputs."""
  if len(outputs) == 1:
    ((name, array),) = outputs.items()
    return _json_value(array, name)
  sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
  if len(sizes) != 1 or None in sizes:
    raise invalid_argument("outputs differ in batch size; use the columnar 'inputs' format")
  columns = {name: _json_value(array, name) for name, array in outputs.items()}
  return [{name: column[i] for name, column in columns.items()} for i in range(sizes.pop())]


def columnar_outputs(outputs: Tensors) -> Any:
  if len(outputs) == 1:
    ((name, array),) = outputs.items()
    return _json_value(array, name)
  return {name: _json_value(array, name) for name, array in outputs.items()}


def _feature(value: Any, name: str) -> tf.train.Feature:
  values = value if isinstance(value, list) else [value]
  if not values:
    return tf.train.Feature()
  if all(isinstance(v, (str, dict)) for v in values):
    return tf.train.Feature(
      bytes_list=tf.train.BytesList(
        value=[v.encode() if isinstance(v, str) else _b64(v) for v in values]
      )
    )
  if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
    raise invalid_argument(f"feature '{name}' mixes types or holds a non-number, non-string")
  if all(isinstance(v, int) for v in values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def example(features: Any) -> tf.train.Example:
  """A JSON object as a tf.Example: integers become int64_list, other numbers
  float_list, strings and b64 objects bytes_list."""
  if not isinstance(features, dict):
    raise invalid_argument("every example must be an object of feature values")
  try:
    return tf.train.Example(
      features=tf.train.Features(feature={name: _feature(v, name) for name, v in features.items()})
    )
  except ValueError as error:  # out-of-range int64
    raise invalid_argument(str(error)) from None
