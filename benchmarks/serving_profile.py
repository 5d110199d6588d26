"""Where `mtlrank serve`'s CPU goes per request (not a timed test).

  uv run python -m benchmarks.serving_profile [--clients 1] [--batching] [--seconds 4]
      [--model_dir DIR --spec NAME]   # a pushed model instead of the stand-in

Runs the server in this process on the load test's stand-in model (or the
newest version under --model_dir, e.g. a pushed census MMoE), drives it
with client processes (benchmarks.serving_load's clients) sending batch-1
Predict requests, and prints CPU milliseconds per request: per server thread
group (from /proc/self/task: gRPC's poller, gRPC's worker threads that run
the handlers, gRPC's event engine, TensorFlow's own thread pools) and per
stage of the request path, measured with the thread CPU clock around
serving's own functions. CPU per request depends far less on other jobs on
the machine than wall-clock latency does, but is still inflated under load.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import serving_load

STAGE_CPU: Dict[str, float] = collections.defaultdict(float)
BATCH_SIZES: List[int] = []


def _timed(stage: str, function: Callable) -> Callable:
  """`function`, adding the calling thread's CPU seconds to STAGE_CPU[stage]."""

  @functools.wraps(function)
  def timed(*args, **kwargs):
    before = time.thread_time()
    try:
      return function(*args, **kwargs)
    finally:
      STAGE_CPU[stage] += time.thread_time() - before

  return timed


def instrument() -> None:
  """Wraps the stages of the Predict path (before the server binds them)."""

  from serving import batching, grpc_service, inference, servable, tensors

  inference.to_ndarray = _timed("decode: TensorProto -> numpy", tensors.to_ndarray)
  inference.fill_proto = _timed("encode: numpy -> TensorProto", tensors.fill_proto)
  inference.predict_on = _timed("predict_on (decode+call+encode)", inference.predict_on)
  servable.Signature._run = _timed("model call (calling thread)", servable.Signature._run)
  servable.Signature.__call__ = _timed(
    "signature call (checks+batching+model)", servable.Signature.__call__
  )
  request_class, response_class = grpc_service._PREDICTION_METHODS["Predict"]

  class Request:
    DESCRIPTOR = request_class.DESCRIPTOR
    FromString = staticmethod(_timed("parse request bytes", request_class.FromString))

  class Response:
    SerializeToString = _timed("serialize response", response_class.SerializeToString)

  grpc_service._PREDICTION_METHODS["Predict"] = (Request, Response)
  execute = batching.Batcher._execute

  def counted(self, tasks):
    BATCH_SIZES.append(len(tasks))
    return execute(self, tasks)

  batching.Batcher._execute = counted
  runs_at_once = batching.Batcher._runs_at_once

  def counted_alone(self, arrived):
    alone = runs_at_once(self, arrived)
    if alone:  # an idle batcher's request runs at once: a batch of one
      BATCH_SIZES.append(1)
    return alone

  batching.Batcher._runs_at_once = counted_alone


def thread_cpu() -> Dict[str, Tuple[str, float]]:
  """(kernel thread name, CPU seconds) of each thread of this process, by id."""
  result = {}
  for task in Path("/proc/self/task").iterdir():
    try:
      comm = (task / "comm").read_text().strip()
      fields = (task / "stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:  # the thread ended
      continue
    result[task.name] = (comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
  return result


def thread_group(thread_id: str, comm: str, python_names: Dict[str, str]) -> str:
  name = python_names.get(thread_id)
  if name is None:
    return (
      "gRPC event engine"
      if comm.startswith("event_engine")
      else "TensorFlow thread pools and other native threads"
    )
  if name.startswith("grpc"):
    return "gRPC worker threads (handlers)"
  if "_serve" in name:
    return "gRPC poller thread"
  return f"other Python threads ({name})" if thread_id != str(os.getpid()) else "main thread"


def profile(args: argparse.Namespace) -> None:
  from serving.config import ServerOptions
  from serving.examples import serialize_rows
  from serving.server import ModelServer, configure_tensorflow_threads
  from tests.serving.fakes import random_rows

  instrument()
  threads = ServerOptions(
    tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
    tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
  )
  configure_tensorflow_threads(threads)  # before building the model runs TensorFlow
  with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(tmp)
    if args.model_dir:
      from models.spec import load_spec

      base_path = Path(args.model_dir).resolve()
      columns = {f.column: f.dtype for f in load_spec(args.spec).model_features}
    else:
      base_path = workdir / serving_load.MODEL_NAME
      columns = serving_load.stand_in_model(base_path)
    examples = serialize_rows(random_rows(columns, 1, seed=1), columns)
    request_path = serving_load.build_requests(workdir, examples, "grpc")[1]
    batching_file = workdir / "batching.txt"
    batching_file.write_text(args.batching_parameters)
    options = ServerOptions(
      port=0,
      rest_api_port=0,
      model_name=serving_load.MODEL_NAME,
      model_base_path=str(base_path),
      file_system_poll_wait_seconds=0,
      enable_batching=args.batching,
      tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
      tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
      batching_parameters_file=str(batching_file) if args.batching else "",
    )
    with ModelServer(options) as server:
      target = f"127.0.0.1:{server.grpc_port}"
      STAGE_CPU.clear()
      BATCH_SIZES.clear()
      before = thread_cpu()
      load = serving_load.run_clients(
        args.clients, "grpc", target, request_path, args.seconds, "", os.getpid()
      )
      after = thread_cpu()
      python_names = {str(t.native_id): t.name for t in threading.enumerate()}
  report(args, load, before, after, python_names)


def report(
  args: argparse.Namespace,
  load: serving_load.Load,
  before: Dict[str, Tuple[str, float]],
  after: Dict[str, Tuple[str, float]],
  python_names: Dict[str, str],
) -> None:
  per_request = 1e3 / max(load.sent, 1)
  groups: Dict[str, float] = collections.defaultdict(float)
  for thread_id, (comm, seconds) in after.items():
    groups[thread_group(thread_id, comm, python_names)] += (
      seconds - before.get(thread_id, (comm, 0.0))[1]
    )
  print(
    f"{args.clients} client(s), batch 1, batching {'on' if args.batching else 'off'}, "
    f"TensorFlow threads intra {args.tensorflow_intra_op_parallelism} inter "
    f"{args.tensorflow_inter_op_parallelism} (0: TensorFlow's choice): "
    f"{load.sent} requests, {len(load.latencies) / args.seconds:.0f} QPS; "
    f"CPU ms per request:"
  )
  print(f"  server process       {load.server_cpu_seconds * per_request:7.3f}")
  for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
    if seconds > 0:
      print(f"    {group:46s} {seconds * per_request:7.3f}")
  print("  stages, on the thread that ran them (nested: predict_on includes the next ones)")
  for stage, seconds in STAGE_CPU.items():
    print(f"    {stage:46s} {seconds * per_request:7.3f}")
  print(
    f"  client processes     {load.client_cpu_seconds / max(len(load.latencies), 1) * 1e3:7.3f}"
  )
  if BATCH_SIZES:
    print(
      f"  batches: {len(BATCH_SIZES)}, mean {sum(BATCH_SIZES) / len(BATCH_SIZES):.2f} "
      f"requests, max {max(BATCH_SIZES)}"
    )
  print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--clients", type=int, default=1)
  parser.add_argument("--seconds", type=float, default=4.0)
  parser.add_argument("--batching", action="store_true")
  parser.add_argument("--batching_parameters", default=serving_load.BATCHING_PARAMETERS)
  parser.add_argument("--model_dir", help="a model base path with numeric versions")
  parser.add_argument("--spec", default="census", help="the spec typing --model_dir's examples")
  parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
  parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
  profile(parser.parse_args(argv))
  return 0


if __name__ == "__main__":
  sys.exit(main())
