"""Vectorized `tf.train.Example` serialization from columns (numpy and
pyarrow compute kernels), shared by the data adapters' writer
(`pipeline.data.io`) and the files source's CSV executor
(`components.arrow_example_gen`).

Why not tfx_bsl's `RecordBatchToExamplesEncoder`: it is fast, but it emits the
`Features.feature` map in the iteration order of a C++ hash map, which changes
from one process to the next, so the same data would give different bytes
(and its records compress worse). `encode_examples` writes the map entries in
sorted key order (the canonical order protobuf's deterministic serialization
uses). Its output parses with `tf.io.parse_example` and
`tf.train.Example.FromString` (tests/data check both).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DTYPES = ("string", "int", "float")

ColumnValues = Union[np.ndarray, pa.Array, Sequence[Any]]

_BINARY = pa.binary()


# ----------------------------------------------------------------------------
# Vectorized tf.train.Example serialization.
# ----------------------------------------------------------------------------


def _varint_bytes(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _ragged_to_binary(lengths: np.ndarray, data: np.ndarray) -> pa.Array:
  offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
  np.cumsum(lengths, out=offsets[1:])
  return pa.Array.from_buffers(
    _BINARY,
    len(lengths),
    [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data, np.uint8))],
  )


def _varints(values: np.ndarray) -> pa.Array:
  """Protobuf base-128 varints of non-negative (or two's-complement int64)
  values, one binary element per value."""
  v = np.ascontiguousarray(np.asarray(values).astype(np.int64, copy=False)).view(np.uint64)
  if len(v) == 0 or v.max() < 128:  # the common case: one byte each
    return _ragged_to_binary(np.ones(len(v), dtype=np.int32), v.astype(np.uint8))
  nbytes = np.ones(len(v), dtype=np.int32)
  for k in range(1, 10):
    nbytes += v >= np.uint64(1 << (7 * k))
  width = int(nbytes.max())
  shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
  groups = ((v[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
  k = np.arange(width, dtype=np.int32)[None, :]
  groups |= ((k < nbytes[:, None] - 1) * 0x80).astype(np.uint8)
  return _ragged_to_binary(nbytes, groups[k < nbytes[:, None]])


def _join(*parts: Union[bytes, pa.Array]) -> pa.Array:
  args = [pa.scalar(p, _BINARY) if isinstance(p, bytes) else p for p in parts]
  return pc.binary_join_element_wise(*args, pa.scalar(b"", _BINARY))


def _length_delimited(tag: bytes, payload: pa.Array) -> pa.Array:
  """tag, varint(len(payload)), payload: a length-delimited protobuf field."""
  lengths = pc.binary_length(payload).to_numpy(zero_copy_only=False)
  return _join(tag, _varints(lengths), payload)


def _as_binary(values: ColumnValues) -> pa.Array:
  if isinstance(values, pa.ChunkedArray):
    values = values.combine_chunks()
  if not isinstance(values, pa.Array):
    values = pa.array(np.asarray(values, dtype=object))
  if (
    pa.types.is_string(values.type)
    or pa.types.is_large_string(values.type)
    or pa.types.is_large_binary(values.type)
  ):
    values = values.cast(_BINARY)
  if not pa.types.is_binary(values.type):
    raise TypeError(f"a string column must hold str or bytes, got {values.type}")
  return values


def _feature_entry(name: str, dtype: str, values: ColumnValues, n: int) -> pa.Array:
  """One `Features.feature` map entry (field 1 of Features) per row."""
  key = name.encode("utf-8")
  # map entry: key = 1 (string), value = 2 (Feature)
  head = b"\x0a" + _varint_bytes(len(key)) + key
  if dtype == "float":
    # Feature.float_list = 2; FloatList.value = 1, packed: one fixed32.
    f32 = np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1))
    _check_len(name, len(f32), n)
    inner = b"\x12\x06\x0a\x04"  # float_list, len 6, packed value, len 4
    entry_prefix = head + b"\x12" + bytes([len(inner) + 4]) + inner
    fixed = np.empty((n, len(entry_prefix) + 4), dtype=np.uint8)
    fixed[:, : len(entry_prefix)] = np.frombuffer(entry_prefix, np.uint8)
    fixed[:, len(entry_prefix) :] = f32.view("<u1").reshape(n, 4)
    entries = _ragged_to_binary(np.full(n, fixed.shape[1]), fixed.reshape(-1))
  elif dtype == "int":
    ints = np.asarray(values)
    if ints.dtype.kind not in "iub":
      raise TypeError(f"column {name!r}: an int column needs integer values, got {ints.dtype}")
    ints = ints.astype(np.int64).reshape(-1)
    _check_len(name, len(ints), n)
    low, high = int(ints.min()), int(ints.max())
    small_range = high - low < 65536
    values_to_encode = np.arange(low, high + 1, dtype=np.int64) if small_range else ints
    packed = _length_delimited(b"\x0a", _varints(values_to_encode))  # Int64List.value, packed
    feature = _length_delimited(b"\x1a", packed)  # Feature.int64_list = 3
    entries = _length_delimited(b"\x0a", _join(head, _length_delimited(b"\x12", feature)))
    # A small range of values (labels, positions, hours): build each entry once.
    return entries.take(pa.array(ints - low)) if small_range else entries
  elif dtype == "string":
    strings = _as_binary(values)
    _check_len(name, len(strings), n)
    if strings.null_count:
      raise ValueError(f"column {name!r}: has {strings.null_count} missing value(s)")
    # The entry depends only on the value: build it once per distinct value.
    encoded = strings.dictionary_encode()
    value = _length_delimited(b"\x0a", encoded.dictionary)  # BytesList.value = 1
    feature = _length_delimited(b"\x0a", value)  # Feature.bytes_list = 1
    distinct = _join(head, _length_delimited(b"\x12", feature))
    return _length_delimited(b"\x0a", distinct).take(encoded.indices)
  else:
    raise ValueError(f"column {name!r}: unknown dtype {dtype!r} (use one of {DTYPES})")
  return _length_delimited(b"\x0a", entries)  # Features.feature = 1


def _check_len(name: str, got: int, n: int) -> None:
  if got != n:
    raise ValueError(f"column {name!r} has {got} values, expected {n} (one per row)")


def _num_rows(columns: Mapping[str, ColumnValues]) -> int:
  lengths = {name: len(values) for name, values in columns.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"columns differ in length: {lengths}")
  return next(iter(lengths.values())) if lengths else 0


def _check_names(columns: Mapping[str, Any], spec_columns: Mapping[str, str]) -> None:
  missing = sorted(set(spec_columns) - set(columns))
  extra = sorted(set(columns) - set(spec_columns))
  if missing or extra:
    raise ValueError(f"columns do not match the spec: missing {missing}, unexpected {extra}")
  bad = {name: dtype for name, dtype in spec_columns.items() if dtype not in DTYPES}
  if bad:
    raise ValueError(f"unknown dtype(s) {bad} (use one of {DTYPES})")


# The payload of a Feature of each kind with no value: bytes_list = 1,
# float_list = 2, int64_list = 3, each an empty list.
_EMPTY_FEATURE = {"string": b"\x0a\x00", "float": b"\x12\x00", "int": b"\x1a\x00"}
_FILL = {"string": b"", "float": 0.0, "int": 0}


def _empty_entry(name: str, dtype: str) -> bytes:
  """The `Features.feature` entry of `name` with an empty list of its kind."""
  key = name.encode("utf-8")
  feature = _EMPTY_FEATURE[dtype]
  entry = b"\x0a" + _varint_bytes(len(key)) + key + b"\x12" + _varint_bytes(len(feature)) + feature
  return b"\x0a" + _varint_bytes(len(entry)) + entry


def _entry_or_empty(name: str, dtype: str, values: ColumnValues, n: int) -> pa.Array:
  """`_feature_entry`, where a null of a pyarrow column is a feature of the
  column's kind without a value (what CsvExampleGen writes for an empty cell)."""
  if not isinstance(values, (pa.Array, pa.ChunkedArray)) or not values.null_count:
    return _feature_entry(name, dtype, _numeric(values, dtype), n)
  valid = values.is_valid()
  filled = _numeric(values.fill_null(pa.scalar(_FILL[dtype], values.type)), dtype)
  entries = _feature_entry(name, dtype, filled, n)
  return pc.if_else(valid, entries, pa.scalar(_empty_entry(name, dtype), _BINARY))


def _numeric(values: ColumnValues, dtype: str) -> ColumnValues:
  if dtype != "string" and isinstance(values, (pa.Array, pa.ChunkedArray)):
    return values.to_numpy(zero_copy_only=False)
  return values


def encode_examples(
  columns: Mapping[str, ColumnValues], spec_columns: Mapping[str, str], missing: bool = False
) -> pa.Array:
  """Serialized `tf.train.Example`s, one per row, as a pyarrow binary array.

  `columns` must have exactly the keys of `spec_columns` (name -> 'string' |
  'int' | 'float'); each column is a numpy array, a pyarrow array or a
  sequence. Features are written in sorted name order, so equal inputs give
  equal bytes in any process. With `missing`, a null of a pyarrow column is
  written as the column's feature with no value (an empty list of its kind);
  without it a missing string is an error.
  """
  _check_names(columns, spec_columns)
  n = _num_rows(columns)
  if n == 0:
    return pa.array([], _BINARY)
  encode = _entry_or_empty if missing else _feature_entry
  entries = [encode(name, spec_columns[name], columns[name], n) for name in sorted(spec_columns)]
  features = _join(*entries)
  return _length_delimited(b"\x0a", features)  # Example.features = 1
