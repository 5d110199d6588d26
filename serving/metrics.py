"""The server's metrics, exported in Prometheus' text format as TF Serving's
PrometheusExporter writes them (`--monitoring_config_file`): metric names are
TF Serving's with every character outside [a-zA-Z0-9_] turned into ':'
(`/tensorflow/serving/request_count` -> `:tensorflow:serving:request_count`).

Like TensorFlow's monitoring registry the metrics are process-wide: every
server in the process counts into them."""

from __future__ import annotations

import bisect
import re
import threading
from typing import Dict, List, Sequence, Tuple

Labels = Tuple[str, ...]


def prometheus_name(name: str) -> str:
  name = re.sub(r"[^a-zA-Z0-9_]", ":", name)
  return f"_{name}" if name[:1].isdigit() else name


def _label_text(names: Sequence[str], values: Labels) -> List[str]:
  def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')

  return [f'{re.sub(r"[^a-zA-Z0-9]", "_", n)}="{escape(v)}"' for n, v in zip(names, values)]


class Counter:
  """A cumulative count per label values."""

  def __init__(self, name: str, description: str, *label_names: str):
    self.name, self.description, self.label_names = name, description, label_names
    self._cells: Dict[Labels, int] = {}
    self._lock = threading.Lock()

  def increment(self, *labels: str, by: int = 1) -> None:
    with self._lock:
      self._cells[labels] = self._cells.get(labels, 0) + by

  def value(self, *labels: str) -> int:
    return self._cells.get(labels, 0)

  def lines(self) -> List[str]:
    metric = prometheus_name(self.name)
    with self._lock:
      cells = sorted(self._cells.items())
    lines = [f"# TYPE {metric} counter"]
    for labels, value in cells:
      lines.append(f"{metric}{{{','.join(_label_text(self.label_names, labels))}}} {value}")
    return lines


def exponential_buckets(scale: float, growth: float, count: int) -> List[float]:
  """Upper limits as TensorFlow's Buckets::Exponential: scale * growth**i."""
  return [scale * growth**i for i in range(count)]


class Histogram:
  """A distribution of observed values per label values."""

  def __init__(self, name: str, description: str, limits: Sequence[float], *label_names: str):
    self.name, self.description, self.label_names = name, description, label_names
    self._limits = list(limits)
    self._cells: Dict[Labels, Tuple[List[int], float]] = {}
    self._lock = threading.Lock()

  def observe(self, value: float, *labels: str) -> None:
    with self._lock:
      counts, total = self._cells.get(labels) or ([0] * (len(self._limits) + 1), 0.0)
      counts[bisect.bisect_left(self._limits, value)] += 1
      self._cells[labels] = (counts, total + value)

  def lines(self) -> List[str]:
    metric = prometheus_name(self.name)
    with self._lock:
      cells = sorted((k, (list(c), t)) for k, (c, t) in self._cells.items())
    lines = [f"# TYPE {metric} histogram"]
    for labels, (counts, total) in cells:
      text = _label_text(self.label_names, labels)
      prefix = f"{metric}_bucket{{{','.join(text)}{',' if text else ''}"
      cumulative = 0
      for index, count in enumerate(counts):
        cumulative += count
        limit = f"{self._limits[index]:g}" if index < len(self._limits) else "+Inf"
        lines.append(f'{prefix}le="{limit}"}} {cumulative}')
      lines.append(f"{metric}_sum{{{','.join(text)}}} {total:g}")
      lines.append(f"{metric}_count{{{','.join(text)}}} {cumulative}")
    return lines


# TF Serving's own metrics (servables/tensorflow/util.cc and TensorFlow's
# SavedModel loader), under the same names and labels.
REQUEST_COUNT = Counter(
  "/tensorflow/serving/request_count", "The total number of requests.", "model_name", "status"
)
REQUEST_LATENCY = Histogram(
  "/tensorflow/serving/request_latency",
  "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
  exponential_buckets(10, 1.8, 33),
  "model_name",
  "API",
  "entrypoint",
)
EXAMPLE_COUNT_TOTAL = Counter(
  "/tensorflow/serving/request_example_count_total",
  "The total number of tensorflow.Examples.",
  "model",
)
LOAD_ATTEMPT_COUNT = Counter(
  "/tensorflow/cc/saved_model/load_attempt_count",
  "The number of times a SavedModel was successfully loaded.",
  "model_path",
  "status",
)
METRICS = (REQUEST_COUNT, REQUEST_LATENCY, EXAMPLE_COUNT_TOTAL, LOAD_ATTEMPT_COUNT)


def record_request(model_name: str, api: str, entrypoint: str, status: str, micros: float) -> None:
  """One finished request: its status, and its latency when it succeeded."""
  REQUEST_COUNT.increment(model_name, status)
  if status == "OK":
    REQUEST_LATENCY.observe(micros, model_name, api, entrypoint)


def prometheus_page() -> str:
  lines: List[str] = []
  for metric in sorted(METRICS, key=lambda m: m.name):
    lines.extend(metric.lines())
  return "\n".join(lines) + "\n"
