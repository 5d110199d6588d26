"""`mtlrank schedule airflow`: the DAG it writes, run by `airflow dags test` on
SQLite for two consecutive logical dates of a tiny simulator spec: the first
run trains on span 1, the second on spans 1 and 2, and each pushes a version."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.spec import resolve_spec_path
from pipeline import cli

# Runs the real TFX pipeline twice under Airflow: left out of `make test-fast`.
pytestmark = [
  pytest.mark.pipeline,
  pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs the airflow extra"),
]


def _tiny_scheduled_spec(path: Path) -> None:
  """The bundled synthetic spec on 2 tiny spans, 1 epoch, no slices, a gate any
  model passes (so that each run pushes), scheduled daily from 2026-01-01."""
  raw = yaml.safe_load(resolve_spec_path("synthetic").read_text())
  raw["data"]["num_spans"] = 2
  raw["data"]["params"].update(num_spans=2, requests_per_span=60, num_users=50, num_items=40)
  raw["training"].update(epochs=1, batch_size=64)
  raw["evaluation"].update(
    slices=[], gated_slices=[], thresholds={"click": {"auc": {"value": 0.0}}}
  )
  raw["schedule"] = {"start_date": "2026-01-01", "interval": "@daily", "retries": 0}
  path.write_text(yaml.safe_dump(raw))


def test_two_daily_runs_train_on_a_growing_window_and_push_two_versions(tmp_path):
  spec_file, home, dags = tmp_path / "tiny.yaml", tmp_path / "home", tmp_path / "dags"
  _tiny_scheduled_spec(spec_file)
  assert (
    cli.main(
      ["schedule", "airflow", "--spec", str(spec_file), "--home", str(home), "--out", str(dags)]
    )
    == 0
  )
  env = dict(
    os.environ,
    AIRFLOW_HOME=str(tmp_path / "airflow"),
    AIRFLOW__CORE__DAGS_FOLDER=str(dags),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}",
  )
  airflow = [str(Path(sys.executable).parent / "airflow")]

  def airflow_cli(*args: str) -> str:
    done = subprocess.run(
      [*airflow, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr

  airflow_cli("db", "migrate")
  summaries = []
  for day in ("2026-01-01", "2026-01-02"):
    log = airflow_cli("dags", "test", "mtlrank_synthetic", day)
    summary_file = home / "runs" / "synthetic" / f"{day}.json"
    assert summary_file.is_file(), log[-4000:]
    summaries.append(json.loads(summary_file.read_text()))
  first, second = summaries
  # The logical date is the run's date: span 1 on the start date, span 2 the day after.
  assert first["training_spans"] == [1]
  assert second["training_spans"] == [1, 2]
  assert first["blessed"] and second["blessed"]
  versions = sorted(p.name for p in (home / "serving" / "synthetic").iterdir() if p.name.isdigit())
  assert len(versions) == 2
  assert [Path(s["pushed_model_dir"]).name for s in summaries] == versions
