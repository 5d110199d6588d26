"""The training window: a run on span N trains on the spec's `data.num_spans`
latest spans, the earlier ones backfilled by ingest-only runs of the same
pipeline (a real, tiny simulator run through `mtlrank run --report`), with
progress shown for every component and the report rendered by the same process."""

from __future__ import annotations

import json

import pytest
import yaml

from models.spec import resolve_spec_path
from pipeline import cli

# Runs the real TFX pipeline: left out of `make test-fast`.
pytestmark = pytest.mark.pipeline


def _tiny_synthetic_spec(path) -> None:
  """The bundled synthetic spec on 2 tiny spans, 1 epoch, no slices nor gates."""
  raw = yaml.safe_load(resolve_spec_path("synthetic").read_text())
  raw["data"]["num_spans"] = 2
  raw["data"]["params"].update(num_spans=2, requests_per_span=60, num_users=50, num_items=40)
  raw["training"].update(epochs=1, batch_size=64)
  raw["evaluation"].update(slices=[], gated_slices=[])
  del raw["evaluation"]["thresholds"]
  path.write_text(yaml.safe_dump(raw))


def test_transform_reads_every_span_of_the_window(tmp_path, capfd):
  spec_file, summary_file = tmp_path / "tiny.yaml", tmp_path / "summary.json"
  report_file = tmp_path / "out" / "report.html"
  _tiny_synthetic_spec(spec_file)
  assert (
    cli.main(
      [
        "run",
        "--spec",
        str(spec_file),
        "--home",
        str(tmp_path / "home"),
        "--summary-json",
        str(summary_file),
        "--report",
        str(report_file),
      ]
    )
    == 0
  )
  summary = json.loads(summary_file.read_text())
  assert summary["training_spans"] == [1, 2]
  console = capfd.readouterr().out
  assert "trained on spans 1, 2" in console
  # Progress reaches the console for every component, also after the Trainer's
  # SavedModel export (which resets absl's verbosity).
  for component in ("Transform", "Trainer", "Evaluator", "Pusher"):
    assert f"[mtlrank] {component} done in" in console
  # Without release thresholds nothing is blessed, and the summary says why.
  assert not summary["blessed"]
  assert any("no release thresholds" in r for r in summary["not_blessed_reasons"])
  # The report of this very run, its path printed last.
  assert console.rstrip().endswith(f"report: {report_file}")
  page = report_file.read_text()
  assert "no release thresholds" in page
  assert all(f'<section id="{s}"' in page for s in ("outcome", "metrics", "durations"))
  # The served outputs ranked against the simulator's position-free truth, per
  # request: the fused score against the true utility, the served click (no
  # position logit) against the true attraction, with their baselines.
  metrics = summary["metrics"]
  for output in ("score", "click", "conversion", "dwell"):
    values = metrics[output]
    assert 0 < values["truth_ndcg@10"] <= 1 and 0 <= values["truth_agreement"] <= 1, output
    assert values["truth_ndcg@10_oracle"] == 1.0 and values["truth_agreement_random"] == 0.5
    assert 0 < values["truth_ndcg@10_random"] < 1 and 0 < values["truth_ndcg@10_position"] < 1
    assert values["truth_requests"] > 0
  share = metrics["score"]["truth_ndcg@10_share"]
  random = metrics["score"]["truth_ndcg@10_random"]
  assert share == pytest.approx((metrics["score"]["truth_ndcg@10"] - random) / (1 - random))
  assert "ranking against the simulator's truth" in console
  assert 'id="truth"' in page and "position_share" in page
  # A rerun with --no-cache ingests both spans again: the window still holds
  # each span once, in its newest ingestion, and the summary names it.
  first = {e["span"]: e["artifact_id"] for e in summary["training_examples"]}
  assert (
    cli.main(
      [
        "run",
        "--spec",
        str(spec_file),
        "--home",
        str(tmp_path / "home"),
        "--no-cache",
        "--summary-json",
        str(summary_file),
      ]
    )
    == 0
  )
  again = json.loads(summary_file.read_text())
  assert again["training_spans"] == [1, 2]
  second = {e["span"]: e["artifact_id"] for e in again["training_examples"]}
  assert sorted(second) == [1, 2] and all(second[s] > first[s] for s in (1, 2))
  assert f"from Examples #{second[1]} (span 1), #{second[2]} (span 2)" in capfd.readouterr().out
