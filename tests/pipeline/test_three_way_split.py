"""Three splits: the Trainer fits on train and selects on validation, TFMA
reports and gates on eval, and nothing upstream of the Evaluator reads eval.

(a) Every source writes three disjoint splits of the declared sizes: the
census adapter (eval every 5th row as before, validation every 10th of the
rest), the simulator (whole requests, `validation_fraction`) and the files
source through TFX's ExampleGen (hash buckets, time slices, explicit patterns,
validation carved out of train).

(b) In a real pipeline run (the session's census run, tests/conftest.py) the
Trainer's recorded inputs resolve, through TFX's own fn_args construction, to
train files for training and validation files for selection, never eval;
Transform analyzes train only; TFMA's Evaluator reads eval only; and the run
summary reports the three splits' rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import tensorflow as tf

from contract import EVAL_SPLIT, SPLITS, TRAIN_SPLIT, VALIDATION_SPLIT
from models.spec import load_spec, parse_spec
from pipeline.data import census, io, simulator
from pipeline.data import files as files_source
from tests.pipeline.test_files_source import DAYS, impressions, raw_spec, write_csv

# --- (a) the adapters -------------------------------------------------------


def test_census_keeps_eval_and_takes_every_tenth_other_row_to_validation(census_sample, tmp_path):
  spec = load_spec("census")
  assert spec.data.params["validation_every"] == 10
  # The bundled file: the counts the spec declares (docs/data.md).
  masks = census.split_masks(99_762, 5, 10)
  assert {s: int(m.sum()) for s, m in masks.items()} == {
    TRAIN_SPLIT: 71_829,
    VALIDATION_SPLIT: 7_981,
    EVAL_SPLIT: 19_952,
  }
  assert np.array_equal(masks[EVAL_SPLIT], np.arange(99_762) % 5 == 4)
  stacked = np.stack([masks[s] for s in SPLITS])
  assert np.all(stacked.sum(axis=0) == 1)  # disjoint, every row somewhere

  # Written: 5,000 sample rows -> 3,600 / 400 / 1,000, each row in one split.
  spec = spec.replace(data={"params": {"path": str(census_sample), "eval_every": 5}})
  summary = census.prepare_census(spec, tmp_path / "out")
  assert summary["rows"] == {TRAIN_SPLIT: 3600, VALIDATION_SPLIT: 400, EVAL_SPLIT: 1000}
  columns = census.parse_census(census_sample, spec.raw_columns)
  rows = {
    split: _census_rows(
      io.read_examples(io.split_files(tmp_path / "out", 1, split), spec.raw_columns)
    )
    for split in SPLITS
  }
  everything = _census_rows(columns)
  for split, mask in census.split_masks(5000, 5, 10).items():
    assert rows[split] == [r for r, m in zip(everything, mask) if m]


def _census_rows(columns) -> List[tuple]:
  """(age, education, income_50k, is_never_married) per row, as plain values."""

  def plain(values) -> list:
    values = values.to_pylist() if hasattr(values, "to_pylist") else np.asarray(values).tolist()
    return [v.decode() if isinstance(v, bytes) else v for v in values]

  names = ("age", "education", "income_50k", "is_never_married")
  return list(zip(*(plain(columns[n]) for n in names)))


def test_census_without_validation_every_defaults_to_a_tenth_and_rewrites_two_split_spans(
  census_sample, tmp_path
):
  """A spec written before validation existed still loads and gets the default;
  a span written with two splits is rewritten with three, not reused."""
  spec = load_spec("census").replace(data={"params": {"path": str(census_sample)}})
  out = tmp_path / "out"
  summary = census.prepare_census(spec, out)
  assert summary["rows"][VALIDATION_SPLIT] == 400
  # Make it look like a span of the two-split adapter: no validation directory.
  validation = io.split_files(out, 1, VALIDATION_SPLIT)[0]
  validation.unlink()
  validation.parent.rmdir()
  again = census.prepare_census(spec, out)
  assert not again["skipped"] and io.split_files(out, 1, VALIDATION_SPLIT)
  assert again["rows"] == summary["rows"]
  assert census.ADAPTER_VERSION == 2 and simulator.SIMULATOR_VERSION == 4


def test_simulator_splits_whole_requests_three_ways(tmp_path):
  spec = load_spec("synthetic")
  assert spec.data.params["validation_fraction"] == 0.08
  params = {**spec.data.params, "num_spans": 1, "requests_per_span": 2000, "num_users": 400}
  spec = spec.replace(data={"params": params, "num_spans": 1})
  summary = simulator.simulate(spec, tmp_path, progress=False)
  requests: Dict[str, set] = {}
  for split in SPLITS:
    ids = io.read_examples(io.split_files(tmp_path, 1, split), spec.raw_columns)["request_id"]
    assert len(ids) == summary["rows"][split] > 0
    requests[split] = set(np.asarray(ids).tolist())
    # Whole requests: every id appears slate_size times.
    assert len(ids) == 10 * len(requests[split])
  assert not requests[TRAIN_SPLIT] & requests[VALIDATION_SPLIT]
  assert not requests[TRAIN_SPLIT] & requests[EVAL_SPLIT]
  assert not requests[VALIDATION_SPLIT] & requests[EVAL_SPLIT]
  shares = {s: len(r) / 2000 for s, r in requests.items()}
  assert abs(shares[EVAL_SPLIT] - 0.2) < 0.03
  assert abs(shares[VALIDATION_SPLIT] - 0.08) < 0.02
  # Eval is the same requests as with no validation split at all.
  from pipeline.data import world

  assert requests[EVAL_SPLIT] == {
    f"s1-r{r:06d}".encode() for r in np.flatnonzero(world.eval_requests(7, 1, 2000, 0.2))
  }


def _run_example_gen(spec, home: Path) -> Dict[str, List[tf.train.Example]]:
  """The files source's ExampleGen, alone, in a real TFX pipeline; its output
  examples per split."""
  from tfx import v1 as tfx

  from pipeline import config

  example_gen = files_source.example_gen(spec).with_id("ExampleGen")
  pipeline = tfx.dsl.Pipeline(
    pipeline_name=f"split-{spec.name}",
    pipeline_root=str(home / "root"),
    components=[example_gen],
    enable_cache=False,
    metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(home / "metadata.sqlite")
    ),
    beam_pipeline_args=list(config.BEAM_PIPELINE_ARGS),
  )
  tfx.orchestration.LocalDagRunner().run(pipeline)
  out = max((home / "root" / "ExampleGen" / "examples").iterdir(), key=lambda p: int(p.name))
  result = {}
  for split in sorted(p.name.split("-", 1)[1] for p in out.glob("Split-*")):
    files = [str(p) for p in (out / f"Split-{split}").glob("*.gz")]
    result[split] = [
      tf.train.Example.FromString(r)
      for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    ]
  return result


def _values(examples: List[tf.train.Example], column: str) -> List[object]:
  out = []
  for e in examples:
    feature = e.features.feature[column]
    out.append(
      (feature.bytes_list.value or feature.int64_list.value or feature.float_list.value)[0]
    )
  return out


def _files_spec(tmp_path: Path, data: Dict[str, object]):
  raw = raw_spec(
    f"three-{data['split']['kind']}", {"format": "csv", "root": str(tmp_path / "logs"), **data}
  )
  return parse_spec(raw, origin="test")


@pytest.mark.slow
def test_a_hash_split_gives_three_disjoint_request_sets(tmp_path):
  write_csv(tmp_path / "logs" / "day.csv", impressions(DAYS[0], 2000, seed=1))
  spec = _files_spec(
    tmp_path,
    {
      "pattern": "day.csv",
      "split": {
        "kind": "hash",
        "column": "request_id",
        "eval_percent": 20,
        "validation_percent": 10,
      },
    },
  )
  examples = _run_example_gen(spec, tmp_path / "home")
  assert sorted(examples) == sorted(SPLITS)
  requests = {s: set(_values(e, "request_id")) for s, e in examples.items()}
  assert sum(len(e) for e in examples.values()) == 2000
  for a in SPLITS:
    for b in SPLITS:
      if a < b:
        assert not requests[a] & requests[b], (a, b)
  shares = {s: len(r) / 400 for s, r in requests.items()}
  assert abs(shares[EVAL_SPLIT] - 0.2) < 0.07
  assert abs(shares[VALIDATION_SPLIT] - 0.1) < 0.06


@pytest.mark.slow
def test_a_time_split_puts_validation_just_before_eval(tmp_path):
  rows = impressions(DAYS[0], 1000, seed=2)  # timestamps 20 s apart
  write_csv(tmp_path / "logs" / "day.csv", rows)
  spec = _files_spec(
    tmp_path, {"pattern": "day.csv", "split": {"kind": "time", "column": "timestamp"}}
  )
  assert (spec.data.split.eval_percent, spec.data.split.validation_percent) == (20, 8)
  examples = _run_example_gen(spec, tmp_path / "home")
  times = {s: sorted(_values(e, "timestamp")) for s, e in examples.items()}
  assert max(times[TRAIN_SPLIT]) < min(times[VALIDATION_SPLIT])
  assert max(times[VALIDATION_SPLIT]) < min(times[EVAL_SPLIT])
  counts = {s: len(t) for s, t in times.items()}
  assert sum(counts.values()) == 1000
  assert abs(counts[EVAL_SPLIT] - 200) <= 2 and abs(counts[VALIDATION_SPLIT] - 80) <= 2


@pytest.mark.slow
def test_split_patterns_with_and_without_a_validation_pattern(tmp_path):
  rows = impressions(DAYS[0], 1000, seed=3)
  write_csv(tmp_path / "logs" / "train.csv", rows[:600])
  write_csv(tmp_path / "logs" / "val.csv", rows[600:800])
  write_csv(tmp_path / "logs" / "test.csv", rows[800:])
  explicit = _files_spec(
    tmp_path,
    {
      "split": {
        "kind": "patterns",
        "train": "train.csv",
        "validation": "val.csv",
        "eval": "test.csv",
      }
    },
  )
  examples = _run_example_gen(explicit, tmp_path / "explicit")
  assert {s: len(e) for s, e in examples.items()} == {
    TRAIN_SPLIT: 600,
    VALIDATION_SPLIT: 200,
    EVAL_SPLIT: 200,
  }
  # No validation pattern: a tenth of the train file's requests (by hash of
  # the column) are validation; the eval file is eval as it is.
  carved = _files_spec(
    tmp_path,
    {
      "split": {
        "kind": "patterns",
        "train": "train.csv",
        "eval": "test.csv",
        "column": "request_id",
      }
    },
  )
  assert files_source.carves_validation(carved) and carved.data.split.validation_percent == 10
  examples = _run_example_gen(carved, tmp_path / "carved")
  requests = {s: set(_values(e, "request_id")) for s, e in examples.items()}
  assert len(examples[EVAL_SPLIT]) == 200
  assert len(examples[TRAIN_SPLIT]) + len(examples[VALIDATION_SPLIT]) == 600
  assert not requests[TRAIN_SPLIT] & requests[VALIDATION_SPLIT]
  assert requests[TRAIN_SPLIT] | requests[VALIDATION_SPLIT] == {
    r["request_id"].encode() for r in rows[:600]
  }
  assert 0.03 < len(requests[VALIDATION_SPLIT]) / 120 < 0.2


def test_the_bundled_samples_map_val_to_validation_and_test_to_eval():
  ali_ccp = load_spec("ali_ccp_sample").data.split
  assert (ali_ccp.train, ali_ccp.validation, ali_ccp.eval) == (
    "trh_ali_ccp_train_sample.csv",
    "trh_ali_ccp_val_sample.csv",
    "trh_ali_ccp_test_sample.csv",
  )
  aliexpress = load_spec("aliexpress_sample")
  assert aliexpress.data.split.eval == "fuxi_tiny_mtl_test.csv"
  # No val file: validation is carved out of train, whole searches.
  assert files_source.carves_validation(aliexpress)
  assert files_source.split_patterns(aliexpress) == {
    TRAIN_SPLIT: "fuxi_tiny_mtl_train.csv",
    VALIDATION_SPLIT: "fuxi_tiny_mtl_train.csv",
    EVAL_SPLIT: "fuxi_tiny_mtl_test.csv",
  }


# --- (b) a real pipeline run --------------------------------------------------


def _executions(paths) -> Dict[str, object]:
  """The latest execution of each node in the run's MLMD, with its input artifacts."""
  from ml_metadata.metadata_store import metadata_store
  from ml_metadata.proto import metadata_store_pb2

  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = str(paths.metadata_path)
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  store = metadata_store.MetadataStore(connection)
  nodes = {c.id: c.name.split(".", 1)[-1] for c in store.get_contexts_by_type("node")}
  latest = {}
  for execution in store.get_executions():
    for context in store.get_contexts_by_execution(execution.id):
      if context.id in nodes and (
        nodes[context.id] not in latest or execution.id > latest[nodes[context.id]].id
      ):
        latest[nodes[context.id]] = execution
  return store, latest


def _property(execution, name: str) -> str:
  return execution.custom_properties[name].string_value or execution.properties[name].string_value


@pytest.mark.pipeline
def test_the_trainer_selects_on_validation_and_tfma_reads_eval_only(first_census_run):
  from tfx.components.trainer import fn_args_utils
  from tfx.types import artifact_utils

  paths, summary = first_census_run
  store, executions = _executions(paths)

  # Transform: analyzers on train only, every split transformed.
  splits_config = json.loads(_property(executions["Transform"], "splits_config"))
  assert splits_config == {"analyze": [TRAIN_SPLIT], "transform": list(SPLITS)}

  for node in ("Trainer", "SingleTaskTrainer"):
    execution = executions[node]
    assert json.loads(_property(execution, "train_args"))["splits"] == [TRAIN_SPLIT]
    assert json.loads(_property(execution, "eval_args"))["splits"] == [VALIDATION_SPLIT]
    # The Trainer's fn_args, rebuilt by TFX's own code from what MLMD recorded:
    # training reads train, early stopping and the best epoch read validation.
    transformed = _input_examples(store, execution.id)
    input_dict = {"examples": transformed}
    exec_properties = {
      "train_args": _property(execution, "train_args"),
      "eval_args": _property(execution, "eval_args"),
    }
    fn_args = fn_args_utils.get_common_fn_args(input_dict, exec_properties)
    assert fn_args.train_files and fn_args.eval_files
    assert all(f"Split-{TRAIN_SPLIT}" in f for f in fn_args.train_files)
    assert all(f"Split-{VALIDATION_SPLIT}" in f for f in fn_args.eval_files)
    assert not any(f"Split-{EVAL_SPLIT}" in f for f in fn_args.train_files + fn_args.eval_files)
    names = artifact_utils.decode_split_names(transformed[0].split_names)
    assert sorted(names) == sorted(SPLITS)

  # TFMA: the eval split alone, and its row count is the eval split's.
  assert json.loads(_property(executions["Evaluator"], "example_splits")) == [EVAL_SPLIT]
  assert summary.split_rows == {TRAIN_SPLIT: 3600, VALIDATION_SPLIT: 400, EVAL_SPLIT: 1000}
  for task in ("income", "never_married"):
    assert summary.metrics[task]["example_count"] == summary.split_rows[EVAL_SPLIT]
  assert (summary.selection_split, summary.evaluation_split) == (VALIDATION_SPLIT, EVAL_SPLIT)
  recorded = json.loads(summary.to_json())
  assert recorded["split_rows"] == summary.split_rows
  assert recorded["selection_split"] == "validation" and recorded["evaluation_split"] == "eval"


def _input_examples(store, execution_id: int):
  """The Trainer's `examples` input (Transform's transformed examples) as TFX artifacts."""
  from ml_metadata.proto import metadata_store_pb2
  from tfx.types import standard_artifacts

  events = [
    e
    for e in store.get_events_by_execution_ids([execution_id])
    if e.type == metadata_store_pb2.Event.INPUT
    and any(s.key == "examples" for s in e.path.steps if s.HasField("key"))
  ]
  result = []
  for mlmd_artifact in store.get_artifacts_by_id([e.artifact_id for e in events]):
    artifact = standard_artifacts.Examples()
    artifact.set_mlmd_artifact(mlmd_artifact)
    result.append(artifact)
  assert result, "the Trainer recorded no examples input"
  return result
