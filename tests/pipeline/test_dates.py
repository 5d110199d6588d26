"""A run is a date: `mtlrank run --date` and `mtlrank backfill` map days to spans."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from models.spec import DataSpec, ScheduleSpec, load_spec
from pipeline import cli
from pipeline.schedule import dates

DAY = datetime.date(2026, 12, 2)


def test_a_files_source_with_date_placeholders_numbers_spans_as_tfx_does():
  spec = dataclasses.replace(
    load_spec("census"),
    data=DataSpec(source="files", format="csv", root="/logs", pattern="{YYYY}{MM}{DD}/*.csv"),
  )
  assert dates.span_for_date(spec, DAY) == (DAY - datetime.date(1970, 1, 1)).days


def test_other_specs_count_days_from_the_schedule_start():
  spec = dataclasses.replace(load_spec("census"), schedule=ScheduleSpec(start_date="2026-11-30"))
  assert dates.span_for_date(spec, DAY) == 3
  with pytest.raises(ValueError, match="before the spec's schedule.start_date"):
    dates.span_for_date(spec, datetime.date(2026, 11, 1))
  with pytest.raises(ValueError, match="give --span instead"):
    dates.span_for_date(load_spec("census"), DAY)


def test_backfill_days_are_in_order_and_the_range_must_run_forwards():
  assert list(dates.days(DAY, DAY + datetime.timedelta(days=2))) == [
    DAY,
    DAY + datetime.timedelta(days=1),
    DAY + datetime.timedelta(days=2),
  ]
  with pytest.raises(ValueError, match="before --from"):
    list(dates.days(DAY, DAY - datetime.timedelta(days=1)))


def test_the_command_line_refuses_what_cannot_be_a_run(capsys, tmp_path):
  home = ["--home", str(tmp_path)]
  with pytest.raises(SystemExit):
    cli.main(["run", "--spec", "census", "--span", "2", "--date", "2026-12-02", *home])
  assert "not allowed with argument" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["run", "--spec", "census", "--date", "12/02/2026", *home])
  assert "YYYY-MM-DD" in capsys.readouterr().err
  assert cli.main(["run", "--spec", "census", "--date", "2026-12-02", *home]) == 2
  assert "give --span instead" in capsys.readouterr().err
  code = cli.main(
    ["backfill", "--spec", "census", "--from", "2026-12-02", "--to", "2026-12-01", *home]
  )
  assert code == 2 and "before --from" in capsys.readouterr().err
  assert not (tmp_path / "pipelines").exists()  # nothing ran
