"""Census-Income (KDD) adapter: the gzip CSV of the MMoE benchmark -> span 1.

`prepare_census(spec, out_dir)` reads `spec.data.params['path']` (a relative
path resolves against the repository root; an absolute path is taken as is),
parses it strictly and writes
`<out_dir>/span-1/{train,validation,eval}/data-*.tfrecord.gz`
with one feature per column of `spec.raw_columns` (see `pipeline.data.io`).

The file (see ../shared/data/README.md): no header, 42 comma-separated fields
in the order of `CENSUS_FIELDS`, each value with a leading space, the last
field ending in '.'.

- Features: every raw column of the spec that is a census field, by the same
  name; numeric columns (dtype float/int) as numbers, the rest as stripped
  strings.
- Labels: `income_50k` = 1 iff the income field is '50000+.' (the other valid
  value is '- 50000.'); `is_never_married` = 1 iff marital_stat is
  'Never married'. marital_stat (a label) and instance_weight (a survey
  weight) are never written as features; a spec that asks for them is an
  error.
- Split: row i (0-based, file order) goes to eval when
  i % eval_every == eval_every - 1 (eval_every = 5: 20 %); of the other rows,
  the j-th (0-based, in file order) goes to validation when
  j % validation_every == validation_every - 1 (validation_every, default
  10: 10 % of them), the rest to train. On the bundled file: 71,829 train /
  7,981 validation / 19,952 eval rows.
- Strict: a wrong number of fields, a non-numeric value in a numeric column or
  an unknown income value raises ValueError naming the line and the column;
  no row is ever dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from contract import EVAL_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from models import spec as spec_lib
from models.spec import RankingSpec
from pipeline.data import io
from pipeline.data.errors import DataError

REPO_ROOT = Path(spec_lib.__file__).resolve().parent.parent
# 2: three splits (train, validation, eval); spans of version 1 had two.
ADAPTER_VERSION = 2

CENSUS_FIELDS: Tuple[str, ...] = (
  "age",
  "class_worker",
  "det_ind_code",
  "det_occ_code",
  "education",
  "wage_per_hour",
  "hs_college",
  "marital_stat",
  "major_ind_code",
  "major_occ_code",
  "race",
  "hisp_origin",
  "sex",
  "union_member",
  "unemp_reason",
  "full_or_part_emp",
  "capital_gains",
  "capital_losses",
  "stock_dividends",
  "tax_filer_stat",
  "region_prev_res",
  "state_prev_res",
  "det_hh_fam_stat",
  "det_hh_summ",
  "instance_weight",
  "mig_chg_msa",
  "mig_chg_reg",
  "mig_move_reg",
  "mig_same",
  "mig_prev_sunbelt",
  "num_emp",
  "fam_under_18",
  "country_father",
  "country_mother",
  "country_self",
  "citizenship",
  "own_or_self",
  "vet_question",
  "vet_benefits",
  "weeks_worked",
  "year",
  "income_50k",
)
CONTINUOUS_FIELDS = (
  "age",
  "wage_per_hour",
  "capital_gains",
  "capital_losses",
  "stock_dividends",
  "num_emp",
  "weeks_worked",
)
NOT_FEATURES = {
  "marital_stat": "it is the never_married label",
  "instance_weight": "it is a survey weight",
}
INCOME_VALUES = {"50000+.": 1, "- 50000.": 0}
NEVER_MARRIED = "Never married"
# Label columns this adapter derives, and the census field each comes from.
LABELS = {"income_50k": "income_50k", "is_never_married": "marital_stat"}

# Of the rows not in eval, every DEFAULT_VALIDATION_EVERY-th goes to
# validation when the spec does not say (data.params.validation_every).
DEFAULT_VALIDATION_EVERY = 10

_INDEX = {name: i for i, name in enumerate(CENSUS_FIELDS)}


def resolve_path(path: str | Path) -> Path:
  """An absolute path as is; a relative one against the repository root."""
  path = Path(path)
  return path if path.is_absolute() else (REPO_ROOT / path)


def _read_text(path: Path) -> str:
  try:
    with gzip.open(path, "rb") as f:
      return f.read().decode("utf-8")
  except (OSError, EOFError, UnicodeDecodeError) as e:  # not gzip, truncated, not text
    raise DataError(f"{path}: cannot read it as gzip-compressed text: {e}") from None


def _check_field_counts(path: Path, text: str) -> int:
  """Number of lines; raises naming the first line without 42 fields."""
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the newline that ends the last line
  expected = len(CENSUS_FIELDS) - 1
  counts = np.fromiter((line.count(",") for line in lines), dtype=np.int64, count=len(lines))
  bad = np.flatnonzero(counts != expected)
  if len(bad):
    i = int(bad[0])
    raise DataError(
      f"{path.name}: line {i + 1}: expected {len(CENSUS_FIELDS)} "
      f"comma-separated fields, got {counts[i] + 1}"
    )
  return len(lines)


def _parse_numbers(path: Path, values: pa.Array, column: str, dtype: str) -> np.ndarray:
  """Strictly numeric values; the error names the 1-based line number."""
  try:
    numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    ok = bool(np.isfinite(numbers).all()) and (
      dtype != "int" or bool((numbers == np.round(numbers)).all())
    )
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    ok = False
  if not ok:
    kind = "an integer" if dtype == "int" else "a number"
    for line, value in enumerate(values.to_pylist(), start=1):
      try:
        number = float(value)
      except ValueError:
        number = None
      if number is None or not np.isfinite(number) or (dtype == "int" and number != round(number)):
        raise DataError(f"{path.name}: line {line}, column {column}: {value!r} is not {kind}")
    raise DataError(f"{path.name}: column {column}: not all values are {kind}")
  return numbers.astype(np.int64 if dtype == "int" else np.float32)


def parse_census(path: str | Path, raw_columns: Mapping[str, str]) -> Dict[str, Any]:
  """Parses the census file into the columns of `raw_columns` (file order).

  Strings come back stripped as pyarrow string arrays, numbers as numpy
  float32/int64, labels as numpy int64 0/1.
  """
  path = Path(path)
  for column in raw_columns:
    if column in NOT_FEATURES:
      raise DataError(f"column {column!r} cannot be written as a feature: {NOT_FEATURES[column]}")
    if column not in _INDEX and column not in LABELS:
      raise DataError(
        f"column {column!r} is not a census field "
        f"(fields: {', '.join(CENSUS_FIELDS)}; labels: {', '.join(LABELS)})"
      )
  for column, dtype in raw_columns.items():
    if column in LABELS and dtype != "int":
      raise DataError(f"label column {column!r} must have dtype int (binary), got {dtype}")
  text = _read_text(path)
  num_lines = _check_field_counts(path, text)
  if num_lines:
    table = pcsv.read_csv(
      pa.BufferReader(text.encode("utf-8")),
      read_options=pcsv.ReadOptions(column_names=list(CENSUS_FIELDS), use_threads=False),
      parse_options=pcsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
      convert_options=pcsv.ConvertOptions(
        column_types={c: pa.string() for c in CENSUS_FIELDS},
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
      ),
    )
    if table.num_rows != num_lines:
      raise DataError(f"{path.name}: read {table.num_rows} rows from {num_lines} lines")
  else:
    table = pa.table({c: pa.array([], pa.string()) for c in CENSUS_FIELDS})

  def field(name: str) -> pa.Array:
    return pc.utf8_trim_whitespace(table[name].combine_chunks())

  columns: Dict[str, Any] = {}
  for column, dtype in raw_columns.items():
    if column in LABELS:
      continue
    if dtype == "string":
      columns[column] = field(column)
    else:
      columns[column] = _parse_numbers(path, field(column), column, dtype)

  if "income_50k" in raw_columns:
    income = field("income_50k")
    known = pc.is_in(income, value_set=pa.array(sorted(INCOME_VALUES))).to_numpy(
      zero_copy_only=False
    )
    if not known.all():
      line = int(np.flatnonzero(~known)[0])
      raise DataError(
        f"{path.name}: line {line + 1}, column income_50k: unknown income value "
        f"{income[line].as_py()!r} (expected one of {sorted(INCOME_VALUES)})"
      )
    columns["income_50k"] = (
      pc.equal(income, "50000+.").to_numpy(zero_copy_only=False).astype(np.int64)
    )
  if "is_never_married" in raw_columns:
    columns["is_never_married"] = (
      pc.equal(field("marital_stat"), NEVER_MARRIED).to_numpy(zero_copy_only=False).astype(np.int64)
    )
  return columns


def eval_mask(num_rows: int, eval_every: int) -> np.ndarray:
  """True for the rows that go to eval: i % eval_every == eval_every - 1."""
  if eval_every < 2:
    raise DataError(f"eval_every must be >= 2, got {eval_every}")
  return np.arange(num_rows) % eval_every == eval_every - 1


def split_masks(num_rows: int, eval_every: int, validation_every: int) -> Dict[str, np.ndarray]:
  """{train, validation, eval} row masks, disjoint and covering every row:
  eval as `eval_mask`; every `validation_every`-th of the other rows to
  validation."""
  if validation_every < 2:
    raise DataError(f"validation_every must be >= 2, got {validation_every}")
  is_eval = eval_mask(num_rows, eval_every)
  rest = np.flatnonzero(~is_eval)
  is_validation = np.zeros(num_rows, dtype=bool)
  is_validation[rest[np.arange(len(rest)) % validation_every == validation_every - 1]] = True
  return {
    TRAIN_SPLIT: ~is_eval & ~is_validation,
    VALIDATION_SPLIT: is_validation,
    EVAL_SPLIT: is_eval,
  }


def _file_sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_census(
  spec: RankingSpec, out_dir: str | Path, overwrite: bool = False
) -> Dict[str, Any]:
  """Writes span 1 of the census data under `out_dir`; returns a summary:
  {'source', 'out_dir', 'spans': [{span, rows: {train, validation, eval},
  positive_rate: {label: {train, validation, eval, all}}, skipped}], 'rows',
  'positive_rate'}.

  An existing complete span 1 is kept (fast no-op) unless `overwrite`.
  """
  if spec.data.source != "census":
    raise DataError(f"spec {spec.name!r} has data.source {spec.data.source!r}, not 'census'")
  params = dict(spec.data.params)
  unknown = sorted(set(params) - set(spec_lib.SOURCE_PARAMS["census"]))
  if unknown:
    raise DataError(
      f"census: unknown data.params {unknown} (known: {', '.join(spec_lib.SOURCE_PARAMS['census'])})"
    )
  if "path" not in params:
    raise DataError("census: data.params.path is required")
  path = resolve_path(params["path"])
  eval_every = int(params.get("eval_every", 5))
  validation_every = int(params.get("validation_every", DEFAULT_VALIDATION_EVERY))
  if not path.exists():
    raise DataError(
      f"census: {path} does not exist (data.params.path = "
      f"{params['path']!r}, relative to {REPO_ROOT})"
    )
  out_dir = Path(out_dir)
  columns_spec = spec.raw_columns
  started = time.time()
  fp = io.fingerprint(
    {
      "adapter": "census",
      "version": ADAPTER_VERSION,
      "file_sha256": _file_sha256(path),
      "eval_every": eval_every,
      "validation_every": validation_every,
      "columns": columns_spec,
    }
  )
  if not overwrite:
    existing = io.existing_span(out_dir, 1, fp)
    if existing is not None:
      summary = _summary(out_dir, [existing])
      print(f"census: {io.span_dir(out_dir, 1)} exists, skipped (overwrite=True to rewrite)")
      return summary

  columns = parse_census(path, columns_spec)
  n = len(next(iter(columns.values())))
  masks = split_masks(n, eval_every, validation_every)
  labels = [c for c in columns_spec if c in LABELS]
  span_summary: Dict[str, Any] = {
    "span": 1,
    "fingerprint": fp,
    "rows": {},
    "positive_rate": {label: {} for label in labels},
  }
  with io.atomic_span(out_dir, 1) as tmp:
    for split, mask in masks.items():
      part = {name: _take(values, mask) for name, values in columns.items()}
      io.write_examples(part, columns_spec, tmp / split / io.DATA_FILE)
      span_summary["rows"][split] = int(mask.sum())
      for label in labels:
        span_summary["positive_rate"][label][split] = _rate(part[label])
    for label in labels:
      span_summary["positive_rate"][label]["all"] = _rate(columns[label])
    io.write_span_summary(tmp, span_summary)
  summary = _summary(out_dir, [{**span_summary, "skipped": False}])
  rates = ", ".join(f"{label} {100 * summary['positive_rate'][label]:.2f} %" for label in labels)
  print(
    f"census: {n} rows -> {summary['rows']['train']} train / "
    f"{summary['rows']['validation']} validation / {summary['rows']['eval']} eval in {io.span_dir(out_dir, 1)} ({time.time() - started:.1f} s); positive rate: {rates}"
  )
  return summary


def _take(values: Any, mask: np.ndarray) -> Any:
  if isinstance(values, pa.Array):
    return values.filter(pa.array(mask))
  return values[mask]


def _rate(values: np.ndarray) -> float:
  return float(values.mean()) if len(values) else float("nan")


def _summary(out_dir: Path, spans: List[Dict[str, Any]]) -> Dict[str, Any]:
  rows = {split: sum(s.get("rows", {}).get(split, 0) for s in spans) for split in io.SPLITS}
  rates = (
    {label: by_split.get("all") for label, by_split in spans[0].get("positive_rate", {}).items()}
    if len(spans) == 1
    else {}
  )
  return {
    "source": "census",
    "out_dir": str(out_dir),
    "spans": spans,
    "rows": rows,
    "positive_rate": rates,
    "skipped": all(s.get("skipped") for s in spans),
  }


def main(argv: List[str] | None = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top

  from models.spec import load_spec  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(
    prog="python -m pipeline.data.census", description="Write the census span."
  )
  parser.add_argument("--spec", default="census")
  parser.add_argument("--out", required=True, help="write span 1 here")
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  prepare_census(load_spec(args.spec), Path(args.out), overwrite=args.overwrite)
  return 0


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top

  sys.exit(main())
