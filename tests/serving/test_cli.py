"""`mtlrank serve` and `mtlrank predict`: parsed by the `mtlrank` command, and
run through the installed console script."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from pipeline.cli import build_parser
from serving import cli
from serving.examples import serialize_rows
from tests.serving.fakes import SYNTHETIC_COLUMNS, random_rows
from tests.serving.helpers import AVAILABLE, free_port

REPO = Path(__file__).resolve().parents[2]
# The console script `uv sync` installs beside the interpreter.
MTLRANK = shutil.which("mtlrank", path=str(Path(sys.executable).parent)) or shutil.which("mtlrank")


def _write_csv(rows, path: Path) -> None:
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(SYNTHETIC_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)


def parse(argv):
  return build_parser().parse_args(argv)


def test_serving_cli_alone_has_serve_only():
  """Without the command's spec resolver, the serving room offers `serve` alone."""
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command", required=True))
  assert parser.parse_args(["serve", "--port=9"]).func is cli.serve
  with pytest.raises(SystemExit):
    parser.parse_args(["predict", "--spec", "synthetic", "--input", "x.csv"])


def test_serve_takes_tensorflow_model_server_flags(tmp_path):
  batching = tmp_path / "batching.txt"
  batching.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 500 }")
  args = parse(
    [
      "serve",
      "--port=9000",
      "--rest_api_port=0",
      "--model_name=rank",
      f"--model_base_path={tmp_path}",
      "--enable_batching",
      f"--batching_parameters_file={batching}",
      "--enable_model_warmup=false",
      "--file_system_poll_wait_seconds=5",
      "--tensorflow_intra_op_parallelism=2",
      "--tensorflow_inter_op_parallelism=1",
    ]
  )
  assert args.func is cli.serve
  options = cli.server_options(args)
  assert (options.port, options.rest_api_port, options.host) == (9000, 0, "127.0.0.1")
  assert options.enable_batching and not options.enable_model_warmup
  assert options.batching().max_batch_size == 32
  assert options.batching().batch_timeout_micros == 500
  assert options.model_server_config().model_config_list.config[0].name == "rank"
  assert options.tensorflow_threads() == {
    "tensorflow_intra_op_parallelism": 2,
    "tensorflow_inter_op_parallelism": 1,
  }


def test_predict_prints_rows_ranked_by_the_fused_score(endpoint, tmp_path, capsys):
  rows = random_rows(SYNTHETIC_COLUMNS, 6, seed=9)
  path = tmp_path / "rows.csv"
  _write_csv(rows, path)
  version = endpoint.serving_version()
  expected = endpoint.reference(version, serialize_rows(rows, SYNTHETIC_COLUMNS))
  for target in (["--grpc", endpoint.grpc_target], ["--rest", endpoint.rest_address]):
    args = parse(
      [
        "predict",
        "--spec",
        "synthetic",
        "--input",
        str(path),
        "--model_name",
        endpoint.model_name,
        *target,
      ]
    )
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "row", "score", "click", "conversion", "dwell"]
    table = [line.split() for line in lines[1:]]
    assert [int(r[1]) for r in table] == list(np.argsort(-expected["score"], kind="stable"))
    np.testing.assert_allclose(
      [float(r[2]) for r in table], np.sort(expected["score"])[::-1], rtol=1e-5
    )


def test_predict_reads_json_rows_and_reports_errors(endpoint, tmp_path, capsys):
  rows = random_rows(SYNTHETIC_COLUMNS, 3, seed=4)
  path = tmp_path / "rows.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in rows))
  args = parse(
    [
      "predict",
      "--spec",
      "synthetic",
      "--input",
      str(path),
      "--top",
      "2",
      "--model_name",
      endpoint.model_name,
      "--grpc",
      endpoint.grpc_target,
    ]
  )
  assert args.func(args) == 0
  assert len(capsys.readouterr().out.splitlines()) == 3
  args = parse(
    [
      "predict",
      "--spec",
      "synthetic",
      "--input",
      str(path),
      "--model_name",
      "no_such_model",
      "--grpc",
      endpoint.grpc_target,
    ]
  )
  assert args.func(args) == 1
  assert "NOT_FOUND" in capsys.readouterr().err


@pytest.mark.slow  # a fresh server process
@pytest.mark.skipif(
  os.environ.get("MTLRANK_TFSERVING_TARGET") is not None, reason="starts the bundled server"
)
def test_serve_subcommand_serves_until_terminated(endpoint):
  grpc_port = free_port()
  process = subprocess.Popen(
    [
      MTLRANK,
      "serve",
      f"--port={grpc_port}",
      "--rest_api_port=0",
      f"--model_name={endpoint.model_name}",
      f"--model_base_path={endpoint.model_dir}",
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  )
  try:
    banner = process.stdout.readline()
    assert f"gRPC on 127.0.0.1:{grpc_port}" in banner
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = endpoint.model_name
    statuses = (
      model_service_pb2_grpc.ModelServiceStub(channel)
      .GetModelStatus(request, timeout=30)
      .model_version_status
    )
    assert any(s.state == AVAILABLE for s in statuses)
    channel.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()


@pytest.mark.slow  # a fresh server process
@pytest.mark.skipif(
  os.environ.get("MTLRANK_TFSERVING_TARGET") is not None, reason="starts the bundled server"
)
def test_installed_predict_ranks_csv_rows(endpoint, tmp_path):
  rows = random_rows(SYNTHETIC_COLUMNS, 5, seed=3)
  path = tmp_path / "rows.csv"
  _write_csv(rows, path)
  expected = endpoint.reference(endpoint.serving_version(), serialize_rows(rows, SYNTHETIC_COLUMNS))
  done = subprocess.run(
    [
      MTLRANK,
      "predict",
      "--spec",
      "synthetic",
      "--input",
      str(path),
      "--model_name",
      endpoint.model_name,
      "--grpc",
      endpoint.grpc_target,
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr
  table = [line.split() for line in done.stdout.splitlines()[1:]]
  assert [int(r[1]) for r in table] == list(np.argsort(-expected["score"], kind="stable"))


@pytest.mark.slow  # a fresh server process
def test_installed_serve_reports_a_port_in_use_in_one_line(tmp_path):
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    done = subprocess.run(
      [
        MTLRANK,
        "serve",
        f"--port={free_port()}",
        f"--rest_api_port={port}",
        "--model_name=m",
        f"--model_base_path={tmp_path}",
      ],
      capture_output=True,
      text=True,
      timeout=300,
    )
  assert done.returncode == 1
  assert "Traceback" not in done.stderr
  message = [line for line in done.stderr.splitlines() if line.startswith("mtlrank serve:")]
  assert message and f"REST port 127.0.0.1:{port} is already in use" in message[0], done.stderr
