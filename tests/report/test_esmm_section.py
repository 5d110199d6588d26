"""The ESMM experiment's page (benchmarks.esmm_report), from a real (small) run
of benchmarks.esmm_experiment: the table and the point chart show the
experiment's figures, a malformed file is refused naming the missing field,
and headless Chromium renders the page. The product's run report renders
pipeline runs only."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import esmm_experiment, esmm_report
from tests.report.test_report import CHROMIUM, _sections

# Trains the experiment's models (~30 s): left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def esmm_json(tmp_path_factory) -> Path:
  """Two seeds on 200 requests per span: 30.5 s of fixture setup (load 0.5-1.9),
  under the ~60 s that would call for a smaller experiment."""
  out = tmp_path_factory.mktemp("esmm") / "esmm.json"
  assert (
    esmm_experiment.main(["--seeds", "0", "1", "--requests-per-span", "200", "--out", str(out)])
    == 0
  )
  return out


def test_section_shows_the_experiment_figures(esmm_json):
  result = esmm_report.load_results(esmm_json)
  body = esmm_report.section_body(result)
  summary = result["summary"]
  for model in esmm_report.MODELS:
    for key, _ in esmm_report.TABLE_METRICS:
      cell = f"{summary[model][key]['mean']:.4f} ± {summary[model][key]['std']:.4f}"
      assert cell in body, (model, key)
  gap = summary["esmm"]["entire_space_auc"]["mean"] - summary["naive"]["entire_space_auc"]["mean"]
  assert f"<b>{gap:+.4f}</b>" in body
  assert f"{result['oracles']['x_only_click_space']['entire_space_auc']:.4f}" in body
  assert f"{result['truth']['entire_space_auc']:.4f}" in body


def test_point_chart_places_each_model_by_its_mean(esmm_json):
  result = esmm_report.load_results(esmm_json)
  chart = esmm_report.point_chart(result)
  filled = re.findall(r'<circle cx="([\d.]+)" cy="[\d.]+" r="4.5" fill="(#\w+)"', chart)
  assert len(filled) == len(esmm_report.MODELS) * len(esmm_report.CHART_METRICS)
  # Per metric row: naive first, then ESMM; the higher mean sits further right.
  for row, (key, _) in enumerate(esmm_report.CHART_METRICS):
    (naive_x, naive_color), (esmm_x, esmm_color) = filled[2 * row], filled[2 * row + 1]
    assert (naive_color, esmm_color) == (
      esmm_report.MODEL_COLORS["naive"],
      esmm_report.MODEL_COLORS["esmm"],
    )
    naive_mean = result["summary"]["naive"][key]["mean"]
    esmm_mean = result["summary"]["esmm"][key]["mean"]
    assert (float(esmm_x) > float(naive_x)) == (esmm_mean > naive_mean), key
  assert chart.count("stroke-dasharray") == 2  # the paper's two AUCs


def test_malformed_results_name_the_missing_field(esmm_json, tmp_path, capsys):
  result = json.loads(esmm_json.read_text())
  del result["summary"]["esmm"]["clicked_auc"]
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps(result))
  with pytest.raises(ValueError, match=r"summary\.esmm\.clicked_auc"):
    esmm_report.load_results(bad)
  assert esmm_report.main([str(bad), "--out", str(tmp_path / "r.html")]) == 1
  assert "summary.esmm.clicked_auc" in capsys.readouterr().err
  with pytest.raises(FileNotFoundError, match="nowhere.json"):
    esmm_report.load_results(tmp_path / "nowhere.json")


@pytest.mark.skipif(
  CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)"
)
def test_headless_chromium_renders_the_esmm_page(esmm_json, tmp_path):
  out = tmp_path / "esmm.html"
  assert esmm_report.main([str(esmm_json), "--out", str(out)]) == 0
  command = [
    CHROMIUM,
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    f"--user-data-dir={tmp_path / 'profile'}",
  ]
  dom = subprocess.run(
    command + ["--dump-dom", out.as_uri()], check=True, capture_output=True, text=True, timeout=120
  ).stdout
  rendered = _sections(dom)
  assert "ESMM experiment" in rendered.text[esmm_report.SECTION_ID]
  assert rendered.tags[esmm_report.SECTION_ID].count("svg") == 1
  assert rendered.tags[esmm_report.SECTION_ID].count("circle") == 9
  assert rendered.external == []
