"""Server-side batching: concurrent requests to one signature are merged along
the batch dimension, run as one call, and the outputs split back.

Semantics follow TF Serving's BatchingParameters: one batch is open at a
time; it stops waiting for more requests when it reaches `max_batch_size` or
`batch_timeout_micros` after its first request arrived; `num_batch_threads`
batches run at once, and a batch that waits for a free slot keeps gathering
requests; beyond `max_enqueued_batches` waiting batches, requests fail
UNAVAILABLE. A request larger than `max_batch_size` runs on its own instead of
failing.

There are no batch threads: the request that opens a batch leads it (waits,
runs it and wakes the others), which saves two thread hand-offs per batch.

One departure from TF Serving: a request that finds no batch open, none
waiting or running, and no other request arrived within the timeout before it
runs at once in its own thread instead of waiting out the timeout (TF
Serving's shared_batch_scheduler waits: IsOpenBatchSchedulable). Such a
request had nothing to merge with by the time the last one arrived, so the
wait would only add latency to a lone client.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Dict, List

import grpc
import numpy as np

from serving.constants import (
  DEFAULT_BATCH_TIMEOUT_MICROS,
  DEFAULT_MAX_BATCH_SIZE,
  DEFAULT_MAX_ENQUEUED_BATCHES,
  DEFAULT_NUM_BATCH_THREADS,
)
from serving.errors import ServingError

Tensors = Dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
  batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
  num_batch_threads: int = DEFAULT_NUM_BATCH_THREADS
  max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES


class _Task:
  __slots__ = ("inputs", "size", "outputs", "error", "ready")

  def __init__(self, inputs: Tensors, size: int):
    self.inputs = inputs
    self.size = size
    self.outputs: Tensors | None = None
    self.error: BaseException | None = None
    # A follower's: held until the leader has run the batch. A bare lock per
    # follower, not an Event: Event.wait allocates a lock and, once woken,
    # every follower contends for the Event's condition lock, which the
    # leader holds while it wakes the others (futex waits in perf).
    self.ready: threading.Lock | None = None


class _Batch:
  __slots__ = ("key", "tasks", "size", "closing")

  def __init__(self, key: tuple):
    self.key = key
    self.tasks: List[_Task] = []
    self.size = 0
    # Set when the batch is full or must give way to an incompatible request.
    self.closing = threading.Event()


def batch_size_of(inputs: Tensors) -> int | None:
  """The common leading dimension of all inputs, or None if there is none."""
  sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
  if len(sizes) != 1:
    return None
  return sizes.pop()


def _merge_key(inputs: Tensors) -> tuple:
  """Requests merge only when every input agrees on dtype and inner shape."""
  return tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items()))


class Batcher:
  """Merges concurrent calls of `run` into batches."""

  def __init__(self, run: RunFn, options: BatchingOptions):
    self._run = run
    self._options = options
    self._timeout = options.batch_timeout_micros / 1e6
    self._lock = threading.Lock()
    self._open: _Batch | None = None
    self._waiting_batches = 0
    self._running_batches = 0
    self._last_arrival = float("-inf")
    self._slots = threading.BoundedSemaphore(options.num_batch_threads)

  def __call__(self, inputs: Tensors) -> Tensors:
    size = batch_size_of(inputs)
    if size is None or size == 0 or size > self._options.max_batch_size:
      return self._run(inputs)
    task = _Task(inputs, size)
    arrived = time.monotonic()
    if self._runs_at_once(arrived):
      try:
        self._run_alone(task)
      finally:
        self._finish()
    else:
      batch, leads = self._join(task, _merge_key(inputs), arrived)
      if leads:
        self._lead(batch, started=arrived)
      else:
        task.ready.acquire()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _runs_at_once(self, arrived: float) -> bool:
    """Whether a request arriving now has nothing to wait for: the batcher is
    idle and the previous request arrived more than the timeout ago. If so,
    takes a batch slot (released by `_finish`) and records the arrival."""
    with self._lock:
      idle = self._open is None and self._waiting_batches == 0 and self._running_batches == 0
      quiet = arrived - self._last_arrival > self._timeout
      if not (idle and quiet and self._slots.acquire(blocking=False)):
        return False
      self._last_arrival = arrived
      self._running_batches += 1
      return True

  def _finish(self) -> None:
    with self._lock:
      self._running_batches -= 1
    self._slots.release()

  def _join(self, task: _Task, key: tuple, arrived: float):
    """Adds the task to the open batch, or opens a batch it leads."""
    with self._lock:
      self._last_arrival = arrived
      batch = self._open
      leads = (
        batch is None or batch.key != key or (batch.size + task.size > self._options.max_batch_size)
      )
      if leads:
        if self._waiting_batches >= self._options.max_enqueued_batches:
          raise ServingError(grpc.StatusCode.UNAVAILABLE, "the batch queue is full; retry later")
        if batch is not None:
          batch.closing.set()
        batch = self._open = _Batch(key)
        self._waiting_batches += 1
      else:
        task.ready = threading.Lock()
        task.ready.acquire()
      batch.tasks.append(task)
      batch.size += task.size
      if batch.size >= self._options.max_batch_size:
        batch.closing.set()
        self._open = None
    return batch, leads

  def _lead(self, batch: _Batch, started: float) -> None:
    batch.closing.wait(self._timeout - (time.monotonic() - started))
    self._slots.acquire()
    try:
      with self._lock:
        if self._open is batch:
          self._open = None
        self._waiting_batches -= 1
        self._running_batches += 1
      self._execute(batch.tasks)
    finally:
      # The batch is closed (no longer open): its task list is final.
      for task in batch.tasks:
        if task.ready is not None:
          task.ready.release()
      self._finish()

  def _execute(self, tasks: List[_Task]) -> None:
    if len(tasks) > 1:
      try:
        self._split(tasks, self._run(_merge(tasks)))
      except Exception:  # one malformed request must not fail the others
        for task in tasks:
          self._run_alone(task)
    else:
      self._run_alone(tasks[0])

  def _run_alone(self, task: _Task) -> None:
    try:
      task.outputs = self._run(task.inputs)
    except BaseException as error:  # the waiter re-raises it
      task.error = error

  def _split(self, tasks: List[_Task], outputs: Tensors) -> None:
    total = sum(task.size for task in tasks)
    if batch_size_of(outputs) != total:
      # Outputs without a batch dimension cannot be split: run one by one.
      for task in tasks:
        self._run_alone(task)
      return
    start = 0
    for task in tasks:
      end = start + task.size
      task.outputs = {k: v[start:end] for k, v in outputs.items()}
      start = end


def _merge(tasks: List[_Task]) -> Tensors:
  keys = tasks[0].inputs.keys()
  return {k: np.concatenate([task.inputs[k] for task in tasks]) for k in keys}
