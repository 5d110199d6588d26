"""Server-side batching: concurrent requests to one signature are merged along
the batch dimension, run as one call, and the outputs split back.

Semantics follow TF Serving's BatchingParameters: one batch is open at a
time and closes when it reaches `max_batch_size` or `batch_timeout_micros`
after its first request arrived; `num_batch_threads` closed batches run at
once; at most `max_enqueued_batches` full
batches wait, beyond which requests fail UNAVAILABLE. A request larger than
`max_batch_size` runs on its own instead of failing.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Callable, Dict, List, Optional

import grpc
import numpy as np

from serving.constants import (DEFAULT_BATCH_TIMEOUT_MICROS, DEFAULT_MAX_BATCH_SIZE,
                               DEFAULT_MAX_ENQUEUED_BATCHES, DEFAULT_NUM_BATCH_THREADS)
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
  __slots__ = ("inputs", "size", "key", "arrived", "done", "outputs", "error")

  def __init__(self, inputs: Tensors, size: int):
    self.inputs = inputs
    self.size = size
    self.arrived = time.monotonic()
    # Requests merge only when every input agrees on dtype and inner shape.
    self.key = tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items()))
    self.done = threading.Event()
    self.outputs: Optional[Tensors] = None
    self.error: Optional[BaseException] = None


def batch_size_of(inputs: Tensors) -> Optional[int]:
  """The common leading dimension of all inputs, or None if there is none."""
  sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
  if len(sizes) != 1:
    return None
  return sizes.pop()


class Batcher:
  """Merges concurrent calls of `run` into batches."""

  _STOP = object()

  def __init__(self, run: RunFn, options: BatchingOptions, name: str = "batcher"):
    self._run = run
    self._options = options
    self._timeout = options.batch_timeout_micros / 1e6
    self._queue: queue.Queue = queue.Queue(
        maxsize=options.max_enqueued_batches * options.max_batch_size)
    # Guards `_stopped` so that no request is queued behind the stop markers.
    self._lock = threading.Lock()
    # Held while a batch is open: batch threads fill batches one at a time
    # and run them in parallel.
    self._collecting = threading.Lock()
    self._stopped = False
    self._carried: Optional[_Task] = None  # taken from the queue, fits the next batch
    self._threads = [
        threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
        for i in range(options.num_batch_threads)]
    for thread in self._threads:
      thread.start()

  def __call__(self, inputs: Tensors) -> Tensors:
    size = batch_size_of(inputs)
    if size is None or size == 0 or size > self._options.max_batch_size:
      return self._run(inputs)
    task = _Task(inputs, size)
    with self._lock:
      if self._stopped:
        return self._run(inputs)
      try:
        self._queue.put_nowait(task)
      except queue.Full:
        raise ServingError(grpc.StatusCode.UNAVAILABLE,
                           "the batch queue is full; retry later") from None
    task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def stop(self) -> None:
    """Lets the batch threads finish what is queued, then end; later calls
    run unbatched."""
    with self._lock:
      self._stopped = True
      for _ in self._threads:
        self._queue.put(self._STOP)

  def _work(self) -> None:
    while True:
      with self._collecting:
        first = self._carried if self._carried is not None else self._queue.get()
        self._carried = None
        if first is self._STOP:
          return
        batch, self._carried = self._collect(first)
      self._execute(batch)

  def _collect(self, first: _Task):
    """Gathers tasks compatible with `first` until the batch is full or its
    timeout passes; returns the batch and a task that did not fit, if any."""
    batch = [first]
    size = first.size
    deadline = first.arrived + self._timeout
    while size < self._options.max_batch_size:
      remaining = deadline - time.monotonic()
      try:
        task = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
      except queue.Empty:
        break
      if task is self._STOP or task.key != first.key or (
          size + task.size > self._options.max_batch_size):
        return batch, task
      batch.append(task)
      size += task.size
    return batch, None

  def _execute(self, batch: List[_Task]) -> None:
    if len(batch) > 1:
      try:
        self._split(batch, self._run(_merge(batch)))
      except Exception:  # one malformed request must not fail the others
        for task in batch:
          self._run_alone(task)
    else:
      self._run_alone(batch[0])
    for task in batch:
      task.done.set()

  def _run_alone(self, task: _Task) -> None:
    try:
      task.outputs = self._run(task.inputs)
    except BaseException as error:  # the waiter re-raises it
      task.error = error

  def _split(self, batch: List[_Task], outputs: Tensors) -> None:
    total = sum(task.size for task in batch)
    if batch_size_of(outputs) != total:
      # Outputs without a batch dimension cannot be split: run one by one.
      for task in batch:
        self._run_alone(task)
      return
    start = 0
    for task in batch:
      end = start + task.size
      task.outputs = {k: v[start:end] for k, v in outputs.items()}
      start = end


def _merge(batch: List[_Task]) -> Tensors:
  keys = batch[0].inputs.keys()
  return {k: np.concatenate([task.inputs[k] for task in batch]) for k in keys}
