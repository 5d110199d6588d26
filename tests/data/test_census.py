"""The census adapter: parsing, labels, split, strictness, the written TFRecords."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from models.spec import FeatureSpec, load_spec
from pipeline.data import census, io

REAL_FILE = census.REPO_ROOT.parent / "shared" / "data" / "census-income.test.gz"

# A real line of the file (its third), as a list of the raw fields.
TEMPLATE = (
  "2, Not in universe, 0, 0, Children, 0, Not in universe, Never married, Not in universe "
  "or children, Not in universe, White, Mexican-American, Male, Not in universe, Not in "
  "universe, Children or Armed Forces, 0, 0, 0, Nonfiler, Not in universe, Not in universe, "
  "Child <18 never marr not in subfamily, Child under 18 never married, 1601.75, ?, ?, ?, "
  "Not in universe under 1 year old, ?, 0, Both parents present, United-States, "
  "United-States, United-States, Native- Born in the United States, 0, Not in universe, 0, "
  "0, 95, - 50000."
).split(",")
assert len(TEMPLATE) == 42


def line(**fields) -> str:
  values = list(TEMPLATE)
  for name, value in fields.items():
    values[census.CENSUS_FIELDS.index(name)] = f" {value}" if name != "age" else str(value)
  return ",".join(values)


def write_gz(path: Path, lines) -> Path:
  with gzip.open(path, "wt") as f:
    f.write("\n".join(lines) + "\n")
  return path


def spec_for(path: Path, eval_every: int = 5):
  return load_spec("census").replace(data={"params": {"path": str(path), "eval_every": eval_every}})


def all_files(out_dir: Path):
  return sorted(p for p in out_dir.rglob("*") if p.is_file())


@pytest.fixture
def small_file(tmp_path):
  # 23 rows; age = row index + 20 identifies each row; every 3rd is rich, every
  # 2nd never married.
  lines = [
    line(
      age=20 + i,
      income_50k="50000+." if i % 3 == 0 else "- 50000.",
      marital_stat="Never married" if i % 2 == 0 else "Married-civilian spouse present",
    )
    for i in range(23)
  ]
  return write_gz(tmp_path / "small.gz", lines)


def test_labels_on_hand_written_lines(tmp_path):
  path = write_gz(
    tmp_path / "labels.gz",
    [
      line(income_50k="50000+.", marital_stat="Never married"),
      line(income_50k="- 50000.", marital_stat="Married-civilian spouse present"),
      line(income_50k="50000+.", marital_stat="Divorced"),
      line(income_50k="- 50000.", marital_stat="Never married"),
      line(income_50k="- 50000.", marital_stat="Never married  "),  # trailing spaces strip
      line(income_50k="- 50000.", marital_stat="Married-spouse absent"),
    ],
  )
  spec = spec_for(path)
  columns = census.parse_census(path, spec.raw_columns)
  assert columns["income_50k"].tolist() == [1, 0, 1, 0, 0, 0]
  assert columns["is_never_married"].tolist() == [1, 0, 0, 1, 1, 0]
  # Strings are stripped, numbers are numbers; marital_stat and instance_weight
  # are not written.
  assert columns["det_hh_summ"][0].as_py() == "Child under 18 never married"
  assert columns["education"][0].as_py() == "Children"
  assert columns["age"].dtype == np.float32 and columns["age"][0] == 2.0
  assert "marital_stat" not in columns and "instance_weight" not in columns
  assert set(columns) == set(spec.raw_columns)


def test_split_ratio_determinism_and_skip(small_file, tmp_path):
  spec = spec_for(small_file)
  summary = census.prepare_census(spec, tmp_path / "a")
  # Rows 4, 9, 14, 19 (i % 5 == 4) go to eval; of the other 19, the 10th
  # (row 11) goes to validation.
  assert summary["rows"] == {"train": 18, "validation": 1, "eval": 4}
  assert not summary["skipped"]
  eval_rows = io.read_examples(io.split_files(tmp_path / "a", 1, "eval"), spec.raw_columns)
  train_rows = io.read_examples(io.split_files(tmp_path / "a", 1, "train"), spec.raw_columns)
  validation_rows = io.read_examples(
    io.split_files(tmp_path / "a", 1, "validation"), spec.raw_columns
  )
  assert eval_rows["age"].tolist() == [24.0, 29.0, 34.0, 39.0]
  assert validation_rows["age"].tolist() == [31.0]
  in_train = [i for i in range(23) if i % 5 != 4 and i != 11]
  assert train_rows["age"].tolist() == [20.0 + i for i in in_train]
  assert train_rows["income_50k"].tolist() == [int(i % 3 == 0) for i in in_train]
  assert summary["positive_rate"]["income_50k"] == pytest.approx(8 / 23)
  assert summary["positive_rate"]["is_never_married"] == pytest.approx(12 / 23)

  # Same input -> byte-identical files, in another directory and another run.
  census.prepare_census(spec, tmp_path / "b")
  files_a, files_b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
  assert [p.relative_to(tmp_path / "a") for p in files_a] == [
    p.relative_to(tmp_path / "b") for p in files_b
  ]
  assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_a, files_b))
  # Layout: exactly the contract, no temporary leftovers.
  assert [str(p.relative_to(tmp_path / "a")) for p in files_a] == [
    "span-1/_summary.json",
    "span-1/eval/data-00000-of-00001.tfrecord.gz",
    "span-1/train/data-00000-of-00001.tfrecord.gz",
    "span-1/validation/data-00000-of-00001.tfrecord.gz",
  ]
  assert sorted(os.listdir(tmp_path / "a")) == ["span-1"]

  # Re-running is a no-op that keeps the files; overwrite rewrites them.
  train_file = io.split_files(tmp_path / "a", 1, "train")[0]
  os.utime(train_file, (1, 1))
  again = census.prepare_census(spec, tmp_path / "a")
  assert again["skipped"] and again["rows"] == {"train": 18, "validation": 1, "eval": 4}
  assert train_file.stat().st_mtime == 1
  census.prepare_census(spec, tmp_path / "a", overwrite=True)
  assert train_file.stat().st_mtime != 1
  assert train_file.read_bytes() == files_b[2].read_bytes()

  # Other parameters over an existing span: an error, not a silent reuse.
  with pytest.raises(ValueError, match="other parameters"):
    census.prepare_census(spec_for(small_file, eval_every=4), tmp_path / "a")


def test_written_tfrecords_parse_with_the_spec(small_file, tmp_path):
  import tensorflow as tf

  spec = spec_for(small_file)
  census.prepare_census(spec, tmp_path / "out")
  path = io.split_files(tmp_path / "out", 1, "train")[0]
  records = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
  assert len(records) == 18
  for record in records[:3]:
    example = tf.train.Example.FromString(record)
    # The canonical protobuf encoding: map entries in key order.
    assert example.SerializeToString(deterministic=True) == record
    assert set(example.features.feature) == set(spec.raw_columns)
    for name, dtype in spec.raw_columns.items():
      feature = example.features.feature[name]
      kind = {"string": "bytes_list", "int": "int64_list", "float": "float_list"}[dtype]
      assert feature.WhichOneof("kind") == kind
      assert len(getattr(feature, kind).value) == 1
  feature_spec = {
    name: tf.io.FixedLenFeature(
      [], {"string": tf.string, "int": tf.int64, "float": tf.float32}[dtype]
    )
    for name, dtype in spec.raw_columns.items()
  }
  parsed = tf.io.parse_example(records, feature_spec)
  assert parsed["age"].numpy().tolist()[:4] == [20.0, 21.0, 22.0, 23.0]
  assert parsed["is_never_married"].numpy().tolist()[:4] == [1, 0, 1, 0]
  assert parsed["det_hh_fam_stat"].numpy()[0] == b"Child <18 never marr not in subfamily"
  assert parsed["year"].numpy()[0] == b"95"


def test_wrong_field_count_names_the_line(tmp_path):
  bad = line()[: line().rindex(",")]  # 41 fields
  path = write_gz(tmp_path / "bad.gz", [line(), line(), bad, line()])
  with pytest.raises(ValueError, match=r"line 3: expected 42 comma-separated fields, got 41"):
    census.prepare_census(spec_for(path), tmp_path / "out")
  assert not (tmp_path / "out" / "span-1").exists()


def test_blank_line_is_an_error(tmp_path):
  path = write_gz(tmp_path / "blank.gz", [line(), "", line()])
  with pytest.raises(ValueError, match=r"line 2: expected 42"):
    census.parse_census(path, spec_for(path).raw_columns)


def test_non_numeric_value_names_line_and_column(tmp_path):
  path = write_gz(tmp_path / "nan.gz", [line(), line(weeks_worked="?"), line()])
  with pytest.raises(ValueError, match=r"line 2, column weeks_worked: '\?' is not a number"):
    census.parse_census(path, spec_for(path).raw_columns)
  path = write_gz(tmp_path / "inf.gz", [line(capital_gains="inf")])
  with pytest.raises(ValueError, match=r"line 1, column capital_gains"):
    census.parse_census(path, spec_for(path).raw_columns)


def test_unknown_income_value_names_line(tmp_path):
  path = write_gz(tmp_path / "income.gz", [line(), line(), line(), line(income_50k="50000+")])
  with pytest.raises(
    ValueError,
    match=r"line 4, column income_50k: unknown income value "
    r"'50000\+'",
  ):
    census.parse_census(path, spec_for(path).raw_columns)


def test_label_and_weight_are_never_features(small_file):
  spec = spec_for(small_file)
  for column in ("marital_stat", "instance_weight"):
    leaky = spec.replace(
      features=spec.features
      + (FeatureSpec(name=column, kind="categorical", dtype="string", column=column),)
    )
    with pytest.raises(ValueError, match=column):
      census.parse_census(small_file, leaky.raw_columns)


def test_relative_path_resolves_against_repo_root():
  assert census.resolve_path("../shared/data/x.gz") == census.REPO_ROOT / "../shared/data/x.gz"
  assert census.resolve_path("/abs/x.gz") == Path("/abs/x.gz")


def test_real_file_base_rates():
  if not REAL_FILE.exists():
    pytest.skip(f"{REAL_FILE} is absent")
  spec = load_spec("census")
  assert census.resolve_path(spec.data.params["path"]).resolve() == REAL_FILE.resolve()
  columns = census.parse_census(REAL_FILE, spec.raw_columns)
  assert len(columns["income_50k"]) == 99_762
  # README: income > 50K 6.20 %, never married 43.25 %.
  assert round(100 * columns["income_50k"].mean(), 2) == 6.20
  assert round(100 * columns["is_never_married"].mean(), 2) == 43.25
  is_eval = census.eval_mask(99_762, spec.data.params["eval_every"])
  assert int(is_eval.sum()) == 19_952
  masks = census.split_masks(
    99_762, spec.data.params["eval_every"], spec.data.params["validation_every"]
  )
  assert {s: int(m.sum()) for s, m in masks.items()} == {
    "train": 71_829,
    "validation": 7_981,
    "eval": 19_952,
  }
  assert np.array_equal(masks["eval"], is_eval)


@pytest.mark.parametrize(
  "content, expected",
  [
    (b"not gzip at all", "cannot read it as gzip-compressed text"),
    (
      gzip.compress((",".join(TEMPLATE) + "\n").encode() * 50, mtime=0)[:-40],
      "cannot read it as gzip",
    ),
    (gzip.compress(b"1, 2, 3\n", mtime=0), "line 1: expected 42 comma-separated fields, got 3"),
  ],
  # Stable ids: every pytest-xdist worker must collect the same test names.
  ids=["not-gzip", "truncated", "wrong-field-count"],
)
def test_bad_census_files_end_in_one_line_from_mtlrank(tmp_path, content, expected):
  """Through the installed command: the file and what is wrong with it, no traceback."""
  import subprocess
  import sys

  bad = tmp_path / "census.gz"
  bad.write_bytes(content)
  spec_text = (census.REPO_ROOT / "specs" / "census.yaml").read_text()
  spec_file = tmp_path / "census.yaml"
  spec_file.write_text(spec_text.replace("../shared/data/census-income.test.gz", str(bad)))
  result = subprocess.run(
    [str(Path(sys.executable).with_name("mtlrank")), "prepare-data", "--spec", str(spec_file)]
    + ["--home", str(tmp_path / "home")],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert result.stderr.startswith("mtlrank: bad input data: ") and expected in result.stderr
  assert "census.gz" in result.stderr
