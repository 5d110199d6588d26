"""Where a training step's time goes: op time per part of the step.

Traces `--steps` training steps of an architecture on the census-shaped
in-memory input of `train_benchmark` with `tf.profiler`, reads the trace
(XSpace) back and sums the kernel time of the ops inside the train function by
part: forward/backward of each layer, the optimizer, the metrics, the
telemetry's every-N-steps gradient branch. Shares are of the summed op time,
so they hold under load better than wall times do (every op is slowed alike).

    uv run python benchmarks/profile_train_step.py --architecture mmoe --batch-size 512
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import train_benchmark
from models import architectures

_STEP_SCOPE = "while/body/_1/"  # ops of the steps_per_execution loop body


def op_times(trace_dir: str) -> Dict[str, float]:
  """{op name: summed duration in seconds} of the TF ops in the trace."""
  path = sorted(Path(trace_dir).rglob("*.xplane.pb"))[-1]
  space = xplane_pb2.XSpace()
  space.ParseFromString(path.read_bytes())
  times: Dict[str, float] = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if name.startswith(_STEP_SCOPE) and ":" in name:  # "op name:op type"
          times[name.rsplit(":", 1)[0]] += event.duration_ps * 1e-12
  return times


def part_of_step(op_name: str) -> str:
  """The part of the step an op belongs to, from its name scope."""
  name = op_name[len(_STEP_SCOPE) :].lower()
  if "/cond/" in name:
    return "telemetry: task gradients (every N steps)"
  if any(k in name for k in ("auc", "metric", "mean/", "_loss/")):
    return "metrics"
  if "adam" in name:
    return "optimizer"
  if name.startswith("gradient_tape/"):
    return "backward: " + name.split("gradient_tape/while/")[-1].split("/")[0]
  return "forward: " + name.split("while/", 1)[-1].split("/")[0]


def main(argv: List[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--architecture",
    default="mmoe",
    choices=[a for a in train_benchmark.ARCHITECTURES if a != "plain_mmoe"],
  )
  parser.add_argument("--batch-size", type=int, default=512)
  parser.add_argument("--steps", type=int, default=160)
  parser.add_argument("--top", type=int, default=12, help="parts to print")
  args = parser.parse_args(argv)
  spe = architectures.DEFAULT_STEPS_PER_EXECUTION
  steps = args.steps - args.steps % spe
  spec = train_benchmark.census_shaped_spec(args.architecture, args.batch_size, False, spe)
  model = architectures.build_model(spec, train_benchmark.vocab_sizes())
  model.compile_for_spec(spec)
  data = train_benchmark.in_memory_dataset(args.batch_size)
  model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)  # warm-up
  with tempfile.TemporaryDirectory() as trace_dir:
    tf.profiler.experimental.start(trace_dir)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    times = op_times(trace_dir)
  parts: Dict[str, float] = collections.Counter()
  for name, seconds in times.items():
    parts[part_of_step(name)] += seconds
  total = sum(parts.values())
  print(
    f"{args.architecture}, batch {args.batch_size}: {1e3 * wall / steps:.2f} ms/step "
    f"wall (profiled), {1e3 * total / steps:.2f} ms/step op time, "
    f"load average {os.getloadavg()[0]:.1f}"
  )
  for part, seconds in parts.most_common(args.top):
    print(f"  {part:45s} {1e3 * seconds / steps:7.3f} ms/step {100 * seconds / total:5.1f}%")


if __name__ == "__main__":
  main()
