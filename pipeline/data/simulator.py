"""Writes the simulator's spans: `simulate(spec, out_dir)` writes
`<out_dir>/span-<N>/{train,validation,eval}/data-*.tfrecord.gz` for N = 1..num_spans
(see `pipeline.data.io`) with the columns of `spec.raw_columns`
(specs/synthetic.yaml), each span skipped when already written with the same
parameters. The generative model is `pipeline.data.world`.

Speed: `python -m benchmarks.simulator_throughput --rows 1000000` generates
and writes one million rows and prints rows/s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np
import pyarrow as pa

from contract import EVAL_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from models.spec import RankingSpec
from pipeline.data import io
from pipeline.data.world import (  # noqa: F401  (the simulator's public names)
  COLUMNS,
  SIMULATOR_VERSION,
  SimParams,
  World,
  eval_requests,
  make_world,
  simulate_span,
)


def _check_columns(spec: RankingSpec) -> Dict[str, str]:
  wanted = spec.raw_columns
  unknown = sorted(set(wanted) - set(COLUMNS))
  if unknown:
    raise ValueError(
      f"simulator: the spec reads column(s) {unknown} that the simulator does "
      f"not produce (it produces: {', '.join(COLUMNS)})"
    )
  wrong = {c: (d, COLUMNS[c]) for c, d in wanted.items() if COLUMNS[c] != d}
  if wrong:
    raise ValueError(
      "simulator: dtype mismatch (spec, simulator): "
      + ", ".join(f"{c}: {a} vs {b}" for c, (a, b) in wrong.items())
    )
  return wanted


UTILITY = "utility"


def truth_utility(spec: RankingSpec, columns: Mapping[str, Any]) -> np.ndarray:
  """The spec's fused score applied to the truths: prod over `serving.score`'s
  tasks of truth ** exponent, each task's truth the column of its `truth_of`
  feature (`models.export.fused_score`'s formula, on the simulator's truths)."""
  truths = spec.truth_features
  missing = [t for t in spec.serving.score if t not in truths]
  if missing:
    raise ValueError(
      f"simulator: the spec reads {UTILITY!r} but declares no ground_truth feature with "
      f"truth_of {missing} (every task of serving.score needs one)"
    )
  log_utility = sum(
    exponent * np.log(np.maximum(np.asarray(columns[truths[t].column], np.float64), 1e-7))
    for t, exponent in spec.serving.score.items()
  )
  return np.exp(log_utility).astype(np.float32)


def simulate_spec_span(spec: RankingSpec, world: World, p: SimParams, span: int) -> Dict[str, Any]:
  """`simulate_span`, plus the spec's true `utility` column when the spec reads it."""
  data = simulate_span(world, p, span)
  if UTILITY in spec.raw_columns:
    data["columns"][UTILITY] = truth_utility(spec, data["columns"])
  return data


def _take(values: Any, mask: np.ndarray) -> Any:
  if isinstance(values, pa.Array):
    return values.filter(pa.array(mask))
  return values[mask]


def split_masks(data: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """{train, validation, eval} row masks of a simulated span (whole requests each)."""
  is_eval, is_validation = data["is_eval"], data["is_validation"]
  return {
    TRAIN_SPLIT: ~is_eval & ~is_validation,
    VALIDATION_SPLIT: is_validation,
    EVAL_SPLIT: is_eval,
  }


def _span_stats(columns: Mapping[str, Any], masks: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  click = columns["click"].astype(bool)
  clicks = int(click.sum())
  stats = {
    "rows": {split: int(mask.sum()) for split, mask in masks.items()},
    "requests": int((columns["position"] == 1).sum()),
    "ctr": float(click.mean()) if len(click) else float("nan"),
    "mean_p_click": float(columns["p_click"].mean()) if len(click) else float("nan"),
    "clicks": clicks,
    "cvr_given_click": float(columns["conversion"][click].mean()) if clicks else float("nan"),
    "mean_p_conv_given_click_on_clicks": float(columns["p_conv_given_click"][click].mean())
    if clicks
    else float("nan"),
    "conversions": int(columns["conversion"].sum()),
    "mean_dwell_given_click": float(columns["dwell_seconds"][click].mean())
    if clicks
    else float("nan"),
  }
  return stats


def _warm_up() -> float:
  """Imports what the first span would otherwise pay for inside its timer:
  TensorFlow (the TFRecord writer) and pandas (pyarrow imports it lazily on
  the first `pa.array`). Returns the seconds spent."""
  started = time.time()
  import tensorflow  # noqa: F401  (pylint: disable=g-import-not-at-top)

  pa.array(np.zeros(1))
  return time.time() - started


def simulate(
  spec: RankingSpec, out_dir: str | Path, overwrite: bool = False, progress: bool = True
) -> Dict[str, Any]:
  """Writes spans 1..num_spans of simulated impression logs under `out_dir`.

  Returns a summary: {'source', 'out_dir', 'spans': [per-span stats: rows
  {train, validation, eval}, ctr, cvr_given_click, mean_p_click, ..., seconds, skipped],
  'rows', 'ctr', 'cvr_given_click', 'seconds', 'rows_per_second'}. Complete
  existing spans written with the same parameters are kept (fast no-op)
  unless `overwrite`; one written with other parameters raises ValueError.
  """
  if spec.data.source != "simulator":
    raise ValueError(f"spec {spec.name!r} has data.source {spec.data.source!r}, not 'simulator'")
  p = SimParams.from_spec(spec)
  columns_spec = _check_columns(spec)
  position = spec.position_feature
  if position is not None and p.slate_size > position.max_value:
    raise ValueError(
      f"simulator: slate_size ({p.slate_size}) exceeds the max_value "
      f"({position.max_value}) of the position feature {position.name!r}"
    )
  out_dir = Path(out_dir)
  started = time.time()
  world: World | None = None
  spans: List[Dict[str, Any]] = []
  for span in range(1, p.num_spans + 1):
    span_started = time.time()
    fp = io.fingerprint(
      {
        "adapter": "simulator",
        "version": SIMULATOR_VERSION,
        "params": p.fingerprinted(),
        "span": span,
        "columns": columns_spec,
        **({"utility_formula": dict(spec.serving.score)} if UTILITY in columns_spec else {}),
      }
    )
    if not overwrite:
      existing = io.existing_span(out_dir, span, fp)
      if existing is not None:
        spans.append(existing)
        if progress:
          print(
            f"simulator: span {span}/{p.num_spans}: {io.span_dir(out_dir, span)} exists, skipped",
            flush=True,
          )
        continue
    if world is None:
      warm_up = _warm_up()
      started += warm_up
      span_started = time.time()
      if progress:
        print(
          f"simulator: imports took {warm_up:.1f} s (TensorFlow, pandas; not counted in "
          "the rates below)",
          flush=True,
        )
      world = make_world(p)
    data = simulate_spec_span(spec, world, p, span)
    columns = {name: data["columns"][name] for name in columns_spec}
    masks = split_masks(data)
    stats = {"span": span, "fingerprint": fp, **_span_stats(data["columns"], masks)}
    generated = time.time()
    with io.atomic_span(out_dir, span) as tmp:
      for split, mask in masks.items():
        io.write_examples(
          {k: _take(v, mask) for k, v in columns.items()}, columns_spec, tmp / split / io.DATA_FILE
        )
      io.write_span_summary(tmp, stats)
    seconds = time.time() - span_started
    spans.append(
      {
        **stats,
        "skipped": False,
        "seconds": round(seconds, 3),
        "generate_seconds": round(generated - span_started, 3),
      }
    )
    if progress:
      rows = sum(stats["rows"].values())
      print(
        f"simulator: span {span}/{p.num_spans}: {rows} rows ({stats['rows']['train']} train"
        f" / {stats['rows']['validation']} validation / {stats['rows']['eval']} eval), CTR {100 * stats['ctr']:.2f} %, CVR|click "
        f"{100 * stats['cvr_given_click']:.2f} %, {seconds:.1f} s (generate "
        f"{generated - span_started:.1f} s; {rows / max(seconds, 1e-9):,.0f} rows/s) "
        f"-> {io.span_dir(out_dir, span)}",
        flush=True,
      )
  return _summary(out_dir, spans, time.time() - started)


def _summary(out_dir: Path, spans: List[Dict[str, Any]], seconds: float) -> Dict[str, Any]:
  rows = {split: sum(s["rows"][split] for s in spans) for split in io.SPLITS}
  total = sum(rows.values())
  clicks = sum(s["clicks"] for s in spans)
  written = sum(sum(s["rows"].values()) for s in spans if not s.get("skipped"))
  return {
    "source": "simulator",
    "out_dir": str(out_dir),
    "spans": spans,
    "rows": rows,
    "ctr": clicks / total if total else float("nan"),
    "cvr_given_click": sum(s["conversions"] for s in spans) / clicks if clicks else float("nan"),
    "seconds": round(seconds, 3),
    "rows_per_second": written / seconds if written and seconds > 0 else None,
    "skipped": all(s.get("skipped") for s in spans),
  }
