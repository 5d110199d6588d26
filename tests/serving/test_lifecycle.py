"""The version lifecycle of the bundled server, driven poll by poll: what
takes traffic, when, and what GetModelStatus reports."""

from __future__ import annotations

import gc
import os
import shutil
import weakref
from pathlib import Path
from typing import Callable, Iterator

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from contract.warmup import write_warmup_requests
from serving import inference
from serving.errors import ServingError
from serving.manager import ServerCore
from tests.serving.fakes import build_ranking_model
from tests.serving.helpers import (
  AVAILABLE,
  END,
  MODEL_NAME,
  Endpoint,
  http,
  local_server,
  push_corrupt_version,
  push_version,
  wait_until,
)

START = get_model_status_pb2.ModelVersionStatus.State.START

pytestmark = pytest.mark.skipif(
  os.environ.get("MTLRANK_TFSERVING_TARGET") is not None,
  reason="drives the bundled server's version manager directly",
)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
  return build_ranking_model(tmp_path_factory.mktemp("source") / "model", MODEL_NAME, seed=5)


@pytest.fixture
def core_for() -> Iterator[Callable[..., ServerCore]]:
  """Makes ServerCores for one model (policy and labels as text); stops them
  all when the test ends, failed or not."""
  cores = []

  def make(base_path: Path, policy: str = "", labels=None, warm_up=None) -> ServerCore:
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=MODEL_NAME, base_path=str(base_path))
    if policy:
      text_format.Parse(policy, model.model_version_policy)
    for label, version in (labels or {}).items():
      model.version_labels[label] = version
    cores.append(ServerCore(config, poll_wait_seconds=0, warm_up=warm_up or inference.warm_up))
    return cores[-1]

  yield make
  for core in cores:
    core.stop()


def copy_versions(saved_model: Path, base_path: Path, *versions: int) -> None:
  for version in versions:
    shutil.copytree(saved_model, base_path / str(version))


def assert_not_found(call: Callable[[], object]) -> None:
  with pytest.raises(ServingError) as error:
    call()
  assert error.value.code == grpc.StatusCode.NOT_FOUND


def poll_twice(core: ServerCore) -> None:
  """A version loads once two polls see the same complete directory."""
  core.poll_all()
  core.poll_all()


def states(core: ServerCore):
  try:
    return {s.version: s.state for s in core.model(MODEL_NAME).statuses()}
  except ServingError as error:
    assert error.code == grpc.StatusCode.NOT_FOUND
    return {}


def test_a_partially_copied_version_waits_until_complete(core_for, tmp_path, saved_model):
  core = core_for(tmp_path)
  version_dir = tmp_path / "1"
  version_dir.mkdir()
  shutil.copy(saved_model / "saved_model.pb", version_dir)
  (version_dir / "variables").mkdir()
  poll_twice(core)
  assert_not_found(lambda: core.model(MODEL_NAME).servable())
  shutil.rmtree(version_dir)
  shutil.copytree(saved_model, version_dir)
  core.poll_all()
  assert states(core) == {1: START}, "a directory seen once may still be growing"
  core.poll_all()
  assert states(core) == {1: AVAILABLE}


def test_a_directory_that_keeps_changing_is_not_loaded(core_for, tmp_path, saved_model):
  core = core_for(tmp_path)
  copy_versions(saved_model, tmp_path, 1)
  core.poll_all()
  (tmp_path / "1" / "assets.extra" / "late_file").write_text("still copying")
  core.poll_all()
  assert states(core) == {1: START}
  core.poll_all()
  assert states(core) == {1: AVAILABLE}


def test_a_corrupt_version_never_replaces_the_serving_one(core_for, tmp_path, saved_model):
  core = core_for(tmp_path)
  copy_versions(saved_model, tmp_path, 1)
  poll_twice(core)
  copy_versions(saved_model, tmp_path, 2)
  (tmp_path / "2" / "saved_model.pb").write_bytes(b"\x00not a saved model")
  poll_twice(core)
  poll_twice(core)
  assert core.model(MODEL_NAME).servable().version == 1
  statuses = {s.version: s for s in core.model(MODEL_NAME).statuses()}
  assert statuses[1].state == AVAILABLE and statuses[1].status.error_code == 0
  assert statuses[2].state == END and statuses[2].status.error_code != 0
  assert statuses[2].status.error_message
  # Fixing the directory by hand makes the version load.
  shutil.rmtree(tmp_path / "2")
  copy_versions(saved_model, tmp_path, 2)
  poll_twice(core)
  assert states(core) == {2: AVAILABLE, 1: END}


def test_a_failing_warm_up_fails_the_load(core_for, tmp_path, saved_model):
  core = core_for(tmp_path)
  copy_versions(saved_model, tmp_path, 1)
  poll_twice(core)
  copy_versions(saved_model, tmp_path, 2)
  write_warmup_requests(tmp_path / "2", [b"\x07garbage"], MODEL_NAME)
  poll_twice(core)
  statuses = {s.version: s for s in core.model(MODEL_NAME).statuses()}
  assert statuses[2].state == END
  assert "warm-up" in statuses[2].status.error_message
  assert core.model(MODEL_NAME).servable().version == 1


def test_warm_up_runs_before_a_version_is_available(core_for, tmp_path, saved_model):
  seen = []

  def record_warm_up(servable):
    seen.append((servable.version, dict(states(core))))

  core = core_for(tmp_path, warm_up=record_warm_up)
  copy_versions(saved_model, tmp_path, 1)
  poll_twice(core)
  assert seen == [(1, {1: get_model_status_pb2.ModelVersionStatus.State.LOADING})]


def test_latest_policy_serves_the_newest_versions(core_for, tmp_path, saved_model):
  core = core_for(tmp_path, "latest { num_versions: 2 }")
  copy_versions(saved_model, tmp_path, 1, 2, 3)
  poll_twice(core)
  assert states(core) == {3: AVAILABLE, 2: AVAILABLE}
  shutil.rmtree(tmp_path / "3")
  poll_twice(core)
  assert states(core) == {2: AVAILABLE, 1: AVAILABLE}, "a deleted version leaves the status"


def test_loaded_versions_are_frozen_and_unloaded_ones_freed(core_for, tmp_path, saved_model):
  """A loaded version's objects are moved out of the cyclic garbage
  collector's way (gc.freeze); an unloaded one is still freed."""
  core = core_for(tmp_path)
  copy_versions(saved_model, tmp_path, 1)
  poll_twice(core)
  first = core.model(MODEL_NAME).servable()
  assert not any(o is first for o in gc.get_objects()), "frozen: no generation holds it"
  assert gc.get_freeze_count() > 0
  gone = weakref.ref(first)
  del first
  copy_versions(saved_model, tmp_path, 2)
  poll_twice(core)
  core.poll_all()
  assert states(core) == {2: AVAILABLE, 1: END}
  assert gone() is None, "the unloaded version is collected, not frozen"


def test_specific_and_all_policies(core_for, tmp_path, saved_model):
  copy_versions(saved_model, tmp_path, 1, 2, 3)
  specific = core_for(tmp_path, "specific { versions: 1 versions: 3 }", labels={"stable": 1})
  poll_twice(specific)
  assert states(specific) == {3: AVAILABLE, 1: AVAILABLE}
  assert specific.model(MODEL_NAME).servable(label="stable").version == 1
  assert_not_found(lambda: specific.model(MODEL_NAME).servable(version=2))
  every = core_for(tmp_path, "all {}")
  poll_twice(every)
  assert states(every) == {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE}


def test_versions_serve_their_own_weights(core_for, tmp_path, saved_model, examples):
  core = core_for(tmp_path, "all {}")
  copy_versions(saved_model, tmp_path, 1)
  build_ranking_model(tmp_path / "2", MODEL_NAME, seed=6)
  poll_twice(core)
  model = core.model(MODEL_NAME)
  inputs = {"examples": np.array(examples, dtype=object)}
  first = model.servable(1).signature("serving_default")(inputs)["score"]
  second = model.servable(2).signature("serving_default")(inputs)["score"]
  assert not np.allclose(first, second)


def test_reload_config_adds_and_removes_models(core_for, tmp_path, saved_model):
  shutil.copytree(saved_model, tmp_path / "a" / "1")
  shutil.copytree(saved_model, tmp_path / "b" / "7")
  core = core_for(tmp_path / "a")
  poll_twice(core)
  config = model_server_config_pb2.ModelServerConfig()
  config.model_config_list.config.add(name="other", base_path=str(tmp_path / "b"))
  core.reload_config(config)
  assert core.model_names == ["other"]
  assert core.model("other").servable().version == 7
  assert_not_found(lambda: core.model(MODEL_NAME))
  duplicate = model_server_config_pb2.ModelServerConfig()
  for _ in range(2):
    duplicate.model_config_list.config.add(name="x", base_path=str(tmp_path / "b"))
  with pytest.raises(ServingError) as error:
    core.reload_config(duplicate)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_server_starting_on_a_corrupt_newest_version_serves_the_one_before(
  core_for, tmp_path, saved_model
):
  copy_versions(saved_model, tmp_path, 1)
  (tmp_path / "2").mkdir()
  (tmp_path / "2" / "saved_model.pb").write_bytes(b"garbage")
  core = core_for(tmp_path)
  poll_twice(core)
  assert states(core) == {2: END, 1: AVAILABLE}


def test_only_versions_the_policy_will_pick_are_reported_as_start(core_for, tmp_path, saved_model):
  core = core_for(tmp_path)
  copy_versions(saved_model, tmp_path, 1)
  poll_twice(core)
  copy_versions(saved_model, tmp_path, 3)
  copy_versions(saved_model, tmp_path, 2)
  core.poll_all()
  assert states(core) == {3: START, 1: AVAILABLE}, "2 is not aspired: 3 is newer"
  shutil.rmtree(tmp_path / "3")
  core.poll_all()
  assert states(core) == {2: AVAILABLE, 1: END}


def _rest_states(endpoint: Endpoint, path: str = ""):
  """(HTTP status, {version: state name}) of REST's GetModelStatus."""
  code, body = http(endpoint.rest_address, "GET", f"/v1/models/{MODEL_NAME}{path}")
  versions = body.get("model_version_status", []) if isinstance(body, dict) else []
  return code, {int(s["version"]): s["state"] for s in versions}


def test_deleted_versions_leave_get_model_status_on_the_real_server(tmp_path):
  """Unloaded by the policy: END, as in TF Serving (the directory is still
  there). Deleted (a rollback, or removing a failed push): gone from the
  status over gRPC and REST, once the version that replaces it serves."""
  model_dir = tmp_path / MODEL_NAME
  model_dir.mkdir()
  push_version(model_dir, MODEL_NAME, 1, seed=1)
  with local_server(model_dir, poll_seconds=0.1) as (endpoint, _):
    for version in (2, 3):
      push_version(model_dir, MODEL_NAME, version, seed=version)
      endpoint.wait_for_state(version, AVAILABLE)
    endpoint.wait_for_state(2, END)
    push_corrupt_version(model_dir, 4)
    endpoint.wait_for_state(4, END)
    shutil.rmtree(model_dir / "4")  # removing a failed push
    shutil.rmtree(model_dir / "3")  # rolling back the serving version
    endpoint.wait_for_state(2, AVAILABLE)
    # 3 is unloaded, and forgotten, in the poll that made 2 available.
    wait_until(lambda: 3 not in endpoint.statuses(), 5, "version 3 to leave the status")
    assert {v: s.state for v, s in endpoint.statuses().items()} == {2: AVAILABLE, 1: END}
    assert _rest_states(endpoint) == (200, {2: "AVAILABLE", 1: "END"})
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.version.value = 3
    with pytest.raises(grpc.RpcError) as error:
      endpoint.models.GetModelStatus(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find version 3" in error.value.details()
    assert _rest_states(endpoint, "/versions/3")[0] == 404
    # A deleted version pushed again comes back as a new load.
    push_version(model_dir, MODEL_NAME, 3, seed=3)
    endpoint.wait_for_state(3, AVAILABLE)
    endpoint.channel.close()
