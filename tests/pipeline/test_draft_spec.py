"""`mtlrank init`'s drafting decisions, without a pipeline run: the layout and
TFX pattern of the files, each column's kind by its cardinality and
distribution (TFDV's statistics of a sample), the tasks and their parents,
the split, the slices, the three formats, the printed reasons, and a YAML the
spec's loader accepts. The end-to-end runs of drafted specs are in
test_files_source.py."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml

from models.spec import load_spec
from pipeline import cli
from pipeline.draft import compose, decide, layout, sample
from tests.pipeline.test_files_source import (
  COLUMNS,
  DAYS,
  impressions,
  write_csv,
  write_parquet,
  write_tfrecord,
)

LABELS = ["click", "purchase"]


def _stats(
  columns: Dict[str, List[object]], dtypes: Dict[str, str]
) -> Dict[str, sample.ColumnStats]:
  return sample.statistics(columns, dtypes)


def _one(values: List[object], dtype: str, name: str = "x") -> sample.ColumnStats:
  return _stats({name: values}, {name: dtype})[name]


def _daily_csv(root: Path, rows: int = 200) -> None:
  for i, day in enumerate(DAYS):
    write_csv(root / f"{day:%Y%m%d}" / "impressions.csv", impressions(day, rows, seed=i))


# --- Layout: format, root, pattern ---------------------------------------------


@pytest.mark.parametrize(
  "paths, pattern, placeholder",
  [
    (["20261101/a.csv", "20261102/a.csv"], "{YYYY}{MM}{DD}/*.csv", "{YYYY}{MM}{DD}"),
    (["dt=20261101/p-0.csv", "dt=20261102/p-1.csv"], "dt={YYYY}{MM}{DD}/*.csv", "{YYYY}{MM}{DD}"),
    (["span-1/x.parquet", "span-2/x.parquet"], "span-{SPAN}/*.parquet", "{SPAN}"),
    (["logs-20261101.csv", "logs-20261102.csv"], "logs-{YYYY}{MM}{DD}.csv", "{YYYY}{MM}{DD}"),
    (["a.csv", "b.csv"], "*.csv", ""),
    (["only.csv"], "only.csv", ""),
    # Not a date (month 13): no placeholder.
    (["20261301/a.csv", "20261302/a.csv"], "*/a.csv", ""),
  ],
  ids=["day-dirs", "hive-day-dirs", "span-dirs", "day-in-name", "flat", "one-file", "not-a-date"],
)
def test_a_layout_becomes_one_tfx_pattern(paths, pattern, placeholder):
  assert layout.generalise(paths) == (pattern, placeholder)


@pytest.mark.parametrize(
  "paths, patterns",
  [
    (
      ["train/p-0.csv", "train/p-1.csv", "eval/p-0.csv"],
      {"train": "train/*.csv", "eval": "eval/p-0.csv"},
    ),
    (
      ["ccp_train_sample.csv", "ccp_val_sample.csv", "ccp_test_sample.csv"],
      {
        "train": "ccp_train_sample.csv",
        "validation": "ccp_val_sample.csv",
        "eval": "ccp_test_sample.csv",
      },
    ),
    (
      ["train.csv", "valid.csv"],
      {"train": "train.csv", "eval": "valid.csv"},
    ),
    (
      ["20261101/train.csv", "20261101/test.csv", "20261102/train.csv", "20261102/test.csv"],
      {"train": "{YYYY}{MM}{DD}/train.csv", "eval": "{YYYY}{MM}{DD}/test.csv"},
    ),
    (["a.csv", "b.csv"], {}),
    (["retrain.csv", "contest.csv"], {}),
  ],
  ids=[
    "dirs",
    "val-to-validation-test-to-eval",
    "val-alone-is-eval",
    "daily",
    "none",
    "words-inside-names",
  ],
)
def test_files_split_by_name_become_split_patterns(paths, patterns):
  assert dict(layout.split_by_name(paths)) == patterns


def test_data_may_be_a_directory_a_glob_a_file_or_a_tfx_pattern(tmp_path):
  _daily_csv(tmp_path / "logs", rows=5)
  by_dir = layout.find_layout(str(tmp_path / "logs"))
  assert (by_dir.format, by_dir.root, by_dir.pattern) == (
    "csv",
    tmp_path / "logs",
    "{YYYY}{MM}{DD}/*.csv",
  )
  assert len(by_dir.files) == 3
  by_glob = layout.find_layout(str(tmp_path / "logs" / "*" / "*.csv"))
  assert (by_glob.root, by_glob.pattern) == (tmp_path / "logs", "{YYYY}{MM}{DD}/*.csv")
  given = layout.find_layout(str(tmp_path / "logs" / "{YYYY}{MM}{DD}" / "impressions.csv"))
  assert given.pattern == "{YYYY}{MM}{DD}/impressions.csv" and len(given.files) == 3
  one = layout.find_layout(str(tmp_path / "logs" / "20261101" / "impressions.csv"))
  assert (one.root, one.pattern) == (tmp_path / "logs" / "20261101", "impressions.csv")


def test_unknown_suffixes_or_no_files_name_what_to_give(tmp_path):
  (tmp_path / "x.dat").write_text("a\n")
  with pytest.raises(layout.LayoutError, match="give --format csv, parquet or tfrecord"):
    layout.find_layout(str(tmp_path / "x.dat"))
  assert layout.find_layout(str(tmp_path / "x.dat"), "csv").format == "csv"
  with pytest.raises(layout.LayoutError, match="no such file or directory"):
    layout.find_layout(str(tmp_path / "absent"))


# --- Column kinds by cardinality and distribution ---------------------------------


def test_categoricals_get_a_vocabulary_or_hashing_by_cardinality():
  rng = np.random.default_rng(0)
  few, _ = decide.column_feature(_one([f"d{i % 3}" for i in range(500)], "string", "device"))
  assert few == {"name": "device", "kind": "categorical"}
  many, why = decide.column_feature(
    _one([f"u{rng.integers(400)}" for _ in range(2000)], "string", "user_id")
  )
  assert many["encoding"] == "hash" and many["hash_buckets"] == 4 * _distinct(many, why)
  assert "hashed into" in why
  small_int, _ = decide.column_feature(_one([i % 24 for i in range(500)], "int", "hour"))
  assert small_int == {"name": "hour", "kind": "categorical", "dtype": "int"}
  codes, why = decide.column_feature(_one(list(range(60)) * 3, "int", "field_7"))
  assert codes == {"name": "field_7", "kind": "categorical", "dtype": "int"}
  assert "integer codes 0..59" in why
  ages, _ = decide.column_feature(_one([int(a) for a in rng.integers(18, 90, 500)], "int", "age"))
  assert ages["kind"] == "numeric" and ages["transform"] == "zscore"


def _distinct(feature, why: str) -> int:
  return int(why.split(" distinct")[0].split()[-1])


@pytest.mark.parametrize(
  "draw, transform",
  [
    (lambda rng: rng.normal(50, 10, 3000), "zscore"),
    (lambda rng: rng.lognormal(3.0, 1.0, 3000), "log_zscore"),
    (lambda rng: rng.standard_t(1.5, 3000), "bucketize"),
  ],
  ids=["normal", "lognormal", "signed-heavy-tails"],
)
def test_numeric_transform_follows_the_distribution(draw, transform):
  values = [float(v) for v in draw(np.random.default_rng(1))]
  feature, why = decide.column_feature(_one(values, "float", "amount"))
  assert feature["kind"] == "numeric" and feature["transform"] == transform, why
  if transform == "bucketize":
    assert feature["num_buckets"] == 10


def test_timestamps_positions_and_row_ids_are_never_model_inputs():
  start = int(datetime.datetime(2026, 11, 1).timestamp())
  stamp, why = decide.column_feature(_one([start + 7 * i for i in range(300)], "int", "ts"))
  assert stamp == {"name": "ts", "kind": "identifier", "dtype": "int"} and "timestamp" in why
  position, _ = decide.column_feature(_one([1 + i % 10 for i in range(300)], "int", "position"))
  assert position == {"name": "position", "kind": "position", "dtype": "int", "max_value": 10}
  zero_based, why = decide.column_feature(_one([i % 10 for i in range(300)], "int", "position"))
  assert zero_based["kind"] == "identifier" and "1..max_value" in why
  row_id, _ = decide.column_feature(_one([f"r{i}" for i in range(300)], "string", "event"))
  assert row_id["kind"] == "identifier"


def test_columns_with_missing_values_or_one_value_are_left_out():
  missing, why = decide.column_feature(_one([1.5, None, 2.5] * 50, "float", "price"))
  assert missing is None and "missing in 50 of 150 rows" in why
  constant, why = decide.column_feature(_one(["web"] * 50, "string", "site"))
  assert constant is None and "constant" in why


def test_nan_values_are_filled_with_the_median():
  values = [float(v) for v in np.random.default_rng(2).normal(5, 1, 200)] + [float("nan")]
  feature, why = decide.column_feature(_one(values, "float", "score_x"))
  assert feature["fill"] == pytest.approx(5, abs=0.3) and "NaN/inf filled" in why


def test_a_column_name_that_is_no_identifier_keeps_its_column():
  feature, _ = decide.column_feature(_one([i % 5 for i in range(100)], "int", "101"))
  assert feature["name"] == "f_101" and feature["column"] == "101"


# --- Tasks ---------------------------------------------------------------------


def _labels_sample(**labels: List[float]) -> sample.Sample:
  dtypes = {
    k: "int" if all(float(x).is_integer() for x in v) else "float" for k, v in labels.items()
  }
  typed = {k: [int(x) if dtypes[k] == "int" else float(x) for x in v] for k, v in labels.items()}
  return sample.Sample(typed, _stats(typed, dtypes), len(next(iter(labels.values()))), ())


def test_a_label_positive_only_where_another_is_gets_it_as_parent():
  rng = np.random.default_rng(3)
  click = (rng.random(1000) < 0.3).astype(int)
  cart = click * (rng.random(1000) < 0.5)
  purchase = cart * (rng.random(1000) < 0.5)
  dwell = click * np.round(rng.lognormal(3, 1, 1000), 1)
  other = (rng.random(1000) < 0.2).astype(int)
  rows = _labels_sample(
    click=list(click),
    cart=list(cart),
    purchase=list(purchase),
    dwell=list(dwell),
    other=list(other),
  )
  tasks, decisions = decide.detect_tasks(rows, ["click", "cart", "purchase", "dwell", "other"])
  by_name = {t["name"]: t for t in tasks}
  assert "parent" not in by_name["click"] and "parent" not in by_name["other"]
  assert by_name["cart"]["parent"] == "click"
  # The narrowest superset: purchase given cart, not given click.
  assert by_name["purchase"]["parent"] == "cart"
  assert by_name["dwell"] == {
    "name": "dwell",
    "label": "dwell",
    "type": "regression",
    "parent": "click",
    "label_transform": "log1p",
    "loss": "huber",
  }
  assert any("only after a cart" in d.why for d in decisions)


def test_identical_binary_labels_are_not_each_others_parent():
  rows = _labels_sample(a=[0, 1, 1, 0] * 20, b=[0, 1, 1, 0] * 20)
  tasks, _ = decide.detect_tasks(rows, ["a", "b"])
  assert all("parent" not in t for t in tasks)


# --- Split and slices -------------------------------------------------------------


def _features(*names: str) -> List[Dict[str, object]]:
  return [{"name": n, "kind": "categorical"} for n in names]


def test_the_split_prefers_a_request_then_a_user_then_a_timestamp():
  start = int(datetime.datetime(2026, 11, 1).timestamp())
  columns = {
    "request_id": [f"r{i // 5}" for i in range(100)],
    "user_id": [f"u{i % 30}" for i in range(100)],
    "ts": [start + i for i in range(100)],
    "device": [f"d{i % 3}" for i in range(100)],
  }
  stats = _stats(
    columns, {"request_id": "string", "user_id": "string", "ts": "int", "device": "string"}
  )
  for names, kind, column in [
    (("request_id", "user_id", "ts", "device"), "hash", "request_id"),
    (("user_id", "ts", "device"), "hash", "user_id"),
    (("ts", "device"), "time", "ts"),
    (("device",), "hash", "device"),
  ]:
    split, decision = decide.choose_split(_features(*names), stats)
    assert (split["kind"], split["column"]) == (kind, column), decision.line()


def test_slices_are_the_low_cardinality_categoricals():
  columns = {
    "device": [f"d{i % 3}" for i in range(200)],
    "country": [f"c{i % 8}" for i in range(200)],
    "item_category": [f"k{i % 40}" for i in range(200)],
    "segment_id": [f"s{i % 2}" for i in range(200)],
  }
  stats = _stats(columns, dict.fromkeys(columns, "string"))
  slices, decision = decide.choose_slices(_features(*columns), stats)
  assert slices == ["device", "country"]
  assert "device (3 values)" in decision.why


# --- Formats, the written YAML, the printed reasons -------------------------------


def _write_headerless(root: Path) -> None:
  rows = impressions(DAYS[0], 300, seed=3)
  write_csv(root / "part-0.csv", rows, header=False)


@pytest.mark.parametrize("fmt", ["csv", "headerless", "parquet", "tfrecord"])
def test_each_format_drafts_a_spec_the_loader_accepts(tmp_path, fmt):
  root = tmp_path / "logs"
  rows = impressions(DAYS[0], 300, seed=4)
  columns: List[str] = []
  if fmt == "csv":
    write_csv(root / "span-1" / "part-0.csv", rows)
  elif fmt == "headerless":
    _write_headerless(root)
    columns = list(COLUMNS)
  elif fmt == "parquet":
    write_parquet(root / "span-1" / "part-0.parquet", rows)
  else:
    write_tfrecord(root / "span-1" / "part-0.tfrecord", rows)
  drafted = compose.draft_spec(str(root), LABELS, columns=columns)
  spec = drafted.spec
  assert spec.data.format == ("csv" if fmt == "headerless" else fmt)
  assert spec.data.columns == tuple(columns)
  kinds = {f.name: (f.kind, f.dtype) for f in spec.features}
  assert kinds["timestamp"] == ("identifier", "int")
  assert kinds["item_price"] == ("numeric", "float")
  assert kinds["device"] == ("categorical", "string")
  assert spec.feature("item_price").transform == "log_zscore"
  assert spec.task("purchase").parent == "click"
  assert (spec.data.split.kind, spec.data.split.column) == ("hash", "request_id")
  assert spec.evaluation.query_key == "request_id"


def test_a_headerless_csv_without_columns_is_refused(tmp_path):
  _write_headerless(tmp_path / "logs")
  with pytest.raises(compose.DraftError, match="looks like data, not a header: give"):
    compose.draft_spec(str(tmp_path / "logs"), LABELS)


def test_a_label_the_data_lacks_names_the_columns(tmp_path):
  _daily_csv(tmp_path / "logs", rows=10)
  with pytest.raises(compose.DraftError, match=r"label\(s\) conversion not in the data; its"):
    compose.draft_spec(str(tmp_path / "logs"), ["click", "conversion"])


def test_init_prints_its_decisions_and_writes_a_spec_that_loads(tmp_path, capsys):
  _daily_csv(tmp_path / "logs")
  out = tmp_path / "drafted.yaml"
  code = cli.main(
    ["init", "--data", str(tmp_path / "logs"), "--labels", "click,purchase"] + ["--out", str(out)]
  )
  printed = capsys.readouterr().out.splitlines()
  assert code == 0
  decisions = [line for line in printed if line.startswith("[init] ")]
  for expected in (
    f"[init] data: csv files under {tmp_path / 'logs'}, pattern '{{YYYY}}{{MM}}{{DD}}/*.csv' - ",
    "[init] column 'user_id': categorical, hash - ",
    "[init] column 'item_price': numeric float, log_zscore - heavy right tail",
    "[init] task 'purchase': conditional on 'click' - ",
    "[init] split: hash on 'request_id', 20% eval, 8% validation - ",
    "[init] slices: device, item_category - ",
  ):
    assert any(line.startswith(expected) for line in decisions), (expected, decisions)
  # One line per decision, each with its reason.
  assert all(" - " in line for line in decisions)
  spec = load_spec(out)
  assert spec.data.num_spans == 3 and spec.data.pattern == "{YYYY}{MM}{DD}/*.csv"
  text = out.read_text()
  # The release thresholds are commented suggestions; one sanity floor is active.
  assert "    # purchase: {auc: {value: 0.6, max_regression: 0.01}" in text
  assert yaml.safe_load(text)["evaluation"]["thresholds"] == {"click": {"auc": {"value": 0.0}}}
  assert [(t.task, t.metric, t.value) for t in spec.evaluation.thresholds] == [
    ("click", "auc", 0.0)
  ]
  # A second init does not overwrite the spec without --force.
  assert (
    cli.main(["init", "--data", str(tmp_path / "logs"), "--labels", "click", "--out", str(out)])
    == 2
  )


SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_a_header_of_field_ids_is_a_header_and_a_data_line_is_not(tmp_path):
  assert not sample.looks_like_data(SHARED_DATA / "trh_ali_ccp_train_sample.csv")
  _write_headerless(tmp_path)
  assert sample.looks_like_data(tmp_path / "part-0.csv")
  write_csv(tmp_path / "h.csv", impressions(DAYS[0], 3, seed=1))
  assert not sample.looks_like_data(tmp_path / "h.csv")


def test_a_text_label_or_more_spans_than_found_are_refused(tmp_path):
  _daily_csv(tmp_path / "logs", rows=10)
  with pytest.raises(compose.DraftError, match=r"label\(s\) device hold text"):
    compose.draft_spec(str(tmp_path / "logs"), ["click", "device"])
  with pytest.raises(compose.DraftError, match=r"--num-spans 4: the files hold 3 span\(s\)"):
    compose.draft_spec(str(tmp_path / "logs"), LABELS, num_spans=4)


def test_the_ali_ccp_sample_drafts_split_patterns_and_esmm_like_tasks():
  """Real click/purchase logs (../shared/data): field ids as columns, the
  train/val/test files as split patterns, purchase given click."""
  drafted = compose.draft_spec(str(SHARED_DATA / "trh_ali_ccp_*.csv"), LABELS)
  spec = drafted.spec
  split = spec.data.split
  assert (split.kind, split.train, split.validation, split.eval) == (
    "patterns",
    "trh_ali_ccp_train_sample.csv",
    "trh_ali_ccp_val_sample.csv",
    "trh_ali_ccp_test_sample.csv",
  )
  assert spec.task("purchase").parent == "click"
  # Item ids: label-encoded integer codes, hashed; the sample's one user's
  # fields are constant and left out, with the reason.
  item = spec.feature("f_205")
  assert (item.column, item.kind, item.dtype, item.encoding) == (
    "205",
    "categorical",
    "int",
    "hash",
  )
  lines = [d.line() for d in drafted.draft.decisions]
  assert "column '101': left out - constant (1): no signal" in lines
  assert all(f.dtype == "float" for f in spec.features if f.column.startswith("D"))
