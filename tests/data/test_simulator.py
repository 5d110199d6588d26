"""The impression-log simulator: determinism, structure, and that the logged
outcomes follow the ground truth."""

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import simulator_throughput, simulator_truth
from models.spec import load_spec
from pipeline.data import io, simulator, world

K = 10


def small_spec(**params):
  spec = load_spec("synthetic")
  merged = {
    **spec.data.params,
    "num_spans": 2,
    "requests_per_span": 300,
    "slate_size": K,
    "num_users": 400,
    "num_items": 300,
    **params,
  }
  return spec.replace(data={"params": merged, "num_spans": merged["num_spans"]})


def all_files(out_dir: Path):
  return sorted(p for p in Path(out_dir).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  """Two small spans written to disk and read back, per span and split."""
  out = tmp_path_factory.mktemp("sim")
  spec = small_spec()
  summary = simulator.simulate(spec, out, progress=False)
  rows = {
    (span, split): io.read_examples(io.split_files(out, span, split), spec.raw_columns)
    for span in (1, 2)
    for split in io.SPLITS
  }
  return spec, out, summary, rows


@pytest.fixture(scope="module")
def big_span():
  """One larger span in memory (not written): for the statistical checks."""
  spec = small_spec(requests_per_span=6000, num_spans=1)
  params = simulator.SimParams.from_spec(spec)
  data = simulator.simulate_span(simulator.make_world(params), params, 1)
  return data["columns"]


def test_layout_and_columns(written):
  spec, out, summary, rows = written
  assert [str(p.relative_to(out)) for p in all_files(out)] == [
    f"span-{s}/{f}"
    for s in (1, 2)
    for f in (
      "_summary.json",
      "eval/data-00000-of-00001.tfrecord.gz",
      "train/data-00000-of-00001.tfrecord.gz",
      "validation/data-00000-of-00001.tfrecord.gz",
    )
  ]
  assert sorted(os.listdir(out)) == ["span-1", "span-2"]
  assert sum(summary["rows"].values()) == 2 * 300 * K
  for (span, split), columns in rows.items():
    assert set(columns) == set(spec.raw_columns) == set(simulator.COLUMNS)
    assert len(columns["click"]) == summary["spans"][span - 1]["rows"][split]
  # Every example holds exactly the spec's columns, one value each.
  import tensorflow as tf

  record = next(
    iter(
      tf.data.TFRecordDataset(
        [str(p) for p in io.split_files(out, 1, "train")], compression_type="GZIP"
      )
    )
  )
  example = tf.train.Example.FromString(record.numpy())
  assert set(example.features.feature) == set(spec.raw_columns)
  for feature in example.features.feature.values():
    assert len(getattr(feature, feature.WhichOneof("kind")).value) == 1


def test_same_seed_gives_identical_bytes_and_rerun_is_a_noop(written, tmp_path):
  spec, out, _, _ = written
  simulator.simulate(spec, tmp_path / "again", progress=False)
  first, second = all_files(out), all_files(tmp_path / "again")
  assert [p.relative_to(out) for p in first] == [p.relative_to(tmp_path / "again") for p in second]
  assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))

  # Another seed gives other data.
  simulator.simulate(small_spec(seed=8), tmp_path / "other", progress=False)
  assert (
    io.split_files(tmp_path / "other", 1, "train")[0].read_bytes()
    != io.split_files(out, 1, "train")[0].read_bytes()
  )

  # Re-running over complete output keeps the files.
  target = io.split_files(tmp_path / "again", 2, "eval")[0]
  os.utime(target, (1, 1))
  summary = simulator.simulate(spec, tmp_path / "again", progress=False)
  assert summary["skipped"] and target.stat().st_mtime == 1
  assert sum(summary["rows"].values()) == 2 * 300 * K
  # ... unless asked to overwrite; and other parameters are refused.
  simulator.simulate(spec, tmp_path / "again", overwrite=True, progress=False)
  assert target.stat().st_mtime != 1 and target.read_bytes() == second[5].read_bytes()
  with pytest.raises(ValueError, match="other parameters"):
    simulator.simulate(small_spec(requests_per_span=301), tmp_path / "again", progress=False)


def test_spans_differ(written):
  _, _, _, rows = written
  assert rows[(1, "train")]["request_id"][0].startswith(b"s1-r")
  assert rows[(2, "train")]["request_id"][0].startswith(b"s2-r")
  assert not np.array_equal(rows[(1, "train")]["user_id"][:50], rows[(2, "train")]["user_id"][:50])


def test_conversion_and_dwell_only_after_click(written):
  _, _, _, rows = written
  for columns in rows.values():
    click = columns["click"]
    assert set(np.unique(click)) <= {0, 1}
    assert np.all(columns["conversion"] <= click)
    assert np.all(columns["dwell_seconds"][click == 0] == 0)
    assert np.all(columns["dwell_seconds"][click == 1] > 0)
    assert np.all((columns["p_click"] > 0) & (columns["p_click"] < 1))
    assert np.all((columns["p_conv_given_click"] > 0) & (columns["p_conv_given_click"] < 1))
    assert np.all(columns["item_price"] > 0)
    assert np.all((columns["hour"] >= 0) & (columns["hour"] <= 23))


def test_slates_and_split_by_request(written):
  _, _, summary, rows = written
  for span in (1, 2):
    request_ids = {}
    for split in io.SPLITS:
      columns = rows[(span, split)]
      ids = columns["request_id"]
      # Rows come request by request, positions 1..K in order, distinct items,
      # one user, device and hour per request.
      assert len(ids) % K == 0
      by_request = lambda c: c.reshape(-1, K)
      assert np.all(by_request(ids) == by_request(ids)[:, :1])
      assert np.all(by_request(columns["position"]) == np.arange(1, K + 1))
      for name in ("user_id", "device", "hour", "user_segment"):
        assert np.all(by_request(columns[name]) == by_request(columns[name])[:, :1])
      items = np.sort(by_request(columns["item_id"]), axis=1)
      assert np.all(items[:, 1:] != items[:, :-1])
      request_ids[split] = set(ids.tolist())
    # A request is entirely in one split; all requests are somewhere.
    train, validation, evaluation = (request_ids[s] for s in ("train", "validation", "eval"))
    assert not train & evaluation and not train & validation and not validation & evaluation
    assert len(train) + len(validation) + len(evaluation) == 300
    assert 0.1 < len(evaluation) / 300 < 0.3  # eval_fraction 0.2
    assert 0.03 < len(validation) / 300 < 0.14  # validation_fraction 0.08


def test_eval_fraction_by_request_hash():
  is_eval = simulator.eval_requests(seed=7, span=1, num_requests=100_000, eval_fraction=0.2)
  assert abs(is_eval.mean() - 0.2) < 0.005
  assert np.array_equal(is_eval, simulator.eval_requests(7, 1, 100_000, 0.2))
  assert not np.array_equal(is_eval, simulator.eval_requests(7, 2, 100_000, 0.2))
  # Validation is the next share of the same draw: eval does not move with it.
  is_validation = world.validation_requests(7, 1, 100_000, 0.2, 0.08)
  assert abs(is_validation.mean() - 0.08) < 0.005
  assert not (is_validation & is_eval).any()


def test_validation_fraction_defaults_to_a_tenth_of_the_rest():
  params = simulator.SimParams.from_spec(load_spec("synthetic"))
  assert params.validation_fraction == 0.08  # declared in specs/synthetic.yaml
  left_out = {k: v for k, v in small_spec().data.params.items() if k != "validation_fraction"}
  spec = load_spec("synthetic")
  spec = spec.replace(data={"params": left_out, "num_spans": left_out["num_spans"]})
  assert simulator.SimParams.from_spec(spec).validation_fraction == pytest.approx(0.08)
  with pytest.raises(ValueError, match="validation_fraction"):
    simulator.SimParams.from_spec(small_spec(validation_fraction=0.9))


def _within(empirical, probabilities, sigmas=4.0):
  """|mean(outcome) - mean(p)| within `sigmas` binomial standard errors."""
  se = np.sqrt(np.sum(probabilities * (1 - probabilities))) / len(probabilities)
  return abs(empirical - probabilities.mean()) <= sigmas * se


def test_outcomes_follow_the_ground_truth(big_span):
  c = big_span
  click = c["click"].astype(bool)
  p_click = c["p_click"].astype(np.float64)
  assert _within(click.mean(), p_click)
  p_conv = c["p_conv_given_click"].astype(np.float64)[click]
  assert _within(c["conversion"][click].mean(), p_conv)
  # And within the click-probability deciles (calibration of the truth).
  edges = np.quantile(p_click, np.linspace(0, 1, 6))
  bucket = np.clip(np.searchsorted(edges, p_click, side="right") - 1, 0, 4)
  for b in range(5):
    assert _within(click[bucket == b].mean(), p_click[bucket == b])


def _span(**params):
  spec = small_spec(requests_per_span=6000, num_spans=1, **params)
  sim_params = simulator.SimParams.from_spec(spec)
  return simulator.simulate_span(simulator.make_world(sim_params), sim_params, 1), sim_params


def test_hidden_intent_makes_clicked_rows_convert_more():
  """The selection bias: with the hidden intent, clicked impressions have a
  higher true CVR than impressions like them (same x) taken as a whole, which
  the features cannot explain; without it there is no such gap."""
  gaps = {}
  for strength in (0.0, 1.0):
    data, params = _span(intent_strength=strength)
    c, hidden = data["columns"], data["hidden"]
    click = c["click"].astype(bool)
    targets = simulator_truth.x_only_conversion_targets(hidden, params.intent_strength)
    # Given its own intent draw, p_conv_given_click is the row's exact truth.
    np.testing.assert_allclose(
      c["p_conv_given_click"],
      1 / (1 + np.exp(-(hidden["conv_logit_x"] + strength * hidden["intent"]))),
      rtol=1e-5,
    )
    # On clicked rows, the truth exceeds what x alone predicts over all
    # impressions, by the naive estimator's bias: P(conv | click, x) - E_z p_conv(x, z).
    gap = c["p_conv_given_click"][click].mean() - targets["entire_space"][click].mean()
    naive_bias = (targets["click_space"] - targets["entire_space"]).mean()
    gaps[strength] = (gap, naive_bias, hidden["intent"][click].mean())
  assert abs(gaps[0.0][0]) < 0.005 and abs(gaps[0.0][1]) < 1e-9
  gap, naive_bias, clicked_intent = gaps[1.0]
  assert gap > 0.02 and naive_bias > 0.02
  assert 0.5 < clicked_intent < 1.0  # z given a click is tilted up by about s (1 - a)


def test_intent_keeps_base_rates():
  without, _ = _span(intent_strength=0.0)
  with_intent, _ = _span(intent_strength=1.0)
  for data in (without, with_intent):
    click = data["columns"]["click"].astype(bool)
    assert 0.06 < click.mean() < 0.08
    assert 0.085 < data["columns"]["conversion"][click].mean() < 0.125


def test_conversion_knobs_make_conversions_sparse_and_click_driven():
  """The ESMM-premise world (benchmarks/esmm_experiment.py): a lower
  conversion_bias makes conversions sparse; a larger conversion_click_match
  makes the true CVR follow the click's user-item match. At their defaults
  they leave a span and its fingerprint as the bundled world's."""
  bundled, params = _span()
  assert set(params.fingerprinted()) == set(world.PARAMS) - set(world.OPTIONAL_PARAMS)
  sparse, sparse_params = _span(conversion_bias=-5.0, conversion_click_match=1.0)
  assert sparse_params.fingerprinted()["conversion_bias"] == -5.0
  for name in ("user_id", "item_id", "position", "click"):
    assert np.array_equal(np.asarray(bundled["columns"][name]), np.asarray(sparse["columns"][name]))
  rate = lambda data: data["columns"]["conversion"].sum() / data["columns"]["click"].sum()
  assert rate(sparse) < 0.5 * rate(bundled)

  def match_correlation(data):
    return np.corrcoef(data["hidden"]["conv_logit_x"], data["hidden"]["attraction_logit_x"])[0, 1]

  assert match_correlation(sparse) > match_correlation(bundled) + 0.2


def test_intent_has_its_own_random_stream():
  """The intent has its own random stream: the features, positions and clicks of
  a world without intent do not depend on whether the intent is drawn."""
  without, _ = _span(intent_strength=0.0)
  tiny, _ = _span(intent_strength=1e-9)
  for name in ("user_id", "item_id", "position", "click", "conversion"):
    assert np.array_equal(np.asarray(without["columns"][name]), np.asarray(tiny["columns"][name]))


def test_ctr_decreases_with_position(big_span):
  c = big_span
  ctr = np.array([c["click"][c["position"] == k].mean() for k in range(1, K + 1)])
  true_ctr = np.array([c["p_click"][c["position"] == k].mean() for k in range(1, K + 1)])
  assert np.all(np.diff(true_ctr) < 0)
  assert np.all(np.diff(ctr[::3]) < 0)  # positions 1, 4, 7, 10
  assert ctr[0] > 3 * ctr[-1]


def test_tasks_conflict_and_price_lowers_conversion(big_span):
  c = big_span
  # The attraction of an item and its conversion share little.
  assert abs(np.corrcoef(c["p_click"], c["p_conv_given_click"])[0, 1]) < 0.3
  log_price = np.log(c["item_price"])
  assert np.corrcoef(log_price, c["p_conv_given_click"])[0, 1] < -0.1


def test_base_rates_at_the_spec_parameters():
  spec = load_spec("synthetic")
  params = simulator.SimParams.from_spec(spec)
  data = simulator.simulate_span(simulator.make_world(params), params, 1)
  stats = simulator._span_stats(data["columns"], simulator.split_masks(data))  # pylint: disable=protected-access
  assert 0.05 <= stats["ctr"] <= 0.10
  assert 0.05 <= stats["cvr_given_click"] <= 0.15
  assert stats["requests"] == params.requests_per_span


def test_bad_params_are_refused(tmp_path):
  with pytest.raises(ValueError, match="num_items"):
    simulator.simulate(small_spec(num_items=5), tmp_path, progress=False)
  spec = small_spec()
  with pytest.raises(ValueError, match="unknown data.params"):
    simulator.simulate(
      spec.replace(data={"params": {**spec.data.params, "typo": 1}}), tmp_path, progress=False
    )
  with pytest.raises(ValueError, match="max_value"):
    simulator.simulate(small_spec(slate_size=K + 1), tmp_path, progress=False)
  with pytest.raises(ValueError, match="intent_strength"):
    simulator.simulate(small_spec(intent_strength=-1), tmp_path, progress=False)
  with pytest.raises(ValueError, match="disagree"):
    simulator.simulate(spec.replace(data={"num_spans": 3}), tmp_path, progress=False)


def test_command_line_prints_throughput(tmp_path, capsys):
  assert simulator_throughput.main(["--rows", "2000", "--out", str(tmp_path / "cli")]) == 0
  out = capsys.readouterr().out
  assert "2,000 rows" in out and "rows/s" in out
  assert io.span_complete(tmp_path / "cli", 1)


def test_writer_round_trips_edge_values(tmp_path):
  """The shared writer (pipeline.data.io) on values the adapters rarely hit."""
  import tensorflow as tf

  spec_columns = {"i": "int", "f": "float", "s": "string", "label": "int"}
  columns = {
    "i": np.array([-(2**63), -1, 0, 127, 128, 2**62, 2**63 - 1]),
    "f": np.array([0.0, -1.5, 3.25, np.float32(1e-30), 1e30, np.inf, -0.0], np.float32),
    "s": ["", "a", "é漢字", "x" * 300, "tab\tnew\nline", "0", "\x00"],
    "label": np.array([0, 1, 1, 0, 1, 0, 0]),
  }
  path = tmp_path / "edge" / "data.tfrecord.gz"
  assert io.write_examples(columns, spec_columns, path, batch_rows=3) == 7
  back = io.read_examples(path, spec_columns)
  assert back["i"].tolist() == columns["i"].tolist()
  assert np.array_equal(back["f"], columns["f"])
  assert [v.decode() for v in back["s"]] == columns["s"]
  assert back["label"].tolist() == columns["label"].tolist()
  for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
    example = tf.train.Example.FromString(record.numpy())
    assert example.SerializeToString(deterministic=True) == record.numpy()
  # No rows: a valid empty file. Wrong columns: refused, nothing left behind.
  empty = tmp_path / "empty" / "data.tfrecord.gz"
  io.write_examples({k: v[:0] for k, v in columns.items()}, spec_columns, empty)
  assert io.read_examples(empty, spec_columns)["i"].size == 0
  with pytest.raises(ValueError, match="unexpected \\['extra'\\]"):
    io.write_examples({**columns, "extra": columns["i"]}, spec_columns, tmp_path / "x" / "d.gz")
  with pytest.raises(TypeError, match="integer"):
    io.write_examples({**columns, "i": columns["f"]}, spec_columns, tmp_path / "y" / "d.gz")
  assert not any(p.is_file() for p in (tmp_path / "y").iterdir())


def _digest() -> str:
  """sha256 of the encoded examples of a small simulated span."""
  import hashlib

  spec = small_spec(num_spans=1, requests_per_span=200)
  params = simulator.SimParams.from_spec(spec)
  columns = simulator.simulate_spec_span(spec, simulator.make_world(params), params, 1)["columns"]
  encoded = io.encode_examples(columns, spec.raw_columns)
  return hashlib.sha256(b"".join(encoded.to_pylist())).hexdigest()


def test_bytes_are_identical_across_processes():
  """The same data encodes to the same bytes in another process (tfx_bsl's
  encoder does not: its feature order follows a per-process hash map)."""
  import subprocess
  import sys

  repo = Path(__file__).resolve().parents[2]
  env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONHASHSEED": "12345"}
  there = subprocess.run(
    [sys.executable, __file__], cwd=repo, env=env, check=True, capture_output=True, text=True
  ).stdout.split()
  assert there[-1] == _digest()


if __name__ == "__main__":
  print(_digest())


def test_position_free_truths_match_the_generative_model():
  """attraction = p_click / e(p); utility = serving.score's formula on the
  truths; expected_dwell is the mean dwell of the clicked impressions."""
  spec = small_spec(num_spans=1, requests_per_span=4000)
  params = simulator.SimParams.from_spec(spec)
  columns = simulator.simulate_spec_span(spec, simulator.make_world(params), params, 1)["columns"]
  position = columns["position"].astype(np.float64)
  examination = position**-world.EXAMINATION_DECAY
  np.testing.assert_allclose(columns["attraction"] * examination, columns["p_click"], rtol=1e-5)
  exponents = spec.serving.score
  expected = (
    columns["attraction"].astype(np.float64) ** exponents["click"]
    * columns["p_conv_given_click"].astype(np.float64) ** exponents["conversion"]
    * columns["expected_dwell"].astype(np.float64) ** exponents["dwell"]
  )
  np.testing.assert_allclose(columns["utility"], expected, rtol=1e-5)
  clicked = columns["click"] == 1
  assert clicked.sum() > 1000
  mean_dwell = columns["dwell_seconds"][clicked].mean()
  assert mean_dwell == pytest.approx(columns["expected_dwell"][clicked].mean(), rel=0.06)
  # The utility is not the click: the tasks' truths order items differently.
  assert np.corrcoef(columns["utility"], columns["attraction"])[0, 1] < 0.95
