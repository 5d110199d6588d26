"""The validation of the spec's `schedule` section (models.spec.ScheduleSpec)."""

from __future__ import annotations

import datetime
import re

from models.spec import SCHEDULE_PRESETS, ScheduleSpec

_CRON_FIELD = re.compile(r"^[0-9*,/-]+$")


def parse_schedule(f) -> ScheduleSpec:
  """`f`: the section's fields reader (models.spec_fields.Fields)."""
  # YAML reads an unquoted 2026-01-01 as a date; a quoted one is a string.
  start = f.get("start_date", (str, datetime.date), required=True)
  if isinstance(start, datetime.datetime) or not isinstance(start, (str, datetime.date)):
    f.fail(f"must be a date (YYYY-MM-DD), got {start!r}", "start_date")
  if isinstance(start, str):
    try:
      start = datetime.date.fromisoformat(start)
    except ValueError:
      f.fail(f"must be a date (YYYY-MM-DD), got {start!r}", "start_date")
  spec = ScheduleSpec(
    start_date=start.isoformat(),
    interval=f.get("interval", str, default="@daily"),
    retries=f.get("retries", int, default=2),
    retry_delay_minutes=f.get("retry_delay_minutes", int, default=5),
    catchup=f.get("catchup", bool, default=False),
  )
  f.done()
  fields = spec.interval.split()
  if spec.interval not in SCHEDULE_PRESETS and not (
    len(fields) == 5 and all(_CRON_FIELD.match(x) for x in fields)
  ):
    f.fail(
      f"{spec.interval!r} is neither one of {', '.join(SCHEDULE_PRESETS)} "
      "nor a five-field cron expression",
      "interval",
    )
  if spec.retries < 0:
    f.fail("must be >= 0", "retries")
  if spec.retry_delay_minutes < 0:
    f.fail("must be >= 0", "retry_delay_minutes")
  return spec
