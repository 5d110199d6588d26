"""The spec's `data` section: the bundled sources and the files source's
format, root, pattern (TFX's {SPAN}, {YYYY}{MM}{DD}, {VERSION} placeholders),
columns and split rule, validated at load."""

from __future__ import annotations

import re
from typing import Mapping, Tuple

from models.spec import (
  DATA_SOURCES,
  FILE_FORMATS,
  SOURCE_PARAMS,
  SPLIT_KINDS,
  DataSpec,
  SplitSpec,
)
from models.spec_fields import Fields as _Fields

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SPAN_TOKEN = re.compile(r"SPAN(:\d+)?")
_VERSION_TOKEN = re.compile(r"VERSION(:\d+)?")
_DATE_TOKENS = ("YYYY", "MM", "DD")
_FILE_FIELDS = ("format", "root", "pattern", "columns", "split")


def parse_data(f: _Fields, raw_columns: Mapping[str, str] | None = None) -> DataSpec:
  source = f.get("source", str, required=True, choices=DATA_SOURCES)
  num_spans = f.get("num_spans", int, default=1)
  if num_spans < 1:
    f.fail("must be >= 1", "num_spans")
  if source != "files":
    spec = DataSpec(source=source, params=f.get("params", dict, default={}), num_spans=num_spans)
    unknown = sorted(set(spec.params) - set(SOURCE_PARAMS[source]))
    if unknown:
      f.fail(
        f"{source} reads no {', '.join(unknown)} (its params: {', '.join(SOURCE_PARAMS[source])})",
        f"params.{unknown[0]}",
      )
    for key in _FILE_FIELDS:
      if key in f.raw:
        f.fail(f"only data.source files takes {key} (source is {source!r})", key)
    f.done()
    return spec
  if "params" in f.raw:
    f.fail(
      "data.source files takes no params (use format, root, pattern, columns, split)", "params"
    )
  file_format = f.get("format", str, required=True, choices=FILE_FORMATS)
  root = f.get("root", str, required=True)
  pattern = f.get("pattern", str, default="")
  columns = f.get("columns", list, default=[])
  split = _parse_split(_Fields(f.get("split", dict, required=True), "data.split", f.origin))
  f.done()
  raw_columns = dict(raw_columns or {})
  if not root.strip():
    f.fail("must name the directory that holds the files", "root")
  if split.kind == "patterns":
    if pattern:
      f.fail(
        "give either split.train and split.eval (kind patterns) or pattern, not both", "pattern"
      )
    where = {"split.train": split.train, "split.eval": split.eval}
    if split.validation:
      where["split.validation"] = split.validation
  else:
    if not pattern:
      f.fail(
        f"is required with split kind {split.kind!r} (one pattern, split by ExampleGen)", "pattern"
      )
    where = {"pattern": pattern}
  placeholders = {key: _pattern_placeholders(f, key, value) for key, value in where.items()}
  if len(set(placeholders.values())) > 1:
    odd = next(k for k in where if placeholders[k] != placeholders["split.train"])
    f.fail("split.train, split.validation and split.eval must have the same placeholders", odd)
  has_span = next(iter(placeholders.values()))[0]
  if num_spans > 1 and not has_span:
    f.fail(
      f"num_spans {num_spans} needs spans: give the pattern a {{SPAN}} or {{YYYY}}{{MM}}{{DD}} "
      "placeholder",
      "num_spans",
    )
  if columns:
    if file_format != "csv":
      f.fail(f"only a headerless csv takes columns (format is {file_format!r})", "columns")
    if not all(isinstance(c, str) and c for c in columns):
      f.fail("must be a list of column names", "columns")
    if len(set(columns)) != len(columns):
      twice = sorted({c for c in columns if columns.count(c) > 1})
      f.fail(f"{', '.join(twice)} listed twice", "columns")
    missing = [c for c in raw_columns if c not in columns]
    if missing:
      f.fail(
        f"the spec reads column(s) {', '.join(missing)}, which columns does not list", "columns"
      )
  if split.column:
    if split.column not in raw_columns:
      f.fail(
        f"{split.column!r} is not a declared column (features' columns and labels: "
        f"{', '.join(raw_columns)})",
        "split.column",
      )
    if split.kind == "time" and raw_columns[split.column] == "string":
      f.fail(f"{split.column!r} must be a numeric timestamp (int or float)", "split.column")
  return DataSpec(
    source=source,
    num_spans=num_spans,
    format=file_format,
    root=root,
    pattern=pattern,
    columns=tuple(columns),
    split=split,
  )


def _parse_split(f: _Fields) -> SplitSpec:
  kind = f.get("kind", str, required=True, choices=SPLIT_KINDS)
  allowed = {
    "patterns": ("train", "validation", "eval", "column", "validation_percent"),
  }.get(kind, ("column", "eval_percent", "validation_percent"))
  for key in ("train", "validation", "eval", "column", "eval_percent", "validation_percent"):
    if key in f.raw and key not in allowed:
      f.fail(f"split kind {kind!r} takes {', '.join(allowed)}, not {key}", key)
  eval_percent = f.get("eval_percent", int, default=20)
  validation = f.get("validation", str, default="")
  if kind == "patterns":
    default_validation = 10
    for key in ("validation_percent", "column"):
      if validation and key in f.raw:
        f.fail(
          f"give either split.validation (a pattern) or {key} (validation carved out of "
          "train), not both",
          key,
        )
  else:
    default_validation = max(1, round(0.1 * (100 - eval_percent)))
  spec = SplitSpec(
    kind=kind,
    train=f.get("train", str, required=kind == "patterns", default=""),
    validation=validation,
    eval=f.get("eval", str, required=kind == "patterns", default=""),
    column=f.get("column", str, required=kind != "patterns", default=""),
    eval_percent=eval_percent,
    validation_percent=f.get("validation_percent", int, default=default_validation),
  )
  f.done()
  if not 1 <= spec.eval_percent <= 99:
    f.fail(f"must be in 1..99, got {spec.eval_percent}", "eval_percent")
  if kind == "patterns" and not 1 <= spec.validation_percent <= 99:
    f.fail(f"must be in 1..99, got {spec.validation_percent}", "validation_percent")
  if kind != "patterns" and not 1 <= spec.validation_percent <= 99 - spec.eval_percent:
    f.fail(
      f"must be in 1..{99 - spec.eval_percent} (100 - eval_percent - 1, train keeps the rest), "
      f"got {spec.validation_percent}",
      "validation_percent",
    )
  return spec


def _pattern_placeholders(f: _Fields, key: str, pattern: str) -> Tuple[bool, bool, bool]:
  """(has a span, is a date, has a version) of a TFX file pattern; fails on a
  placeholder TFX does not know or a combination it refuses."""
  if not pattern.strip():
    f.fail("must be a file pattern", key)
  tokens = _PLACEHOLDER.findall(pattern)
  for token in tokens:
    if not (_SPAN_TOKEN.fullmatch(token) or _VERSION_TOKEN.fullmatch(token)) and (
      token not in _DATE_TOKENS
    ):
      f.fail(
        f"unknown placeholder {{{token}}} in {pattern!r} (TFX's: {{SPAN}}, {{SPAN:width}}, "
        "{YYYY}{MM}{DD}, {VERSION}, {VERSION:width})",
        key,
      )
  spans = [t for t in tokens if _SPAN_TOKEN.fullmatch(t)]
  versions = [t for t in tokens if _VERSION_TOKEN.fullmatch(t)]
  dates = [t for t in tokens if t in _DATE_TOKENS]
  if len(spans) > 1 or len(versions) > 1:
    f.fail(f"{{SPAN}} and {{VERSION}} may each appear once in {pattern!r}", key)
  if dates and sorted(dates) != sorted(_DATE_TOKENS):
    f.fail(f"a date needs {{YYYY}}, {{MM}} and {{DD}}, each once, in {pattern!r}", key)
  if spans and dates:
    f.fail(f"give {{SPAN}} or a date, not both, in {pattern!r}", key)
  if versions and not (spans or dates):
    f.fail(f"{{VERSION}} needs a {{SPAN}} or a date in {pattern!r}", key)
  return bool(spans or dates), bool(dates), bool(versions)
