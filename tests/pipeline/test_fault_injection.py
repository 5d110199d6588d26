"""Fault injection: a scheduled sequence of `mtlrank run`s on one home where one
run is killed mid-Trainer, one is started while another holds the home, and
one fails in the Pusher on a disk that refuses writes; the end state is still
right: each span ingested once, each model pushed once, no staging debris, and
the newest blessed model serving. Every run is a real `mtlrank run` process
(the real TFX pipeline, Beam, MLMD); the only injected piece is the disk
failure, a kernel file-size limit around the Pusher's copy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2
from tensorflow_serving.config import model_server_config_pb2

from components import pusher
from models.spec import resolve_spec_path
from pipeline import results
from serving.manager import ServerCore

# Runs the real TFX pipeline: left out of `make test-fast`.
pytestmark = pytest.mark.pipeline

REPO = Path(__file__).resolve().parents[2]
SPEC_NAME = "synthetic"
RUN_TIMEOUT = 900

# `mtlrank run`, with every file write beyond 4 KiB failing (EFBIG, as a full
# disk fails with ENOSPC) while the Pusher copies the model; the limit is
# lifted again when the push returns, so TFX still records the failure.
_FULL_DISK_RUN = """
import resource, signal, sys
from components import pusher
real_push = pusher.push_if_new

def push_on_a_full_disk(model_dir, base_directory):
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
  try:
    return real_push(model_dir, base_directory)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

pusher.push_if_new = push_on_a_full_disk
from pipeline import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _tiny_spec(path: Path) -> None:
  """The synthetic spec on 2 tiny spans (window of 2), 1 epoch, no slices, and
  one value gate every model passes, so that every finished run blesses."""
  raw = yaml.safe_load(resolve_spec_path(SPEC_NAME).read_text())
  raw["data"]["num_spans"] = 2
  raw["data"]["params"].update(num_spans=2, requests_per_span=60, num_users=50, num_items=40)
  raw["training"].update(epochs=1, batch_size=64)
  raw["evaluation"].update(slices=[], gated_slices=[])
  raw["evaluation"]["thresholds"] = {"click": {"auc": {"value": 0.0}}}
  path.write_text(yaml.safe_dump(raw))


class Home:
  """One home the scheduled runs share, and how to start them."""

  def __init__(self, tmp_path: Path):
    self.spec = tmp_path / "tiny.yaml"
    _tiny_spec(self.spec)
    self.home = tmp_path / "home"
    self.tmp = tmp_path
    self.base = self.home / "serving" / SPEC_NAME
    self.pipeline_root = self.home / "pipelines" / SPEC_NAME

  def start(self, span: int, name: str, *extra: str, full_disk: bool = False) -> subprocess.Popen:
    args = ["run", "--spec", str(self.spec), "--home", str(self.home), "--span", str(span)]
    args += ["--summary-json", str(self.tmp / f"{name}.json"), *extra]
    command = [sys.executable, "-c", _FULL_DISK_RUN] if full_disk else [self.mtlrank()]
    return subprocess.Popen(
      command + args,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=REPO,
      env={**os.environ, "PYTHONUNBUFFERED": "1"},
      start_new_session=True,  # killed as a whole, as a scheduler kills a task
    )

  @staticmethod
  def mtlrank() -> str:
    return str(Path(sys.executable).with_name("mtlrank"))

  def summary(self, name: str) -> Dict:
    return json.loads((self.tmp / f"{name}.json").read_text())

  def versions(self) -> List[int]:
    return pusher.numeric_versions(str(self.base))


def _read_until(process: subprocess.Popen, marker: str) -> List[str]:
  """The console lines up to the first one containing `marker`."""
  lines = []
  for line in process.stdout:
    lines.append(line)
    if marker in line:
      return lines
  raise AssertionError(f"the run ended before printing {marker!r}: {''.join(lines)[-2000:]}")


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
  out, err = process.communicate(timeout=RUN_TIMEOUT)
  return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _executions(store, node: str) -> List:
  return [
    e
    for e in store.get_executions()
    if any(c.name.endswith(f".{node}") for c in store.get_contexts_by_execution(e.id))
  ]


def test_killed_concurrent_and_failed_runs_leave_one_ingestion_and_one_push_each(tmp_path):
  home = Home(tmp_path)

  # 1. Span 1's run is killed while the Trainer trains.
  killed = home.start(1, "killed")
  _read_until(killed, "[mtlrank] Trainer ...")
  time.sleep(1.0)
  os.killpg(killed.pid, signal.SIGKILL)
  killed.wait()
  assert killed.returncode == -signal.SIGKILL
  assert home.versions() == []

  # 2. The scheduler retries span 1, and a manual run starts on the same home
  # while the retry holds it: the manual run stops at once, naming the holder.
  # The retry trains and blesses, then fails in the Pusher: the disk refuses
  # the copy half way.
  retry = home.start(1, "retry", full_disk=True)
  _read_until(retry, "[mtlrank] spec ")
  manual = subprocess.run(
    [home.mtlrank(), "run", "--spec", str(home.spec), "--home", str(home.home), "--span", "1"],
    capture_output=True,
    text=True,
    timeout=RUN_TIMEOUT,
    cwd=REPO,
  )
  assert retry.poll() is None, "the retry ended before the manual run tried the lock"
  assert manual.returncode == 1, manual.stderr
  assert f"pid {retry.pid}" in manual.stderr and "Traceback" not in manual.stderr
  failed = _finish(retry)
  assert failed.returncode == 1, failed.stderr[-3000:]
  assert "Traceback" not in failed.stderr and "full log: " in failed.stderr
  assert "[mtlrank] Evaluator done in" in failed.stdout, "blessed, then failed to push"
  assert home.versions() == []
  assert [p.name for p in home.base.iterdir()] == [], "no staging directory left behind"

  # 3. Span 2's run, on a disk with room: ingests span 2 (span 1 is already
  # in), trains on both and pushes.
  done = _finish(home.start(2, "last"))
  assert done.returncode == 0, done.stderr[-3000:]
  last = home.summary("last")
  assert last["blessed"] and last["training_spans"] == [1, 2]
  assert "trained on spans 1, 2" in done.stdout
  [version] = home.versions()
  assert last["pushed_model_dir"] == str(home.base / str(version))

  # End state. Each span ingested once, the last window reading those ingestions.
  store = results.open_store(home.pipeline_root / "metadata.sqlite")
  examples = [a for a in store.get_artifacts_by_type("Examples") if "span" in a.custom_properties]
  assert sorted(_int(a, "span") for a in examples) == [1, 2], "one Examples artifact per span"
  by_span = {_int(a, "span"): a.id for a in examples}
  assert {e["span"]: e["artifact_id"] for e in last["training_examples"]} == by_span
  # Each blessed model pushed at most once: the newest blessed one, as the only
  # version; the retry's blessed model never reached the serving directory.
  blessed = sorted(
    (b for b in store.get_artifacts_by_type("ModelBlessing") if _int(b, "blessed") == 1),
    key=lambda b: b.id,
  )
  assert len(blessed) == 2, "the retry's model and the last run's"
  models = store.get_artifacts_by_id([_int(b, "current_model_id") for b in blessed])
  fingerprints = [
    pusher._fingerprint(os.path.join(m.uri, "Format-Serving"))
    for m in sorted(models, key=lambda m: m.id)
  ]
  assert fingerprints[0] != fingerprints[1]
  assert pusher._fingerprint(str(home.base / str(version))) == fingerprints[1]
  assert sorted(p.name for p in home.base.iterdir()) == [str(version)]
  # The server serves that version.
  config = model_server_config_pb2.ModelServerConfig()
  config.model_config_list.config.add(name=SPEC_NAME, base_path=str(home.base))
  core = ServerCore(config, poll_wait_seconds=0)
  try:
    core.start()
    assert core.model(SPEC_NAME).servable().version == version
  finally:
    core.stop()
  # The killed Trainer stays RUNNING in MLMD, never completed; one log per run.
  trainer_states = [e.last_known_state for e in _executions(store, "Trainer")]
  assert trainer_states.count(metadata_store_pb2.Execution.RUNNING) == 1
  assert len(list((home.pipeline_root / "logs").glob("run-*.log"))) == 3


def _int(artifact, key: str) -> int:
  return artifact.custom_properties[key].int_value
