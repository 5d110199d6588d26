"""Runs a spec's pipeline locally (LocalDagRunner, Beam in memory) and summarises it.

`run(spec, paths)` prepares the bundled data when needed, writes the schema
derived from the spec, backfills the earlier spans of the training window
(ingestion and validation only), runs the full pipeline on the latest span,
and returns a `RunSummary`: per-task metrics on the eval split, whether the
model was blessed and why not, where it was pushed, each component's duration.
Progress goes to the console, one line per component; TFX's own log goes to
`<pipeline_root>/logs/`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, Tuple

from contract import EVAL_SPLIT, SPLITS, VALIDATION_SPLIT
from models.spec import RankingSpec
from pipeline import config, console, run_lock
from pipeline.data import prepare_data
from pipeline.data.errors import DataError, find_unreadable_record
from pipeline.schema import write_schema


class RunError(RuntimeError):
  """The run could not start or stopped; the message says why."""


@dataclasses.dataclass
class RunSummary:
  spec: str
  blessed: bool
  pushed_model_dir: str | None
  metrics: Dict[str, Dict[str, float]]
  component_seconds: Dict[str, float]
  wall_seconds: float
  not_blessed_reasons: List[str] = dataclasses.field(default_factory=list)
  already_pushed_version: int | None = None
  cached_components: List[str] = dataclasses.field(default_factory=list)
  pipeline_root: str = ""
  evaluation_uri: str | None = None
  # Overall slice, one entry per task and compared metric: multi_task,
  # single_task, delta (MTL - STL) and verdict; empty without the baseline.
  single_task_baseline: List[Dict[str, object]] = dataclasses.field(default_factory=list)
  training_spans: List[int] = dataclasses.field(default_factory=list)
  # The Examples artifact each span came from: {span, artifact_id, uri}.
  training_examples: List[Dict[str, object]] = dataclasses.field(default_factory=list)
  warm_start: Dict[str, object] | None = None
  # Per Trainer node, the epoch kept and each task's own best (models/selection.py).
  selection: Dict[str, Dict[str, object]] = dataclasses.field(default_factory=dict)
  # What retention removed (pipeline/retention.py); None without `retention`.
  retention: Dict[str, object] | None = None
  # Rows per split: train and validation over the training window, eval of
  # the newest span (pipeline.results.split_rows).
  split_rows: Dict[str, int] = dataclasses.field(default_factory=dict)
  # The split the Trainer selects on (early stopping, best epoch) and the one
  # TFMA reports and gates on.
  selection_split: str = VALIDATION_SPLIT
  evaluation_split: str = EVAL_SPLIT
  # Beam's mode and arguments; in portable mode the job server's jobs.
  beam: Dict[str, object] = dataclasses.field(default_factory=dict)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  def render(self) -> str:
    """The summary as the console shows it (pipeline.console)."""
    return console.render_summary(self)


def available_spans(data_dir: Path) -> List[int]:
  spans = []
  for path in data_dir.glob("span-*"):
    match = re.fullmatch(r"span-(\d+)", path.name)
    if match and path.is_dir():
      spans.append(int(match.group(1)))
  return sorted(spans)


def check_spans(spec: RankingSpec, data_dir: Path, span: int | None) -> List[int]:
  """The spans of the training window, oldest first; fails on a missing one."""
  spans = available_spans(data_dir)
  if not spans:
    raise RunError(f"no data: {data_dir} holds no span-<N> directory")
  latest = span if span is not None else spans[-1]
  window = [s for s in range(latest - spec.data.num_spans + 1, latest + 1) if s >= 1]
  for s in window:
    for split in SPLITS:
      split_dir = data_dir / f"span-{s}" / split
      if not split_dir.is_dir() or not any(p.is_file() for p in split_dir.iterdir()):
        raise RunError(
          f"span {s} is empty: {split_dir} holds no data files "
          f"(the spec trains on the latest {spec.data.num_spans} span(s))"
        )
  return window


@dataclasses.dataclass(frozen=True)
class BeamOptions:
  """How the Beam components run: `mode` `in_memory` (the FnApiRunner in this
  process) or `portable` (PortableRunner through a job server and a worker
  pool, pipeline/beam_portable.py, started here unless given), and extra Beam
  arguments after the spec's `beam.args` (a later flag wins)."""

  mode: str = "in_memory"
  args: Tuple[str, ...] = ()
  job_endpoint: str | None = None
  worker_pool: str | None = None
  workers: str = "threads"  # a started pool's SDK workers: threads or processes


def beam_pipeline_args(spec: RankingSpec, beam: BeamOptions) -> List[str]:
  """The default arguments of the mode, then the spec's, then the command line's."""
  from pipeline import beam_portable

  base = (
    beam_portable.portable_pipeline_args()
    if beam.mode == "portable"
    else list(config.BEAM_PIPELINE_ARGS)
  )
  return base + list(spec.beam.args) + list(beam.args)


def _run_tfx(pipeline, log_file: Path, progress: console.Progress, verbose: bool = False) -> None:
  """Runs `pipeline` (or builds it first, when given a function that does) with
  TFX's and the libraries' log (warnings included) in `log_file`; the console
  gets the progress lines, and with `verbose` the log too."""
  from absl import logging as absl_logging
  from tfx import v1 as tfx

  root = logging.getLogger()
  log_file.parent.mkdir(parents=True, exist_ok=True)
  file_handler = logging.FileHandler(log_file)
  file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  saved_verbosity, saved_root_level = absl_logging.get_verbosity(), root.level
  saved_root_handlers = list(root.handlers)
  # TFX logs through absl; keep its INFO stream out of the console.
  for handler in saved_root_handlers:
    root.removeHandler(handler)
  root.addHandler(file_handler)
  root.setLevel(logging.INFO)
  # Through absl's verbosity, not the absl logger's level: TensorFlow's
  # SavedModel export saves and restores that verbosity, which would otherwise
  # silence TFX's INFO lines (and this progress) after the first Trainer.
  absl_logging.set_verbosity(absl_logging.INFO)
  root.addHandler(progress)
  echo = logging.StreamHandler(sys.stderr) if verbose else None
  if echo is not None:
    root.addHandler(echo)
  # Python warnings (deprecations from Beam, TFMA, TF...) go to the log file,
  # and so does TensorFlow's logger, which has a console handler of its own.
  logging.captureWarnings(True)
  tf_logger = logging.getLogger("tensorflow")
  saved_tf_handlers, saved_tf_propagate = list(tf_logger.handlers), tf_logger.propagate
  for handler in saved_tf_handlers:
    tf_logger.removeHandler(handler)
  tf_logger.propagate = True
  try:
    tfx.orchestration.LocalDagRunner().run(pipeline() if callable(pipeline) else pipeline)
  finally:
    for handler in saved_tf_handlers:
      tf_logger.addHandler(handler)
    tf_logger.propagate = saved_tf_propagate
    logging.captureWarnings(False)
    if echo is not None:
      root.removeHandler(echo)
    root.removeHandler(progress)
    root.removeHandler(file_handler)
    for handler in saved_root_handlers:
      root.addHandler(handler)
    absl_logging.set_verbosity(saved_verbosity)
    root.setLevel(saved_root_level)


def run(
  spec: RankingSpec,
  paths: config.PipelinePaths,
  span: int | None = None,
  prepare: bool = True,
  enable_cache: bool = True,
  verbose: bool = False,
  wait: bool = False,
  beam: BeamOptions = BeamOptions(),
) -> RunSummary:
  """Runs the pipeline for `spec` on the latest span (or `span`), holding the
  pipeline root's run lock (`pipeline.run_lock`): a second run on the same
  root fails at once naming the holder, or with `wait` waits for it."""
  started = time.perf_counter()
  try:
    with run_lock.hold(
      paths.pipeline_root, wait=wait, on_wait=lambda m: print(f"[mtlrank] {m}", flush=True)
    ):
      return _run_locked(spec, paths, span, prepare, enable_cache, verbose, started, beam)
  except run_lock.RunLockedError as e:
    raise RunError(str(e)) from None


def _run_locked(
  spec: RankingSpec,
  paths: config.PipelinePaths,
  span: int | None,
  prepare: bool,
  enable_cache: bool,
  verbose: bool,
  started: float,
  beam: BeamOptions = BeamOptions(),
) -> RunSummary:
  from pipeline import beam_portable
  from pipeline.pipeline import create_pipeline

  if spec.data.source == "files":
    # Read in place by ExampleGen: only check, before building the pipeline,
    # that the files are there and hold the declared columns.
    from pipeline.data import files as files_source

    try:
      window = files_source.check_window(spec, span)
    except files_source.FilesSourceError as e:
      raise RunError(f"spec {spec.name!r}: {e}") from None
  else:
    if prepare:
      try:
        prepare_data(spec, paths.data_dir)
      except DataError as e:
        raise RunError(f"the {spec.name!r} data could not be prepared: {e}") from None
    window = check_spans(spec, paths.data_dir, span)
  paths.pipeline_root.mkdir(parents=True, exist_ok=True)
  write_schema(spec, str(paths.curated_schema_path))
  # One log file per run, even for runs started in the same second.
  log_file = (
    paths.pipeline_root / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
  )
  print(
    f"[mtlrank] spec {spec.name!r}: spans {window}, pipeline root "
    f"{paths.pipeline_root}, log {log_file}",
    flush=True,
  )
  progress = console.Progress()
  beam_args = beam_pipeline_args(spec, beam)
  build = functools.partial(
    create_pipeline,
    spec,
    paths,
    enable_cache=enable_cache,
    beam_pipeline_args=beam_portable.with_placeholders(beam_args),
  )
  beam_record: Dict[str, object] = {"mode": beam.mode, "args": beam_args}
  try:
    with beam_portable.maybe_portable(
      beam.mode, log_file.parent, beam.job_endpoint, beam.worker_pool, beam.workers
    ) as portable:
      for earlier in window[:-1]:
        _run_tfx(
          functools.partial(build, span=earlier, ingest_only=True), log_file, progress, verbose
        )
      _run_tfx(functools.partial(build, span=window[-1]), log_file, progress, verbose)
      if portable is not None:
        beam_record.update(
          workers=portable.workers,
          job_endpoint=portable.job_endpoint,
          worker_pool=portable.worker_pool,
          jobs=portable.jobs(),
        )
  except beam_portable.BeamServiceError as e:
    raise RunError(f"Beam's portable runner could not start: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise _stopped(spec, paths, window, e, log_file) from e
  summary = summarize(spec, paths, time.perf_counter() - started)
  summary.beam = beam_record
  summary.retention = _apply_retention(spec, paths, log_file)
  summary.wall_seconds = time.perf_counter() - started
  return summary


def _apply_retention(
  spec: RankingSpec, paths: config.PipelinePaths, log_file: Path
) -> Dict[str, object] | None:
  """The spec's retention after a successful run. A failure is reported, not
  raised: the run itself (and its push) succeeded."""
  from pipeline import retention

  try:
    report = retention.apply(spec, paths)
  except Exception as e:  # pylint: disable=broad-except
    with log_file.open("a") as f:
      f.write("\nretention failed:\n" + "".join(traceback.format_exception(e)))
    return {"error": f"{type(e).__name__}: {e}"}
  return report.to_dict() if report is not None else None


def _stopped(
  spec: RankingSpec, paths: config.PipelinePaths, window: List[int], error: Exception, log: Path
) -> RunError:
  """The one-line-per-cause error for a failed TFX run. The traceback goes to
  the run log. A component that failed on unreadable input (truncated or
  garbage TFRecords) gets the file and record named, found by reading the
  window's span files once, only now that something failed."""
  with log.open("a") as f:
    f.write("\n" + "".join(traceback.format_exception(error)))
  text = str(error).strip()
  lines = text.splitlines()
  # DataGate and the spec-derived checks write lists worth reading whole;
  # library errors (hex dumps, nested tracebacks) are cut to their first line.
  message = text if isinstance(error, (ValueError, RuntimeError)) and len(lines) < 40 else ""
  if not message:
    message = (lines[0] if lines else type(error).__name__)[:300]
  if spec.data.source != "files":
    files = [
      p
      for s in window
      for split in SPLITS
      for p in sorted((paths.data_dir / f"span-{s}" / split).glob("*"))
      if p.is_file()
    ]
    unreadable = find_unreadable_record(files)
    if unreadable is not None:
      message = f"a span file cannot be read: {unreadable}"
  return RunError(f"the {spec.name!r} pipeline stopped: {message}\n(full log: {log})")


def summarize(spec: RankingSpec, paths: config.PipelinePaths, wall_seconds: float) -> RunSummary:
  """Reads the latest full run's outcome from MLMD and the artifacts."""
  from pipeline import results

  outcome = results.latest_run(paths.metadata_path)
  metrics = results.task_metrics(spec, outcome.evaluation_uri) if outcome.evaluation_uri else {}
  comparisons = (
    results.compare_with_single_task(spec, outcome.evaluation_uri)
    if outcome.evaluation_uri and outcome.single_task_evaluation_uri
    else []
  )
  return RunSummary(
    spec=spec.name,
    blessed=outcome.blessed,
    pushed_model_dir=outcome.pushed_dir,
    metrics=metrics,
    component_seconds=outcome.component_seconds,
    wall_seconds=wall_seconds,
    not_blessed_reasons=outcome.not_blessed_reasons,
    already_pushed_version=outcome.already_pushed_version,
    cached_components=outcome.cached_components,
    pipeline_root=str(paths.pipeline_root),
    evaluation_uri=outcome.evaluation_uri,
    training_spans=outcome.training_spans,
    training_examples=outcome.training_examples,
    split_rows=results.split_rows(outcome.training_examples),
    warm_start=outcome.warm_start,
    selection=outcome.selection,
    single_task_baseline=[
      {
        "task": c.task,
        "metric": c.metric,
        "multi_task": c.multi_task,
        "single_task": c.single_task,
        "delta": c.delta,
        "delta_lower": c.delta_lower,
        "delta_upper": c.delta_upper,
        "verdict": c.verdict,
      }
      for c in comparisons
      if c.slice == "overall"
    ],
  )
