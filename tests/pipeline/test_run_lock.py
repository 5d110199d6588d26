"""One run at a time per pipeline root: a second `mtlrank run` on a root that a
run holds stops at once, naming the holder, before it touches anything; a
killed holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import run_lock

_HOLD = """
import sys, time
from pathlib import Path
from pipeline import run_lock
with run_lock.hold(Path(sys.argv[1])):
  print("held", flush=True)
  time.sleep(600)
"""


def _holder(root: Path) -> subprocess.Popen:
  process = subprocess.Popen(
    [sys.executable, "-c", _HOLD, str(root)],
    stdout=subprocess.PIPE,
    text=True,
    cwd=Path(__file__).resolve().parents[2],
  )
  assert process.stdout.readline().strip() == "held"
  return process


def test_a_second_run_on_a_held_root_stops_at_once_naming_the_holder(tmp_path):
  home = tmp_path / "home"
  root = home / "pipelines" / "census"
  holder = _holder(root)
  try:
    mtlrank = Path(sys.executable).with_name("mtlrank")
    started = time.monotonic()
    result = subprocess.run(
      [str(mtlrank), "run", "--spec", "census", "--home", str(home)],
      capture_output=True,
      text=True,
      timeout=120,
    )
    assert result.returncode == 1
    assert f"pid {holder.pid}" in result.stderr and "--wait" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60
    assert not (home / "data").exists()  # stopped before preparing any data
  finally:
    holder.kill()
    holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  holder = _holder(tmp_path)
  with pytest.raises(run_lock.RunLockedError, match=f"pid {holder.pid}"):
    with run_lock.hold(tmp_path):
      pass
  os.kill(holder.pid, signal.SIGKILL)
  holder.wait()
  with run_lock.hold(tmp_path):
    assert f'"pid": {os.getpid()}' in (tmp_path / run_lock.LOCK_FILE).read_text()


def test_wait_blocks_until_the_holder_finishes(tmp_path):
  holder = _holder(tmp_path)
  messages = []
  try:
    killer = subprocess.Popen(["sh", "-c", f"sleep 2; kill {holder.pid}"])
    started = time.monotonic()
    with run_lock.hold(tmp_path, wait=True, on_wait=messages.append):
      waited = time.monotonic() - started
    killer.wait()
  finally:
    holder.kill()
    holder.wait()
  assert waited >= 1.5
  assert messages and f"pid {holder.pid}" in messages[0]
