"""The training window: a run on span N trains on the spec's `data.num_spans`
latest spans, the earlier ones backfilled by ingest-only runs of the same
pipeline (a real, tiny simulator run through `mtlrank run --report`), with
progress shown for every component and the report rendered by the same process.
Its --no-cache rerun also goes through Beam's PortableRunner and applies the
spec's retention (pipeline/beam_portable.py, pipeline/retention.py): one run
of this test covers both instead of a run each."""

from __future__ import annotations

import json
from pathlib import Path

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
  # each span once, in its newest ingestion, and the summary names it. This
  # rerun also goes through Beam's PortableRunner (a job server and a worker
  # pool on loopback), blesses with a floor any model passes, and applies the
  # spec's retention: one run and one pushed version kept.
  first = {e["span"]: e["artifact_id"] for e in summary["training_examples"]}
  raw = yaml.safe_load(spec_file.read_text())
  raw["evaluation"]["thresholds"] = {"click": {"auc": {"value": 0.0}}}
  raw["retention"] = {"keep_runs": 1, "keep_pushed_versions": 1}
  spec_file.write_text(yaml.safe_dump(raw))
  base = tmp_path / "home" / "serving" / raw["name"]
  for old_version in (1, 2):  # two older pushes, as a long schedule leaves them
    (base / str(old_version)).mkdir(parents=True)
    (base / str(old_version) / "saved_model.pb").write_bytes(b"")
  assert (
    cli.main(
      [
        "run",
        "--spec",
        str(spec_file),
        "--home",
        str(tmp_path / "home"),
        "--no-cache",
        "--beam",
        "portable",
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
  console = capfd.readouterr().out
  assert f"from Examples #{second[1]} (span 1), #{second[2]} (span 2)" in console
  _check_portable_beam(again["beam"])
  _check_retention(again, first, second, base, tmp_path / "home" / "pipelines" / raw["name"])
  assert "retention: removed versions 1, 2" in console


def _check_portable_beam(beam: dict) -> None:
  """The job server ran every Beam job of the run, Transform's and the Evaluator's among them."""
  assert beam["mode"] == "portable" and beam["args"][0] == "--runner=PortableRunner"
  assert beam["workers"] == "threads"
  assert beam["jobs"] and all(job["state"] == "DONE" for job in beam["jobs"])
  transforms = [t for job in beam["jobs"] for t in job["transforms"]]
  assert "Analyze" in transforms, transforms  # TFT's AnalyzeDatasetWithCache
  assert "ExtractEvaluateAndWriteResults" in transforms, transforms  # TFMA
  # The job server and the worker pool the run started are gone with it.
  from pipeline.beam_portable import BeamServiceError, wait_ready

  for endpoint in (beam["job_endpoint"], beam["worker_pool"]):
    with pytest.raises(BeamServiceError):
      wait_ready(endpoint, timeout=2)


def _check_retention(summary: dict, first: dict, second: dict, base, pipeline_root) -> None:
  """Only the newest push stays; the first run's artifacts are gone from disk
  and DELETED in ML Metadata; this run's, the training window, stay LIVE."""
  from ml_metadata.proto import metadata_store_pb2

  from pipeline.results import open_store

  kept = summary["retention"]
  pushed = int(summary["pushed_model_dir"].rstrip("/").rsplit("/", 1)[-1])
  assert summary["blessed"] and kept["removed_versions"] == [1, 2]
  assert kept["kept_versions"] == [pushed] and sorted(p.name for p in base.iterdir()) == [
    str(pushed)
  ]
  removed = {a["id"]: a["uri"] for a in kept["removed_artifacts"]}
  assert {first[1], first[2]} <= set(removed)
  assert all(not Path(uri).exists() for uri in removed.values())
  store = open_store(pipeline_root / "metadata.sqlite")
  states = {a.id: a.state for a in store.get_artifacts()}
  assert all(states[i] == metadata_store_pb2.Artifact.DELETED for i in removed)
  assert all(states[second[s]] == metadata_store_pb2.Artifact.LIVE for s in (1, 2))
