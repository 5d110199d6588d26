"""TensorProto <-> numpy conversion with fast paths for the dtypes ranking
models exchange (strings, floats, ints); anything else goes through
TensorFlow's own conversion. Every malformed proto becomes INVALID_ARGUMENT."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import invalid_argument

_NUMPY_BY_DTYPE = {
  types_pb2.DT_FLOAT: np.float32,
  types_pb2.DT_DOUBLE: np.float64,
  types_pb2.DT_INT32: np.int32,
  types_pb2.DT_INT64: np.int64,
}
_REPEATED_FIELD_BY_DTYPE = {
  types_pb2.DT_FLOAT: "float_val",
  types_pb2.DT_DOUBLE: "double_val",
  types_pb2.DT_INT32: "int_val",
  types_pb2.DT_INT64: "int64_val",
}
_DTYPE_BY_NUMPY = {np.dtype(v): k for k, v in _NUMPY_BY_DTYPE.items()}


def proto_shape(proto: tensor_pb2.TensorProto) -> tuple:
  if proto.tensor_shape.unknown_rank:
    raise invalid_argument("a request tensor must have a known shape")
  dims = tuple(d.size for d in proto.tensor_shape.dim)
  if any(d < 0 for d in dims):
    raise invalid_argument(f"a request tensor has a negative dimension: {dims}")
  return dims


def _checked_count(values_count: int, shape: tuple, what: str) -> None:
  expected = math.prod(shape)
  if values_count != expected:
    raise invalid_argument(
      f"{what}: shape {list(shape)} needs {expected} values, got {values_count}"
    )


def _strings(proto: tensor_pb2.TensorProto, shape: tuple) -> np.ndarray:
  values = proto.string_val
  _checked_count(len(values), shape, "DT_STRING tensor")
  array = np.empty(len(values), dtype=object)
  array[:] = list(values)
  return array.reshape(shape)


def _numbers(proto: tensor_pb2.TensorProto, shape: tuple) -> np.ndarray:
  np_dtype = _NUMPY_BY_DTYPE[proto.dtype]
  if proto.tensor_content:
    itemsize = np.dtype(np_dtype).itemsize
    if len(proto.tensor_content) % itemsize:
      raise invalid_argument("tensor_content is not a whole number of elements")
    _checked_count(len(proto.tensor_content) // itemsize, shape, "tensor_content")
    return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
  values = getattr(proto, _REPEATED_FIELD_BY_DTYPE[proto.dtype])
  _checked_count(len(values), shape, types_pb2.DataType.Name(proto.dtype))
  return np.array(values, dtype=np_dtype).reshape(shape)


def _generic(proto: tensor_pb2.TensorProto, shape: tuple) -> np.ndarray:
  # make_ndarray repeats a lone value over the whole shape: a tiny message
  # claiming a huge shape must be refused before it allocates. Every dtype
  # spends at least half a byte of the message per value.
  expected = math.prod(shape)
  if expected > 2 * proto.ByteSize() + 1:
    raise invalid_argument(
      f"tensor values do not fill shape {list(shape)}: {expected} values cannot fit "
      f"in a {proto.ByteSize()}-byte TensorProto"
    )
  try:
    array = tf.make_ndarray(proto)
  except (TypeError, ValueError, tf.errors.OpError) as error:
    raise invalid_argument(f"cannot read request tensor: {error}") from None
  if array.shape != shape:
    raise invalid_argument(f"tensor values do not fill shape {list(shape)}")
  return array


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
  """The numpy value of a request tensor; INVALID_ARGUMENT for anything the
  request's bytes get wrong (an unknown dtype, more dimensions than numpy
  takes, a shape too large to allocate, ...)."""
  try:
    return _to_ndarray(proto)
  except (KeyError, TypeError, ValueError, OverflowError, MemoryError) as error:
    dtype = types_pb2.DataType.Name(proto.dtype) if proto.dtype in _DTYPE_NAMES else proto.dtype
    raise invalid_argument(
      f"cannot read request tensor of dtype {dtype}: {type(error).__name__}: {error}"
    ) from None


_DTYPE_NAMES = set(types_pb2.DataType.values())


def _to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
  shape = proto_shape(proto)
  if proto.dtype == types_pb2.DT_STRING:
    return _strings(proto, shape)
  if proto.dtype in _NUMPY_BY_DTYPE:
    return _numbers(proto, shape)
  if proto.dtype == types_pb2.DT_INVALID:
    raise invalid_argument("a request tensor has no dtype")
  return _generic(proto, shape)


def fill_proto(array: np.ndarray, proto: tensor_pb2.TensorProto, as_content: bool = True) -> None:
  """Writes `array` into the (empty) response tensor `proto`: as packed
  tensor_content, or (`as_content` False) in the typed value fields
  (float_val, int64_val, ...) as TF Serving's Predict does by default."""
  # Adding dims in place costs half of building and copying a shape proto.
  for size in array.shape:
    proto.tensor_shape.dim.add().size = size
  if array.dtype == object or array.dtype.kind in "SU":
    proto.dtype = types_pb2.DT_STRING
    proto.string_val.extend(_as_bytes(v) for v in array.ravel())
    return
  dtype = _DTYPE_BY_NUMPY.get(array.dtype)
  if dtype is None:
    generic = tf.make_tensor_proto(array)
    if not as_content:
      generic = tensor_util_field_proto(array, generic)
    proto.CopyFrom(generic)
    return
  proto.dtype = dtype
  if as_content:
    proto.tensor_content = array.tobytes()  # C order whatever the array's layout
  else:
    getattr(proto, _REPEATED_FIELD_BY_DTYPE[dtype]).extend(array.ravel().tolist())


def tensor_util_field_proto(
  array: np.ndarray, proto: tensor_pb2.TensorProto
) -> tensor_pb2.TensorProto:
  """`proto` (from make_tensor_proto) with its values in the typed field of
  its dtype where TensorProto has one, instead of tensor_content."""
  field = _FIELD_BY_KIND.get(array.dtype.kind)
  if array.dtype.kind == "u" and array.dtype.itemsize > 2:
    field = f"uint{array.dtype.itemsize * 8}_val"
  if field is None or not proto.tensor_content or array.dtype == np.float16:
    return proto
  proto.ClearField("tensor_content")
  getattr(proto, field).extend(array.ravel().tolist())
  return proto


# The typed value fields of the dtypes without a fast path (int8/16, uint8/16
# share int_val; bool has bool_val).
_FIELD_BY_KIND = {"b": "bool_val", "i": "int_val", "u": "int_val"}


def _as_bytes(value) -> bytes:
  return value.encode() if isinstance(value, str) else bytes(value)
