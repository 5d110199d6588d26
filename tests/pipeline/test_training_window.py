"""The training window: a run on span N trains on the spec's `data.num_spans`
latest spans, the earlier ones backfilled by ingest-only runs of the same
pipeline (a real, tiny simulator run), with progress shown for every component."""

from __future__ import annotations

from models.spec import load_spec
from pipeline import config, runner


def test_transform_reads_every_span_of_the_window(tmp_path, capfd):
  spec = load_spec("synthetic")
  params = dict(spec.data.params, num_spans=2, requests_per_span=60, num_users=50,
                num_items=40)
  spec = spec.replace(data={"num_spans": 2, "params": params},
                      training={"epochs": 1, "batch_size": 64},
                      evaluation={"slices": (), "gated_slices": (), "thresholds": ()})
  summary = runner.run(spec, config.PipelinePaths.for_spec(spec.name, tmp_path))
  assert summary.training_spans == [1, 2]
  assert "trained on spans 1, 2" in summary.render()
  # Progress reaches the console for every component, also after the Trainer's
  # SavedModel export (which resets absl's verbosity).
  progress = capfd.readouterr().out
  for component in ("Transform", "Trainer", "Evaluator", "Pusher"):
    assert f"[mtlrank] {component} done in" in progress
  # Without release thresholds nothing is blessed, and the summary says why.
  assert not summary.blessed
  assert any("no release thresholds" in r for r in summary.not_blessed_reasons)
