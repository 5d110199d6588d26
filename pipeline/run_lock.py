"""One run at a time per pipeline root.

Overlapping scheduled runs (or a manual run during a cron run) on one home
would both ingest, train and push from the same data into the same MLMD store.
The runner takes an exclusive `flock` on `<pipeline root>/run.lock` for the
whole run; the kernel releases it when the holder exits, however it exits, so
a killed run never leaves a stale lock. The file records the holder's pid,
host and start time for the message whoever comes second gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
  """Another run holds the pipeline root."""


def _holder(fd: int) -> str:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    info = json.loads(os.read(fd, 4096).decode() or "{}")
  except (OSError, ValueError):
    info = {}
  if not info:
    return "holder unknown"
  return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


@contextlib.contextmanager
def hold(
  pipeline_root: Path, wait: bool = False, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
  """Holds the root's run lock for the `with` block. Busy: raises
  `RunLockedError` naming the holder, or with `wait` blocks until it is free
  (telling `on_wait` who holds it)."""
  pipeline_root.mkdir(parents=True, exist_ok=True)
  path = pipeline_root / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      if not wait:
        raise RunLockedError(
          f"another mtlrank run holds {pipeline_root} ({holder}); "
          "one run at a time per home: wait for it, or pass --wait"
        ) from None
      if on_wait is not None:
        on_wait(f"waiting for the run holding {pipeline_root} ({holder})")
      fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(
      fd,
      json.dumps(
        {
          "pid": os.getpid(),
          "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
      ).encode(),
    )
    yield
  finally:
    os.close(fd)  # releases the lock
