"""`mtlrank serve` and `mtlrank predict`: `register(subparsers, spec_columns)`
adds both to the `mtlrank` command (pipeline.cli), which knows the specs;
`python -m serving.cli serve` runs the server on its own.

The serving room knows no spec: `predict` gets the served model's name and its
raw columns' dtypes from the `spec_columns` callable the command passes in."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from contract import FUSED_SCORE_OUTPUT, SERVING_SIGNATURE
from serving.config import ConfigError, ServerOptions
from serving.constants import (
  DEFAULT_GRPC_MAX_THREADS,
  DEFAULT_GRPC_PORT,
  DEFAULT_HOST,
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_POLL_WAIT_SECONDS,
  DEFAULT_REST_HEADER_TIMEOUT_SECONDS,
  DEFAULT_REST_IDLE_TIMEOUT_SECONDS,
  DEFAULT_REST_MAX_CONNECTIONS,
  DEFAULT_REST_NUM_THREADS,
  DEFAULT_REST_PORT,
  DEFAULT_REST_TIMEOUT_MS,
  PREDICT_FILE_FORMATS,
)

PREDICT_CHUNK_ROWS = 512


def _bool_flag(text: str) -> bool:
  """TF Serving's boolean flags: `--flag`, `--flag=true`, `--flag=false`."""
  value = text.strip().lower()
  if value in ("1", "true", "yes"):
    return True
  if value in ("0", "false", "no"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
  add = parser.add_argument
  add("--port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port")
  add("--rest_api_port", type=int, default=DEFAULT_REST_PORT, help="REST port; 0 disables REST")
  add("--host", default=DEFAULT_HOST, help="address to bind (default: loopback only)")
  add("--model_name", default="", help="name of the single model served")
  add("--model_base_path", default="", help="directory of the single model's numeric versions")
  add("--model_config_file", default="", help="a ModelServerConfig text proto (several models)")
  add(
    "--file_system_poll_wait_seconds",
    type=float,
    default=DEFAULT_POLL_WAIT_SECONDS,
    help="seconds between polls for new versions; 0 polls only at start",
  )
  add("--enable_batching", type=_bool_flag, nargs="?", const=True, default=False)
  add("--batching_parameters_file", default="", help="a BatchingParameters text proto")
  add(
    "--enable_model_warmup",
    type=_bool_flag,
    nargs="?",
    const=True,
    default=True,
    help="replay assets.extra/tf_serving_warmup_requests before serving a version",
  )
  add(
    "--rest_api_num_threads",
    type=int,
    default=DEFAULT_REST_NUM_THREADS,
    help="REST requests computed at once (worker threads; connections need no thread)",
  )
  add(
    "--rest_api_max_connections",
    type=int,
    default=DEFAULT_REST_MAX_CONNECTIONS,
    help="REST connections open at once; more are answered 503",
  )
  add(
    "--rest_api_idle_timeout_seconds",
    type=float,
    default=DEFAULT_REST_IDLE_TIMEOUT_SECONDS,
    help="close a kept-alive REST connection idle this long; 0: never",
  )
  add(
    "--rest_api_header_timeout_seconds",
    type=float,
    default=DEFAULT_REST_HEADER_TIMEOUT_SECONDS,
    help="a REST request whose headers take longer (or whose body stalls longer) gets 408; 0: never",
  )
  add(
    "--rest_api_allowed_hosts",
    default="",
    help="comma-separated Host names REST accepts beyond the bound address's "
    "(.example.com: and subdomains; *: any)",
  )
  add(
    "--grpc_max_threads",
    type=int,
    default=DEFAULT_GRPC_MAX_THREADS,
    help="gRPC requests served at once",
  )
  add("--ssl_config_file", default="", help="an SSLConfig text proto: TLS for gRPC")
  add(
    "--max_request_bytes",
    type=int,
    default=DEFAULT_MAX_REQUEST_BYTES,
    help="largest gRPC message or REST body accepted",
  )
  add(
    "--tensorflow_intra_op_parallelism",
    type=int,
    default=0,
    help="threads one TensorFlow op may use; 0 lets TensorFlow pick",
  )
  add(
    "--tensorflow_inter_op_parallelism",
    type=int,
    default=0,
    help="TensorFlow ops run at once; 0 lets TensorFlow pick",
  )
  add("--grpc_socket_path", default="", help="also serve gRPC on this UNIX socket")
  add(
    "--grpc_channel_arguments",
    default="",
    help="comma-separated gRPC server arguments, e.g. grpc.max_connection_age_ms=2000",
  )
  add(
    "--rest_api_timeout_in_ms",
    type=int,
    default=DEFAULT_REST_TIMEOUT_MS,
    help="a REST request running longer fails with 504 (DEADLINE_EXCEEDED); 0: no limit",
  )
  add(
    "--model_config_file_poll_wait_seconds",
    type=float,
    default=0,
    help="seconds between re-reads of --model_config_file; 0 reads it once",
  )
  add(
    "--monitoring_config_file",
    default="",
    help="a MonitoringConfig text proto: Prometheus metrics on the REST port",
  )
  add(
    "--prefer_tflite_model",
    type=_bool_flag,
    nargs="?",
    const=True,
    default=False,
    help="accepted for TF Serving's harness; TFLite models are not served (a warning)",
  )
  add(
    "--enable_signature_method_name_check",
    type=_bool_flag,
    nargs="?",
    const=True,
    default=False,
    help="Classify/Regress only on signatures of their method name (TF1 exports)",
  )
  add(
    "--enable_serialization_as_tensor_content",
    type=_bool_flag,
    nargs="?",
    const=True,
    default=False,
    help="Predict outputs as packed tensor_content instead of typed value fields",
  )


def server_options(args: argparse.Namespace) -> ServerOptions:
  return ServerOptions(
    port=args.port,
    rest_api_port=args.rest_api_port,
    host=args.host,
    model_name=args.model_name,
    model_base_path=args.model_base_path,
    model_config_file=args.model_config_file,
    file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
    enable_batching=args.enable_batching,
    batching_parameters_file=args.batching_parameters_file,
    enable_model_warmup=args.enable_model_warmup,
    rest_api_num_threads=args.rest_api_num_threads,
    grpc_max_threads=args.grpc_max_threads,
    ssl_config_file=args.ssl_config_file,
    max_request_bytes=args.max_request_bytes,
    tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
    tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
    grpc_socket_path=args.grpc_socket_path,
    grpc_channel_arguments=args.grpc_channel_arguments,
    rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
    model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
    monitoring_config_file=args.monitoring_config_file,
    prefer_tflite_model=args.prefer_tflite_model,
    enable_signature_method_name_check=args.enable_signature_method_name_check,
    enable_serialization_as_tensor_content=args.enable_serialization_as_tensor_content,
    rest_api_max_connections=args.rest_api_max_connections,
    rest_api_idle_timeout_seconds=args.rest_api_idle_timeout_seconds,
    rest_api_header_timeout_seconds=args.rest_api_header_timeout_seconds,
    rest_api_allowed_hosts=args.rest_api_allowed_hosts,
  )


def serve(args: argparse.Namespace) -> int:
  from serving.server import ModelServer  # imports TensorFlow: only when serving

  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
  stop = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: stop.set())
  from serving.errors import ServingError

  try:
    server = ModelServer(server_options(args)).start()
  except ConfigError as error:
    print(f"mtlrank serve: {error}", file=sys.stderr)
    return 2
  except ServingError as error:  # a model config TF Serving would refuse
    print(f"mtlrank serve: {error.code.name}: {error.message}", file=sys.stderr)
    return 2
  except OSError as error:
    print(f"mtlrank serve: cannot listen: {error}", file=sys.stderr)
    return 1
  print(
    f"mtlrank serve: gRPC on {args.host}:{server.grpc_port}, REST on "
    f"{f'{args.host}:{server.rest_port}' if server.rest_port else 'nothing'}",
    flush=True,
  )
  stop.wait()
  server.stop()
  return 0


def read_rows(path: Path, file_format: str | None = None) -> List[Dict[str, Any]]:
  """Rows from a CSV file with a header, a JSON list of objects, or JSON lines."""
  file_format = file_format or path.suffix.lstrip(".").lower().replace("jsonl", "json")
  text = path.read_text()
  if file_format == "csv":
    return list(csv.DictReader(text.splitlines()))
  if file_format == "json":
    stripped = text.lstrip()
    rows = (
      json.loads(stripped)
      if stripped.startswith("[")
      else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    if not all(isinstance(row, dict) for row in rows):
      raise ValueError(f"{path}: every JSON row must be an object")
    return rows
  raise ValueError(f"{path}: unknown format {file_format!r}; use one of {PREDICT_FILE_FORMATS}")


def format_ranking(ranking: Sequence[Dict[str, float]], score_key: str) -> str:
  """A table: rank, input row, the fused score, then each task's output."""
  tasks = sorted(k for k in ranking[0] if k not in ("row", score_key)) if ranking else []
  header = ["rank", "row", score_key] + tasks
  lines = ["  ".join(f"{h:>12}" for h in header)]
  for rank, entry in enumerate(ranking, start=1):
    values = [f"{rank:>12}", f"{entry['row']:>12}"] + [
      f"{entry[k]:>12.6f}" for k in [score_key] + tasks
    ]
    lines.append("  ".join(values))
  return "\n".join(lines)


# Given the `--spec` argument: the model's default name and its raw columns
# ({column: "string" | "int" | "float"}). Raises ValueError naming the problem.
SpecColumns = Callable[[str], Tuple[str, Mapping[str, str]]]


def predict(args: argparse.Namespace) -> int:
  from serving.client import GrpcClient, RestClient, ServingClientError, ranked

  try:
    spec_name, raw_columns = args.spec_columns(args.spec)
    rows = read_rows(Path(args.input), args.format)
  except (OSError, ValueError) as error:
    print(f"mtlrank predict: {error}", file=sys.stderr)
    return 2
  if not rows:
    print("mtlrank predict: no rows to score", file=sys.stderr)
    return 2
  model_name = args.model_name or spec_name
  options = dict(signature_name=args.signature_name, version=args.version)
  client = (
    RestClient(args.rest, model_name, raw_columns, **options)
    if args.rest
    else GrpcClient(args.grpc, model_name, raw_columns, **options)
  )
  try:
    scores: Dict[str, List[float]] = {}
    for start in range(0, len(rows), PREDICT_CHUNK_ROWS):
      for name, values in client.predict_rows(rows[start : start + PREDICT_CHUNK_ROWS]).items():
        scores.setdefault(name, []).extend(values.tolist())
    ranking = ranked({k: v for k, v in scores.items()}, FUSED_SCORE_OUTPUT)
  except (ServingClientError, ValueError) as error:
    print(f"mtlrank predict: {error}", file=sys.stderr)
    return 1
  finally:
    client.close()
  print(format_ranking(ranking[: args.top] if args.top else ranking, FUSED_SCORE_OUTPUT))
  return 0


def register(
  subparsers: argparse._SubParsersAction, spec_columns: SpecColumns | None = None
) -> None:
  """Adds `serve` to the command's subcommands, and `predict` when
  `spec_columns` says how a spec types the rows."""
  serve_parser = subparsers.add_parser(
    "serve",
    help="serve pushed SavedModels over TF Serving's gRPC and REST APIs",
    description="Serves <model_base_path>/<version> SavedModels with TF Serving's APIs; "
    "takes tensorflow_model_server's flags.",
  )
  _add_serve_flags(serve_parser)
  serve_parser.set_defaults(func=serve)

  if spec_columns is None:
    return
  predict_parser = subparsers.add_parser(
    "predict", help="score raw rows (CSV or JSON) against a served model, ranked by score"
  )
  add = predict_parser.add_argument
  add("--spec", required=True, help="spec name or path: its raw columns type the tf.Examples")
  add("--input", required=True, help="CSV (with header) or JSON rows")
  add("--format", choices=PREDICT_FILE_FORMATS, help="input format (default: from the suffix)")
  add("--model_name", default="", help="served model name (default: the spec's name)")
  target = predict_parser.add_mutually_exclusive_group()
  target.add_argument(
    "--grpc", default=f"{DEFAULT_HOST}:{DEFAULT_GRPC_PORT}", help="gRPC host:port (default)"
  )
  target.add_argument("--rest", default="", help="REST host:port, instead of gRPC")
  add("--signature_name", default=SERVING_SIGNATURE)
  add("--version", type=int, default=None, help="a specific version (default: the latest)")
  add("--top", type=int, default=0, help="print only the best N rows")
  predict_parser.set_defaults(func=predict, spec_columns=spec_columns)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m serving.cli")
  register(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
