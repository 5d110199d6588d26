"""Load test of `mtlrank serve` under hostile and careless clients (not a
timed test): 16 clients (8 gRPC, 8 REST, each its own process) predict in a
closed loop while 200 idle keep-alive REST connections and 20 slowloris
clients (headers dribbled a line a second; each reconnects when the server
drops it) are held open; a third of the way in the serving version's
directory is deleted (the server rolls back to the version before), two
thirds in a version with a broken saved_model.pb is pushed. It reports the
16 clients' failed requests (must be 0), QPS, p50/p99 (over the run and in
the 3 s after each event), the versions the gRPC clients saw, what happened to
the idle and slow connections, and GetModelStatus at the end.

  uv run python -m benchmarks.serving_hostile_load [--seconds 30] [--clients 16]
      [--idle 200] [--slow 20] [--server_flags="..."]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Sequence

from benchmarks.serving_load import (
  MODEL_NAME,
  SERVER_FLAGS,
  build_requests,
  free_port,
  percentile,
  process_cpu_seconds,
  stand_in_model,
)

REPO = Path(__file__).resolve().parent.parent
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
WARMUP_SECONDS = 1.0
POLL_SECONDS = 0.5
EVENT_WINDOW_SECONDS = 3.0


# --- a client process ------------------------------------------------------------------


def _varint(data: bytes, at: int) -> tuple:
  value = shift = 0
  while True:
    byte = data[at]
    at += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if byte < 0x80:
      return value, at


def _field(data: bytes, number: int) -> bytes | int | None:
  """The first field `number` of a serialized message (wire types 0 and 2)."""
  at = 0
  while at < len(data):
    key, at = _varint(data, at)
    wire = key & 7
    if wire == 0:
      value, at = _varint(data, at)
    elif wire == 2:
      length, at = _varint(data, at)
      value, at = data[at : at + length], at + length
    elif wire == 1:
      value, at = None, at + 8
    elif wire == 5:
      value, at = None, at + 4
    else:
      return None
    if key >> 3 == number:
      return value
  return None


def served_version(response: bytes) -> int:
  """PredictResponse.model_spec.version.value, read without protobuf classes
  (their import loads TensorFlow into every client)."""
  spec = _field(response, 2)
  version = _field(spec, 2) if isinstance(spec, bytes) else None
  value = _field(version, 1) if isinstance(version, bytes) else None
  return value if isinstance(value, int) else -1


def run_client(api: str, target: str, request_path: str, seconds: float, path: str) -> None:
  """Predicts in a closed loop; prints one JSON line: (wall time, latency,
  version) per measured request and every failure's text."""
  payload = Path(request_path).read_bytes()
  if api == "grpc":
    import grpc

    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(PREDICT_METHOD, request_serializer=None, response_deserializer=None)

    def send() -> int:
      return served_version(call(payload, timeout=30))

  else:
    import http.client

    host, _, port = target.rpartition(":")
    connection = [http.client.HTTPConnection(host, int(port), timeout=30)]
    headers = {"Content-Type": "application/json"}

    def send() -> int:
      try:
        connection[0].request("POST", path, payload, headers)
        response = connection[0].getresponse()
        body = response.read()
      except Exception:
        connection[0].close()  # a fresh connection for the next request
        raise
      if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
      return 0

  start = time.perf_counter()
  warm_until, stop_at = start + WARMUP_SECONDS, start + WARMUP_SECONDS + seconds
  samples: List[tuple] = []
  failures: List[str] = []
  while True:
    before = time.perf_counter()
    if before >= stop_at:
      break
    try:
      version = send()
    except Exception as error:  # counted, never fatal: the point of the test
      failures.append(f"{type(error).__name__}: {str(error)[:300]}")
      continue
    if before >= warm_until:
      samples.append((time.time(), time.perf_counter() - before, version))
  print(json.dumps({"samples": samples, "failures": failures}))


# --- idle and slow connections --------------------------------------------------------


def hold_idle(address: tuple, count: int) -> List[socket.socket]:
  """`count` kept-alive connections, each after one request."""
  held = []
  request = (
    f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n\r\n"
  ).encode()
  for _ in range(count):
    sock = socket.create_connection(address, timeout=30)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
      data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or 0)
    while len(body) < length:
      body += sock.recv(65536)
    held.append(sock)
  return held


def still_open(sockets: Sequence[socket.socket]) -> int:
  """How many of the connections the server has not closed."""
  open_count = 0
  for sock in sockets:
    sock.setblocking(False)
    try:
      data = sock.recv(65536)
      open_count += data != b""  # leftover response bytes: still open
    except BlockingIOError:
      open_count += 1
    except OSError:
      pass
  return open_count


class Slowloris(threading.Thread):
  """Sends a request's headers one line a second, forever; reconnects when
  the server answers (408) or drops the connection."""

  def __init__(self, address: tuple, stop: threading.Event):
    super().__init__(daemon=True)
    self.address, self.stop = address, stop
    self.answers: Dict[str, int] = {}
    self.connections = 0
    self.longest_held = 0.0

  def run(self) -> None:
    while not self.stop.is_set():
      try:
        sock = socket.create_connection(self.address, timeout=30)
      except OSError:
        time.sleep(0.5)
        continue
      self.connections += 1
      opened = time.monotonic()
      try:
        sock.sendall(f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\n".encode())
        sock.settimeout(1.0)
        index = 0
        while not self.stop.is_set():
          sock.sendall(f"X-Slow-{index}: a\r\n".encode())
          index += 1
          try:
            data = sock.recv(65536)
          except TimeoutError:
            continue
          status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
          self.answers[status] = self.answers.get(status, 0) + 1
          break
      except OSError:
        self.answers["reset"] = self.answers.get("reset", 0) + 1
      finally:
        self.longest_held = max(self.longest_held, time.monotonic() - opened)
        sock.close()


# --- the orchestrator ------------------------------------------------------------------


def start_server(base_path: Path, extra_flags: Sequence[str]):
  grpc_port, rest_port = free_port(), free_port()
  command = [
    sys.executable,
    "-m",
    "serving.cli",
    "serve",
    f"--port={grpc_port}",
    f"--rest_api_port={rest_port}",
    f"--model_name={MODEL_NAME}",
    f"--model_base_path={base_path}",
    f"--file_system_poll_wait_seconds={POLL_SECONDS}",
    *extra_flags,
  ]
  process = subprocess.Popen(
    command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
  )
  banner = process.stdout.readline()
  if "gRPC on" not in banner:
    process.kill()
    raise RuntimeError(f"the server did not start: {banner!r}")
  return process, f"127.0.0.1:{grpc_port}", ("127.0.0.1", rest_port)


def model_status(rest: tuple) -> Dict[int, dict]:
  url = f"http://{rest[0]}:{rest[1]}/v1/models/{MODEL_NAME}"
  with urllib.request.urlopen(url, timeout=30) as response:
    body = json.loads(response.read())
  return {int(s["version"]): s for s in body["model_version_status"]}


def wait_for(condition, timeout: float, what: str):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    try:
      value = condition()
    except OSError:
      value = None
    if value:
      return value
    time.sleep(0.2)
  raise RuntimeError(f"timed out waiting for {what}")


def push_corrupt(base_path: Path, version: int) -> None:
  staging = base_path / f".staging-{version}"
  (staging / "variables").mkdir(parents=True)
  (staging / "saved_model.pb").write_bytes(b"\x0a\x03bad" * 64)
  (staging / "variables" / "variables.index").write_bytes(b"truncated")
  staging.rename(base_path / str(version))


def stats(latencies: Sequence[float], seconds: float) -> str:
  if not latencies:
    return "no requests"
  return (
    f"{len(latencies) / seconds:.0f} QPS, p50 {percentile(latencies, 50) * 1e3:.2f} ms, "
    f"p99 {percentile(latencies, 99) * 1e3:.2f} ms ({len(latencies)} requests)"
  )


def orchestrate(args: argparse.Namespace) -> int:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
  from serving.examples import serialize_rows
  from tests.serving.fakes import random_rows

  load_at_start = os.getloadavg()
  with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(tmp)
    base_path = workdir / MODEL_NAME
    columns = stand_in_model(base_path)
    shutil.copytree(base_path / "1", base_path / "2")
    examples = serialize_rows(random_rows(columns, 1, seed=1), columns)
    requests = {api: build_requests(workdir, examples, api)[1] for api in ("grpc", "rest")}
    server, grpc_target, rest = start_server(base_path, shlex.split(args.server_flags))
    stop = threading.Event()
    slow: List[Slowloris] = []
    idle: List[socket.socket] = []
    try:
      wait_for(lambda: model_status(rest).get(2, {}).get("state") == "AVAILABLE", 120, "version 2")
      idle = hold_idle(rest, args.idle)
      slow = [Slowloris(rest, stop) for _ in range(args.slow)]
      for thread in slow:
        thread.start()
      server_cpu_before = process_cpu_seconds(server.pid)
      rest_path = f"/v1/models/{MODEL_NAME}:predict"
      clients = []
      for index in range(args.clients):
        api = "grpc" if index % 2 == 0 else "rest"
        target = grpc_target if api == "grpc" else f"{rest[0]}:{rest[1]}"
        command = [sys.executable, "-m", "benchmarks.serving_hostile_load", "--client", api]
        command += [target, str(requests[api]), str(args.seconds), rest_path]
        clients.append(
          (api, subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True))
        )
      started = time.time() + WARMUP_SECONDS
      time.sleep(WARMUP_SECONDS + args.seconds / 3)
      shutil.rmtree(base_path / "2")
      rollback_at = time.time()
      print(f"t={rollback_at - started:.1f}s: deleted the serving version 2", flush=True)
      rolled_back = wait_for(
        lambda: model_status(rest).get(1, {}).get("state") == "AVAILABLE" and time.time(),
        60,
        "the rollback to version 1",
      )
      print(f"t={rolled_back - started:.1f}s: version 1 AVAILABLE again", flush=True)
      time.sleep(max(0.0, started + 2 * args.seconds / 3 - time.time()))
      push_corrupt(base_path, 3)
      corrupt_at = time.time()
      print(f"t={corrupt_at - started:.1f}s: pushed the corrupt version 3", flush=True)
      reports = {"grpc": [], "rest": []}
      for api, client in clients:
        out, _ = client.communicate(timeout=args.seconds + 120)
        if client.returncode != 0:
          raise RuntimeError(f"a client failed with exit code {client.returncode}")
        reports[api].append(json.loads(out.strip().splitlines()[-1]))
      server_cpu = process_cpu_seconds(server.pid) - server_cpu_before
      idle_open = still_open(idle)
      final = model_status(rest)
    finally:
      stop.set()
      for thread in slow:
        thread.join(timeout=5)
      for sock in idle:
        sock.close()
      server.kill()
      server.wait()

  samples = [s for api in reports for r in reports[api] for s in r["samples"]]
  failures = [f for api in reports for r in reports[api] for f in r["failures"]]
  latencies = [s[1] for s in samples]
  print()
  print(f"failed requests of the {args.clients} clients: {len(failures)}")
  for failure in sorted(set(failures))[:10]:
    print(f"  {failures.count(failure)} x {failure}")
  print(f"all {args.clients} clients: {stats(latencies, args.seconds)}")
  for api in ("grpc", "rest"):
    api_latencies = [s[1] for r in reports[api] for s in r["samples"]]
    print(f"  {api} ({len(reports[api])} clients): {stats(api_latencies, args.seconds)}")
  for name, at in (("deletion of the serving version", rollback_at), ("corrupt push", corrupt_at)):
    window = [s[1] for s in samples if at <= s[0] < at + EVENT_WINDOW_SECONDS]
    print(f"  {EVENT_WINDOW_SECONDS:.0f} s after the {name}: {stats(window, EVENT_WINDOW_SECONDS)}")
  grpc_versions = [(s[0], s[2]) for r in reports["grpc"] for s in r["samples"]]
  before = {v for t, v in grpc_versions if t < rollback_at}
  after = {v for t, v in grpc_versions if t > rolled_back + 1}
  print(
    f"versions answering gRPC: before the deletion {sorted(before)}, "
    f"from 1 s after the rollback {sorted(after)}"
  )
  print(f"server CPU ms per request: {server_cpu / max(len(latencies), 1) * 1e3:.3f}")
  print(f"idle keep-alive connections: {args.idle} opened, {idle_open} still open at the end")
  answers: Dict[str, int] = {}
  for thread in slow:
    for status, count in thread.answers.items():
      answers[status] = answers.get(status, 0) + count
  longest = max((t.longest_held for t in slow), default=0.0)
  print(
    f"slow clients: {args.slow} held open, {sum(t.connections for t in slow)} connections, "
    f"server answers {answers}, longest held {longest:.1f} s"
  )
  states = []
  for version, status in sorted(final.items()):
    code = status.get("status", {}).get("error_code", "OK")
    states.append(f"{version}: {status['state']}" + ("" if code == "OK" else f" ({code})"))
  print("GetModelStatus at the end: " + ", ".join(states))
  print(f"server flags: {args.server_flags}")
  print(f"load average at start {load_at_start}, at end {os.getloadavg()} (shared machine)")
  return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
  if argv is None:
    argv = sys.argv[1:]
  if argv and argv[0] == "--client":
    api, target, request_path, seconds, path = argv[1:6]
    run_client(api, target, request_path, float(seconds), path)
    return 0
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seconds", type=float, default=30.0)
  parser.add_argument("--clients", type=int, default=16)
  parser.add_argument("--idle", type=int, default=200)
  parser.add_argument("--slow", type=int, default=20)
  parser.add_argument("--server_flags", default=" ".join(SERVER_FLAGS))
  return orchestrate(parser.parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
