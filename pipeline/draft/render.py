"""The drafted spec as YAML a user reads: one line per feature and task with
its reason as a comment above it, and the release thresholds as commented
suggestions under the one active sanity floor. `render` is checked to load
back to the very dict it was given (`compose` and the tests)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import yaml

from pipeline.draft.decide import Draft

_SECTIONS = ("model", "training", "serving")


def flow(value: Any) -> str:
  """One value as a single line of flow-style YAML (quoted where needed)."""
  text = yaml.safe_dump([value], default_flow_style=True, width=10_000, sort_keys=False)
  return text.strip()[1:-1]


def _mapping(name: str, values: Mapping[str, Any], indent: str = "") -> List[str]:
  lines = [f"{indent}{name}:"]
  lines += [f"{indent}  {key}: {flow(value)}" for key, value in values.items()]
  return lines


def render(raw: Dict[str, Any], draft: Draft, header: Sequence[str] = ()) -> str:
  """The YAML text of the drafted spec `raw`, commented from `draft`."""
  lines = [f"# {line}" if line else "#" for line in header]
  lines += [f"name: {flow(raw['name'])}", f"description: {flow(raw['description'])}", ""]
  lines += _mapping("data", raw["data"]) + [""]
  lines.append("features:")
  for feature in raw["features"]:
    lines.append(f"  # {draft.feature_reasons.get(feature['name'], '')}".rstrip())
    lines.append(f"  - {flow(feature)}")
  lines += ["", "tasks:"]
  task_reasons = _task_reasons(draft)
  for task in raw["tasks"]:
    for why in task_reasons.get(task["label"], []):
      lines.append(f"  # {why}")
    lines.append(f"  - {flow(task)}")
  lines.append("")
  for section in _SECTIONS[:2]:
    lines += _mapping(section, raw[section]) + [""]
  lines += _evaluation(raw["evaluation"], draft) + [""]
  lines += _mapping("serving", raw["serving"])
  return "\n".join(lines) + "\n"


def _task_reasons(draft: Draft) -> Dict[str, List[str]]:
  reasons: Dict[str, List[str]] = {}
  for d in draft.decisions:
    if d.field.startswith("task "):
      reasons.setdefault(d.field[len("task ") :].strip("'\""), []).append(f"{d.choice}: {d.why}")
  return reasons


def _evaluation(evaluation: Mapping[str, Any], draft: Draft) -> List[str]:
  rest = {k: v for k, v in evaluation.items() if k != "thresholds"}
  lines = _mapping("evaluation", rest)
  lines += [
    "  thresholds:",
    "    # A sanity floor only: TFMA blesses no model without a threshold. Replace it with",
    "    # release thresholds once a run's metrics are known; suggested from the sample",
    "    # (log loss: the base rate's entropy; mse: the label's variance, what predicting",
    "    # the mean scores):",
  ]
  lines += [f"    {task}: {flow(bounds)}" for task, bounds in evaluation["thresholds"].items()]
  lines += [f"    # {task}: {flow(bounds)}" for task, bounds in draft.suggested_thresholds.items()]
  return lines
