"""A/B of the gate logits computed in the experts' first matmul (the models'
formulation, `layers.fused_matmul`) against separate expert and gate matmuls,
for MMoE and PLE, in one process.

Both variants train the same census-shaped in-memory input as
`train_benchmark` (`--input memory`): one model each, a warm-up epoch each,
then `--rounds` timed epochs of `--steps` steps alternating A/B, B/A, ... so
that both see the same machine. Prints the median examples per wall second
and per CPU second (this process, all threads) and the fused/separate ratios,
with the load average.

    uv run python benchmarks/gate_fusion_ab.py --architectures mmoe ple --batch-sizes 512 1024
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import tensorflow as tf
import tf_keras as keras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import train_benchmark
from models import architectures

Tensors = Dict[str, tf.Tensor]


class SeparateGatesMMoE(architectures.MMoEModel):
  """MMoE with the gates' own matmul (the formulation before the fusion)."""

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    x = self.embedding(features)
    mixtures, weights = self.gates(x, self.experts(x, training=training))
    logits = architectures._split_tasks(self.tasks, self.towers(mixtures, training=training))
    return logits, {f"gate_{t.name}": weights[:, i] for i, t in enumerate(self.tasks)}


class SeparateGatesPLE(architectures.PLEModel):
  """PLE whose first level computes every expert's and gate's matmul on its
  own: given an explicit shared input, a CGC level does not fuse."""

  def task_logits(self, features: Tensors, training: bool | None) -> Tuple[Tensors, Tensors]:
    x = self.embedding(features)
    task_inputs, shared_input = x, x
    for cgc in self.levels:
      out = cgc(task_inputs, shared_input, training=training)
      task_inputs, shared_input = out["tasks"], out.get("shared")
    return architectures._split_tasks(self.tasks, self.towers(task_inputs, training=training)), {}


VARIANTS = {
  "mmoe": (architectures.MMoEModel, SeparateGatesMMoE),
  "ple": (architectures.PLEModel, SeparateGatesPLE),
}


def compare(architecture: str, batch_size: int, steps: int, rounds: int) -> str:
  spec = train_benchmark.census_shaped_spec(
    architecture, batch_size, False, architectures.DEFAULT_STEPS_PER_EXECUTION
  )
  data = train_benchmark.in_memory_dataset(batch_size)
  models = {}
  for name, model_class in zip(("fused", "separate"), VARIANTS[architecture]):
    keras.utils.set_random_seed(0)
    models[name] = model_class(spec, train_benchmark.vocab_sizes())
    models[name].build_variables()
    models[name].compile_for_spec(spec)
    models[name].fit(data, epochs=1, steps_per_epoch=steps, verbose=0)  # warm-up
  wall: Dict[str, List[float]] = {name: [] for name in models}
  cpu: Dict[str, List[float]] = {name: [] for name in models}
  for r in range(rounds):
    for name in ("fused", "separate") if r % 2 == 0 else ("separate", "fused"):
      start, cpu_start = time.perf_counter(), time.process_time()
      models[name].fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
      wall[name].append(steps * batch_size / (time.perf_counter() - start))
      cpu[name].append(steps * batch_size / (time.process_time() - cpu_start))
  med = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in models}
  return (
    f"{architecture} batch {batch_size} (load {os.getloadavg()[0]:.1f}): "
    + "; ".join(
      f"{name} {w:,.0f} examples/s, {c:,.0f} examples/CPU-s" for name, (w, c) in med.items()
    )
    + f"; fused / separate: {med['fused'][0] / med['separate'][0]:.3f}x wall, "
    f"{med['fused'][1] / med['separate'][1]:.3f}x CPU"
  )


def main(argv: List[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--architectures", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=[512, 1024])
  parser.add_argument("--steps", type=int, default=160)
  parser.add_argument("--rounds", type=int, default=6, help="timed epochs per variant")
  args = parser.parse_args(argv)
  print(
    f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
    flush=True,
  )
  for architecture in args.architectures:
    for batch_size in args.batch_sizes:
      print(compare(architecture, batch_size, args.steps, args.rounds), flush=True)
  print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
