"""`mtlrank schedule kubeflow`: the pipeline compiled for Kubeflow Pipelines v2 / Vertex AI.

The same `pipeline.pipeline.create_pipeline`, compiled by TFX's
`KubeflowV2DagRunner` into a PipelineJob JSON (needs the `kubeflow` extra:
`kfp-pipeline-spec`). One difference from the local runner, forced by the
compiler, which supports only TFX's LatestArtifactStrategy (one artifact) and
LatestBlessedModelStrategy resolvers, and plain channels as inputs (no
resolver functions, no unions): the training window is the run's own span.
Transform reads this run's ExampleGen output (`run_span_window`), so a run
trains on one span whatever `data.num_spans` says; the local runner's
latest-spans resolver (components/span_window.py) and its backfill of the
window's earlier spans have no Kubeflow counterpart here.

Paths may be URIs (`gs://bucket/...`): they are joined as strings, never as
local paths. The schema derived from the spec is written to the pipeline
root's `curated_schema/schema.pbtxt`, where ImportSchemaGen reads it at run
time. The image must hold this repository installed over TFX 1.16 (the
components load `models.features.preprocessing_fn`, `models.trainer.run_fn`
and the custom executors by their module paths).
"""

from __future__ import annotations

import dataclasses
import posixpath
from pathlib import Path
from typing import List

from models.spec import RankingSpec
from pipeline import config


@dataclasses.dataclass(frozen=True)
class UriPaths:
  """`config.PipelinePaths` for URIs: the same properties, joined as strings
  (a `Path` would turn `gs://b` into `gs:/b`)."""

  data_dir: str
  pipeline_root: str
  serving_dir: str

  @property
  def metadata_path(self) -> str:
    # Unused on Kubeflow (the orchestrator keeps its own ML Metadata).
    return posixpath.join(self.pipeline_root, config.METADATA_FILE)

  @property
  def curated_schema_path(self) -> str:
    return posixpath.join(self.pipeline_root, "curated_schema", config.CURATED_SCHEMA_FILE)

  def model_base_path(self, model_name: str) -> str:
    return posixpath.join(self.serving_dir, model_name)


def _uri(text: str) -> str:
  """A URI as given; a local path made absolute (the containers see no cwd)."""
  return text.rstrip("/") if "://" in text else str(Path(text).resolve())


def uri_paths(spec: RankingSpec, home: str, data_dir=None, pipeline_root=None, serving_dir=None):
  """The run's locations: `home`'s layout (config.PipelinePaths) unless given."""
  home = _uri(home)
  return UriPaths(
    data_dir=_uri(data_dir) if data_dir else posixpath.join(home, "data", spec.name),
    pipeline_root=_uri(pipeline_root)
    if pipeline_root
    else posixpath.join(home, "pipelines", spec.name),
    serving_dir=_uri(serving_dir) if serving_dir else posixpath.join(home, "serving"),
  )


def compile_pipeline(
  spec: RankingSpec,
  paths: UriPaths,
  image: str,
  out: Path,
  beam_pipeline_args: List[str] | None = None,
  write_schema: bool = True,
) -> Path:
  """Compiles the spec's pipeline to `out` (a PipelineJob JSON) and returns it."""
  from tfx import v1 as tfx

  from pipeline.pipeline import create_pipeline
  from pipeline.schema import write_schema as write_schema_file

  if write_schema:
    write_schema_file(spec, paths.curated_schema_path)
  pipeline = create_pipeline(
    spec, paths, beam_pipeline_args=beam_pipeline_args, run_span_window=True
  )
  out = Path(out).resolve()
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
    config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
    output_dir=str(out.parent),
    output_filename=out.name,
  )
  runner.run(pipeline)
  return out
