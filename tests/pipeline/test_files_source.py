"""`data.source: files`: the user's CSV, Parquet and TFRecord spans, ingested
by TFX's ExampleGens inside the pipeline.

The `pipeline` tests run the real pipeline through the installed `mtlrank`
console script on a few small daily spans of impression logs (CSV, Parquet and
headerless CSV with a spec drafted by `mtlrank init`, TFRecord and the bundled
samples with a written one) and load the pushed SavedModel to score raw rows; the others check the spec's validation
and the errors a run stops on before any TFX component (a pattern matching no
file, a declared column the files lack)."""

from __future__ import annotations

import csv
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml

from models.spec import SpecError, load_spec, parse_spec
from pipeline import config, runner
from pipeline.data import files as files_source

MTLRANK = Path(sys.executable).parent / "mtlrank"
DAYS = (datetime.date(2026, 11, 1), datetime.date(2026, 11, 2), datetime.date(2026, 11, 3))
COLUMNS = (
  "request_id",
  "user_id",
  "item_id",
  "item_category",
  "device",
  "item_price",
  "timestamp",
  "click",
  "purchase",
)


def impressions(day: datetime.date, rows: int, seed: int) -> List[Dict[str, object]]:
  """One day of impression logs: slates of 5 items per request; purchase only
  after a click; click and purchase depend on device, category and price."""
  rng = np.random.default_rng(seed)
  start = int(datetime.datetime(day.year, day.month, day.day).timestamp())
  result = []
  for i in range(rows):
    request = i // 5
    device = ("ios", "android", "web")[request % 3]
    category = f"c{rng.integers(6)}"
    price = float(np.round(rng.lognormal(3.0, 0.8), 2))
    logit = -1.5 + (0.8 if device == "ios" else 0.0) + 0.3 * int(category[1]) - 0.01 * price
    click = int(rng.random() < 1 / (1 + np.exp(-logit)))
    purchase = int(click and rng.random() < 0.3)
    result.append(
      {
        "request_id": f"{day:%Y%m%d}-{request}",
        "user_id": f"u{rng.integers(200)}",
        "item_id": f"i{rng.integers(300)}",
        "item_category": category,
        "device": device,
        "item_price": f"{price:.2f}",
        "timestamp": start + i * 20,
        "click": click,
        "purchase": purchase,
      }
    )
  return result


def write_csv(path: Path, rows: List[Dict[str, object]], header: bool = True) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    if header:
      writer.writeheader()
    writer.writerows(rows)


def write_parquet(path: Path, rows: List[Dict[str, object]]) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq

  path.parent.mkdir(parents=True, exist_ok=True)
  types = {"item_price": float, "timestamp": int, "click": int, "purchase": int}
  table = pa.table({c: [types.get(c, str)(r[c]) for r in rows] for c in rows[0]})
  pq.write_table(table, str(path))


def raw_spec(name: str, data: Dict[str, object]) -> Dict[str, object]:
  """A small impression-log spec (the shape of specs/synthetic.yaml)."""
  return {
    "name": name,
    "description": "impression logs read from files",
    "data": {"source": "files", **data},
    "features": [
      {"name": "request_id", "kind": "identifier", "dtype": "string"},
      {"name": "user_id", "kind": "categorical", "encoding": "hash", "hash_buckets": 200},
      {"name": "item_id", "kind": "categorical", "encoding": "hash", "hash_buckets": 300},
      {"name": "item_category", "kind": "categorical"},
      {"name": "device", "kind": "categorical"},
      {"name": "item_price", "kind": "numeric", "dtype": "float", "transform": "log_zscore"},
      {"name": "timestamp", "kind": "identifier", "dtype": "int"},
    ],
    "tasks": [
      {"name": "click", "label": "click", "type": "binary"},
      {"name": "purchase", "label": "purchase", "type": "binary", "parent": "click"},
    ],
    "model": {
      "architecture": "shared_bottom",
      "embedding_dim": 4,
      "expert_units": [16],
      "tower_units": [8],
    },
    "training": {"batch_size": 128, "epochs": 1, "early_stopping_patience": 0},
    # A sanity floor only (TFMA blesses no model without a threshold): a few
    # hundred rows measure nothing.
    "evaluation": {
      "slices": ["device"],
      "min_slice_size": 10,
      "thresholds": {"click": {"auc": {"value": 0.3}}},
    },
    "serving": {"score": {"click": 1.0, "purchase": 1.0}, "classify_task": "click"},
  }


def write_spec(directory: Path, raw: Dict[str, object]) -> Path:
  path = directory / f"{raw['name']}.yaml"
  path.write_text(yaml.safe_dump(raw, sort_keys=False))
  return path


def run_cli(spec_path: Path, home: Path) -> Dict[str, object]:
  """`mtlrank run` through the installed console script; the summary JSON."""
  summary = home / "summary.json"
  done = subprocess.run(
    [str(MTLRANK), "run", "--spec", str(spec_path), "--home", str(home)]
    + ["--summary-json", str(summary)],
    capture_output=True,
    text=True,
    timeout=1800,
  )
  assert done.returncode == 0, f"mtlrank run failed:\n{done.stdout}\n{done.stderr}"
  return json.loads(summary.read_text())


def score_raw_rows(pushed_dir: str, rows: List[Dict[str, object]], spec) -> Dict[str, np.ndarray]:
  """`serving_default` on raw rows as tf.Examples, labels left out."""
  import tensorflow as tf

  labels = set(spec.label_columns)
  requests = []
  for row in rows:
    feature = {}
    for column, dtype in spec.raw_columns.items():
      if column in labels:
        continue
      value = row[column]
      if dtype == "string":
        feature[column] = tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[str(value).encode()])
        )
      elif dtype == "int":
        feature[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
      else:
        feature[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    requests.append(example.SerializeToString())
  serve = tf.saved_model.load(pushed_dir).signatures["serving_default"]
  return {k: v.numpy() for k, v in serve(examples=tf.constant(requests)).items()}


def assert_pushed_and_scores(summary: Dict[str, object], spec, rows) -> None:
  assert summary["blessed"], summary["not_blessed_reasons"]
  pushed = Path(summary["pushed_model_dir"])
  assert (pushed / "saved_model.pb").exists()
  outputs = score_raw_rows(str(pushed), rows[:12], spec)
  assert set(outputs) == set(spec.task_names) | {"score"}
  for task in spec.task_names:
    assert outputs[task].shape == (12,)
    assert np.all((outputs[task] >= 0) & (outputs[task] <= 1))
  fused = np.prod([outputs[t] ** e for t, e in spec.serving.score.items()], axis=0)
  np.testing.assert_allclose(outputs["score"], fused, rtol=1e-4, atol=1e-6)
  # The raw_features signature (one tensor per column) gives the same scores.
  import tensorflow as tf

  from models.export import raw_argument_name
  from models.features import serving_raw_columns

  raw = tf.saved_model.load(str(pushed)).signatures["raw_features"]
  kinds = {"string": tf.string, "int": tf.int64, "float": tf.float32}
  columns = {
    raw_argument_name(c): tf.constant(
      [
        str(r[c]) if d == "string" else (int(r[c]) if d == "int" else float(r[c]))
        for r in rows[:12]
      ],
      kinds[d],
    )
    for c, d in serving_raw_columns(spec).items()
  }
  np.testing.assert_allclose(raw(**columns)["score"].numpy(), outputs["score"], rtol=1e-4)


def _days_since_epoch(day: datetime.date) -> int:
  return (day - datetime.date(1970, 1, 1)).days


def run_init(data: Path, out: Path, *flags: str) -> str:
  """`mtlrank init` through the installed console script; what it printed."""
  done = subprocess.run(
    [str(MTLRANK), "init", "--data", str(data), "--labels", "click,purchase", "--out", str(out)]
    + list(flags),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert done.returncode == 0, f"mtlrank init failed:\n{done.stdout}\n{done.stderr}"
  return done.stdout


@pytest.mark.pipeline
def test_init_drafts_a_spec_that_runs_daily_csv_spans_end_to_end(tmp_path):
  """No Python written by the user: three daily CSV spans, `mtlrank init`, then
  `mtlrank run` on the drafted spec as it is; blessed, pushed, and the pushed
  SavedModel scores raw rows."""
  root = tmp_path / "logs"
  for i, day in enumerate(DAYS):
    write_csv(root / f"{day:%Y%m%d}" / "impressions.csv", impressions(day, 400, seed=i))
  drafted = tmp_path / "drafted.yaml"
  printed = run_init(root, drafted, "--num-spans", "2")
  assert "[init] task 'purchase': conditional on 'click' - " in printed
  assert "[init] split: hash on 'request_id', 20% eval, 8% validation - " in printed
  spec = load_spec(drafted)
  assert spec.data.pattern == "{YYYY}{MM}{DD}/*.csv" and spec.task("purchase").parent == "click"
  summary = run_cli(drafted, tmp_path / "home")
  assert summary["training_spans"] == [_days_since_epoch(d) for d in DAYS[1:]]
  assert_pushed_and_scores(summary, spec, impressions(DAYS[2], 20, seed=9))
  # All impressions of one request fall on one side of the hash split.
  examples = _read_split_requests(tmp_path / "home" / "pipelines" / spec.name)
  assert examples["train"] and examples["validation"] and examples["eval"]
  assert not examples["train"] & examples["eval"]
  assert not examples["train"] & examples["validation"]
  assert not examples["validation"] & examples["eval"]


def _read_split_requests(pipeline_root: Path) -> Dict[str, set]:
  import tensorflow as tf

  latest = max((pipeline_root / "ExampleGen" / "examples").iterdir(), key=lambda p: int(p.name))
  result = {}
  for split in ("train", "validation", "eval"):
    files = [str(p) for p in (latest / f"Split-{split}").glob("*.gz")]
    result[split] = {
      tf.train.Example.FromString(r).features.feature["request_id"].bytes_list.value[0]
      for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    }
  return result


@pytest.mark.pipeline
def test_init_drafts_a_time_split_that_runs_parquet_spans_end_to_end(tmp_path):
  """Parquet logs without a request or user id: `mtlrank init` drafts a time
  split on the timestamp, and the drafted spec runs as it is."""
  root = tmp_path / "logs"

  def rows_of(day: datetime.date, count: int, seed: int) -> List[Dict[str, object]]:
    ids = ("request_id", "user_id")
    return [{k: v for k, v in r.items() if k not in ids} for r in impressions(day, count, seed)]

  for span, day in enumerate(DAYS[:2], start=1):
    write_parquet(root / f"span-{span}" / "part-0.parquet", rows_of(day, 300, seed=span))
  drafted = tmp_path / "drafted.yaml"
  printed = run_init(root, drafted, "--num-spans", "1")
  assert (
    "[init] split: time on 'timestamp', the latest 20% eval, the 8% before it validation - "
    in printed
  )
  spec = load_spec(drafted)
  assert (spec.data.format, spec.data.pattern) == ("parquet", "span-{SPAN}/*.parquet")
  summary = run_cli(drafted, tmp_path / "home")
  assert summary["training_spans"] == [2]
  assert_pushed_and_scores(summary, spec, rows_of(DAYS[1], 20, seed=9))
  times = _read_split_times(tmp_path / "home" / "pipelines" / spec.name)
  # The latest fifth of the day's time range is the eval split, the slice
  # before it validation.
  assert max(times["train"]) < min(times["validation"]) <= max(times["validation"])
  assert max(times["validation"]) < min(times["eval"])
  total = sum(len(t) for t in times.values())
  assert 0.1 < len(times["eval"]) / total < 0.3
  assert 0.04 < len(times["validation"]) / total < 0.12


def _read_split_times(pipeline_root: Path) -> Dict[str, List[int]]:
  import tensorflow as tf

  latest = max((pipeline_root / "ExampleGen" / "examples").iterdir(), key=lambda p: int(p.name))
  result = {}
  for split in ("train", "validation", "eval"):
    files = [str(p) for p in (latest / f"Split-{split}").glob("*.gz")]
    result[split] = [
      tf.train.Example.FromString(r).features.feature["timestamp"].int64_list.value[0]
      for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    ]
  return result


@pytest.mark.pipeline
def test_init_drafts_split_patterns_that_run_a_headerless_csv_end_to_end(tmp_path):
  """A headerless CSV already split in train/ and eval/: `mtlrank init --columns`
  drafts the columns and the two split patterns; the drafted spec runs as it is."""
  root = tmp_path / "logs"
  rows = impressions(DAYS[0], 400, seed=3)
  write_csv(root / "train" / "part-0.csv", rows[:300], header=False)
  write_csv(root / "eval" / "part-0.csv", rows[300:], header=False)
  drafted = tmp_path / "drafted.yaml"
  run_init(root, drafted, "--columns", ",".join(COLUMNS))
  spec = load_spec(drafted)
  assert spec.data.columns == COLUMNS
  assert (spec.data.split.train, spec.data.split.eval) == ("train/part-0.csv", "eval/part-0.csv")
  summary = run_cli(drafted, tmp_path / "home")
  assert summary["training_spans"] == [0]
  assert summary["metrics"]["click"]["example_count"] == 100
  assert_pushed_and_scores(summary, spec, rows[300:])


def write_tfrecord(path: Path, rows: List[Dict[str, object]]) -> None:
  """Uncompressed TFRecords of tf.Example; ints, floats and strings as in the spec."""
  import tensorflow as tf

  path.parent.mkdir(parents=True, exist_ok=True)
  with tf.io.TFRecordWriter(str(path)) as writer:
    for row in rows:
      feature = {}
      for column, value in row.items():
        if column in ("timestamp", "click", "purchase"):
          feature[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        elif column == "item_price":
          feature[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        else:
          feature[column] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[str(value).encode()])
          )
      writer.write(
        tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
      )


def _tfrecord_spec(tmp_path: Path, name: str) -> Path:
  raw = raw_spec(
    name,
    {
      "format": "tfrecord",
      "root": str(tmp_path / "logs"),
      "pattern": "span-{SPAN}/*.tfrecord",
      "split": {"kind": "hash", "column": "user_id", "eval_percent": 30},
    },
  )
  return write_spec(tmp_path, raw), raw


@pytest.mark.pipeline
def test_tfrecord_span_with_an_undeclared_column_runs_end_to_end(tmp_path):
  """ImportExampleGen; a column the spec does not declare is carried, never read."""
  rows = [{**row, "session": "s1"} for row in impressions(DAYS[0], 400, seed=5)]
  write_tfrecord(tmp_path / "logs" / "span-1" / "part-0.tfrecord", rows)
  spec_path, raw = _tfrecord_spec(tmp_path, "files_tfrecord")
  summary = run_cli(spec_path, tmp_path / "home")
  assert summary["training_spans"] == [1]
  assert_pushed_and_scores(summary, parse_spec(raw), rows)


@pytest.mark.pipeline
def test_tfrecord_span_lacking_a_declared_column_stops_before_transform(tmp_path):
  """A format whose columns the runner cannot see without reading records:
  DataGate names the missing column after StatisticsGen."""
  rows = [{k: v for k, v in r.items() if k != "device"} for r in impressions(DAYS[0], 100, 5)]
  write_tfrecord(tmp_path / "logs" / "span-1" / "part-0.tfrecord", rows)
  spec_path, _ = _tfrecord_spec(tmp_path, "files_tfrecord_bad")
  home = tmp_path / "home"
  done = subprocess.run(
    [str(MTLRANK), "run", "--spec", str(spec_path), "--home", str(home)],
    capture_output=True,
    text=True,
    timeout=1800,
  )
  assert done.returncode == 1
  assert "unfit to train on; the run stops before Transform" in done.stderr
  assert "column 'device'" in done.stderr
  assert not (home / "pipelines" / "files_tfrecord_bad" / "Transform").exists()


SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.pipeline
@pytest.mark.parametrize(
  "name, eval_file, eval_rows",
  [
    ("ali_ccp_sample", "trh_ali_ccp_test_sample.csv", 50),
    ("aliexpress_sample", "fuxi_tiny_mtl_test.csv", 100),
  ],
)
def test_bundled_real_data_samples_flow_end_to_end(tmp_path, name, eval_file, eval_rows):
  """The Ali-CCP and AliExpress samples in ../shared/data, read in place:
  validated, transformed, trained, evaluated, pushed; the SavedModel answers
  raw rows. Not quality: 100 rows measure nothing."""
  from models.spec import load_spec

  spec = load_spec(name)
  summary = run_cli(Path(name), tmp_path / "home")
  for component in ("ExampleGen", "StatisticsGen", "DataGate", "Transform", "Trainer"):
    assert summary["component_seconds"][component] > 0, component
  assert summary["component_seconds"]["Evaluator"] > 0
  assert summary["metrics"]["click"]["example_count"] == eval_rows
  assert summary["split_rows"]["eval"] == eval_rows and summary["split_rows"]["validation"] > 0
  with (SHARED_DATA / eval_file).open() as f:
    rows = list(csv.DictReader(f))
  assert_pushed_and_scores(summary, spec, rows)


# --- Bad input: the run stops before any TFX component --------------------------


def _files_spec(tmp_path: Path, **data):
  raw = raw_spec(
    "files_bad",
    {
      "format": "csv",
      "root": str(tmp_path / "logs"),
      "pattern": "{YYYY}{MM}{DD}/*.csv",
      "split": {"kind": "hash", "column": "request_id"},
      **data,
    },
  )
  return parse_spec(raw, origin="files_bad.yaml")


def _run_error(spec, tmp_path: Path) -> str:
  paths = config.PipelinePaths.for_spec(spec.name, tmp_path / "home")
  with pytest.raises(runner.RunError) as error:
    runner.run(spec, paths)
  # Nothing was built: no pipeline root, no metadata.
  assert not paths.metadata_path.exists()
  return str(error.value)


def test_a_pattern_matching_no_file_stops_the_run_naming_root_and_pattern(tmp_path):
  (tmp_path / "logs" / "20261101").mkdir(parents=True)
  (tmp_path / "logs" / "20261101" / "impressions.tsv").write_text("x\n")
  message = _run_error(_files_spec(tmp_path), tmp_path)
  assert "no file matches" in message
  assert str(tmp_path / "logs") in message and "{YYYY}{MM}{DD}/*.csv" in message


def test_a_declared_column_the_header_lacks_stops_the_run_naming_file_and_column(tmp_path):
  rows = [{k: v for k, v in row.items() if k != "device"} for row in impressions(DAYS[0], 10, 1)]
  write_csv(tmp_path / "logs" / "20261101" / "impressions.csv", rows)
  message = _run_error(_files_spec(tmp_path), tmp_path)
  assert "20261101/impressions.csv" in message
  assert "'device' (features[4] 'device')" in message


def test_a_declared_column_a_parquet_file_lacks_stops_the_run(tmp_path):
  rows = [{k: v for k, v in row.items() if k != "purchase"} for row in impressions(DAYS[0], 10, 1)]
  write_parquet(tmp_path / "logs" / "20261101" / "part.parquet", rows)
  spec = _files_spec(tmp_path, format="parquet", pattern="{YYYY}{MM}{DD}/*.parquet")
  message = _run_error(spec, tmp_path)
  assert "part.parquet" in message and "'purchase' (tasks[1] 'purchase' label)" in message


def test_a_headerless_file_with_other_fields_than_declared_stops_the_run(tmp_path):
  rows = impressions(DAYS[0], 10, 1)
  write_csv(tmp_path / "logs" / "20261101" / "impressions.csv", rows, header=False)
  spec = _files_spec(tmp_path, columns=list(COLUMNS) + ["extra"])
  message = _run_error(spec, tmp_path)
  assert "impressions.csv: line 1 has 9 field(s) but data.columns names 10" in message


def test_a_span_missing_from_one_split_stops_the_run(tmp_path):
  rows = impressions(DAYS[0], 10, 1)
  for span in (1, 2):
    write_csv(tmp_path / "logs" / "train" / f"span-{span}.csv", rows)
  write_csv(tmp_path / "logs" / "eval" / "span-1.csv", rows)
  spec = _files_spec(
    tmp_path,
    pattern=None,
    split={"kind": "patterns", "train": "train/span-{SPAN}.csv", "eval": "eval/span-{SPAN}.csv"},
  )
  message = _run_error(spec, tmp_path)
  assert "span(s) [2]" in message and "eval/span-{SPAN}.csv" in message


def test_too_few_spans_for_the_training_window_stops_the_run(tmp_path):
  write_csv(tmp_path / "logs" / "20261101" / "impressions.csv", impressions(DAYS[0], 10, 1))
  message = _run_error(_files_spec(tmp_path, num_spans=3), tmp_path)
  assert "latest 3 span(s)" in message


def test_spans_are_found_as_tfx_finds_them(tmp_path):
  for day in DAYS:
    write_csv(tmp_path / "logs" / f"{day:%Y%m%d}" / "impressions.csv", impressions(day, 10, 1))
  spec = _files_spec(tmp_path, num_spans=2)
  assert files_source.check_window(spec) == [_days_since_epoch(d) for d in DAYS[1:]]
  assert files_source.check_window(spec, span=_days_since_epoch(DAYS[1])) == [
    _days_since_epoch(d) for d in DAYS[:2]
  ]


# --- The spec's files fields ------------------------------------------------------


def _data(**data) -> Dict[str, object]:
  base = {
    "format": "csv",
    "root": "/data",
    "pattern": "span-{SPAN}/*.csv",
    "split": {"kind": "hash", "column": "request_id"},
  }
  base.update(data)
  return {k: v for k, v in base.items() if v is not None}


def test_files_fields_parse_into_typed_objects():
  spec = parse_spec(raw_spec("ok", _data(columns=list(COLUMNS), num_spans=2)))
  assert spec.data.format == "csv" and spec.data.pattern == "span-{SPAN}/*.csv"
  assert spec.data.columns == COLUMNS
  assert spec.data.split.kind == "hash" and spec.data.split.eval_percent == 20
  from models.spec import spec_from_json

  assert spec_from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
  "data, field, words",
  [
    (_data(format="json"), "data.format", "not one of: csv, parquet, tfrecord"),
    (_data(root=None), "data.root", "is required"),
    (_data(pattern=None), "data.pattern", "is required with split kind 'hash'"),
    (_data(pattern="span-{DAY}/*.csv"), "data.pattern", "unknown placeholder {DAY}"),
    (_data(pattern="{YYYY}{MM}/*.csv"), "data.pattern", "a date needs {YYYY}, {MM} and {DD}"),
    (_data(pattern="{SPAN}/{YYYY}{MM}{DD}"), "data.pattern", "not both"),
    (_data(pattern="v{VERSION}/*.csv"), "data.pattern", "{VERSION} needs a {SPAN}"),
    (_data(pattern="all.csv", num_spans=2), "data.num_spans", "needs spans"),
    (_data(split={"kind": "hash", "column": "session"}), "data.split.column", "not a declared"),
    (_data(split={"kind": "time", "column": "device"}), "data.split.column", "numeric timestamp"),
    (
      _data(split={"kind": "hash", "column": "request_id", "eval_percent": 0}),
      "data.split.eval_percent",
      "1..99",
    ),
    (_data(split={"kind": "hash", "column": "request_id", "train": "a"}), "data.split.train", ""),
    (_data(split={"kind": "random"}), "data.split.kind", "not one of: patterns, hash, time"),
    (_data(split={"kind": "patterns", "train": "t/*"}), "data.split.eval", "is required"),
    (
      _data(
        pattern=None,
        split={
          "kind": "patterns",
          "train": "t/*",
          "validation": "v/*",
          "eval": "e/*",
          "column": "x",
        },
      ),
      "data.split.column",
      "not both",
    ),
    (
      _data(
        pattern=None,
        split={"kind": "patterns", "train": "t/{SPAN}", "validation": "v/*", "eval": "e/{SPAN}"},
      ),
      "data.split.validation",
      "same placeholders",
    ),
    (
      _data(
        split={"kind": "hash", "column": "request_id", "eval_percent": 50, "validation_percent": 50}
      ),
      "data.split.validation_percent",
      "1..49",
    ),
    (
      _data(split={"kind": "patterns", "train": "t/{SPAN}", "eval": "e/{SPAN}"}),
      "data.pattern",
      "not both",
    ),
    (
      _data(pattern=None, split={"kind": "patterns", "train": "t/{SPAN}", "eval": "e/*"}),
      "data.split.eval",
      "same placeholders",
    ),
    (_data(columns=["request_id", "click"]), "data.columns", "user_id"),
    (_data(columns=list(COLUMNS) + ["click"]), "data.columns", "click listed twice"),
    (_data(format="parquet", columns=list(COLUMNS)), "data.columns", "headerless csv"),
    (_data(params={"path": "x"}), "data.params", "takes no params"),
    (_data(compression="gzip"), "data", "unknown field(s) compression"),
  ],
)
def test_bad_files_fields_name_the_field(data, field, words):
  with pytest.raises(SpecError) as error:
    parse_spec(raw_spec("bad", data), origin="bad.yaml")
  message = str(error.value)
  assert message.startswith(f"bad.yaml: {field}"), message
  assert words in message, message


def test_other_sources_refuse_the_files_fields():
  raw = yaml.safe_load((Path(__file__).parents[2] / "specs" / "census.yaml").read_text())
  raw["data"]["pattern"] = "*.csv"
  with pytest.raises(SpecError, match=r"census.yaml: data.pattern: only data.source files"):
    parse_spec(raw, origin="census.yaml")


def test_parquet_rows_keep_their_zeros():
  """TFX 1.16's dict_to_example writes 0, 0.0 and "" as missing values."""
  from tfx.components.example_gen import utils

  from components.file_example_gen import row_to_example

  row = {"click": 0, "price": 0.0, "device": "", "ids": [0, 1], "missing": None}
  assert not utils.dict_to_example(row).features.feature["click"].int64_list.value
  feature = row_to_example(row).features.feature
  assert list(feature["click"].int64_list.value) == [0]
  assert list(feature["price"].float_list.value) == [0.0]
  assert list(feature["device"].bytes_list.value) == [b""]
  assert list(feature["ids"].int64_list.value) == [0, 1]
  assert feature["missing"] == type(feature["missing"])()


def test_data_gate_ignores_columns_the_spec_does_not_declare():
  from tensorflow_metadata.proto.v0 import anomalies_pb2

  from components.data_gate import anomaly_problems

  anomalies = anomalies_pb2.Anomalies()
  new = anomalies.anomaly_info["session"]
  new.short_description = "New column"
  new.reason.add(type=anomalies_pb2.AnomalyInfo.SCHEMA_NEW_COLUMN, description="not in schema")
  dropped = anomalies.anomaly_info["device"]
  dropped.short_description = "Column dropped"
  dropped.reason.add(type=anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN, description="gone")
  problems = anomaly_problems(anomalies, "train")
  assert problems == ["split 'train', column 'device': Column dropped (gone)"]
