"""The run report: read back from a real pipeline run (MLMD, TFMA output, the
Trainer's TensorBoard events), rendered to one self-contained HTML page that
headless Chromium displays with every section."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List

import pytest

from pipeline import cli, report

SECTION_IDS = [key for key, _ in report.SECTIONS]
CHROMIUM = next(
  (
    shutil.which(name)
    for name in ("chromium", "chromium-browser", "google-chrome")
    if shutil.which(name)
  ),
  None,
)

# Runs the real TFX pipeline: left out of `make test-fast`.
pytestmark = pytest.mark.pipeline


class _Sections(HTMLParser):
  """Per <section id>: the tags inside it and its text."""

  def __init__(self) -> None:
    super().__init__()
    self.current = None
    self.tags: Dict[str, List[str]] = defaultdict(list)
    self.text: Dict[str, str] = defaultdict(str)
    self.external: List[str] = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "section":
      self.current = attrs.get("id")
    elif self.current:
      self.tags[self.current].append(tag)
    for key in ("src", "href"):
      if attrs.get(key):
        self.external.append(attrs[key])

  def handle_endtag(self, tag):
    if tag == "section":
      self.current = None

  def handle_data(self, data):
    if self.current:
      self.text[self.current] += data


def _sections(page: str) -> _Sections:
  parser = _Sections()
  parser.feed(page)
  return parser


@pytest.fixture(scope="module")
def report_data(report_run) -> report.ReportData:
  return report.collect(Path(report_run.pipeline_root))


@pytest.fixture(scope="module")
def report_file(report_run, tmp_path_factory) -> Path:
  out = tmp_path_factory.mktemp("report") / "report.html"
  assert cli.main(["report", "--pipeline-root", report_run.pipeline_root, "--out", str(out)]) == 0
  return out


def test_spec_and_outcome_are_read_from_the_run(report_data, report_spec, report_run):
  assert report_data.spec == report_spec
  assert not report_data.outcome.blessed
  assert report_data.outcome.not_blessed_reasons == report_run.not_blessed_reasons
  assert report_data.metrics[("income", "overall")]["example_count"] == 1000


def test_calibration_bins_cover_the_eval_split(report_data):
  for task in ("income", "never_married"):
    bins = report_data.calibration[task]
    assert sum(b.weight for b in bins) == pytest.approx(1000)
    assert all(0 <= b.mean_prediction <= 1 and 0 <= b.mean_label <= 1 for b in bins)
    mean_label = report_data.metrics[(task, "overall")]["mean_label"]
    assert sum(b.mean_label * b.weight for b in bins) / 1000 == pytest.approx(mean_label)


def test_gate_weights_of_each_task_sum_to_one(report_data):
  rows, columns, values = report.gate_matrix(report_data.telemetry)
  assert [r.split(" ")[0] for r in rows] == ["gate_income", "gate_never_married"]
  assert len(columns) == report_data.spec.model.num_experts
  for row in values:
    assert sum(row) == pytest.approx(1.0, abs=1e-4)


def test_page_shows_every_section_with_its_content(report_file, report_run, report_data):
  page = _sections(report_file.read_text())
  assert set(SECTION_IDS) <= set(page.text)
  assert page.external == [], "the page must not load anything"
  assert "Not blessed" in page.text["outcome"]
  assert "change vs blessed baseline" in page.text["outcome"]
  assert report_run.not_blessed_reasons
  for reason in report_run.not_blessed_reasons:
    assert reason in page.text["outcome"]
  assert "expected_calibration_error" in page.text["metrics"]
  for task in ("income", "never_married"):
    assert task in page.text["metrics"] and task in page.text["calibration"]
  for _, slice_name in report_data.metrics:
    assert slice_name in page.text["slices"]
  assert {"overall", "sex=Female", "sex=Male"} <= {s for _, s in report_data.metrics}
  assert page.tags["calibration"].count("svg") == 2
  for section in ("gates", "gradients", "loss-weights", "losses", "durations"):
    assert "svg" in page.tags[section], section
  assert "income vs never_married" in page.text["gradients"]
  for component in (
    "ExampleGen",
    "Transform",
    "Trainer",
    "Evaluator",
    "SingleTaskTrainer",
  ):
    assert component in page.text["durations"]
  # No query key in the census spec: the ranking section says so.
  assert "query_key" in page.text["ranking"]
  # One chart per task and metric, one dot and interval bar per slice.
  metrics = {(c.task, c.metric) for c in report_data.baseline}
  assert page.tags["baseline"].count("svg") == len(metrics)
  assert page.tags["baseline"].count("circle") == len(report_data.baseline)
  assert page.tags["baseline"].count("line") >= len(report_data.baseline) + len(metrics)
  for comparison in report_data.baseline:
    assert f"{comparison.slice}: {comparison.delta:+.4f}" in page.text["baseline"]
    assert comparison.verdict in page.text["baseline"]


def test_single_task_baseline_compares_every_task_and_slice(report_data):
  compared = {(c.task, c.slice, c.metric) for c in report_data.baseline}
  for task in ("income", "never_married"):
    for slice_name in ("overall", "sex=Female", "sex=Male"):
      for metric in ("auc", "binary_crossentropy", "expected_calibration_error"):
        assert (task, slice_name, metric) in compared
  for c in report_data.baseline:
    assert c.delta == pytest.approx(c.multi_task - c.single_task)
    better = c.delta > 0 if c.higher_is_better else c.delta < 0
    assert c.delta_lower <= c.delta <= c.delta_upper
    straddles = c.delta_lower <= 0 <= c.delta_upper
    assert c.verdict == ("tie" if straddles else "MTL better" if better else "STL better")


def test_interval_shows_beside_its_metric():
  table = report.metrics_table(
    {"income": {"auc": 0.93, "auc_lower": 0.91, "auc_upper": 0.95}}, "task"
  )
  assert "[0.9100, 0.9500]" in table and "auc_lower" not in table


def test_baseline_change_shows_beside_its_metric():
  table = report.metrics_table({"income": {"auc": 0.93, "auc_diff": -0.012}}, "task")
  assert "0.9300" in table and "(-0.0120)" in table and "auc_diff" not in table


def test_missing_pipeline_root_is_named(tmp_path, capsys):
  assert (
    cli.main(
      ["report", "--pipeline-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.html")]
    )
    == 1
  )
  assert "nowhere" in capsys.readouterr().err


@pytest.mark.skipif(
  CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)"
)
def test_headless_chromium_renders_every_section(report_file, tmp_path):
  command = [
    CHROMIUM,
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    f"--user-data-dir={tmp_path / 'profile'}",
  ]
  dom = subprocess.run(
    command + ["--dump-dom", report_file.as_uri()],
    check=True,
    capture_output=True,
    text=True,
    timeout=120,
  ).stdout
  rendered = _sections(dom)
  for section in SECTION_IDS:
    assert rendered.text[section].strip(), f"section {section} rendered empty"
  assert sum(tags.count("svg") for tags in rendered.tags.values()) >= 7
  screenshot = tmp_path / "report.png"
  subprocess.run(
    command + [f"--screenshot={screenshot}", "--window-size=1200,3000", report_file.as_uri()],
    check=True,
    capture_output=True,
    timeout=120,
  )
  assert screenshot.stat().st_size > 20_000
