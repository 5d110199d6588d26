"""The Pusher pushes a model once, whoever else pushes at the same time, and
leaves no staging debris behind a failed or killed push."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from components import pusher


def _saved_model(path: Path, fingerprint: bytes, files: int = 200) -> str:
  """A directory shaped like a SavedModel: a fingerprint and many variable and
  asset files, so that a copy takes long enough for pushes to overlap."""
  (path / "variables").mkdir(parents=True)
  (path / "assets").mkdir()
  (path / pusher.FINGERPRINT_FILE).write_bytes(fingerprint)
  (path / "saved_model.pb").write_bytes(b"graph")
  (path / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(1 << 20))
  for i in range(files):
    (path / "assets" / f"vocabulary_{i}").write_bytes(os.urandom(1024))
  return str(path)


def test_concurrent_pushes_of_one_model_push_it_once(tmp_path):
  model = _saved_model(tmp_path / "model", b"fingerprint-a")
  base = str(tmp_path / "serving" / "census")
  start = threading.Barrier(4)
  results = []

  def push() -> None:
    start.wait()
    results.append(pusher.push_if_new(model, base))

  threads = [threading.Thread(target=push) for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  versions = pusher.numeric_versions(base)
  assert len(versions) == 1
  assert sorted(pushed for _, pushed in results) == [False, False, False, True]
  assert {version for version, _ in results} == set(versions)


def test_a_new_model_gets_a_new_version_and_the_same_model_does_not(tmp_path):
  base = str(tmp_path / "serving")
  first, pushed = pusher.push_if_new(_saved_model(tmp_path / "a", b"a", 2), base)
  assert pushed
  again, pushed = pusher.push_if_new(_saved_model(tmp_path / "a2", b"a", 2), base)
  assert (again, pushed) == (first, False)
  second, pushed = pusher.push_if_new(_saved_model(tmp_path / "b", b"b", 2), base)
  assert pushed and second > first


def test_a_failed_push_removes_its_staging_directory(tmp_path):
  model = _saved_model(tmp_path / "model", b"x", 2)
  # A dangling link stands for a file that cannot be read mid-copy (a full
  # disk fails the same way, at the write).
  os.symlink(tmp_path / "missing", Path(model) / "variables" / "variables.index")
  base = tmp_path / "serving"
  with pytest.raises(OSError):  # tfx.dsl.io NotFoundError
    pusher.push_if_new(model, str(base))
  assert sorted(p.name for p in base.iterdir()) == []
  assert Path(pusher.push_lock_path(str(base))).exists()  # the lock lives beside it


def test_a_stale_staging_directory_is_removed_by_the_next_push(tmp_path):
  base = tmp_path / "serving"
  stale = base / f"{pusher.STAGING_PREFIX}123"
  stale.mkdir(parents=True)
  (stale / "saved_model.pb").write_bytes(b"half a model")
  version, pushed = pusher.push_if_new(_saved_model(tmp_path / "m", b"m", 2), str(base))
  assert pushed and not stale.exists()
  assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == [str(version)]
