"""Training throughput of the architectures on the census features.

Three inputs, all with the census sizes (embedding 8, 4 experts of 32 units,
towers of 16, two binary tasks):

* `memory`: census-shaped synthetic features (7 z-scored numeric, 33
  categorical with at most 52 values) from a cached, repeated tf.data pipeline
  of in-memory tensors, so the figures are the model's and Keras' cost;
* `transform`: the real census features read from a census pipeline's
  Transform output (`<pipeline root>/Transform/transformed_examples/<id>/
  Split-train`) by `models.inputs.make_input`, the Trainer's own input
  pipeline: the split fits the memory budget, so it is parsed once into
  memory (in the time to the first step) and reshuffled by index every epoch.
  `make run` writes one under `.mtlrank/pipelines/census`;
* `transform_streamed`: the same through the pipeline's streaming path (a
  budget of 0, as for data over the budget: serialized records cached,
  shuffled, batched, parsed every epoch).

For every (architecture, input, batch size, jit_compile) it reports the time to
the first step (model build, tracing, compilation, input start-up and the first
`steps_per_execution` steps) and the steady-state training examples/s: one
`fit` of `1 + repeats` epochs of `--steps` steps on one iterator, the first
epoch a warm-up, the median of the others counted, per wall second and per
second of this process's CPU time (less inflated by other jobs on a shared
machine; it includes the input pipeline's threads). `plain_mmoe` is a textbook
tf-keras MMoE (one Embedding layer per feature, a Python loop of Dense experts
and gates, compiled Keras losses, the same per-task AUC metrics) measured in
the same run, so the ratios printed at the end compare like with like on
whatever the machine is doing. Each row carries the load average when it was
measured.

    uv run python benchmarks/train_benchmark.py
    uv run python benchmarks/train_benchmark.py --architectures mmoe plain_mmoe \\
        --batch-sizes 512 1024 --input memory transform transform_streamed --steps 300
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from models import architectures
from models.spec import SPECS_DIR, RankingSpec, parse_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PIPELINE_ROOT = REPO_ROOT / ".mtlrank" / "pipelines" / "census"
INPUTS = ("memory", "transform", "transform_streamed")

NUM_NUMERIC, NUM_CATEGORICAL, MAX_VOCAB = 7, 33, 52
TASKS = ("income", "never_married")
ARCHITECTURES = (
  "single_task",
  "shared_bottom",
  "mmoe",
  "ple",
  "esmm",
  "aitm",
  "stem",
  "mmoe_mgda",
  "plain_mmoe",
)
# Rows that are another architecture with another balancer: (architecture, balancing).
VARIANTS = {"plain_mmoe": ("mmoe", "fixed"), "mmoe_mgda": ("mmoe", "mgda")}


def model_section(architecture: str, steps_per_execution: int) -> Dict[str, object]:
  """The benchmark's model sizes (the peers' census configuration)."""
  architecture, balancing = VARIANTS.get(architecture, (architecture, "fixed"))
  return {
    "architecture": architecture,
    "balancing": balancing,
    "embedding_dim": 8,
    "num_experts": 4,
    "expert_units": [32],
    "tower_units": [16],
    "shared_experts": 2,
    "task_experts": 1,
    "levels": 2,
    "params": {"steps_per_execution": steps_per_execution},
  }


def task_section(architecture: str, tasks: List[Dict[str, object]]) -> List[Dict[str, object]]:
  """ESMM and AITM need a conditional task: the second task becomes
  conditional on the first (its loss and AUC then cover the first's positives)."""
  if architecture not in ("esmm", "aitm"):
    return tasks
  return [tasks[0], {**tasks[1], "parent": tasks[0]["name"]}, *tasks[2:]]


def census_shaped_spec(
  architecture: str, batch_size: int, jit_compile: bool, steps_per_execution: int
) -> RankingSpec:
  features = [
    {"name": f"num_{i}", "kind": "numeric", "dtype": "float"} for i in range(NUM_NUMERIC)
  ] + [{"name": f"cat_{i}", "kind": "categorical"} for i in range(NUM_CATEGORICAL)]
  return parse_spec(
    {
      "name": "census_shaped",
      "data": {"source": "census"},
      "features": features,
      "tasks": task_section(architecture, [{"name": t, "label": t} for t in TASKS]),
      "model": model_section(architecture, steps_per_execution),
      "training": {"batch_size": batch_size, "jit_compile": jit_compile, "learning_rate": 0.001},
    }
  )


def census_spec(
  architecture: str, batch_size: int, jit_compile: bool, steps_per_execution: int
) -> RankingSpec:
  """specs/census.yaml (its features and tasks) with the benchmark's sizes."""
  path = SPECS_DIR / "census.yaml"
  raw = yaml.safe_load(path.read_text())
  raw["tasks"] = task_section(architecture, raw["tasks"])
  raw["model"] = {**raw["model"], **model_section(architecture, steps_per_execution)}
  raw["training"] = {
    **raw["training"],
    "batch_size": batch_size,
    "jit_compile": jit_compile,
    "learning_rate": 0.001,
  }
  return parse_spec(raw, origin=path.name, source_path=str(path))


def vocab_sizes(seed: int = 0) -> Dict[str, int]:
  rng = np.random.default_rng(seed)
  return {f"cat_{i}": int(v) for i, v in enumerate(rng.integers(2, MAX_VOCAB + 1, NUM_CATEGORICAL))}


def in_memory_dataset(batch_size: int, num_rows: int = 65_536, seed: int = 0) -> tf.data.Dataset:
  rng = np.random.default_rng(seed)
  sizes = vocab_sizes()
  features = {
    f"num_{i}": rng.normal(size=(num_rows, 1)).astype(np.float32) for i in range(NUM_NUMERIC)
  }
  features.update({name: rng.integers(0, v, (num_rows, 1)) for name, v in sizes.items()})
  logit = features["num_0"][:, 0] + (features["cat_0"][:, 0] % 2) - 0.5
  first = (rng.random(num_rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
  second = first * (rng.random(num_rows) < 0.5)
  labels = {TASKS[0]: first[:, None], TASKS[1]: second[:, None]}
  return (
    tf.data.Dataset.from_tensor_slices((features, labels))
    .batch(batch_size, drop_remainder=True)
    .cache()
    .repeat()
    .prefetch(tf.data.AUTOTUNE)
  )


@dataclasses.dataclass(frozen=True)
class TransformOutput:
  """One Transform execution of a census pipeline."""

  transform_graph: Path
  train_pattern: str

  @classmethod
  def latest(cls, pipeline_root: Path) -> TransformOutput:
    """The newest execution that wrote both the graph and the train split."""
    base = pipeline_root / "Transform"
    ids = (
      sorted(
        (
          int(d.name)
          for d in (base / "transformed_examples").glob("*")
          if d.name.isdigit()
          and (base / "transform_graph" / d.name).is_dir()
          and any((d / "Split-train").glob("*"))
        ),
        reverse=True,
      )
      if base.is_dir()
      else []
    )
    if not ids:
      raise SystemExit(
        f"no census Transform output under {base}: run `make run` (writes "
        f"{DEFAULT_PIPELINE_ROOT.relative_to(REPO_ROOT)}) or pass "
        "--pipeline-root <home>/pipelines/census"
      )
    return cls(
      base / "transform_graph" / str(ids[0]),
      str(base / "transformed_examples" / str(ids[0]) / "Split-train" / "*"),
    )


@dataclasses.dataclass
class Workload:
  """What one measurement trains on."""

  spec: RankingSpec
  vocab_sizes: Dict[str, int]
  dataset: tf.data.Dataset


def workload(
  input_name: str,
  architecture: str,
  batch_size: int,
  jit_compile: bool,
  steps_per_execution: int,
  transform_output: TransformOutput | None,
) -> Workload:
  if input_name == "memory":
    return Workload(
      census_shaped_spec(architecture, batch_size, jit_compile, steps_per_execution),
      vocab_sizes(),
      in_memory_dataset(batch_size),
    )
  # Imported here: TFT takes seconds to import, which the memory input does
  # not need.
  import tensorflow_transform as tft

  from models import features, inputs

  spec = census_spec(architecture, batch_size, jit_compile, steps_per_execution)
  tft_output = tft.TFTransformOutput(str(transform_output.transform_graph))
  # A budget of 0 forces the streaming path (what data over the budget gets).
  budget = 0 if input_name == "transform_streamed" else inputs.PARSED_CACHE_BUDGET_BYTES
  data = inputs.make_input(
    [transform_output.train_pattern],
    tft_output.transformed_feature_spec(),
    spec,
    batch_size,
    shuffle=True,
    memory_budget_bytes=budget,
  )
  return Workload(spec, features.vocab_sizes(spec, tft_output), data.dataset.repeat())


def plain_mmoe(spec: RankingSpec, sizes: Dict[str, int]) -> keras.Model:
  """The textbook tf-keras MMoE the fused one is measured against."""
  inputs, parts = {}, []
  for f in spec.model_features:
    if f.is_embedded:
      inputs[f.name] = keras.Input((1,), dtype=tf.int64, name=f.name)
      parts.append(
        keras.layers.Flatten()(
          keras.layers.Embedding(sizes[f.name], spec.model.embedding_dim)(inputs[f.name])
        )
      )
    else:
      inputs[f.name] = keras.Input((1,), dtype=tf.float32, name=f.name)
      parts.append(inputs[f.name])
  x = keras.layers.Concatenate()(parts)
  experts = keras.layers.Lambda(lambda e: tf.stack(e, axis=1))(
    [
      keras.layers.Dense(spec.model.expert_units[0], "relu")(x)
      for _ in range(spec.model.num_experts)
    ]
  )
  outputs = {}
  for t in spec.tasks:
    gate = keras.layers.Dense(spec.model.num_experts, "softmax")(x)
    mixed = keras.layers.Dot(axes=(1, 1))([gate, experts])
    hidden = keras.layers.Dense(spec.model.tower_units[0], "relu")(mixed)
    outputs[t.name] = keras.layers.Dense(1, "sigmoid", name=t.name)(hidden)
  model = keras.Model(inputs, outputs)
  model.compile(
    keras.optimizers.Adam(spec.training.learning_rate),
    loss={t.name: "binary_crossentropy" for t in spec.tasks},
    metrics={t.name: [keras.metrics.AUC(name="auc")] for t in spec.tasks},
    jit_compile=spec.training.jit_compile,
    steps_per_execution=int(spec.model.params["steps_per_execution"]),
  )
  return model


@dataclasses.dataclass
class Result:
  architecture: str
  input: str
  batch_size: int
  jit_compile: bool
  steps_per_execution: int
  first_step_s: float
  examples_per_s: float
  examples_per_cpu_s: float
  load_average: float


class EpochTimer(keras.callbacks.Callback):
  """Wall time and this process's CPU time (all threads) of every epoch: on a
  shared machine the CPU time is inflated less by other jobs than the wall
  time, and it counts the input pipeline's work wherever it runs."""

  def __init__(self) -> None:
    super().__init__()
    self.seconds: List[float] = []
    self.cpu_seconds: List[float] = []

  def on_epoch_begin(self, epoch: int, logs: Dict[str, float] | None = None) -> None:
    self._start, self._cpu_start = time.perf_counter(), time.process_time()

  def on_epoch_end(self, epoch: int, logs: Dict[str, float] | None = None) -> None:
    self.seconds.append(time.perf_counter() - self._start)
    self.cpu_seconds.append(time.process_time() - self._cpu_start)


def measure(
  architecture: str,
  input_name: str,
  batch_size: int,
  jit_compile: bool,
  steps_per_execution: int,
  steps: int,
  repeats: int,
  transform_output: TransformOutput | None,
) -> Result:
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  start = time.perf_counter()
  work = workload(
    input_name, architecture, batch_size, jit_compile, steps_per_execution, transform_output
  )
  if architecture == "plain_mmoe":
    model = plain_mmoe(work.spec, work.vocab_sizes)
  else:
    model = architectures.build_model(work.spec, work.vocab_sizes)
    model.compile_for_spec(work.spec)
  model.fit(work.dataset, epochs=1, steps_per_epoch=steps_per_execution, verbose=0)
  first_step = time.perf_counter() - start
  # One fit, so one iterator: its start-up (shuffle buffer, cache) lands in the
  # warm-up epoch, and epoch boundaries cost no new iterator.
  steps -= steps % steps_per_execution
  timer = EpochTimer()
  model.fit(work.dataset, epochs=1 + repeats, steps_per_epoch=steps, verbose=0, callbacks=[timer])
  rates = [steps * batch_size / seconds for seconds in timer.seconds[1:]]
  cpu_rates = [steps * batch_size / seconds for seconds in timer.cpu_seconds[1:]]
  return Result(
    architecture,
    input_name,
    batch_size,
    jit_compile,
    steps_per_execution,
    first_step,
    statistics.median(rates),
    statistics.median(cpu_rates),
    os.getloadavg()[0],
  )


def markdown_table(results: List[Result]) -> str:
  lines = [
    "| architecture | input | batch | jit_compile | steps/execution | first step (s) "
    "| examples/s | examples/CPU-s | load |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    lines.append(
      f"| {r.architecture} | {r.input} | {r.batch_size} | {r.jit_compile} | "
      f"{r.steps_per_execution} | {r.first_step_s:.1f} | "
      f"{r.examples_per_s:,.0f} | {r.examples_per_cpu_s:,.0f} | "
      f"{r.load_average:.1f} |"
    )
  return "\n".join(lines)


def ratios(results: List[Result]) -> List[str]:
  by_key: Dict[Tuple[str, str, int, bool, int], Result] = {
    (r.architecture, r.input, r.batch_size, r.jit_compile, r.steps_per_execution): r
    for r in results
  }
  lines = []
  for (arch, source, batch, jit, spe), r in by_key.items():
    where = f"{source} input, batch {batch}, jit={jit}, steps/execution={spe}"
    plain = by_key.get(("plain_mmoe", source, batch, jit, spe))
    if arch != "plain_mmoe" and plain is not None:
      lines.append(f"{arch} / plain_mmoe, {where}: {r.examples_per_s / plain.examples_per_s:.2f}x")
    no_jit = by_key.get((arch, source, batch, False, spe))
    if jit and no_jit is not None:
      lines.append(f"{arch} jit / no jit, {where}: {r.examples_per_s / no_jit.examples_per_s:.2f}x")
    memory = by_key.get((arch, "memory", batch, jit, spe))
    if source.startswith("transform") and memory is not None:
      lines.append(
        f"{arch} {source} / memory input, {where}: "
        f"{r.examples_per_s / memory.examples_per_s:.2f}x "
        f"(CPU-time rates {r.examples_per_cpu_s / memory.examples_per_cpu_s:.2f}x)"
      )
  return lines


def main(argv: List[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES
  )
  parser.add_argument(
    "--input",
    nargs="+",
    choices=INPUTS,
    default=list(INPUTS),
    help="memory: census-shaped tensors in memory; transform: the "
    "census Transform output through the Trainer's input pipeline "
    "(parsed once into memory); transform_streamed: the same through "
    "its streaming path (budget 0: parsed every epoch)",
  )
  parser.add_argument(
    "--pipeline-root",
    type=Path,
    default=DEFAULT_PIPELINE_ROOT,
    help="a census pipeline root (with Transform/) for --input "
    "transform; default: what `make run` writes",
  )
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 512, 1024])
  parser.add_argument("--jit", nargs="+", choices=["off", "on"], default=["off", "on"])
  parser.add_argument(
    "--steps-per-execution",
    nargs="+",
    type=int,
    default=[architectures.DEFAULT_STEPS_PER_EXECUTION],
  )
  parser.add_argument(
    "--steps", type=int, default=200, help="steps per timed epoch (after a warm-up epoch as long)"
  )
  parser.add_argument("--repeats", type=int, default=3, help="timed epochs; the median counts")
  args = parser.parse_args(argv)
  transform_output = (
    TransformOutput.latest(args.pipeline_root)
    if any(i.startswith("transform") for i in args.input)
    else None
  )
  print(
    f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
    flush=True,
  )
  if transform_output is not None:
    print(f"Transform output: {transform_output.train_pattern}", flush=True)
  results = []
  for arch in args.architectures:
    for source in args.input:
      for batch in args.batch_sizes:
        for jit in args.jit:
          for spe in args.steps_per_execution:
            r = measure(
              arch, source, batch, jit == "on", spe, args.steps, args.repeats, transform_output
            )
            print(
              f"{arch:14s} {source:9s} batch {batch:5d} jit {jit:3s} spe {spe:3d}: "
              f"first step {r.first_step_s:6.1f} s, {r.examples_per_s:10,.0f} "
              f"examples/s, {r.examples_per_cpu_s:10,.0f} examples/CPU-s "
              f"(load {r.load_average:.1f})",
              flush=True,
            )
            results.append(r)
  print()
  print(markdown_table(results))
  print()
  print("\n".join(ratios(results)))
  print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
