"""`mtlrank serve` and `mtlrank predict` as registered by serving.cli."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from serving import cli
from serving.conformance import AVAILABLE, free_port
from serving.examples import serialize_rows
from serving.testing import SYNTHETIC_COLUMNS, random_rows

REPO = Path(__file__).resolve().parents[2]


def parse(argv):
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command", required=True))
  return parser.parse_args(argv)


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
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(SYNTHETIC_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
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


@pytest.mark.skipif(
  os.environ.get("MTLRANK_TFSERVING_TARGET") is not None, reason="starts the bundled server"
)
def test_serve_subcommand_serves_until_terminated(endpoint):
  grpc_port = free_port()
  process = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "serving.cli",
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
