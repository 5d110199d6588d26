"""Load test of `mtlrank serve` (not a timed test): p50/p99 latency and QPS at
batch 1 and 64 with 1, 8 and 32 concurrent clients, batching off and on,
beside an in-process call of the same signature's ConcreteFunction.

  uv run python -m benchmarks.serving_load [--seconds 5] [--api grpc|rest]
      [--model_dir DIR --spec NAME]   # a pushed model instead of the stand-in

Without --model_dir it serves a stand-in for the census MMoE (the census
spec's 40 raw columns, 4 experts of 64 units, 2 tasks). Each client is its own
process (Python clients in one process contend for the GIL) sending prebuilt
requests in a closed loop over loopback; clients import only grpc, never
TensorFlow. Every run is bounded in time and requests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "bench"
BATCH_SIZES = (1, 64)
CLIENT_COUNTS = (1, 8, 32)
WARMUP_SECONDS = 1.0
MAX_REQUESTS_PER_CLIENT = 200_000
BATCHING_PARAMETERS = """
max_batch_size { value: 256 }
batch_timeout_micros { value: 1000 }
num_batch_threads { value: 2 }
max_enqueued_batches { value: 1000 }
"""
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
PAIRED_FORMAT = ("p50 overhead at batch 1, one client, batching off, measured alternately: "
                 "served {served_p50_ms:.3f} ms - in-process {in_process_p50_ms:.3f} ms = "
                 "{overhead_p50_ms:+.3f} ms")


# --- client processes: grpc and the standard library only ---------------------------

def run_client(api: str, target: str, request_path: str, seconds: float, path: str) -> None:
  """Sends the prebuilt request in a closed loop; prints latencies (seconds)
  measured after the warm-up as one JSON line."""
  payload = Path(request_path).read_bytes()
  send = _grpc_sender(target, payload) if api == "grpc" else _rest_sender(target, path, payload)
  start = time.perf_counter()
  warm_until, stop_at = start + WARMUP_SECONDS, start + WARMUP_SECONDS + seconds
  latencies: List[float] = []
  for _ in range(MAX_REQUESTS_PER_CLIENT):
    before = time.perf_counter()
    if before >= stop_at:
      break
    send()
    after = time.perf_counter()
    if before >= warm_until:
      latencies.append(after - before)
  print(json.dumps(latencies))


def _grpc_sender(target: str, payload: bytes):
  import grpc
  channel = grpc.insecure_channel(target, [("grpc.max_receive_message_length", 1 << 26)])
  call = channel.unary_unary(PREDICT_METHOD, request_serializer=None, response_deserializer=None)
  return lambda: call(payload, timeout=30)


def _rest_sender(target: str, path: str, payload: bytes):
  import http.client
  host, _, port = target.rpartition(":")
  connection = http.client.HTTPConnection(host, int(port), timeout=30)
  headers = {"Content-Type": "application/json"}

  def send() -> None:
    connection.request("POST", path, payload, headers)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
      raise RuntimeError(body[:200])
  return send


# --- the orchestrator -----------------------------------------------------------------

def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def percentile(values: Sequence[float], q: float) -> float:
  ordered = sorted(values)
  return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def start_server(base_path: Path, batching: bool, workdir: Path, api: str):
  """A `mtlrank serve` subprocess; returns it and its target address."""
  grpc_port, rest_port = free_port(), free_port()
  command = [sys.executable, "-m", "serving.cli", "serve", f"--port={grpc_port}",
             f"--rest_api_port={rest_port if api == 'rest' else 0}",
             f"--model_name={MODEL_NAME}", f"--model_base_path={base_path}",
             "--file_system_poll_wait_seconds=0"]
  if batching:
    params = workdir / "batching.txt"
    params.write_text(BATCHING_PARAMETERS)
    command += ["--enable_batching", f"--batching_parameters_file={params}"]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
  banner = process.stdout.readline()
  if "gRPC on" not in banner:
    process.kill()
    raise RuntimeError(f"the server did not start: {banner!r}")
  return process, f"127.0.0.1:{grpc_port if api == 'grpc' else rest_port}"


def run_clients(count: int, api: str, target: str, request_path: Path, seconds: float,
                path: str) -> List[float]:
  command = [sys.executable, "-m", "benchmarks.serving_load", "--client", api, target,
             str(request_path), str(seconds), path]
  clients = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(count)]
  latencies: List[float] = []
  for client in clients:
    out, _ = client.communicate(timeout=seconds + 120)
    if client.returncode != 0:
      raise RuntimeError(f"a client failed with exit code {client.returncode}")
    latencies.extend(json.loads(out.strip().splitlines()[-1]))
  return latencies


def in_process(model_dir: Path, examples: Sequence[bytes], batch: int,
               seconds: float) -> Dict[str, float]:
  """The same signature's ConcreteFunction called in this process."""
  import tensorflow as tf
  function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
  tensor = tf.constant(list(examples[:batch]))
  run = lambda: {k: v.numpy() for k, v in function(examples=tensor).items()}  # noqa: E731
  stop_at = time.perf_counter() + WARMUP_SECONDS
  while time.perf_counter() < stop_at:
    run()
  latencies = []
  stop_at = time.perf_counter() + seconds
  while time.perf_counter() < stop_at and len(latencies) < MAX_REQUESTS_PER_CLIENT:
    before = time.perf_counter()
    run()
    latencies.append(time.perf_counter() - before)
  return summary(latencies, seconds, batch)


def paired_overhead(model_dir: Path, examples: Sequence[bytes], request_path: Path,
                    target: str, api: str, rest_path: str, count: int) -> Dict[str, float]:
  """p50 of served minus in-process latency at batch 1, one client, measured
  alternately in one process so that both see the same machine load."""
  import tensorflow as tf
  function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
  payload = request_path.read_bytes()
  tensor = tf.constant(list(examples[:1]))
  local = lambda: {k: v.numpy() for k, v in function(examples=tensor).items()}  # noqa: E731
  send = _grpc_sender(target, payload) if api == "grpc" else _rest_sender(target, rest_path,
                                                                          payload)
  served, in_process_times = [], []
  for index in range(count + count // 10):
    for run, times in ((local, in_process_times), (send, served)):
      before = time.perf_counter()
      run()
      if index >= count // 10:
        times.append(time.perf_counter() - before)
  return {"in_process_p50_ms": percentile(in_process_times, 50) * 1e3,
          "served_p50_ms": percentile(served, 50) * 1e3,
          "overhead_p50_ms": (percentile(served, 50) - percentile(in_process_times, 50)) * 1e3}


def summary(latencies: Sequence[float], seconds: float, batch: int) -> Dict[str, float]:
  return {"p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
          "qps": len(latencies) / seconds, "rows_per_s": len(latencies) * batch / seconds}


def build_requests(workdir: Path, examples: Sequence[bytes], api: str) -> Dict[int, Path]:
  from serving.client import examples_request
  paths = {}
  for batch in BATCH_SIZES:
    path = workdir / f"request-{batch}.{api}"
    if api == "grpc":
      path.write_bytes(examples_request(examples[:batch], MODEL_NAME).SerializeToString())
    else:
      path.write_text(json.dumps({"inputs": {"examples": [
          {"b64": base64.b64encode(e).decode()} for e in examples[:batch]]}}))
    paths[batch] = path
  return paths


def stand_in_model(base_path: Path) -> Dict[str, str]:
  from models.spec import load_spec
  from serving.testing import build_ranking_model
  spec = load_spec("census")
  columns = {f.column: f.dtype for f in spec.model_features}
  build_ranking_model(base_path / "1", MODEL_NAME, columns=columns, tasks=spec.task_names,
                      score=dict(spec.serving.score), embedding_dim=8, num_experts=4,
                      expert_units=64)
  return columns


def format_table(rows: List[Dict[str, object]]) -> str:
  header = ["mode", "batching", "batch", "clients", "p50 ms", "p99 ms", "QPS", "rows/s",
            "p50 overhead ms"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    lines.append("| " + " | ".join([
        str(row["mode"]), str(row["batching"]), str(row["batch"]), str(row["clients"]),
        f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}", f"{row['qps']:.0f}",
        f"{row['rows_per_s']:.0f}",
        "" if row.get("overhead_ms") is None else f"{row['overhead_ms']:+.3f}"]) + " |")
  return "\n".join(lines)


def _load_average() -> str:
  return " ".join(f"{value:.1f}" for value in os.getloadavg())


def orchestrate(args: argparse.Namespace) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import serving  # noqa: F401  (selects tf-keras before TensorFlow loads)
  from serving.examples import serialize_rows
  from serving.testing import random_rows

  load_at_start = _load_average()
  with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(tmp)
    if args.model_dir:
      from models.spec import load_spec
      base_path = Path(args.model_dir).resolve()
      version_dir = max((p for p in base_path.iterdir() if p.name.isdigit()),
                        key=lambda p: int(p.name))
      columns = {f.column: f.dtype for f in load_spec(args.spec).model_features}
    else:
      base_path = workdir / MODEL_NAME
      columns = stand_in_model(base_path)
      version_dir = base_path / "1"
    examples = serialize_rows(random_rows(columns, max(BATCH_SIZES), seed=1), columns)
    requests = build_requests(workdir, examples, args.api)
    rows: List[Dict[str, object]] = []
    baseline: Dict[int, float] = {}
    for batch in args.batch_sizes:
      result = in_process(version_dir, examples, batch, args.seconds)
      baseline[batch] = result["p50_ms"]
      rows.append({"mode": "in-process", "batching": "-", "batch": batch, "clients": 1, **result})
      print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    rest_path = f"/v1/models/{MODEL_NAME}:predict"
    paired: Dict[str, float] = {}
    for batching in (False, True):
      server, target = start_server(base_path, batching, workdir, args.api)
      try:
        if not batching:
          paired = paired_overhead(version_dir, examples, requests[1], target, args.api,
                                   rest_path, args.paired_requests)
          print(PAIRED_FORMAT.format(**paired), flush=True)
        for batch in args.batch_sizes:
          for count in args.clients:
            latencies = run_clients(count, args.api, target, requests[batch], args.seconds,
                                    rest_path)
            result = summary(latencies, args.seconds, batch)
            rows.append({"mode": f"served ({args.api})", "batching": "on" if batching else "off",
                         "batch": batch, "clients": count, **result,
                         "overhead_ms": result["p50_ms"] - baseline[batch] if count == 1 else None})
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
      finally:
        server.terminate()
        server.wait(timeout=60)
  print()
  print(format_table(rows))
  print()
  print(PAIRED_FORMAT.format(**paired))
  print(f"load average at start {load_at_start}, at end {_load_average()} "
        "(the machine is shared: figures under load are inflated)")


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "--client":
    api, target, request_path, seconds, path = argv[1:6]
    run_client(api, target, request_path, float(seconds), path)
    return 0
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
  parser.add_argument("--api", choices=("grpc", "rest"), default="grpc")
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=list(BATCH_SIZES),
                      choices=BATCH_SIZES)
  parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENT_COUNTS))
  parser.add_argument("--paired_requests", type=int, default=3000,
                      help="alternating in-process/served calls for the overhead figure")
  parser.add_argument("--model_dir", help="a model base path with numeric versions")
  parser.add_argument("--spec", default="census", help="the spec typing --model_dir's examples")
  orchestrate(parser.parse_args(argv))
  return 0


if __name__ == "__main__":
  sys.exit(main())
