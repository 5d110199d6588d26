"""Constants and paths of the pipeline room, in one place."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, List, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = Path(".mtlrank")
METADATA_FILE = "metadata.sqlite"
CURATED_SCHEMA_FILE = "schema.pbtxt"

# Beam: the in-memory FnApiRunner with one worker. DirectRunner would first
# try to fetch the Prism runner (offline: ~9 s lost per Beam job), and two
# workers on two cores were slower than one in memory.
BEAM_PIPELINE_ARGS: List[str] = [
  "--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner",
  "--direct_running_mode=in_memory",
  "--direct_num_workers=1",
]

# TFX's Beam executors ship TFX to remote workers: unless one of these flags is
# given, each one's constructor copies the installed tfx tree to a fresh /tmp
# directory and builds an sdist of it (`dependency_utils.
# make_beam_dependency_flags`: ~1.3 s and 42 MB per Beam component, never
# removed). Workers in this environment (the in-process runner, or an external
# worker pool, which installs no staged package) have no use for it.
TFX_DEPENDENCY_FLAGS = (
  "extra_packages",
  "setup_file",
  "requirements_file",
  "worker_harness_container_image",
  "sdk_container_image",
)
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")
# The flag that says so: an image name Beam only reads for Docker workers.
LOCAL_WORKERS_FLAG = "--sdk_container_image=mtlrank-workers-in-this-environment"


def _flag(args: Sequence[Any], name: str) -> str | None:
  """The last value of `--name=value` in `args` (a later flag wins, as in Beam)."""
  value = None
  for arg in args:
    if isinstance(arg, str) and arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
  return value


def with_local_workers(args: Sequence[Any]) -> List[Any]:
  """`args`, plus LOCAL_WORKERS_FLAG when the Beam workers run in this
  environment and no dependency flag is given, so TFX builds no package."""
  args = list(args)
  runner = (_flag(args, "runner") or "DirectRunner").rsplit(".", 1)[-1]
  local = runner in LOCAL_RUNNERS or (
    runner == "PortableRunner" and _flag(args, "environment_type") in ("EXTERNAL", "LOOPBACK")
  )
  given = any(
    isinstance(a, str)
    and a.split("=", 1)[0].lstrip("-") in (*TFX_DEPENDENCY_FLAGS, "extra_package")
    for a in args
  )
  return args + [LOCAL_WORKERS_FLAG] if local and not given else args


@dataclasses.dataclass(frozen=True)
class PipelinePaths:
  """Where one spec's run keeps its data, artifacts, metadata and pushes."""

  data_dir: Path
  pipeline_root: Path
  serving_dir: Path

  @classmethod
  def for_spec(cls, spec_name: str, home: Path = DEFAULT_HOME) -> PipelinePaths:
    home = home.resolve()
    return cls(
      data_dir=home / "data" / spec_name,
      pipeline_root=home / "pipelines" / spec_name,
      serving_dir=home / "serving",
    )

  @property
  def metadata_path(self) -> Path:
    return self.pipeline_root / METADATA_FILE

  @property
  def curated_schema_path(self) -> Path:
    return self.pipeline_root / "curated_schema" / CURATED_SCHEMA_FILE

  def model_base_path(self, model_name: str) -> Path:
    """TF Serving's `--model_base_path`: version directories live here."""
    return self.serving_dir / model_name
