"""The spec's operational sections: `retention` (what a run may delete after it
finishes) and `beam` (the Beam pipeline arguments of every Beam component).

Neither changes what a model learns: `RankingSpec.transform_view` and
`trainer_view` drop them, so editing them keeps every cache.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

DEFAULT_KEEP_PUSHED_VERSIONS = 5
DEFAULT_KEEP_RUNS = 10


@dataclasses.dataclass(frozen=True)
class RetentionSpec:
  """After each run: keep the newest `keep_pushed_versions` versions in the
  serving directory and the artifacts of the newest `keep_runs` runs under the
  pipeline root (pipeline/retention.py). Whatever the counts, the version being
  served (the highest valid one, or those `serving_model_config` pins) and the
  latest blessed model, the next run's baseline, are never removed. Without the
  section nothing is removed."""

  keep_pushed_versions: int = DEFAULT_KEEP_PUSHED_VERSIONS  # newest pushed versions kept
  keep_runs: int = DEFAULT_KEEP_RUNS  # newest runs whose pipeline artifacts are kept
  # A TF Serving ModelServerConfig text proto whose `specific` version policy
  # pins versions that must stay (optional).
  serving_model_config: str = ""


@dataclasses.dataclass(frozen=True)
class BeamSpec:
  """Beam pipeline arguments appended to the defaults (the in-memory
  FnApiRunner, pipeline.config.BEAM_PIPELINE_ARGS): a later flag wins, so
  `--runner=DataflowRunner` with its project, region and temp_location moves
  every Beam component to Dataflow (docs/pipeline.md)."""

  # Beam flags after the defaults, e.g. ["--runner=DataflowRunner", "--project=P"].
  args: Tuple[str, ...] = ()


def parse_retention(f) -> RetentionSpec:
  """`f`: the section's fields reader (models.spec_fields.Fields)."""
  spec = RetentionSpec(
    keep_pushed_versions=f.get("keep_pushed_versions", int, default=DEFAULT_KEEP_PUSHED_VERSIONS),
    keep_runs=f.get("keep_runs", int, default=DEFAULT_KEEP_RUNS),
    serving_model_config=f.get("serving_model_config", str, default=""),
  )
  f.done()
  for key in ("keep_pushed_versions", "keep_runs"):
    if getattr(spec, key) < 1:
      f.fail(
        f"must be >= 1 (drop the retention section to keep everything), got {getattr(spec, key)}",
        key,
      )
  return spec


def parse_beam(f) -> BeamSpec:
  """`f`: the section's fields reader (models.spec_fields.Fields)."""
  args = f.get("args", list, default=[])
  f.done()
  for i, arg in enumerate(args):
    if not isinstance(arg, str) or not arg.startswith("--"):
      f.fail(f"must be a flag string such as '--direct_num_workers=2', got {arg!r}", f"args[{i}]")
  return BeamSpec(args=tuple(args))
