"""The spec's `schedule` section: typed, validated, unknown keys refused, and
left out of the component views (a schedule change keeps every cache); the
Airflow DAG written from it."""

from __future__ import annotations

import datetime

import pytest
import yaml

from models.spec import SpecError, load_spec, parse_spec, resolve_spec_path, spec_from_json


def _raw(schedule):
  raw = yaml.safe_load(resolve_spec_path("synthetic").read_text())
  raw["schedule"] = schedule
  return raw


def test_schedule_parses_round_trips_and_maps_dates_to_spans():
  spec = parse_spec(_raw(yaml.safe_load("start_date: 2026-01-01\ninterval: '@daily'")))
  s = spec.schedule
  assert (s.start_date, s.interval, s.retries, s.catchup) == ("2026-01-01", "@daily", 2, False)
  assert spec_from_json(spec.to_json()) == spec
  assert s.span_for(datetime.date(2026, 1, 1)) == 1
  assert s.span_for(datetime.date(2026, 1, 2)) == 2
  assert spec.transform_view().schedule is None and spec.trainer_view().schedule is None
  assert load_spec("synthetic").schedule is None
  cron = parse_spec(_raw({"start_date": "2026-01-01", "interval": "30 2 * * *", "catchup": True}))
  assert cron.schedule.interval == "30 2 * * *" and cron.schedule.catchup


@pytest.mark.parametrize(
  "schedule, message",
  [
    ({"interval": "@daily"}, "schedule.start_date: is required"),
    ({"start_date": "Jan 1"}, "schedule.start_date: must be a date"),
    ({"start_date": "2026-01-01", "every": "day"}, "schedule: unknown field(s) every"),
    ({"start_date": "2026-01-01", "interval": "daily"}, "schedule.interval:"),
    ({"start_date": "2026-01-01", "retries": -1}, "schedule.retries: must be >= 0"),
    ({"start_date": "2026-01-01", "catchup": "yes"}, "schedule.catchup: must be bool"),
    ("@daily", "schedule: must be dict"),
  ],
)
def test_invalid_schedules_name_the_field(schedule, message):
  with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
    parse_spec(_raw(schedule), origin="s.yaml")


def test_the_airflow_dag_needs_a_schedule_and_parses_without_tensorflow(tmp_path):
  import ast

  from pipeline import cli
  from pipeline.schedule import airflow

  with pytest.raises(SpecError, match="schedule: is required"):
    airflow.write_dag(load_spec("synthetic"), tmp_path / "home", tmp_path / "dags")
  spec_file = tmp_path / "s.yaml"
  spec_file.write_text(yaml.safe_dump(_raw({"start_date": "2026-03-01", "retries": 3})))
  dags = tmp_path / "dags"
  args = ["schedule", "airflow", "--spec", str(spec_file), "--home", str(tmp_path / "home")]
  assert cli.main([*args, "--out", str(dags)]) == 0
  text = (dags / "mtlrank_synthetic.py").read_text()
  tree = ast.parse(text)
  imported = {
    alias.name.split(".")[0]
    for node in ast.walk(tree)
    if isinstance(node, (ast.Import, ast.ImportFrom))
    for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
  }
  assert imported == {"datetime", "shlex", "pendulum", "airflow"}
  assert "catchup=False" in text and '"retries": 3' in text and "schedule='@daily'" in text
  assert str(spec_file.resolve()) in text and "--span {{ mtlrank_span(logical_date) }}" in text
