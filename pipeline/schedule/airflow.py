"""`mtlrank schedule airflow`: an Airflow DAG file that runs the pipeline on the spec's schedule.

The DAG has one task per run, `mtlrank run`, in a subprocess of the Airflow
worker: the local runner (LocalDagRunner, Beam in memory, ML Metadata in
SQLite under the pipeline root) does the work exactly as by hand, with its run
lock (`--wait`), its backfill of the training window and its summary.
TFX's own `AirflowDagRunner` (one Airflow task per component) is not used: its
legacy launcher names output artifacts `<key>:<run_id>` and they collide in
MLMD on this pipeline (tensorflow/tfx#4977, #5193), and it would not run the
window's backfill.

The run's date is the Airflow logical date. Spans are days: a run of logical
date D trains up to span (D - schedule.start_date).days + 1 (`mtlrank run
--span N`; `mtlrank run` has no `--date`), so `start_date` is the day of span
1 and the DAG's start date. Retries, their delay and catchup (off by default)
come from the spec's `schedule` section; at most one run is active at a time.
Each run's summary goes to HOME/runs/<spec>/<logical date>.json.

The file is generated, self-contained (Airflow and the standard library only:
parsing it loads no TensorFlow) and names absolute paths: regenerate it rather
than edit it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List

from models.spec import RankingSpec, SpecError

_TEMPLATE = '''\
"""Runs the mtlrank pipeline of spec {spec_name!r} on its schedule ({interval}).

Written by `mtlrank schedule airflow` (pipeline/schedule/airflow.py); regenerate, do not edit.
A run of logical date D trains up to span (D - {start_date}).days + 1.
"""

import datetime
import shlex

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator

MTLRANK = {mtlrank!r}
SPEC = {spec_path!r}
HOME = {home!r}
LOCATION_ARGS = {location_args!r}
START_DATE = datetime.date.fromisoformat({start_date!r})
SUMMARY_DIR = {summary_dir!r}


def mtlrank_span(logical_date) -> int:
  """The span a run trains up to: days since the spec's schedule.start_date, plus 1."""
  return (logical_date.date() - START_DATE).days + 1


with DAG(
  dag_id={dag_id!r},
  description={description!r},
  schedule={interval!r},
  start_date=pendulum.datetime(START_DATE.year, START_DATE.month, START_DATE.day, tz="UTC"),
  catchup={catchup!r},
  max_active_runs=1,
  default_args={{
    "retries": {retries!r},
    "retry_delay": datetime.timedelta(minutes={retry_delay_minutes!r}),
  }},
  user_defined_macros={{"mtlrank_span": mtlrank_span}},
  tags=["mtlrank"],
) as dag:
  BashOperator(
    task_id="mtlrank_run",
    bash_command=" ".join(
      shlex.quote(a)
      for a in [*MTLRANK, "run", "--spec", SPEC, "--home", HOME, *LOCATION_ARGS, "--wait"]
    )
    + " --span {{{{ mtlrank_span(logical_date) }}}}"
    + " --summary-json " + shlex.quote(SUMMARY_DIR) + "/{{{{ ds }}}}.json",
  )
'''


def dag_id(spec: RankingSpec) -> str:
  return "mtlrank_" + re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)


def mtlrank_command() -> List[str]:
  """The `mtlrank` of this environment (the Airflow worker runs in it too)."""
  script = Path(sys.executable).parent / "mtlrank"
  return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli"]


def write_dag(
  spec: RankingSpec,
  home: Path,
  out_dir: Path,
  data_dir: Path | None = None,
  pipeline_root: Path | None = None,
  serving_dir: Path | None = None,
) -> Path:
  """Writes `<out_dir>/<dag id>.py` for `spec` and returns its path."""
  if spec.schedule is None:
    raise SpecError(
      f"{Path(spec.source_path).name or spec.name}: schedule: is required to schedule the "
      'pipeline (e.g. `schedule: {start_date: 2026-01-01, interval: "@daily"}`)'
    )
  if not spec.source_path:
    raise SpecError(f"{spec.name}: the spec has no file to point the DAG at")
  home = Path(home).resolve()
  location_args: List[str] = []
  for flag, value in (
    ("--data-dir", data_dir),
    ("--pipeline-root", pipeline_root),
    ("--serving-dir", serving_dir),
  ):
    if value is not None:
      location_args += [flag, str(Path(value).resolve())]
  summary_dir = home / "runs" / spec.name
  summary_dir.mkdir(parents=True, exist_ok=True)
  schedule = spec.schedule
  text = _TEMPLATE.format(
    spec_name=spec.name,
    interval=schedule.interval,
    start_date=schedule.start_date,
    mtlrank=mtlrank_command(),
    spec_path=str(Path(spec.source_path).resolve()),
    home=str(home),
    location_args=location_args,
    summary_dir=str(summary_dir),
    dag_id=dag_id(spec),
    description=f"mtlrank pipeline of spec {spec.name!r}",
    catchup=schedule.catchup,
    retries=schedule.retries,
    retry_delay_minutes=schedule.retry_delay_minutes,
  )
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"{dag_id(spec)}.py"
  path.write_text(text)
  return path
