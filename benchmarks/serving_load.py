"""Load test of `mtlrank serve` (not a timed test): p50/p99 latency, QPS and
CPU per request (server and clients) at batch 1 and 64 with 1, 8 and 32
concurrent clients, batching off and on, beside an in-process call of the same
signature's ConcreteFunction and beside the transport floor (the same clients
against an empty grpcio servicer); it ends with the batching ratio and its
bound implied by the measured CPU per request.

  uv run python -m benchmarks.serving_load [--seconds 5] [--rounds 2] [--api grpc|rest]
      [--model_dir DIR --spec NAME]   # a pushed model instead of the stand-in
      [--server_flags="..."]          # `mtlrank serve` flags; '' for TensorFlow's pools

Without --model_dir it serves a stand-in for the census MMoE (the census
spec's 40 raw columns, 4 experts of 64 units, 2 tasks). Each client is its own
process (Python clients in one process contend for the GIL) sending prebuilt
requests in a closed loop over loopback; clients import only grpc, never
TensorFlow. Batching off and on are served by two servers up at once, each
load running on them alternately (--rounds times each), so that both see the
same machine load. Every run is bounded in time and requests.
The goals of issue 12 count on the pushed census MMoE (--model_dir, e.g.
`mtlrank run --spec census` output): docs/serving.md.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

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
# One TensorFlow thread per op and one op at a time: on 2 cores, concurrent
# requests and batches keep the cores busy, and TensorFlow's default pools
# (one thread per core each) mostly spin: measured in docs/serving.md.
SERVER_FLAGS = ("--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1")
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
PAIRED_FORMAT = (
  "p50 overhead at batch 1, one client, batching off, measured alternately: "
  "served {served_p50_ms:.3f} ms - in-process {in_process_p50_ms:.3f} ms = "
  "{overhead_p50_ms:+.3f} ms"
)


# --- client processes: grpc and the standard library only ---------------------------


def run_client(api: str, target: str, request_path: str, seconds: float, path: str) -> None:
  """Sends the prebuilt request in a closed loop; prints as one JSON line the
  latencies (seconds) measured after the warm-up, the requests sent in all
  and this process's CPU seconds over the measured ones."""
  payload = Path(request_path).read_bytes()
  send = _grpc_sender(target, payload) if api == "grpc" else _rest_sender(target, path, payload)
  start = time.perf_counter()
  warm_until, stop_at = start + WARMUP_SECONDS, start + WARMUP_SECONDS + seconds
  latencies: List[float] = []
  sent = 0
  cpu_at_warm: float | None = None
  for sent in range(1, MAX_REQUESTS_PER_CLIENT + 1):
    before = time.perf_counter()
    if before >= stop_at:
      sent -= 1
      break
    if cpu_at_warm is None and before >= warm_until:
      cpu_at_warm = time.process_time()
    send()
    after = time.perf_counter()
    if before >= warm_until:
      latencies.append(after - before)
  cpu = time.process_time() - (cpu_at_warm if cpu_at_warm is not None else 0.0)
  print(json.dumps({"latencies": latencies, "sent": sent, "cpu_seconds": cpu}))


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


def start_server(
  base_path: Path, batching: str | None, workdir: Path, api: str, extra_flags: Sequence[str] = ()
):
  """A `mtlrank serve` subprocess, batching with the given BatchingParameters
  text or not at all; returns it and its target address."""
  grpc_port, rest_port = free_port(), free_port()
  command = [
    sys.executable,
    "-m",
    "serving.cli",
    "serve",
    f"--port={grpc_port}",
    f"--rest_api_port={rest_port if api == 'rest' else 0}",
    f"--model_name={MODEL_NAME}",
    f"--model_base_path={base_path}",
    "--file_system_poll_wait_seconds=0",
    *extra_flags,
  ]
  if batching:
    params = workdir / "batching.txt"
    params.write_text(batching)
    command += ["--enable_batching", f"--batching_parameters_file={params}"]
  process = _started(command)
  return process, f"127.0.0.1:{grpc_port if api == 'grpc' else rest_port}"


def start_empty_server(response_path: Path):
  """The transport floor: a grpcio server configured as `mtlrank serve`'s
  whose Predict handler returns prebuilt response bytes without parsing the
  request. Returns it and its target address."""
  port = free_port()
  process = _started(
    [
      sys.executable,
      "-m",
      "benchmarks.serving_load",
      "--empty_server",
      str(port),
      str(response_path),
    ]
  )
  return process, f"127.0.0.1:{port}"


def _started(command: List[str]) -> subprocess.Popen:
  process = subprocess.Popen(
    command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
  )
  banner = process.stdout.readline()
  if "gRPC on" not in banner:
    process.kill()
    raise RuntimeError(f"the server did not start: {banner!r}")
  return process


def serve_empty(port: int, response_path: str) -> None:
  """Runs the empty servicer until killed (the --empty_server mode)."""
  import threading
  from concurrent import futures

  import grpc

  from serving.constants import DEFAULT_GRPC_MAX_THREADS, DEFAULT_MAX_REQUEST_BYTES

  response = Path(response_path).read_bytes()
  server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=DEFAULT_GRPC_MAX_THREADS),
    options=[
      ("grpc.max_receive_message_length", DEFAULT_MAX_REQUEST_BYTES),
      ("grpc.max_send_message_length", DEFAULT_MAX_REQUEST_BYTES),
      ("grpc.so_reuseport", 0),
    ],
  )
  service, method = PREDICT_METHOD.strip("/").split("/")
  server.add_generic_rpc_handlers(
    (
      grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(lambda request, context: response)}
      ),
    )
  )
  server.add_insecure_port(f"127.0.0.1:{port}")
  server.start()
  print(f"empty servicer: gRPC on 127.0.0.1:{port}", flush=True)
  threading.Event().wait()


@dataclasses.dataclass
class Load:
  """What a closed-loop run of clients measured."""

  latencies: List[float]
  sent: int  # requests in all, warm-up included
  client_cpu_seconds: float  # summed over clients, measured requests only
  server_cpu_seconds: float  # the server process over the whole run

  def add(self, other: Load) -> None:
    self.latencies.extend(other.latencies)
    self.sent += other.sent
    self.client_cpu_seconds += other.client_cpu_seconds
    self.server_cpu_seconds += other.server_cpu_seconds

  def cpu_ms_per_request(self) -> Dict[str, float]:
    return {
      "server_cpu_ms": self.server_cpu_seconds / max(self.sent, 1) * 1e3,
      "client_cpu_ms": self.client_cpu_seconds / max(len(self.latencies), 1) * 1e3,
    }


def process_cpu_seconds(pid: int) -> float:
  """User + system CPU seconds of a process, all its threads, from /proc.
  CPU per request barely depends on the other jobs on the machine, unlike
  wall-clock latency."""
  fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(
  count: int, api: str, target: str, request_path: Path, seconds: float, path: str, server_pid: int
) -> Load:
  command = [
    sys.executable,
    "-m",
    "benchmarks.serving_load",
    "--client",
    api,
    target,
    str(request_path),
    str(seconds),
    path,
  ]
  server_cpu_before = process_cpu_seconds(server_pid)
  clients = [
    subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(count)
  ]
  load = Load([], 0, 0.0, 0.0)
  for client in clients:
    out, _ = client.communicate(timeout=seconds + 120)
    if client.returncode != 0:
      raise RuntimeError(f"a client failed with exit code {client.returncode}")
    report = json.loads(out.strip().splitlines()[-1])
    load.latencies.extend(report["latencies"])
    load.sent += report["sent"]
    load.client_cpu_seconds += report["cpu_seconds"]
  load.server_cpu_seconds = process_cpu_seconds(server_pid) - server_cpu_before
  return load


def in_process(
  model_dir: Path, examples: Sequence[bytes], batch: int, seconds: float
) -> Dict[str, float]:
  """The same signature's ConcreteFunction called in this process."""
  import tensorflow as tf

  function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
  tensor = tf.constant(list(examples[:batch]))
  run = lambda: {k: v.numpy() for k, v in function(examples=tensor).items()}
  stop_at = time.perf_counter() + WARMUP_SECONDS
  while time.perf_counter() < stop_at:
    run()
  latencies = []
  cpu_before = time.process_time()
  stop_at = time.perf_counter() + seconds
  while time.perf_counter() < stop_at and len(latencies) < MAX_REQUESTS_PER_CLIENT:
    before = time.perf_counter()
    run()
    latencies.append(time.perf_counter() - before)
  cpu_ms = (time.process_time() - cpu_before) / len(latencies) * 1e3
  return {**summary(latencies, seconds, batch), "server_cpu_ms": cpu_ms}


def paired_overhead(
  model_dir: Path,
  examples: Sequence[bytes],
  request_path: Path,
  target: str,
  floor_target: str | None,
  api: str,
  rest_path: str,
  count: int,
) -> Dict[str, float]:
  """p50s at batch 1, one client, of the in-process call, the served call and
  (gRPC) the empty servicer's round trip, measured alternately in one process
  so that all see the same machine load."""
  import tensorflow as tf

  function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
  payload = request_path.read_bytes()
  tensor = tf.constant(list(examples[:1]))
  runs = {
    "in_process": lambda: {k: v.numpy() for k, v in function(examples=tensor).items()},
    "served": (
      _grpc_sender(target, payload) if api == "grpc" else _rest_sender(target, rest_path, payload)
    ),
  }
  if floor_target:
    runs["floor"] = _grpc_sender(floor_target, payload)
  times: Dict[str, List[float]] = {name: [] for name in runs}
  for index in range(count + count // 10):
    for name, run in runs.items():
      before = time.perf_counter()
      run()
      if index >= count // 10:
        times[name].append(time.perf_counter() - before)
  p50 = {name: percentile(values, 50) * 1e3 for name, values in times.items()}
  result = {
    "in_process_p50_ms": p50["in_process"],
    "served_p50_ms": p50["served"],
    "overhead_p50_ms": p50["served"] - p50["in_process"],
  }
  if floor_target:
    result.update(
      floor_p50_ms=p50["floor"], beyond_floor_ms=p50["served"] - p50["in_process"] - p50["floor"]
    )
  return result


def paired_report(paired: Dict[str, float]) -> str:
  text = PAIRED_FORMAT.format(**paired)
  if "floor_p50_ms" in paired:
    text += (
      f"; the empty servicer's round trip alone {paired['floor_p50_ms']:.3f} ms, "
      f"so beyond the transport floor {paired['beyond_floor_ms']:+.3f} ms"
    )
  return text


def summary(latencies: Sequence[float], seconds: float, batch: int) -> Dict[str, float]:
  return {
    "p50_ms": percentile(latencies, 50) * 1e3,
    "p99_ms": percentile(latencies, 99) * 1e3,
    "qps": len(latencies) / seconds,
    "rows_per_s": len(latencies) * batch / seconds,
  }


def build_requests(workdir: Path, examples: Sequence[bytes], api: str) -> Dict[int, Path]:
  from serving.client import examples_request

  paths = {}
  for batch in BATCH_SIZES:
    path = workdir / f"request-{batch}.{api}"
    if api == "grpc":
      path.write_bytes(examples_request(examples[:batch], MODEL_NAME).SerializeToString())
    else:
      path.write_text(
        json.dumps(
          {
            "inputs": {
              "examples": [{"b64": base64.b64encode(e).decode()} for e in examples[:batch]]
            }
          }
        )
      )
    paths[batch] = path
  return paths


def stand_in_model(base_path: Path) -> Dict[str, str]:
  from models.spec import load_spec
  from tests.serving.fakes import build_ranking_model

  spec = load_spec("census")
  columns = {f.column: f.dtype for f in spec.model_features}
  build_ranking_model(
    base_path / "1",
    MODEL_NAME,
    columns=columns,
    tasks=spec.task_names,
    score=dict(spec.serving.score),
    embedding_dim=8,
    num_experts=4,
    expert_units=64,
  )
  return columns


def format_table(rows: List[Dict[str, object]]) -> str:
  header = [
    "mode",
    "batching",
    "batch",
    "clients",
    "p50 ms",
    "p99 ms",
    "QPS",
    "rows/s",
    "p50 overhead ms",
    "server CPU ms/req",
    "client CPU ms/req",
  ]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

  def optional(key: str, form: str) -> str:
    return "" if row.get(key) is None else format(row[key], form)

  for row in rows:
    lines.append(
      "| "
      + " | ".join(
        [
          str(row["mode"]),
          str(row["batching"]),
          str(row["batch"]),
          str(row["clients"]),
          f"{row['p50_ms']:.3f}",
          f"{row['p99_ms']:.3f}",
          f"{row['qps']:.0f}",
          f"{row['rows_per_s']:.0f}",
          optional("overhead_ms", "+.3f"),
          optional("server_cpu_ms", ".3f"),
          optional("client_cpu_ms", ".3f"),
        ]
      )
      + " |"
    )
  return "\n".join(lines)


def batching_bound(rows: List[Dict[str, object]], clients: int) -> str | None:
  """The QPS ratio batching gave to `clients` batch-1 clients, beside the most
  it could give if every CPU-ms per request beyond the empty servicer's (server
  and client together) were batched away: on a CPU-bound machine QPS is
  inversely proportional to CPU per request."""

  def find(mode_prefix: str, batching: str) -> Dict[str, object] | None:
    return next(
      (
        r
        for r in rows
        if str(r["mode"]).startswith(mode_prefix)
        and r["batching"] == batching
        and r["batch"] == 1
        and r["clients"] == clients
      ),
      None,
    )

  off, on, floor = find("served", "off"), find("served", "on"), find("transport floor", "-")
  if not (off and on and floor):
    return None
  cpu = {
    name: row["server_cpu_ms"] + row["client_cpu_ms"]
    for name, row in (("off", off), ("on", on), ("floor", floor))
  }
  return (
    f"{clients} clients, batch 1: batching on/off QPS {on['qps'] / off['qps']:.2f}x "
    f"({on['qps']:.0f} / {off['qps']:.0f}); CPU ms per request, server + clients: "
    f"off {cpu['off']:.3f}, on {cpu['on']:.3f}, empty servicer {cpu['floor']:.3f}; "
    f"bound if batching removed all but the transport: "
    f"{cpu['off'] / cpu['floor']:.2f}x; the empty servicer's QPS / batching off: "
    f"{floor['qps'] / off['qps']:.2f}x"
  )


# Issue 12's goals for batching at batch 1: QPS on/off at least this much
# for this many clients, and a lone client's p50 no worse than batching off
# plus the batch timeout.
QPS_GOALS = {32: 1.5, 8: 1.2}


def batch_timeout_ms(batching_parameters: str) -> float:
  match = re.search(r"batch_timeout_micros\s*\{\s*value:\s*(\d+)", batching_parameters)
  return int(match.group(1)) / 1e3 if match else 0.0


def batching_goals(rows: List[Dict[str, object]], timeout_ms: float) -> List[str]:
  """Issue 12's batching goals at batch 1, each measured in this run."""

  def served(batching: str, clients: int) -> Dict[str, object] | None:
    return next(
      (
        r
        for r in rows
        if str(r["mode"]).startswith("served")
        and r["batching"] == batching
        and r["batch"] == 1
        and r["clients"] == clients
      ),
      None,
    )

  lines = []
  for clients, goal in QPS_GOALS.items():
    off, on = served("off", clients), served("on", clients)
    if off and on:
      ratio = on["qps"] / off["qps"]
      verdict = "met" if ratio >= goal else "NOT met"
      lines.append(
        f"goal: {clients} batch-1 clients, batching on/off QPS >= {goal}x: "
        f"{ratio:.2f}x ({on['qps']:.0f} / {off['qps']:.0f}) {verdict}"
      )
  off, on = served("off", 1), served("on", 1)
  if off and on:
    limit = off["p50_ms"] + timeout_ms
    verdict = "met" if on["p50_ms"] <= limit else "NOT met"
    lines.append(
      f"goal: one client's p50 with batching <= off + batch timeout: {on['p50_ms']:.3f} ms "
      f"vs {off['p50_ms']:.3f} + {timeout_ms:.3f} = {limit:.3f} ms {verdict}"
    )
  return lines


def _load_average() -> str:
  return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _served_rows(
  base_path: Path,
  workdir: Path,
  args: argparse.Namespace,
  requests: Dict[int, Path],
  baseline: Dict[int, float],
  rest_path: str,
  rows: List[Dict[str, object]],
  on_server=None,
) -> None:
  """Batching off and on, both servers up at once: each (batch, clients)
  load runs on the two alternately, `args.rounds` times each, so that both
  see the same machine load (on a shared machine it drifts within minutes)."""
  servers = {}
  try:
    for batching in (False, True):
      workdir_mode = workdir / ("on" if batching else "off")
      workdir_mode.mkdir(exist_ok=True)
      servers[batching] = start_server(
        base_path,
        args.batching_parameters if batching else None,
        workdir_mode,
        args.api,
        args.server_flags,
      )
    if on_server is not None:
      on_server(servers[False][1])
    served: Dict[tuple, Dict[str, object]] = {}
    for batch in args.batch_sizes:
      for count in args.clients:
        loads = {False: Load([], 0, 0.0, 0.0), True: Load([], 0, 0.0, 0.0)}
        for _ in range(args.rounds):
          for batching, (server, target) in servers.items():
            loads[batching].add(
              run_clients(
                count, args.api, target, requests[batch], args.seconds, rest_path, server.pid
              )
            )
        for batching, load in loads.items():
          result = summary(load.latencies, args.seconds * args.rounds, batch)
          served[batching, batch, count] = {
            "mode": f"served ({args.api})",
            "batching": "on" if batching else "off",
            "batch": batch,
            "clients": count,
            **result,
            **load.cpu_ms_per_request(),
            "overhead_ms": result["p50_ms"] - baseline[batch] if count == 1 else None,
          }
          print(format_table([served[batching, batch, count]]).splitlines()[-1], flush=True)
    rows.extend(served[key] for key in sorted(served))
  finally:
    for server, _ in servers.values():
      server.terminate()
      server.wait(timeout=60)


def _floor_rows(
  batch: int,
  floor,
  floor_target: str,
  args: argparse.Namespace,
  requests: Dict[int, Path],
  rows: List[Dict[str, object]],
) -> None:
  for count in args.clients:
    load = run_clients(count, "grpc", floor_target, requests[batch], args.seconds, "", floor.pid)
    rows.append(
      {
        "mode": "transport floor (empty servicer)",
        "batching": "-",
        "batch": batch,
        "clients": count,
        **summary(load.latencies, args.seconds, batch),
        **load.cpu_ms_per_request(),
      }
    )
    print(format_table(rows[-1:]).splitlines()[-1], flush=True)


def response_bytes(version_dir: Path, request_path: Path) -> bytes:
  """The served response to a request, built in process, for the empty servicer."""
  from tensorflow_serving.apis import predict_pb2

  from serving import inference
  from serving.servable import Servable

  servable = Servable.load(MODEL_NAME, int(version_dir.name), version_dir)
  request = predict_pb2.PredictRequest.FromString(request_path.read_bytes())
  return inference.predict_on(servable, request).SerializeToString()


def orchestrate(args: argparse.Namespace) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
  from serving.examples import serialize_rows
  from tests.serving.fakes import random_rows

  load_at_start = _load_average()
  with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(tmp)
    if args.model_dir:
      from models.spec import load_spec

      base_path = Path(args.model_dir).resolve()
      version_dir = max(
        (p for p in base_path.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
      )
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
    # The transport floor: one empty servicer per batch size, answering with
    # that batch's real response bytes.
    floors: Dict[int, tuple] = {}
    try:
      if args.api == "grpc":
        for batch in args.batch_sizes:
          response_path = workdir / f"response-{batch}.grpc"
          response_path.write_bytes(response_bytes(version_dir, requests[batch]))
          floors[batch] = start_empty_server(response_path)

      def measure_paired(target: str) -> None:
        floor_target = floors[1][1] if 1 in floors else None
        paired.update(
          paired_overhead(
            version_dir,
            examples,
            requests[1],
            target,
            floor_target,
            args.api,
            rest_path,
            args.paired_requests,
          )
        )
        print(paired_report(paired), flush=True)

      _served_rows(
        base_path,
        workdir,
        args,
        requests,
        baseline,
        rest_path,
        rows,
        on_server=measure_paired if 1 in args.batch_sizes else None,
      )
      for batch, (floor, floor_target) in floors.items():
        _floor_rows(batch, floor, floor_target, args, requests, rows)
    finally:
      for floor, _ in floors.values():
        floor.terminate()
        floor.wait(timeout=60)
  print()
  print(format_table(rows))
  print()
  if paired:
    print(paired_report(paired))
  for count in args.clients:
    bound = batching_bound(rows, count)
    if bound:
      print(bound)
  for line in batching_goals(rows, batch_timeout_ms(args.batching_parameters)):
    print(line)
  print(
    f"server flags: {' '.join(args.server_flags) or 'none'}; batching parameters: "
    f"{' '.join(args.batching_parameters.split())}"
  )
  print(
    f"load average at start {load_at_start}, at end {_load_average()} "
    "(the machine is shared: figures under load are inflated)"
  )


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "--client":
    api, target, request_path, seconds, path = argv[1:6]
    run_client(api, target, request_path, float(seconds), path)
    return 0
  if argv and argv[0] == "--empty_server":
    serve_empty(int(argv[1]), argv[2])
    return 0
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
  parser.add_argument(
    "--rounds",
    type=int,
    default=2,
    help="served runs per load and batching mode, off and on alternately",
  )
  parser.add_argument("--api", choices=("grpc", "rest"), default="grpc")
  parser.add_argument(
    "--batch_sizes", type=int, nargs="+", default=list(BATCH_SIZES), choices=BATCH_SIZES
  )
  parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENT_COUNTS))
  parser.add_argument(
    "--paired_requests",
    type=int,
    default=3000,
    help="alternating in-process/served calls for the overhead figure",
  )
  parser.add_argument("--model_dir", help="a model base path with numeric versions")
  parser.add_argument("--spec", default="census", help="the spec typing --model_dir's examples")
  parser.add_argument(
    "--server_flags",
    type=shlex.split,
    default=list(SERVER_FLAGS),
    help="extra `mtlrank serve` flags as one string; '' for none "
    f"(default: {' '.join(SERVER_FLAGS)})",
  )
  parser.add_argument(
    "--batching_parameters",
    default=BATCHING_PARAMETERS,
    help="the BatchingParameters text proto of the batching-on runs",
  )
  orchestrate(parser.parse_args(argv))
  return 0


if __name__ == "__main__":
  sys.exit(main())
