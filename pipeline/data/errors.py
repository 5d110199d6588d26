"""Input-data errors that name the file (and line or record) at fault.

`DataError` is what an adapter raises for bad input; the command line prints
its message as one line. `find_unreadable_record` names the first file of a
span whose TFRecords cannot be read (truncated, not gzip, garbage): it runs
only after a component failed, so a good run pays nothing for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class DataError(ValueError):
  """Bad input data; the message names the file and, where known, the line."""


def find_unreadable_record(files: Iterable[Path]) -> str | None:
  """'<file>: record <n>: <reason>' for the first file whose TFRecords
  (gzip-compressed when the name ends in .gz) cannot be read to the end."""
  import tensorflow as tf

  for path in files:
    count = 0
    compression = "GZIP" if str(path).endswith(".gz") else ""
    try:
      for _ in tf.data.TFRecordDataset(str(path), compression_type=compression):
        count += 1
    except (tf.errors.OpError, OSError) as e:
      reason = str(getattr(e, "message", e)).splitlines()[0][:200]
      return f"{path}: record {count + 1}: {reason}"
  return None
