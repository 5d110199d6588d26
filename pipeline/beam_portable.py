"""Beam beyond one process: a job server and an external worker pool on loopback.

`mtlrank run --beam portable` runs every Beam component (ExampleGen,
StatisticsGen, Transform, the Evaluators) through Beam's PortableRunner: the
job-submission path Flink, Spark and Dataflow take. `PortableBeam` starts (or
connects to) Beam's local job service (`local_job_service_main`) and a worker
pool (`worker_pool_main`, `--environment_type=EXTERNAL`) and stops what it
started on exit, with each process's group so no SDK worker outlives it.

The worker pool starts each SDK worker as the first `python` on PATH, so the
pool runs with this interpreter's bin directory first. The endpoints reach the
components through environment-variable placeholders: the ports are chosen at
run time, while the Beam arguments (part of TFX's cache key) stay the same from
run to run, so portable runs keep each other's cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

JOB_ENDPOINT_ENV = "MTLRANK_BEAM_JOB_ENDPOINT"
WORKER_POOL_ENV = "MTLRANK_BEAM_WORKER_POOL"
JOB_SERVER_MODULE = "apache_beam.runners.portability.local_job_service_main"
# SDK workers: one process per job (Beam's pool, as on a cluster) or threads
# of one long-lived pool process (pipeline/beam_thread_pool.py; imports once).
WORKER_POOL_MODULES = {
  "processes": "apache_beam.runners.worker.worker_pool_main",
  "threads": "pipeline.beam_thread_pool",
}
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0


class BeamServiceError(RuntimeError):
  """A job server or worker pool could not be started or reached."""


def portable_pipeline_args() -> List[str]:
  """The PortableRunner's Beam arguments; `${VAR}` stands for an endpoint that
  each component reads from the environment when it runs (`with_placeholders`)."""
  return [
    "--runner=PortableRunner",
    f"--job_endpoint=${{{JOB_ENDPOINT_ENV}}}",
    "--environment_type=EXTERNAL",
    f"--environment_config=${{{WORKER_POOL_ENV}}}",
    # One SDK worker per job: two cores, shared.
    "--sdk_worker_parallelism=1",
    # Else each job first runs `pip freeze` (the venv has no pip: a failure).
    "--experiments=disable_logging_submission_environment",
  ]


_ENV_REFERENCE = re.compile(r"\$\{(MTLRANK_BEAM_[A-Z_]+)\}")


def with_placeholders(args: List[str]) -> List:
  """`args` with each `${MTLRANK_BEAM_...}` as TFX's environment-variable
  placeholder, resolved when a component runs: the compiled arguments, part of
  TFX's cache key, stay the same whatever ports a run gets."""
  from tfx.dsl.placeholder import placeholder as ph

  resolved: List = []
  for arg in args:
    match = _ENV_REFERENCE.search(arg)
    if match is None:
      resolved.append(arg)
      continue
    value = arg[: match.start()] + ph.environment_variable(match.group(1))
    resolved.append(value + arg[match.end() :] if arg[match.end() :] else value)
  return resolved


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def wait_ready(endpoint: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
  """Waits until a gRPC server answers at `endpoint`."""
  import grpc

  channel = grpc.insecure_channel(endpoint)
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout)
  except grpc.FutureTimeoutError:
    raise BeamServiceError(f"nothing answers at {endpoint} after {timeout:.0f} s") from None
  finally:
    channel.close()


class PortableBeam:
  """The job server and worker pool of one run; use as a context manager."""

  def __init__(
    self,
    log_dir: Path,
    job_endpoint: str | None = None,
    worker_pool: str | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    workers: str = "threads",
  ):
    if workers not in WORKER_POOL_MODULES:
      raise ValueError(f"workers must be one of {', '.join(WORKER_POOL_MODULES)}, got {workers!r}")
    self.workers = workers
    self.log_dir = log_dir
    self.ready_timeout = ready_timeout
    self.job_endpoint = job_endpoint
    self.worker_pool = worker_pool
    self._processes: List[subprocess.Popen] = []
    self._saved_env: Dict[str, str | None] = {}
    self._jobs_before: set = set()
    self._saved_sigterm = None

  def _start(self, module: str, args: List[str], log_name: str) -> subprocess.Popen:
    self.log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The pool's workers are the first `python` on PATH: this venv's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with (self.log_dir / log_name).open("ab") as log:
      process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own group: stop() ends its workers too
        preexec_fn=_die_with_parent,
      )
    self._processes.append(process)
    return process

  def start(self) -> PortableBeam:
    if threading.current_thread() is threading.main_thread():
      # A scheduler stops a task with SIGTERM: unwind, so stop() runs.
      self._saved_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if self.job_endpoint is None:
      port = _free_port()
      self._start(JOB_SERVER_MODULE, [f"--port={port}"], "beam-job-server.log")
      self.job_endpoint = f"localhost:{port}"
    if self.worker_pool is None:
      port = _free_port()
      self._start(
        WORKER_POOL_MODULES[self.workers], [f"--service_port={port}"], "beam-worker-pool.log"
      )
      self.worker_pool = f"localhost:{port}"
    for endpoint in (self.job_endpoint, self.worker_pool):
      wait_ready(endpoint, self.ready_timeout)
    self._jobs_before = {job["job_id"] for job in self._all_jobs()}
    for key, value in ((JOB_ENDPOINT_ENV, self.job_endpoint), (WORKER_POOL_ENV, self.worker_pool)):
      self._saved_env[key] = os.environ.get(key)
      os.environ[key] = value
    return self

  def jobs(self) -> List[Dict[str, object]]:
    """The jobs the job server ran since `start`: id, state and the pipeline's
    top-level transforms (e.g. TFT's `AnalyzeDataset`, TFMA's
    `ExtractEvaluateAndWriteResults`)."""
    return [job for job in self._all_jobs() if job["job_id"] not in self._jobs_before]

  def _all_jobs(self) -> List[Dict[str, object]]:
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    with grpc.insecure_channel(self.job_endpoint) as channel:
      stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
      found = []
      for job in stub.GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=30).job_info:
        pipeline = stub.GetPipeline(
          beam_job_api_pb2.GetJobPipelineRequest(job_id=job.job_id), timeout=30
        ).pipeline
        roots = [pipeline.components.transforms[t].unique_name for t in pipeline.root_transform_ids]
        if len(roots) == 1:  # one composite wraps the user's transforms
          root = pipeline.components.transforms[pipeline.root_transform_ids[0]]
          roots = [pipeline.components.transforms[t].unique_name for t in root.subtransforms]
        found.append(
          {
            "job_id": job.job_id,
            "state": beam_job_api_pb2.JobState.Enum.Name(job.state),
            "transforms": roots,
          }
        )
    return found

  def stop(self) -> None:
    """Restores the environment and ends the processes this object started:
    SIGTERM to each group, SIGKILL after STOP_TIMEOUT_SECONDS."""
    for key, value in self._saved_env.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    self._saved_env.clear()
    if self._saved_sigterm is not None:
      signal.signal(signal.SIGTERM, self._saved_sigterm)
      self._saved_sigterm = None
    for process in self._processes:
      _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in self._processes:
      try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()
      # Workers the pool started share its group; end any left behind.
      _signal_group(process, signal.SIGKILL)
    self._processes.clear()

  def __enter__(self) -> PortableBeam:
    try:
      return self.start()
    except BaseException:
      self.stop()
      raise

  def __exit__(self, *exc) -> None:
    self.stop()


def _exit_on_sigterm(signum, frame) -> None:
  raise SystemExit(128 + signum)


def _die_with_parent() -> None:
  """In the child, before exec: SIGTERM when this process dies, even by SIGKILL (Linux)."""
  with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_group(process: subprocess.Popen, sig: int) -> None:
  with contextlib.suppress(ProcessLookupError, PermissionError):
    os.killpg(process.pid, sig)


@contextlib.contextmanager
def maybe_portable(
  mode: str,
  log_dir: Path,
  job_endpoint: str | None = None,
  worker_pool: str | None = None,
  workers: str = "threads",
) -> Iterator[PortableBeam | None]:
  """`PortableBeam` in portable mode, None in memory."""
  if mode != "portable":
    yield None
    return
  with PortableBeam(log_dir, job_endpoint, worker_pool, workers=workers) as beam:
    yield beam
