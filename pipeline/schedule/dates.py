"""A run is a date: which span a day's run ingests and trains up to.

* files source with TFX's date placeholders ({YYYY}{MM}{DD}): TFX numbers a
  daily span by its days since 1970-01-01, so the date is that span;
* otherwise spans are days since the spec's `schedule.start_date` (span 1),
  as the Airflow DAG counts them.
"""

from __future__ import annotations

import datetime
from typing import Iterator

from models.spec import RankingSpec

_EPOCH = datetime.date(1970, 1, 1)


def _uses_date_placeholders(spec: RankingSpec) -> bool:
  data = spec.data
  patterns = [data.pattern, data.split.train, data.split.eval]
  return data.source == "files" and any("{YYYY}" in p for p in patterns if p)


def span_for_date(spec: RankingSpec, day: datetime.date) -> int:
  """The span of `day`'s run; ValueError naming what the spec lacks."""
  if _uses_date_placeholders(spec):
    return (day - _EPOCH).days
  if spec.schedule is None:
    raise ValueError(
      f"spec {spec.name!r} cannot map a date to a span: its files carry no "
      "{YYYY}{MM}{DD} placeholder and it has no schedule.start_date (the day of span 1); "
      "give --span instead"
    )
  start = datetime.date.fromisoformat(spec.schedule.start_date)
  span = (day - start).days + 1
  if span < 1:
    raise ValueError(f"{day} is before the spec's schedule.start_date {start} (span 1)")
  return span


def days(first: datetime.date, last: datetime.date) -> Iterator[datetime.date]:
  """Every day from `first` to `last`, both included, in order."""
  if last < first:
    raise ValueError(f"--to {last} is before --from {first}")
  for offset in range((last - first).days + 1):
    yield first + datetime.timedelta(days=offset)
