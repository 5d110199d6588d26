"""`ArrowFileExecutor` (components/arrow_example_gen.py): the files
source's CSV and Parquet ExampleGen, run through its Beam pipeline on tiny
CSVs (a header, none; an empty cell, a quoted comma, a quoted line break),
compared split by split with what TFX's CSV executors write from the same
files, and on the same rows as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest

ROWS = [
  # request_id, user, price, clicks, note
  ("r1", 7, "1.5", 1, "plain"),
  ("r1", 7, "2.25", 0, '"with, comma"'),
  ("r2", -3, "", 1, '"two\nlines"'),
  ("r3", 12345678901, "0.0", 0, ""),
  ("r4", 0, "3", 1, "x"),
]
HEADER = "request_id,user,price,click,note"
TYPES = {"request_id": "string", "user": "int", "price": "float", "click": "int"}


def _write(path: Path, header: bool, rows=ROWS) -> None:
  lines = [HEADER] if header else []
  lines += [",".join(str(v) for v in row) for row in rows]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(lines) + "\n")


def _props(
  root: Path, input_splits, output=None, columns=(), file_format: str = "csv"
) -> Dict[str, Any]:
  import json

  from google.protobuf import any_pb2, struct_pb2
  from tfx.proto import example_gen_pb2
  from tfx.types import standard_component_specs as keys
  from tfx.utils import proto_utils

  struct = struct_pb2.Struct()
  struct.update(
    json.loads(
      json.dumps(
        {
          "format": file_format,
          "columns": list(columns),
          "time_column": "",
          "eval_percent": 20,
          "column_types": TYPES,
        }
      )
    )
  )
  packed = any_pb2.Any()
  packed.Pack(struct)
  return {
    keys.INPUT_BASE_KEY: str(root),
    keys.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
      example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=n, pattern=p) for n, p in input_splits]
      )
    ),
    keys.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output or example_gen_pb2.Output()),
    keys.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
    keys.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(
      example_gen_pb2.CustomConfig(custom_config=packed)
    ),
  }


def _run(executor_class, props: Dict[str, Any], out: Path) -> Dict[str, List[Any]]:
  """The executor's Do on the pipeline's Beam runner; each split's tf.Examples."""
  import tensorflow as tf
  from tfx.dsl.components.base import base_beam_executor
  from tfx.types import artifact_utils, standard_artifacts
  from tfx.types import standard_component_specs as keys

  from pipeline import config

  examples = standard_artifacts.Examples()
  examples.uri = str(out)
  context = base_beam_executor.BaseBeamExecutor.Context(
    beam_pipeline_args=config.BEAM_PIPELINE_ARGS, tmp_dir=str(out) + "-tmp"
  )
  executor_class(context).Do({}, {keys.EXAMPLES_KEY: [examples]}, dict(props))
  result = {}
  for name in artifact_utils.decode_split_names(examples.split_names):
    split_dir = Path(artifact_utils.get_split_uri([examples], name))
    files = sorted(str(p) for p in split_dir.glob("data_tfrecord-*.gz"))
    assert files, f"split {name}: no data_tfrecord-*.gz in {split_dir}"
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    result[name] = [tf.train.Example.FromString(r.numpy()) for r in records]
  return result


def _canonical(examples) -> List[str]:
  return sorted(str(e) for e in examples)


def _values(example) -> Dict[str, Any]:
  out = {}
  for key, feature in example.features.feature.items():
    kind = feature.WhichOneof("kind")
    out[key] = (kind, list(getattr(feature, kind).value) if kind else [])
  return out


def _hash_output(column: str = "request_id"):
  from tfx.proto import example_gen_pb2

  return example_gen_pb2.Output(
    split_config=example_gen_pb2.SplitConfig(
      splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=2),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
      ],
      partition_feature_name=column,
    )
  )


@pytest.mark.slow
def test_header_csv_with_a_hash_split_matches_csv_example_gen(tmp_path):
  from tfx.components.example_gen.csv_example_gen import executor as csv_executor

  from components.arrow_example_gen import ArrowFileExecutor

  _write(tmp_path / "in" / "a.csv", header=True)
  _write(
    tmp_path / "in" / "b.csv",
    header=True,
    rows=[(f"q{i}", i, "1.0", i % 2, "n") for i in range(40)],
  )
  props = _props(tmp_path / "in", [("all", "*.csv")], _hash_output())
  ours = _run(ArrowFileExecutor, props, tmp_path / "ours")
  tfx = _run(csv_executor.Executor, props, tmp_path / "tfx")
  assert set(ours) == {"train", "eval"}
  for split in ours:
    # The same rows in the same split, with the same features, kinds and values.
    assert _canonical(ours[split]) == _canonical(tfx[split]), split
  assert sum(len(v) for v in ours.values()) == 45
  for split in ours:  # one shard per input file and split, TFX's names
    shards = sorted(p.name for p in (tmp_path / "ours" / f"Split-{split}").iterdir())
    assert shards == [f"data_tfrecord-0000{i}-of-00002.gz" for i in (0, 1)], shards
  assert ours["eval"] and ours["train"]

  rows = {tuple(_values(e)["note"][1]): _values(e) for s in ours.values() for e in s}
  comma = rows[(b"with, comma",)]
  assert comma["user"] == ("int64_list", [7])
  assert comma["price"] == ("float_list", [2.25])
  assert comma["request_id"] == ("bytes_list", [b"r1"])
  missing_price = rows[(b"two\nlines",)]
  assert missing_price["price"] == ("float_list", [])  # an empty cell: no value, the kind kept
  assert missing_price["user"] == ("int64_list", [-3])
  empty_note = next(v for v in rows.values() if v["user"][1] == [12345678901])
  assert empty_note["note"] == ("bytes_list", [])
  # A float column whose cells look like integers stays float (the spec's dtype).
  assert rows[(b"x",)]["price"] == ("float_list", [3.0])


@pytest.mark.slow
def test_headerless_csv_with_split_patterns_matches_tfx_reading(tmp_path):
  from components.arrow_example_gen import ArrowFileExecutor
  from components.file_example_gen import HeaderlessCsvExecutor

  _write(tmp_path / "in" / "train" / "part.csv", header=False)
  _write(tmp_path / "in" / "eval" / "part.csv", header=False, rows=ROWS[:2])
  columns = HEADER.split(",")
  props = _props(
    tmp_path / "in", [("train", "train/*.csv"), ("eval", "eval/*.csv")], columns=columns
  )
  ours = _run(ArrowFileExecutor, props, tmp_path / "ours")
  tfx = _run(HeaderlessCsvExecutor, props, tmp_path / "tfx")
  assert [len(ours["train"]), len(ours["eval"])] == [5, 2]
  for split in ours:
    assert _canonical(ours[split]) == _canonical(tfx[split]), split
  assert set(_values(ours["eval"][0])) == set(columns)


@pytest.mark.slow
def test_a_bad_cell_names_the_file(tmp_path):
  from components.arrow_example_gen import ArrowFileExecutor

  _write(tmp_path / "in" / "a.csv", header=True)
  _write(tmp_path / "in" / "bad.csv", header=True, rows=[("r1", "seven", "1.0", 1, "x")])
  props = _props(tmp_path / "in", [("all", "*.csv")], _hash_output())
  with pytest.raises(Exception, match=r"bad\.csv.*int64"):
    _run(ArrowFileExecutor, props, tmp_path / "ours")
  # The failed file left no shard and no temporary file (a.csv's shards may be in place).
  left = sorted(p.name for p in (tmp_path / "ours").rglob("*") if p.is_file())
  assert left and all(name.startswith("data_tfrecord-00000-of-00002.gz") for name in left), left
  assert not [name for name in left if ".tmp-" in name]


def test_partition_keys_are_tfx_s():
  import tensorflow as tf
  from tfx.components.example_gen import base_example_gen_executor as base
  from tfx.proto import example_gen_pb2

  from components.arrow_example_gen import partition_key

  config = example_gen_pb2.SplitConfig(partition_feature_name="k")

  def tfx_key(feature) -> bytes:
    example = tf.train.Example(features=tf.train.Features(feature={"k": feature}))
    return base._GeneratePartitionKey(example, config)  # pylint: disable=protected-access

  for value in (0, 1, 127, 128, 300, -1, -(2**63), 2**63 - 1, 12345678901):
    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    assert partition_key(value, True) == tfx_key(feature), value
  for value in (b"", b"r1", b"x" * 200, "é".encode()):
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    assert partition_key(value, False) == tfx_key(feature), value
  assert partition_key(None, True) == tfx_key(tf.train.Feature(int64_list=tf.train.Int64List()))
  assert partition_key(None, False) == tfx_key(tf.train.Feature(bytes_list=tf.train.BytesList()))


def test_hash_splits_follow_tfx_s_partition_fn():
  import numpy as np
  import pyarrow as pa
  import tensorflow as tf
  from tfx.components.example_gen import base_example_gen_executor as base
  from tfx.proto import example_gen_pb2

  from components.arrow_example_gen import hash_splits

  config = example_gen_pb2.SplitConfig(partition_feature_name="k")
  ids = [f"req-{i // 3}".encode() for i in range(300)] + [None]
  got = hash_splits(pa.array(ids, pa.binary()), "k", np.array([70, 90, 100]))
  for value, index in zip(ids, got):
    listed = tf.train.BytesList(value=[] if value is None else [value])
    example = tf.train.Example(
      features=tf.train.Features(feature={"k": tf.train.Feature(bytes_list=listed)})
    )
    assert index == base._PartitionFn(example, 3, [70, 90, 100], config)  # pylint: disable=protected-access
  assert set(got) == {0, 1, 2}


@pytest.mark.slow
def test_parquet_with_a_hash_split_keeps_zeros_and_splits_as_csv(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  from components.arrow_example_gen import ArrowFileExecutor

  # Parquet's own narrower types (int32, float32, int8): cast to the spec's.
  table = pa.table(
    {
      "request_id": pa.array([r[0] for r in ROWS], pa.string()),
      "user": pa.array([min(r[1], 2**31 - 1) for r in ROWS], pa.int64()).cast(
        pa.int32(), safe=False
      ),
      "price": pa.array([float(r[2]) if r[2] else None for r in ROWS], pa.float32()),
      "click": pa.array([r[3] for r in ROWS], pa.int8()),
      "note": pa.array(["plain", "a", "b", "", "x"], pa.string()),
    }
  )
  (tmp_path / "pq").mkdir()
  pq.write_table(table, tmp_path / "pq" / "a.parquet", row_group_size=2)
  _write(tmp_path / "csv" / "a.csv", header=True)
  split = _hash_output()
  parquet = _run(
    ArrowFileExecutor,
    _props(tmp_path / "pq", [("all", "*.parquet")], split, file_format="parquet"),
    tmp_path / "out-pq",
  )
  csv = _run(
    ArrowFileExecutor, _props(tmp_path / "csv", [("all", "*.csv")], split), tmp_path / "out-csv"
  )

  def requests(examples):
    return sorted(_values(e)["request_id"][1][0] for e in examples)

  assert {k: requests(v) for k, v in parquet.items()} == {k: requests(v) for k, v in csv.items()}
  rows = {_values(e)["note"][1][0]: _values(e) for s in parquet.values() for e in s}
  # Only a null is missing: 0, 0.0 and "" are values (TFX 1.16's conversion drops them).
  assert rows[b""]["price"] == ("float_list", [0.0])
  assert rows[b""]["click"] == ("int64_list", [0])
  assert rows[b"x"]["user"] == ("int64_list", [0])
  assert rows[b"b"]["price"] == ("float_list", [])
  assert rows[b"a"]["price"] == ("float_list", [2.25])
  assert rows[b"plain"]["user"] == ("int64_list", [7])
