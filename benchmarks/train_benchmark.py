"""Training throughput of the architectures on census-shaped features.

Census-shaped: 40 features (7 z-scored numeric, 33 categorical with at most 52
values), embedding 8, 4 experts of 32 units, towers of 16, two binary tasks;
batches come from memory (a cached, repeated tf.data pipeline of in-memory
tensors), so the figures are the model's and Keras' cost, not input I/O.

For every (architecture, batch size, jit_compile) it reports the time to the
first step (tracing + compilation + one step) and the steady-state training
examples/s after warm-up. `plain_mmoe` is a textbook tf-keras MMoE (33
Embedding layers, a Python loop of Dense experts and gates, compiled Keras
losses) measured in the same run, so the ratios printed at the end compare
like with like on whatever the machine is doing.

    uv run python benchmarks/train_benchmark.py
    uv run python benchmarks/train_benchmark.py --architectures mmoe plain_mmoe \\
        --batch-sizes 512 --steps 300
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import architectures  # noqa: E402
from models.spec import RankingSpec, parse_spec  # noqa: E402

NUM_NUMERIC, NUM_CATEGORICAL, MAX_VOCAB = 7, 33, 52
TASKS = ("income", "never_married")
ARCHITECTURES = ("single_task", "shared_bottom", "mmoe", "ple", "esmm", "aitm",
                 "plain_mmoe")


def census_shaped_spec(architecture: str, batch_size: int, jit_compile: bool,
                       steps_per_execution: int) -> RankingSpec:
  features = ([{"name": f"num_{i}", "kind": "numeric", "dtype": "float"}
               for i in range(NUM_NUMERIC)]
              + [{"name": f"cat_{i}", "kind": "categorical"} for i in range(NUM_CATEGORICAL)])
  if architecture in ("esmm", "aitm"):
    tasks = [{"name": TASKS[0], "label": TASKS[0]},
             {"name": TASKS[1], "label": TASKS[1], "parent": TASKS[0]}]
  else:
    tasks = [{"name": t, "label": t} for t in TASKS]
  return parse_spec({
      "name": "census_shaped", "data": {"source": "census"},
      "features": features, "tasks": tasks,
      "model": {"architecture": "mmoe" if architecture == "plain_mmoe" else architecture,
                "embedding_dim": 8, "num_experts": 4, "expert_units": [32],
                "tower_units": [16], "shared_experts": 2, "task_experts": 1, "levels": 2,
                "params": {"steps_per_execution": steps_per_execution}},
      "training": {"batch_size": batch_size, "jit_compile": jit_compile,
                   "learning_rate": 0.001},
  })


def vocab_sizes(seed: int = 0) -> Dict[str, int]:
  rng = np.random.default_rng(seed)
  return {f"cat_{i}": int(v) for i, v in
          enumerate(rng.integers(2, MAX_VOCAB + 1, NUM_CATEGORICAL))}


def in_memory_dataset(batch_size: int, num_rows: int = 65_536, seed: int = 0
                      ) -> tf.data.Dataset:
  rng = np.random.default_rng(seed)
  sizes = vocab_sizes()
  features = {f"num_{i}": rng.normal(size=(num_rows, 1)).astype(np.float32)
              for i in range(NUM_NUMERIC)}
  features.update({name: rng.integers(0, v, (num_rows, 1)) for name, v in sizes.items()})
  logit = features["num_0"][:, 0] + (features["cat_0"][:, 0] % 2) - 0.5
  first = (rng.random(num_rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
  second = first * (rng.random(num_rows) < 0.5)
  labels = {TASKS[0]: first[:, None], TASKS[1]: second[:, None]}
  return (tf.data.Dataset.from_tensor_slices((features, labels))
          .batch(batch_size, drop_remainder=True).cache().repeat()
          .prefetch(tf.data.AUTOTUNE))


def plain_mmoe(spec: RankingSpec, sizes: Dict[str, int]) -> keras.Model:
  """The textbook tf-keras MMoE the fused one is measured against."""
  inputs, parts = {}, []
  for f in spec.model_features:
    if f.is_embedded:
      inputs[f.name] = keras.Input((1,), dtype=tf.int64, name=f.name)
      parts.append(keras.layers.Flatten()(
          keras.layers.Embedding(sizes[f.name], spec.model.embedding_dim)(inputs[f.name])))
    else:
      inputs[f.name] = keras.Input((1,), dtype=tf.float32, name=f.name)
      parts.append(inputs[f.name])
  x = keras.layers.Concatenate()(parts)
  experts = keras.layers.Lambda(lambda e: tf.stack(e, axis=1))(
      [keras.layers.Dense(spec.model.expert_units[0], "relu")(x)
       for _ in range(spec.model.num_experts)])
  outputs = {}
  for t in spec.tasks:
    gate = keras.layers.Dense(spec.model.num_experts, "softmax")(x)
    mixed = keras.layers.Dot(axes=(1, 1))([gate, experts])
    hidden = keras.layers.Dense(spec.model.tower_units[0], "relu")(mixed)
    outputs[t.name] = keras.layers.Dense(1, "sigmoid", name=t.name)(hidden)
  model = keras.Model(inputs, outputs)
  model.compile(keras.optimizers.Adam(spec.training.learning_rate),
                loss={t.name: "binary_crossentropy" for t in spec.tasks},
                jit_compile=spec.training.jit_compile,
                steps_per_execution=int(spec.model.params["steps_per_execution"]))
  return model


@dataclasses.dataclass
class Result:
  architecture: str
  batch_size: int
  jit_compile: bool
  steps_per_execution: int
  first_step_s: float
  examples_per_s: float


def measure(architecture: str, batch_size: int, jit_compile: bool,
            steps_per_execution: int, steps: int, repeats: int) -> Result:
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  spec = census_shaped_spec(architecture, batch_size, jit_compile, steps_per_execution)
  sizes = vocab_sizes()
  data = in_memory_dataset(batch_size)
  start = time.perf_counter()
  if architecture == "plain_mmoe":
    model = plain_mmoe(spec, sizes)
  else:
    model = architectures.build_model(spec, sizes)
    model.compile_for_spec(spec)
  model.fit(data, epochs=1, steps_per_epoch=steps_per_execution, verbose=0)
  first_step = time.perf_counter() - start
  steps -= steps % steps_per_execution
  model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)        # warm-up
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    rates.append(steps * batch_size / (time.perf_counter() - start))
  return Result(architecture, batch_size, jit_compile, steps_per_execution, first_step,
                statistics.median(rates))


def markdown_table(results: List[Result]) -> str:
  lines = ["| architecture | batch | jit_compile | steps/execution | first step (s) "
           "| examples/s |", "|---|---:|---|---:|---:|---:|"]
  for r in results:
    lines.append(f"| {r.architecture} | {r.batch_size} | {r.jit_compile} | "
                 f"{r.steps_per_execution} | {r.first_step_s:.1f} | "
                 f"{r.examples_per_s:,.0f} |")
  return "\n".join(lines)


def ratios(results: List[Result]) -> List[str]:
  by_key: Dict[Tuple[str, int, bool, int], Result] = {
      (r.architecture, r.batch_size, r.jit_compile, r.steps_per_execution): r
      for r in results}
  lines = []
  for (arch, batch, jit, spe), r in by_key.items():
    plain: Optional[Result] = by_key.get(("plain_mmoe", batch, jit, spe))
    if arch != "plain_mmoe" and plain is not None:
      lines.append(f"{arch} / plain_mmoe at batch {batch}, jit={jit}, "
                   f"steps/execution={spe}: {r.examples_per_s / plain.examples_per_s:.2f}x")
    no_jit = by_key.get((arch, batch, False, spe))
    if jit and no_jit is not None:
      lines.append(f"{arch} jit / no jit at batch {batch}, steps/execution={spe}: "
                   f"{r.examples_per_s / no_jit.examples_per_s:.2f}x")
  return lines


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES),
                      choices=ARCHITECTURES)
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 512, 1024])
  parser.add_argument("--jit", nargs="+", choices=["off", "on"], default=["off", "on"])
  parser.add_argument("--steps-per-execution", nargs="+", type=int,
                      default=[architectures.DEFAULT_STEPS_PER_EXECUTION])
  parser.add_argument("--steps", type=int, default=200,
                      help="steps per timed run (after an equal warm-up)")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts")
  args = parser.parse_args(argv)
  print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}", flush=True)
  results = []
  for arch in args.architectures:
    for batch in args.batch_sizes:
      for jit in args.jit:
        for spe in args.steps_per_execution:
          r = measure(arch, batch, jit == "on", spe, args.steps, args.repeats)
          print(f"{arch:14s} batch {batch:5d} jit {jit:3s} spe {spe:3d}: first step "
                f"{r.first_step_s:6.1f} s, {r.examples_per_s:10,.0f} examples/s", flush=True)
          results.append(r)
  print()
  print(markdown_table(results))
  print()
  print("\n".join(ratios(results)))
  print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
