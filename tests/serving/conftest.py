"""The endpoint the conformance tests talk to.

By default the tests start mtlrank's bundled server in-process on free
loopback ports over a temporary model directory. To run the same tests against
any TF Serving endpoint, set:

  MTLRANK_TFSERVING_TARGET     host:port of its gRPC API
  MTLRANK_TFSERVING_REST       host:port of its REST API
  MTLRANK_TFSERVING_MODEL      the model name it serves
  MTLRANK_TFSERVING_MODEL_DIR  the directory it polls for that model's versions,
                               as seen from here (the tests push versions into it)
  MTLRANK_TFSERVING_SERVER_MODEL_DIR  the same directory as the server sees it
                               (e.g. /models/<name> in Docker; default: MODEL_DIR)

e.g. `docker run -p 8500:8500 -p 8501:8501 --mount type=bind,source=/tmp/tfs/rank,
target=/models/rank -e MODEL_NAME=rank tensorflow/serving` with
MODEL_DIR=/tmp/tfs/rank and SERVER_MODEL_DIR=/models/rank.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from serving.examples import serialize_rows
from tests.serving.fakes import SYNTHETIC_COLUMNS, random_rows
from tests.serving.helpers import AVAILABLE, MODEL_NAME, Endpoint, local_server, push_version


def _first_version() -> int:
  # Newer than anything an external server may hold from earlier runs.
  return int(time.time())


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory) -> Iterator[Endpoint]:
  target = os.environ.get("MTLRANK_TFSERVING_TARGET")
  if target:
    model_dir = Path(os.environ["MTLRANK_TFSERVING_MODEL_DIR"])
    external = Endpoint(
      target,
      os.environ["MTLRANK_TFSERVING_REST"],
      os.environ.get("MTLRANK_TFSERVING_MODEL", MODEL_NAME),
      model_dir,
      os.environ.get("MTLRANK_TFSERVING_SERVER_MODEL_DIR", str(model_dir)),
    )
    version = _first_version()
    external.push(version, seed=1)
    external.wait_for_state(version, AVAILABLE)
    yield external
    return
  model_dir = tmp_path_factory.mktemp("models") / MODEL_NAME
  model_dir.mkdir()
  push_version(model_dir, MODEL_NAME, _first_version(), seed=1)
  with local_server(model_dir) as (endpoint, _):
    yield endpoint


@pytest.fixture(scope="session")
def rows():
  return random_rows(SYNTHETIC_COLUMNS, 8, seed=3)


@pytest.fixture(scope="session")
def examples(rows):
  return serialize_rows(rows, SYNTHETIC_COLUMNS)
