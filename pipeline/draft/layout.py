"""Where a user's logs are and how they are laid out: `mtlrank init --data` (a
file, a directory, a glob or a TFX pattern) as the files source's `format`,
`root` and `pattern`, with the span of each file as a TFX placeholder
(`{YYYY}{MM}{DD}` for a day directory or file name, `{SPAN}` for `span-N`).

Pure Python: the spans are then counted with TFX's own matching
(`pipeline.data.files.span_files`) on the drafted spec."""

from __future__ import annotations

import dataclasses
import datetime
import glob as globlib
import os
import re
from pathlib import Path
from typing import List, Sequence, Tuple

FORMAT_BY_SUFFIX = {
  ".csv": "csv",
  ".txt": "csv",
  ".parquet": "parquet",
  ".pq": "parquet",
  ".tfrecord": "tfrecord",
  ".tfrecords": "tfrecord",
  ".tfr": "tfrecord",
}
_TFX_PLACEHOLDER = re.compile(r"\{(SPAN(:\d+)?|VERSION(:\d+)?|YYYY|MM|DD)\}")
_DATE = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_SPAN = re.compile(r"(?i)(span[-_=]?)(\d+)(?!\d)")
_WILDCARDS = re.compile(r"[*?\[]")


class LayoutError(ValueError):
  """`--data` names no readable file; the message says what was looked for."""


@dataclasses.dataclass(frozen=True)
class Layout:
  """The files source's fields for the data found, and the files behind them."""

  format: str
  root: Path
  pattern: str
  files: Tuple[Path, ...]
  # What was generalised into a placeholder, for the printed reasons.
  placeholder: str = ""
  # Train and eval patterns, when the files are already split by name
  # (train/ and eval/ directories, *_train.csv and *_test.csv); else empty.
  split_patterns: Tuple[Tuple[str, str], ...] = ()


def find_layout(data: str, file_format: str | None = None) -> Layout:
  """The format, root and pattern of `data`: a file (span 0 unless its path
  names a day or span), a directory (its files, recursively), a glob, or a
  pattern with TFX's placeholders (kept as given)."""
  if _TFX_PLACEHOLDER.search(data):
    root, pattern = _split_static_prefix(data)
    files = _glob(str(root / _TFX_PLACEHOLDER.sub("*", pattern)))
    if not files:
      raise LayoutError(f"no file matches {data}")
    return Layout(_format(files, file_format), root, pattern, tuple(files), "as given")
  path = Path(data).expanduser()
  if _WILDCARDS.search(data):
    root, _ = _split_static_prefix(data)
    files = _glob(str(path))
  elif path.is_dir():
    root = path
    files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
    files = [p for p in files if p.suffix.lower() in FORMAT_BY_SUFFIX] or files
  elif path.is_file():
    root, files = path.parent, [path]
  else:
    raise LayoutError(f"{data}: no such file or directory")
  if not files:
    raise LayoutError(f"no file matches {data}")
  fmt = _format(files, file_format)
  root = root.resolve()
  relative = [p.resolve().relative_to(root).as_posix() for p in files]
  pattern, placeholder = generalise(relative)
  return Layout(
    fmt, root, pattern, tuple(p.resolve() for p in files), placeholder, split_by_name(relative)
  )


_SPLIT_WORD = re.compile(r"(?i)(?<![a-z])(train|training|eval|validation|valid|val|test)(?![a-z])")
# Which split a held-out file's word names: test (or eval) is the eval split,
# val/valid/validation the validation split. Files named only val beside train
# are the eval split (validation is then carved out of train).
_EVAL_WORDS = ("eval", "test")
_VALIDATION_WORDS = ("validation", "valid", "val")


def split_by_name(relative: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
  """(("train", pattern), ["validation", pattern,] ("eval", pattern)) when one
  path component names the split in every file (train; val/valid/validation;
  test/eval), each pattern generalised as `generalise` does and with the same
  placeholder; else ()."""
  parts = [r.split("/") for r in relative]
  if len({len(p) for p in parts}) != 1:
    return ()
  for i in range(len(parts[0])):
    words = {p[i]: _SPLIT_WORD.search(p[i]) for p in parts}
    if len(words) < 2 or not all(words.values()):
      continue
    kinds = {v: m.group(1).lower() for v, m in words.items()}
    train = [v for v, k in kinds.items() if k.startswith("train")]
    evaluation = sorted(v for v, k in kinds.items() if k in _EVAL_WORDS)
    validation = sorted(v for v, k in kinds.items() if k in _VALIDATION_WORDS)
    if not evaluation and validation:
      evaluation, validation = validation, []
    if len(train) != 1 or len(evaluation) != 1 or len(validation) > 1:
      continue
    chosen = {"train": train[0], **({"validation": validation[0]} if validation else {})}
    chosen["eval"] = evaluation[0]
    patterns = {
      name: generalise([r for r, p in zip(relative, parts) if p[i] == value])
      for name, value in chosen.items()
    }
    if len({placeholder for _, placeholder in patterns.values()}) != 1:
      continue
    result = []
    for name, (pattern, _) in patterns.items():
      components = pattern.split("/")
      components[i] = chosen[name]  # the split's own name, never generalised away
      result.append((name, "/".join(components)))
    return tuple(result)
  return ()


def generalise(relative: Sequence[str]) -> Tuple[str, str]:
  """One TFX pattern for files given relative to the root: the directory
  components kept (a day as `{YYYY}{MM}{DD}`, `span-N` as `span-{SPAN}`), the
  file names as `*.ext` when they differ, and which placeholder was used."""
  parts = [r.split("/") for r in relative]
  depth = len(parts[0])
  if any(len(p) != depth for p in parts):
    suffix = Path(relative[0]).suffix
    return "**/*" + suffix if suffix else "**/*", ""
  pattern, placeholder = [], ""
  for i in range(depth):
    values = sorted({p[i] for p in parts})
    is_name = i == depth - 1
    generic, kind = _component(values, allow_span=not placeholder)
    if kind:
      placeholder = kind
    elif is_name and (len(values) > 1 or placeholder):
      # Logging jobs write a varying number of parts per span.
      generic = _glob_name(values)
    elif len(values) > 1:
      generic = "*"
    pattern.append(generic)
  return "/".join(pattern), placeholder


def _component(values: List[str], allow_span: bool) -> Tuple[str, str]:
  """A path component as a placeholder when every value carries a valid date
  (or a `span-N`) at the same place with the same text around it."""
  if not allow_span:
    return values[0], ""
  for regex, kind in ((_DATE, "{YYYY}{MM}{DD}"), (_SPAN, "{SPAN}")):
    found = [regex.search(v) for v in values]
    if not all(found):
      continue
    if kind == "{YYYY}{MM}{DD}" and not all(_is_date(m.group(1)) for m in found):
      continue
    shapes = {(v[: m.start()], v[m.end() :]) for v, m in zip(values, found)}
    if len(shapes) != 1:
      continue
    before, after = shapes.pop()
    if kind == "{SPAN}":
      return f"{before}{found[0].group(1)}{{SPAN}}{after}", kind
    return f"{before}{{YYYY}}{{MM}}{{DD}}{after}", kind
  return values[0], ""


def _is_date(text: str) -> bool:
  try:
    day = datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
  except ValueError:
    return False
  return 1970 <= day.year <= 2100


def _glob_name(names: Sequence[str]) -> str:
  suffixes = {Path(n).suffix for n in names}
  return f"*{suffixes.pop()}" if len(suffixes) == 1 else "*"


def _split_static_prefix(data: str) -> Tuple[Path, str]:
  """The directory before the first wildcard or placeholder, and the rest."""
  parts = Path(data).expanduser().parts
  for i, part in enumerate(parts):
    if _WILDCARDS.search(part) or _TFX_PLACEHOLDER.search(part):
      return Path(*parts[:i]).resolve() if i else Path.cwd(), "/".join(parts[i:])
  return Path(*parts[:-1]).resolve(), parts[-1]


def _glob(pattern: str) -> List[Path]:
  return sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))


def _hidden(path: Path, root: Path) -> bool:
  return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _format(files: Sequence[Path], given: str | None) -> str:
  if given:
    return given
  found = {FORMAT_BY_SUFFIX.get(p.suffix.lower()) for p in files}
  if len(found) == 1 and None not in found:
    return found.pop()
  suffixes = ", ".join(sorted({p.suffix or "(none)" for p in files}))
  raise LayoutError(
    f"cannot tell the format from the file suffixes ({suffixes}): give --format csv, "
    "parquet or tfrecord"
  )
