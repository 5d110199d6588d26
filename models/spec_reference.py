"""The spec reference page (docs/spec.md), generated from the spec's own
definitions so that it cannot drift: every section's fields with their type
and default are read from the dataclasses of `models.spec` and
`models.options`, each field's meaning from the comment on or above its line
there (or the class docstring's paragraph naming it), and which fields each
architecture reads from `options.ARCHITECTURE_FIELDS` and
`options.ARCHITECTURE_OPTIONS`.

    uv run --frozen python -m models.spec_reference > docs/spec.md

`tests/house/test_spec_reference.py` regenerates it and fails on a difference.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import sys
import tokenize
from typing import Any, Dict, List, Tuple

from models import options, spec

# (YAML path, dataclass, fields left out: set by the loader or by the path).
SECTIONS: Tuple[Tuple[str, Any, Tuple[str, ...]], ...] = (
  (
    "top level",
    spec.RankingSpec,
    ("features", "tasks", "model", "training", "evaluation", "data", "serving", "source_path"),
  ),
  ("data", spec.DataSpec, ()),
  ("data.split", spec.SplitSpec, ()),
  ("features[]", spec.FeatureSpec, ()),
  ("tasks[]", spec.TaskSpec, ()),
  ("model", spec.ModelSpec, ()),
  ("model.interaction", spec.InteractionSpec, ()),
  ("training", spec.TrainingSpec, ()),
  ("evaluation", spec.EvaluationSpec, ()),
  ("evaluation.thresholds.TASK.METRIC", spec.Threshold, ("task", "metric")),
  ("serving", spec.ServingSpec, ()),
  ("schedule", spec.ScheduleSpec, ()),
  ("retention", spec.RetentionSpec, ()),
  ("beam", spec.BeamSpec, ()),
)
# Defaults the loader derives from other fields (models/spec_parsing.py).
DERIVED_DEFAULTS: Dict[Tuple[str, str], str] = {
  ("FeatureSpec", "dtype"): "int for position; float for numeric, ground_truth; else string",
  ("FeatureSpec", "column"): "the feature's name",
  ("TaskSpec", "loss"): "bce (binary), mse (regression)",
  ("ServingSpec", "score"): "{first task: 1}",
  ("ServingSpec", "classify_task"): "the first task",
  ("RankingSpec", "schedule"): "none (no schedule)",
  ("RankingSpec", "retention"): "none (nothing is removed)",
}
# Choices of a field, from the spec's own tuples.
CHOICES: Dict[Tuple[str, str], Tuple[str, ...]] = {
  ("DataSpec", "source"): spec.DATA_SOURCES,
  ("DataSpec", "format"): spec.FILE_FORMATS,
  ("SplitSpec", "kind"): spec.SPLIT_KINDS,
  ("FeatureSpec", "kind"): spec.FEATURE_KINDS,
  ("FeatureSpec", "dtype"): spec.DTYPES,
  ("FeatureSpec", "encoding"): spec.CATEGORICAL_ENCODINGS,
  ("FeatureSpec", "transform"): spec.NUMERIC_TRANSFORMS,
  ("TaskSpec", "type"): spec.TASK_TYPES,
  ("TaskSpec", "label_transform"): spec.REGRESSION_LABEL_TRANSFORMS,
  ("TaskSpec", "without_parent"): spec.WITHOUT_PARENT_CHOICES,
  ("ModelSpec", "architecture"): options.BUILTIN_ARCHITECTURES,
  ("ModelSpec", "balancing"): spec.BALANCING_STRATEGIES,
  ("InteractionSpec", "kind"): spec.INTERACTION_KINDS,
  ("MGDAOptions", "normalization"): options.MGDA_NORMALIZATIONS,
  ("Threshold", "metric"): tuple(spec.THRESHOLD_DIRECTIONS),
}
_FIELD_LINE = re.compile(r"^\s+(\w+):\s")


def field_comments(cls: Any) -> Dict[str, str]:
  """{field: its comment}: the comment at the end of its line, else the block
  of comment lines right above it, in the class's source."""
  found: Dict[str, str] = {}
  for base in reversed(cls.__mro__[1:]):
    if dataclasses.is_dataclass(base):
      found.update(field_comments(base))
  source = inspect.getsource(cls)
  comments: Dict[int, str] = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      comments[token.start[0]] = token.string.lstrip("#").strip()
  lines = source.splitlines()
  for number, line in enumerate(lines, start=1):
    match = _FIELD_LINE.match(line)
    if not match:
      continue
    if number in comments and not line.lstrip().startswith("#"):
      found[match.group(1)] = comments[number]
      continue
    above, row = [], number - 1
    while row in comments and lines[row - 1].lstrip().startswith("#"):
      above.insert(0, comments[row])
      row -= 1
    if above:
      found[match.group(1)] = " ".join(above)
  return found


def docstring_meaning(cls: Any, name: str) -> str:
  """The paragraph of the class docstring that names `name` in backticks or
  opens with `name:`, joined into one line."""
  for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(cls.__doc__ or "")):
    text = " ".join(paragraph.split())
    if f"`{name}`" in text or text.startswith(f"{name}:"):
      return text
  return ""


def _default(cls: Any, field: dataclasses.Field) -> str:
  derived = DERIVED_DEFAULTS.get((cls.__name__, field.name))
  if derived:
    return derived
  if field.default is not dataclasses.MISSING:
    value = field.default
    if dataclasses.is_dataclass(value):
      return "see below"
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)
  if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
    return str(field.default_factory())  # type: ignore[misc]
  return "required"


def _type(cls: Any, field: dataclasses.Field) -> str:
  choices = CHOICES.get((cls.__name__, field.name))
  text = str(field.type).replace("Tuple[str, ...]", "list of str")
  text = text.replace("Tuple[Tuple[str, ...], ...]", "list of column lists")
  return f"{text}: {' | '.join(choices)}" if choices else text


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def field_rows(cls: Any, skip: Tuple[str, ...] = ()) -> List[Tuple[str, str, str, str]]:
  """(name, type, default, meaning) of each field of a dataclass."""
  comments = field_comments(cls)
  rows = []
  for field in dataclasses.fields(cls):
    if field.name in skip:
      continue
    meaning = comments.get(field.name) or docstring_meaning(cls, field.name)
    rows.append((field.name, _type(cls, field), _default(cls, field), meaning))
  return rows


def undocumented() -> List[str]:
  """Fields of the reference without a meaning (the test requires none)."""
  missing = []
  for path, cls, skip in SECTIONS:
    missing += [f"{path}.{name}" for name, _, _, meaning in field_rows(cls, skip) if not meaning]
  for kind in (*options.ARCHITECTURE_OPTIONS.values(), *options.BALANCER_OPTIONS.values()):
    missing += [f"{kind.__name__}.{n}" for n, _, _, meaning in field_rows(kind) if not meaning]
  return missing


def _builtin_architecture_options() -> Dict[str, Any]:
  """The shipped architectures' options, whatever else is registered in this process."""
  return {n: options.ARCHITECTURE_OPTIONS[n] for n in options.BUILTIN_ARCHITECTURES}


def _table(rows: List[Tuple[str, str, str, str]]) -> List[str]:
  if not rows:
    return ["(no fields)", ""]
  out = ["| field | type | default | meaning |", "|---|---|---|---|"]
  out += [f"| `{n}` | {_cell(t)} | {_cell(d)} | {_cell(m)} |" for n, t, d, m in rows]
  return out + [""]


def _architectures() -> List[str]:
  common = [f for f in (f.name for f in dataclasses.fields(spec.ModelSpec))]
  only = options.ARCHITECTURE_FIELDS
  out = [
    "## Which `model` fields each architecture reads",
    "",
    "Every architecture reads "
    + ", ".join(f"`{f}`" for f in common if f not in only and f != "architecture")
    + ". The others are read by some architectures only; given to another, "
    "they are an error at load. `model.params` takes the architecture's options.",
    "",
    "| architecture | also reads | `model.params` options |",
    "|---|---|---|",
  ]
  for name, kind in _builtin_architecture_options().items():
    fields = [f"`{f}`" for f, readers in only.items() if name in readers] or ["-"]
    params = [f"`{f.name}`" for f in dataclasses.fields(kind)]
    out.append(f"| `{name}` | {', '.join(fields)} | {', '.join(params)} |")
  out.append("")
  return out


def _options(title: str, kinds: Dict[str, Any], key: str) -> List[str]:
  out = [f"## `{key}`: {title}", ""]
  seen: Dict[Any, List[str]] = {}
  for name, kind in kinds.items():
    seen.setdefault(kind, []).append(name)
  for kind, names in seen.items():
    out += [f"### {', '.join(f'`{n}`' for n in names)} ({kind.__name__})", ""]
    out += _table(field_rows(kind))
  return out


def render() -> str:
  """The whole page, as docs/spec.md holds it."""
  out = [
    "# Spec reference",
    "",
    "<!-- Generated by `python -m models.spec_reference > docs/spec.md` from",
    "models/spec.py and models/options.py; tests/house/test_spec_reference.py",
    "fails when this page differs. Edit the definitions, not this page. -->",
    "",
    "A spec is a YAML file (`specs/*.yaml`) validated at load (`models/spec.py`):",
    "any field a section, a feature's kind, the architecture or the data source does",
    "not read is an error naming the file and the field. Columns present in the data",
    "but not declared are carried and never read (docs/files.md).",
    "",
  ]
  for path, cls, skip in SECTIONS:
    out += [f"## `{path}`", ""]
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc and not doc.startswith(f"{cls.__name__}("):
      out += [doc, ""]
    out += _table(field_rows(cls, skip))
  params = ", ".join(
    f"{source}: " + ", ".join(f"`{p}`" for p in names)
    for source, names in spec.SOURCE_PARAMS.items()
  )
  out += [f"`data.params` per bundled source: {params}.", ""]
  out += ["| source | param | meaning |", "|---|---|---|"]
  out += [f"| {src} | `{name}` | {note} |" for (src, name), note in spec.SOURCE_PARAM_NOTES.items()]
  out += [""]
  out += _architectures()
  out += _options("each architecture's options", _builtin_architecture_options(), "model.params")
  out += _options(
    "each balancing strategy's options", options.BALANCER_OPTIONS, "model.balancing_params"
  )
  return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
  sys.stdout.write(render())
