"""Bad input stops the run before Transform, with a message naming the problem,
and leaves what is already pushed untouched. Each case runs the real pipeline;
DataGate fails it, so Transform and Trainer never start."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from contract import SPLITS, TRAIN_SPLIT, VALIDATION_SPLIT
from models.spec import RankingSpec, load_spec
from pipeline import config, runner
from pipeline.data import read_examples, write_examples
from pipeline.data.census import prepare_census

# Runs the real TFX pipeline: left out of `make test-fast`.
pytestmark = pytest.mark.pipeline

ROWS_PER_SPLIT = 400


@pytest.fixture(scope="module")
def census_columns(tmp_path_factory, small_census_spec: RankingSpec) -> Dict[str, np.ndarray]:
  """Good census rows, as columns, to corrupt one way per test."""
  out = tmp_path_factory.mktemp("good")
  prepare_census(small_census_spec, out)
  rows = read_examples(
    sorted((out / "span-1" / "eval").glob("*.gz")), small_census_spec.raw_columns
  )
  return {name: np.asarray(values)[:ROWS_PER_SPLIT] for name, values in rows.items()}


@pytest.fixture()
def pushed_serving_dir(tmp_path) -> Path:
  """A serving directory that already holds a pushed version."""
  version = tmp_path / "serving" / "census" / "1700000000"
  version.mkdir(parents=True)
  (version / "saved_model.pb").write_bytes(b"already serving")
  return tmp_path / "serving"


def _snapshot(directory: Path) -> Dict[str, bytes]:
  return {
    str(p.relative_to(directory)): p.read_bytes()
    for p in sorted(directory.rglob("*"))
    if p.is_file()
  }


def _run_on(
  spec: RankingSpec,
  columns: Dict[str, np.ndarray],
  dtypes: Dict[str, str],
  tmp_path: Path,
  serving_dir: Path,
  split_columns: Dict[str, Dict[str, np.ndarray]] | None = None,
) -> str:
  data_dir = tmp_path / "data"
  for split in SPLITS:
    write_examples(
      (split_columns or {}).get(split, columns),
      dtypes,
      data_dir / "span-1" / split / "data-00000.tfrecord.gz",
    )
  paths = config.PipelinePaths(
    data_dir=data_dir, pipeline_root=tmp_path / "root", serving_dir=serving_dir
  )
  before = _snapshot(serving_dir)
  with pytest.raises(runner.RunError) as error:
    runner.run(spec, paths, prepare=False)
  assert _snapshot(serving_dir) == before
  assert not (tmp_path / "root" / "Transform").exists(), "Transform must not start"
  return str(error.value)


def test_missing_required_column(small_census_spec, census_columns, tmp_path, pushed_serving_dir):
  dtypes = dict(small_census_spec.raw_columns)
  del dtypes["education"]
  columns = {k: v for k, v in census_columns.items() if k != "education"}
  message = _run_on(small_census_spec, columns, dtypes, tmp_path, pushed_serving_dir)
  assert "'education'" in message and "column" in message.lower()


def test_column_of_the_wrong_type(small_census_spec, census_columns, tmp_path, pushed_serving_dir):
  dtypes = {**small_census_spec.raw_columns, "age": "string"}
  columns = {**census_columns, "age": census_columns["age"].astype(str).astype(object)}
  message = _run_on(small_census_spec, columns, dtypes, tmp_path, pushed_serving_dir)
  assert "'age'" in message and "type" in message.lower()


def test_binary_label_outside_zero_one(
  small_census_spec, census_columns, tmp_path, pushed_serving_dir
):
  labels = census_columns["income_50k"].copy()
  labels[:3] = 2
  columns = {**census_columns, "income_50k": labels}
  message = _run_on(
    small_census_spec, columns, small_census_spec.raw_columns, tmp_path, pushed_serving_dir
  )
  assert "'income_50k'" in message and "out-of-range" in message.lower()


def test_non_finite_values_and_a_single_class_label(
  small_census_spec, census_columns, tmp_path, pushed_serving_dir
):
  """NaN and inf would train to a NaN loss; a label without positives teaches
  nothing. One run: the message lists every problem."""
  age = census_columns["age"].astype(np.float32).copy()
  age[:4] = np.nan
  gains = census_columns["capital_gains"].astype(np.float32).copy()
  gains[7] = np.inf
  columns = {
    **census_columns,
    "age": age,
    "capital_gains": gains,
    "income_50k": np.zeros_like(census_columns["income_50k"]),
  }
  message = _run_on(
    small_census_spec, columns, small_census_spec.raw_columns, tmp_path, pushed_serving_dir
  )
  assert "column 'age': non-finite values (4 NaN)" in message
  assert "column 'capital_gains': non-finite values (+inf values)" in message
  assert "declare `fill`" in message
  assert "label 'income_50k' (task 'income'): 0 positive(s)" in message


def _synthetic_columns(n: int, seed: int = 0, device=("ios", "android")) -> Dict[str, np.ndarray]:
  """Rows in the synthetic spec's columns; `device` cycles through the values given."""
  rng = np.random.default_rng(seed)
  click = (rng.random(n) < 0.2).astype(np.int64)
  conversion = click * (rng.random(n) < 0.5)
  return {
    "request_id": np.array([f"r{i // 10}" for i in range(n)], dtype=object),
    "user_id": np.array([f"u{i % 50}" for i in range(n)], dtype=object),
    "item_id": np.array([f"i{i % 70}" for i in range(n)], dtype=object),
    "item_category": np.array([f"c{i % 5}" for i in range(n)], dtype=object),
    "user_segment": np.array([f"s{i % 3}" for i in range(n)], dtype=object),
    "device": np.array([device[i % len(device)] for i in range(n)], dtype=object),
    "hour": (np.arange(n) % 24).astype(np.int64),
    "item_price": rng.uniform(1, 100, n).astype(np.float32),
    "position": (np.arange(n) % 10 + 1).astype(np.int64),
    "p_click": np.full(n, 0.2, np.float32),
    "p_conv_given_click": np.full(n, 0.5, np.float32),
    "attraction": np.full(n, 0.3, np.float32),
    "expected_dwell": np.full(n, 30.0, np.float32),
    "utility": np.full(n, 0.3 * 0.5 * 30.0**0.5, np.float32),
    "click": click,
    "conversion": conversion.astype(np.int64),
    "dwell_seconds": (click * 30.0).astype(np.float32),
  }


def test_conditional_label_without_its_parent(tmp_path, pushed_serving_dir):
  spec = load_spec("synthetic")
  spec = spec.replace(data={"num_spans": 1})
  columns = _synthetic_columns(ROWS_PER_SPLIT)
  conversion = columns["conversion"]
  conversion[np.flatnonzero(columns["click"] == 0)[:5]] = 1  # five conversions without a click
  message = _run_on(spec, columns, spec.raw_columns, tmp_path, pushed_serving_dir)
  assert "5 rows have 'conversion'" in message and "'click'" in message
  assert "tasks[1].without_parent: drop" in message  # the choice that would accept them


def test_a_span_that_drifted_from_the_previous_one(tmp_path, pushed_serving_dir):
  """Span 2 is all `ios` where span 1 was half `android`: beyond device's drift
  threshold, so span 2 stops before Transform; span 1 (no previous span) passes."""
  spec = load_spec("synthetic").replace(data={"num_spans": 2})
  spec = dataclasses.replace(
    spec,
    features=tuple(
      dataclasses.replace(f, drift=0.2) if f.name == "device" else f for f in spec.features
    ),
  )
  data_dir = tmp_path / "data"
  for span, device in ((1, ("ios", "android")), (2, ("ios",))):
    for split in SPLITS:
      write_examples(
        _synthetic_columns(ROWS_PER_SPLIT, seed=span, device=device),
        spec.raw_columns,
        data_dir / f"span-{span}" / split / "data-00000.tfrecord.gz",
      )
  paths = config.PipelinePaths(
    data_dir=data_dir, pipeline_root=tmp_path / "root", serving_dir=pushed_serving_dir
  )
  before = _snapshot(pushed_serving_dir)
  with pytest.raises(runner.RunError) as error:
    runner.run(spec, paths, prepare=False)
  message = str(error.value)
  assert "span 2 of 'synthetic' data is unfit" in message
  assert (
    "column 'device' (feature 'device'): drifted from span 1: L-infinity distance 0.5" in message
  )
  assert "above the threshold 0.2" in message
  assert _snapshot(pushed_serving_dir) == before


def test_a_truncated_span_file_is_named(
  small_census_spec, census_columns, tmp_path, pushed_serving_dir
):
  data_dir = tmp_path / "data"
  for split in SPLITS:
    write_examples(
      census_columns,
      small_census_spec.raw_columns,
      data_dir / "span-1" / split / "data-00000.tfrecord.gz",
    )
  broken = data_dir / "span-1" / TRAIN_SPLIT / "data-00000.tfrecord.gz"
  broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
  paths = config.PipelinePaths(
    data_dir=data_dir, pipeline_root=tmp_path / "root", serving_dir=pushed_serving_dir
  )
  before = _snapshot(pushed_serving_dir)
  with pytest.raises(runner.RunError) as error:
    runner.run(small_census_spec, paths, prepare=False)
  message = str(error.value)
  assert f"a span file cannot be read: {broken}: record " in message
  assert len(message.splitlines()) == 2  # the cause and where the full log is
  log = Path(message.rsplit("full log: ", 1)[1].rstrip(")"))
  assert "Traceback" in log.read_text()
  assert _snapshot(pushed_serving_dir) == before


def test_empty_span(small_census_spec, census_columns, tmp_path, pushed_serving_dir):
  empty = {k: v[:0] for k, v in census_columns.items()}
  message = _run_on(
    small_census_spec, empty, small_census_spec.raw_columns, tmp_path, pushed_serving_dir
  )
  assert "empty" in message and "span 1" in message


def test_an_empty_validation_split_is_named(
  small_census_spec, census_columns, tmp_path, pushed_serving_dir
):
  """Early stopping needs validation rows: DataGate names the empty split."""
  empty = {k: v[:0] for k, v in census_columns.items()}
  message = _run_on(
    small_census_spec,
    census_columns,
    small_census_spec.raw_columns,
    tmp_path,
    pushed_serving_dir,
    split_columns={VALIDATION_SPLIT: empty},
  )
  assert f"split {VALIDATION_SPLIT!r} of span 1 is empty" in message
  assert f"split {TRAIN_SPLIT!r}" not in message


def test_missing_span_directory(small_census_spec, tmp_path):
  (tmp_path / "data").mkdir()
  paths = config.PipelinePaths(
    data_dir=tmp_path / "data", pipeline_root=tmp_path / "root", serving_dir=tmp_path / "serving"
  )
  with pytest.raises(runner.RunError, match="no span"):
    runner.run(small_census_spec, paths, prepare=False)
