"""Cost as the data grows: the synthetic pipeline at several span sizes.

python -m benchmarks.pipeline_growth --sizes 100000 1000000 [3000000] [--epochs 1]

For each size (impressions in the one span: `requests_per_span` x `slate_size`),
writes a copy of the synthetic spec with one span and the given epochs, runs
`mtlrank run` on it in a child process (fresh home, so nothing is cached, the
data preparation included), samples the child's resident memory every 0.2 s,
and attributes the samples to components by their MLMD start and end times.
Prints per component and size the seconds, the peak RSS while it ran and that
peak above the RSS at its start (what the component itself added; the process
is one Python process running every component, so its RSS before a component
carries what earlier ones left); then per component the growth exponent (the
log-log slope over the sizes) of the seconds and of the added memory. A
component whose added memory grows with the span (exponent >= 0.5 and more
than 200 MB at the largest size) is flagged.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import yaml

from pipeline import config, results

SAMPLE_SECONDS = 0.2
MEMORY_FLAG_EXPONENT = 0.5
MEMORY_FLAG_MB = 200.0


def growth_spec(size: int, epochs: int, out: Path) -> Path:
  """The synthetic spec with one span of `size` impressions, written to `out`."""
  raw = yaml.safe_load((config.REPO_ROOT / "specs" / "synthetic.yaml").read_text())
  params = raw["data"]["params"]
  raw["name"] = f"growth_{size}"
  raw["data"]["num_spans"] = params["num_spans"] = 1
  params["requests_per_span"] = max(1, size // params["slate_size"])
  raw["training"]["epochs"] = epochs
  out.write_text(yaml.safe_dump(raw, sort_keys=False))
  return out


def _rss_mb(pid: int) -> float:
  """Resident memory of a process and its children, MB (from /proc)."""
  total = 0.0
  pids = [pid]
  while pids:
    current = pids.pop()
    try:
      for line in Path(f"/proc/{current}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
          total += float(line.split()[1]) / 1024
      children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
      pids += [int(c) for c in children]
    except (FileNotFoundError, ProcessLookupError):
      continue
  return total


def run_and_sample(spec_path: Path, home: Path) -> Tuple[List[Tuple[float, float]], float]:
  """Runs the pipeline in a child process; (time, RSS MB) samples and wall seconds."""
  command = [sys.executable, "-m", "pipeline.cli", "run", "--spec", str(spec_path),
             "--home", str(home), "--summary-json", str(home / "summary.json")]  # fmt: skip
  log = (home / "run.log").open("w")
  started = time.time()
  child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=config.REPO_ROOT)
  samples: List[Tuple[float, float]] = []

  def sample() -> None:
    while child.poll() is None:
      samples.append((time.time(), _rss_mb(child.pid)))
      time.sleep(SAMPLE_SECONDS)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  code = child.wait()
  sampler.join()
  if code != 0:
    raise RuntimeError(f"the run failed ({code}); log: {home / 'run.log'}")
  return samples, time.time() - started


def component_windows(metadata_path: Path) -> Dict[str, Tuple[float, float]]:
  """{component: (start, end)} in epoch seconds, from the latest run's MLMD executions."""
  store = results.open_store(metadata_path)
  run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
  nodes = {c.id: c.name.split(".", 1)[-1] for c in store.get_contexts_by_type("node")}
  windows = {}
  for execution in store.get_executions_by_context(run.id):
    for context in store.get_contexts_by_execution(execution.id):
      if context.id in nodes:
        windows[nodes[context.id]] = (
          execution.create_time_since_epoch / 1000,
          execution.last_update_time_since_epoch / 1000,
        )
  return windows


def attribute(
  samples: Sequence[Tuple[float, float]], windows: Dict[str, Tuple[float, float]]
) -> Dict[str, Dict[str, float]]:
  """Per component: seconds, peak RSS in its window, and that peak above its start's RSS."""
  out = {}
  for node, (start, end) in windows.items():
    inside = [rss for t, rss in samples if start <= t <= end]
    before = [rss for t, rss in samples if t <= start]
    base = before[-1] if before else (inside[0] if inside else 0.0)
    peak = max(inside, default=base)
    out[node] = {"seconds": end - start, "peak_mb": peak, "added_mb": max(0.0, peak - base)}
  return out


def slope(sizes: Sequence[int], values: Sequence[float]) -> float:
  """Least-squares slope of log(value) on log(size); nan with fewer than 2 usable points."""
  points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v > 0]
  if len(points) < 2:
    return float("nan")
  mean_x = sum(x for x, _ in points) / len(points)
  mean_y = sum(y for _, y in points) / len(points)
  var = sum((x - mean_x) ** 2 for x, _ in points)
  return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else float("nan")


def table(sizes: Sequence[int], measured: Dict[int, Dict[str, Dict[str, float]]]) -> List[str]:
  """Markdown rows: component, per size seconds / peak / added MB, the exponents, a flag."""
  nodes = sorted(
    {n for m in measured.values() for n in m}, key=lambda n: -measured[sizes[-1]][n]["seconds"]
  )
  head = " | ".join(f"{s:,}: s / peak / added MB" for s in sizes)
  lines = [f"| component | {head} | exp. seconds | exp. added MB | memory grows |",
           "|---|" + "---:|" * len(sizes) + "---:|---:|---|"]  # fmt: skip
  for node in nodes:
    cells = [measured[s].get(node) for s in sizes]
    seconds = [c["seconds"] if c else float("nan") for c in cells]
    added = [c["added_mb"] if c else float("nan") for c in cells]
    exp_s, exp_m = slope(sizes, seconds), slope(sizes, added)
    grows = exp_m >= MEMORY_FLAG_EXPONENT and added[-1] > MEMORY_FLAG_MB
    text = " | ".join(
      f"{c['seconds']:.1f} / {c['peak_mb']:.0f} / {c['added_mb']:.0f}" if c else "-" for c in cells
    )
    lines.append(
      f"| {node} | {text} | {exp_s:.2f} | {exp_m:.2f} | {'**yes**' if grows else 'no'} |"
    )
  return lines


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_growth", description=__doc__)
  parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here")
  args = parser.parse_args(argv)
  work = args.workdir or Path(tempfile.mkdtemp(prefix="pipeline_growth-"))
  work.mkdir(parents=True, exist_ok=True)
  sizes = sorted(args.sizes)
  measured: Dict[int, Dict[str, Dict[str, float]]] = {}
  print(f"load average at start: {os.getloadavg()}", flush=True)
  for size in sizes:
    home = work / f"size-{size}"
    home.mkdir(parents=True, exist_ok=True)
    spec_path = growth_spec(size, args.epochs, home / "spec.yaml")
    samples, wall = run_and_sample(spec_path, home)
    windows = component_windows(home / "pipelines" / f"growth_{size}" / config.METADATA_FILE)
    measured[size] = attribute(samples, windows)
    peak = max(rss for _, rss in samples)
    print(f"{size:,} impressions: wall {wall:.0f} s, peak RSS {peak:.0f} MB, "
          f"load {os.getloadavg()}", flush=True)  # fmt: skip
  print("\n".join(table(sizes, measured)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
