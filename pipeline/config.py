"""Constants and paths of the pipeline room, in one place."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

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
